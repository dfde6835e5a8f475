#!/usr/bin/env bash
# Renders the host user-data for every built-in stack and validates it with cloud-init's
# schema checker (offline). Fails on any schema error.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# --all-targets: the same dependency features as `cargo test`, so nothing is built twice.
cargo build --quiet --all-targets
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for stack in prod qa dev; do
  ./target/debug/poscloud userdata --shop 12345678 --env "$stack" --region eu-west-1 >"$tmp/$stack.yaml"
  cloud-init schema --config-file "$tmp/$stack.yaml" >"$tmp/$stack.log" 2>&1 || {
    cat "$tmp/$stack.log" >&2
    echo "check-userdata: $stack: schema errors" >&2
    exit 1
  }
  echo "check-userdata: $stack: valid, $(wc -c <"$tmp/$stack.yaml") bytes"
done
