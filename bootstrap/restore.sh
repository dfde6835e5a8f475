#!/usr/bin/env bash
# Restore phase: brings the POS app's customer data from a backup SOURCE into DATA_DIR.
# The source is copied into a staging directory next to DATA_DIR, every file is checked
# against the source's sha256sum manifest, and only then is the copy swapped into place.
# The previous DATA_DIR is moved aside (DATA_DIR.before-restore-<UTC time>), never deleted.
#
# Inputs (environment):
#   SHOP             8 digits
#   APP              rti | daisy
#   DATA_DIR         absolute path of the data directory on the host (e.g. /usr2, /d)
#   SOURCE           ssh://user@host[:port]/absolute/path/  (rsync over SSH, e.g. the old
#                    backup server's /backups/tfrsync-<shop>/) or file:///absolute/path/
#                    (a directory already on the host)
#   SOURCE_KEY_FILE  ssh:// only: path on the host of the private key for the backup server
#   SOURCE_HOST_KEY  ssh:// only: the backup server's public host key line
#                    ("ssh-ed25519 AAAA..."), pinned: no other key is accepted
#   MANIFEST         file name in the source root, sha256sum format (default MANIFEST.sha256)
# POSCLOUD_ROOT prefixes host paths (DATA_DIR, SOURCE_KEY_FILE, file:// paths): empty on a
# real host, a test host's own directory in tests. Paths on the backup server are not.
#
# Exit codes: 0 restored (or already restored), 1 failure (transfer, disk, lock, tools),
# 2 bad input, 3 the copy does not match the manifest (DATA_DIR untouched; the copy stays in
# DATA_DIR.restore-staging for inspection). Bad files are named on stderr, one per line:
# "restore: mismatch|missing|unlisted: <path>", with backslash shown as \\ and newline as \n
# (the manifest's own escaping), so every name stays on one line.
#
# Running it again: when DATA_DIR already holds the same manifest and every file verifies,
# nothing is moved (the data may be large, and the app may have it open); otherwise the
# restore is done again and the current DATA_DIR is moved aside like the first time.
set -euo pipefail
# Names are bytes: byte-wise patterns and regexes whatever the host's locale.
export LC_ALL=C

bad() { echo "restore: $*" >&2; exit 2; }
fail() { echo "restore: $*" >&2; exit 1; }
bs=$'\\'

# ---- inputs ---------------------------------------------------------------------------
[[ ${SHOP:-} =~ ^[0-9]{8}$ ]] || bad "SHOP must be 8 digits, got '${SHOP:-}'"
[[ ${APP:-} =~ ^(rti|daisy)$ ]] || bad "APP must be rti or daisy, got '${APP:-}'"

[[ ${DATA_DIR:-} == /* ]] || bad "DATA_DIR must be an absolute path, got '${DATA_DIR:-}'"
[[ $DATA_DIR != *[[:cntrl:]]* ]] || bad "DATA_DIR must not contain control characters"
data_path=$DATA_DIR
while [[ $data_path == */ ]]; do data_path=${data_path%/}; done
case $data_path/ in
  */../* | */./* | *//*) bad "DATA_DIR must be a plain absolute path (no '.', '..' or '//'), got '$DATA_DIR'" ;;
esac
# A typo must not move the host's own directories aside.
case $data_path in
  "" | /bin | /boot | /dev | /etc | /home | /lib | /lib64 | /opt | /proc | /root | /run | /sbin | /srv | /sys | /tmp | /usr | /usr/* | /var | /var/lib | /var/log)
    bad "DATA_DIR '$DATA_DIR' is a system directory, not a data directory" ;;
esac

source_url=${SOURCE:-}
[[ $source_url != *[[:cntrl:]]* ]] || bad "SOURCE must not contain control characters"
# Host and user start with a letter or digit so that they can never pass for ssh options.
ssh_re='^ssh://([A-Za-z0-9_][A-Za-z0-9._-]*)@([A-Za-z0-9][A-Za-z0-9.-]*)(:([0-9]{1,5}))?(/.*)$'
if [[ $source_url =~ $ssh_re ]]; then
  kind="ssh"
  src_user=${BASH_REMATCH[1]} src_host=${BASH_REMATCH[2]} src_path=${BASH_REMATCH[5]}
  src_port=$((10#${BASH_REMATCH[4]:-22}))
  ((src_port >= 1 && src_port <= 65535)) || bad "SOURCE port must be 1-65535, got '${BASH_REMATCH[4]}'"
elif [[ $source_url =~ ^file://(/.*)$ ]]; then
  kind="file"
  src_path=${BASH_REMATCH[1]}
else
  bad "SOURCE must be ssh://user@host[:port]/absolute/path/ or file:///absolute/path/, got '$source_url'"
fi
case $src_path/ in
  */../* | */./*) bad "the SOURCE path must not contain '.' or '..' components, got '$src_path'" ;;
esac
while [[ $src_path == */ ]]; do src_path=${src_path%/}; done
[[ -n $src_path ]] || bad "the SOURCE path must not be /"

manifest=${MANIFEST:-MANIFEST.sha256}
[[ -n $manifest && $manifest != */* && $manifest != .* && $manifest != *[[:cntrl:]]* ]] ||
  bad "MANIFEST must be a plain file name in the source root, got '$manifest'"

root=${POSCLOUD_ROOT:-}
data=$root$data_path
staging=$data.restore-staging
state=$root/var/lib/poscloud

if [[ $kind == ssh ]]; then
  [[ ${SOURCE_KEY_FILE:-} == /* && $SOURCE_KEY_FILE != *[[:cntrl:]]* ]] ||
    bad "an ssh:// SOURCE needs SOURCE_KEY_FILE: the absolute path of the private key on the host (a path, not the key)"
  key_file=$root$SOURCE_KEY_FILE
  [[ -f $key_file && -r $key_file ]] || bad "SOURCE_KEY_FILE $SOURCE_KEY_FILE is not a readable file on the host"
  [[ -n ${SOURCE_HOST_KEY:-} && $SOURCE_HOST_KEY != *[[:cntrl:]]* ]] ||
    bad "an ssh:// SOURCE needs SOURCE_HOST_KEY: the backup server's public host key line ('ssh-ed25519 AAAA...')"
  read -r hk_type hk_blob _ <<<"$SOURCE_HOST_KEY" || true
  [[ ${hk_type:-} =~ ^(ssh-ed25519|ecdsa-sha2-nistp(256|384|521)|ssh-rsa)$ && ${hk_blob:-} =~ ^AAAA[A-Za-z0-9+/]+={0,2}$ ]] ||
    bad "SOURCE_HOST_KEY must be a public host key line like 'ssh-ed25519 AAAA...'"
fi

# The data directory is replaced by renames: it must be a real directory on the same
# filesystem as its parent (a mount point cannot be renamed; a symlink would be replaced).
if [[ -L $data ]]; then
  bad "DATA_DIR $data_path is a symlink: pass the directory it points to"
elif [[ -e $data && ! -d $data ]]; then
  bad "DATA_DIR $data_path exists and is not a directory"
elif [[ -d $data ]] && mountpoint -q "$data"; then
  bad "DATA_DIR $data_path is a mount point and cannot be swapped: restore into a directory inside it"
fi
if [[ $kind == file ]]; then
  # A source inside the data directory (or the reverse) would copy into itself.
  src_real=$(readlink -m "$root$src_path") data_real=$(readlink -m "$data")
  for p in "$data_real" "$data_real.restore-staging"; do
    if [[ $src_real/ == "$p"/* || $p/ == "$src_real"/* ]]; then
      bad "SOURCE $src_path and DATA_DIR $data_path overlap"
    fi
  done
fi

for tool in rsync sha256sum flock find xargs stat readlink mktemp; do
  command -v "$tool" >/dev/null || fail "'$tool' is not installed on the host"
done
if [[ $kind == ssh ]]; then
  for tool in ssh ssh-keygen; do
    command -v "$tool" >/dev/null || fail "'$tool' is not installed on the host"
  done
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/poscloud-restore.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# The path goes into ssh -o options and rsync -e, which split on spaces.
[[ $tmp =~ ^[A-Za-z0-9._/+-]+$ ]] || fail "temporary directory '$tmp' has unusual characters: set TMPDIR"

rsync_opts=(-a -H -s --numeric-ids)
if [[ $kind == ssh ]]; then
  # Pinned host key: a temporary known_hosts holding only SOURCE_HOST_KEY under a fixed
  # alias, and StrictHostKeyChecking=yes, so an unknown or changed key is refused before
  # the key file is ever offered.
  printf 'poscloud-restore-source %s %s\n' "$hk_type" "$hk_blob" >"$tmp/known_hosts"
  fingerprint=$(ssh-keygen -l -f "$tmp/known_hosts" 2>/dev/null) ||
    bad "SOURCE_HOST_KEY is not a valid public key"
  read -r _ fingerprint _ <<<"$fingerprint"
  ssh_cmd=(ssh -F /dev/null -i "$key_file" -p "$src_port"
    -o IdentitiesOnly=yes -o BatchMode=yes -o HostKeyAlias=poscloud-restore-source
    -o UserKnownHostsFile="$tmp/known_hosts" -o GlobalKnownHostsFile=/dev/null
    -o StrictHostKeyChecking=yes -o CheckHostIP=no -o UpdateHostKeys=no
    -o ConnectTimeout=30 -o ServerAliveInterval=30 -o ServerAliveCountMax=10 -o LogLevel=ERROR)
  # A wrapper, so that the key path reaches ssh as one argument whatever it holds; run by
  # bash, so that a noexec /tmp does not matter.
  {
    echo '#!/usr/bin/env bash'
    printf 'exec'
    printf ' %q' "${ssh_cmd[@]}"
    # shellcheck disable=SC2016 # "$@" is for the wrapper, not for us
    printf ' "$@"\n'
  } >"$tmp/ssh"
  rsync_opts+=(-e "bash $tmp/ssh")
  src_spec=$src_user@$src_host:$src_path/
  echo "restore: source $source_url (rsync over SSH, host key pinned: $fingerprint)"
else
  src_spec=$root$src_path/
  echo "restore: source $source_url (a directory on this host)"
fi

mkdir -p "$state/phases"
exec 9>"$state/restore.lock"
flock -n 9 || fail "another restore is running on this host (lock $state/restore.lock)"

# ---- the manifest -----------------------------------------------------------------------
names=()            # manifest order
declare -A want=()  # name -> sha256
manifest_errors=()

# sha256sum marks lines whose name holds a backslash or newline with a leading backslash
# and escapes them as \\ and \n. Sets $unescaped; returns 1 on any other escape.
unescape() {
  local s=$1 c
  unescaped=""
  while [[ -n $s ]]; do
    c=${s:0:1} s=${s:1}
    if [[ $c == "$bs" ]]; then
      case ${s:0:1} in
        "$bs") unescaped+=$bs ;;
        n) unescaped+=$'\n' ;;
        *) return 1 ;;
      esac
      s=${s:1}
    else
      unescaped+=$c
    fi
  done
}

# Escapes backslash as \\ and newline as \n (the manifest's way); sets $escaped. A loop
# rather than ${s//...}: quoting in the replacement differs between bash 4.2 and 5.x.
escape() {
  local s=$1 c
  escaped=$s
  [[ $s == *"$bs"* || $s == *$'\n'* ]] || return 0
  escaped=""
  while [[ -n $s ]]; do
    c=${s:0:1} s=${s:1}
    case $c in
      "$bs") escaped+=$bs$bs ;;
      $'\n') escaped+=${bs}n ;;
      *) escaped+=$c ;;
    esac
  done
}

# A name on one line, for messages.
shown() {
  escape "$1"
  printf '%s' "$escaped"
}

parse_manifest() {
  local file=$1 line name n=0 re='^(\\?)([0-9a-fA-F]{64}) ([ *])(.+)$'
  names=() want=() manifest_errors=()
  while IFS= read -r line || [[ -n $line ]]; do
    n=$((n + 1))
    [[ -n $line ]] || continue
    if ! [[ $line =~ $re ]]; then
      manifest_errors+=("line $n is not '<sha256>  <path>'")
      continue
    fi
    name=${BASH_REMATCH[4]}
    if [[ -n ${BASH_REMATCH[1]} ]]; then
      if ! unescape "$name"; then
        manifest_errors+=("line $n has an unknown escape in its path")
        continue
      fi
      name=$unescaped
    fi
    # find and rsync say "a/b": accept "./a/b" too, refuse anything that leaves the source.
    while [[ $name == ./* ]]; do name=${name#./}; done
    case /$name/ in
      */../* | */./* | *//*)
        manifest_errors+=("line $n: '$(shown "$name")' is not a plain relative path")
        continue
        ;;
    esac
    if [[ -n ${want[$name]+x} ]]; then
      manifest_errors+=("line $n lists '$(shown "$name")' a second time")
      continue
    fi
    names+=("$name")
    want[$name]=${BASH_REMATCH[2],,}
  done <"$file"
  ((${#names[@]} > 0 || ${#manifest_errors[@]} > 0)) || manifest_errors+=("it lists no files")

  # What sha256sum -c reads: our parse, re-escaped the way every coreutils version reads
  # (8.22 on CentOS 7 knows only \\ and \n), so the check and our report agree on names.
  for name in ${names[@]+"${names[@]}"}; do
    escape "$name"
    if [[ $escaped != "$name" ]]; then
      printf '\\%s  %s\n' "${want[$name]}" "$escaped"
    else
      printf '%s  %s\n' "${want[$name]}" "$name"
    fi
  done >"$tmp/manifest.check"
}

# Checks DIR against the parsed manifest: every listed file present and matching, no
# regular file unlisted (the manifest itself aside). Fills problems[] and mismatched[].
# Symlinks and special files are copied as they are but not checked (a manifest made with
# `find -type f` does not list them).
problems=()
mismatched=()
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

# A JSON string; inputs hold no control characters (checked at the top).
json_str() {
  local s=$1 c out=""
  while [[ -n $s ]]; do
    c=${s:0:1} s=${s:1}
    case $c in
      "$bs" | '"') out+=$bs$c ;;
      *) out+=$c ;;
    esac
  done
  printf '"%s"' "$out"
}

finish() { # UNCHANGED MOVED_ASIDE
  local manifest_sha aside_json=null result
  manifest_sha=$(sha256sum <"$data/$manifest")
  manifest_sha=${manifest_sha%% *}
  count "$data"
  [[ -z $2 ]] || aside_json=$(json_str "$2")
  result=$(printf '{"files":%d,"bytes":%d,"source":%s,"manifest_sha256":"%s","app":"%s","data_dir":%s,"unchanged":%s,"moved_aside":%s}' \
    "$files" "$bytes" "$(json_str "$source_url")" "$manifest_sha" "$APP" "$(json_str "$data_path")" "$1" "$aside_json")
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

# ---- already restored? ----------------------------------------------------------------
# Fetching the manifest first also proves the connection (and the pinned key) before any
# data moves.
fetch_manifest "$tmp/manifest"
parse_manifest "$tmp/manifest"
if ((${#manifest_errors[@]})); then
  for e in "${manifest_errors[@]}"; do echo "restore: bad manifest $manifest: $e" >&2; done
  echo "restore: the source's manifest cannot be used; nothing was changed" >&2
  exit 3
fi
echo "restore: manifest $manifest lists ${#names[@]} files"

if [[ -f $data/$manifest && "$(sha256sum <"$data/$manifest")" == "$(sha256sum <"$tmp/manifest")" ]]; then
  echo "restore: $data_path holds this manifest already; checking it in place"
  if verify "$data"; then
    echo "restore: every file in $data_path matches the manifest: already restored, nothing moved"
    [[ ! -d $staging ]] || echo "restore: note: $staging is left from an earlier failed run; remove it when no longer needed"
    finish true ""
    exit 0
  fi
  echo "restore: $data_path differs from the manifest in ${#problems[@]} files (e.g. $(printf '%s' "${problems[0]}")): restoring again; its current content is kept aside"
fi

# ---- copy into staging ----------------------------------------------------------------
[[ ! -e $staging || (-d $staging && ! -L $staging) ]] ||
  fail "$staging exists and is not a directory: move it away and run again"
# Files that failed the last check are fetched afresh: rsync's quick check (size and time)
# would keep a bad copy whose size and time happen to match the source.
refetch=$state/restore.refetch
# True when NAME is a regular file reached through real directories of staging only: the
# source may hold symlinks (say a -> /etc), and a removal must never follow one.
in_staging() {
  local rel=$1 p=$staging
  case /$rel/ in */../* | */./* | *//*) return 1 ;; esac
  while [[ $rel == */* ]]; do
    p+=/${rel%%/*}
    rel=${rel#*/}
    [[ -d $p && ! -L $p ]] || return 1
  done
  [[ -f $p/$rel && ! -L $p/$rel ]]
}
if [[ -f $refetch ]]; then
  if [[ -d $staging ]]; then
    while IFS= read -r -d '' name; do
      if in_staging "$name"; then rm -f -- "$staging/$name"; fi
    done <"$refetch"
  fi
  rm -f "$refetch"
fi
mkdir -p "$(dirname "$data")"
mkdir -p "$staging"
echo "restore: copying into $staging"
rc=0
# --delete applies to the staging copy only: it makes staging mirror the source.
rsync "${rsync_opts[@]}" --delete "$src_spec" "$staging/" || rc=$?
case $rc in
  0) ;;
  23 | 24) echo "restore: rsync could not copy every file (exit $rc, see above); checking what arrived" ;;
  *)
    rmdir "$staging" 2>/dev/null || true # only when nothing arrived
    fail "copying from $source_url failed (rsync exit $rc, see above); $data_path was not changed"
    ;;
esac

# ---- verify -----------------------------------------------------------------------------
# The manifest that arrived with the data is the one that counts (the source may have
# been refreshed since the first look).
[[ -f $staging/$manifest ]] || {
  echo "restore: missing: $(shown "$manifest")" >&2
  echo "restore: $data_path was not changed; the copy is kept in $staging" >&2
  exit 3
}
parse_manifest "$staging/$manifest"
if ((${#manifest_errors[@]})); then
  for e in "${manifest_errors[@]}"; do echo "restore: bad manifest $manifest: $e" >&2; done
  echo "restore: $data_path was not changed; the copy is kept in $staging" >&2
  exit 3
fi
echo "restore: checking ${#names[@]} files against $manifest"
if ! verify "$staging"; then
  # The full list goes to a file; stderr gets enough to act on without flooding the caller.
  printf '%s\n' "${problems[@]}" >"$state/restore.problems"
  ((${#mismatched[@]} == 0)) || printf '%s\0' "${mismatched[@]}" >"$refetch"
  limit=500
  for p in "${problems[@]:0:limit}"; do echo "restore: $p" >&2; done
  ((${#problems[@]} <= limit)) || echo "restore: ... and $((${#problems[@]} - limit)) more, all in $state/restore.problems" >&2
  echo "restore: ${#problems[@]} files do not match the manifest; $data_path was not changed." >&2
  echo "restore: the copy is kept for inspection in $staging (the next run reuses it)" >&2
  exit 3
fi
rm -f "$state/restore.problems"

# ---- swap -------------------------------------------------------------------------------
# Two renames on one filesystem: the old data is never deleted, only moved aside. A crash
# between them leaves no DATA_DIR but a verified staging copy, which the next run (quick:
# rsync finds nothing to copy) swaps in.
moved_aside=""
if [[ -d $data ]]; then
  if [[ -z $(find "$data" -mindepth 1 -maxdepth 1 -print -quit) ]]; then
    rmdir "$data" # empty: nothing to keep
  else
    stamp=$(date -u +%Y%m%dT%H%M%SZ)
    aside=$data.before-restore-$stamp
    n=1
    while [[ -e $aside ]]; do
      n=$((n + 1))
      aside=$data.before-restore-$stamp-$n
    done
    mv -T -- "$data" "$aside"
    moved_aside=${aside#"$root"}
  fi
fi
if ! mv -T -- "$staging" "$data"; then
  [[ -z $moved_aside ]] || mv -T -- "$root$moved_aside" "$data" || true
  fail "could not move $staging to $data_path (see above); the verified copy stays in $staging"
fi
echo "restore: ${#names[@]} files verified and moved into place at $data_path"
[[ -z $moved_aside ]] || echo "restore: the previous content of $data_path is kept in $moved_aside"
finish false "$moved_aside"
