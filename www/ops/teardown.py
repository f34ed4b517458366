"""Removing a load-balanced environment's fleet, in the order AWS allows.

Removed: the Route 53 alias records that point at the load balancer, the Auto Scaling group
(its instances terminate with it), the launch template, the listeners, the load balancer, the
target group, and the load balancer's security group (with the web group's rule naming it).
Kept: the bucket and everything in it (config, releases, files), the database, the web and
backend security groups, the instance role, and the ACM certificate with its validation
records, so a later setup_aws reuses the issued certificate instead of waiting for a new one.
The bucket and the database go only when the operator asks (teardown --with-bucket,
--with-rds: www/ops/bucket.py delete_bucket, www/ops/rds.py delete_database), and only once
no instance outside the fleet still uses them (check_no_single_instances).
"""

import time

from botocore.exceptions import ClientError, WaiterError

from www.ops import ec2 as instances
from www.ops import loadbalancer as lb
from www.ops import scaling
from www.ops.errors import OpsError, error_code
from www.ops.network import _rules_of, default_vpc, find_group
from www.ops.results import Result


def _poll(check, *, delay, attempts, what):
    """Wait until check() is true, bounded; OpsError saying to rerun otherwise."""
    for attempt in range(attempts):
        if check():
            return
        if attempt + 1 < attempts:
            time.sleep(delay)
    raise OpsError(f"{what} still there after {delay * attempts}s: rerun teardown")


def check_no_single_instances(*, ec2, autoscaling, landscape):
    """OpsError when instances of the environment outside its Auto Scaling group (launched
    by launch_ec2 on an environment without a load balancer) exist: they use the bucket and
    the database, and teardown removes a fleet, not them."""
    group = scaling.find_group(autoscaling, landscape) or {}
    members = {i["InstanceId"] for i in group.get("Instances", [])}
    others = [
        i["InstanceId"]
        for i in instances.environment_instances(ec2=ec2, landscape=landscape)
        if i["InstanceId"] not in members
    ]
    if others:
        name = landscape.env.name
        raise OpsError(
            f"{len(others)} instance(s) of {name} still use its bucket and database "
            f"({', '.join(others)}): terminate them first with ./manage.py terminate_ec2 "
            f"--env {name} {' '.join(others)}, then rerun teardown"
        )


def teardown_fleet(
    *, ec2, elbv2, route53, autoscaling, landscape, dry_run=False, delay=5, attempts=60
):
    """Yield a Result per removal; nothing when there is nothing to remove."""
    load_balancer = lb.find_load_balancer(elbv2, landscape)
    if load_balancer is not None:
        yield from _alias_records(route53, landscape, load_balancer, dry_run)

    group = scaling.find_group(autoscaling, landscape)
    if group is not None:
        count = len(group.get("Instances", []))
        if not dry_run:
            autoscaling.delete_auto_scaling_group(
                AutoScalingGroupName=landscape.auto_scaling_group, ForceDelete=True
            )
            _poll(
                lambda: scaling.find_group(autoscaling, landscape) is None,
                delay=delay,
                attempts=attempts,
                what=f"Auto Scaling group {landscape.auto_scaling_group}",
            )
        yield Result(
            "delete",
            f"Auto Scaling group {landscape.auto_scaling_group}",
            dry_run,
            f"and its {count} instance(s)",
        )

    if scaling.latest_template_version(ec2, landscape.launch_template) is not None:
        if not dry_run:
            ec2.delete_launch_template(LaunchTemplateName=landscape.launch_template)
        yield Result("delete", f"launch template {landscape.launch_template}", dry_run)

    if load_balancer is not None:
        arn = load_balancer["LoadBalancerArn"]
        for page in elbv2.get_paginator("describe_listeners").paginate(LoadBalancerArn=arn):
            for listener in page["Listeners"]:
                if not dry_run:
                    elbv2.delete_listener(ListenerArn=listener["ListenerArn"])
                yield Result(
                    "delete", f"listener {landscape.load_balancer}:{listener['Port']}", dry_run
                )
        if not dry_run:
            elbv2.delete_load_balancer(LoadBalancerArn=arn)
            try:
                elbv2.get_waiter("load_balancers_deleted").wait(
                    LoadBalancerArns=[arn],
                    WaiterConfig={"Delay": delay, "MaxAttempts": attempts},
                )
            except WaiterError:
                raise OpsError(
                    f"load balancer {landscape.load_balancer} still there after "
                    f"{delay * attempts}s: rerun teardown"
                ) from None
        yield Result("delete", f"load balancer {landscape.load_balancer}", dry_run)

    target_group = lb.find_target_group(elbv2, landscape)
    if target_group is not None:
        if not dry_run:
            elbv2.delete_target_group(TargetGroupArn=target_group["TargetGroupArn"])
        yield Result("delete", f"target group {landscape.target_group}", dry_run)

    yield from _load_balancer_group(ec2, landscape, dry_run, delay, attempts)


def _alias_records(route53, landscape, load_balancer, dry_run):
    target = load_balancer["DNSName"].rstrip(".").lower()
    for domain in landscape.env.domains:
        zone = lb.hosted_zone_for(route53, domain)
        record = zone and lb.find_record(route53, zone["Id"], f"{domain}.", "A")
        alias = (record or {}).get("AliasTarget", {})
        if alias.get("DNSName", "").rstrip(".").lower() != target:
            continue  # not ours (or gone): left alone
        if not dry_run:
            route53.change_resource_record_sets(
                HostedZoneId=zone["Id"],
                ChangeBatch={"Changes": [{"Action": "DELETE", "ResourceRecordSet": record}]},
            )
        yield Result("delete", f"DNS record {domain}. A (alias) in zone {zone['Name']}", dry_run)


def _load_balancer_group(ec2, landscape, dry_run, delay, attempts):
    vpc_id = default_vpc(ec2)
    group = find_group(ec2, landscape.load_balancer_group, vpc_id)
    if group is None:
        return
    group_id = group["GroupId"]
    web = find_group(ec2, landscape.web_group, vpc_id)
    naming = [r for r in _rules_of(web) if r[3] == group_id] if web else []
    if naming:
        if not dry_run:
            ec2.revoke_security_group_ingress(
                GroupId=web["GroupId"],
                IpPermissions=[
                    {
                        "IpProtocol": p,
                        "FromPort": f,
                        "ToPort": t,
                        "UserIdGroupPairs": [{"GroupId": group_id}],
                    }
                    for p, f, t, _ in naming
                ],
            )
        yield Result(
            "update",
            f"security group {landscape.web_group}",
            dry_run,
            f"remove 80 from {landscape.load_balancer_group}",
        )
    if not dry_run:
        # The load balancer's network interfaces outlive it by a few minutes in AWS.
        def deleted():
            try:
                ec2.delete_security_group(GroupId=group_id)
            except ClientError as exc:
                if error_code(exc) == "DependencyViolation":
                    return False
                raise
            return True

        _poll(
            deleted,
            delay=delay,
            attempts=attempts,
            what=f"security group {landscape.load_balancer_group} (in use)",
        )
    yield Result("delete", f"security group {landscape.load_balancer_group}", dry_run)
