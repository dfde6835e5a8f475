# shellcheck shell=bash disable=SC2034 # data, sourced by the stand-ins
# What `rpm -qa` shows on a fresh CentOS 7.9.2009 AMI ("CentOS Linux 7 x86_64 - 2009",
# owner 125523088429) when cloud-init runs the user-data: NAME VERSION-RELEASE ARCH
# INSTALLTIME (the image build). A subset: the packages host-setup.sh and the stand-ins ask
# about, from the image's package set at 7.9.2009 GA (written by hand, not read from an
# image). The gpg-pubkey line is CentOS 7's own signing key.
el7_ami_installed=(
  'kernel 3.10.0-1160.el7 x86_64 1604000000'
  'bash 4.2.46-34.el7 x86_64 1604000000'
  'openssh 7.4p1-21.el7 x86_64 1604000000'
  'openssh-server 7.4p1-21.el7 x86_64 1604000000'
  'openssh-clients 7.4p1-21.el7 x86_64 1604000000'
  'audit 2.8.5-4.el7 x86_64 1604000000'
  'audit-libs 2.8.5-4.el7 x86_64 1604000000'
  'iptables 1.4.21-35.el7 x86_64 1604000000'
  'chrony 3.4-1.el7 x86_64 1604000000'
  'systemd 219-78.el7 x86_64 1604000000'
  'yum 3.4.3-168.el7.centos noarch 1604000000'
  'rpm 4.11.3-45.el7 x86_64 1604000000'
  'curl 7.29.0-59.el7 x86_64 1604000000'
  'cloud-init 19.4-7.el7.centos x86_64 1604000000'
  'centos-release 7-9.2009.0.el7.centos x86_64 1604000000'
  'NetworkManager 1.18.8-1.el7 x86_64 1604000000'
  'postfix 2.10.1-9.el7 x86_64 1604000000'
  'tuned 2.11.0-11.el7 noarch 1604000000'
  'cronie 1.4.11-23.el7 x86_64 1604000000'
  'sudo 1.8.23-10.el7 x86_64 1604000000'
  'python 2.7.5-89.el7 x86_64 1604000000'
  'policycoreutils 2.5-34.el7 x86_64 1604000000'
  'libselinux-utils 2.5-15.el7 x86_64 1604000000'
  'selinux-policy-targeted 3.13.1-266.el7 noarch 1604000000'
  'util-linux 2.23.2-65.el7 x86_64 1604000000'
  'gpg-pubkey f4a80eb5-53a7ff4b (none) 1604000000'
)
