# shellcheck shell=bash
# vpn.sh's charon: started in the holder's namespace and stopped by its PID, its
# strongswan.conf, the groups and plugins it has, loading the files, each location's SAs,
# why a tunnel is not up, bringing one up. Sent between lib.sh and vpn.sh
# (src/remote/mod.rs); they use vpn.sh's paths (conf, state, pidfile, vici, log, the EPEL
# binaries), container, net, root, fips_mode and userspace.
# shellcheck disable=SC2154,SC2034 # those are set by vpn.sh, which reads charon_mode

sw() { "$swanctl_bin" "$@" --uri "unix://$vici"; }

# The holder's process as this host sees it, from the installed pos.sh (stage installs it).
holder_pid() {
  local pos=$root/usr/local/libexec/poscloud/pos.sh
  [[ -x $pos ]] || fail "$pos is missing: stage the POS first"
  ACTION=holder-pid CONTAINER=$container "$pos"
}

# The recorded charon, if it still runs (a recycled PID is not charon).
charon_pid() {
  local p
  p=$(cat "$pidfile" 2>/dev/null) || return 1
  [[ $p =~ ^[0-9]+$ && $(cat "/proc/$p/comm" 2>/dev/null) == charon ]] || return 1
  echo "$p"
}

stop_charon() {
  local p i
  p=$(charon_pid) || { rm -f "$pidfile"; return 0; }
  # TERM: charon deletes its SAs with the peers before it exits.
  kill -TERM "$p" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    [[ -e /proc/$p ]] || break
    sleep 0.2
  done
  if [[ -e /proc/$p ]]; then
    kill -KILL "$p" 2>/dev/null || true
    sleep 0.2
  fi
  rm -f "$pidfile" "$vici"
  echo "vpn: charon $p stopped"
}

# Does the kernel take an ESP SA? Tried in a new, empty namespace so nothing stays behind.
kernel_esp() {
  unshare -n ip xfrm state add src 192.0.2.1 dst 192.0.2.2 proto esp spi 0x100 mode tunnel \
    enc 'cbc(aes)' 0x00000000000000000000000000000000 \
    auth-trunc 'hmac(sha256)' 0x0000000000000000000000000000000000000000000000000000000000000000 128 \
    >/dev/null 2>&1
}

write_strongswan_conf() {
  local kernel=$1
  mkdir -p "$conf/conf.d" "$state"
  cat >"$conf/strongswan.conf.new" <<EOF
# Written by poscloud (vpn.sh): the POS side's charon, run in the namespace of $net.
charon {
  load_modular = no
  # openssl (ECP, GCM) or gcm+aes+gmp, whichever the distribution ships; a missing one is skipped.
  load = random nonce openssl aes sha1 sha2 hmac gcm gmp curve25519 kdf pem pkcs1 x509 pubkey $kernel socket-default vici
  plugins {
    vici {
      socket = unix://$vici
    }
    # 0 whatever the build's default: EPEL 7's 5.7.2 defaults to 2, and its openssl plugin
    # (the ECP groups) refuses to load where OpenSSL cannot enter FIPS mode.
    openssl {
      fips_mode = $fips_mode
    }
  }
  filelog {
    poscloud {
      path = $log
      time_format = %Y-%m-%dT%H:%M:%S
      append = yes
      flush_line = yes
      # <location|n> on each line: the reason for one location is read from its own lines.
      ike_name = yes
      default = 1
    }
  }
}
swanctl {
  load = pem pkcs1 x509 pubkey random
}
EOF
  mv -f "$conf/strongswan.conf.new" "$conf/strongswan.conf"
  if [[ ! -f $conf/swanctl.conf ]]; then
    printf '%s\n' "# Written by poscloud (vpn.sh): one connection and one secrets file per location." \
      "include conf.d/*.conf" "include conf.d/*.secrets" >"$conf/swanctl.conf"
  fi
}

# charon's plugins, as it reports them ("loaded plugins: charon random nonce ...").
loaded_plugins() { { sw --stats 2>/dev/null || true; } | sed -n 's/^loaded plugins: //p'; }

# The key exchange groups charon has (swanctl --list-algs: "dh:" up to 5.9, "ke:" after).
charon_groups() {
  { sw --list-algs 2>/dev/null || true; } |
    awk '/^[a-z-]+:$/ { s = $1; next } s == "dh:" || s == "ke:" { sub(/\[.*/, "", $1); print $1 }'
}

# The key exchange groups named in proposal lists, as charon names them.
groups_of() {
  local t
  for t in ${1//[,-]/ }; do
    case $t in
      modp1024s160) echo MODP_1024_160 ;;
      modp2048s224) echo MODP_2048_224 ;;
      modp2048s256) echo MODP_2048_256 ;;
      modp[0-9]*) echo "MODP_${t#modp}" ;;
      ecp[0-9]*bp) t=${t#ecp} && echo "ECP_${t%bp}_BP" ;;
      ecp[0-9]*) echo "ECP_${t#ecp}" ;;
      curve25519 | x25519) echo CURVE_25519 ;;
      curve448 | x448) echo CURVE_448 ;;
    esac
  done
}

# missing_groups LISTS: prints why and returns 1 when the running charon lacks a key exchange
# group the proposal LISTS (comma-separated) name: such a tunnel can never come up.
missing_groups() {
  local have g missing="" why plugins
  have=" $(charon_groups | tr '\n' ' ') "
  for g in $(groups_of "$1"); do
    [[ $have == *" $g "* || " $missing " == *" $g "* ]] || missing+=${missing:+ }$g
  done
  [[ -z $missing ]] && return 0
  why="charon has no key exchange group ${missing// /, } (named in the proposals)"
  plugins=" $(loaded_plugins) "
  if [[ $plugins != *" openssl "* ]]; then
    why+=": its openssl plugin, which has the ECP groups, did not load ($(grep -iE 'openssl|fips' "$log" 2>/dev/null | tail -n 3 | sed 's/^[^[]*//' | tr '\n' ' ' || true))"
  fi
  echo "$why"
  return 1
}

# Starts charon in the holder's namespace unless it already runs there.
ensure_charon() {
  local hpid p bin=$charon_bin mode t0 plugins
  [[ -x $swanctl_bin ]] || fail "swanctl is not installed: no $swanctl_bin (EPEL package strongswan)"
  [[ -x $bin ]] || fail "charon is not installed: no $bin (EPEL package strongswan)"
  hpid=$(holder_pid) || exit 1
  if p=$(charon_pid); then
    if [[ $(readlink "/proc/$p/ns/net") == "$(readlink "/proc/$hpid/ns/net")" ]]; then
      charon_mode=$(cat "$state/mode" 2>/dev/null || echo unknown)
      return 0
    fi
    echo "vpn: charon $p runs outside the namespace of $net (restarted holder): restarting it"
    stop_charon
  fi
  if ((userspace)) || ! kernel_esp; then
    mode=userspace
    write_strongswan_conf "kernel-libipsec kernel-netlink"
  else
    mode=kernel
    write_strongswan_conf "kernel-netlink"
  fi
  [[ $mode == kernel || -c /dev/net/tun ]] || fail "userspace ESP needs /dev/net/tun"
  [[ $mode == kernel || -f $libipsec_plugin ]] ||
    fail "userspace ESP needs strongSwan's kernel-libipsec plugin: no $libipsec_plugin (EPEL package strongswan-libipsec)"
  rm -f "$vici"
  # nsenter -n and unshare -m (without --fork) exec, and so does sh: $! is charon itself.
  # Without the lock's descriptor (9), which charon would otherwise hold forever.
  # A private /run: charon's pid file path is compiled in (/var/run/charon.pid in EPEL 7's
  # 5.7.2, /var/run being a link to /run; /run/strongswan/charon.pid in later Fedora builds);
  # the vici socket lives in $state.
  # shellcheck disable=SC2016 # $0 is expanded by the inner sh
  setsid nsenter -t "$hpid" -n unshare -m --propagation private \
    sh -c 'mount -t tmpfs -o mode=755 tmpfs /run && mkdir -m 700 /run/strongswan && exec "$0"' "$bin" \
    </dev/null >>"$state/charon.out" 2>&1 9>&- &
  p=$!
  echo "$p" >"$pidfile"
  echo "$mode" >"$state/mode"
  charon_mode=$mode
  # A deadline, not a count of tries: charon takes well under a second, more on a busy host.
  t0=$SECONDS
  until [[ -S $vici ]] && sw --stats >/dev/null 2>&1; do
    [[ -e /proc/$p ]] || fail "charon exited at start: $(tail -n 5 "$state/charon.out" "$log" 2>/dev/null | tr '\n' ' ')"
    ((SECONDS - t0 < 60)) || fail "charon did not answer on its vici socket $vici within 60 s"
    sleep 0.1
  done
  # The plugin file can be there and charon still without it (it loads plugins from its own
  # compiled-in directory): userspace ESP only with the plugin charon says it loaded.
  plugins=" $(loaded_plugins) "
  if [[ $mode == userspace && $plugins != *" kernel-libipsec "* ]]; then
    stop_charon
    fail "charon did not load its kernel-libipsec plugin (userspace ESP); it loaded:$plugins"
  fi
  echo "vpn: charon $p started in the namespace of $net ($mode ESP)"
}

load_all() {
  local out
  out=$(sw --load-all --clear --noprompt --file "$conf/swanctl.conf" 2>&1) ||
    fail "swanctl --load-all failed: $(printf '%s' "$out" | grep -v '^plugin ' | tail -n 5 | tr '\n' ' ')"
}

# "IKE CHILD in out established rekey" for one location (- where unknown), from list-sas.
sa_info() {
  { sw --list-sas --ike "$1" 2>/dev/null || true; } | awk -v loc="$1" '
    BEGIN { ike = "-"; child = "-"; bin = 0; bout = 0; est = "-"; rekey = "-" }
    $1 == loc ":" && $2 ~ /^#/ {
      st = $3; sub(",", "", st)
      if (NF >= 4 && $4 ~ /^IKEv/) { if (ike != "ESTABLISHED") ike = st }
      else if ($0 ~ /reqid/) { c = $5; sub(",", "", c); if (child != "INSTALLED") child = c }
      next
    }
    /^ +established [0-9]+s ago/ { e = $2; sub("s", "", e); if (est == "-") est = e
      if (match($0, /rekeying in [0-9]+s/)) { r = substr($0, RSTART + 12, RLENGTH - 13); if (rekey == "-") rekey = r } }
    $1 == "in" && $0 ~ /bytes/ { for (i = 2; i <= NF; i++) if ($i ~ /^bytes/) { b = $(i - 1); gsub(",", "", b); bin += b } }
    $1 == "out" && $0 ~ /bytes/ { for (i = 2; i <= NF; i++) if ($i ~ /^bytes/) { b = $(i - 1); gsub(",", "", b); bout += b } }
    END { print ike, child, bin, bout, est, rekey }'
}

# A location's IKE and ESP proposal lists, from its connection file, comma-separated.
location_proposals() {
  awk -F' = ' '$1 ~ /^ *(esp_)?proposals$/ { printf "%s,", $2 }' "$conf/conf.d/$1.conf" 2>/dev/null || true
}

# The locations swanctl loads (not those stopped one by one).
locations() {
  local f
  for f in "$conf"/conf.d/*.conf; do
    [[ -e $f ]] || continue
    f=${f##*/}
    echo "${f%.conf}"
  done
}
stopped_locations() {
  local f
  for f in "$conf"/conf.d/*.conf.stopped; do
    [[ -e $f ]] || continue
    f=${f##*/}
    echo "${f%.conf.stopped}"
  done
}

# This script where pos.sh's eth1 hook finds it (replaced only when it differs, by a rename:
# a run of the old file keeps reading it).
install_self() {
  local dest=$root/usr/local/libexec/poscloud/vpn.sh
  [[ -f $0 ]] || return 0
  cmp -s "$0" "$dest" && return 0
  install -D -m 0755 "$0" "$dest.new" && mv -f "$dest.new" "$dest"
}

# loc_json LOCATION [SA-INFO [STOPPED]]: one location as JSON (SA-INFO as sa_info prints it;
# STOPPED true for one stopped alone).
loc_json() {
  local ike child bin bout est rekey
  read -r ike child bin bout est rekey <<<"${2:-$(sa_info "$1")}"
  [[ $est =~ ^[0-9]+$ ]] || est=null
  [[ $rekey =~ ^[0-9]+$ ]] || rekey=null
  printf '{"location":%s,"up":%s,"stopped":%s,"ike_sa":%s,"child_sa":%s,"bytes_in":%s,"bytes_out":%s,"established_s":%s,"rekey_in_s":%s}' \
    "$(json "$1")" "$([[ $child == INSTALLED ]] && echo true || echo false)" "${3:-false}" \
    "$(json "${ike/#-/none}")" "$(json "${child/#-/none}")" "$bin" "$bout" "$est" "$rekey"
}

# reason LOCATION SINCE [TEXT [IKE]]: why a location is not up, from charon's lines for it
# since byte SINCE of its log and TEXT (swanctl's output); IKE, the IKE_SA's state when
# nothing else tells (CONNECTING: a request of ours still unanswered).
reason() {
  local since=$2 text peer
  peer=$(awk -F'= *' '/remote_addrs/ { print $2; exit }' "$conf/conf.d/$1.conf" 2>/dev/null || true)
  text=$({ tail -c +"$((since + 1))" "$log" 2>/dev/null || true; } | grep -F "<$1|" || true)
  text+=$'\n'${3:-}
  if grep -qiE 'AUTHENTICATION_FAILED|authentication of .* failed|tried [0-9]+ shared key|INVALID_HASH|decryption failed|invalid HASH' <<<"$text"; then
    echo "authentication failed (pre-shared key or identities do not match the peer)"
  elif grep -qiE 'NO_PROPOSAL_CHOSEN|no acceptable proposal|no matching proposal' <<<"$text"; then
    echo "no proposal chosen (the peer does not accept the proposals)"
  elif grep -qiE 'TS_UNACCEPTABLE|traffic selectors .* unacceptable' <<<"$text"; then
    echo "traffic selectors unacceptable (the networks do not match the peer's)"
  elif grep -qiE 'INVALID_ID_INFORMATION|no matching peer config|no peer config' <<<"$text"; then
    echo "identity not accepted by the peer"
  elif grep -qiE 'retransmit|giving up|peer not responding' <<<"$text"; then
    echo "no answer from the peer $peer"
  elif [[ -n ${4:-} && $4 != - ]]; then
    echo "the tunnel did not come up in time (its IKE_SA is $4)"
  else
    echo "the tunnel did not come up in time"
  fi
}

# Brings one location's CHILD_SA up; prints the reason and returns 1 when it does not.
bring_up() {
  local l=$1 since=$2 ike child out i initiated=0 t0=$SECONDS
  for ((i = 0; SECONDS - t0 < 22; i++)); do
    read -r ike child _ <<<"$(sa_info "$l")"
    [[ $child == INSTALLED ]] && return 0
    # start_action=start makes charon initiate on load; initiate ourselves only when no
    # IKE_SA is on the way (after a failure, or when the config was already loaded).
    if ((!initiated)) && [[ $ike == - ]] && ((i >= 10)); then
      initiated=1
      out=$(sw --initiate --child "$l" --ike "$l" --timeout 18 2>&1) || true
      continue
    fi
    if ((initiated)) && [[ $ike == - ]]; then
      reason "$l" "$since" "${out:-}"
      return 1
    fi
    sleep 0.2
  done
  reason "$l" "$since" "${out:-}" "$ike"
  return 1
}

log_size() { stat -c %s "$log" 2>/dev/null || echo 0; }
