#!/usr/bin/env bash
# Restore phase: brings the POS app's customer data from a backup SOURCE into DATA_DIR.
# The source is copied into a staging directory next to DATA_DIR, every file is checked
# against the source's sha256sum manifest, and only then is the copy swapped into place.
# The previous DATA_DIR is moved aside (DATA_DIR.before-restore-<UTC time>), never deleted.
#
# Inputs (environment):
#   SHOP             8 digits
#   APP              the POS app's name (its app file's; lowercase, digits, -)
#   DATA_DIR         absolute path of the data directory on the host (e.g. /usr2, /d)
#   SOURCE           one of three kinds:
#                    ssh://user@host[:port]/absolute/path/  rsync over SSH, e.g. the old
#                      backup server's /backups/tfrsync-<shop>/
#                    file:///absolute/path/  a directory already on the host
#                    s3://BUCKET/KEY  a tar archive in S3 (KEY ends in .tar, .tar.gz or
#                      .tgz; no control characters), downloaded from SOURCE_URL. BUCKET:
#                      3-63 characters of a-z 0-9 . -, starting and ending with a letter
#                      or digit. SOURCE itself is only checked and shown (messages, the
#                      result line), never fetched.
#   SOURCE_KEY_FILE  ssh:// only: path on the host of the private key for the backup server
#   SOURCE_HOST_KEY  ssh:// only: the backup server's public host key line
#                    ("ssh-ed25519 AAAA..."), pinned: no other key is accepted
#   SOURCE_URL       s3:// only (required there, refused with the other kinds): an http://
#                    or https:// URL of the archive, normally a presigned S3 GET URL. It
#                    carries a signature: it is never printed, not even in errors (curl runs
#                    with -sS, its messages stay in a temporary file, the URL reaches it on
#                    stdin rather than its command line, and this script never uses set -x).
#   MANIFEST         file name in the source root, sha256sum format (default MANIFEST.sha256)
# POSCLOUD_ROOT prefixes host paths (DATA_DIR, SOURCE_KEY_FILE, file:// paths): empty on a
# real host, a test host's own directory in tests. Paths on the backup server are not.
#
# The same layout for every kind: the source's top level holds the data and the manifest
# (for an archive: its top-level members, with or without a leading "./").
#
# An s3:// archive is downloaded with curl (retries on transient errors; no overall time
# limit, but aborted below 1 KB/s for 5 minutes) to DATA_DIR.restore-archive, next to
# DATA_DIR (not /tmp: it can be many GB), checked, extracted into an emptied
# DATA_DIR.restore-staging, and deleted once extracted or refused, whatever the outcome.
# Then the same verification, swap and result as for the other kinds. A failed download
# exits 1 with curl's exit code and the HTTP status (and S3's error code), never the URL.
#
# Archive members are listed first (tar -tv) and the whole archive is refused (exit 3, each
# bad member named on stderr as "restore: refused: <member> (<why>)", nothing extracted)
# when any member:
#   - has an absolute name, a ".." component, or another non-plain name ("//", "/./");
#   - lies below a symlink or hard-link member of the archive (a write through a link
#     could leave the staging directory), or below a member that is not a directory;
#   - is a hard link to anything but a regular file earlier in the archive;
#   - is a device file, a FIFO or another special type (only regular files, directories,
#     symlinks and hard links are extracted);
#   - appears twice, or is the top directory (".") as something else than a directory.
# Symlinks themselves are kept as they are (as rsync does for the other kinds), whatever
# they point to. Extraction runs as root with GNU tar's own guards on top (it refuses ".."
# and strips leading "/" anyway; never -P), --numeric-owner and --preserve-permissions; the
# archive's "./" entry gives DATA_DIR its own mode and owner, as the source directory does
# for the other kinds. The staging directory is emptied first, so no earlier symlink can
# be written through and no existing directory is there to protect (hence no
# --no-overwrite-dir). The "already restored" check needs the archive's manifest, so an
# s3:// run always downloads and extracts; when DATA_DIR already verifies, the extracted
# copy is deleted and nothing is moved.
#
# Exit codes: 0 restored (or already restored), 1 failure (transfer or download, disk,
# lock, tools, extraction), 2 bad input, 3 the copy does not match the manifest or the
# archive is refused or unreadable (DATA_DIR untouched; a copy that was made stays in
# DATA_DIR.restore-staging for inspection). Bad files are named on stderr, one per line:
# "restore: mismatch|missing|unlisted: <path>", with backslash shown as \\ and newline as \n
# (the manifest's own escaping), so every name stays on one line. Refused archive members
# are shown the way GNU tar lists them (--quoting-style=escape: also \n, \\, and octal
# escapes such as \351 for other bytes).
#
# Running it again: when DATA_DIR already holds the same manifest and every file verifies,
# nothing is moved (the data may be large, and the app may have it open); otherwise the
# restore is done again and the current DATA_DIR is moved aside like the first time.
set -euo pipefail
# Names are bytes: byte-wise patterns and regexes whatever the host's locale.
export LC_ALL=C
if ! declare -F poscloud_lib >/dev/null; then # run from a checkout, not sent by poscloud
  # shellcheck source=lib.sh
  . "${BASH_SOURCE[0]%/*}/lib.sh"
  # shellcheck source=restore-manifest.sh
  . "${BASH_SOURCE[0]%/*}/restore-manifest.sh"
  # shellcheck source=restore-archive.sh
  . "${BASH_SOURCE[0]%/*}/restore-archive.sh"
fi
me=restore

# ---- inputs ---------------------------------------------------------------------------
[[ ${SHOP:-} =~ ^[0-9]{8}$ ]] || bad "SHOP must be 8 digits, got '${SHOP:-}'"
[[ ${APP:-} =~ ^[a-z][a-z0-9-]{0,30}$ ]] || bad "APP must be an app name (lowercase, digits, -), got '${APP:-}'"

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
elif [[ $source_url =~ ^s3://([^/]*)/(.*)$ ]]; then
  kind="s3"
  s3_bucket=${BASH_REMATCH[1]} s3_key=${BASH_REMATCH[2]}
  [[ $s3_bucket =~ ^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$ ]] ||
    bad "the S3 bucket must be 3-63 characters of a-z, 0-9, '.' and '-', starting and ending with a letter or digit, got '$s3_bucket'"
  [[ $s3_key =~ \.(tar|tar\.gz|tgz)$ ]] ||
    bad "the S3 key must name a .tar, .tar.gz or .tgz archive, got '$s3_key'"
else
  bad "SOURCE must be ssh://user@host[:port]/absolute/path/, file:///absolute/path/ or s3://bucket/key.tar[.gz], got '$source_url'"
fi
if [[ $kind != s3 ]]; then
  case $src_path/ in
    */../* | */./*) bad "the SOURCE path must not contain '.' or '..' components, got '$src_path'" ;;
  esac
  while [[ $src_path == */ ]]; do src_path=${src_path%/}; done
  [[ -n $src_path ]] || bad "the SOURCE path must not be /"
fi

# SOURCE_URL may carry a signature: no message shows its value.
if [[ $kind == s3 ]]; then
  [[ -n ${SOURCE_URL:-} ]] ||
    bad "an s3:// SOURCE needs SOURCE_URL: an http(s) URL of the archive (a presigned S3 GET URL)"
  # Also what curl's config syntax can take between double quotes as it is.
  url_re='^https?://[^/?#[:space:][:cntrl:]"\]+([/?#][^[:space:][:cntrl:]"\]*)?$'
  [[ $SOURCE_URL =~ $url_re ]] ||
    bad "SOURCE_URL must be an http:// or https:// URL without spaces, quotes or backslashes (its value is not shown: it may carry a signature)"
elif [[ -n ${SOURCE_URL:-} ]]; then
  bad "SOURCE_URL is only for s3:// sources, not for $kind:// ones (its value is not shown)"
fi

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

tools=(sha256sum flock find xargs stat readlink mktemp)
case $kind in
  ssh) tools+=(rsync ssh ssh-keygen) ;;
  file) tools+=(rsync) ;;
  s3)
    tools+=(curl tar head tr)
    [[ $s3_key == *.tar ]] || tools+=(gzip)
    ;;
esac
for tool in "${tools[@]}"; do
  command -v "$tool" >/dev/null || fail "'$tool' is not installed on the host"
done

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
elif [[ $kind == file ]]; then
  src_spec=$root$src_path/
  echo "restore: source $source_url (a directory on this host)"
else
  echo "restore: source $source_url (an archive, downloaded over ${SOURCE_URL%%:*} from SOURCE_URL, which is not shown)"
fi

mkdir -p "$state/phases"
exec 9>"$state/restore.lock"
# backup.sh takes the same lock: a restore never swaps the directory a backup is reading.
flock -n 9 || fail "another restore or a backup is running on this host (lock $state/restore.lock): run this again once it ends (a backup takes minutes)"

# ---- the manifest (restore-manifest.sh reads and checks it) ---------------------------
names=()            # manifest order
declare -A want=()  # name -> sha256
problems=()         # what verify found wrong, one message each
mismatched=()       # the names of files whose content differs

# ---- already restored? ----------------------------------------------------------------
# Names of the files that failed the last check (NUL-separated), for the copy below.
refetch=$state/restore.refetch
if [[ $kind == s3 ]]; then
  # An archive holds its manifest: the whole archive comes first.
  [[ ! -e $staging || (-d $staging && ! -L $staging) ]] ||
    fail "$staging exists and is not a directory: move it away and run again"
  mkdir -p "$(dirname "$data")"
  archive=$data.restore-archive
  trap 'rm -rf "$tmp"; rm -f -- "$archive"' EXIT
  tar_z=() # empty for a plain .tar: expanded as ${tar_z[@]+"${tar_z[@]}"} for bash 4.2
  archive_kind=tar
  if [[ $s3_key != *.tar ]]; then tar_z=(-z) archive_kind=tar.gz; fi
  download_archive
  extract_archive
  rm -f "$refetch" # for rsync's reuse of an old staging; this staging is new
  if [[ ! -f $staging/$manifest || -L $staging/$manifest ]]; then
    echo "restore: missing: $(shown "$manifest")" >&2
    top_dir_hint
    echo "restore: the archive has no manifest $manifest at its top level; $data_path was not changed; the copy is kept in $staging" >&2
    exit 3
  fi
  cp -- "$staging/$manifest" "$tmp/manifest"
  unchanged_note="$data_path was not changed; the copy is kept in $staging"
else
  # Fetching the manifest first also proves the connection (and the pinned key) before any
  # data moves.
  fetch_manifest "$tmp/manifest"
  unchanged_note="nothing was changed"
fi
parse_manifest "$tmp/manifest" "the source's manifest cannot be used; $unchanged_note"
echo "restore: manifest $manifest lists ${#names[@]} files"

if [[ -f $data/$manifest && "$(sha256sum <"$data/$manifest")" == "$(sha256sum <"$tmp/manifest")" ]]; then
  echo "restore: $data_path holds this manifest already; checking it in place"
  if verify "$data"; then
    echo "restore: every file in $data_path matches the manifest: already restored, nothing moved"
    if [[ $kind == s3 ]]; then
      rm -rf -- "$staging" # this run's own extraction, not needed
    elif [[ -d $staging ]]; then
      echo "restore: note: $staging is left from an earlier failed run; remove it when no longer needed"
    fi
    finish true ""
    exit 0
  fi
  echo "restore: $data_path differs from the manifest in ${#problems[@]} files (e.g. $(printf '%s' "${problems[0]}")): restoring again; its current content is kept aside"
fi

# ---- copy into staging ----------------------------------------------------------------
# (An archive was extracted into staging above.)
if [[ $kind != s3 ]]; then
  [[ ! -e $staging || (-d $staging && ! -L $staging) ]] ||
    fail "$staging exists and is not a directory: move it away and run again"
  # Files that failed the last check are fetched afresh: rsync's quick check (size and time)
  # would keep a bad copy whose size and time happen to match the source.
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
fi

# ---- verify -----------------------------------------------------------------------------
# The manifest that arrived with the data is the one that counts (the source may have
# been refreshed since the first look).
[[ -f $staging/$manifest ]] || {
  echo "restore: missing: $(shown "$manifest")" >&2
  echo "restore: $data_path was not changed; the copy is kept in $staging" >&2
  exit 3
}
parse_manifest "$staging/$manifest" "$data_path was not changed; the copy is kept in $staging"
echo "restore: checking ${#names[@]} files against $manifest"
if ! verify "$staging"; then
  # The full list goes to a file; stderr gets enough to act on without flooding the caller.
  printf '%s\n' "${problems[@]}" >"$state/restore.problems"
  ((${#mismatched[@]} == 0)) || printf '%s\0' "${mismatched[@]}" >"$refetch"
  limit=500
  for p in "${problems[@]:0:limit}"; do echo "restore: $p" >&2; done
  ((${#problems[@]} <= limit)) || echo "restore: ... and $((${#problems[@]} - limit)) more, all in $state/restore.problems" >&2
  echo "restore: ${#problems[@]} files do not match the manifest; $data_path was not changed." >&2
  if [[ $kind == s3 ]]; then
    echo "restore: the copy is kept for inspection in $staging (the next run replaces it)" >&2
  else
    echo "restore: the copy is kept for inspection in $staging (the next run reuses it)" >&2
  fi
  exit 3
fi
rm -f "$state/restore.problems"

# ---- swap -------------------------------------------------------------------------------
# Two renames on one filesystem: the old data is never deleted, only moved aside. A crash
# between them leaves no DATA_DIR but a verified staging copy, which the next run swaps in
# (quick for rsync, which finds nothing to copy; an archive is downloaded again).
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
