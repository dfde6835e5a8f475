#!/usr/bin/env bash
# Runs a rendered user-data document (what `poscloud userdata` prints) on a test host made by
# tests/rig/testhost.sh, as cloud-init would on a CentOS 7 AMI: write_files, then runcmd,
# under CentOS 7's bash 4.2 and inside a private view of the filesystem. See
# tests/rig/README.md ("el7/").
#
#   run-userdata.sh run DIR USERDATA [NAME=VALUE...]   exit code: the runcmd's
#   run-userdata.sh exec DIR CMD [ARG...]              CMD in the same view (for checks)
#
# DIR is the test host's directory. The view: the test host's network namespace, plus a
# mount namespace where /etc, /var, /home, /root, /usr/local and /tmp are DIR/root's and
# everything else of this machine's filesystem is read-only; /proc/sys is read-only but for
# the namespace's own net.* and two private files for the global keys host-setup sets
# (kernel.randomize_va_space, fs.suid_dumpable). NAME=VALUE pairs are added to the runcmd's
# environment (cloud-init's own is PATH and little else).
set -euo pipefail
prog=run-userdata
die() { echo "$prog: $*" >&2; exit 1; }
usage() {
  sed -n 's/^#   run-userdata/usage: run-userdata/p' "$0" >&2
  exit 2
}
(($# >= 3)) || usage
cmd=$1 dir_arg=$2
shift 2
here=$(cd "$(dirname "$0")" && pwd -P)
((EUID == 0)) || die "must run as root (namespaces, mounts)"
[[ -d $dir_arg ]] || die "DIR '$dir_arg' is not a directory"
dir=$(cd "$dir_arg" && pwd -P)
root=$dir/root el7=$dir/el7
host_bash=${TESTHOST_BASH:-/var/cache/poscloud/bash-4.2.45/bin/bash}
# The rig's "internet" inside the test host's namespace: eth0's gateway (vpc0) answers as the
# hosts below, over HTTPS with a test CA the view trusts.
gw=10.0.0.1 eth0_ip=10.0.0.10
web_hosts="vault.centos.org download.docker.com archives.fedoraproject.org"

# ---- inside the view (run through unshare by view() below)
if [[ $cmd == _view ]]; then
  # CentOS 7's bash is /bin/bash and /bin/sh there.
  mount --bind "$host_bash" /usr/bin/bash
  mount --bind "$host_bash" "$(readlink -f /usr/bin/sh)"
  mount -t tmpfs -o mode=755 tmpfs /run
  mkdir -p /run/sshd /run/lock
  mount -t tmpfs -o mode=1777 tmpfs /dev/shm
  for d in etc var home root usr/local; do mount --bind "$root/$d" "/$d"; done
  mount --bind /proc/sys /proc/sys
  mount -o remount,bind,ro /proc/sys
  mount --bind /proc/sys/net /proc/sys/net
  mount -o remount,bind,rw /proc/sys/net
  for k in kernel/randomize_va_space fs/suid_dumpable; do
    mount --bind "$el7/sysctl/${k//\//.}" "/proc/sys/$k"
  done
  mount -o remount,bind,ro /
  # Prove the view before anything runs in it.
  for d in etc var home root usr/local; do
    [[ /$d -ef $root/$d ]] || die "/$d is not $root/$d in the view"
  done
  for p in /.el7-view-probe /usr/.el7-view-probe /opt/.el7-view-probe; do
    if (: >"$p") 2>/dev/null; then
      rm -f "$p"
      die "$p could be written: the machine's filesystem is not read-only in the view"
    fi
  done
  # Last: DIR (below /tmp) is out of reach from here on. A bind made from the read-only /
  # inherits its read-only flag: make it writable again.
  mount --bind "$root/tmp" /tmp
  mount -o remount,bind,rw /tmp
  cd /
  exec env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
    LANG=en_US.UTF-8 TERM=dumb "$@"
fi

[[ -f $dir/testhost.env ]] || die "$dir is not a test host's directory (no testhost.env)"
name=$(sed -n 's/^NAME=//p' "$dir/testhost.env")
netns=pc-$name
[[ -e /run/netns/$netns ]] || die "netns $netns does not exist: is the test host up?"
[[ $("$host_bash" --version 2>/dev/null) == *"version 4.2."* ]] ||
  die "$host_bash is not bash 4.2 (run scripts/setup.sh, or set TESTHOST_BASH)"

view() {
  ip netns exec "$netns" unshare --mount --propagation private \
    env TESTHOST_BASH="$host_bash" /usr/bin/bash "$here/run-userdata.sh" _view "$dir" "$@"
}

# ---- the AMI's filesystem below DIR/root (once per test host)
seed() {
  [[ ! -e $el7/seeded ]] || return 0
  mkdir -p "$el7"/{www,tls,sysctl} "$root"
  bash "$here/el7-seed.sh" "$root" "$el7/www"
  # What Debian's binaries need to run at all inside the view.
  cp -a /etc/ld.so.cache /etc/ld.so.conf /etc/ld.so.conf.d /etc/alternatives /etc/protocols \
    /etc/services "$root/etc/"
  mkdir -p "$root"/etc/{sysctl.d,systemd/system,pki/rpm-gpg,pki/tls/certs,sudoers.d}
  mkdir -p "$root/etc/ssl"
  ln -sfn ../pki/tls/certs "$root/etc/ssl/certs"
  install -m 0440 /dev/null "$root/etc/sudoers"
  printf '%s:!!:18500::::::\n' root centos sshd chrony postfix >"$root/etc/shadow"
  sed 's/:x:\([0-9]*\):.*/:!::/' "$root/etc/group" >"$root/etc/gshadow"
  chmod 0000 "$root/etc/shadow" "$root/etc/gshadow"
  printf '%s\n' '127.0.0.1   localhost localhost.localdomain localhost4 localhost4.localdomain4' \
    '::1         localhost localhost.localdomain localhost6 localhost6.localdomain6' \
    "$gw $web_hosts" >"$root/etc/hosts"
  # Host keys, as sshd-keygen makes them at first boot (0600: Debian's sshd refuses 0640).
  for t in rsa ecdsa ed25519; do
    ssh-keygen -q -N '' -t "$t" -C '' -f "$root/etc/ssh/ssh_host_${t}_key"
  done
  # A test CA and a certificate for the rig's web hosts, made here, never stored in the repo.
  local san=""
  for h in $web_hosts; do san+="${san:+,}DNS:$h"; done
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=poscloud rig CA" \
    -keyout "$el7/tls/ca.key" -out "$el7/tls/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=vault.centos.org" \
    -keyout "$el7/tls/server.key" -out "$el7/tls/server.csr" 2>/dev/null
  openssl x509 -req -in "$el7/tls/server.csr" -CA "$el7/tls/ca.crt" -CAkey "$el7/tls/ca.key" \
    -CAcreateserial -days 2 -extfile <(echo "subjectAltName=$san") -out "$el7/tls/server.crt" 2>/dev/null
  cp "$el7/tls/ca.crt" "$root/etc/pki/tls/certs/ca-bundle.crt"
  ln -sfn ca-bundle.crt "$root/etc/pki/tls/certs/ca-certificates.crt"
  mkdir -p "$root"/var/{log,tmp,cache,spool,empty/sshd,lib/el7-standin} "$root"/{home,root,tmp}
  chmod 1777 "$root/var/tmp" "$root/tmp"
  chmod 0550 "$root/root"
  ln -sfn ../run "$root/var/run"
  ln -sfn ../run/lock "$root/var/lock"
  install -d -m 0700 -o 1000 -g 1000 "$root/home/centos"
  # The stand-ins and their data.
  mkdir -p "$root"/usr/local/{sbin,bin,share/el7-standin}
  for s in yum rpm systemctl getenforce restorecon augenrules nmcli ifdown docker uname; do
    install -m 0755 "$here/$s" "$root/usr/local/sbin/$s"
  done
  install -m 0644 "$here"/el7-{packages,units,ami-installed}.sh "$root/usr/local/share/el7-standin/"
  # shellcheck source=tests/rig/el7/el7-ami-installed.sh
  (. "$here/el7-ami-installed.sh" && printf '%s\n' "${el7_ami_installed[@]}") >"$root/var/lib/el7-standin/rpmdb"
  # The AMI's enabled units have their [Install] links.
  local e u w st
  # shellcheck source=tests/rig/el7/el7-units.sh
  . "$here/el7-units.sh"
  for e in "${el7_units[@]}"; do
    read -r u _ w st _ <<<"$e"
    [[ $st == active ]] || continue
    mkdir -p "$root/etc/systemd/system/$w.wants"
    ln -sfn "/usr/lib/systemd/system/$u" "$root/etc/systemd/system/$w.wants/$u"
  done
  # CentOS 7's values of the global keys host-setup writes.
  echo 2 >"$el7/sysctl/kernel.randomize_va_space"
  echo 0 >"$el7/sysctl/fs.suid_dumpable"
  touch "$el7/seeded"
}

# ---- cloud-init's part: write_files, and the runcmd script as cloud-init 19.4 writes it
write_files() {
  /usr/bin/python3 - "$root" "$1" <<'PY'
import os, sys, yaml
root, path = sys.argv[1], sys.argv[2]
with open(path) as f:
    text = f.read()
if not text.startswith("#cloud-config\n"):
    sys.exit("run-userdata: not a #cloud-config document")
doc = yaml.safe_load(text)
for wf in doc.get("write_files") or []:
    p = wf["path"]
    if not p.startswith("/") or ".." in p.split("/"):
        sys.exit("run-userdata: bad write_files path %r" % p)
    if wf.get("encoding") or wf.get("owner") or wf.get("append"):
        sys.exit("run-userdata: write_files options other than content/permissions are not modelled")
    dest = root + p
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    with open(dest, "w") as f:
        f.write(wf.get("content", ""))
    os.chmod(dest, int(str(wf.get("permissions", "0644")), 8))
# cloud-init's shellify: a list item is quoted word by word, a string goes as it is.
lines = ["#!/bin/sh"]
for item in doc.get("runcmd") or []:
    if isinstance(item, list):
        lines.append(" ".join("'%s'" % str(w).replace("'", "'\\''") for w in item))
    else:
        lines.append(str(item))
script = root + "/var/lib/cloud/instance/scripts/runcmd"
os.makedirs(os.path.dirname(script), exist_ok=True)
with open(script, "w") as f:
    f.write("\n".join(lines) + "\n")
os.chmod(script, 0o700)
PY
}

# ---- the network of an EC2 host with two ENIs, inside the test host's namespace
network() {
  if ! ip -n "$netns" link show eth0 >/dev/null 2>&1; then
    ip -n "$netns" link add eth0 type veth peer name vpc0
    ip -n "$netns" addr add "$eth0_ip/24" dev eth0
    ip -n "$netns" addr add "$gw/24" dev vpc0
    ip -n "$netns" link set vpc0 up
    ip -n "$netns" link set eth0 up
    ip -n "$netns" route add default via "$gw" dev eth0
    # First boot: DHCP took eth1 too, with a second default route (host-setup removes both).
    ip -n "$netns" addr add 192.168.222.10/24 dev eth1
    ip -n "$netns" link set eth1 up
    ip -n "$netns" route add default via 192.168.222.1 dev eth1 metric 200
  fi
}

web_pid=""
web_stop() {
  [[ -n $web_pid ]] || return 0
  kill -TERM "$web_pid" 2>/dev/null || true
  local i
  for ((i = 0; i < 50; i++)); do
    kill -0 "$web_pid" 2>/dev/null || { web_pid=""; return 0; }
    sleep 0.1
  done
  kill -KILL "$web_pid" 2>/dev/null || true
  web_pid=""
}
web_start() {
  (cd "$el7/www" && exec ip netns exec "$netns" openssl s_server -quiet -WWW -accept "$gw:443" \
    -cert "$el7/tls/server.crt" -key "$el7/tls/server.key") </dev/null >"$el7/https.log" 2>&1 &
  web_pid=$!
  local deadline=$((SECONDS + 30))
  until ip netns exec "$netns" ss -ltnH "sport = :443" | grep -q .; do
    kill -0 "$web_pid" 2>/dev/null || die "the rig's web server exited: $(tail -n 5 "$el7/https.log")"
    ((SECONDS < deadline)) || die "the rig's web server does not listen on $gw:443 after 30 s"
    sleep 0.1
  done
}

case $cmd in
  run)
    (($# >= 1)) || usage
    userdata=$1
    shift
    for kv in "$@"; do [[ $kv =~ ^[A-Z_][A-Z0-9_]*=.*$ ]] || die "not NAME=VALUE: '$kv'"; done
    [[ -f $userdata ]] || die "no user-data file '$userdata'"
    seed
    write_files "$userdata"
    network
    trap web_stop EXIT
    web_start
    rc=0
    view "$@" /var/lib/cloud/instance/scripts/runcmd || rc=$?
    web_stop
    exit "$rc"
    ;;
  exec)
    [[ -e $el7/seeded ]] || die "run the user-data first (nothing seeded in $dir)"
    view "$@"
    ;;
  *) usage ;;
esac
