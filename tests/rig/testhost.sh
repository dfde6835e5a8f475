#!/usr/bin/env bash
# Builds (`up`) and removes (`down`) a test host for the integration tests: a network
# namespace reached over a veth pair, a real sshd in it, and optionally a rootful podman
# service with a Docker-compatible socket. See tests/rig/README.md.
#
#   testhost.sh up NAME INDEX DIR [--podman] [--login root]   prints KEY=VALUE lines on stdout
#   testhost.sh down NAME DIR                  idempotent
#   testhost.sh agent-start NAME DIR           the SSM agent stand-in (ssm-agent.py) starts
#   testhost.sh agent-stop NAME DIR            ... and stops
#   testhost.sh console NAME DIR [KEY.pub]     the first boot ends: cloud-init's host-key
#                                              block appears on the console (DIR/console.log)
#
# Only the network is isolated: scripts run over SSH (as centos, through sudo) or from the
# agent stand-in as root on the real filesystem and must act below $POSCLOUD_ROOT
# (DIR/root). Diagnostics go to stderr, never to stdout.
set -euo pipefail

prog=testhost
die() { echo "$prog: $*" >&2; exit 1; }
usage() {
  cat >&2 <<'EOF'
usage: testhost.sh up NAME INDEX DIR [--podman] [--login root]
       testhost.sh down NAME DIR
       testhost.sh agent-start|agent-stop NAME DIR
       testhost.sh console NAME DIR [KEY.pub]
  NAME   1-8 lowercase letters/digits (netns pc-NAME)
  INDEX  1..254, picks the veth pair pch<INDEX>a/b and the subnet 10.200.INDEX.0/30
  DIR    an existing directory that holds the host's state (keys, configs, logs, root/)
EOF
  exit 2
}

# ---- input checks --------------------------------------------------------------------
(($# >= 1)) || usage
cmd=$1
shift
case $cmd in
  up)
    (($# >= 3)) || usage
    name=$1 index=$2 dir_arg=$3
    shift 3
    podman=0 user=centos
    while (($#)); do
      case $1 in
        --podman) podman=1 ;;
        # A host poscloud did not create (--target, a cutover source) may let root log in.
        --login)
          [[ ${2:-} == root ]] || die "--login takes 'root' (the default login is centos)"
          user=root
          shift
          ;;
        *) die "unknown option '$1' (--podman, --login root)" ;;
      esac
      shift
    done
    if ! [[ $index =~ ^[1-9][0-9]{0,2}$ ]] || ((index > 254)); then
      die "INDEX must be 1..254, got '$index'"
    fi
    ;;
  down | agent-start | agent-stop)
    (($# == 2)) || usage
    name=$1 dir_arg=$2
    ;;
  console)
    (($# == 2 || $# == 3)) || usage
    name=$1 dir_arg=$2 console_key=${3:-}
    ;;
  -h | --help) usage ;;
  *) die "unknown command '$cmd' (up|down|agent-start|agent-stop|console)" ;;
esac
[[ $name =~ ^[a-z0-9]{1,8}$ ]] || die "NAME must be 1-8 lowercase letters/digits, got '$name'"
((EUID == 0)) || die "must run as root (network namespaces, sshd, rootful podman)"

netns=pc-$name
if [[ $cmd != down ]]; then
  [[ -d $dir_arg ]] || die "DIR '$dir_arg' is not a directory (the caller creates it)"
  dir=$(cd "$dir_arg" && pwd -P)
  # The path ends up unquoted in sshd_config and containers.conf: keep it plain.
  [[ $dir =~ ^[A-Za-z0-9._/+-]+$ ]] || die "DIR path '$dir' has characters other than [A-Za-z0-9._/+-]"
else
  # down must work even after the caller removed DIR.
  if [[ -d $dir_arg ]]; then dir=$(cd "$dir_arg" && pwd -P); else dir=$dir_arg; fi
fi

# ---- helpers ---------------------------------------------------------------------------

# True if PID runs and is not a zombie (a zombie still answers kill -0).
alive() {
  local s
  { read -r s <"/proc/$1/stat"; } 2>/dev/null || return 1
  # "PID (COMM) STATE ...": COMM may hold spaces and parentheses, so look after the last ')'.
  s=${s##*) }
  [[ -n $s && ${s:0:1} != [ZX] ]]
}

# Reads a PID file; prints nothing unless it holds a number.
read_pid() {
  local pid=""
  if [[ -f $1 ]]; then read -r pid <"$1" || true; fi
  if [[ $pid =~ ^[0-9]+$ ]]; then echo "$pid"; fi
}

# Guards against PID reuse: a recorded PID is only ours if its command line names DIR.
ours() {
  local c
  c=$(tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null) || return 1
  [[ $c == *"$dir"* ]]
}

# stop_pids GRACE PID...: sends TERM to all, waits up to GRACE seconds for all to exit,
# then KILLs the rest and waits a little more.
stop_pids() {
  local grace=$1 i p left
  shift
  kill -TERM "$@" 2>/dev/null || true
  for ((i = 0; i <= grace * 10 + 50; i++)); do
    left=()
    for p in "$@"; do alive "$p" && left+=("$p"); done
    ((${#left[@]})) || return 0
    if ((i == grace * 10)); then
      echo "$prog: PIDs ${left[*]} ignored TERM for ${grace}s, killing them" >&2
      kill -KILL "${left[@]}" 2>/dev/null || true
    fi
    sleep 0.1
  done
  echo "$prog: PIDs ${left[*]} survived KILL" >&2
  return 1
}

# child_of PID COMM: the first child of PID whose command name is COMM. The name matters:
# the podman wrapper's init runs `mount` children before it starts the service, and a
# child found then is not the service (that race failed `up` under load).
child_of() {
  local f s ppid comm
  for f in /proc/[0-9]*/stat; do
    { read -r s <"$f"; } 2>/dev/null || continue # processes come and go
    read -r _ ppid _ <<<"${s##*) }" # see alive()
    [[ $ppid == "$1" ]] || continue
    comm=${s#* (}
    comm=${comm%) *}
    if [[ $comm == "$2" ]]; then
      echo "${s%% *}"
      return
    fi
  done
}

netns_exists() { [[ -e /run/netns/$netns ]]; }

# Cleared by a failed `up` that did not create the netns itself (another host's, then).
touch_netns=1

# ---- down ------------------------------------------------------------------------------
do_down() {
  local rc=0 pid idx="" env_name="" k v f link

  if [[ -f $dir/testhost.env ]]; then
    while IFS='=' read -r k v; do
      case $k in
        NAME) env_name=$v ;;
        INDEX) idx=$v ;;
      esac
    done <"$dir/testhost.env"
    [[ -z $env_name || $env_name == "$name" ]] ||
      die "DIR '$dir' belongs to test host '$env_name', not '$name'"
  fi

  # Remove containers through the API first: killing the service would leave conmon and
  # the container processes behind.
  pid=$(read_pid "$dir/podman.pid")
  if [[ -n $pid ]] && alive "$pid" && ours "$pid" && [[ -S $dir/podman.sock ]]; then
    timeout 30 podman --remote --url "unix://$dir/podman.sock" rm --all --force --time 0 \
      >/dev/null 2>&1 || echo "$prog: removing containers of '$name' failed, killing anyway" >&2
  fi
  # Containers still running (API unreachable, DIR gone) get killed below, but nobody would
  # remove their cgroups then: note their IDs from their conmon, which runs in our netns.
  local -a ctr_ids=()
  local id
  if ((touch_netns)) && netns_exists; then
    for pid in $(ip netns pids "$netns" 2>/dev/null); do
      [[ $(cat "/proc/$pid/comm" 2>/dev/null) == conmon ]] || continue
      id=$(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | sed -n '/^-c$/{n;/^[0-9a-f]\{64\}$/p}')
      if [[ -n $id ]]; then ctr_ids+=("$id"); fi
    done
  fi

  # When the service exits, the init of its PID namespace exits too and the kernel kills
  # what is left in there (conmon, containers).
  pid=$(read_pid "$dir/podman.pid")
  if [[ -n $pid ]] && alive "$pid" && ours "$pid"; then
    stop_pids 15 "$pid" || rc=1
  fi
  local -a pids=()
  for f in podman-wrapper.pid sshd.pid ssm-agent.pid; do
    pid=$(read_pid "$dir/$f")
    if [[ -n $pid ]] && alive "$pid" && ours "$pid"; then pids+=("$pid"); fi
  done
  if ((${#pids[@]})); then stop_pids 5 "${pids[@]}" || rc=1; fi

  if ((touch_netns)) && netns_exists; then
    # Anything still in the namespace was started by this host: SSH sessions (sshd leaves
    # them running), their background jobs, all processes of a host whose DIR is gone.
    mapfile -t pids < <(ip netns pids "$netns" 2>/dev/null || true)
    if ((${#pids[@]})); then
      echo "$prog: stopping leftover processes in $netns: ${pids[*]}" >&2
      stop_pids 5 "${pids[@]}" || rc=1
    fi
    # Deleting a veth end removes the pair at once, whereas a deleted netns (and the veth
    # in it) goes away lazily: this lets the INDEX be reused right after `down`.
    for link in $(ip -n "$netns" -o link show type veth 2>/dev/null | awk -F'[:@]' '{print $2}'); do
      # A pair inside the namespace (eth1/lan0) goes with its first end.
      ip -n "$netns" link show "$link" >/dev/null 2>&1 || continue
      ip -n "$netns" link del "$link" || rc=1
    done
    ip netns del "$netns" || rc=1
  fi
  if [[ $idx =~ ^[0-9]+$ ]] && ip link show "pch${idx}a" >/dev/null 2>&1; then
    ip link del "pch${idx}a" || rc=1
  fi

  # Best effort: rmdir removes a cgroup only once it is empty; its tasks may need a moment.
  local cg i
  for id in "${ctr_ids[@]}"; do
    for cg in /sys/fs/cgroup/*/libpod_parent/libpod-"$id"; do
      for ((i = 0; i < 20; i++)); do
        [[ -d $cg ]] || break
        rmdir "$cg" 2>/dev/null || sleep 0.1
      done
    done
  done

  rm -f "$dir/podman.pid" "$dir/podman-wrapper.pid" "$dir/sshd.pid" "$dir/ssm-agent.pid" "$dir/podman.sock" 2>/dev/null || true
  return "$rc"
}

if [[ $cmd == down ]]; then
  do_down || die "down '$name' did not finish cleanly (see messages above)"
  exit 0
fi

# ---- the SSM agent stand-in and the console --------------------------------------------
# The agent runs in the host's netns as root with DIR/agent.env only (a systemd service's
# environment: no HOME), as the real agent does after user-data's `ssm` step.
if [[ $cmd == agent-start ]]; then
  if ! netns_exists || [[ ! -f $dir/agent.env ]]; then die "no test host '$name' in $dir (run up first)"; fi
  pid=$(read_pid "$dir/ssm-agent.pid")
  if [[ -n $pid ]] && alive "$pid" && ours "$pid"; then exit 0; fi
  rm -f "$dir/ssm/registration.json"
  mapfile -t agent_env <"$dir/agent.env"
  ip netns exec "$netns" env -i "${agent_env[@]}" python3 "$(dirname "$0")/ssm-agent.py" "$dir" \
    </dev/null >>"$dir/ssm-agent.log" 2>&1 &
  echo $! >"$dir/ssm-agent.pid"
  deadline=$((SECONDS + 60))
  until grep -q "\"pid\": $!," "$dir/ssm/registration.json" 2>/dev/null; do
    alive "$!" || die "the SSM agent stand-in exited; $dir/ssm-agent.log:$(echo; tail -n 20 "$dir/ssm-agent.log")"
    ((SECONDS < deadline)) || die "the SSM agent stand-in did not register within 60 s"
    sleep 0.05
  done
  exit 0
fi
if [[ $cmd == agent-stop ]]; then
  pid=$(read_pid "$dir/ssm-agent.pid")
  if [[ -n $pid ]] && alive "$pid" && ours "$pid"; then stop_pids 5 "$pid"; fi
  rm -f "$dir/ssm-agent.pid"
  exit 0
fi
if [[ $cmd == console ]]; then
  key=${console_key:-$dir/ssh_host_ed25519_key.pub}
  read -r key_type key_blob _ <"$key" || die "cannot read the key $key"
  # What cloud-init 19.4 leaves on a CentOS 7 console when the first boot ends: the
  # fingerprints through syslog (prefixed "ec2:"), then the keys, type and base64 only.
  # EC2 serves the console with CRLF line ends.
  fp=$(ssh-keygen -l -f "$key" | awk '{print $1, $2}')
  ts=$(date '+%b %e %T')
  {
    printf '[   12.345678] cloud-init[1234]: Cloud-init v. 19.4 finished at %s. Datasource DataSourceEc2.  Up 321.00 seconds\r\n' "$(date -u)"
    printf '<14>%s ec2: \r\n' "$ts"
    printf '<14>%s ec2: #############################################################\r\n' "$ts"
    printf '<14>%s ec2: -----BEGIN SSH HOST KEY FINGERPRINTS-----\r\n' "$ts"
    printf '<14>%s ec2: %s no comment (ED25519)\r\n' "$ts" "$fp"
    printf '<14>%s ec2: -----END SSH HOST KEY FINGERPRINTS-----\r\n' "$ts"
    printf '<14>%s ec2: #############################################################\r\n' "$ts"
    printf -- '-----BEGIN SSH HOST KEY KEYS-----\r\n%s %s\r\n-----END SSH HOST KEY KEYS-----\r\n' "$key_type" "$key_blob"
  } >"$dir/console.log.tmp"
  mv "$dir/console.log.tmp" "$dir/console.log"
  exit 0
fi

# ---- up --------------------------------------------------------------------------------
for c in ip ssh ssh-keygen ssh-keyscan /usr/sbin/sshd unshare nsenter timeout flock; do
  command -v "$c" >/dev/null || die "'$c' not found (run scripts/setup.sh)"
done
if ((podman)); then
  for c in podman runc busybox docker tar; do
    command -v "$c" >/dev/null || die "'$c' not found (run scripts/setup.sh)"
  done
  # sun_path holds 107 bytes.
  ((${#dir} + 11 <= 107)) || die "DIR '$dir' is too long for a unix socket path"
fi

host_bash=${TESTHOST_BASH:-/var/cache/poscloud/bash-4.2.45/bin/bash}
[[ $("$host_bash" --version 2>/dev/null) == *"version 4.2."* ]] ||
  die "$host_bash is not bash 4.2 (run scripts/setup.sh, or set TESTHOST_BASH)"

veth_host=pch${index}a veth_ns=pch${index}b
host_ip=10.200.$index.1 ns_ip=10.200.$index.2
if [[ $user != root ]]; then
  id "$user" >/dev/null 2>&1 || die "no user '$user' on this machine (run scripts/setup.sh)"
  sudo -n -l -U "$user" >/dev/null 2>&1 || die "'$user' has no sudo rights (run scripts/setup.sh)"
fi

netns_exists && die "netns $netns exists: run 'testhost.sh down $name DIR' first"
ip link show "$veth_host" >/dev/null 2>&1 && die "interface $veth_host exists (INDEX $index in use?)"
for f in sshd.pid podman.pid; do
  pid=$(read_pid "$dir/$f")
  if [[ -n $pid ]] && alive "$pid" && ours "$pid"; then
    die "a test host already runs from DIR '$dir' (PID $pid): run 'testhost.sh down' first"
  fi
done

# A failed `up` takes down whatever it had built, so the caller has nothing to clean; but
# only what it built: a concurrent `up` with a clashing NAME or INDEX must not harm the other.
up_done=0 own_netns=0
# shellcheck disable=SC2317 # called through the trap
on_exit() {
  if ((up_done == 0)); then
    echo "$prog: up '$name' failed, cleaning up" >&2
    touch_netns=$own_netns
    do_down || true
  fi
}
trap on_exit EXIT
trap 'echo "$prog: failed (line $LINENO): $BASH_COMMAND" >&2' ERR

# -- network (testhost.env tells `down` what to delete: INDEX only once the veth is ours)
printf 'NAME=%s\n' "$name" >"$dir/testhost.env"
ip netns add "$netns" || die "cannot create netns $netns (NAME in use?)"
own_netns=1
ip link add "$veth_host" type veth peer name "$veth_ns" ||
  die "cannot create veth $veth_host/$veth_ns (INDEX $index in use?)"
printf 'INDEX=%s\n' "$index" >>"$dir/testhost.env"
ip link set "$veth_ns" netns "$netns"
ip addr add "$host_ip/30" dev "$veth_host"
ip link set "$veth_host" up
ip -n "$netns" addr add "$ns_ip/30" dev "$veth_ns"
ip -n "$netns" link set "$veth_ns" up
ip -n "$netns" link set lo up
# eth1 stands for the POS interface (the second ENI), free for a script to hand to a
# container; its peer lan0 plays the VPC side with the subnet gateway's address.
ip -n "$netns" link add eth1 type veth peer name lan0
ip -n "$netns" addr add 192.168.222.1/24 dev lan0
ip -n "$netns" link set lan0 up
# No default route in the namespace on purpose: nothing in it can reach past the veth.

# -- keys (rm -f: ssh-keygen asks before overwriting, which would hang a test)
rm -f "$dir"/ssh_host_ed25519_key{,.pub} "$dir"/client_key{,.pub} "$dir"/wrong_host_key{,.pub}
ssh-keygen -q -t ed25519 -N '' -C "testhost-$name" -f "$dir/ssh_host_ed25519_key"
ssh-keygen -q -t ed25519 -N '' -C "client@testhost-$name" -f "$dir/client_key"
ssh-keygen -q -t ed25519 -N '' -C "wrong-host-key" -f "$dir/wrong_host_key"
rm -f "$dir/wrong_host_key" # only its public half is needed
cp "$dir/client_key.pub" "$dir/authorized_keys"
read -r key_type key_blob _ <"$dir/ssh_host_ed25519_key.pub"
echo "$ns_ip $key_type $key_blob" >"$dir/known_hosts"

mkdir -p "$dir/root"
# sshd reads the login's authorized_keys as that user: DIR must be searchable by centos.
chmod 0755 "$dir"
chmod 0644 "$dir/authorized_keys"

# -- strongSwan laid out as on CentOS 7 (EPEL 7's packages strongswan and strongswan-libipsec)
# in the host's root: `strongswan` (EPEL's name for `ipsec`), /etc/strongswan, charon in
# /usr/libexec/strongswan, swanctl in /usr/sbin, plugins in /usr/lib64/strongswan/plugins.
# Scripts look only there (below $POSCLOUD_ROOT). This machine has Debian's strongSwan 5.9,
# so these are links to Debian's files (a wrapper for `strongswan`, a copy of the config, so
# that nothing written there reaches the machine's /etc); what Debian lacks is left out, as
# on a host without the package. Debian's binaries still use their compiled-in paths (plugins
# from /usr/lib/ipsec/plugins, defaults from /etc/strongswan.conf): the layout is EL's, the
# build is not EPEL's 5.7.2 (see tests/rig/README.md). Only with --podman: those hosts stand
# for a poscloud host with its packages; a bare sshd host's root stays empty.
el_strongswan() {
  local r=$dir/root deb=/usr/lib/ipsec f
  mkdir -p "$r/usr/libexec/strongswan" "$r/usr/sbin" "$r/usr/lib64/strongswan/plugins" "$r/etc/strongswan"
  if [[ -x $deb/charon ]]; then ln -sfn "$deb/charon" "$r/usr/libexec/strongswan/charon"; fi
  if [[ -x /usr/sbin/swanctl ]]; then ln -sfn /usr/sbin/swanctl "$r/usr/sbin/swanctl"; fi
  if [[ -x /usr/sbin/ipsec ]]; then
    printf '#!/bin/sh\n# EPEL names it strongswan; Debian ipsec (tests/rig/testhost.sh).\nexec /usr/sbin/ipsec "$@"\n' \
      >"$r/usr/sbin/strongswan"
    chmod 0755 "$r/usr/sbin/strongswan"
    # /usr/sbin is on a CentOS host's PATH: here DIR/bin is.
    mkdir -p "$dir/bin"
    ln -sfn "$r/usr/sbin/strongswan" "$dir/bin/strongswan"
  fi
  # Every plugin Debian has (kernel-libipsec: libcharon-extra-plugins), at EPEL's path.
  for f in "$deb"/plugins/libstrongswan-*.so; do
    if [[ -e $f ]]; then ln -sfn "$f" "$r/usr/lib64/strongswan/plugins/${f##*/}"; fi
  done
  for f in /etc/strongswan.conf /etc/strongswan.d /etc/swanctl; do
    if [[ -e $f ]]; then cp -a "$f" "$r/etc/strongswan/"; fi
  done
}
if ((podman)); then el_strongswan; fi

# -- sshd
# HOME: an empty home, so that the machine's own ~/.bashrc (which bash reads for commands
# run by sshd) cannot print into the scripts' output.
mkdir -p "$dir/home"
setenv="POSCLOUD_ROOT=$dir/root HOME=$dir/home"
# CentOS 7's bash (4.2) first on the sessions' PATH, so `bash` and `#!/usr/bin/env bash`
# run the scripts under test as a real host would (scripts/setup.sh builds it).
mkdir -p "$dir/bin"
ln -sf "$host_bash" "$dir/bin/bash"
# CentOS' /bin/sh is bash too (in POSIX mode): the agent stand-in's `sh -c` finds it here.
ln -sf "$host_bash" "$dir/bin/sh"
if ((podman)); then
  setenv+=" DOCKER_HOST=unix://$dir/podman.sock"
  # podman 4.3's Docker API answers the docker CLI's commit request (sent without a body)
  # with "Decode(): EOF"; Docker itself accepts it. On test hosts `docker commit` goes to
  # podman's own client on the same socket, everything else to the docker CLI.
  real_docker=$(command -v docker) || die "no docker CLI (needed with --podman)"
  # shellcheck disable=SC2016 # $1 and $DOCKER_HOST are for the shim, not for this script
  printf '#!/bin/sh
if [ "$1" = commit ]; then shift; exec podman --remote --url "$DOCKER_HOST" commit "$@"; fi
exec %s "$@"
' \
    "$real_docker" >"$dir/bin/docker"
  chmod 0755 "$dir/bin/docker"
fi
setenv+=" PATH=$dir/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# The agent stand-in's environment: the session's without HOME (see agent-start).
tr ' ' '\n' <<<"$setenv" | grep -v '^HOME=' >"$dir/agent.env"
# sshd keeps only the first SetEnv line, so all variables go on one line.
cat >"$dir/sshd_config" <<EOF
# Test host '$name' (generated by tests/rig/testhost.sh)
ListenAddress $ns_ip:22
HostKey $dir/ssh_host_ed25519_key
PidFile $dir/sshd.pid
# The second file is \$HOME/.ssh/authorized_keys of the sessions (HOME above), which scripts
# may add keys to (cutover.sh does).
AuthorizedKeysFile $dir/authorized_keys $dir/home/.ssh/authorized_keys
PermitRootLogin $([[ $user == root ]] && echo prohibit-password || echo no)
AllowUsers $user
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
# Keys live in a tempdir that sshd would find too open.
StrictModes no
UseDNS no
PrintMotd no
# Parallel test steps may open many connections at once.
MaxStartups 100
MaxSessions 100
SetEnv $setenv
Subsystem sftp internal-sftp
EOF

# A private /run gives sshd its /run/sshd without touching (or clashing with) the host's.
# shellcheck disable=SC2016 # $1 and $2 are expanded by the inner sh
sshd_in_private_run=(unshare -m --propagation private sh -c
  'mount -t tmpfs -o mode=755 tmpfs /run && mkdir /run/sshd && exec /usr/sbin/sshd $2 -f "$1"' sh "$dir/sshd_config")
"${sshd_in_private_run[@]}" -t || die "sshd rejects $dir/sshd_config"
# Every step execs, so $! is sshd's PID. stdin/stdout are detached so that the caller
# reading our stdout sees EOF when we exit.
ip netns exec "$netns" "${sshd_in_private_run[@]}" "-D -e" </dev/null >"$dir/sshd.log" 2>&1 &
echo $! >"$dir/sshd.pid"

# -- podman
if ((podman)); then
  pdir=$dir/podman
  # Fresh engine state on every `up` (`down` removes all containers anyway).
  rm -rf "$pdir"
  mkdir -p "$pdir"/{tmp,run,storage,networks}
  # One podman service starts at a time on the machine (each takes ~2 s of both cores):
  # parallel tests then queue here instead of starving each other past their deadlines.
  exec 9>>/run/lock/poscloud-testhost-podman.lock
  flock -w 300 9 || die "another test host's podman start held the lock for 300 s"
  cat >"$pdir/containers.conf" <<EOF
[containers]
# CAP_SYS_RESOURCE is missing on these machines: the default limits cannot be set.
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
# crun refuses the hybrid cgroup layout; there is no systemd to manage cgroups.
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "$pdir/tmp"

[network]
network_backend = "cni"
# Private, so that networks a script creates stay on this host and go away with it.
network_config_dir = "$pdir/networks"
EOF
  cat >"$pdir/storage.conf" <<EOF
[storage]
driver = "overlay"
runroot = "$pdir/run"
graphroot = "$pdir/storage"
EOF

  # - network namespace of the host: the container bridge and its firewall rules live there;
  # - own mount namespace with private /run (runc state, container netns files), /dev/shm
  #   (libpod locks), /var/lib/containers (blob cache) and /var/lib/cni (IP allocations):
  #   nothing is shared with other hosts, nothing is left behind;
  # - own PID namespace: when its init exits, the kernel kills whatever podman left there
  #   (conmon, containers). The init is a sh that reaps orphans and passes TERM on (PID 1
  #   ignores signals it has no handler for); --kill-child sends it a TERM if the wrapper dies.
  mkdir -p /var/lib/containers /var/lib/cni
  # shellcheck disable=SC2016 # $1 and $svc are expanded by the inner sh
  env CONTAINERS_CONF="$pdir/containers.conf" CONTAINERS_STORAGE_CONF="$pdir/storage.conf" \
    TMPDIR="$pdir/tmp" \
    nsenter --net="/run/netns/$netns" \
    unshare --mount --propagation private --pid --fork --kill-child=SIGTERM --mount-proc \
    sh -c 'set -e
      mount -t tmpfs -o mode=755 tmpfs /run
      mount -t tmpfs -o mode=1777 tmpfs /dev/shm
      mount -t tmpfs -o mode=700 tmpfs /var/lib/containers
      mount -t tmpfs -o mode=755 tmpfs /var/lib/cni
      podman system service --time=0 "unix://$1" &
      svc=$!
      trap "kill -TERM $svc" TERM INT
      while kill -0 "$svc" 2>/dev/null; do wait "$svc" || true; done' sh "$dir/podman.sock" \
    </dev/null >"$dir/podman.log" 2>&1 9>&- &
  wrapper=$!
  echo "$wrapper" >"$dir/podman-wrapper.pid"
  # wrapper (unshare) -> init (sh, PID 1 inside) -> podman service. Polled until a
  # deadline, not a count of tries: on a loaded machine the mounts before it take a while.
  ns_init="" service=""
  deadline=$((SECONDS + 60))
  while ((SECONDS < deadline)); do
    [[ -n $ns_init ]] || ns_init=$(child_of "$wrapper" sh)
    [[ -z $ns_init ]] || service=$(child_of "$ns_init" podman)
    [[ -n $service ]] && break
    alive "$wrapper" || die "the podman wrapper exited; $dir/podman.log:$(echo; tail -n 20 "$dir/podman.log")"
    sleep 0.1
  done
  [[ -n $service ]] || die "podman service did not start within 60 s (init: ${ns_init:-not found}); $dir/podman.log:$(echo; tail -n 20 "$dir/podman.log")"
  echo "$service" >"$dir/podman.pid"

  export DOCKER_HOST="unix://$dir/podman.sock" DOCKER_CONFIG="$pdir/docker-config"
  ready=0 why="no socket yet"
  deadline=$((SECONDS + 90))
  while ((SECONDS < deadline)); do
    if [[ -S $dir/podman.sock ]]; then
      why=$(timeout 10 docker version 2>&1 >/dev/null) && { ready=1; break; }
      why=${why:-docker version timed out}
    fi
    alive "$service" || { why="the service (PID $service) exited"; break; }
    sleep 0.1
  done
  ((ready)) || die "podman socket $dir/podman.sock does not answer ($why); $dir/podman.log:$(echo; tail -n 20 "$dir/podman.log")"
  # As Docker's on a CentOS host: root's only (the centos login goes through sudo).
  chmod 0600 "$dir/podman.sock"

  # No registry is reachable: the base image is made from busybox-static and its applets.
  rootfs=$pdir/base-rootfs
  rm -rf "$rootfs"
  mkdir -p "$rootfs"/{bin,sbin,usr/bin,usr/sbin,etc,root,proc,sys,dev,run,var,tmp}
  chmod 1777 "$rootfs/tmp"
  cp "$(command -v busybox)" "$rootfs/bin/busybox"
  while read -r applet; do
    [[ -e $rootfs/$applet ]] || ln -s /bin/busybox "$rootfs/$applet"
  done < <(busybox --list-full)
  printf 'root:x:0:0:root:/root:/bin/sh\n' >"$rootfs/etc/passwd"
  printf 'root:x:0:\n' >"$rootfs/etc/group"
  tar -C "$rootfs" -cf "$pdir/base.tar" .
  # Through the Docker API, so the image is named as Docker would (docker.io/poscloud/...),
  # not localhost/poscloud/... as `podman import` does.
  timeout 60 docker import \
    --change 'CMD ["/bin/sh"]' --change 'ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin' \
    "$pdir/base.tar" poscloud/base:test >/dev/null ||
    die "import of poscloud/base:test failed; $dir/podman.log:$(echo; tail -n 20 "$dir/podman.log")"
  rm -rf "$rootfs" "$pdir/base.tar"
  exec 9>&- # the lock
fi

# -- wait for sshd, then check that the pinned host key and the client key both work
sshd_pid=$(read_pid "$dir/sshd.pid")
scanned=""
deadline=$((SECONDS + 60))
while ((SECONDS < deadline)); do
  alive "$sshd_pid" || die "sshd exited; $dir/sshd.log:$(echo; tail -n 20 "$dir/sshd.log")"
  scanned=$(timeout 5 ssh-keyscan -T 3 -t ed25519 -p 22 "$ns_ip" 2>/dev/null || true)
  [[ -n $scanned ]] && break
  sleep 0.1
done
[[ -n $scanned ]] || die "sshd on $ns_ip:22 does not answer within 60 s; $dir/sshd.log:$(echo; tail -n 20 "$dir/sshd.log")"
[[ $scanned == *"$key_blob"* ]] || die "sshd on $ns_ip offers another host key than $dir/ssh_host_ed25519_key.pub"
timeout 20 ssh -F /dev/null -i "$dir/client_key" -o IdentitiesOnly=yes -o BatchMode=yes \
  -o UserKnownHostsFile="$dir/known_hosts" -o GlobalKnownHostsFile=/dev/null \
  -o StrictHostKeyChecking=yes -o ConnectTimeout=5 -o LogLevel=ERROR \
  -p 22 "$user@$ns_ip" true </dev/null >&2 ||
  die "ssh login as $user@$ns_ip with $dir/client_key failed; $dir/sshd.log:$(echo; tail -n 20 "$dir/sshd.log")"

up_done=1
cat <<EOF
ADDRESS=$ns_ip
PORT=22
USER=$user
CLIENT_KEY=$dir/client_key
HOST_KEY_PUB=$dir/ssh_host_ed25519_key.pub
WRONG_HOST_KEY_PUB=$dir/wrong_host_key.pub
ROOT=$dir/root
EOF
((podman)) && echo "DOCKER_HOST=unix://$dir/podman.sock"
exit 0
