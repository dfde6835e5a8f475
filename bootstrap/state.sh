#!/usr/bin/env bash
# Phase records and the lock of a host that poscloud did not create (`--target ssh://…`):
# kept on the host itself, as SSM keeps them for stacks in AWS.
#
# Inputs (environment):
#   ACTION  get | put | lock | unlock | holder
#   PHASE   get, put: the phase's name (lowercase letters)
#   VALUE   put: the phase's record (JSON); lock: the holder (JSON)
#   FORCE   unlock: 1 removes the lock whoever holds it (--break-lock)
# POSCLOUD_ROOT prefixes host paths: empty on a real host, a test host's own directory in tests.
# Result line: get/holder: {"value": <record or holder, or null>}; put: {"stored":true};
# lock: {"locked":true} or {"locked":false,"holder":<the other holder>}; unlock: {"unlocked":bool}.
# Exit codes: 0 done, 1 failure, 2 bad input.
set -euo pipefail
# shellcheck source=lib.sh
declare -F poscloud_lib >/dev/null || . "${BASH_SOURCE[0]%/*}/lib.sh"
me=state

dir="${POSCLOUD_ROOT:-}/var/lib/poscloud"
lock="$dir/lock"
action=${ACTION:-}
value_of() { if [[ -s $1 ]]; then tr -d '\n' <"$1"; else echo null; fi; }

case $action in
  get | put)
    [[ ${PHASE:-} =~ ^[a-z]{1,20}$ ]] || bad "PHASE must be a phase name"
    record="$dir/phases/$PHASE.json"
    if [[ $action == get ]]; then
      echo "POSCLOUD_RESULT {\"value\":$(value_of "$record")}"
    else
      [[ ${VALUE:-} == \{*\} && $VALUE != *$'\n'* ]] || bad "VALUE must be one line of JSON"
      mkdir -p "$dir/phases"
      printf '%s\n' "$VALUE" >"$record.tmp"
      mv -f "$record.tmp" "$record"
      echo 'POSCLOUD_RESULT {"stored":true}'
    fi
    ;;
  lock)
    [[ ${VALUE:-} == \{*\} && $VALUE != *$'\n'* ]] || bad "VALUE must be one line of JSON"
    mkdir -p "$dir"
    # mkdir is atomic: of two runs at once, exactly one creates the directory.
    if mkdir "$lock" 2>/dev/null; then
      printf '%s\n' "$VALUE" >"$lock/holder.json"
      echo 'POSCLOUD_RESULT {"locked":true}'
    else
      echo "POSCLOUD_RESULT {\"locked\":false,\"holder\":$(value_of "$lock/holder.json")}"
    fi
    ;;
  unlock)
    # Only the holder (same VALUE) releases the lock, unless FORCE=1.
    if [[ -d $lock ]] && { [[ ${FORCE:-0} == 1 ]] || [[ "$(value_of "$lock/holder.json")" == "${VALUE:-}" ]]; }; then
      rm -rf -- "$lock"
      echo 'POSCLOUD_RESULT {"unlocked":true}'
    else
      echo 'POSCLOUD_RESULT {"unlocked":false}'
    fi
    ;;
  holder)
    echo "POSCLOUD_RESULT {\"value\":$(value_of "$lock/holder.json")}"
    ;;
  *) bad "ACTION must be get, put, lock, unlock or holder" ;;
esac
