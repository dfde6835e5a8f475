#!/usr/bin/env bash
# The main job in a local sandbox: starts a test host (a network namespace with sshd, a
# Docker API from podman, strongSwan) and the AWS emulator on the root side of the host's
# veth (so the host can reach it, as a real host reaches S3), provisions shop 12345678 (qa)
# through every phase (bootstrap; build of OS media from a small kickstart, stored in the
# region's cache; stage of the POS container on eth1; ready), shows the POS, its images,
# status and the region's list, takes a snapshot, tears it down, stops everything it started.
# No AWS account is used: credentials are dummies and every call goes to the emulator. The
# emulator's instance is not a machine, so the test host stands in for it (--ssh); cloud-init
# does not run there, so this script writes the marker user-data would leave.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

bash scripts/setup.sh
cargo build --quiet
bin="$root/target/debug/poscloud"

work=$(mktemp -d)
host="$work/host"
mkdir -p "$host"
moto_pid=""
cleanup() {
  bash "$root/tests/rig/testhost.sh" down sandbox "$host" >/dev/null 2>&1 || true
  if [[ -n $moto_pid ]]; then
    kill "$moto_pid" 2>/dev/null || true
    wait "$moto_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

echo "sandbox: starting a test host" >&2
bash "$root/tests/rig/testhost.sh" up sandbox 59 "$host" --podman >"$work/host.env"
address=$(sed -n 's/^ADDRESS=//p' "$work/host.env")
user=$(sed -n 's/^USER=//p' "$work/host.env")
host_root=$(sed -n 's/^ROOT=//p' "$work/host.env")
mkdir -p "$host_root/var/lib/poscloud"
printf '{"sandbox":true,"finished":"%s"}\n' "$(date -u +%FT%TZ)" >"$host_root/var/lib/poscloud/userdata.json"

# The emulator listens on the root side of the host's veth only.
emu_ip=10.200.59.1
port=$(python3 -c 'import socket, sys; s = socket.socket(); s.bind((sys.argv[1], 0)); print(s.getsockname()[1])' "$emu_ip")
MOTO_AMIS_PATH="$root/tests/fixtures/amis.json" MOTO_IAM_LOAD_MANAGED_POLICIES=true \
  "$root/.venv/bin/moto_server" -H "$emu_ip" -p "$port" >"$work/emulator.log" 2>&1 &
moto_pid=$!
for _ in $(seq 1 100); do
  if (exec 3<>"/dev/tcp/$emu_ip/$port") 2>/dev/null; then break; fi
  sleep 0.1
done

export AWS_ACCESS_KEY_ID=sandbox AWS_SECRET_ACCESS_KEY=sandbox AWS_REGION=us-east-1
export AWS_ENDPOINT_URL="http://$emu_ip:$port" AWS_EC2_METADATA_DISABLED=true
export POSCLOUD_JOURNAL="$work/journal.jsonl"

# A stand-in POS application (an installer that leaves its version) and a stack that names
# it: qa.toml plus a [pos] section.
mkdir -p "$work/app" "$host_root/srv"
echo 'echo "sandbox POS 1.0" >/opt/pos/app/VERSION' >"$work/app/install.sh"
tar -cf "$host_root/srv/pos-rti.tar" -C "$work/app" install.sh
sum=$(sha256sum "$host_root/srv/pos-rti.tar" | cut -d' ' -f1)
stack="$work/sandbox.toml"
cp "$root/stacks/qa.toml" "$stack"
# Media from the test kickstart (busybox, no yum here); a real stack uses the built-in one.
printf '\n[pos]\napp = "rti"\nversion = "1.0-sandbox"\nkickstart = "%s"\nartifact_url = "file:///srv/pos-rti.tar"\nartifact_sha256 = "%s"\nmemory = "256m"\n' \
  "$root/tests/fixtures/media-test.ks" "$sum" >>"$stack"

reach=(--ssh "$user@$address" --ssh-key "$host/client_key" --host-key-file "$host/ssh_host_ed25519_key.pub")
run() { echo; echo "\$ poscloud $*"; "$bin" "$@"; }
run plan --shop 12345678 --env qa --stack "$stack"
run provision --shop 12345678 --env qa --stack "$stack" "${reach[@]}"
run pos status --shop 12345678 --env qa --stack "$stack" "${reach[@]}"
run image list --shop 12345678 --env qa --stack "$stack" "${reach[@]}"
run pos snapshot --shop 12345678 --env qa --stack "$stack" "${reach[@]}"
run status --shop 12345678 --env qa --stack "$stack"
run list
run teardown --shop 12345678 --env qa --yes
echo
echo "sandbox: done; the journal had $(wc -l <"$POSCLOUD_JOURNAL") lines"
