#!/usr/bin/env bash
# Runs every check and test: formatting, lints, shell scripts, unit and integration tests
# (the integration tests start their own AWS emulator per test on loopback).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
export CARGO_TERM_COLOR=never

echo "== cargo fmt --check"
cargo fmt --check
echo "== shellcheck"
shellcheck scripts/*.sh .ci/run userdata/*.sh bootstrap/*.sh tests/rig/*.sh tests/rig/el7/* bench/*.sh
echo "== user-data: cloud-init schema for every stack"
bash scripts/check-userdata.sh
echo "== cargo clippy -- -D warnings"
cargo clippy --all-targets --quiet -- -D warnings
echo "== cargo test"
cargo test --no-fail-fast 2>&1 | tee target/test-output.log
