#!/usr/bin/env bash
# Cutover night: the POS data moves from the shop's physical server (the "source", reached
# by poscloud over SSH with a pinned host key) to the shop's cloud host. The cloud host
# pulls the data itself with rsync over SSH from inside the POS network namespace (the
# holder's, where the VPN to the shop runs), with a key of its own that the source accepts
# only for reading the data directory (a forced command: ACTION=serve).
#
# Source actions (run on the physical server):
#   src-facts        the data directory (found? bytes, files), whether the POS application
#                    runs (CHECK_CMD), the migration marker, the last backup's age
#   src-authorize    installs this script as /usr/local/libexec/poscloud/cutover.sh and lets
#                    PUBKEY log in to run only `rsync --server --sender … DATA_DIR/` (a line
#                    tagged poscloud-cutover-SHOP in $HOME/.ssh/authorized_keys, replaced)
#   src-deauthorize  removes that line
#   serve            the forced command: runs SSH_ORIGINAL_COMMAND if it is that rsync
#   src-stop         stops the POS application (STOP_CMD) until CHECK_CMD fails; reports
#                    whether it was running
#   src-start        starts it (START_CMD) until CHECK_CMD passes (60 s), else exit 1
#   src-mark         writes the migration marker /etc/poscloud-migrated (shop, time, cloud
#                    instance: SHOP, AT, INSTANCE); src-unmark removes it
# Cloud actions (run on the cloud host):
#   cloud-facts      free and used bytes of the data directory's file system, and the cutover
#                    key's public half; with KEYGEN=1 the key is made if missing
#                    (/var/lib/poscloud/cutover/id_ed25519, root, 0600)
#   cloud-sync       rsync SRC_USER@SRC_HOST:SRC_DIR/ → DATA_DIR/ (archive, hard links,
#                    numeric ids, --delete), from inside the holder's network namespace, host
#                    key pinned (SRC_HOST_KEY), BWLIMIT KiB/s (0: none). The POS container is
#                    stopped first (its data is being replaced; the holder, eth1 and the VPN
#                    stay). The first sync keeps the cloud's earlier data as
#                    DATA_DIR.before-cutover-<UTC time> (hard links: no extra space). Runs take
#                    turns (a lock): a sync left running by a killed poscloud finishes first.
#   cloud-pos        POS_ACTION start|stop: the POS container only (not the holder)
# Both sides:
#   manifest         "SHA256  NAME" for every regular file below DATA_DIR (sha256sum's own
#                    format and escaping), then "SHA256  NAME" of the link's target text with
#                    a "symlink:" prefix on the hash for every symbolic link; sorted by name
#                    in the C locale, so both sides compare line by line.
#
# Inputs (environment): ACTION; DATA_DIR (absolute; the source's data directory for src-*
# and the cloud's for cloud-*); SHOP (8 digits) for src-authorize, src-deauthorize, src-mark;
# STOP_CMD, START_CMD, CHECK_CMD (shell commands from the stack file) as the actions need.
# POSCLOUD_ROOT prefixes host paths (empty on a real host, a test host's own directory in
# tests); SRC_DIR is as the source's SSH server sees it (src-facts reports it).
# Results: one `POSCLOUD_RESULT {json}` line on stdout.
# Exit codes: 0 done, 1 failure, 2 bad input, 3 not found (src-facts: no data directory).
set -euo pipefail
export LC_ALL=C
# shellcheck source=lib.sh
declare -F poscloud_lib >/dev/null || . "${BASH_SOURCE[0]%/*}/lib.sh"
me=cutover

action=${ACTION:-}
root=${POSCLOUD_ROOT:-}
path_re='^/[A-Za-z0-9/_.+-]*$'
libexec=/usr/local/libexec/poscloud/cutover.sh
tag() { echo "poscloud-cutover-$SHOP"; }

need_dir() {
  [[ ${DATA_DIR:-} =~ $path_re && $DATA_DIR != *..* && $DATA_DIR != / ]] ||
    bad "DATA_DIR must be an absolute path (letters, digits, /_.+-) without .."
  dir=$root$DATA_DIR
}
need_shop() { [[ ${SHOP:-} =~ ^[0-9]{8}$ ]] || bad "SHOP must be 8 digits"; }
need_cmd() { [[ -n ${!1:-} && ${!1} != *$'\n'* ]] || bad "$1 must be a one-line shell command"; }

# Waits up to $2 seconds for CHECK_CMD to succeed (want=up) or fail (want=down).
wait_check() {
  local want=$1 t0=$SECONDS
  while ((SECONDS - t0 < $2)); do
    if bash -c "$CHECK_CMD" >/dev/null 2>&1; then
      [[ $want == up ]] && return 0
    else
      [[ $want == down ]] && return 0
    fi
    sleep 1
  done
  return 1
}

manifest() {
  local l t h n
  cd "$1"
  find . -type f -print0 | sort -z | xargs -0 -r sha256sum --
  while IFS= read -r -d '' l; do
    t=$(
      readlink -- "$l"
      echo x
    )
    h=$(printf '%s' "${t%$'\n'x}" | sha256sum)
    h=${h%% *}
    if [[ $l == *$'\n'* || $l == *\\* ]]; then
      # sha256sum's escaping: a leading backslash, then \\ and \n in the name.
      n=${l//\\/\\\\}
      printf '\\symlink:%s  %s\n' "$h" "${n//$'\n'/\\n}"
    else
      printf 'symlink:%s  %s\n' "$h" "$l"
    fi
  done < <(find . -type l -print0 | sort -z)
}

case $action in
  src-facts)
    need_dir
    need_cmd CHECK_CMD
    if [[ ! -d $dir ]]; then
      echo "cutover: the data directory $DATA_DIR is not on this server" >&2
      printf 'POSCLOUD_RESULT {"found":false,"data_dir":%s}\n' "$(json "$dir")"
      exit 3
    fi
    bytes=$(du -sb -- "$dir" | cut -f1)
    files=$(find "$dir" -type f | wc -l)
    app=stopped
    bash -c "$CHECK_CMD" >/dev/null 2>&1 && app=running
    marker=null
    [[ -f $root/etc/poscloud-migrated ]] && marker=$(json "$(cat "$root/etc/poscloud-migrated")")
    backup=null
    if [[ -n ${BACKUP_STAMP:-} ]]; then
      [[ $BACKUP_STAMP =~ $path_re ]] || bad "BACKUP_STAMP must be an absolute path"
      if m=$(stat -c %Y -- "$root$BACKUP_STAMP" 2>/dev/null); then
        backup=$(($(date +%s) - m))
      fi
    fi
    echo "cutover: $DATA_DIR: $files files, $bytes bytes; POS application $app"
    printf 'POSCLOUD_RESULT {"found":true,"data_dir":%s,"bytes":%s,"files":%s,"app":"%s","marker":%s,"backup_age_s":%s}\n' \
      "$(json "$dir")" "$bytes" "$files" "$app" "$marker" "$backup"
    ;;

  src-authorize)
    need_dir
    need_shop
    [[ ${PUBKEY:-} =~ ^ssh-ed25519\ [A-Za-z0-9+/]+=*( [^\"]*)?$ ]] || bad "PUBKEY must be an ssh-ed25519 public key"
    [[ -f $0 ]] || fail "cannot install the forced command: this script is not a file ($0)"
    if ! cmp -s "$0" "$root$libexec"; then
      install -D -m 0755 "$0" "$root$libexec.new"
      mv -f "$root$libexec.new" "$root$libexec"
    fi
    keys=$HOME/.ssh/authorized_keys
    mkdir -p "$HOME/.ssh"
    chmod 700 "$HOME/.ssh"
    touch "$keys"
    chmod 600 "$keys"
    read -r kt kb _ <<<"$PUBKEY"
    line="command=\"ACTION=serve DATA_DIR=$DATA_DIR $root$libexec\",no-pty,no-port-forwarding,no-agent-forwarding,no-X11-forwarding $kt $kb $(tag)"
    { grep -vF " $(tag)" "$keys" || true; echo "$line"; } >"$keys.new"
    chmod 600 "$keys.new"
    mv -f "$keys.new" "$keys"
    echo "cutover: the cloud host's key may read $DATA_DIR (rsync only)"
    echo 'POSCLOUD_RESULT {"authorized":true}'
    ;;

  src-deauthorize)
    need_shop
    keys=$HOME/.ssh/authorized_keys
    removed=false
    if [[ -f $keys ]] && grep -qF " $(tag)" "$keys"; then
      { grep -vF " $(tag)" "$keys" || true; } >"$keys.new"
      chmod 600 "$keys.new"
      mv -f "$keys.new" "$keys"
      removed=true
    fi
    echo "POSCLOUD_RESULT {\"removed\":$removed}"
    ;;

  serve)
    need_dir
    c=${SSH_ORIGINAL_COMMAND:-}
    opt='( -[A-Za-z0-9.]+| --[a-z-]+(=[A-Za-z0-9,._-]+)?)*'
    dre=${dir//./\\.}
    dre=${dre//+/\\+}
    if ! [[ $c =~ ^rsync\ --server\ --sender$opt\ \.\ $dre/?$ ]]; then
      echo "cutover: refused: only rsync reading $DATA_DIR is allowed for this key" >&2
      exit 1
    fi
    # shellcheck disable=SC2086 # checked above: words without quotes or shell syntax
    exec $c
    ;;

  src-stop)
    need_cmd STOP_CMD
    need_cmd CHECK_CMD
    was=false
    if bash -c "$CHECK_CMD" >/dev/null 2>&1; then
      was=true
      bash -c "$STOP_CMD" </dev/null || fail "the stop command failed (exit $?)"
    fi
    wait_check down 60 || fail "the POS application still answers 60 s after the stop command"
    echo "cutover: POS application stopped (was running: $was)"
    echo "POSCLOUD_RESULT {\"was_running\":$was}"
    ;;

  src-start)
    need_cmd START_CMD
    need_cmd CHECK_CMD
    if ! bash -c "$CHECK_CMD" >/dev/null 2>&1; then
      # Its own session and none of our descriptors (its output goes to a file): a daemon
      # started here outlives this run and does not hold the SSH channel open.
      out=$(mktemp)
      if ! setsid bash -c "$START_CMD" </dev/null >"$out" 2>&1; then
        tail -n 5 "$out" >&2
        rm -f "$out"
        fail "the start command failed"
      fi
      rm -f "$out"
    fi
    wait_check up 60 || fail "the POS application does not answer 60 s after the start command"
    echo "cutover: POS application runs and answers"
    echo 'POSCLOUD_RESULT {"running":true}'
    ;;

  src-mark)
    need_shop
    [[ ${AT:-} =~ ^[0-9TZ:.-]+$ ]] || bad "AT must be a UTC time"
    [[ ${INSTANCE:-} =~ ^[A-Za-z0-9:/@._-]+$ ]] || bad "INSTANCE must be an instance id or host"
    mkdir -p "$root/etc"
    printf 'migrated by poscloud\nshop=%s\nat=%s\ncloud=%s\n' "$SHOP" "$AT" "$INSTANCE" >"$root/etc/poscloud-migrated.new"
    mv -f "$root/etc/poscloud-migrated.new" "$root/etc/poscloud-migrated"
    echo "cutover: marked as migrated ($root/etc/poscloud-migrated)"
    echo 'POSCLOUD_RESULT {"marked":true}'
    ;;

  src-unmark)
    rm -f "$root/etc/poscloud-migrated"
    echo 'POSCLOUD_RESULT {"marked":false}'
    ;;

  manifest)
    need_dir
    [[ -d $dir ]] || fail "no directory $DATA_DIR"
    manifest "$dir"
    echo "POSCLOUD_RESULT {\"data_dir\":$(json "$dir")}"
    ;;

  cloud-facts)
    need_dir
    state=$root/var/lib/poscloud/cutover
    if [[ ${KEYGEN:-0} == 1 && ! -f $state/id_ed25519 ]]; then
      mkdir -p "$state"
      chmod 700 "$state"
      rm -f "$state/id_ed25519.new" "$state/id_ed25519.new.pub"
      ssh-keygen -q -t ed25519 -N '' -C "poscloud-cutover" -f "$state/id_ed25519.new" >/dev/null
      mv -f "$state/id_ed25519.new.pub" "$state/id_ed25519.pub"
      mv -f "$state/id_ed25519.new" "$state/id_ed25519"
    fi
    probe=$dir
    while [[ ! -d $probe ]]; do probe=$(dirname "$probe"); done
    free=$(df -B1 --output=avail "$probe" | tail -n 1 | tr -d ' ')
    used=0
    [[ -d $dir ]] && used=$(du -sb -- "$dir" | cut -f1)
    pub=null
    [[ -f $state/id_ed25519.pub ]] && pub=$(json "$(cut -d' ' -f1,2 "$state/id_ed25519.pub")")
    echo "cutover: $DATA_DIR holds $used bytes; $free bytes free"
    printf 'POSCLOUD_RESULT {"free_bytes":%s,"used_bytes":%s,"pubkey":%s}\n' "$free" "$used" "$pub"
    ;;

  cloud-sync)
    need_dir
    [[ ${SRC_USER:-} =~ ^[A-Za-z0-9._-]+$ ]] || bad "SRC_USER must be a user name"
    [[ ${SRC_HOST:-} =~ ^[A-Za-z0-9.-]+$ ]] || bad "SRC_HOST must be a host name or address"
    [[ ${SRC_PORT:-22} =~ ^[0-9]{1,5}$ ]] || bad "SRC_PORT must be a port"
    [[ ${SRC_DIR:-} =~ $path_re && $SRC_DIR != *..* ]] || bad "SRC_DIR must be an absolute path"
    [[ ${SRC_HOST_KEY:-} =~ ^(ssh-ed25519|ecdsa-sha2-nistp256|ecdsa-sha2-nistp384|ecdsa-sha2-nistp521|ssh-rsa)\ [A-Za-z0-9+/]+=*$ ]] ||
      bad "SRC_HOST_KEY must be a public host key line (type and base64)"
    bwlimit=${BWLIMIT:-0}
    [[ $bwlimit =~ ^[0-9]{1,9}$ ]] || bad "BWLIMIT must be KiB/s (0: no limit)"
    state=$root/var/lib/poscloud/cutover
    [[ -f $state/id_ed25519 ]] || fail "no cutover key: run cloud-facts first"
    mkdir -p "$state"
    exec 9>"$state/lock"
    if ! flock -n 9; then
      echo "cutover: an earlier sync still runs on this host: waiting for it"
      flock 9
    fi
    pid=$(ACTION=holder-pid "$root/usr/local/libexec/poscloud/pos.sh") ||
      fail "the POS network holder is not running: the VPN to the shop needs it"
    if [[ $(docker inspect -f '{{.State.Running}}' pos 2>/dev/null) == true ]]; then
      docker stop -t 20 pos >/dev/null
      echo "cutover: the cloud POS container is stopped while its data is replaced"
    fi
    mkdir -p "$dir"
    if [[ ! -f $state/aside ]]; then
      if [[ -n $(ls -A "$dir") ]]; then
        aside=$dir.before-cutover-$(date -u +%Y%m%dT%H%M%SZ)
        cp -al -- "$dir" "$aside"
        echo "cutover: the cloud's earlier data is kept as $aside"
      fi
      echo "${aside:-none}" >"$state/aside"
    fi
    port=${SRC_PORT:-22}
    host=$SRC_HOST
    [[ $port != 22 ]] && host="[$SRC_HOST]:$port"
    printf '%s %s\n' "$host" "$SRC_HOST_KEY" >"$state/known_hosts"
    rsh="ssh -i $state/id_ed25519 -p $port -o BatchMode=yes -o IdentitiesOnly=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile=$state/known_hosts -o GlobalKnownHostsFile=/dev/null -o ConnectTimeout=20 -o ServerAliveInterval=15 -o ServerAliveCountMax=4"
    opts=(-aH --numeric-ids --delete --stats -e "$rsh")
    ((bwlimit > 0)) && opts+=("--bwlimit=$bwlimit")
    t0=$SECONDS
    out=$state/rsync.out
    set +e
    # 9>&-: rsync and ssh do not keep the lock after this script.
    nsenter -t "$pid" -n rsync "${opts[@]}" "$SRC_USER@$SRC_HOST:$SRC_DIR/" "$dir/" >"$out" 2>&1 9>&-
    rc=$?
    set -e
    # 24: files vanished on the source while it ran (the shop is open during the pre-sync).
    if ((rc != 0 && rc != 24)); then
      grep -v '^$' "$out" | tail -n 5 >&2 || true
      fail "rsync failed (exit $rc)"
    fi
    n=$(awk -F': ' '/^Number of regular files transferred/ { gsub(",", "", $2); print $2 }' "$out")
    b=$(awk -F': ' '/^Total transferred file size/ { gsub(/[, ].*/, "", $2); print $2 }' "$out")
    echo "cutover: synced ${n:-0} files (${b:-0} bytes) in $((SECONDS - t0)) s"
    printf 'POSCLOUD_RESULT {"files":%s,"bytes":%s,"seconds":%s,"vanished":%s}\n' \
      "${n:-0}" "${b:-0}" "$((SECONDS - t0))" "$([[ $rc == 24 ]] && echo true || echo false)"
    ;;

  cloud-pos)
    case ${POS_ACTION:-} in
      start)
        docker start pos >/dev/null || fail "docker start pos failed"
        echo "cutover: the cloud POS container started"
        ;;
      stop)
        if [[ $(docker inspect -f '{{.State.Running}}' pos 2>/dev/null) == true ]]; then
          docker stop -t 20 pos >/dev/null
        fi
        echo "cutover: the cloud POS container is stopped"
        ;;
      *) bad "POS_ACTION must be start or stop" ;;
    esac
    echo "POSCLOUD_RESULT {\"pos\":\"$POS_ACTION\"}"
    ;;

  *) bad "ACTION must be src-facts, src-authorize, src-deauthorize, serve, src-stop, src-start, src-mark, src-unmark, manifest, cloud-facts, cloud-sync or cloud-pos" ;;
esac
