#!/usr/bin/env bash
# Renders the host user-data for every built-in stack and every example stack
# (stacks/examples/*.toml, which also checks that each parses and validates) and validates it
# with cloud-init's schema checker (offline). Fails on any schema or stack error.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# --all-targets: the same dependency features as `cargo test`, so nothing is built twice.
cargo build --quiet --all-targets
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
check() { # NAME, then the poscloud arguments
  local name=$1
  shift
  ./target/debug/poscloud userdata --shop 12345678 --region eu-west-1 "$@" >"$tmp/$name.yaml" || {
    echo "check-userdata: $name: poscloud userdata failed" >&2
    exit 1
  }
  cloud-init schema --config-file "$tmp/$name.yaml" >"$tmp/$name.log" 2>&1 || {
    cat "$tmp/$name.log" >&2
    echo "check-userdata: $name: schema errors" >&2
    exit 1
  }
  echo "check-userdata: $name: valid, $(wc -c <"$tmp/$name.yaml") bytes"
}
for stack in prod qa dev; do
  check "$stack" --env "$stack"
done
for file in stacks/examples/*.toml; do
  check "examples-$(basename "$file" .toml)" --env prod --stack "$file"
done
