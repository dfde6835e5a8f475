#!/usr/bin/env bash
# The POS container. ACTION=stage (the stage phase, and `pos start`): starts the container
# with hardened options, hands eth1 (the POS interface) to its network namespace with the
# POS address and the subnet gateway as default route, and installs the POS application
# from an artifact whose checksum is verified before anything is installed. Safe to run
# again: what is in place is kept. ACTION=status reports; ACTION=stop takes eth1 back to
# the host and stops the container (the data directory is never touched).
#
# Inputs (environment): ACTION (stage|status|stop, default stage), CONTAINER (default pos),
# ETH1 (default eth1); for stage also:
#   SHOP, APP (rti|daisy), IMAGE (the staged image)
#   ETH1 (host interface to hand over, default eth1), POS_IP, PREFIX (e.g. 24), GATEWAY
#   DATA_DIR   host directory with the POS data, mounted at /usr2 (rti) or /d (daisy);
#              created if missing, never deleted
#   ARTIFACT_URL     https://… or file:///… (a tarball with install.sh at its top)
#   ARTIFACT_SHA256  its SHA-256, 64 hex digits
#   MEMORY (default 2g), PIDS (default 1024)
# POSCLOUD_ROOT prefixes host paths (DATA_DIR, file:// paths, markers): empty on a real
# host, a test host's own directory in tests.
# Exit codes: 0 staged, 1 failure, 2 bad input, 3 artifact checksum mismatch (nothing
# installed).
set -euo pipefail

bad() { echo "pos: $*" >&2; exit 2; }
fail() { echo "pos: $*" >&2; exit 1; }

action=${ACTION:-stage}
[[ $action =~ ^(stage|status|stop)$ ]] || bad "ACTION must be stage, status or stop"
container=${CONTAINER:-pos}
[[ $container =~ ^[a-z][a-z0-9_-]{0,30}$ ]] || bad "CONTAINER must be a simple name"
eth1=${ETH1:-eth1}
[[ $eth1 =~ ^[a-z][a-z0-9]{0,14}$ ]] || bad "ETH1 must be an interface name"

# The container's process as this host sees it. Docker reports host PIDs; an engine in its
# own PID namespace (podman on test hosts) reports its own, so look the process up by the
# container's cgroup and map the PID through NSpid.
container_pid() {
  local cid cpid cg p
  cid=$(docker inspect -f '{{.Id}}' "$container") || return 1
  cpid=$(docker inspect -f '{{.State.Pid}}' "$container") || return 1
  if grep -qs "$cid" "/proc/$cpid/cgroup"; then
    echo "$cpid"
    return 0
  fi
  while IFS= read -r cg; do
    p=${cg#/proc/}
    p=${p%/cgroup}
    if awk -v c="$cpid" '/^NSpid:/ { for (i = 3; i <= NF; i++) if ($i == c) f = 1 } END { exit !f }' "/proc/$p/status" 2>/dev/null; then
      echo "$p"
      return 0
    fi
  done < <(grep -ls "$cid" /proc/[0-9]*/cgroup 2>/dev/null || true)
  return 1
}

case $action in
  status)
    if ! docker inspect "$container" >/dev/null 2>&1; then
      echo 'POSCLOUD_RESULT {"exists":false,"running":false}'
      exit 0
    fi
    running=$(docker inspect -f '{{.State.Running}}' "$container")
    health=$(docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' "$container" 2>/dev/null || echo unknown)
    image=$(docker inspect -f '{{.Config.Image}}' "$container")
    addr=""
    if [[ $running == true ]] && pid=$(container_pid); then
      addr=$(nsenter -t "$pid" -n ip -4 -o addr show dev "$eth1" 2>/dev/null | awk '{print $4; exit}')
    fi
    echo "pos: $container running=$running health=$health image=$image $eth1=${addr:-none}"
    printf 'POSCLOUD_RESULT {"exists":true,"running":%s,"health":"%s","image":"%s","eth1":"%s"}\n' \
      "$running" "$health" "$image" "$addr"
    exit 0
    ;;
  stop)
    if docker inspect "$container" >/dev/null 2>&1; then
      # eth1 first: a veth would vanish with the namespace, a real ENI would just fall back.
      if pid=$(container_pid) && nsenter -t "$pid" -n ip link show "$eth1" >/dev/null 2>&1; then
        nsenter -t "$pid" -n ip link set "$eth1" netns "$$"
        echo "pos: $eth1 back on the host"
      fi
      docker stop -t 20 "$container" >/dev/null
      echo "pos: container $container stopped; its data directory is kept"
    fi
    echo 'POSCLOUD_RESULT {"stopped":true}'
    exit 0
    ;;
esac

# ACTION=stage from here on.
[[ ${SHOP:-} =~ ^[0-9]{8}$ ]] || bad "SHOP must be 8 digits"
[[ ${APP:-} =~ ^(rti|daisy)$ ]] || bad "APP must be rti or daisy"
[[ ${IMAGE:-} =~ ^[a-z0-9][a-z0-9._/:@-]*$ ]] || bad "IMAGE must be an image reference"
ip4='^([0-9]{1,3}\.){3}[0-9]{1,3}$'
[[ ${POS_IP:-} =~ $ip4 ]] || bad "POS_IP must be an IPv4 address"
[[ ${GATEWAY:-} =~ $ip4 ]] || bad "GATEWAY must be an IPv4 address"
if ! [[ ${PREFIX:-} =~ ^[0-9]{1,2}$ ]] || ((PREFIX < 16 || PREFIX > 28)); then
  bad "PREFIX must be 16..28"
fi
[[ ${DATA_DIR:-} == /* && $DATA_DIR != *..* ]] || bad "DATA_DIR must be an absolute path without .."
[[ ${ARTIFACT_URL:-} =~ ^(https://|file:///)[^[:space:]]+$ ]] || bad "ARTIFACT_URL must be https:// or file:///"
[[ ${ARTIFACT_SHA256:-} =~ ^[0-9a-f]{64}$ ]] || bad "ARTIFACT_SHA256 must be 64 lowercase hex digits"
memory=${MEMORY:-2g} pids=${PIDS:-1024}
[[ $memory =~ ^[0-9]+[kmg]$ ]] || bad "MEMORY must look like 2g"
[[ $pids =~ ^[0-9]+$ ]] || bad "PIDS must be a number"

root=${POSCLOUD_ROOT:-}
state="$root/var/lib/poscloud"
mount_point=/usr2
[[ $APP == daisy ]] && mount_point=/d

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

# 2. The container: hardened, no network of its own (eth1 is handed to it), data mounted.
mkdir -p "$root$DATA_DIR"
# Compare image ids, not names: engines normalise names (docker.io/…).
want_image=$(docker image inspect -f '{{.Id}}' "$IMAGE") || fail "image $IMAGE is not on this host"
have=$(docker inspect -f '{{.Image}} {{.State.Running}}' "$container" 2>/dev/null || true)
if [[ $have != "$want_image true" ]]; then
  if [[ -n $have ]]; then
    echo "pos: replacing container $container; the data directory stays"
    # Take eth1 back first: a veth would vanish with the container's namespace.
    if old=$(container_pid) && nsenter -t "$old" -n ip link show "$eth1" >/dev/null 2>&1; then
      nsenter -t "$old" -n ip link set "$eth1" netns "$$"
    fi
    docker rm -f "$container" >/dev/null
  fi
  # Only the capabilities a POS app needs to run its services as their own users.
  docker run -d --name "$container" --hostname "pos-$SHOP" --network none \
    --restart unless-stopped --security-opt no-new-privileges \
    --cap-drop ALL --cap-add CHOWN --cap-add DAC_OVERRIDE --cap-add FOWNER \
    --cap-add SETUID --cap-add SETGID --cap-add KILL --cap-add NET_BIND_SERVICE \
    --pids-limit "$pids" --memory "$memory" \
    --health-cmd 'test -f /opt/pos/.installed' --health-interval 30s --health-retries 3 \
    --label "poscloud.shop=$SHOP" --label "poscloud.app=$APP" \
    -v "$root$DATA_DIR:$mount_point" \
    "$IMAGE" sh -c 'trap "exit 0" TERM; while :; do sleep 3600 & wait $!; done' >/dev/null ||
    fail "docker run $IMAGE failed"
  echo "pos: container $container started from $IMAGE"
fi

pid=$(container_pid) || fail "cannot find the process of container $container"
cid=$(docker inspect -f '{{.Id}}' "$container")

# 3. eth1 into the container, with the POS address and the gateway as default route.
inside() { nsenter -t "$pid" -n "$@"; }
if ! inside ip link show "$eth1" >/dev/null 2>&1; then
  ip link show "$eth1" >/dev/null 2>&1 || fail "interface $eth1 is neither on the host nor in the container"
  ip link set "$eth1" netns "$pid"
  echo "pos: $eth1 handed to container $container"
fi
inside ip link set "$eth1" up
inside ip addr replace "$POS_IP/$PREFIX" dev "$eth1"
inside ip route replace default via "$GATEWAY" dev "$eth1"
echo "pos: $eth1 in $container has $POS_IP/$PREFIX, default via $GATEWAY"

# 4. The application, once per artifact.
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
result=$(printf '{"container":"%s","image":"%s","container_id":"%s","pos_ip":"%s","artifact_sha256":"%s","data_dir":"%s","mount":"%s"}' \
  "$container" "$IMAGE" "$cid" "$POS_IP" "$ARTIFACT_SHA256" "$DATA_DIR" "$mount_point")
printf '%s\n' "$result" >"$state/phases/stage.done"
echo "POSCLOUD_RESULT $result"
