#!/usr/bin/env bash
# The main job in a local sandbox: starts a test host (a network namespace with sshd, a
# Docker API from podman, strongSwan) and the AWS emulator on the root side of the host's
# veth (so the host can reach it, as a real host reaches S3), provisions shop 12345678 (qa)
# through every phase (bootstrap; build of OS media from a small kickstart, stored in the
# region's cache; stage of the POS container on eth1; ready), shows the POS, its images,
# status and the region's list, takes a snapshot and a backup (listed and verified), tears it
# down, stops everything it started.
# No AWS account is used: credentials are dummies and every call goes to the emulator
# (tests/rig/emulator.py: moto, plus SSM Run Command that runs on the test host through an
# agent stand-in, and the host's console). The emulator's instance is not a machine, so the
# test host stands in for it, bound to the stack's tags; poscloud takes its default path: SSM
# with the online check, the host key pinned from the console. cloud-init does not run there,
# so this script runs the rendered user-data itself (tests/rig/el7/run-userdata.sh), starts
# the agent stand-in and puts the host keys on the console, as the first boot would.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

bash scripts/setup.sh
cargo build --quiet
bin="$root/target/debug/poscloud"

work=$(mktemp -d)
chmod 0755 "$work" # the test host's centos login reads its keys below it
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
host_root=$(sed -n 's/^ROOT=//p' "$work/host.env")

# The emulator listens on the root side of the host's veth only.
emu_ip=10.200.59.1
port=$(python3 -c 'import socket, sys; s = socket.socket(); s.bind((sys.argv[1], 0)); print(s.getsockname()[1])' "$emu_ip")
mkdir -p "$work/hosts"
printf '{"host_dir": "%s", "shop": "12345678", "env": "qa"}\n' "$host" >"$work/hosts/sandbox.json"
# AWS's behaviour modelled in front of moto (tests/rig/aws_model.py): lists a second behind,
# instances pending and shutting down, IAM propagation, dependency and in-use errors.
cat >"$work/aws-model.json" <<'MODEL'
{"list_lag": 1.0, "read_lag": 0.5, "write_lag": 0.3, "pending": 2, "shutting_down": 2,
 "eni_detach": 1, "iam_propagation": 3, "in_use": "alternate", "dependencies": true,
 "client_token": true, "termination_protection": true}
MODEL
MOTO_AMIS_PATH="$root/tests/fixtures/amis.json" MOTO_IAM_LOAD_MANAGED_POLICIES=true \
  "$root/.venv/bin/python" "$root/tests/rig/emulator.py" --hosts "$work/hosts" \
  --aws-model "$work/aws-model.json" -H "$emu_ip" -p "$port" >"$work/emulator.log" 2>&1 &
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

# The first boot, as far as this machine allows: the stack's rendered user-data really runs
# on the test host (CentOS 7's bash; stand-ins only for yum, rpm and systemctl: see
# tests/rig/README.md), then the SSM agent stand-in starts and cloud-init's host-key block
# appears on the console.
echo "sandbox: running the stack's user-data on the test host" >&2
"$bin" userdata --shop 12345678 --env qa --stack "$stack" --region us-east-1 >"$work/userdata.yaml"
bash "$root/tests/rig/el7/run-userdata.sh" run "$host" "$work/userdata.yaml" >"$work/userdata.log" 2>&1 ||
  { tail -n 30 "$work/userdata.log" >&2; echo "sandbox: the user-data failed" >&2; exit 1; }
# The host's own AWS calls (its backups to S3) reach the emulator's IMDS and S3 on the veth.
printf 'POSCLOUD_IMDS_URL=%s\nPOSCLOUD_S3_URL=%s/\n' "$AWS_ENDPOINT_URL" "$AWS_ENDPOINT_URL" >>"$host/agent.env"
bash "$root/tests/rig/testhost.sh" agent-start sandbox "$host"
bash "$root/tests/rig/testhost.sh" console sandbox "$host"

run() { echo; echo "\$ poscloud $*"; "$bin" "$@"; }
run plan --shop 12345678 --env qa --stack "$stack"
run provision --shop 12345678 --env qa --stack "$stack"
run pos status --shop 12345678 --env qa --stack "$stack"
run image list --shop 12345678 --env qa --stack "$stack"
run pos snapshot --shop 12345678 --env qa --stack "$stack"
# A little shop data for the backup (the POS's data directory on the host, at /usr2 inside).
for i in 1 2 3; do printf 'order %s\n' "$i" >"$host_root/var/lib/poscloud/data/rti/order-$i.txt"; done
run backup run --shop 12345678 --env qa --stack "$stack"
run backup list --shop 12345678 --env qa
run backup verify --shop 12345678 --env qa
run status --shop 12345678 --env qa --stack "$stack"
run list
run teardown --shop 12345678 --env qa --yes
echo
echo "sandbox: done; the journal had $(wc -l <"$POSCLOUD_JOURNAL") lines"
