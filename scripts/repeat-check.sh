#!/usr/bin/env bash
# The repeat check for flaky tests (docs/testing.md, "Repeat check"):
#
#   scripts/repeat-check.sh ci N            N fresh clones of this checkout's HEAD, each
#                                           running `.ci/run` as CI does; stops at the first
#                                           failure
#   scripts/repeat-check.sh test NAME N     `cargo test --test NAME` N times in this checkout
#
# Prints one line per run (rc and seconds) and a summary; logs go to $REPEAT_DIR
# (default /tmp/poscloud-repeat). Exit 0 only if every run passed.
set -euo pipefail

usage() {
  echo "usage: repeat-check.sh ci N | test NAME N" >&2
  exit 2
}
(($# >= 2)) || usage
root=$(cd "$(dirname "$0")/.." && pwd)
out=${REPEAT_DIR:-/tmp/poscloud-repeat}
mkdir -p "$out"

mode=$1
case $mode in
  ci)
    (($# == 2)) || usage
    n=$2
    ;;
  test)
    (($# == 3)) || usage
    name=$2 n=$3
    [[ $name =~ ^[a-z0-9_]+$ && -f $root/tests/$name.rs ]] || { echo "repeat-check: no tests/$name.rs" >&2; exit 2; }
    ;;
  *) usage ;;
esac
[[ $n =~ ^[1-9][0-9]*$ ]] || usage

passed=0
for ((i = 1; i <= n; i++)); do
  start=$SECONDS
  rc=0
  if [[ $mode == ci ]]; then
    # A clone beside this checkout, so that ../shared is where CI has it.
    clone=$(dirname "$root")/repeat-clone
    rm -rf "$clone"
    git clone -q "$root" "$clone"
    (cd "$clone" && CI=true bash .ci/run </dev/null >"$out/ci-$i.log" 2>&1) || rc=$?
    log=$out/ci-$i.log
    rm -rf "$clone"
  else
    (cd "$root" && cargo test --test "$name" >"$out/$name-$i.log" 2>&1) || rc=$?
    log=$out/$name-$i.log
  fi
  echo "repeat-check: run $i of $n: rc=$rc in $((SECONDS - start)) s ($log)"
  ((rc == 0)) || break
  passed=$((passed + 1))
done
echo "repeat-check: $passed of $n passed"
((passed == n))
