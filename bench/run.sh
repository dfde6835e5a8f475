#!/usr/bin/env bash
# Benchmarks (figures, not pass/fail), each setting on a fresh emulator (tests/rig/emulator.py:
# moto with the AWS model of tests/rig/aws_model.py, off unless said):
#   1. one shop's AWS stack (--until infra): provision, converged re-run and teardown vs
#      bench/baseline.sh and bench/baseline-teardown.sh (bash + the AWS CLI), at 0 ms and at
#      BENCH_LATENCY_MS (default 50) a request, added by bench/latency.py as a real region's
#      round trip would be; the sequential round trips of each: the time the latency added,
#      over the latency;
#   2. write and read calls of a fresh provision, a converged re-run and a teardown (from
#      moto's request recording, not from poscloud's own log);
#   3. provision and teardown through the model of AWS's waits (IAM propagation 10 s,
#      pending 8 s, shutting-down 8 s, lists 2 s behind), at the latency;
#   4. 40 shops with --parallel 1 vs --parallel 8 and their bulk teardown, at the latency;
#      8 shops the same way through the waits model;
#   5. `poscloud --help` and `poscloud list` start-up time (mean of 20 runs).
# Usage: bash bench/run.sh [--debug]   (release build by default; --debug uses target/debug;
#        BENCH_BIN=PATH uses that binary; BENCH_LOGS=DIR keeps the logs)
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
if [[ -n ${BENCH_BIN:-} ]]; then
  # A binary built before (e.g. copied aside, so that a build during the bench cannot
  # replace it).
  bin=$BENCH_BIN profile="given ($BENCH_BIN)"
elif [[ $profile == release ]]; then
  (cd "$root" && cargo build --release --quiet)
  bin=$root/target/release/poscloud
else
  (cd "$root" && cargo build --quiet)
  bin=$root/target/debug/poscloud
fi

work=$(mktemp -d)
emu_pid="" lat_pid="" n_emu=0
stop_emulator() {
  local pid
  # A killed process's wait status is non-zero: under set -e that must not end the caller.
  for pid in $lat_pid $emu_pid; do
    if kill "$pid" 2>/dev/null; then wait "$pid" 2>/dev/null || true; fi
  done
  lat_pid="" emu_pid=""
}
cleanup() {
  stop_emulator
  # BENCH_LOGS=DIR keeps the logs (poscloud's, the baseline's, the emulators').
  [[ -n ${BENCH_LOGS:-} ]] && mkdir -p "$BENCH_LOGS" && cp "$work"/*.log "$BENCH_LOGS"/
  rm -rf "$work"
}
trap cleanup EXIT
trap 'echo "bench: failed at line $LINENO; the last lines of its logs:" >&2; tail -n 15 "$work"/*.log >&2' ERR

# A fresh emulator with the AWS model MODEL_JSON, behind the latency proxy when LATENCY_MS
# is not 0; AWS_ENDPOINT_URL then names what poscloud and the baseline talk to.
start_emulator() { # MODEL_JSON [LATENCY_MS]
  local port
  stop_emulator
  n_emu=$((n_emu + 1))
  # Room for 40+ stacks: quota values applied in the rig's Service Quotas (AWS's defaults
  # are 5 VPCs and 5 Elastic IPs a region).
  python3 -c 'import json, sys; m = json.loads(sys.argv[1]); m.setdefault("quotas", {"vpc/L-F678F1CE": 200, "ec2/L-0263D0A3": 400}); print(json.dumps(m))' "$1" >"$work/model-$n_emu.json"
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  MOTO_AMIS_PATH="$root/tests/fixtures/amis.json" MOTO_IAM_LOAD_MANAGED_POLICIES=true \
    MOTO_RECORDER_FILEPATH="$work/recording.jsonl" \
    "$root/.venv/bin/python" "$root/tests/rig/emulator.py" --aws-model "$work/model-$n_emu.json" \
    -H 127.0.0.1 -p "$port" >"$work/emulator-$n_emu.log" 2>&1 &
  emu_pid=$!
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
    sleep 0.1
  done
  emu=http://127.0.0.1:$port
  export AWS_ENDPOINT_URL=$emu
  # moto builds its EC2 (AMIs) and IAM (managed policies) backends on their first call,
  # which takes a second or more: done here, outside what is measured.
  "$bin" list >/dev/null 2>&1
  if [[ ${2:-0} != 0 ]]; then
    python3 "$root/bench/latency.py" "$port" "$2" >"$work/latency.port" 2>>"$work/latency.log" &
    lat_pid=$!
    for _ in $(seq 1 100); do [[ -s $work/latency.port ]] && break; sleep 0.1; done
    AWS_ENDPOINT_URL=http://127.0.0.1:$(cat "$work/latency.port")
    rm -f "$work/latency.port"
  fi
}

# AWS_DEFAULT_REGION: the CLI v1 of the baseline reads that one.
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true
export POSCLOUD_JOURNAL="$work/journal.jsonl"
export PATH="$root/.venv/bin:$PATH"

# The qa profile (the quotas' room is the emulator's: start_emulator).
stack=$work/bench.toml
cp "$root/stacks/qa.toml" "$stack"

now() { date +%s.%N; }
secs() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$1" "$2"; }
ratio() { python3 -c "import sys; print(f'{float(sys.argv[1]) / float(sys.argv[2]):.1f}')" "$1" "$2"; }
# Sequential round trips: the time the latency added, over the latency of one request.
trips() { python3 -c "import sys; print(f'{(float(sys.argv[2]) - float(sys.argv[1])) * 1000 / float(sys.argv[3]):.0f}')" "$1" "$2" "$3"; }
rec() { curl -fsS -X POST "$emu/moto-api/recorder/$1" >/dev/null; }
field() { python3 -c "import json, sys; print(json.load(sys.stdin)[sys.argv[1]])" "$1"; }
p() { "$bin" "$@" --stack "$stack" >>"$work/poscloud.log" 2>&1; }
timed() { # COMMAND...: prints its wall time in seconds
  local t0 t1
  t0=$(now)
  "$@"
  t1=$(now)
  secs "$t0" "$t1"
}
counted() { # COMMAND...: prints its AWS calls, counted from moto's recording
  rec reset-recording
  rec start-recording
  "$@"
  rec stop-recording
  python3 "$root/bench/count.py" "$work/recording.jsonl"
}

echo "bench: poscloud $profile build, moto $("$root/.venv/bin/python" -c 'import moto; print(moto.__version__)'), $(nproc) CPUs" >&2
L=${BENCH_LATENCY_MS:-50}
"$bin" userdata --shop 86000002 --env qa --region us-east-1 >"$work/userdata.txt"
base_up() { bash "$root/bench/baseline.sh" 86000002 qa "$work/userdata.txt" >>"$work/baseline.log" 2>&1; }
base_down() { bash "$root/bench/baseline-teardown.sh" 86000002 qa >>"$work/baseline.log" 2>&1; }

# 1. One stack, poscloud vs bash + AWS CLI, at 0 ms and at $L ms a request (a fresh emulator
#    each; the AWS model off, since the baseline has no answer to eventual consistency).
declare -A up again down bup bdown
for ms in 0 "$L"; do
  start_emulator '{}' "$ms"
  up[$ms]=$(timed p provision --shop 86000001 --env qa --until infra)
  again[$ms]=$(timed p provision --shop 86000001 --env qa --until infra)
  bup[$ms]=$(timed base_up)
  down[$ms]=$(timed p teardown --shop 86000001 --env qa --yes)
  bdown[$ms]=$(timed base_down)
done

# 2. Calls of a fresh provision, of a re-run on the converged stack, of a teardown.
start_emulator '{}'
fresh=$(counted p provision --shop 86000003 --env qa --until infra)
converged=$(counted p provision --shop 86000003 --env qa --until infra)
removed=$(counted p teardown --shop 86000003 --env qa --yes)

# 3. Through the model of AWS's waits, at $L ms a request.
waits='{"list_lag": 2, "read_lag": 1, "write_lag": 0.5, "pending": 8, "shutting_down": 8, "eni_detach": 1, "iam_propagation": 10, "dependencies": true, "client_token": true, "termination_protection": true}'
start_emulator "$waits" "$L"
wup=$(timed p provision --shop 86000004 --env qa --until infra)
wdown=$(timed p teardown --shop 86000004 --env qa --yes)

# 4. Batches: 40 shops at $L ms a request, one at a time and eight at a time, and their bulk
#    teardown the same way; 8 shops through the waits model the same way.
for i in $(seq -w 1 40); do echo "870000$i,qa,$stack"; done >"$work/shops40.csv"
for i in $(seq -w 11 18); do echo "880000$i,qa,$stack"; done >"$work/shops8.csv"
batch() { # SHOPS_FILE PARALLEL: prints provision and teardown seconds
  local t0 t1 t2
  t0=$(now)
  "$bin" provision --shops-file "$1" --parallel "$2" --until infra >>"$work/poscloud.log" 2>&1
  t1=$(now)
  "$bin" teardown --env qa --older-than 0s --yes --parallel "$2" >>"$work/poscloud.log" 2>&1
  t2=$(now)
  echo "$(secs "$t0" "$t1") $(secs "$t1" "$t2")"
}
start_emulator '{}' "$L"
read -r lp1 ld1 <<<"$(batch "$work/shops40.csv" 1)"
start_emulator '{}' "$L"
read -r lp8 ld8 <<<"$(batch "$work/shops40.csv" 8)"
start_emulator "$waits" "$L"
read -r wp1 wd1 <<<"$(batch "$work/shops8.csv" 1)"
start_emulator "$waits" "$L"
read -r wp8 wd8 <<<"$(batch "$work/shops8.csv" 8)"

# 5. Start-up time (mean of 20 runs), on a fresh emulator.
start_emulator '{}'
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

poscloud benchmarks ($profile build, tests/rig/emulator.py on loopback, $(date -u +%Y-%m-%d))
one stack, provision --until infra, 0 ms    poscloud ${up[0]} s   bash + AWS CLI ${bup[0]} s   ratio $(ratio "${bup[0]}" "${up[0]}")x
one stack, provision --until infra, $L ms   poscloud ${up[$L]} s   bash + AWS CLI ${bup[$L]} s   ratio $(ratio "${bup[$L]}" "${up[$L]}")x
one stack, teardown, 0 ms                   poscloud ${down[0]} s   bash + AWS CLI ${bdown[0]} s   ratio $(ratio "${bdown[0]}" "${down[0]}")x
one stack, teardown, $L ms                  poscloud ${down[$L]} s   bash + AWS CLI ${bdown[$L]} s   ratio $(ratio "${bdown[$L]}" "${down[$L]}")x
sequential round trips (added time / $L ms)  provision $(trips "${up[0]}" "${up[$L]}" "$L")   converged re-run $(trips "${again[0]}" "${again[$L]}" "$L")   teardown $(trips "${down[0]}" "${down[$L]}" "$L")   bash + AWS CLI: provision $(trips "${bup[0]}" "${bup[$L]}" "$L"), teardown $(trips "${bdown[0]}" "${bdown[$L]}" "$L")
calls, fresh provision                      writes $(field writes <<<"$fresh")   reads $(field reads <<<"$fresh")
calls, re-run on the converged stack        writes $(field writes <<<"$converged")   reads $(field reads <<<"$converged")
calls, teardown                             writes $(field writes <<<"$removed")   reads $(field reads <<<"$removed")
AWS waits model, $L ms                      provision ${wup} s   teardown ${wdown} s
40 shops, provision, $L ms                  --parallel 1 ${lp1} s   --parallel 8 ${lp8} s   ratio $(ratio "$lp1" "$lp8")x
40 shops, teardown --older-than, $L ms      --parallel 1 ${ld1} s   --parallel 8 ${ld8} s   ratio $(ratio "$ld1" "$ld8")x
8 shops, waits model, provision, $L ms      --parallel 1 ${wp1} s   --parallel 8 ${wp8} s   ratio $(ratio "$wp1" "$wp8")x
8 shops, waits model, teardown, $L ms       --parallel 1 ${wd1} s   --parallel 8 ${wd8} s   ratio $(ratio "$wd1" "$wd8")x
start-up                                    --help ${help_ms} ms   list ${list_ms} ms (20 runs each)
fresh provision write calls: $(python3 -c "import json, sys; print(', '.join(f'{k} {v}' for k, v in sorted(json.loads(sys.argv[1])['write_calls'].items())))" "$fresh")
EOF
