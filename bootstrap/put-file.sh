#!/usr/bin/env bash
# Puts a file on the host: DEST (absolute path, below POSCLOUD_ROOT on test hosts), MODE
# (octal, e.g. 0644), CONTENT_B64 (the content, base64). Written atomically; safe to repeat.
set -euo pipefail
# shellcheck source=lib.sh
declare -F poscloud_lib >/dev/null || . "${BASH_SOURCE[0]%/*}/lib.sh"
me=put-file
: "${DEST:?DEST is required}" "${MODE:?MODE is required}" "${CONTENT_B64?CONTENT_B64 is required}"
[[ $DEST == /* && $DEST != *..* ]] || bad "DEST must be an absolute path without .."
[[ $MODE =~ ^0?[0-7]{3}$ ]] || bad "MODE must be octal like 0644"
dest="${POSCLOUD_ROOT:-}$DEST"
mkdir -p "$(dirname "$dest")"
tmp=$(mktemp "$dest.XXXXXX")
trap 'rm -f "$tmp"' EXIT
printf '%s' "$CONTENT_B64" | base64 -d >"$tmp"
chmod "$MODE" "$tmp"
mv -f "$tmp" "$dest"
trap - EXIT
say "wrote $DEST ($(wc -c <"$dest") bytes, mode $MODE)"
