#!/usr/bin/env bash
# Build phase: makes the POS app's OS media, a container image tagged IMAGE, from a
# kickstart. The image carries the label poscloud.media.key=KEY (KEY = sha256 of app,
# version and kickstart, computed by poscloud), so the same media is never built twice:
#   1. "host":  IMAGE is on the host with label poscloud.media.key=KEY: nothing to do.
#   2. "cache": CACHE_GET_URL is given: download the rootfs tarball built earlier (by any
#               host of the region), check its sha256, import it. A failed download is an
#               error (exit 1), not a silent fallback to a long build here.
#   3. "built": build a rootfs from the kickstart, tar it, import it, then upload the tarball
#               to CACHE_PUT_URL if given (after the import, so that a tarball the engine
#               refuses never reaches the cache; a failed upload is only a warning).
# FORCE=1 skips 1 and 2. When the tag moves to a new image, the previous one is removed
# unless a container or another tag still uses it.
#
# Inputs (environment):
#   APP            the POS app's name (its app file's; lowercase, digits, -)
#   VERSION        media version, [A-Za-z0-9][A-Za-z0-9._-]{0,63}
#   KEY            64 lowercase hex digits
#   IMAGE          the image reference to tag (e.g. poscloud/rti:10.1-0123456789ab); a tag,
#                  not a digest (an import cannot produce a given digest)
#   the kickstart, as poscloud read it (src/phases/kickstart.rs says what it takes):
#   REPO_NAMES     its repositories, space-separated; REPOS: their yum .repo sections
#   PACKAGES       names, globs and @groups to install, one a line
#   YUM_OPTS       yum options (--setopt=…, --exclude=…), one a line
#   POSTS          how many %post sections; for each N from 1: POST_N (the body),
#                  POST_N_CHROOT (1: chrooted, 0: --nochroot), POST_N_INTERP, POST_N_LINE
#                  (its kickstart line, for messages)
#   IGNORED        the commands and sections not used for container media (shown)
#   CACHE_GET_URL  optional, http(s): presigned GET of a cached rootfs tarball (tar.gz);
#   CACHE_SHA256   then required: its sha256 (64 lowercase hex)
#   CACHE_PUT_URL  optional, http(s): presigned PUT for the tarball after a build
#   FORCE          optional, 0 or 1
# The URLs carry signatures: they are never printed (curl's own messages are kept out of
# the output too) and never put on a command line (curl reads them from a config on stdin).
# POSCLOUD_ROOT prefixes every path this script writes: empty on a real host, a test host's
# own directory in tests.
#
# Output: "build: ..." progress lines, then one line on stdout:
#   POSCLOUD_RESULT {"image":…,"image_id":"sha256:…","key":…,"source":"host|cache|built",
#                    "sha256":"<tarball>","bytes":<tarball size>,"uploaded":true|false}
# (sha256 "" and bytes 0 for source "host"; uploaded is true only after a successful PUT.)
# Exit codes: 0 ok, 1 failure, 2 bad input, 3 the cached media does not match CACHE_SHA256
# (nothing imported).
#
# Work directory: $POSCLOUD_ROOT/var/lib/poscloud/build/KEY (rootfs/, the tarball, build.log
# with the output of yum, %post and docker). Emptied when a build or download starts, removed
# on success, kept on failure for inspection (the path is printed on stderr, with the tail of
# build.log). One build per host at a time (flock on build/.lock).
#
# A kickstart's repos become a private reposdir, each with gpgcheck=1 and the build host's
# /etc/pki/rpm-gpg/RPM-GPG-KEY-CentOS-7 as gpgkey; yum also gets a private yum.conf (no
# plugins, no host repos), so the host's own yum setup plays no part. Packages are installed
# with `yum --installroot` (a kickstart that lists packages needs yum: a CentOS 7 host).
# `%post --nochroot` runs on the build host by its interpreter with
# ANA_INSTALL_PATH=<rootfs>; `%post` as `chroot <rootfs> <interpreter>` with the body on
# stdin. Any failing %post fails the build; the output goes to build.log.
#
# yum and the %post scripts run in a private mount namespace with /proc, /sys (read-only)
# and a small /dev (tmpfs with bind mounts of null, zero, full, random, urandom, tty) mounted
# in the rootfs, like Anaconda provides them. The mounts vanish with the namespace, so nothing
# stays mounted in the rootfs even if this script is killed, and `rm -rf` of the work
# directory cannot reach the host's /dev. They get a clean environment (PATH, HOME, LANG):
# the inputs, URLs included, are not passed on.
#
# The image is made with `docker import --change 'LABEL …' …`; podman's Docker-compatible
# API (test hosts) honours LABEL, CMD and ENV changes like Docker, and the label is checked
# after every import. File capabilities (security.capability xattrs, e.g. ping's) are kept
# when the host's tar supports --xattrs-include.
set -euo pipefail
umask 022
# shellcheck source=lib.sh
declare -F poscloud_lib >/dev/null || . "${BASH_SOURCE[0]%/*}/lib.sh"
me=build

# ---- inputs ----------------------------------------------------------------------------
[[ ${APP:-} =~ ^[a-z][a-z0-9-]{0,30}$ ]] || bad "APP must be an app name (lowercase, digits, -)"
[[ ${VERSION:-} =~ ^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$ ]] || bad "VERSION must be [A-Za-z0-9][A-Za-z0-9._-]{0,63}"
[[ ${KEY:-} =~ ^[0-9a-f]{64}$ ]] || bad "KEY must be 64 lowercase hex digits"
[[ ${IMAGE:-} =~ ^[a-z0-9][a-z0-9._/:@-]*$ && ${#IMAGE} -le 255 ]] || bad "IMAGE must be an image reference"
[[ $IMAGE != *@* ]] || bad "IMAGE must be a tag (name:tag), not a digest"
force=${FORCE:-0}
[[ $force =~ ^[01]$ ]] || bad "FORCE must be 0 or 1"
# No quotes, backslashes, spaces or control characters: the URLs go into a curl config line.
url_re='^https?://[^[:space:][:cntrl:]"\\]+$'
get_url=${CACHE_GET_URL:-} put_url=${CACHE_PUT_URL:-} cache_sha=${CACHE_SHA256:-}
if [[ -n $get_url ]]; then
  [[ $get_url =~ $url_re ]] || bad "CACHE_GET_URL must be an http(s) URL"
  [[ $cache_sha =~ ^[0-9a-f]{64}$ ]] || bad "CACHE_SHA256 must be 64 lowercase hex digits (with CACHE_GET_URL)"
elif [[ -n $cache_sha ]]; then
  bad "CACHE_SHA256 is given without CACHE_GET_URL"
fi
[[ -z $put_url || $put_url =~ $url_re ]] || bad "CACHE_PUT_URL must be an http(s) URL"
root=${POSCLOUD_ROOT:-}
[[ -z $root || ($root =~ ^(/[A-Za-z0-9._+-]+)+$ && /$root/ != */../* && /$root/ != */./*) ]] ||
  bad "POSCLOUD_ROOT must be empty or a plain absolute path"
name_re='^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'
read -ra repo_names <<<"${REPO_NAMES:-}"
for r in ${repo_names[@]+"${repo_names[@]}"}; do [[ $r =~ $name_re ]] || bad "REPO_NAMES: bad name '$r'"; done
# One a line; an empty input is no item (bash 4.2: "${a[@]}" of an empty array is unbound).
pkgs=() yum_opts=()
[[ -z ${PACKAGES:-} ]] || mapfile -t pkgs <<<"$PACKAGES"
[[ -z ${YUM_OPTS:-} ]] || mapfile -t yum_opts <<<"$YUM_OPTS"
for p in ${pkgs[@]+"${pkgs[@]}"}; do [[ -n $p && $p != -* ]] || bad "PACKAGES: '$p' is not a package"; done
for o in ${yum_opts[@]+"${yum_opts[@]}"}; do [[ $o == --setopt=* || $o == --exclude=* ]] || bad "YUM_OPTS: '$o' is not --setopt= or --exclude="; done
((${#pkgs[@]} == 0 || ${#repo_names[@]} > 0)) || bad "PACKAGES without REPO_NAMES"
posts=${POSTS:-0}
[[ $posts =~ ^[0-9]{1,3}$ ]] || bad "POSTS must be a number"
for ((i = 1; i <= posts; i++)); do
  v=POST_${i}_CHROOT c=POST_${i}_INTERP l=POST_${i}_LINE b=POST_$i
  [[ ${!v:-} =~ ^[01]$ ]] || bad "$v must be 0 or 1"
  [[ ${!c:-} =~ ^(/[A-Za-z0-9._/+-]+|bash)$ ]] || bad "$c must be an absolute path (or bash)"
  [[ ${!l:-} =~ ^[0-9]+$ ]] || bad "$l must be a number"
  [[ -n ${!b+x} ]] || bad "$b is missing"
done

# ---- host tools, lock ------------------------------------------------------------------
for tool in docker tar gzip sha256sum stat flock unshare chroot mount; do
  command -v "$tool" >/dev/null || fail "'$tool' is not installed on this host"
done
if [[ -n $get_url$put_url ]]; then command -v curl >/dev/null || fail "'curl' is not installed on this host"; fi

builds=$root/var/lib/poscloud/build
dir=$builds/$KEY
rootfs=$dir/rootfs
log=$dir/build.log
docker version >/dev/null 2>&1 || fail "the container engine does not answer (docker version failed)"
mkdir -p "$builds"
exec 9>"$builds/.lock"
flock -n 9 || fail "another build is running on this host ($builds/.lock)"

# Children get a clean environment: the inputs (signed URLs included) are not theirs.
child_path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
clean_env=(env -i "PATH=$child_path" HOME=/root LANG=C)

keep_dir=0
on_exit() {
  local rc=$?
  if ((rc != 0 && keep_dir)) && [[ -d $dir ]]; then
    if [[ -s $log ]]; then
      echo "build: last lines of $log:" >&2
      tail -n 30 "$log" | sed 's/^/  | /' >&2
    fi
    echo "build: the work files are kept for inspection in $dir" >&2
  fi
}
trap on_exit EXIT

# Empties the work directory. Refuses if anything is mounted below it (a mount would be
# followed by rm -rf); builds never leave mounts, see in_ns.
fresh_dir() {
  if awk -v d="$dir" '$5 == d || index($5, d "/") == 1 { f = 1 } END { exit !f }' /proc/self/mountinfo; then
    fail "something is mounted below $dir: unmount it first"
  fi
  rm -rf --one-file-system "$dir"
  mkdir -p "$dir"
  : >"$log"
  keep_dir=1
}

label_key() {
  docker image inspect -f '{{with .Config.Labels}}{{index . "poscloud.media.key"}}{{end}}' "$1" 2>/dev/null
}

# in_ns CMD...: runs CMD (clean environment) in a private mount namespace with /proc, /sys
# and a small /dev mounted in the rootfs. The mounts exist only in that namespace and end
# with it. Fd 9 (the lock) is not passed on: a daemon left behind must not hold it.
in_ns() {
  mkdir -p "$rootfs/proc" "$rootfs/sys" "$rootfs/dev"
  # shellcheck disable=SC2016 # expanded by the inner bash
  "${clean_env[@]}" unshare -m -- bash -c '
    set -e
    r=$1
    shift
    mount --make-rprivate /
    mount -t proc -o nosuid,nodev,noexec proc "$r/proc"
    mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$r/sys"
    mount -t tmpfs -o mode=755,nosuid tmpfs "$r/dev"
    for n in null zero full random urandom tty; do
      : >"$r/dev/$n"
      mount --bind "/dev/$n" "$r/dev/$n"
    done
    mkdir "$r/dev/pts" "$r/dev/shm"
    ln -s /proc/self/fd "$r/dev/fd"
    ln -s /proc/self/fd/0 "$r/dev/stdin"
    ln -s /proc/self/fd/1 "$r/dev/stdout"
    ln -s /proc/self/fd/2 "$r/dev/stderr"
    exec "$@"' in_ns "$rootfs" "$@" 9>&-
}

# curl_url URL CURL-ARGS...: the URL reaches curl through a config on stdin, so it is on no
# command line; curl's messages (which may quote it) go to a file that is never printed.
# Prints the HTTP status.
curl_url() {
  local url=$1
  shift
  printf 'url = "%s"\n' "$url" |
    curl -sS --proto =http,https --retry 3 --connect-timeout 30 -w '%{http_code}' -K - "$@" 2>>"$dir/curl.err" 9>&-
}

# import FILE: the image, labelled, tagged IMAGE; prints nothing, sets image_id.
import_media() {
  local old new got
  old=$(docker image inspect -f '{{.Id}}' "$IMAGE" 2>/dev/null || true)
  say "importing the media as $IMAGE"
  # The output differs between engines (podman prints the id twice): the id is read below.
  docker import \
    --change "LABEL poscloud.media.key=$KEY" \
    --change "LABEL poscloud.app=$APP" \
    --change "LABEL poscloud.version=$VERSION" \
    --change 'CMD ["/bin/sh"]' \
    --change 'ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin' \
    "$1" "$IMAGE" >>"$log" 2>&1 9>&- || fail "docker import of the media failed"
  got=$(label_key "$IMAGE" || true)
  [[ $got == "$KEY" ]] || fail "the imported image $IMAGE lacks the label poscloud.media.key=$KEY: the engine dropped it"
  new=$(docker image inspect -f '{{.Id}}' "$IMAGE")
  [[ $new =~ ^[A-Za-z0-9:]+$ ]] || fail "unexpected image id from docker image inspect"
  image_id=$new
  # The tag moved: the old image is removed unless a container or another tag still uses it.
  if [[ -n $old && $old != "$new" ]] && docker image rm "$old" >/dev/null 2>&1; then
    say "removed the previous image ${old:0:19} of $IMAGE"
  fi
}

result() {
  printf 'POSCLOUD_RESULT {"image":"%s","image_id":"%s","key":"%s","source":"%s","sha256":"%s","bytes":%d,"uploaded":%s}\n' \
    "$IMAGE" "$image_id" "$KEY" "$1" "$2" "$3" "$4"
}

# ---- 1. already on the host --------------------------------------------------------------
if ((force == 0)) && [[ $(label_key "$IMAGE" || true) == "$KEY" ]]; then
  image_id=$(docker image inspect -f '{{.Id}}' "$IMAGE")
  say "$IMAGE is on this host with media key ${KEY:0:12}: nothing to do"
  result host "" 0 false
  exit 0
fi

# ---- 2. from the cache ---------------------------------------------------------------------
if ((force == 0)) && [[ -n $get_url ]]; then
  fresh_dir
  file=$dir/cached.tar.gz
  say "downloading the cached media for key ${KEY:0:12}"
  code=$(curl_url "$get_url" -f -o "$file") || fail "downloading the cached media failed (HTTP ${code:-none}, curl exit $?)"
  sha=$(sha256sum "$file" | cut -d' ' -f1)
  if [[ $sha != "$cache_sha" ]]; then
    echo "build: the cached media for $KEY does not match its checksum (expected $cache_sha, got $sha); nothing was imported" >&2
    exit 3
  fi
  bytes=$(stat -c %s "$file")
  say "cached media verified (sha256 $sha, $bytes bytes)"
  import_media "$file"
  keep_dir=0
  rm -rf --one-file-system "$dir"
  say "done: $IMAGE from the cache"
  result cache "$sha" "$bytes" false
  exit 0
fi

# ---- 3. build from the kickstart -----------------------------------------------------------
if ((${#pkgs[@]})); then
  command -v yum >/dev/null ||
    fail "this kickstart lists packages: building it needs yum (a CentOS 7 host); this host has none"
  gpgkey=/etc/pki/rpm-gpg/RPM-GPG-KEY-CentOS-7
  [[ -r $gpgkey ]] || fail "$gpgkey is missing on this host: packages cannot be verified"
fi
fresh_dir
mkdir "$rootfs"
[[ -z ${IGNORED:-} ]] || say "ignored (not used for container media): $IGNORED"
if ((${#pkgs[@]})); then
  mkdir "$dir/repos.d"
  printf '%s' "${REPOS:-}" >"$dir/repos.d/kickstart.repo"
  # Paths of cachedir and logfile are inside the installroot (yum prefixes them).
  cat >"$dir/yum.conf" <<EOF
[main]
cachedir=/var/cache/yum/\$basearch/\$releasever
keepcache=0
logfile=/var/log/yum.log
exactarch=1
obsoletes=1
gpgcheck=1
plugins=0
installonly_limit=3
reposdir=$dir/repos.d
EOF
  enable=()
  for r in "${repo_names[@]}"; do enable+=("--enablerepo=$r"); done
  say "installing ${#pkgs[@]} packages/groups with yum from repos ${repo_names[*]} (log: $log)"
  in_ns yum -y -c "$dir/yum.conf" --installroot="$rootfs" --releasever=7 \
    --setopt=reposdir="$dir/repos.d" --disablerepo='*' "${enable[@]}" \
    ${yum_opts[@]+"${yum_opts[@]}"} install "${pkgs[@]}" </dev/null >>"$log" 2>&1 ||
    fail "yum could not install the kickstart's packages"
fi

for ((i = 1; i <= posts; i++)); do
  v=POST_${i}_LINE what="%post section $i (kickstart line ${!v})"
  v=POST_${i}_INTERP interp=${!v}
  script=$dir/post-$i.sh
  v=POST_$i
  printf '%s' "${!v}" >"$script"
  echo "---- $what" >>"$log"
  v=POST_${i}_CHROOT
  if ((${!v})); then
    [[ -e $rootfs$interp || -L $rootfs$interp ]] ||
      fail "$what: its interpreter $interp is not in the rootfs"
    say "running $what in the rootfs ($interp)"
    rc=0
    in_ns env "PATH=/usr/sbin:/usr/bin:/sbin:/bin" chroot "$rootfs" "$interp" <"$script" >>"$log" 2>&1 || rc=$?
  else
    say "running $what on the build host ($interp, --nochroot)"
    rc=0
    in_ns env "ANA_INSTALL_PATH=$rootfs" "$interp" "$script" </dev/null >>"$log" 2>&1 || rc=$?
  fi
  ((rc == 0)) || fail "$what failed (exit $rc)"
done

tarball=$dir/rootfs.tar.gz
tar_opts=(--numeric-owner)
# File capabilities (ping's cap_net_raw) survive import; the pattern reads the same as a
# glob (newer tar) or a regex (older tar). SELinux labels are not carried.
if tar --help 2>/dev/null | grep -q -- --xattrs-include; then
  tar_opts+=(--xattrs --xattrs-include=security.capability)
fi
say "packing the rootfs"
tar "${tar_opts[@]}" -C "$rootfs" -czf "$tarball" . 2>>"$log" || fail "tar of the rootfs failed"
sha=$(sha256sum "$tarball" | cut -d' ' -f1)
bytes=$(stat -c %s "$tarball")
say "media built (sha256 $sha, $bytes bytes)"

# Imported before the upload: a tarball the engine cannot import is not put in the cache.
import_media "$tarball"

uploaded=false
if [[ -n $put_url ]]; then
  say "uploading the media to the cache"
  if code=$(curl_url "$put_url" -f -T "$tarball" -o /dev/null); then
    uploaded=true
    say "media uploaded to the cache"
  else
    echo "build: warning: uploading the media to the cache failed (HTTP ${code:-none}); the image is usable on this host" >&2
  fi
fi

keep_dir=0
rm -rf --one-file-system "$dir"
say "done: $IMAGE built from the kickstart"
result built "$sha" "$bytes" "$uploaded"
