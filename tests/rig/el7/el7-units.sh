# shellcheck shell=bash disable=SC2034 # data, sourced by the stand-ins
# Units the systemctl stand-in knows, from the packages that ship them (CentOS 7.9 / EPEL 7 /
# docker-ce el7 packaging): UNIT PACKAGE WANTEDBY STATE-ON-THE-AMI FLAGS.
# STATE-ON-THE-AMI: active (enabled and running when cloud-init runs the user-data) or
# inactive. FLAGS: refuse-manual-stop (auditd.service has RefuseManualStop=yes on EL7),
# sshd-check (reload/restart re-reads /etc/ssh/sshd_config: the stand-in runs `sshd -t` and
# the daemon dies if it fails), json-check (dockerd refuses an unparsable daemon.json), -.
el7_units=(
  'sshd.service openssh-server multi-user.target active sshd-check'
  'chronyd.service chrony multi-user.target active -'
  'auditd.service audit multi-user.target active refuse-manual-stop'
  'crond.service cronie multi-user.target active -'
  'NetworkManager.service NetworkManager multi-user.target active -'
  'postfix.service postfix multi-user.target active -'
  'tuned.service tuned multi-user.target active -'
  'rpcbind.service rpcbind multi-user.target inactive -'
  'rpcbind.socket rpcbind sockets.target inactive -'
  'avahi-daemon.service avahi multi-user.target inactive -'
  'avahi-daemon.socket avahi sockets.target inactive -'
  'cups.service cups multi-user.target inactive -'
  'firewalld.service firewalld multi-user.target inactive -'
  'iptables.service iptables-services basic.target inactive -'
  'ip6tables.service iptables-services basic.target inactive -'
  'docker.service docker-ce multi-user.target inactive json-check'
  'docker.socket docker-ce sockets.target inactive -'
  'containerd.service containerd.io multi-user.target inactive -'
  'amazon-ssm-agent.service amazon-ssm-agent multi-user.target inactive -'
  'strongswan.service strongswan multi-user.target inactive -'
)
