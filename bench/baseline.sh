#!/usr/bin/env bash
# The baseline for bench/run.sh: what a careful engineer would write with bash and the AWS
# CLI to create the same stack as `poscloud provision --until infra` (qa profile): the same
# resources, the same four tags on each (the VPC's creation time too), the same settings
# (IMDSv2, encrypted gp3 root volume, eth1 at 192.168.222.233, the instance role with the SSM
# core policy and the scope policy, the shared output bucket locked down) and the same waits.
# It does not discover, resume or verify: that is what poscloud adds.
#
# Usage: bench/baseline.sh SHOP ENV USERDATA_FILE   (AWS_ENDPOINT_URL, AWS_REGION set)
set -euo pipefail

shop=$1 env=$2 userdata=$3
name=poscloud-$shop-$env
region=${AWS_REGION:?}

cli() { aws --output text "$@"; }
tagspec() {
  printf 'ResourceType=%s,Tags=[{Key=poscloud:shop,Value=%s},{Key=poscloud:env,Value=%s},{Key=poscloud:role,Value=%s},{Key=Name,Value=%s-%s}%s]' \
    "$1" "$shop" "$env" "$2" "$name" "$2" "${3:-}"
}
iamtags() {
  printf 'Key=poscloud:shop,Value=%s Key=poscloud:env,Value=%s Key=poscloud:role,Value=%s Key=Name,Value=%s-%s' \
    "$shop" "$env" "$1" "$name" "$1"
}

# Preflight reads: the newest CentOS 7 image, VPC and Elastic IP headroom.
ami=$(cli ec2 describe-images --owners 125523088429 --filters "Name=name,Values=CentOS Linux 7 x86_64 - *" \
  --query 'sort_by(Images,&CreationDate)[-1].ImageId')
cli ec2 describe-vpcs --query 'length(Vpcs)' >/dev/null
cli ec2 describe-account-attributes --attribute-names vpc-max-elastic-ips >/dev/null
cli ec2 describe-addresses --query 'length(Addresses)' >/dev/null
account=$(cli sts get-caller-identity --query Account)

# Network.
created=$(date -u +%Y-%m-%dT%H:%M:%SZ)
vpc=$(cli ec2 create-vpc --cidr-block 192.168.222.0/24 \
  --tag-specifications "$(tagspec vpc vpc ",{Key=poscloud:created,Value=$created}")" --query Vpc.VpcId)
cli ec2 wait vpc-available --vpc-ids "$vpc"
igw=$(cli ec2 create-internet-gateway --tag-specifications "$(tagspec internet-gateway igw)" \
  --query InternetGateway.InternetGatewayId)
cli ec2 attach-internet-gateway --internet-gateway-id "$igw" --vpc-id "$vpc"
subnet=$(cli ec2 create-subnet --vpc-id "$vpc" --cidr-block 192.168.222.0/24 \
  --tag-specifications "$(tagspec subnet subnet)" --query Subnet.SubnetId)
rtb=$(cli ec2 create-route-table --vpc-id "$vpc" --tag-specifications "$(tagspec route-table route-table)" \
  --query RouteTable.RouteTableId)
cli ec2 create-route --route-table-id "$rtb" --destination-cidr-block 0.0.0.0/0 --gateway-id "$igw" >/dev/null
cli ec2 associate-route-table --route-table-id "$rtb" --subnet-id "$subnet" >/dev/null
# Security groups: host (no inbound: the qa profile has no admin CIDRs), pos (no inbound).
sg_host=$(cli ec2 create-security-group --vpc-id "$vpc" --group-name "$name-sg-host" \
  --description "$name host (eth0)" --tag-specifications "$(tagspec security-group sg-host)" --query GroupId)
sg_pos=$(cli ec2 create-security-group --vpc-id "$vpc" --group-name "$name-sg-pos" \
  --description "$name POS (eth1)" --tag-specifications "$(tagspec security-group sg-pos)" --query GroupId)

# The shared output bucket, locked down (once per account and region).
bucket=poscloud-ssm-output-$account-$region
if ! cli s3api head-bucket --bucket "$bucket" >/dev/null 2>&1; then
  cli s3api create-bucket --bucket "$bucket" >/dev/null
  cli s3api put-public-access-block --bucket "$bucket" --public-access-block-configuration \
    BlockPublicAcls=true,IgnorePublicAcls=true,BlockPublicPolicy=true,RestrictPublicBuckets=true
  cli s3api put-bucket-encryption --bucket "$bucket" --server-side-encryption-configuration \
    '{"Rules":[{"ApplyServerSideEncryptionByDefault":{"SSEAlgorithm":"AES256"}}]}'
fi

# The instance role: SSM core plus its own S3 prefix and SSM path.
trust='{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}'
scope=$(printf '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:PutObject"],"Resource":"arn:aws:s3:::%s/%s/%s/*"},{"Effect":"Allow","Action":["s3:GetEncryptionConfiguration"],"Resource":"arn:aws:s3:::%s"},{"Effect":"Allow","Action":["ssm:GetParameter","ssm:GetParameters","ssm:GetParametersByPath"],"Resource":"arn:aws:ssm:%s:%s:parameter/poscloud/%s/%s/*"}]}' \
  "$bucket" "$shop" "$env" "$bucket" "$region" "$account" "$shop" "$env")
# shellcheck disable=SC2046 # one word per tag
cli iam create-role --role-name "$name" --path /poscloud/ --assume-role-policy-document "$trust" \
  --tags $(iamtags iam-role) >/dev/null
cli iam put-role-policy --role-name "$name" --policy-name poscloud-stack-scope --policy-document "$scope"
cli iam attach-role-policy --role-name "$name" --policy-arn arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore
# shellcheck disable=SC2046 # one word per tag
cli iam create-instance-profile --instance-profile-name "$name" --path /poscloud/ \
  --tags $(iamtags instance-profile) >/dev/null
cli iam add-role-to-instance-profile --instance-profile-name "$name" --role-name "$name"
cli iam wait instance-profile-exists --instance-profile-name "$name"

# eth1 for the POS container, then the instance with eth0 and eth1.
eni=$(cli ec2 create-network-interface --subnet-id "$subnet" --private-ip-address 192.168.222.233 \
  --groups "$sg_pos" --description "$name eth1 (POS container)" \
  --tag-specifications "$(tagspec network-interface eni-pos)" --query NetworkInterface.NetworkInterfaceId)
instance=$(cli ec2 run-instances --image-id "$ami" --instance-type t3.large \
  --client-token "$name-$vpc" \
  --network-interfaces "DeviceIndex=0,SubnetId=$subnet,Groups=$sg_host" "DeviceIndex=1,NetworkInterfaceId=$eni" \
  --iam-instance-profile "Name=$name" \
  --metadata-options HttpTokens=required,HttpPutResponseHopLimit=1,HttpEndpoint=enabled \
  --block-device-mappings 'DeviceName=/dev/sda1,Ebs={VolumeSize=100,VolumeType=gp3,Encrypted=true,DeleteOnTermination=true}' \
  --user-data "file://$userdata" \
  --tag-specifications "$(tagspec instance host)" "$(tagspec volume volume)" \
  --query 'Instances[0].InstanceId')
cli ec2 wait instance-running --instance-ids "$instance"
# shellcheck disable=SC2016 # backticks are JMESPath literals
eth0=$(cli ec2 describe-instances --instance-ids "$instance" \
  --query 'Reservations[0].Instances[0].NetworkInterfaces[?Attachment.DeviceIndex==`0`].NetworkInterfaceId')

# One Elastic IP per interface.
for pair in "eip-host:$eth0" "eip-pos:$eni"; do
  alloc=$(cli ec2 allocate-address --domain vpc --tag-specifications "$(tagspec elastic-ip "${pair%%:*}")" \
    --query AllocationId)
  cli ec2 associate-address --allocation-id "$alloc" --network-interface-id "${pair#*:}" >/dev/null
done
echo "$instance"
