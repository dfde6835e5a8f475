#!/usr/bin/env bash
# Installs what the sandbox and the tests need on a fresh Debian 12 machine (root):
# Debian packages and the AWS emulator (moto server) in a Python venv at .venv.
# Idempotent: a second run only checks.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.venv"
moto_version="5.2.1"

# Needed for: shellcheck of bootstrap/ and userdata/ scripts; cloud-init: `cloud-init schema` on rendered
# user-data; openssh-server, iproute2: test hosts in network namespaces; podman, runc,
# busybox-static: the container engine and a base image on test hosts; strongswan-*: the
# VPN daemon and swanctl on test hosts; rsync: restores and cutover syncs; sudo: the test
# hosts' `centos` login runs poscloud's runner through it, as on a CentOS host; man-db:
# tests/cli_docs.rs renders every man page with `man -l` and fails on groff's warnings;
# chromium: tests/report_html.rs renders the reports' HTML pages headless (screenshot, DOM).
apt_packages=(shellcheck cloud-init openssh-server openssh-client iproute2 pkg-config libssl-dev
  curl podman runc busybox-static strongswan-swanctl strongswan-charon libcharon-extra-plugins
  libstrongswan-extra-plugins libstrongswan-standard-plugins iputils-ping rsync sudo man-db
  chromium)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [[ ! -x "$venv/bin/moto_server" ]] || ! "$venv/bin/python" -c "import moto, sys; sys.exit(moto.__version__ != '$moto_version')" 2>/dev/null; then
  echo "setup: installing the AWS emulator (moto $moto_version) into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "moto[server]==$moto_version"
fi

# bash 4.2.45, CentOS 7's bash, for the test hosts (tests/rig/testhost.sh puts it first on
# their PATH): built once per machine from ../shared/centos7 and kept in $bash42_dir.
bash42_dir=/var/cache/poscloud/bash-4.2.45
bash42_src=$root/../shared/centos7/bash-4.2.45.tar.gz
bash42_sha=7844e6da6bcfe72cce771f8e95536c66f1c39ab9fe2af0ae7ce1e7ea6fe2f3e1
if [[ $("$bash42_dir/bin/bash" --version 2>/dev/null) != *"version 4.2.45"* ]]; then
  [[ -f $bash42_src ]] || { echo "setup: $bash42_src not found (shared/ beside the checkout)" >&2; exit 1; }
  echo "$bash42_sha  $bash42_src" | sha256sum -c --quiet - || { echo "setup: $bash42_src has the wrong checksum" >&2; exit 1; }
  echo "setup: building bash 4.2.45 into $bash42_dir (about a minute)" >&2
  build=$(mktemp -d)
  tar xzf "$bash42_src" -C "$build"
  (cd "$build/bash-4.2.45" &&
    ./configure --prefix="$bash42_dir" --without-bash-malloc --disable-nls CFLAGS="-O1 -w -std=gnu89" >"$build/log" 2>&1 &&
    make -j2 >>"$build/log" 2>&1 && make install >>"$build/log" 2>&1) ||
    { tail -n 30 "$build/log" >&2; echo "setup: building bash 4.2.45 failed" >&2; exit 1; }
  rm -rf "$build"
fi

# The test hosts' login user, as on a CentOS 7 AMI: `centos`, no password (sshd's UsePAM no
# needs a usable, not a locked, password field: '*'), passwordless sudo. Test hosts share this
# machine's /etc/passwd (only the network is isolated), so the user is the machine's.
# env_keep and !secure_path: the test host's environment (its root, its Docker socket, CentOS'
# bash first on PATH) must survive sudo; a real host needs none of that.
if ! id centos >/dev/null 2>&1; then
  echo "setup: adding the user centos for the test hosts" >&2
  useradd --create-home --shell /bin/bash centos
fi
[[ $(getent shadow centos | cut -d: -f2) == '*' ]] || usermod -p '*' centos
sudoers=/etc/sudoers.d/poscloud-testhost
sudoers_text='# Written by poscloud scripts/setup.sh: the test hosts'"'"' centos login (tests/rig/README.md).
Defaults:centos env_keep += "POSCLOUD_ROOT DOCKER_HOST PATH HOME", !secure_path
centos ALL=(ALL) NOPASSWD: ALL'
if [[ $(cat "$sudoers" 2>/dev/null) != "$sudoers_text" ]]; then
  printf '%s\n' "$sudoers_text" >"$sudoers.tmp"
  chmod 0440 "$sudoers.tmp"
  visudo -cqf "$sudoers.tmp" || { rm -f "$sudoers.tmp"; echo "setup: $sudoers is not valid" >&2; exit 1; }
  mv "$sudoers.tmp" "$sudoers"
fi

command -v cargo >/dev/null || { echo "setup: cargo not found; install the Rust toolchain" >&2; exit 1; }
rustup component list --installed 2>/dev/null | grep -q clippy || rustup component add clippy rustfmt >/dev/null 2>&1 || true
echo "setup: ok" >&2
