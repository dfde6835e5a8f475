# shellcheck shell=bash
# restore.sh's manifest: read (parse_manifest), a directory checked against it (verify),
# counted, the result line (finish), and the source's manifest fetched over rsync.
# Sent between lib.sh and restore.sh (src/remote/mod.rs); they use its tmp, manifest,
# names, want, problems, mismatched, data, data_path, state, source_url, src_spec and
# rsync_opts.
# shellcheck disable=SC2154 # those are set by restore.sh

# A name on one line, for messages: backslash as \\ and newline as \n (the manifest's way).
shown() {
  local s=${1//\\/\\\\}
  printf '%s' "${s//$'\n'/\\n}"
}

# parse_manifest FILE NOTE: reads a sha256sum manifest into names[] and want[], and writes
# $tmp/manifest.check, what sha256sum -c reads: the names re-escaped the way every coreutils
# version reads (8.22 on CentOS 7 knows only \\ and \n), so the check and our report agree
# on names. Names are bytes, so python reads them (2.7 and 3.6: CentOS 7's). A manifest
# that cannot be used is reported, then NOTE, and the run ends (exit 3).
parse_manifest() {
  local py h name errors=()
  py=$(python_bin) || fail "no python on this host to read the manifest with"
  "$py" - "$1" "$tmp" >"$tmp/manifest.errors" <<'PY' || fail "reading the manifest failed (python, see above)"
import re, sys
line_re = re.compile(br"^(\\?)([0-9a-fA-F]{64}) ([ *])(.+)$")
out = getattr(sys.stdout, "buffer", sys.stdout)

def shown(n):
    return n.replace(b"\\", b"\\\\").replace(b"\n", b"\\n")

def unescape(s):  # sha256sum's \\ and \n; None for any other escape
    out, i = [], 0
    while i < len(s):
        c = s[i:i + 1]
        if c == b"\\":
            nxt = s[i + 1:i + 2]
            if nxt not in (b"\\", b"n"):
                return None
            out.append(b"\n" if nxt == b"n" else b"\\")
            i += 1
        else:
            out.append(c)
        i += 1
    return b"".join(out)

want, listed, errors = {}, [], []
for n, line in enumerate(open(sys.argv[1], "rb").read().split(b"\n"), 1):
    if not line:
        continue
    m = line_re.match(line)
    if not m:
        errors.append(b"line %d is not '<sha256>  <path>'" % n)
        continue
    name = m.group(4)
    if m.group(1):
        name = unescape(name)
        if name is None:
            errors.append(b"line %d has an unknown escape in its path" % n)
            continue
    # find and rsync say "a/b": accept "./a/b" too, refuse anything that leaves the source.
    while name.startswith(b"./"):
        name = name[2:]
    if any(p in b"/" + name + b"/" for p in (b"/../", b"/./", b"//")):
        errors.append(b"line %d: '" % n + shown(name) + b"' is not a plain relative path")
    elif name in want:
        errors.append(b"line %d lists '" % n + shown(name) + b"' a second time")
    else:
        want[name] = m.group(2).lower()
        listed.append(name)
if not listed and not errors:
    errors.append(b"it lists no files")
with open(sys.argv[2] + "/manifest.check", "wb") as check, open(sys.argv[2] + "/manifest.list", "wb") as nul:
    for name in listed:
        esc = shown(name)
        check.write((b"\\" if esc != name else b"") + want[name] + b"  " + esc + b"\n")
        nul.write(want[name] + b"\0" + name + b"\0")
out.write(b"".join(e + b"\n" for e in errors))
PY
  mapfile -t errors <"$tmp/manifest.errors"
  if ((${#errors[@]})); then
    for e in "${errors[@]}"; do echo "restore: bad manifest $manifest: $e" >&2; done
    echo "restore: $2" >&2
    exit 3
  fi
  names=() want=()
  while IFS= read -r -d '' h && IFS= read -r -d '' name; do
    names+=("$name")
    # shellcheck disable=SC2004 # an associative array (declared by restore.sh)
    want[$name]=$h
  done <"$tmp/manifest.list"
}

# Checks DIR against the parsed manifest: every listed file present and matching, no
# regular file unlisted (the manifest itself aside). Fills problems[] and mismatched[].
# Symlinks and special files are copied as they are but not checked (a manifest made with
# `find -type f` does not list them).
verify() {
  local dir=$1 name rel h check_rc=0
  problems=() mismatched=()
  # The authoritative check; quiet: only failures are printed.
  (cd "$dir" && sha256sum -c --quiet "$tmp/manifest.check") >"$tmp/check.out" 2>&1 || check_rc=$?

  local present=()
  for name in "${names[@]}"; do
    if [[ -f $dir/$name ]]; then
      present+=("$name")
    else
      problems+=("missing: $(shown "$name")")
    fi
  done
  if ((check_rc)); then
    # Which files: hash each from stdin, so no name is ever parsed back from tool output.
    for name in ${present[@]+"${present[@]}"}; do
      h=$(sha256sum <"$dir/$name" 2>/dev/null) || h=unreadable
      if [[ ${h%% *} != "${want[$name]}" ]]; then
        problems+=("mismatch: $(shown "$name")")
        mismatched+=("$name")
      fi
    done
  fi
  while IFS= read -r -d '' name; do
    rel=${name#./}
    [[ $rel != "$manifest" ]] || continue
    [[ -n ${want[$rel]+x} ]] || problems+=("unlisted: $(shown "$rel")")
  done < <(cd "$dir" && find . -type f -print0)

  if ((check_rc && ${#problems[@]} == 0)); then
    # Should not happen (a file changed while we looked?): show sha256sum's own words.
    while IFS= read -r h; do problems+=("sha256sum -c: $h"); done <"$tmp/check.out"
    ((${#problems[@]})) || problems+=("sha256sum -c failed with exit $check_rc")
  fi
  ((${#problems[@]} == 0))
}

# Sets files and bytes for the listed files in DIR.
count() {
  local s
  files=${#names[@]} bytes=0
  while IFS= read -r s; do bytes=$((bytes + s)); done < <(
    cd "$1" && printf '%s\0' "${names[@]}" | xargs -0 stat -L -c %s --
  )
}

finish() { # UNCHANGED MOVED_ASIDE
  local manifest_sha aside_json=null result
  manifest_sha=$(sha256sum <"$data/$manifest")
  manifest_sha=${manifest_sha%% *}
  count "$data"
  [[ -z $2 ]] || aside_json=$(json "$2")
  result=$(printf '{"files":%d,"bytes":%d,"source":%s,"manifest_sha256":"%s","app":"%s","data_dir":%s,"unchanged":%s,"moved_aside":%s}' \
    "$files" "$bytes" "$(json "$source_url")" "$manifest_sha" "$APP" "$(json "$data_path")" "$1" "$aside_json")
  printf '%s\n' "$result" >"$state/phases/restore.done.tmp"
  mv -f "$state/phases/restore.done.tmp" "$state/phases/restore.done"
  echo "POSCLOUD_RESULT $result"
}

# Copies the source's manifest to $1; maps rsync's exit code to ours.
fetch_manifest() {
  local rc=0
  rsync "${rsync_opts[@]}" "$src_spec$manifest" "$1" || rc=$?
  case $rc in
    0) ;;
    23) # "some files could not be transferred": here, the one file asked for.
      echo "restore: missing: $(shown "$manifest")" >&2
      echo "restore: the source has no readable manifest $manifest (see rsync's message above); nothing was changed" >&2
      exit 3
      ;;
    *) fail "could not read $source_url (rsync exit $rc, see above; 'Host key verification failed' means the server's key is not SOURCE_HOST_KEY); nothing was changed" ;;
  esac
}
