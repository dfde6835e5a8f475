#!/usr/bin/env bash
# Prints INPUT rules for `ip[6]tables-restore --noflush` (argument 4 or 6): only INPUT, as
# Docker owns FORWARD, nat and its chains. Drops all but loopback, replies and IPv4 SSH from
# each of ADMIN_CIDRS (none: no SSH, the host is reached through SSM).
set -euo pipefail
f=${1-}
[[ $f == [46] ]] || { echo "usage: $0 4|6" >&2; exit 2; }
printf '%s\n' '*filter' ':INPUT DROP [0:0]' '-F INPUT' '-A INPUT -i lo -j ACCEPT'
# Neighbour discovery is untracked (state INVALID on EL7 kernels): accept it first.
[[ $f == 4 ]] || echo '-A INPUT -p ipv6-icmp -j ACCEPT'
printf '%s\n' '-A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT' \
  '-A INPUT -m conntrack --ctstate INVALID -j DROP'
for c in ${ADMIN_CIDRS-}; do
  [[ $c =~ ^([0-9]{1,3}\.){3}[0-9]{1,3}/[0-9]{1,2}$ ]] || { echo "bad admin CIDR: $c" >&2; exit 2; }
  [[ $f == 6 ]] || echo "-A INPUT -s $c -p tcp -m tcp --dport 22 -m conntrack --ctstate NEW -j ACCEPT"
done
printf '%s\n' '-A INPUT -m limit --limit 5/min -j LOG --log-prefix "poscloud-drop: "' COMMIT
