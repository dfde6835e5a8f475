#!/usr/bin/env bash
# Benchmarks (figures, not pass/fail): on one AWS emulator (moto) in one run, measures
#   1. provision of one shop's AWS stack (--until infra) vs bench/baseline.sh, a bash + AWS CLI
#      script that creates the same resources with the same tags and waits: wall time, ratio;
#   2. write and read calls of a fresh provision and of a re-run on the converged stack
#      (from moto's request recording, not from poscloud's own log);
#   3. 40 shops with --parallel 1 vs --parallel 8, and their bulk teardown the same way;
#      again with BENCH_LATENCY_MS (default 50) added to every request by bench/latency.py,
#      as a real region's round trip would (moto on loopback answers at once);
#   4. `poscloud --help` and `poscloud list` start-up time (mean of 20 runs).
# Usage: bash bench/run.sh [--debug]   (release build by default; --debug uses target/debug;
#        BENCH_LOGS=DIR keeps the logs)
# Needs what scripts/setup.sh installs, plus the AWS CLI (v1, pip) in .venv for the baseline.
# Network: loopback only. Every process it starts is stopped by its PID.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
profile=release
[[ ${1:-} == --debug ]] && profile=debug
bash "$root/scripts/setup.sh"
if [[ ! -x $root/.venv/bin/aws ]]; then
  echo "bench: installing the AWS CLI into $root/.venv (baseline only)" >&2
  "$root/.venv/bin/pip" install -q --disable-pip-version-check "awscli==1.*"
fi
if [[ $profile == release ]]; then
  (cd "$root" && cargo build --release --quiet)
else
  (cd "$root" && cargo build --quiet)
fi
bin=$root/target/$profile/poscloud

work=$(mktemp -d)
moto_pid="" lat_pid=""
cleanup() {
  local pid
  # A killed process's wait status is non-zero: under set -e that must not end the cleanup.
  for pid in $lat_pid $moto_pid; do
    if kill "$pid" 2>/dev/null; then wait "$pid" 2>/dev/null || true; fi
  done
  # BENCH_LOGS=DIR keeps the logs (poscloud's, the baseline's, the emulator's).
  [[ -n ${BENCH_LOGS:-} ]] && mkdir -p "$BENCH_LOGS" && cp "$work"/*.log "$BENCH_LOGS"/
  rm -rf "$work"
}
trap cleanup EXIT
trap 'echo "bench: failed at line $LINENO; the last lines of its logs:" >&2; tail -n 15 "$work"/*.log >&2' ERR

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
MOTO_AMIS_PATH="$root/tests/fixtures/amis.json" MOTO_IAM_LOAD_MANAGED_POLICIES=true \
  MOTO_RECORDER_FILEPATH="$work/recording.jsonl" \
  "$root/.venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$work/emulator.log" 2>&1 &
moto_pid=$!
for _ in $(seq 1 100); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
  sleep 0.1
done
emu=http://127.0.0.1:$port
# AWS_DEFAULT_REGION: the CLI v1 of the baseline reads that one.
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export AWS_ENDPOINT_URL=$emu AWS_EC2_METADATA_DISABLED=true
export POSCLOUD_JOURNAL="$work/journal.jsonl"
export PATH="$root/.venv/bin:$PATH"

# The qa profile with room for 40+ stacks (moto reports a fixed 5 Elastic IPs).
stack=$work/bench.toml
sed 's/^vpcs_per_region = 5$/vpcs_per_region = 200\nelastic_ips_per_region = 400/' "$root/stacks/qa.toml" >"$stack"

now() { date +%s.%N; }
secs() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$1" "$2"; }
ratio() { python3 -c "import sys; print(f'{float(sys.argv[1]) / float(sys.argv[2]):.1f}')" "$1" "$2"; }
rec() { curl -fsS -X POST "$emu/moto-api/recorder/$1" >/dev/null; }
counts() { python3 "$root/bench/count.py" "$work/recording.jsonl"; }
field() { python3 -c "import json, sys; print(json.load(sys.stdin)[sys.argv[1]])" "$1"; }
p() { "$bin" "$@" --stack "$stack" >>"$work/poscloud.log" 2>&1; }

echo "bench: poscloud $profile build, moto $("$root/.venv/bin/python" -c 'import moto; print(moto.__version__)'), $(nproc) CPUs" >&2

# 1. One stack: poscloud vs bash + AWS CLI (each on a shop of its own, same emulator).
"$bin" userdata --shop 86000002 --env qa --region us-east-1 >"$work/userdata.txt"
t0=$(now)
p provision --shop 86000001 --env qa --until infra
t1=$(now)
bash "$root/bench/baseline.sh" 86000002 qa "$work/userdata.txt" >>"$work/baseline.log" 2>&1
t2=$(now)
one=$(secs "$t0" "$t1")
base=$(secs "$t1" "$t2")

# 2. Calls of a fresh provision and of a re-run on the converged stack.
rec reset-recording
rec start-recording
p provision --shop 86000003 --env qa --until infra
rec stop-recording
fresh=$(counts)
rec reset-recording
rec start-recording
p provision --shop 86000003 --env qa --until infra
rec stop-recording
again=$(counts)
rec reset-recording
"$bin" teardown --env qa --older-than 0s --yes --parallel 8 >>"$work/poscloud.log" 2>&1

# 3. 40 shops, one at a time and eight at a time; the bulk teardown the same way.
for i in $(seq -w 1 40); do echo "870000$i,qa,$stack"; done >"$work/shops.csv"
batch() {
  local n=$1 t0 t1 t2
  t0=$(now)
  "$bin" provision --shops-file "$work/shops.csv" --parallel "$n" --until infra >>"$work/poscloud.log" 2>&1
  t1=$(now)
  "$bin" teardown --env qa --older-than 0s --yes --parallel "$n" >>"$work/poscloud.log" 2>&1
  t2=$(now)
  echo "$(secs "$t0" "$t1") $(secs "$t1" "$t2")"
}
read -r p1 d1 <<<"$(batch 1)"
read -r p8 d8 <<<"$(batch 8)"

# 3b. The same through the latency proxy (started in the background; its port on stdout).
latency_ms=${BENCH_LATENCY_MS:-50}
python3 "$root/bench/latency.py" "$port" "$latency_ms" >"$work/latency.port" 2>"$work/latency.log" &
lat_pid=$!
for _ in $(seq 1 100); do [[ -s $work/latency.port ]] && break; sleep 0.1; done
read -r lat_port <"$work/latency.port"
read -r lp1 ld1 <<<"$(AWS_ENDPOINT_URL=http://127.0.0.1:$lat_port batch 1)"
read -r lp8 ld8 <<<"$(AWS_ENDPOINT_URL=http://127.0.0.1:$lat_port batch 8)"

# 4. Start-up time (mean of 20 runs).
startup() {
  local t0 t1
  t0=$(now)
  for _ in $(seq 20); do "$@" >/dev/null 2>&1; done
  t1=$(now)
  python3 -c "import sys; print(f'{(float(sys.argv[2]) - float(sys.argv[1])) / 20 * 1000:.0f}')" "$t0" "$t1"
}
help_ms=$(startup "$bin" --help)
list_ms=$(startup "$bin" list)

cat <<EOF

poscloud benchmarks ($profile build, moto on loopback, $(date -u +%Y-%m-%d))
one stack (provision --until infra)   poscloud ${one} s   bash + AWS CLI ${base} s   ratio ${base}/${one} = $(ratio "$base" "$one")x
calls, fresh provision                writes $(field writes <<<"$fresh")   reads $(field reads <<<"$fresh")
calls, re-run on the converged stack  writes $(field writes <<<"$again")   reads $(field reads <<<"$again")
40 shops, provision                   --parallel 1 ${p1} s   --parallel 8 ${p8} s   ratio $(ratio "$p1" "$p8")x
40 shops, teardown --older-than       --parallel 1 ${d1} s   --parallel 8 ${d8} s   ratio $(ratio "$d1" "$d8")x
40 shops, provision, +${latency_ms} ms/request  --parallel 1 ${lp1} s   --parallel 8 ${lp8} s   ratio $(ratio "$lp1" "$lp8")x
40 shops, teardown, +${latency_ms} ms/request   --parallel 1 ${ld1} s   --parallel 8 ${ld8} s   ratio $(ratio "$ld1" "$ld8")x
start-up                              --help ${help_ms} ms   list ${list_ms} ms (20 runs each)
fresh provision write calls: $(python3 -c "import json, sys; print(', '.join(f'{k} {v}' for k, v in sorted(json.loads(sys.argv[1])['write_calls'].items())))" "$fresh")
EOF
