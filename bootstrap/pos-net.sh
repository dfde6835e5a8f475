# shellcheck shell=bash
# pos.sh's eth1 mechanics: the POS network holder (CONTAINER-net) owns eth1's namespace;
# these move eth1 between the host, the holder and a POS or charon left in an old namespace.
# Sent between lib.sh and pos.sh (src/remote/mod.rs); they use pos.sh's container, net,
# eth1, root and the POS_IP, PREFIX, GATEWAY inputs.
# shellcheck disable=SC2154 # those are set by pos.sh


netns_of() { readlink "/proc/$1/ns/net"; }
has_eth1() { nsenter -t "$1" -n ip link show "$eth1" >/dev/null 2>&1; }
# Prints nothing when eth1 is not there.
eth1_addr() { { nsenter -t "$1" -n ip -4 -o addr show dev "$eth1" 2>/dev/null || true; } | awk '{print $4; exit}'; }

# Takes eth1 back to the host from container $1's namespace, if it is there: a veth would
# vanish with the namespace, a real ENI would only fall back some time later.
take_back() {
  local pid
  pid=$(container_pid "$1") || return 0
  if has_eth1 "$pid"; then
    nsenter -t "$pid" -n ip link set "$eth1" netns "$$" || return 1
    echo "pos: $eth1 back on the host from $1"
  fi
}

# charon keeps the namespace it was started in alive: after a holder restart with no POS
# running, eth1 is left there with it. Takes it back to the host.
charon_take_back() {
  local p h
  p=$(cat "$root/var/lib/poscloud/vpn/charon.pid" 2>/dev/null) || return 0
  [[ $(cat "/proc/$p/comm" 2>/dev/null) == charon ]] || return 0
  h=$(container_pid "$net") || return 0
  if [[ $(netns_of "$p") != "$(netns_of "$h")" ]] && has_eth1 "$p"; then
    nsenter -t "$p" -n ip link set "$eth1" netns "$$" || return 1
    echo "pos: $eth1 back on the host from charon's old namespace"
  fi
}

# Is the POS container running in a namespace of its own (the design before the holder,
# or a holder restarted under it)? Then eth1 there is not in the holder's.
pos_apart() {
  local p h
  p=$(container_pid "$container") || return 1
  h=$(container_pid "$net") || return 0
  [[ $(netns_of "$p") != "$(netns_of "$h")" ]]
}

# eth1 into the holder's namespace, up, with POS_IP/PREFIX only and the default route via
# GATEWAY. Stage and the watch hook may do this at the same moment, and a device freed
# from a dying namespace reaches the host a little later: retry for a while.
net_up() {
  local pid a t0=$SECONDS
  pid=$(container_pid "$net") || { echo "pos: cannot find the process of $net" >&2; return 1; }
  while ((SECONDS - t0 < 30)); do
    has_eth1 "$pid" && break
    if ip link set "$eth1" netns "$pid" 2>/dev/null; then
      echo "pos: $eth1 handed to $net"
      break
    fi
    sleep 0.5
  done
  has_eth1 "$pid" || { echo "pos: $eth1 is not in $net and could not be moved there from the host" >&2; return 1; }
  # Callers test the result (errexit is off in here): every step returns on failure.
  nsenter -t "$pid" -n ip link set "$eth1" up || return 1
  for a in $(nsenter -t "$pid" -n ip -4 -o addr show dev "$eth1" | awk '{print $4}'); do
    [[ $a == "$POS_IP/$PREFIX" ]] || nsenter -t "$pid" -n ip addr del "$a" dev "$eth1" || return 1
  done
  nsenter -t "$pid" -n ip addr replace "$POS_IP/$PREFIX" dev "$eth1" || return 1
  nsenter -t "$pid" -n ip route replace default via "$GATEWAY" dev "$eth1" || return 1
  # Done only once the link carries traffic: a device just moved into a namespace has no
  # carrier for a moment (a real ENI's driver longer), and a caller that pings the POS at
  # once must get an answer.
  local link=""
  t0=$SECONDS
  while :; do
    link=$(nsenter -t "$pid" -n ip -o link show "$eth1" 2>/dev/null) || link=""
    [[ $link == *LOWER_UP*"state UP"* ]] && break
    if ((SECONDS - t0 >= 30)); then
      echo "pos: $eth1 in $net has no carrier after 30 s: ${link:-no such device}" >&2
      return 1
    fi
    sleep 0.2
  done
  echo "pos: $eth1 in $net has $POS_IP/$PREFIX, default via $GATEWAY"
}

# The eth1 hook (ACTION=watch), each time the holder starts.
# Docker may start the POS before its holder at boot; that start fails for good
# ("cannot join network of a non running container", moby/moby#11777): start it now.
hook_revive() {
  local st
  st=$(docker inspect -f '{{.State.Running}} {{.State.Error}}' "$container" 2>/dev/null) || return 0
  if [[ $st == false*"non running container"* ]]; then
    docker start "$container" >/dev/null && echo "pos: watch: $container started after $net"
  fi
}
hook_check() {
  running "$net" || return 0
  # A holder restarted under a running POS: the POS keeps the old namespace with eth1.
  if container_pid "$net" >/dev/null && pos_apart; then
    take_back "$container" && docker restart -t 20 "$container" >/dev/null &&
      echo "pos: watch: $container restarted into the namespace of $net"
  fi
  charon_take_back || true
  net_up || echo "pos: watch: $eth1 not handed to $net" >&2
  hook_revive || true
  # The tunnels, in the holder's (new) namespace; a no-op without VPN locations.
  vpn start || echo "pos: watch: not every VPN tunnel came up (poscloud vpn status)" >&2
}
