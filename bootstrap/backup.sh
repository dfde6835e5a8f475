#!/usr/bin/env bash
# Off-host backups of the POS data directory: an archive holding the data and its
# sha256sum manifest (the layout `pos restore --from s3://…` reads), uploaded with the
# instance role to the region's poscloud bucket under the shop's own prefix, encrypted at
# rest (SSE-S3), tagged with how long S3 keeps it (the bucket's lifecycle rules expire it).
#
# ACTION=install  writes the settings, this script and a systemd timer that runs it daily
#                 (systemd 219: OnCalendar, Persistent; no RandomizedDelaySec). Inputs:
#   SHOP, ENV (prod|qa|dev), APP, DATA_DIR (absolute, on the host), CONTAINER (the POS
#   container, default pos), CONSISTENCY (stop: the POS container is stopped while the
#   archive is made and started again; command: QUIESCE runs in the container before and
#   RESUME after), QUIESCE, RESUME, BUCKET, PREFIX (the shop's, ending in /), REGION,
#   SCHEDULE (systemd OnCalendar), DAILY_DAYS (1-3650), MONTHLY_DAYS (0 = no monthly
#   backups, else 1-3650: the first backup of each month is kept this long).
# ACTION=run      one backup now, with the installed settings (what the timer runs; poscloud
#                 `backup run` sends the same). Waits for a restore running on the host (the
#                 restore's lock), so a backup never reads a half-restored directory.
#
# Objects: PREFIX<STAMP>.tar.gz then PREFIX<STAMP>.json (the summary `backup list` reads:
# written last, so a summary means a complete archive), STAMP = UTC time YYYYMMDDTHHMMSSZ,
# both tagged poscloud:keep=<days>d. Exit codes: 0 done, 1 failure (the POS is started
# again whatever happened), 2 bad input.
set -euo pipefail
export LC_ALL=C
if ! declare -F poscloud_lib >/dev/null; then # run from a checkout, not sent by poscloud
  # shellcheck source=lib.sh
  . "${BASH_SOURCE[0]%/*}/lib.sh"
  # shellcheck source=aws-py.sh
  . "${BASH_SOURCE[0]%/*}/aws-py.sh"
fi
me=backup

root=${POSCLOUD_ROOT:-}
state=$root/var/lib/poscloud
conf=/etc/poscloud/backup.conf
bin=/usr/local/libexec/poscloud/backup.sh
unit_dir=/etc/systemd/system
keys=(SHOP ENV APP DATA_DIR CONTAINER CONSISTENCY QUIESCE RESUME BUCKET PREFIX REGION SCHEDULE DAILY_DAYS MONTHLY_DAYS)
action=${ACTION:-run}

check_settings() {
  [[ ${SHOP:-} =~ ^[0-9]{8}$ ]] || bad "SHOP must be 8 digits, got '${SHOP:-}'"
  [[ ${ENV:-} =~ ^(prod|qa|dev)$ ]] || bad "ENV must be prod, qa or dev, got '${ENV:-}'"
  [[ ${APP:-} =~ ^[a-z][a-z0-9-]{0,30}$ ]] || bad "APP must be an app name, got '${APP:-}'"
  [[ ${DATA_DIR:-} == /* && $DATA_DIR != *[[:cntrl:]]* && $DATA_DIR/ != */../* ]] ||
    bad "DATA_DIR must be a plain absolute path, got '${DATA_DIR:-}'"
  CONTAINER=${CONTAINER:-pos}
  [[ $CONTAINER =~ ^[a-z][a-z0-9_.-]{0,62}$ ]] || bad "CONTAINER must be a container name, got '$CONTAINER'"
  case ${CONSISTENCY:-} in
    stop) ;;
    command) [[ -n ${QUIESCE:-} && -n ${RESUME:-} ]] || bad "CONSISTENCY=command needs QUIESCE and RESUME" ;;
    *) bad "CONSISTENCY must be stop or command, got '${CONSISTENCY:-}'" ;;
  esac
  local k
  for k in QUIESCE RESUME SCHEDULE; do
    [[ ${!k:-} != *[[:cntrl:]]* ]] || bad "$k must be one line"
  done
  [[ ${BUCKET:-} =~ ^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$ ]] || bad "BUCKET must be an S3 bucket name, got '${BUCKET:-}'"
  [[ ${PREFIX:-} == "$SHOP/$ENV/backups/" ]] || bad "PREFIX must be $SHOP/$ENV/backups/, got '${PREFIX:-}'"
  [[ ${REGION:-} =~ ^[a-z]{2}(-[a-z]+)+-[0-9]$ ]] || bad "REGION must be an AWS region, got '${REGION:-}'"
  [[ ${SCHEDULE:-} =~ ^[A-Za-z0-9*:.,/~\ -]{1,64}$ ]] || bad "SCHEDULE must be a systemd OnCalendar expression, got '${SCHEDULE:-}'"
  if ! [[ ${DAILY_DAYS:-} =~ ^[0-9]{1,4}$ ]] || ((10#$DAILY_DAYS < 1 || 10#$DAILY_DAYS > 3650)); then
    bad "DAILY_DAYS must be 1-3650, got '${DAILY_DAYS:-}'"
  fi
  if ! [[ ${MONTHLY_DAYS:-} =~ ^[0-9]{1,4}$ ]] || ((10#$MONTHLY_DAYS > 3650)); then
    bad "MONTHLY_DAYS must be 0-3650, got '${MONTHLY_DAYS:-}'"
  fi
}

# put (lib.sh) replaces by a rename: a timer's run reading the old script keeps reading it.
changed=0

install_timer() {
  check_settings
  [[ -f $0 ]] || fail "cannot install the backup job: this script is not a file ($0)"
  local work k
  work=$(mktemp -d "${TMPDIR:-/tmp}/poscloud-backup.XXXXXX")
  # shellcheck disable=SC2064 # expanded now, on purpose
  trap "rm -rf '$work'" EXIT
  put "$bin" 0755 "$0"
  for k in "${keys[@]}"; do printf '%s=%s\n' "$k" "${!k:-}"; done >"$work/conf"
  put "$conf" 0644 "$work/conf"
  cat >"$work/service" <<EOF
[Unit]
Description=poscloud: back up the POS data of shop $SHOP to S3
After=docker.service network-online.target
Wants=network-online.target

[Service]
Type=oneshot
Environment=ACTION=run
ExecStart=$bin
Nice=10
IOSchedulingClass=best-effort
IOSchedulingPriority=7
EOF
  put "$unit_dir/poscloud-backup.service" 0644 "$work/service"
  cat >"$work/timer" <<EOF
[Unit]
Description=poscloud: daily POS data backup

[Timer]
OnCalendar=$SCHEDULE
# A backup missed while the host was off runs when it is back.
Persistent=true
AccuracySec=1min

[Install]
WantedBy=timers.target
EOF
  put "$unit_dir/poscloud-backup.timer" 0644 "$work/timer"
  local timer=written
  if [[ -d /run/systemd/system && -z $root ]]; then
    systemctl daemon-reload
    systemctl enable --quiet poscloud-backup.timer
    systemctl start poscloud-backup.timer
    timer=enabled
    say "timer poscloud-backup.timer enabled ($SCHEDULE)"
  else
    say "timer written to $root$unit_dir/poscloud-backup.timer, not enabled (no systemd here)"
  fi
  printf 'POSCLOUD_RESULT {"installed":true,"timer":"%s","schedule":%s,"changed":%s}\n' \
    "$timer" "$(json "$SCHEDULE")" "$( ((changed)) && echo true || echo false)"
}

# The installed settings into the environment (read as data: never sourced).
load_settings() {
  [[ -f $root$conf ]] || fail "the backup job is not installed on this host ($conf): run poscloud provision"
  local line k v
  while IFS= read -r line || [[ -n $line ]]; do
    k=${line%%=*} v=${line#*=}
    for want in "${keys[@]}"; do
      [[ $k != "$want" ]] || printf -v "$k" '%s' "$v"
    done
  done <"$root$conf"
  check_settings
}


work=""
# The app's consistency rule around the archive: undone by resume (also on failure).
paused=none
quiesce() {
  running "$CONTAINER" || {
    say "the POS ($CONTAINER) is not running: its data is at rest"
    return 0
  }
  if [[ $CONSISTENCY == stop ]]; then
    docker stop -t 20 "$CONTAINER" >/dev/null || fail "cannot stop $CONTAINER for a consistent copy"
    paused=stopped
    say "POS $CONTAINER stopped for a consistent copy"
  else
    docker exec "$CONTAINER" sh -c "$QUIESCE" || fail "the app's quiesce command failed in $CONTAINER; no backup was made"
    paused=quiesced
    say "POS $CONTAINER quiesced by the app's own command"
  fi
}
resume() {
  case $paused in
    stopped) docker start "$CONTAINER" >/dev/null && say "POS $CONTAINER started again" ||
      echo "backup: cannot start $CONTAINER again: run poscloud pos start" >&2 ;;
    quiesced) docker exec "$CONTAINER" sh -c "$RESUME" && say "POS $CONTAINER resumed" ||
      echo "backup: the app's resume command failed in $CONTAINER" >&2 ;;
  esac
  paused=none
}

run_backup() {
  load_settings
  local data=$root$DATA_DIR stamp month kind keep files data_bytes bytes sha started t0 used
  [[ -d $data ]] || fail "no data directory $DATA_DIR on this host: nothing to back up"
  for tool in docker tar gzip sha256sum flock find sort xargs du df stat; do
    command -v "$tool" >/dev/null || fail "'$tool' is not installed on the host"
  done
  mkdir -p "$state/backup"
  # The restore's own lock: a backup waits for a restore, and the other way round.
  exec 8>"$state/restore.lock"
  if ! flock -n 8; then
    say "a restore is running on this host: waiting for it (up to 30 minutes)"
    flock -w 1800 8 || fail "a restore still runs after 30 minutes; no backup was made"
  fi
  exec 7>"$state/backup/.lock"
  flock -n 7 || fail "another backup is running on this host"
  # Work files next to the data (the same disk, not /tmp: the archive can be large).
  work=$state/backup/work
  rm -rf -- "$work"
  mkdir -p "$work"
  trap 'resume; [[ -z $work ]] || rm -rf -- "$work"' EXIT
  stamp=$(date -u +%Y%m%dT%H%M%SZ) started=$(date -u +%Y-%m-%dT%H:%M:%SZ) month=${stamp:0:6}
  kind=daily keep=$((10#$DAILY_DAYS))
  if ((10#$MONTHLY_DAYS > 0)) && [[ $(cat "$state/backup/monthly" 2>/dev/null || true) != "$month" ]]; then
    kind=monthly keep=$((10#$MONTHLY_DAYS))
  fi

  t0=$SECONDS
  quiesce
  # The manifest: every regular file, as sha256sum writes it (names with \ or newline
  # escaped: what restore reads); the archive: the data and that manifest at the top.
  (cd "$data" && find . -type f ! -path ./MANIFEST.sha256 -print0 | sort -z |
    xargs -0 -r sha256sum --) >"$work/MANIFEST.sha256" || fail "hashing the data failed"
  tar -czf "$work/archive.tar.gz" --numeric-owner -C "$data" --exclude=./MANIFEST.sha256 . \
    -C "$work" MANIFEST.sha256 || fail "writing the archive failed"
  resume
  local held=$((SECONDS - t0))
  files=$(grep -c '' "$work/MANIFEST.sha256" || true)
  data_bytes=$(du -sb "$data" | cut -f1)
  used=$(df -P "$data" | awk 'NR == 2 { sub("%", "", $5); print $5 }')
  bytes=$(stat -c %s "$work/archive.tar.gz")
  sha=$(sha256sum <"$work/archive.tar.gz") sha=${sha%% *}
  say "archive of $files files ($bytes bytes) made; the POS was held for ${held}s"

  printf '{"stamp":"%s","time":"%s","kind":"%s","keep_days":%d,"app":%s,"archive":"%s%s.tar.gz","bytes":%d,"sha256":"%s","files":%d,"data_bytes":%d,"disk_used_pct":%d,"consistency":"%s","held_s":%d,"result":"ok"}\n' \
    "$stamp" "$started" "$kind" "$keep" "$(json "$APP")" "$PREFIX" "$stamp" "$bytes" "$sha" "$files" \
    "$data_bytes" "${used:-0}" "$CONSISTENCY" "$held" >"$work/summary.json"
  local summary_sha
  summary_sha=$(sha256sum <"$work/summary.json") summary_sha=${summary_sha%% *}
  WORK=$work BUCKET=$BUCKET PREFIX=$PREFIX STAMP=$stamp KEEP=$keep ARCHIVE_SHA=$sha SUMMARY_SHA=$summary_sha aws_py <<'PY' ||
try:
    cred = credentials()
    w, stamp, prefix = os.environ["WORK"], os.environ["STAMP"], os.environ["PREFIX"]
    h = {"x-amz-server-side-encryption": "AES256", "x-amz-tagging": "poscloud%3Akeep=" + os.environ["KEEP"] + "d"}
    s3_put(cred, os.environ["BUCKET"], prefix + stamp + ".tar.gz", w + "/archive.tar.gz", os.environ["ARCHIVE_SHA"],
           dict(h, **{"content-type": "application/gzip"}))
    s3_put(cred, os.environ["BUCKET"], prefix + stamp + ".json", w + "/summary.json", os.environ["SUMMARY_SHA"],
           dict(h, **{"content-type": "application/json"}))
except HTTPError as e:
    sys.stderr.write("backup: the upload was refused: %s\n" % http_reason(e))
    sys.exit(1)
except Exception as e:  # the kind only: a message could quote a signed request
    sys.stderr.write("backup: the upload failed: %s\n" % type(e).__name__)
    sys.exit(1)
PY
    fail "the backup of $stamp was not uploaded (the POS runs on; the next run tries again)"
  [[ $kind != monthly ]] || echo "$month" >"$state/backup/monthly"
  cp "$work/summary.json" "$state/backup/last.json"
  say "backup $stamp uploaded to s3://$BUCKET/$PREFIX$stamp.tar.gz ($kind, kept ${keep} days)"
  printf 'POSCLOUD_RESULT %s\n' "$(cat "$work/summary.json")"
}

case $action in
  install) install_timer ;;
  run) run_backup ;;
  *) bad "ACTION must be install or run, got '$action'" ;;
esac
