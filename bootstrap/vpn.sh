#!/usr/bin/env bash
# The POS side of the site-to-site VPN: one IPsec tunnel per florist location, initiated by
# the POS (no inbound port). One strongSwan charon serves all locations; it runs in the
# network namespace of the POS network holder (CONTAINER-net, where eth1 lives, see pos.sh),
# with its own strongswan.conf, vici socket and a private /run (its pid file path is
# compiled in), detached, recorded by PID. Configured with swanctl through that socket.
#
#   apply    create or update LOCATION, start charon if needed, load everything, bring the
#            location's CHILD_SA up and wait for it (~20 s). Exit 1 with the reason if it
#            does not come up. A changed connection or key closes the location's SAs first,
#            so the tunnel is re-established with what is in the files.
#   status   each location (or LOCATION) as charon sees it: IKE and CHILD state, bytes,
#            established and rekey times.
#   delete   terminate LOCATION's SAs, remove its files, unload it; the others stay up.
#   stop     all tunnels down: charon stopped by its PID. With LOCATION: only that one, and
#            it stays down (also across restarts and `start`) until `start` names it; its
#            connection file is renamed LOCATION.conf.stopped, out of swanctl's include.
#   start    charon started again and every location (not stopped one by one) brought up
#            from the files on the host; nothing to do when the host has no location. With
#            LOCATION: that one back in and up. The eth1 hook of pos.sh runs `start` each time
#            the holder starts (reboot, holder restart), so the tunnels come back by themselves.
# apply and start install this script as /usr/local/libexec/poscloud/vpn.sh for that hook.
#
# Inputs (environment): ACTION, CONTAINER (default pos; charon goes in CONTAINER-net),
# IPSEC_USERSPACE (1: userspace ESP even when the kernel has ESP), and per action:
#   apply    LOCATION (^[a-z][a-z0-9-]{0,30}$), PEER_IP, PEER_NETS (CIDR[,CIDR…]),
#            LOCAL_NET (CIDR), LOCAL_IP (eth1's address), LOCAL_ID (the POS's public IP, its
#            IKE identity), REMOTE_ID (default PEER_IP), IKE_VERSION (2 default, or 1),
#            PROPOSALS (IKE, default IKEv2 aes256gcm16-prfsha256-ecp256,aes256gcm16-prfsha256-
#            x25519, IKEv1 aes256-sha256-ecp256,aes256-sha256-modp2048), ESP_PROPOSALS (default
#            aes256gcm16-ecp256), PSK (the pre-shared key: base64 of at least 32 bytes, used as
#            that ASCII text: the string the florist's router admin types in), or instead
#            PSK_PARAM (its SSM SecureString, under /poscloud/) and REGION: the host reads it
#            with its instance role (IMDSv2 credentials, a SigV4 request made by python: no
#            AWS CLI needed), so it travels in no SSM command.
#            Fixed: DPD every 30 s with restart, start_action start (charon keeps it up).
#   status, stop, start   LOCATION (optional)
#   delete   LOCATION
# The PSK only ever goes to the secrets file (written by the printf builtin, umask 077): it
# is unset from the environment before any command runs, so no child (charon included)
# inherits it, and it is never on a command line or in the output.
#
# Files (POSCLOUD_ROOT prefixes them; empty on a real host):
#   /etc/poscloud/vpn/strongswan.conf        charon's and swanctl's settings
#   /etc/poscloud/vpn/swanctl.conf           includes conf.d/*.conf and conf.d/*.secrets
#   /etc/poscloud/vpn/conf.d/LOCATION.conf   the connection (.conf.stopped: stopped alone)
#   /etc/poscloud/vpn/conf.d/LOCATION.secrets  its PSK (root, 0600)
#   /var/lib/poscloud/vpn/charon.pid, charon.vici (socket), charon.log, charon.out, mode,
#                                            lock (runs of this script take turns)
# strongSwan as EPEL 7 installs it (CentOS 7), below POSCLOUD_ROOT, and nowhere else:
#   /usr/libexec/strongswan/charon, /usr/sbin/swanctl         package strongswan (5.7.2)
#   /usr/lib64/strongswan/plugins/libstrongswan-kernel-libipsec.so   package strongswan-libipsec
# charon's openssl plugin gets fips_mode = 0: EPEL 7 builds 5.7.2 with FIPS mode 2 as the
# default, and where OpenSSL cannot enter FIPS mode the plugin then refuses to load, taking
# every ECP group (ecp256 of the default proposals) with it. apply and start check that charon
# has every key exchange group the proposals name and fail naming the missing ones (and
# openssl's own complaint from charon's log) instead of leaving a tunnel that cannot come up.
# ESP: kernel-netlink (kernel ESP) where the kernel can hold an ESP SA, else kernel-libipsec
# (userspace ESP over a TUN device, always UDP-encapsulated on 4500; the plugin must be
# installed, and charon must have loaded it). The check adds a
# throwaway ESP SA in a new, empty network namespace (`unshare -n ip xfrm state add`): it
# fails when the kernel has no ESP (or not even AES-CBC/HMAC-SHA-256), where userspace ESP
# is the one that works. On CentOS 7 the kernel loads esp4 on demand for it, so no modprobe
# (nor /proc/net/xfrm_stat, present here without ESP) is needed. IPSEC_USERSPACE=1 forces
# userspace ESP.
# Results: one `POSCLOUD_RESULT {json}` line on stdout.
# Exit codes: 0 done, 1 failure (apply/start: a tunnel not up), 2 bad input (nothing changed).
set -euo pipefail
if ! declare -F poscloud_lib >/dev/null; then # run from a checkout, not sent by poscloud
  # shellcheck source=lib.sh
  . "${BASH_SOURCE[0]%/*}/lib.sh"
  # shellcheck source=vpn-charon.sh
  . "${BASH_SOURCE[0]%/*}/vpn-charon.sh"
  # shellcheck source=aws-py.sh
  . "${BASH_SOURCE[0]%/*}/aws-py.sh"
  # shellcheck source=vpn-ssm.sh
  . "${BASH_SOURCE[0]%/*}/vpn-ssm.sh"
fi
me=vpn

# The secret leaves the environment first: nothing started below may inherit it.
psk=${PSK-}
unset PSK

action=${ACTION:-}
[[ $action =~ ^(apply|status|delete|stop|start)$ ]] ||
  bad "ACTION must be apply, status, delete, stop or start"
container=${CONTAINER:-pos}
[[ $container =~ ^[a-z][a-z0-9_-]{0,30}$ ]] || bad "CONTAINER must be a simple name"
net=$container-net
userspace=${IPSEC_USERSPACE:-0}
[[ $userspace =~ ^[01]$ ]] || bad "IPSEC_USERSPACE must be 0 or 1"
root=${POSCLOUD_ROOT:-}
# The openssl plugin's FIPS mode (see above). Only a test host (POSCLOUD_ROOT set) may ask
# for another, standing for EPEL's compiled-in 2, to show the failure it causes.
fips_mode=0
if [[ -n $root ]]; then fips_mode=${POSCLOUD_TEST_FIPS_MODE:-0}; fi
[[ $fips_mode =~ ^[012]$ ]] || bad "POSCLOUD_TEST_FIPS_MODE must be 0, 1 or 2"
loc_re='^[a-z][a-z0-9-]{0,30}$'

ipv4() {
  local IFS=. o
  # shellcheck disable=SC2206 # split on dots on purpose
  local parts=($1)
  [[ $1 =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}$ ]] || return 1
  for o in "${parts[@]}"; do
    [[ $o =~ ^(0|[1-9][0-9]*)$ ]] && ((o <= 255)) || return 1
  done
}
cidr() {
  [[ $1 == */* ]] || return 1
  ipv4 "${1%/*}" && [[ ${1#*/} =~ ^(0|[1-9][0-9]?)$ ]] && ((${1#*/} <= 32))
}

location=${LOCATION:-}
case $action in
  apply)
    [[ $location =~ $loc_re ]] || bad "LOCATION must match $loc_re"
    ipv4 "${PEER_IP:-}" || bad "PEER_IP must be an IPv4 address"
    [[ -n ${PEER_NETS:-} ]] || bad "PEER_NETS must be CIDR[,CIDR…]"
    IFS=, read -r -a peer_nets <<<"$PEER_NETS"
    for n in "${peer_nets[@]}"; do cidr "$n" || bad "PEER_NETS: $n is not an IPv4 CIDR"; done
    [[ $PEER_NETS != *, && $PEER_NETS != ,* && $PEER_NETS != *,,* ]] || bad "PEER_NETS has an empty item"
    cidr "${LOCAL_NET:-}" || bad "LOCAL_NET must be an IPv4 CIDR"
    ipv4 "${LOCAL_IP:-}" || bad "LOCAL_IP must be an IPv4 address"
    ipv4 "${LOCAL_ID:-}" || bad "LOCAL_ID must be an IPv4 address (the POS's public address)"
    remote_id=${REMOTE_ID:-$PEER_IP}
    ipv4 "$remote_id" || [[ $remote_id =~ ^[A-Za-z0-9][A-Za-z0-9.@_-]{0,62}$ ]] ||
      bad "REMOTE_ID must be an IPv4 address or a simple name"
    ike_version=${IKE_VERSION:-2}
    [[ $ike_version =~ ^[12]$ ]] || bad "IKE_VERSION must be 2 or 1"
    # strongSwan has no AEAD (GCM) IKE SAs in IKEv1: its default uses AES-CBC with SHA-256.
    if [[ $ike_version == 2 ]]; then
      proposals=${PROPOSALS:-aes256gcm16-prfsha256-ecp256,aes256gcm16-prfsha256-x25519}
    else
      proposals=${PROPOSALS:-aes256-sha256-ecp256,aes256-sha256-modp2048}
    fi
    esp_proposals=${ESP_PROPOSALS:-aes256gcm16-ecp256}
    prop_re='^[a-z0-9_]+(-[a-z0-9_]+)*(,[a-z0-9_]+(-[a-z0-9_]+)*)*$'
    [[ $proposals =~ $prop_re ]] || bad "PROPOSALS must be a strongSwan proposal list"
    [[ $esp_proposals =~ $prop_re ]] || bad "ESP_PROPOSALS must be a strongSwan proposal list"
    if [[ -z $psk && -n ${PSK_PARAM:-} ]]; then
      [[ $PSK_PARAM =~ ^/poscloud/[A-Za-z0-9/_.-]{1,200}$ ]] || bad "PSK_PARAM must be an SSM parameter name under /poscloud/"
      [[ ${REGION:-} =~ ^[a-z]{2}(-[a-z]+)+-[0-9]$ ]] || bad "REGION must be an AWS region"
      # Only the last line of python's complaint: never a response body.
      errf=$(mktemp)
      if ! psk=$(ssm_get 2>"$errf"); then
        why=$(tail -n 1 "$errf")
        rm -f "$errf"
        fail "cannot read the key $PSK_PARAM from SSM: $why"
      fi
      rm -f "$errf"
    fi
    # Base64 of >= 32 bytes: 44+ characters in groups of 4 (never echoed in a message).
    pad=${psk//[^=]/}
    if ! [[ $psk =~ ^[A-Za-z0-9+/]+={0,2}$ ]] || ((${#psk} % 4 != 0)) ||
      ((${#psk} * 3 / 4 - ${#pad} < 32)); then
      bad "PSK must be base64 of at least 32 bytes"
    fi
    ;;
  delete)
    [[ $location =~ $loc_re ]] || bad "LOCATION must match $loc_re"
    ;;
  status | stop | start)
    [[ -z $location || $location =~ $loc_re ]] || bad "LOCATION must match $loc_re"
    ;;
esac

conf=$root/etc/poscloud/vpn
state=$root/var/lib/poscloud/vpn
pidfile=$state/charon.pid
vici=$state/charon.vici
log=$state/charon.log
export STRONGSWAN_CONF=$conf/strongswan.conf

# One run at a time: two applies must not both start a charon or load half-written files.
mkdir -p "$state"
exec 9>"$state/lock"
flock -w 120 9 || fail "another vpn.sh run holds $state/lock"

# EPEL 7's paths only (see above): a host without them has no strongSwan for poscloud.
charon_bin=$root/usr/libexec/strongswan/charon
swanctl_bin=$root/usr/sbin/swanctl
libipsec_plugin=$root/usr/lib64/strongswan/plugins/libstrongswan-kernel-libipsec.so

case $action in
  apply)
    ensure_charon
    # Before anything is written: a tunnel charon has no group for would never come up.
    why=$(missing_groups "$proposals,$esp_proposals") || fail "$location: $why"
    since=$(log_size)
    umask 077
    children="$location"
    {
      echo "# Written by poscloud (vpn.sh): the tunnel to florist location $location."
      echo "connections {"
      echo "  $location {"
      echo "    version = $ike_version"
      echo "    local_addrs = $LOCAL_IP"
      echo "    remote_addrs = $PEER_IP"
      echo "    proposals = $proposals"
      echo "    dpd_delay = 30s"
      echo "    local {"
      echo "      auth = psk"
      echo "      id = $LOCAL_ID"
      echo "    }"
      echo "    remote {"
      echo "      auth = psk"
      echo "      id = $remote_id"
      echo "    }"
      echo "    children {"
      echo "      $children {"
      echo "        local_ts = $LOCAL_NET"
      echo "        remote_ts = $PEER_NETS"
      echo "        esp_proposals = $esp_proposals"
      echo "        dpd_action = restart"
      echo "        start_action = start"
      echo "      }"
      echo "    }"
      echo "  }"
      echo "}"
    } >"$conf/conf.d/$location.conf.new"
    # printf is a builtin: the key is on no command line. umask 077: root only, mode 600.
    printf 'secrets {\n  ike-%s {\n    id-local = %s\n    id-remote = %s\n    secret = "%s"\n  }\n}\n' \
      "$location" "$LOCAL_ID" "$remote_id" "$psk" >"$conf/conf.d/$location.secrets.new"
    psk=""
    chmod 600 "$conf/conf.d/$location.secrets.new" "$conf/conf.d/$location.conf.new"
    # apply brings a location up: one stopped alone is back in.
    rm -f "$conf/conf.d/$location.conf.stopped"
    install_self
    changed=0
    for f in "$conf/conf.d/$location".{conf,secrets}; do
      [[ -f $f ]] && ! cmp -s "$f.new" "$f" && changed=1
      mv -f "$f.new" "$f"
    done
    # Changed settings or key: re-establish, so that the tunnel runs with what is in the files
    # (an established IKE_SA would keep the old ones until it is re-authenticated).
    if ((changed)); then
      sw --terminate --ike "$location" --timeout 10 >/dev/null 2>&1 || true
      echo "vpn: $location changed: its SAs were closed to re-establish them"
    fi
    load_all
    echo "vpn: $location loaded (IKEv$ike_version to $PEER_IP, $LOCAL_NET <-> $PEER_NETS)"
    if why=$(bring_up "$location" "$since"); then
      read -r ike child _ <<<"$(sa_info "$location")"
      echo "vpn: $location is up ($charon_mode ESP)"
      printf 'POSCLOUD_RESULT {"location":%s,"state":"up","ike_sa":%s,"child_sa":%s,"esp":%s}\n' \
        "$(json "$location")" "$(json "$ike")" "$(json "$child")" "$(json "$charon_mode")"
      exit 0
    fi
    read -r ike child _ <<<"$(sa_info "$location")"
    state_word=down
    [[ $ike != - ]] && state_word=connecting
    echo "vpn: $location is not up: $why" >&2
    printf 'POSCLOUD_RESULT {"location":%s,"state":"%s","ike_sa":%s,"child_sa":%s,"reason":%s}\n' \
      "$(json "$location")" "$state_word" "$(json "${ike/#-/none}")" "$(json "${child/#-/none}")" "$(json "$why")"
    exit 1
    ;;

  status)
    running=false
    charon_pid >/dev/null && running=true
    list=""
    while IFS= read -r l; do
      [[ -z $location || $l == "$location" ]] || continue
      info="- - 0 0 - -"
      [[ $running == true ]] && info=$(sa_info "$l")
      read -r ike child bin bout est _ <<<"$info"
      when=""
      [[ $est != - ]] && when=", established ${est}s ago"
      echo "vpn: $l: IKE ${ike/#-/none}, CHILD ${child/#-/none}, bytes in $bin out $bout$when"
      list+=${list:+,}$(loc_json "$l" "$info")
    done < <(locations)
    while IFS= read -r l; do
      [[ -z $location || $l == "$location" ]] || continue
      echo "vpn: $l: stopped (vpn start --location $l brings it back)"
      list+=${list:+,}$(loc_json "$l" "- - 0 0 - -" true)
    done < <(stopped_locations)
    [[ -z $location || -f $conf/conf.d/$location.conf || -f $conf/conf.d/$location.conf.stopped ]] ||
      fail "no location $location on this host"
    echo "POSCLOUD_RESULT {\"charon\":$running,\"locations\":[$list]}"
    exit 0
    ;;

  delete)
    existed=false
    for f in "$conf/conf.d/$location".{conf,conf.stopped,secrets}; do
      [[ -f $f ]] && existed=true
    done
    rm -f "$conf/conf.d/$location".{conf,conf.stopped,secrets}
    if charon_pid >/dev/null; then
      sw --terminate --ike "$location" --timeout 10 >/dev/null 2>&1 || true
      # Unloads the connection and its key (--clear): they are no longer in the files.
      load_all
    fi
    echo "vpn: $location deleted (existed: $existed)"
    printf 'POSCLOUD_RESULT {"deleted":%s,"existed":%s}\n' "$(json "$location")" "$existed"
    exit 0
    ;;

  stop)
    if [[ -z $location ]]; then
      stop_charon
      echo 'POSCLOUD_RESULT {"stopped":true}'
      exit 0
    fi
    if [[ -f $conf/conf.d/$location.conf ]]; then
      mv -f "$conf/conf.d/$location.conf" "$conf/conf.d/$location.conf.stopped"
    elif [[ ! -f $conf/conf.d/$location.conf.stopped ]]; then
      fail "no location $location on this host"
    fi
    if charon_pid >/dev/null; then
      sw --terminate --ike "$location" --timeout 10 >/dev/null 2>&1 || true
      # Unloads the connection (no longer included): nothing brings it back up.
      load_all
    fi
    echo "vpn: $location stopped; the other locations keep running"
    printf 'POSCLOUD_RESULT {"stopped":%s}\n' "$(json "$location")"
    exit 0
    ;;

  start)
    if [[ -n $location ]]; then
      if [[ -f $conf/conf.d/$location.conf.stopped ]]; then
        mv -f "$conf/conf.d/$location.conf.stopped" "$conf/conf.d/$location.conf"
      elif [[ ! -f $conf/conf.d/$location.conf ]]; then
        fail "no location $location on this host"
      fi
    fi
    if [[ -z $(locations) ]]; then
      echo "vpn: no location to start on this host"
      echo 'POSCLOUD_RESULT {"charon":false,"locations":[]}'
      exit 0
    fi
    install_self
    ensure_charon
    since=$(log_size)
    load_all
    list="" failed=0
    while IFS= read -r l; do
      [[ -z $location || $l == "$location" ]] || continue
      if ! why=$(missing_groups "$(location_proposals "$l")"); then
        echo "vpn: $l is not up: $why" >&2
        failed=1
      else
        # An IKE_SA still trying from before (the router had no key yet) retransmits on
        # charon's backoff, 24 s and more apart by now: start afresh instead of waiting.
        read -r ike child _ <<<"$(sa_info "$l")"
        if [[ $child != INSTALLED && $ike != - && $ike != ESTABLISHED ]]; then
          sw --terminate --ike "$l" --timeout 10 >/dev/null 2>&1 || true
        fi
        if why=$(bring_up "$l" "$since"); then
          echo "vpn: $l is up"
        else
          echo "vpn: $l is not up: $why" >&2
          failed=1
        fi
      fi
      list+=${list:+,}$(loc_json "$l")
    done < <(locations)
    echo "POSCLOUD_RESULT {\"charon\":true,\"esp\":$(json "$charon_mode"),\"locations\":[$list]}"
    exit "$failed"
    ;;
esac
