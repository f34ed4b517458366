"""A load-balanced environment's fleet, as setup_aws and teardown see it: the front door
(www/ops/loadbalancer.py) and the instances behind it (www/ops/scaling.py)."""

from www.ops import loadbalancer as lb
from www.ops import scaling
from www.ops.network import default_vpc, find_group
from www.ops.results import Result


class FleetPlan:
    """What setup_aws checks before it changes anything: the AMI and the subnets."""

    def __init__(self, *, ec2, landscape, ami):
        self.landscape = landscape
        self.vpc_id = default_vpc(ec2)
        self.subnets = lb.fleet_subnets(ec2=ec2, landscape=landscape, vpc_id=self.vpc_id)
        self.ami = ami
        self.device = scaling.root_device(ec2, ami)


def ensure_fleet(
    *, ec2, elbv2, acm, route53, autoscaling, plan, dry_run=False, wait=False, wait_delay=15
):
    """Load balancer, target group, certificate, listeners, DNS, launch template, group."""
    land = plan.landscape
    front = lb.Front(
        ec2=ec2,
        elbv2=elbv2,
        acm=acm,
        route53=route53,
        landscape=land,
        vpc_id=plan.vpc_id,
        subnets=plan.subnets,
        dry_run=dry_run,
    )
    yield from front.run(wait=wait, wait_delay=wait_delay)
    web = find_group(ec2, land.web_group, plan.vpc_id)
    if web is None:  # dry run of a new environment
        yield Result("create", f"launch template {land.launch_template}", True)
    else:
        data = scaling.template_data(
            landscape=land,
            ami=plan.ami,
            device=plan.device,
            instance_type=land.env.instance_type,
            group_id=web["GroupId"],
        )
        yield scaling.ensure_launch_template(ec2=ec2, landscape=land, data=data, dry_run=dry_run)
    if front.target_group is None:
        yield Result("create", f"Auto Scaling group {land.auto_scaling_group}", True)
    else:
        yield from scaling.ensure_group(
            autoscaling=autoscaling,
            landscape=land,
            subnets=plan.subnets,
            target_group_arn=front.target_group["TargetGroupArn"],
            dry_run=dry_run,
        )
    if front.load_balancer is not None:
        yield Result(
            "attention", "site", detail=f"answers at {lb.site_address(land, front.load_balancer)}"
        )
