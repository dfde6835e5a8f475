#!/usr/bin/env bash
# The POS container on the host. eth1 (the POS interface) lives in the network namespace of
# a tiny holder container, ${CONTAINER}-net (the Kubernetes pause-container idea); the POS
# container joins that namespace (--network container:…), so a restart of the POS outside
# poscloud (restart policy, `docker restart`, a crash) keeps eth1.
#
#   stage         (the stage phase, `pos start`) the holder, the POS container with hardened
#                 options, eth1 in the holder with the POS address and the subnet gateway as
#                 default route, the POS application from an artifact whose checksum is
#                 verified before anything is installed, and the eth1 hook (ACTION=watch as
#                 poscloud-pos-net.service, enabled where systemd runs). Safe to run again:
#                 what is in place is kept.
#   status        reports the containers and eth1.
#   stop          stops the VPN's tunnels (vpn.sh, if installed), the POS, takes eth1 back
#                 to the host, stops the holder.
#   ready         (the last provision phase) checks the POS runs, the holder runs, eth1 has
#                 POS_IP, and the container's health command passes now; exit 1 with the
#                 reasons if not.
#   commit        snapshots the POS container into the image TAG (it keeps running).
#   images        lists the images labelled poscloud.app (media, snapshots) and their users.
#   image-delete  removes IMAGE unless a container (running or not) uses it.
#   holder-pid    prints (alone on stdout) the PID of the holder's process as this host sees
#                 it, for other scripts to enter its network namespace (vpn.sh, cutover.sh
#                 call the installed copy, /usr/local/libexec/poscloud/pos.sh); exit 1 when
#                 the holder is not running.
#   watch         the eth1 hook for host reboots, runs forever: each time the holder starts
#                 it hands eth1 to it, moves a POS left in the holder's old namespace into
#                 the new one, starts a POS that Docker failed to start before the holder,
#                 and starts the VPN's tunnels in the holder's namespace (vpn.sh start).
# The data directory is never touched by any action.
#
# Inputs (environment): ACTION (default stage), CONTAINER (default pos; the holder is
# CONTAINER-net), ETH1 (default eth1), and per action:
#   stage         SHOP (8 digits), APP (the app's name), IMAGE, POS_IP, PREFIX (16..28), GATEWAY,
#                 DATA_DIR (host directory mounted at MOUNT_POINT, the app's; created if
#                 missing, never deleted), HEALTH_CMD (the app's health command),
#                 ARTIFACT_URL (https://… or file:///…, a tarball with install.sh at its
#                 top), ARTIFACT_SHA256 (64 hex digits),
#                 MEMORY (default 2g), PIDS (default 1024)
#   watch         POS_IP, PREFIX, GATEWAY (written to /etc/poscloud/pos-net.env by stage)
#   ready         POS_IP
#   commit        SHOP (must match the container's label), TAG (image reference)
#   image-delete  IMAGE (reference or id)
#   status, stop, images, holder-pid: nothing more
# POSCLOUD_ROOT prefixes host paths (DATA_DIR, file:// paths, markers, the hook's files):
# empty on a real host, a test host's own directory in tests.
# Results: one `POSCLOUD_RESULT {json}` line on stdout.
# Exit codes: 0 done, 1 failure (ready: not ready), 2 bad input, 3 artifact checksum
# mismatch (nothing installed), 4 image in use (nothing deleted).
set -euo pipefail
if ! declare -F poscloud_lib >/dev/null; then # run from a checkout, not sent by poscloud
  # shellcheck source=lib.sh
  . "${BASH_SOURCE[0]%/*}/lib.sh"
  # shellcheck source=pos-net.sh
  . "${BASH_SOURCE[0]%/*}/pos-net.sh"
  # shellcheck source=pos-image.sh
  . "${BASH_SOURCE[0]%/*}/pos-image.sh"
fi
me=pos

action=${ACTION:-stage}
[[ $action =~ ^(stage|status|stop|ready|commit|images|image-delete|watch|holder-pid)$ ]] ||
  bad "ACTION must be stage, status, stop, ready, commit, images, image-delete, watch or holder-pid"
container=${CONTAINER:-pos}
[[ $container =~ ^[a-z][a-z0-9_-]{0,30}$ ]] || bad "CONTAINER must be a simple name"
net=$container-net
eth1=${ETH1:-eth1}
[[ $eth1 =~ ^[a-z][a-z0-9]{0,14}$ ]] || bad "ETH1 must be an interface name"
root=${POSCLOUD_ROOT:-}
image_re='^[a-z0-9][a-z0-9._/:@-]*$'
ip4='^([0-9]{1,3}\.){3}[0-9]{1,3}$'

need_pos_ip() { [[ ${POS_IP:-} =~ $ip4 ]] || bad "POS_IP must be an IPv4 address"; }
need_network() {
  need_pos_ip
  [[ ${GATEWAY:-} =~ $ip4 ]] || bad "GATEWAY must be an IPv4 address"
  if ! [[ ${PREFIX:-} =~ ^[0-9]{1,2}$ ]] || ((PREFIX < 16 || PREFIX > 28)); then
    bad "PREFIX must be 16..28"
  fi
}

# The VPN (vpn.sh, installed by its first apply): its charon runs in the holder's namespace.
vpn_bin=$root/usr/local/libexec/poscloud/vpn.sh
vpn() { [[ -x $vpn_bin ]] || return 0; ACTION=$1 CONTAINER=$container LOCATION='' "$vpn_bin"; }


case $action in
  holder-pid)
    container_pid "$net" || fail "$net (the holder of eth1) is not running: stage the POS first"
    exit 0
    ;;

  status)
    exists=false run=false health=none image=none more="" addr="" net_run=false
    if docker inspect "$container" >/dev/null 2>&1; then
      exists=true
      running "$container" && run=true
      health=$(docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' "$container" 2>/dev/null || echo unknown)
      image=$(docker inspect -f '{{.Config.Image}}' "$container")
      more=$(printf ',"health":%s,"image":%s' "$(json "$health")" "$(json "$image")")
    fi
    running "$net" && net_run=true
    # The holder's namespace; a POS from before the holder has eth1 in its own.
    if pid=$(container_pid "$net") || pid=$(container_pid "$container"); then
      addr=$(eth1_addr "$pid")
    fi
    echo "pos: $container exists=$exists running=$run health=$health image=$image $net running=$net_run $eth1=${addr:-none}"
    printf 'POSCLOUD_RESULT {"exists":%s,"running":%s%s,"eth1":%s,"net_running":%s}\n' \
      "$exists" "$run" "$more" "$(json "$addr")" "$net_run"
    exit 0
    ;;

  stop)
    # The tunnels go down first: charon would keep the holder's namespace alive. The eth1
    # hook starts them again with the holder.
    vpn stop >/dev/null || echo "pos: stopping the VPN failed" >&2
    # A POS in a namespace of its own would take eth1 with it.
    pos_apart && take_back "$container"
    if running "$container"; then
      docker stop -t 20 "$container" >/dev/null
      echo "pos: container $container stopped; its data directory is kept"
    fi
    take_back "$net"
    if running "$net"; then
      docker stop -t 5 "$net" >/dev/null
      echo "pos: $net stopped"
    fi
    echo 'POSCLOUD_RESULT {"stopped":true}'
    exit 0
    ;;

  ready)
    need_pos_ip
    reasons=()
    image="" health_cmd=""
    if ! running "$container"; then
      reasons+=("container $container is not running")
    else
      image=$(docker inspect -f '{{.Config.Image}}' "$container")
    fi
    running "$net" || reasons+=("$net (the holder of $eth1) is not running")
    if pid=$(container_pid "$container"); then
      addr=$(eth1_addr "$pid")
      if ! has_eth1 "$pid"; then
        reasons+=("$eth1 is not in the network namespace of $container")
      elif [[ $addr != "$POS_IP"/* ]]; then
        reasons+=("$eth1 in $container has ${addr:-no address}, not $POS_IP")
      fi
      if running "$net" && pos_apart; then
        reasons+=("$container is not in the network namespace of $net: a restart would lose $eth1")
      fi
    fi
    if [[ -n $image ]]; then
      # The configured health command, run now: the engine's own schedule needs systemd
      # timers on podman, and its last result may be old.
      mapfile -t hc < <(docker inspect -f '{{with .Config.Healthcheck}}{{range .Test}}{{println .}}{{end}}{{end}}' "$container")
      case ${hc[0]:-NONE} in
        CMD-SHELL) health_cmd=${hc[1]:-}; check=(sh -c "$health_cmd") ;;
        CMD) health_cmd=${hc[*]:1}; check=("${hc[@]:1}") ;;
        *) check=() ;;
      esac
      if ((${#check[@]} == 0)); then
        reasons+=("container $container has no health command")
      elif ! out=$(timeout 120 docker exec "$container" "${check[@]}" 2>&1); then
        reasons+=("health command failed: $health_cmd${out:+ ($(printf '%s' "$out" | tail -n 3 | tr '\n' ' '))}")
      fi
    fi
    if ((${#reasons[@]})); then
      list=""
      for r in "${reasons[@]}"; do
        echo "pos: not ready: $r" >&2
        list+=${list:+,}$(json "$r")
      done
      echo "POSCLOUD_RESULT {\"ready\":false,\"reasons\":[$list]}"
      exit 1
    fi
    echo "pos: ready: $container on $POS_IP, health command passes ($health_cmd)"
    printf 'POSCLOUD_RESULT {"ready":true,"container":%s,"image":%s,"pos_ip":%s,"health_cmd":%s}\n' \
      "$(json "$container")" "$(json "$image")" "$(json "$POS_IP")" "$(json "$health_cmd")"
    exit 0
    ;;

  # The image actions are pos-image.sh's.
  commit) pos_commit ;;
  images) pos_images ;;
  image-delete) pos_image_delete ;;

  watch)
    need_network
    # Events since before the first check, so a start in between is not missed.
    since=$(date +%s)
    hook_check
    coproc EVENTS { exec docker events --since "$since" --filter "container=$net" --filter event=start --format '{{.ID}}'; }
    trap 'kill "$EVENTS_PID" 2>/dev/null; exit 0' TERM INT HUP
    echo "pos: watch: handing $eth1 to $net on each start"
    while IFS= read -r -u "${EVENTS[0]}" _; do
      hook_check
    done
    # The engine went away: exit non-zero so that systemd starts the hook again.
    echo "pos: watch: docker events ended" >&2
    exit 1
    ;;
esac

# ACTION=stage from here on.
[[ ${SHOP:-} =~ ^[0-9]{8}$ ]] || bad "SHOP must be 8 digits"
[[ ${APP:-} =~ ^[a-z][a-z0-9-]{0,30}$ ]] || bad "APP must be an app name (lowercase, digits, -)"
[[ ${MOUNT_POINT:-} =~ ^/[A-Za-z0-9/_.+-]+$ && $MOUNT_POINT != *..* ]] || bad "MOUNT_POINT must be an absolute path without .."
[[ -n ${HEALTH_CMD:-} && $HEALTH_CMD != *$'\n'* ]] || bad "HEALTH_CMD must be a one-line shell command"
[[ ${IMAGE:-} =~ $image_re ]] || bad "IMAGE must be an image reference"
need_network
[[ ${DATA_DIR:-} == /* && $DATA_DIR != *..* ]] || bad "DATA_DIR must be an absolute path without .."
[[ ${ARTIFACT_URL:-} =~ ^(https://|file:///)[^[:space:]]+$ ]] || bad "ARTIFACT_URL must be https:// or file:///"
[[ ${ARTIFACT_SHA256:-} =~ ^[0-9a-f]{64}$ ]] || bad "ARTIFACT_SHA256 must be 64 lowercase hex digits"
memory=${MEMORY:-2g} pids=${PIDS:-1024}
[[ $memory =~ ^[0-9]+[kmg]$ ]] || bad "MEMORY must look like 2g"
[[ $pids =~ ^[0-9]+$ ]] || bad "PIDS must be a number"

state="$root/var/lib/poscloud"
mount_point=$MOUNT_POINT
keepalive='trap "exit 0" TERM; while :; do sleep 3600 & wait $!; done'

# 1. The artifact, verified before anything is installed.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
artifact="$work/artifact.tar"
case $ARTIFACT_URL in
  file://*) cp -- "$root${ARTIFACT_URL#file://}" "$artifact" || fail "cannot read $ARTIFACT_URL" ;;
  https://*)
    curl -fsSL --retry 5 --retry-delay 3 --max-time 600 -o "$artifact" -- "$ARTIFACT_URL" ||
      fail "cannot download $ARTIFACT_URL"
    ;;
esac
actual=$(sha256sum "$artifact" | cut -d' ' -f1)
if [[ $actual != "$ARTIFACT_SHA256" ]]; then
  echo "pos: artifact checksum mismatch: expected $ARTIFACT_SHA256, got $actual; nothing was installed" >&2
  exit 3
fi
echo "pos: artifact verified (sha256 $actual)"
want_image=$(docker image inspect -f '{{.Id}}' "$IMAGE") || fail "image $IMAGE is not on this host"

# 2. The eth1 hook: after a reboot the ENI comes up on the host, and only the holder's start
# tells when to hand it over. Written first, so a hook already running has the new inputs
# when the holder starts below (both may hand eth1 over; net_up allows that).
hook_bin=/usr/local/libexec/poscloud/pos.sh
hook_env=/etc/poscloud/pos-net.env
hook_unit=/etc/systemd/system/poscloud-pos-net.service
[[ -f $0 ]] || fail "cannot install the eth1 hook: this script is not a file ($0)"
changed=0
# put (lib.sh) replaces each file by a rename: a hook running from the old file keeps
# reading it (bash reads scripts as it goes).
put "$hook_bin" 0755 "$0"
printf 'ACTION=watch\nCONTAINER=%s\nETH1=%s\nPOS_IP=%s\nPREFIX=%s\nGATEWAY=%s\n' \
  "$container" "$eth1" "$POS_IP" "$PREFIX" "$GATEWAY" >"$work/env"
put "$hook_env" 0644 "$work/env"
cat >"$work/unit" <<EOF
[Unit]
Description=poscloud: eth1 to the POS network holder ($net) each time it starts
After=docker.service
Requires=docker.service

[Service]
EnvironmentFile=$hook_env
ExecStart=$hook_bin
Restart=always
RestartSec=5
# The hook starts the VPN's charon, which must outlive a restart of the hook.
KillMode=process

[Install]
WantedBy=multi-user.target
EOF
put "$hook_unit" 0644 "$work/unit"
if [[ -d /run/systemd/system && -z $root ]]; then
  systemctl daemon-reload
  systemctl enable --quiet poscloud-pos-net.service
  if ((changed)); then
    systemctl restart poscloud-pos-net.service
  else
    systemctl start poscloud-pos-net.service
  fi
  hook=enabled
  echo "pos: eth1 hook poscloud-pos-net.service enabled"
else
  hook=written
  echo "pos: eth1 hook written to $root$hook_unit, not enabled (no systemd here)"
fi

# 3. The holder: no network of its own (eth1 is handed to it), nothing else to do. Replaced
# only when it is missing or not what this stage wants (the image, the shop's hostname).
mkdir -p "$root$DATA_DIR"
have_net=$(docker inspect -f '{{.Image}} {{.Config.Hostname}}' "$net" 2>/dev/null || true)
if [[ $have_net != "$want_image pos-$SHOP" ]]; then
  if [[ -n $have_net ]]; then
    echo "pos: replacing $net; eth1 back to the host first"
    # The POS joins the holder's namespace: it goes with it (podman refuses otherwise).
    pos_apart && take_back "$container"
    take_back "$net"
    docker rm -f "$container" >/dev/null 2>&1 || true
    docker rm -f "$net" >/dev/null
  fi
  # The POS's hostname is set here: Docker refuses --hostname with --network container:.
  docker run -d --name "$net" --hostname "pos-$SHOP" --network none \
    --restart unless-stopped --security-opt no-new-privileges --cap-drop ALL --read-only \
    --pids-limit 16 --memory 32m \
    --label "poscloud.shop=$SHOP" --label "poscloud.app=$APP" --label poscloud.role=net \
    "$IMAGE" sh -c "$keepalive" >/dev/null || fail "docker run $net from $IMAGE failed"
  echo "pos: $net started from $IMAGE"
elif ! running "$net"; then
  docker start "$net" >/dev/null || fail "cannot start $net"
  echo "pos: $net started"
fi
net_id=$(docker inspect -f '{{.Id}}' "$net")

# 4. The POS container: hardened, in the holder's namespace, data mounted. Kept when it has
# the wanted image and network (also when stopped: its installed application stays).
have=$(docker inspect -f '{{.Image}} {{.HostConfig.NetworkMode}}' "$container" 2>/dev/null || true)
if [[ $have != "$want_image container:$net_id" && $have != "$want_image container:$net" ]]; then
  if [[ -n $have ]]; then
    echo "pos: replacing container $container; the data directory stays"
    # A POS from before the holder has eth1 in its own namespace.
    pos_apart && take_back "$container"
    docker rm -f "$container" >/dev/null
  fi
  # Only the capabilities a POS app needs to run its services as their own users.
  docker run -d --name "$container" --network "container:$net" \
    --restart unless-stopped --security-opt no-new-privileges \
    --cap-drop ALL --cap-add CHOWN --cap-add DAC_OVERRIDE --cap-add FOWNER \
    --cap-add SETUID --cap-add SETGID --cap-add KILL --cap-add NET_BIND_SERVICE \
    --pids-limit "$pids" --memory "$memory" \
    --health-cmd "$HEALTH_CMD" --health-interval 30s --health-retries 3 \
    --label "poscloud.shop=$SHOP" --label "poscloud.app=$APP" \
    -v "$root$DATA_DIR:$mount_point" \
    "$IMAGE" sh -c "$keepalive" >/dev/null ||
    fail "docker run $IMAGE failed"
  echo "pos: container $container started from $IMAGE"
elif ! running "$container"; then
  docker start "$container" >/dev/null || fail "cannot start $container"
  echo "pos: container $container started"
elif pos_apart; then
  # The holder was restarted under a running POS (Docker keeps the POS in the old namespace).
  take_back "$container"
  docker restart -t 20 "$container" >/dev/null
  echo "pos: container $container restarted into the namespace of $net"
fi
cid=$(docker inspect -f '{{.Id}}' "$container")

# 5. eth1 into the holder, with the POS address and the gateway as default route.
net_up || fail "cannot hand $eth1 to $net"

# 6. The application, once per artifact.
marker="/opt/pos/.installed"
if [[ $(docker exec "$container" cat "$marker" 2>/dev/null || true) != "$ARTIFACT_SHA256" ]]; then
  docker cp "$artifact" "$container:/tmp/pos-artifact.tar"
  docker exec "$container" sh -c 'mkdir -p /opt/pos/app && tar -xf /tmp/pos-artifact.tar -C /opt/pos/app && rm -f /tmp/pos-artifact.tar && cd /opt/pos/app && sh ./install.sh' ||
    fail "the POS installer failed"
  docker exec "$container" sh -c "printf '%s' '$ARTIFACT_SHA256' > $marker"
  echo "pos: POS application installed"
else
  echo "pos: POS application already installed from this artifact"
fi

mkdir -p "$state/phases"
result=$(printf '{"container":"%s","image":"%s","container_id":"%s","net_container":"%s","pos_ip":"%s","artifact_sha256":"%s","data_dir":"%s","mount":"%s","hook":"%s"}' \
  "$container" "$IMAGE" "$cid" "$net" "$POS_IP" "$ARTIFACT_SHA256" "$DATA_DIR" "$mount_point" "$hook")
printf '%s\n' "$result" >"$state/phases/stage.done"
echo "POSCLOUD_RESULT $result"
