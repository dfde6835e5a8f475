# shellcheck shell=bash
# restore.sh's s3:// archive: downloaded with curl (the URL never shown), its members listed
# and checked before anything is extracted into an emptied staging directory.
# Sent between lib.sh and restore.sh (src/remote/mod.rs); they use its tmp, archive, tar_z,
# archive_kind, staging, data_path, source_url and manifest.
# shellcheck disable=SC2154 # those are set by restore.sh

# Why curl failed, in words that never quote the URL.
curl_reason() { # CURL_EXIT HTTP_STATUS
  case $2 in
    403) echo "access denied: the presigned SOURCE_URL may have expired or be signed for another object" ;;
    404) echo "no such object" ;;
    4?? | 5??) echo "the server refused the request" ;;
    *)
      case $1 in
        0) echo "no usable answer" ;;
        1) echo "unsupported protocol (a redirect to another scheme?)" ;;
        3) echo "the URL is malformed" ;;
        5 | 6) echo "cannot resolve the host" ;;
        7) echo "cannot connect to the server" ;;
        18 | 52 | 55 | 56) echo "the connection broke off during the download" ;;
        23) echo "cannot write $archive (disk full?)" ;;
        28) echo "timed out, or slower than 1 KB/s for 5 minutes" ;;
        35 | 51 | 53 | 54 | 58 | 59 | 60 | 77 | 80 | 83 | 90 | 91) echo "TLS failed (certificate not trusted, or handshake)" ;;
        47) echo "too many redirects" ;;
        *) echo "see curl's exit codes" ;;
      esac
      ;;
  esac
}

download_archive() {
  local rc=0 status code="" body
  rm -f -- "$archive"
  echo "restore: downloading the archive into $archive"
  # The URL goes in on stdin (a config file), not on the command line: other users can
  # read command lines. -q: no ~/.curlrc (it could turn on tracing). curl's own messages
  # may quote the URL: they stay in $tmp and are never shown.
  status=$(printf 'url = "%s"\n' "$SOURCE_URL" |
    curl -q -sS -K - -o "$archive" -w '%{http_code}' --globoff \
      --location --max-redirs 5 --proto =http,https --proto-redir =http,https \
      --connect-timeout 30 --speed-limit 1024 --speed-time 300 \
      --retry 5 --retry-max-time 600 2>"$tmp/curl.err") || rc=$?
  [[ $status =~ ^[0-9]{3}$ ]] || status=000
  if ((rc == 0)) && [[ $status == 2?? ]]; then
    [[ -f $archive ]] || : >"$archive" # curl creates no file for an empty body
    return 0
  fi
  # S3 explains a refusal in an XML body: its <Code> only (the message may quote the request).
  if [[ $status != 000 && -f $archive ]]; then
    body=$(head -c 65536 -- "$archive" | tr -d '\0')
    [[ ! $body =~ \<Code\>([A-Za-z0-9.]{1,64})\</Code\> ]] || code=", S3 error ${BASH_REMATCH[1]}"
  fi
  rm -f -- "$archive"
  fail "cannot download the archive of $source_url (curl exit $rc, HTTP status $status$code): $(curl_reason "$rc" "$status"); nothing was changed"
}

# Member names as GNU tar lists them (escaped, so one per line), with leading "./" and a
# trailing "/" removed; "" is the top directory.
normalized() {
  local n=$1
  while [[ $n == ./* ]]; do n=${n#./}; done
  [[ $n != . ]] || n=""
  normalized=${n%/}
}

# Lists the archive and refuses it (exit 3) unless every member is safe to extract (the
# rules are in the header).
check_archive() {
  local rc=0 name line type rest target norm p i t
  local long_re='^(.)[^ ]* +[^ ]+ +[^ ]+ +[^ ]+ +[^ ]+ (.*)$'
  local -a m_names=() m_types=() m_targets=() m_norms=() refused=()
  local -A type_of=() index_of=()
  # -P: show names as stored (without it tar strips a leading "/" from what it lists).
  tar -t -v -P --numeric-owner --quoting-style=escape ${tar_z[@]+"${tar_z[@]}"} -f "$archive" >"$tmp/long" || rc=$?
  ((rc)) || tar -t -P --quoting-style=escape ${tar_z[@]+"${tar_z[@]}"} -f "$archive" >"$tmp/names" 2>/dev/null || rc=$?
  if ((rc)); then
    echo "restore: cannot read the archive of $source_url as a $archive_kind archive (tar exit $rc, see above); $data_path was not changed" >&2
    exit 3
  fi
  unreadable_listing() {
    echo "restore: cannot make sense of tar's listing of the archive at member $((${#m_names[@]} + 1)); $data_path was not changed" >&2
    exit 3
  }
  exec 7<"$tmp/names" 8<"$tmp/long"
  while IFS= read -r name <&7; do
    IFS= read -r line <&8 || unreadable_listing
    [[ $line =~ $long_re ]] || unreadable_listing
    type=${BASH_REMATCH[1]} rest=${BASH_REMATCH[2]} target=""
    case $type in
      l) [[ $rest == "$name -> "* ]] || unreadable_listing; target=${rest#"$name -> "} ;;
      h) [[ $rest == "$name link to "* ]] || unreadable_listing; target=${rest#"$name link to "} ;;
      *) [[ $rest == "$name" ]] || unreadable_listing ;;
    esac
    normalized "$name"
    m_names+=("$name") m_types+=("$type") m_targets+=("$target") m_norms+=("$normalized")
  done
  ! IFS= read -r line <&8 || unreadable_listing
  exec 7<&- 8<&-

  # Names and types, one member at a time.
  for i in "${!m_names[@]}"; do
    name=${m_names[i]} type=${m_types[i]} norm=${m_norms[i]}
    if [[ $name == /* ]]; then
      refused+=("$name (an absolute name)")
      continue
    fi
    if [[ -z $norm ]]; then
      [[ $type == d ]] || refused+=("$name (the top directory, but not a directory)")
      continue
    fi
    case /$norm/ in
      */../*) refused+=("$name (a '..' component)"); continue ;;
      */./* | *//*) refused+=("$name (not a plain relative name)"); continue ;;
    esac
    case $type in
      - | C | d | l | h) ;;
      b | c) refused+=("$name (a device file)") ;;
      p) refused+=("$name (a FIFO)") ;;
      *) refused+=("$name (an unsupported member type '$type')") ;;
    esac
    if [[ -n ${type_of[$norm]+x} ]]; then
      refused+=("$name (appears twice)")
      continue
    fi
    type_of[$norm]=$type index_of[$norm]=$i
  done
  # Paths: nothing below a link or a non-directory; hard links only to earlier files.
  for i in "${!m_names[@]}"; do
    name=${m_names[i]} norm=${m_norms[i]}
    # Only the members whose names passed above (each name once).
    [[ -n $norm && ${index_of[$norm]:-} == "$i" ]] || continue
    p=$norm
    while [[ $p == */* ]]; do
      p=${p%/*}
      case ${type_of[$p]:-d} in
        d) ;;
        l | h) refused+=("$name (below the link $p: a write through it could leave the staging directory)"); break ;;
        *) refused+=("$name (below $p, which is not a directory)"); break ;;
      esac
    done
    if [[ ${m_types[i]} == h ]]; then
      normalized "${m_targets[i]}"
      t=$normalized
      if [[ ${m_targets[i]} == /* || -z $t || -z ${index_of[$t]+x} ]] ||
        ((${index_of[$t]} >= i)) || [[ ${type_of[$t]} != [-C] ]]; then
        refused+=("$name (a hard link to ${m_targets[i]}, which is not a regular file earlier in the archive)")
      fi
    fi
  done

  if ((${#refused[@]})); then
    local limit=500
    for p in "${refused[@]:0:limit}"; do echo "restore: refused: $p" >&2; done
    ((${#refused[@]} <= limit)) || echo "restore: ... and $((${#refused[@]} - limit)) more" >&2
    echo "restore: the archive of $source_url has ${#refused[@]} members that are not extracted (absolute or '..' names, paths through links, device files and FIFOs are refused); nothing was extracted and $data_path was not changed" >&2
    exit 3
  fi
  archive_members=${#m_names[@]}
}

# Fills an emptied staging directory from the archive; the archive is deleted either way.
extract_archive() {
  local rc=0 size special
  size=$(stat -c %s -- "$archive")
  echo "restore: downloaded $size bytes; checking the archive's members"
  check_archive
  # Nothing from an earlier run stays: an old symlink could otherwise be written through.
  rm -rf -- "$staging"
  mkdir -- "$staging"
  echo "restore: extracting $archive_members members into $staging"
  tar -x ${tar_z[@]+"${tar_z[@]}"} -f "$archive" -C "$staging" --numeric-owner --same-owner --preserve-permissions || rc=$?
  rm -f -- "$archive"
  ((rc == 0)) || fail "extracting the archive failed (tar exit $rc, see above); $data_path was not changed; what was extracted is in $staging"
  # The listing was checked; this is a second look at what tar made.
  special=$(find "$staging" \( -type b -o -type c -o -type p -o -type s \) -print -quit)
  if [[ -n $special ]]; then
    echo "restore: refused: $(shown "${special#"$staging"/}") (a special file)" >&2
    echo "restore: the archive made special files; $data_path was not changed; the copy is kept in $staging" >&2
    exit 3
  fi
}

# A manifest in a single top-level directory instead of the top level: say so.
top_dir_hint() {
  local tops=() e
  while IFS= read -r -d '' e; do tops+=("$e"); done < <(find "$staging" -mindepth 1 -maxdepth 1 -print0)
  if ((${#tops[@]} == 1)) && [[ -d ${tops[0]} && ! -L ${tops[0]} && -f ${tops[0]}/$manifest ]]; then
    echo "restore: the archive's files are all in '$(shown "${tops[0]#"$staging"/}")/': pack them from inside that directory (tar -C DIR -czf ARCHIVE .)" >&2
  fi
}
