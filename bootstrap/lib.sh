#!/usr/bin/env bash
# The helpers every script of bootstrap/ shares. poscloud sends each script as lib.sh
# followed by the script (src/remote/mod.rs), so the host needs nothing installed and a
# script that installs itself (pos.sh's eth1 hook, vpn.sh) carries its helpers along. Run
# from a checkout, a script sources this file from its own directory instead.
#
# A script sets `me` (its name in messages) before it calls say, bad, fail or die.
# Functions only: nothing here runs or changes anything when it is read.

# The marker a script tests to know whether lib.sh came with it.
poscloud_lib() { :; }

# die CODE MESSAGE: the message on stderr as "<me>: …", then exit CODE.
die() {
  local code=$1
  shift
  echo "${me:-poscloud}: $*" >&2
  exit "$code"
}
bad() { die 2 "$@"; }  # bad input: nothing was changed
fail() { die 1 "$@"; } # a failure
say() { echo "${me:-poscloud}: $*"; }

# A JSON string. The values scripts print hold no control characters but newline and tab.
json() {
  local s=$1
  s=${s//\\/\\\\}
  s=${s//\"/\\\"}
  s=${s//$'\n'/\\n}
  s=${s//$'\t'/\\t}
  printf '"%s"' "$s"
}

# A container's process as this host sees it. Docker reports host PIDs; an engine in its
# own PID namespace (podman on test hosts) reports its own, so look the process up by the
# container's cgroup and map the PID through NSpid.
container_pid() {
  local cid cpid cg p
  cid=$(docker inspect -f '{{.Id}}' "$1" 2>/dev/null) || return 1
  cpid=$(docker inspect -f '{{.State.Pid}}' "$1") || return 1
  [[ $cpid != 0 ]] || return 1
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

# The host's python, for what bash cannot do well (bytes, HTTP signing). CentOS 7 has 2.7
# (3.6 where installed): host-side python runs under both.
python_bin() { command -v python3 || command -v python2 || command -v python; }

# Whether a container runs.
running() { [[ $(docker inspect -f '{{.State.Running}}' "$1" 2>/dev/null) == true ]]; }

# put FILE MODE CONTENT-FILE: replaces $root/FILE when its content differs, by a rename (a
# process reading the old file, such as a script running from it, keeps reading it); sets
# changed=1 when it did. Uses the caller's root (POSCLOUD_ROOT) and changed.
# shellcheck disable=SC2154,SC2034 # root and changed are the caller's
put() {
  if ! cmp -s "$3" "$root$1"; then
    install -D -m "$2" "$3" "$root$1.new"
    mv -f "$root$1.new" "$root$1"
    changed=1
  fi
}
