#!/usr/bin/env bash
# The teardown baseline for bench/run.sh: bash and the AWS CLI removing one stack made by
# bench/baseline.sh (or poscloud) the way a careful engineer would: found by its tags, in
# dependency order, each wait with the CLI's waiter. It does not verify, retry or resume:
# that is what poscloud adds.
#
# Usage: bench/baseline-teardown.sh SHOP ENV   (AWS_ENDPOINT_URL, AWS_REGION set)
set -euo pipefail

shop=$1 env=$2
name=poscloud-$shop-$env
cli() { aws --output text "$@"; }
tags=("Name=tag:poscloud:shop,Values=$shop" "Name=tag:poscloud:env,Values=$env")

# The addresses first: a gateway detaches only with no address of its VPC mapped.
for assoc in $(cli ec2 describe-addresses --filters "${tags[@]}" --query 'Addresses[].AssociationId'); do
  [[ $assoc == None ]] || cli ec2 disassociate-address --association-id "$assoc"
done
for alloc in $(cli ec2 describe-addresses --filters "${tags[@]}" --query 'Addresses[].AllocationId'); do
  cli ec2 release-address --allocation-id "$alloc"
done
instances=$(cli ec2 describe-instances --filters "${tags[@]}" \
  Name=instance-state-name,Values=pending,running,stopping,stopped \
  --query 'Reservations[].Instances[].InstanceId')
if [[ -n $instances ]]; then
  # shellcheck disable=SC2086 # one word per id
  cli ec2 terminate-instances --instance-ids $instances >/dev/null
  # shellcheck disable=SC2086 # one word per id
  cli ec2 wait instance-terminated --instance-ids $instances
fi
for eni in $(cli ec2 describe-network-interfaces --filters "${tags[@]}" --query 'NetworkInterfaces[].NetworkInterfaceId'); do
  cli ec2 delete-network-interface --network-interface-id "$eni"
done
for sg in $(cli ec2 describe-security-groups --filters "${tags[@]}" --query 'SecurityGroups[].GroupId'); do
  cli ec2 delete-security-group --group-id "$sg"
done
for rtb in $(cli ec2 describe-route-tables --filters "${tags[@]}" --query 'RouteTables[].RouteTableId'); do
  for assoc in $(cli ec2 describe-route-tables --route-table-ids "$rtb" --query 'RouteTables[].Associations[].RouteTableAssociationId'); do
    cli ec2 disassociate-route-table --association-id "$assoc"
  done
  cli ec2 delete-route-table --route-table-id "$rtb"
done
for subnet in $(cli ec2 describe-subnets --filters "${tags[@]}" --query 'Subnets[].SubnetId'); do
  cli ec2 delete-subnet --subnet-id "$subnet"
done
vpc=$(cli ec2 describe-vpcs --filters "${tags[@]}" --query 'Vpcs[0].VpcId')
for igw in $(cli ec2 describe-internet-gateways --filters "${tags[@]}" --query 'InternetGateways[].InternetGatewayId'); do
  cli ec2 detach-internet-gateway --internet-gateway-id "$igw" --vpc-id "$vpc"
  cli ec2 delete-internet-gateway --internet-gateway-id "$igw"
done
cli ec2 delete-vpc --vpc-id "$vpc"
cli iam remove-role-from-instance-profile --instance-profile-name "$name" --role-name "$name"
cli iam delete-instance-profile --instance-profile-name "$name"
cli iam detach-role-policy --role-name "$name" --policy-arn arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore
cli iam delete-role-policy --role-name "$name" --policy-name poscloud-stack-scope
cli iam delete-role --role-name "$name"
