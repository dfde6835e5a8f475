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
#   KICKSTART      the kickstart text itself
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
# What is read from the kickstart (media for a container, not a bootable system):
#   rootpw      must be exactly `rootpw --lock` when present (as poscloud checks it, any line
#               starting with "rootpw"): shared media must never carry a root password.
#   repo        --name=N and one of --baseurl=URL / --mirrorlist=URL (http, https, ftp,
#               file), optional --cost, --excludepkgs, --includepkgs, --proxy; others are
#               refused. Each becomes a section of a private reposdir, with gpgcheck=1 and the
#               build host's /etc/pki/rpm-gpg/RPM-GPG-KEY-CentOS-7 as gpgkey (so only
#               repositories signed by CentOS 7's key can be used). yum also gets a private
#               yum.conf (no plugins, no host repos), so the host's own yum setup plays no part.
#   %packages   names (globs allowed), @group / @^environment (no per-group options), -name
#               (--exclude). Options: --excludedocs, --instLangs=, --ignoremissing, --multilib;
#               --nobase, --nocore, --default, --retries, --timeout are accepted and ignored.
#               @core is NOT added implicitly: list what the media needs. Without
#               --ignoremissing a missing package fails the build (yum's CentOS 7 default would
#               skip it). Installed with `yum --installroot` on the build host: a kickstart
#               that lists packages needs yum (a CentOS 7 host).
#   %post       in file order, as Anaconda runs them. `%post --nochroot`: run on the build
#               host by the --interpreter (default bash) with ANA_INSTALL_PATH=<rootfs>.
#               `%post`: run as `chroot <rootfs> <interpreter, default /bin/sh>` with the body
#               on stdin. --erroronfail is implied (any failing %post fails the build), --log
#               is ignored (the output goes to build.log).
#   ignored     %pre, %pre-install, %onerror, %traceback, %addon, %anaconda sections and every
#               other command (lang, timezone, bootloader, part, network, user, url, ...): a
#               container has no disks, boot loader or network setup of its own, and `user` /
#               `sshpw` lines must not bake passwords into shared media either. They are
#               listed on one progress line. %include and %ksappend are refused (the kickstart
#               must be self-contained: its text is what the KEY covers).
# Every section must end with %end.
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

bad() { echo "build: $*" >&2; exit 2; }
fail() { echo "build: $*" >&2; exit 1; }
say() { echo "build: $*"; }

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
ks=${KICKSTART:-}
[[ -n $ks ]] || bad "KICKSTART is empty"
((${#ks} <= 1048576)) || bad "KICKSTART is larger than 1 MiB"

# ---- the kickstart ---------------------------------------------------------------------
# Strips one pair of surrounding quotes from an option value.
unquote() {
  local v=$1
  if [[ $v =~ ^\"(.*)\"$ || $v =~ ^\'(.*)\'$ ]]; then v=${BASH_REMATCH[1]}; fi
  printf '%s' "$v"
}

repo_names=() repo_conf=()        # one yum .repo section per kickstart repo
pkgs=() excludes=() yum_opts=()   # from %packages
post_body=() post_chroot=() post_interp=() post_line=()
ignored=()                        # commands and sections that container media do not use
seen_packages=0
# Package names and globs (one per line); group ids or names (names may hold spaces).
pkg_re='^[A-Za-z0-9_.+*?:][A-Za-z0-9_.+*?:-]*$'
group_re='^@\^?[A-Za-z0-9][A-Za-z0-9 ._+()-]*$'
section="" body="" lineno=0

add_ignored() {
  local i
  # ${a[@]+"${a[@]}"}: bash 4.2 (CentOS 7) calls "${a[@]}" of an empty array unbound.
  for i in ${ignored[@]+"${ignored[@]}"}; do [[ $i == "$1" ]] && return 0; done
  ignored+=("$1")
}

# repo --name=N --baseurl=URL ...: validated into one ini section.
parse_repo() {
  local -a w
  local name="" baseurl="" mirrorlist="" cost="" excl="" incl="" proxy="" opt val i
  read -ra w <<<"$1"
  url_ok() { [[ $1 =~ ^(https?|ftp|file)://[^[:space:][:cntrl:]\"\']+$ ]]; }
  for ((i = 1; i < ${#w[@]}; i++)); do
    opt=${w[i]} val=""
    if [[ $opt == --*=* ]]; then
      val=${opt#*=} opt=${opt%%=*}
    elif ((i + 1 < ${#w[@]})) && [[ ${w[i + 1]} != --* ]]; then
      i=$((i + 1))
      val=${w[i]}
    fi
    val=$(unquote "$val")
    case $opt in
      --name) name=$val ;;
      --baseurl) baseurl=$val ;;
      --mirrorlist) mirrorlist=$val ;;
      --cost) cost=$val ;;
      --excludepkgs) excl=$val ;;
      --includepkgs) incl=$val ;;
      --proxy) proxy=$val ;;
      --install) ;; # Anaconda: also add the repo to the installed system; not for media
      *) bad "kickstart line $lineno: repo option '$opt' is not supported (--name, --baseurl, --mirrorlist, --cost, --excludepkgs, --includepkgs, --proxy)" ;;
    esac
  done
  [[ $name =~ ^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$ ]] || bad "kickstart line $lineno: repo needs --name=NAME (letters, digits, . _ -)"
  for i in ${repo_names[@]+"${repo_names[@]}"}; do
    [[ $i != "$name" ]] || bad "kickstart line $lineno: repo '$name' is defined twice"
  done
  if [[ -z $baseurl$mirrorlist || (-n $baseurl && -n $mirrorlist) ]]; then
    bad "kickstart line $lineno: repo '$name' needs one of --baseurl and --mirrorlist"
  fi
  local conf="[$name]"$'\n'"name=$name (kickstart)"$'\n'
  if [[ -n $baseurl ]]; then
    url_ok "$baseurl" || bad "kickstart line $lineno: repo '$name': --baseurl must be an http(s), ftp or file URL"
    conf+="baseurl=$baseurl"$'\n'
  else
    url_ok "$mirrorlist" || bad "kickstart line $lineno: repo '$name': --mirrorlist must be an http(s), ftp or file URL"
    conf+="mirrorlist=$mirrorlist"$'\n'
  fi
  if [[ -n $cost ]]; then
    [[ $cost =~ ^[0-9]{1,6}$ ]] || bad "kickstart line $lineno: repo '$name': --cost must be a number"
    conf+="cost=$cost"$'\n'
  fi
  if [[ -n $excl ]]; then
    [[ $excl =~ ^[A-Za-z0-9_.+*?,:-]+$ ]] || bad "kickstart line $lineno: repo '$name': bad --excludepkgs"
    conf+="exclude=$excl"$'\n'
  fi
  if [[ -n $incl ]]; then
    [[ $incl =~ ^[A-Za-z0-9_.+*?,:-]+$ ]] || bad "kickstart line $lineno: repo '$name': bad --includepkgs"
    conf+="includepkgs=$incl"$'\n'
  fi
  if [[ -n $proxy ]]; then
    url_ok "$proxy" || bad "kickstart line $lineno: repo '$name': --proxy must be a URL"
    conf+="proxy=$proxy"$'\n'
  fi
  conf+="enabled=1"$'\n'"skip_if_unavailable=0"$'\n'"gpgcheck=1"$'\n'
  conf+="gpgkey=file:///etc/pki/rpm-gpg/RPM-GPG-KEY-CentOS-7"$'\n'
  repo_names+=("$name")
  repo_conf+=("$conf")
}

# %packages [options]
parse_packages_header() {
  local -a w
  local opt val i ignoremissing=0 tsflags=nocontexts
  read -ra w <<<"$1"
  for ((i = 1; i < ${#w[@]}; i++)); do
    opt=${w[i]%%=*} val=""
    [[ ${w[i]} == *=* ]] && val=$(unquote "${w[i]#*=}")
    case $opt in
      --excludedocs) tsflags+=",nodocs" ;;
      --instLangs | --inst-langs)
        [[ $val =~ ^[A-Za-z0-9_.@:]*$ ]] || bad "kickstart line $lineno: bad --instLangs"
        yum_opts+=("--setopt=override_install_langs=$val") ;;
      --ignoremissing) ignoremissing=1 ;;
      --multilib) yum_opts+=("--setopt=multilib_policy=all") ;;
      --nobase | --nocore | --default | --retries | --timeout) ;;
      *) bad "kickstart line $lineno: %packages option '${w[i]}' is not supported" ;;
    esac
  done
  yum_opts+=("--setopt=tsflags=$tsflags")
  if ((ignoremissing)); then
    yum_opts+=("--setopt=skip_missing_names_on_install=True")
  else
    yum_opts+=("--setopt=skip_missing_names_on_install=False")
  fi
}

# %post [--nochroot] [--interpreter=PATH] [--erroronfail] [--log=FILE]
parse_post_header() {
  local -a w
  local opt val i chroot=1 interp=""
  read -ra w <<<"$1"
  for ((i = 1; i < ${#w[@]}; i++)); do
    opt=${w[i]} val=""
    if [[ $opt == --*=* ]]; then
      val=${opt#*=} opt=${opt%%=*}
    elif [[ $opt == --interpreter || $opt == --log ]] && ((i + 1 < ${#w[@]})); then
      i=$((i + 1))
      val=${w[i]}
    fi
    val=$(unquote "$val")
    case $opt in
      --nochroot) chroot=0 ;;
      --interpreter)
        [[ $val =~ ^/[A-Za-z0-9._/+-]+$ ]] || bad "kickstart line $lineno: --interpreter must be an absolute path"
        interp=$val ;;
      --erroronfail | --log | --logfile) ;;
      *) bad "kickstart line $lineno: %post option '$opt' is not supported (--nochroot, --interpreter, --erroronfail, --log)" ;;
    esac
  done
  if [[ -z $interp ]]; then
    if ((chroot)); then interp=/bin/sh; else interp=bash; fi
  fi
  post_chroot+=("$chroot")
  post_interp+=("$interp")
  post_line+=("$lineno")
}

while IFS= read -r line || [[ -n $line ]]; do
  lineno=$((lineno + 1))
  line=${line%$'\r'}
  # Trimmed copy (leading and trailing blanks).
  t=${line#"${line%%[![:space:]]*}"}
  t=${t%"${t##*[![:space:]]}"}
  # Any line starting with rootpw, as poscloud checks it: only `rootpw --lock`.
  if [[ $t == rootpw* ]]; then
    read -ra w <<<"$t"
    [[ ${#w[@]} -eq 2 && ${w[0]} == rootpw && ${w[1]} == --lock ]] ||
      bad "kickstart line $lineno sets a root password: media are shared, use 'rootpw --lock'"
  fi
  if [[ -n $section && $t == %end ]]; then
    if [[ $section == post ]]; then post_body+=("$body"); fi
    section=""
    continue
  fi
  case $section in
    post)
      body+=$line$'\n'
      continue ;;
    ignore) continue ;;
    packages)
      [[ -z $t || $t == \#* ]] && continue
      if [[ $t == @* ]]; then
        [[ $t != *" --"* ]] || bad "kickstart line $lineno: options on group lines are not supported"
        [[ $t =~ $group_re ]] || bad "kickstart line $lineno: bad group '$t'"
        pkgs+=("$t")
      elif [[ $t == -* ]]; then
        [[ ${t#-} =~ $pkg_re ]] || bad "kickstart line $lineno: bad exclusion '$t'"
        excludes+=("--exclude=${t#-}")
      else
        [[ $t =~ $pkg_re ]] || bad "kickstart line $lineno: bad package name '$t' (one per line)"
        pkgs+=("$t")
      fi
      continue ;;
  esac
  [[ -z $t || $t == \#* ]] && continue
  read -ra w <<<"$t"
  case ${w[0]} in
    %packages)
      ((seen_packages == 0)) || bad "kickstart line $lineno: a second %packages section"
      seen_packages=1
      parse_packages_header "$t"
      section=packages ;;
    %post)
      parse_post_header "$t"
      body=""
      section=post ;;
    %pre | %pre-install | %onerror | %traceback | %addon | %anaconda)
      add_ignored "${w[0]}"
      section=ignore ;;
    %include | %ksappend) bad "kickstart line $lineno: ${w[0]} is not supported: the kickstart must be self-contained" ;;
    %*) bad "kickstart line $lineno: unknown section '${w[0]}'" ;;
    repo) parse_repo "$t" ;;
    rootpw) ;; # checked above
    *)
      [[ ${w[0]} =~ ^[A-Za-z][A-Za-z0-9_-]*$ ]] || bad "kickstart line $lineno: '${w[0]}' is not a kickstart command"
      add_ignored "${w[0]}" ;;
  esac
done <<<"$ks"
[[ -z $section ]] || bad "the kickstart's last %$section section does not end with %end"
if ((${#pkgs[@]})) && ((${#repo_names[@]} == 0)); then
  bad "the kickstart lists packages but has no 'repo' line (the 'url' command is not used for media)"
fi

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
((${#ignored[@]} == 0)) || say "ignored (not used for container media): ${ignored[*]}"

if ((${#pkgs[@]})); then
  mkdir "$dir/repos.d"
  for ((i = 0; i < ${#repo_names[@]}; i++)); do
    printf '%s' "${repo_conf[i]}" >"$dir/repos.d/${repo_names[i]}.repo"
  done
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
    ${yum_opts[@]+"${yum_opts[@]}"} ${excludes[@]+"${excludes[@]}"} install "${pkgs[@]}" </dev/null >>"$log" 2>&1 ||
    fail "yum could not install the kickstart's packages"
fi

for ((i = 0; i < ${#post_body[@]}; i++)); do
  what="%post section $((i + 1)) (kickstart line ${post_line[i]})"
  interp=${post_interp[i]}
  script=$dir/post-$((i + 1)).sh
  printf '%s' "${post_body[i]}" >"$script"
  echo "---- $what" >>"$log"
  if ((post_chroot[i])); then
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
