#!/usr/bin/env bash
# First-boot setup of the Docker host (CentOS 7.9, EOL); cloud-init runs it once, safe to run
# again. For the bootstrap phase it leaves $ok, or $bad naming the step that failed.
set -Eeuo pipefail
umask 022
export PATH=/usr/local/sbin:/usr/sbin:/usr/bin
[[ $EUID -eq 0 ]] || { echo "run as root" >&2; exit 1; }
ok=/var/lib/poscloud/userdata.json bad=/var/lib/poscloud/userdata.failed
log=/var/log/poscloud-host-setup.log step=start
mkdir -p /var/lib/poscloud; touch $log; chmod 0600 $log
exec > >(tee -a $log) 2>&1
now() { date -u +%FT%TZ; }
fail() {
  local m=${2//[\"\\$'\t\n']/ }
  printf '{"step":"%s","exit":%d,"error":"%s","time":"%s"}\n' "$step" "$1" "$m" "$(now)" >$bad
  echo "FAILED in step $step: $m"
  exit "$1"
}
trap 'fail $? "line $LINENO: $BASH_COMMAND"' ERR
die() { fail 1 "$*"; }
begin() { step=$1; echo "== $(now) $1"; }
# retry N CMD...: the Elastic IPs come after launch, the first minutes may have no internet.
retry() {
  local n=$1 i
  shift
  for ((i = 1; ; i++)); do
    "$@" && return 0
    ((i < n)) || die "gave up after $n attempts: $*"
    echo "attempt $i/$n failed: $*"; sleep 20
  done
}

begin inputs
conf() { sed -n "s/^$1=//p" /etc/poscloud/stack | tail -n 1; }
shop=$(conf shop) senv=$(conf env) cidrs=$(conf admin_cidrs) user=$(conf login_user) ssm=$(conf ssm_agent_url)
[[ $shop =~ ^[0-9]{8}$ && $senv =~ ^(prod|qa|dev)$ && $user =~ ^[a-z_][a-z0-9_-]*$ &&
  $ssm =~ ^https://s3\.[a-z0-9-]+\.amazonaws\.com/amazon-ssm-[a-z0-9-]+/latest/linux_amd64/amazon-ssm-agent\.rpm$ ]] ||
  die "bad /etc/poscloud/stack"
rm -f $ok

begin repos
# EOL: mirrorlist is gone. CentOS from the vault, EPEL 7 from its archive, before any yum call.
vault=https://vault.centos.org/7.9.2009 epel=https://archives.fedoraproject.org/pub/archive/epel/7
repos() {
  sed -i -e 's|^mirrorlist=|#&|' -e "s|^#\?baseurl=https\?://mirror\.centos\.org/centos/\\\$releasever|baseurl=$vault|" \
    /etc/yum.repos.d/CentOS-*.repo
  [[ ! -e /etc/yum.repos.d/epel.repo ]] ||
    sed -i -e 's|^metalink=|#&|' -e "s|^#\?baseurl=.*/pub/epel/7|baseurl=$epel|" /etc/yum.repos.d/epel*.repo
}
repos
grep -qF "baseurl=$vault/os/" /etc/yum.repos.d/CentOS-Base.repo || die "CentOS-Base.repo not on the vault"
# EL7's yum skips a name it cannot find and installs the rest (exit 0): make it fail instead.
sed -i -e '/^retries=/d;/^timeout=/d;/^skip_missing_names_on_install=/d' -e '/^\[main\]/a retries=10' \
  -e '/^\[main\]/a timeout=60' -e '/^\[main\]/a skip_missing_names_on_install=0' /etc/yum.conf
yum clean all >/dev/null
# Amazon Time Sync answers without internet; SSM's request signatures need a right clock.
[[ ! -f /etc/chrony.conf ]] || grep -q 169.254.169.123 /etc/chrony.conf || {
  sed -i '1i server 169.254.169.123 prefer iburst' /etc/chrony.conf; systemctl restart chronyd
}

begin network
retry 60 curl -fsS -o /dev/null --max-time 10 $vault/os/x86_64/repodata/repomd.xml

begin ssm
# First, before the long update: poscloud's online check waits for the agent (600 s), and
# the remote phases wait for this script's marker themselves.
rpm -q amazon-ssm-agent >/dev/null || retry 10 yum -y install "$ssm"
systemctl enable amazon-ssm-agent; systemctl start amazon-ssm-agent

begin update
retry 5 yum -y update --exclude='cloud-init*'

# yum_install NAME...: yum -y install; a name no enabled repo has is no reason to retry.
yum_install() {
  local out rc=0 miss
  out=$(yum -y install "$@" 2>&1) || rc=$?
  printf '%s\n' "$out"
  ((rc != 0)) || return 0
  miss=$(sed -n 's/^No package \(.*\) available\.$/\1/p' <<<"$out" | tr '\n' ' ')
  [[ -z $miss ]] || die "not in the enabled repos: ${miss% }"
  return "$rc"
}

begin packages
rpm -q epel-release >/dev/null || retry 5 yum_install epel-release
repos
grep -qF "baseurl=$epel/\$basearch" /etc/yum.repos.d/epel.repo || die "epel.repo not on the archive"
# Docker stopped building for EL7 at 27.0: pin the last el7 release. Its signing key must be
# 060A 61C5 1B55 8A7F 742B 77AA C52F EB6B 621E 9F35.
key=/etc/pki/rpm-gpg/docker-ce.gpg
cat >/etc/yum.repos.d/docker-ce.repo <<'EOF'
[docker-ce-stable]
name=Docker CE Stable (el7)
baseurl=https://download.docker.com/linux/centos/7/$basearch/stable
gpgcheck=1
gpgkey=file:///etc/pki/rpm-gpg/docker-ce.gpg
EOF
[[ -s $key ]] || retry 10 curl -fsSL --max-time 60 -o $key https://download.docker.com/linux/centos/gpg
rpm -q gpg-pubkey-621e9f35 >/dev/null || rpm --import $key
rpm -q gpg-pubkey-621e9f35 >/dev/null || { rm -f $key; die "$key is not Docker's key"; }
# strongswan-libipsec: EPEL ships the kernel-libipsec plugin (userspace ESP) apart; rsync:
# restores and cutover syncs.
p=(docker-ce-26.1.4 docker-ce-cli-26.1.4 containerd.io strongswan strongswan-libipsec audit iptables rsync)
rpm -q "${p[@]}" >/dev/null || retry 5 yum_install "${p[@]}"

begin eth1
# eth1 is the POS container's: the host never configures it, and eth0 keeps the only default
# route. (No grep -q after a pipe: an early exit could SIGPIPE the writer under pipefail.)
has_ip() { ip -4 addr show dev eth1 2>/dev/null | grep inet >/dev/null; }
if has_ip; then # taken at first boot (dhclient, NetworkManager): release it, then strip it
  ifdown eth1 &>/dev/null || true
  ip addr flush dev eth1; ip link set eth1 down
fi
printf '%s\n' '# poscloud: the POS container owns eth1' DEVICE=eth1 ONBOOT=no BOOTPROTO=none NM_CONTROLLED=no \
  DEFROUTE=no PEERDNS=no PEERROUTES=no IPV6INIT=no HOTPLUG=no >/etc/sysconfig/network-scripts/ifcfg-eth1
! systemctl -q is-active NetworkManager || nmcli connection reload
sed -i '/^GATEWAYDEV=/d' /etc/sysconfig/network; echo GATEWAYDEV=eth0 >>/etc/sysconfig/network
ip -4 route show default | sed -n 's/.* dev \([^ ]*\).*/\1/p' | while read -r d; do
  [[ $d == eth0 ]] || ip -4 route del default dev "$d"
done
ip -4 route show default | grep ' dev eth0' >/dev/null || die "no default route via eth0"

begin sysctl
# CIS 3.x, but Docker needs forwarding, and rp_filter is loose: strict breaks two ENIs.
{
  printf '%s\n' net.ipv4.ip_forward=1 net.ipv4.tcp_syncookies=1 net.ipv4.icmp_echo_ignore_broadcasts=1 \
    net.ipv4.icmp_ignore_bogus_error_responses=1 net.ipv4.conf.eth0.send_redirects=0 \
    kernel.randomize_va_space=2 fs.suid_dumpable=0
  for i in all default; do
    for k in send_redirects=0 accept_redirects=0 secure_redirects=0 accept_source_route=0 log_martians=1 rp_filter=2; do
      echo "net.ipv4.conf.$i.$k"
    done
    echo "net.ipv6.conf.$i.accept_ra=0"$'\n'"net.ipv6.conf.$i.accept_redirects=0"
  done
} >/etc/sysctl.d/90-poscloud.conf
sysctl -p /etc/sysctl.d/90-poscloud.conf >/dev/null

begin firewall
r4=/etc/poscloud/iptables.rules r6=/etc/poscloud/ip6tables.rules
ADMIN_CIDRS=$cidrs poscloud-firewall-rules 4 >$r4
poscloud-firewall-rules 6 >$r6
for u in firewalld iptables ip6tables; do # their start or stop would flush Docker's chains
  ! systemctl cat $u.service &>/dev/null || { systemctl stop $u.service; systemctl mask $u.service; }
done
cat >/etc/systemd/system/poscloud-firewall.service <<EOF
[Unit]
Description=poscloud INPUT firewall (Docker owns FORWARD and nat)
DefaultDependencies=no
After=local-fs.target
Before=network-pre.target docker.service
Wants=network-pre.target
[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/sbin/iptables-restore --noflush $r4
ExecStart=/usr/sbin/ip6tables-restore --noflush $r6
[Install]
WantedBy=multi-user.target
EOF
systemctl daemon-reload; systemctl enable poscloud-firewall; systemctl restart poscloud-firewall
iptables -S INPUT | grep -x -- '-P INPUT DROP' >/dev/null || die "INPUT policy is not DROP"

begin sshd
# sshd keeps the first value it reads: this block goes on top (OpenSSH 7.4 has no Include).
t=$(mktemp)
cat >"$t" <<'EOF'
# BEGIN poscloud
LogLevel VERBOSE
PermitRootLogin no
AuthenticationMethods publickey
PasswordAuthentication no
ChallengeResponseAuthentication no
GSSAPIAuthentication no
PermitUserEnvironment no
X11Forwarding no
AllowAgentForwarding no
AllowTcpForwarding no
MaxAuthTries 4
LoginGraceTime 60
ClientAliveInterval 300
Ciphers chacha20-poly1305@openssh.com,aes256-gcm@openssh.com,aes128-gcm@openssh.com,aes256-ctr
MACs hmac-sha2-512-etm@openssh.com,hmac-sha2-256-etm@openssh.com
KexAlgorithms curve25519-sha256,curve25519-sha256@libssh.org,diffie-hellman-group-exchange-sha256
# END poscloud
EOF
sed '/^# BEGIN poscloud/,/^# END poscloud/d' /etc/ssh/sshd_config >>"$t"
sshd -t -f "$t"
cat "$t" >/etc/ssh/sshd_config; rm -f "$t"; chmod 0600 /etc/ssh/sshd_config
systemctl reload sshd

begin keys
# poscloud's SSH path runs `sudo -n` with no terminal: EL7 sudoers that carry
# `Defaults requiretty` would refuse it ("you must have a tty").
su=/etc/sudoers.d/90-poscloud
printf 'Defaults:%s !requiretty\n' "$user" >"$su.tmp"; chmod 0440 "$su.tmp"
visudo -cqf "$su.tmp" || die "the sudoers drop-in $su is not valid"
mv -f "$su.tmp" "$su"
if grep -q . /etc/poscloud/operator_keys; then
  h=$(getent passwd "$user" | cut -d: -f6) || die "no login user $user"
  install -d -m 0700 -o "$user" -g "$(id -gn "$user")" "$h/.ssh"
  ak=$h/.ssh/authorized_keys
  touch "$ak"
  while IFS= read -r k; do
    [[ -z $k ]] || grep -qxF -- "$k" "$ak" || echo "$k" >>"$ak"
  done </etc/poscloud/operator_keys
  chown "$user:" "$ak"; chmod 0600 "$ak"; restorecon -R "$h/.ssh"
fi

begin services
for u in postfix.service rpcbind.socket rpcbind.service avahi-daemon.socket avahi-daemon.service cups.service; do
  ! systemctl cat $u &>/dev/null || { systemctl stop $u; systemctl mask $u; }
done

begin docker
mkdir -p /etc/docker # daemon.json written once: a later phase may own it
[[ -e /etc/docker/daemon.json ]] || echo '{"log-opts":{"max-size":"50m","max-file":"5"}}' >/etc/docker/daemon.json
systemctl enable docker; systemctl start docker
docker info >/dev/null

begin audit
printf -- '-w %s -p wa -k poscloud\n' /etc/passwd /etc/group /etc/shadow /etc/gshadow /etc/sudoers \
  /etc/sudoers.d/ /etc/ssh/sshd_config /etc/poscloud/ /etc/docker/ /usr/bin/dockerd >/etc/audit/rules.d/90-poscloud.rules
systemctl enable auditd; systemctl start auditd; augenrules --load >/dev/null

begin verify
restorecon -R /etc/poscloud /etc/sysconfig /etc/sysctl.d /etc/systemd/system /etc/audit
for u in docker amazon-ssm-agent auditd poscloud-firewall sshd; do
  systemctl -q is-active $u || die "$u is not running"
done
[[ $(sysctl -n net.ipv4.ip_forward net.ipv4.conf.all.rp_filter | tr -d '\n') == 12 ]] || die "sysctl not applied"

begin marker
v() { rpm -q --qf '%{VERSION}-%{RELEASE}' "$1"; }
k=$(uname -r) n=$(rpm -q --qf '%{INSTALLTIME} %{VERSION}-%{RELEASE}.%{ARCH}\n' kernel | sort -n | tail -n 1)
n=${n#* } t=$(mktemp $ok.XXXXXX)
printf '{%s"reboot_required":%s}\n' "$(printf '"%s":"%s",' shop "$shop" env "$senv" docker "$(v docker-ce)" \
  strongswan "$(v strongswan)" ssm_agent "$(v amazon-ssm-agent)" kernel "$k" kernel_installed "$n" \
  selinux "$(getenforce)" finished "$(now)")" "$([[ $k == "$n" ]] && echo false || echo true)" >"$t"
chmod 0644 "$t"; mv -f "$t" $ok; rm -f $bad
echo "== $(now) done: $(cat $ok)"
