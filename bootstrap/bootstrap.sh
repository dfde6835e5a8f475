#!/usr/bin/env bash
# Bootstrap phase: confirms the host's user-data finished, Docker and strongSwan answer, and
# reports the installed versions. Changes nothing but its own marker; safe to run again.
#
# Inputs (environment): SHOP (8 digits), ENV (prod|qa|dev), WAIT_SECS (how long to wait for
# user-data to finish; default 900), USERDATA (1, default: wait for poscloud's user-data;
# 0: a host poscloud did not create, which has none). POSCLOUD_ROOT prefixes host paths: empty on a real host,
# a test host's own directory in tests.
set -euo pipefail
# shellcheck source=lib.sh
declare -F poscloud_lib >/dev/null || . "${BASH_SOURCE[0]%/*}/lib.sh"
me=bootstrap
# A host that is not ready (user-data, Docker, strongSwan): exit 3.
not_ready() { die 3 "$@"; }

: "${SHOP:?SHOP is required}" "${ENV:?ENV is required}"
[[ $SHOP =~ ^[0-9]{8}$ ]] || bad "SHOP must be 8 digits"
[[ $ENV =~ ^(prod|qa|dev)$ ]] || bad "ENV must be prod, qa or dev"
wait_secs=${WAIT_SECS:-900}
[[ $wait_secs =~ ^[0-9]+$ ]] || bad "WAIT_SECS must be a number"

state="${POSCLOUD_ROOT:-}/var/lib/poscloud"
marker="$state/userdata.json"
failed="$state/userdata.failed"

[[ ${USERDATA:-1} =~ ^[01]$ ]] || bad "USERDATA must be 0 or 1"

# cloud-init may still be running on a fresh host: wait for its marker.
if [[ ${USERDATA:-1} == 1 ]]; then
  waited=0
  until [[ -f $marker ]]; do
    [[ -f $failed ]] && not_ready "user-data failed: $(head -c 2000 "$failed")"
    ((waited < wait_secs)) || not_ready "user-data did not finish within ${wait_secs}s (no $marker); see /var/log/poscloud-host-setup.log"
    sleep 5
    waited=$((waited + 5))
  done
  say "user-data finished ($marker)"
fi

# Values go into JSON strings: keep them to safe characters.
clean() { tr -cd 'A-Za-z0-9 ._:+~()-' | head -c 200; }

docker_version=$(docker info --format '{{.ServerVersion}}' 2>/dev/null | clean) ||
  not_ready "the Docker daemon does not answer (docker info failed)"
[[ -n $docker_version ]] || not_ready "the Docker daemon does not answer (no server version)"
say "Docker daemon answers: $docker_version"

# EPEL's package (CentOS 7) names its wrapper `strongswan`; it prints the version offline.
if command -v strongswan >/dev/null; then
  strongswan_version=$(strongswan --version 2>/dev/null | head -n1 | clean) || true
fi
[[ -n ${strongswan_version:-} ]] || not_ready "strongSwan is not installed (EPEL's strongswan package) or does not answer"
say "strongSwan answers: $strongswan_version"

kernel=$(uname -r | clean)
userdata=null
[[ ${USERDATA:-1} == 0 ]] || userdata=$(tr -d '\n' <"$marker")
result=$(printf '{"shop":"%s","env":"%s","docker":"%s","strongswan":"%s","kernel":"%s","userdata":%s}' \
  "$SHOP" "$ENV" "$docker_version" "$strongswan_version" "$kernel" "$userdata")

mkdir -p "$state/phases"
printf '%s\n' "$result" >"$state/phases/bootstrap.done"
echo "POSCLOUD_RESULT $result"
