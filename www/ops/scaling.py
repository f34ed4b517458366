"""A load-balanced environment's instances: a launch template and an Auto Scaling group.

The launch template <project>-<env>-webserver holds what launch_ec2 puts on a single
instance (www/ops/ec2.py): the AMI, the instance type, the instance profile, the web
security group, IMDSv2 only with metadata tags and hop limit 2, stage-1 user-data, the tags
Name/Project/Env/Bootstrap on the instance and Project/Env on its volume, and an encrypted
root volume. A rerun compares that with the template's latest version and makes a new
version only when something differs (a new Debian AMI, another instance type, ...).

The group <project>-<env>-web runs the template's $Latest version in the fleet's subnets,
registers its instances in the target group and replaces any the load balancer finds
unhealthy (health check type ELB) once the grace period is over: 600 s covers a cold boot
(stage 1 installs Docker and the AWS CLI, stage 2 pulls the image and waits up to 300 s for
/health, stage 3 migrates and collects static files).

A new group is parked: 0 instances and min 0, because nothing can boot before push_config
and publish_image. `launch_ec2 --count N` brings it to <ENV>_MIN_INSTANCES..MAX and N.
"""

import base64
import time

from botocore.exceptions import ClientError

from www.ops.ec2 import METADATA_OPTIONS, user_data
from www.ops.errors import OpsError, error_code
from www.ops.loadbalancer import project_onto
from www.ops.results import Result, converge

GRACE_PERIOD = 600  # seconds: a cold boot, stages 1 to 3
ROOT_DEVICE_DEFAULT = "/dev/xvda"
# Debian's AMI has 8 GiB: too little for Docker, two release images (serving and on trial)
# and the logs.
ROOT_VOLUME_GIB = 20


def root_device(ec2, ami):
    """The AMI's root device name, where the encrypted volume must go."""
    try:
        images = ec2.describe_images(ImageIds=[ami])["Images"]
    except ClientError as exc:
        if error_code(exc) in ("InvalidAMIID.NotFound", "InvalidAMIID.Malformed"):
            raise OpsError(f"AMI {ami} does not exist in this region: pass another --ami") from None
        raise
    if not images:
        raise OpsError(f"AMI {ami} does not exist in this region: pass another --ami")
    return images[0].get("RootDeviceName") or ROOT_DEVICE_DEFAULT


def template_data(*, landscape, ami, device, instance_type, group_id):
    """The launch template's LaunchTemplateData."""
    env = landscape.env
    instance_tags = [
        {"Key": "Name", "Value": landscape.web_instance},
        *landscape.tags,
        {"Key": "Bootstrap", "Value": env.stage2_uri},
    ]
    return {
        "ImageId": ami,
        "InstanceType": instance_type,
        "IamInstanceProfile": {"Name": landscape.instance_profile},
        "SecurityGroupIds": [group_id],
        "UserData": base64.b64encode(user_data(landscape).encode()).decode(),
        "MetadataOptions": METADATA_OPTIONS,
        "BlockDeviceMappings": [
            {
                "DeviceName": device,
                "Ebs": {
                    "Encrypted": True,
                    "VolumeType": "gp3",
                    "VolumeSize": ROOT_VOLUME_GIB,
                    "DeleteOnTermination": True,
                },
            }
        ],
        "TagSpecifications": [
            {"ResourceType": "instance", "Tags": instance_tags},
            {"ResourceType": "volume", "Tags": landscape.tags},
        ],
    }


def latest_template_version(ec2, name):
    """The template's $Latest version, or None if there is no such template."""
    try:
        versions = ec2.describe_launch_template_versions(
            LaunchTemplateName=name, Versions=["$Latest"]
        )["LaunchTemplateVersions"]
    except ClientError as exc:
        if error_code(exc) in (
            "InvalidLaunchTemplateName.NotFoundException",
            "InvalidLaunchTemplateId.NotFound",
        ):
            return None
        raise
    return versions[0] if versions else None


def _comparable(data, resource_types=("instance", "volume")):
    """Launch-template data with tag lists as sets (EC2 may hand them back in any order),
    for the resource types the template tags: the template's own tags are not its data."""
    data = dict(data)
    data["TagSpecifications"] = sorted(
        (spec["ResourceType"], tuple(sorted((t["Key"], t["Value"]) for t in spec["Tags"])))
        for spec in data.get("TagSpecifications") or []
        if spec["ResourceType"] in resource_types
    )
    return data


def ensure_launch_template(*, ec2, landscape, data, dry_run=False):
    name = landscape.launch_template
    what = f"launch template {name}"
    latest = latest_template_version(ec2, name)
    if latest is None:
        if not dry_run:
            ec2.create_launch_template(
                LaunchTemplateName=name,
                VersionDescription="setup_aws",
                LaunchTemplateData=data,
                TagSpecifications=[{"ResourceType": "launch-template", "Tags": landscape.tags}],
            )
        return Result("create", what, dry_run, f"{data['InstanceType']}, {data['ImageId']}")
    current = _comparable(project_onto(latest["LaunchTemplateData"], data))
    if current == _comparable(data):
        return Result("unchanged", what, detail=f"version {latest['VersionNumber']}")
    changed = sorted(k for k in data if current.get(k) != _comparable(data).get(k))
    if not dry_run:
        ec2.create_launch_template_version(
            LaunchTemplateName=name, VersionDescription="setup_aws", LaunchTemplateData=data
        )
    return Result(
        "update",
        what,
        dry_run,
        f"new version {latest['VersionNumber'] + 1}: {', '.join(changed)}",
    )


def find_group(autoscaling, landscape):
    groups = autoscaling.describe_auto_scaling_groups(
        AutoScalingGroupNames=[landscape.auto_scaling_group]
    )["AutoScalingGroups"]
    return groups[0] if groups else None


def group_settings(*, landscape, subnets, desired_capacity):
    """The group's settings; min is 0 while the group is parked at 0 instances."""
    env = landscape.env
    return {
        "LaunchTemplate": {"LaunchTemplateName": landscape.launch_template, "Version": "$Latest"},
        "MinSize": env.min_instances if desired_capacity else 0,
        "MaxSize": env.max_instances,
        "VPCZoneIdentifier": ",".join(sorted(subnets)),
        "HealthCheckType": "ELB",
        "HealthCheckGracePeriod": GRACE_PERIOD,
    }


def _current_settings(group):
    template = group.get("LaunchTemplate") or {}
    return {
        "LaunchTemplate": {
            "LaunchTemplateName": template.get("LaunchTemplateName"),
            "Version": template.get("Version"),
        },
        "MinSize": group["MinSize"],
        "MaxSize": group["MaxSize"],
        "VPCZoneIdentifier": ",".join(sorted(filter(None, group["VPCZoneIdentifier"].split(",")))),
        "HealthCheckType": group["HealthCheckType"],
        "HealthCheckGracePeriod": group["HealthCheckGracePeriod"],
    }


def ensure_group(*, autoscaling, landscape, subnets, target_group_arn, dry_run=False):
    name = landscape.auto_scaling_group
    what = f"Auto Scaling group {name}"
    group = find_group(autoscaling, landscape)
    if group is None:
        settings = group_settings(landscape=landscape, subnets=subnets, desired_capacity=0)
        if not dry_run:
            autoscaling.create_auto_scaling_group(
                AutoScalingGroupName=name,
                DesiredCapacity=0,
                TargetGroupARNs=[target_group_arn],
                Tags=[
                    {**tag, "PropagateAtLaunch": False, "ResourceId": name}
                    for tag in landscape.tags
                ],
                **settings,
            )
        yield Result(
            "create",
            what,
            dry_run,
            f"0 instances until launch_ec2 --count N; bounds "
            f"{landscape.env.min_instances}..{landscape.env.max_instances}",
        )
        return
    desired = group_settings(
        landscape=landscape, subnets=subnets, desired_capacity=group["DesiredCapacity"]
    )
    current = _current_settings(group)
    # New bounds that no longer hold the group's count move it (AWS would do so silently):
    # set and said here, with what it does to the instances.
    count = group["DesiredCapacity"]
    fitted = min(max(count, desired["MinSize"]), desired["MaxSize"])
    if fitted != count:
        current["DesiredCapacity"], desired["DesiredCapacity"] = count, fitted
    changed = sorted(k for k in desired if current[k] != desired[k])
    yield converge(
        what,
        current,
        desired,
        lambda: autoscaling.update_auto_scaling_group(AutoScalingGroupName=name, **desired),
        dry_run=dry_run,
        detail=", ".join(f"{k} {current[k]} -> {desired[k]}" for k in changed),
    )
    if fitted != count:
        yield _count_moved(landscape, count, fitted, dry_run)
    attached = group.get("TargetGroupARNs", [])
    yield converge(
        f"{what} target group",
        attached if target_group_arn in attached else None,
        attached,
        lambda: autoscaling.attach_load_balancer_target_groups(
            AutoScalingGroupName=name, TargetGroupARNs=[target_group_arn]
        ),
        dry_run=dry_run,
    )


def _count_moved(landscape, count, fitted, dry_run):
    """The warning when project.env's new bounds change how many instances the group runs."""
    env = landscape.env
    prefix = env.name.upper()
    if fitted < count:
        effect = ("would terminate" if dry_run else "terminates") + f" {count - fitted}"
        bound = f"{prefix}_MAX_INSTANCES={env.max_instances}"
    else:
        effect = ("would launch" if dry_run else "launches") + f" {fitted - count}"
        bound = f"{prefix}_MIN_INSTANCES={env.min_instances}"
    return Result(
        "attention",
        f"Auto Scaling group {landscape.auto_scaling_group}: {count} instance(s) do not fit",
        detail=f"{bound} in project.env, so the group {effect} instance(s) to run {fitted}; "
        f"to keep {count}, set {prefix}_MIN_INSTANCES/{prefix}_MAX_INSTANCES around it and "
        f"rerun setup_aws --env {env.name}",
    )


# --- launch_ec2 --count N on a load-balanced environment --------------------------------------


def check_count(landscape, count):
    env = landscape.env
    if not env.min_instances <= count <= env.max_instances:
        prefix = env.name.upper()
        raise OpsError(
            f"--count {count} is outside {env.name}'s bounds "
            f"{env.min_instances}..{env.max_instances}: "
            f"choose a count within them, or change {prefix}_MIN_INSTANCES/{prefix}_MAX_INSTANCES "
            f"in project.env and rerun setup_aws --env {env.name}"
        )


def _require_group(autoscaling, landscape):
    group = find_group(autoscaling, landscape)
    if group is None:
        raise OpsError(
            f"no Auto Scaling group {landscape.auto_scaling_group}: "
            f"run ./manage.py setup_aws --env {landscape.env.name} first"
        )
    return group


def default_count(*, autoscaling, landscape):
    """launch_ec2 without --count: the group's count, within project.env's bounds
    (<ENV>_MIN_INSTANCES for a parked group), so a rerun never shrinks a grown fleet."""
    env = landscape.env
    count = _require_group(autoscaling, landscape)["DesiredCapacity"]
    return min(max(count, env.min_instances), env.max_instances)


def set_capacity(*, autoscaling, landscape, count, dry_run=False):
    """Bring the group to its bounds and count instances; the group launches them."""
    group = _require_group(autoscaling, landscape)
    env = landscape.env
    current = (group["MinSize"], group["MaxSize"], group["DesiredCapacity"])
    desired = (env.min_instances, env.max_instances, count)
    return converge(
        f"Auto Scaling group {landscape.auto_scaling_group} capacity",
        current,
        desired,
        lambda: autoscaling.update_auto_scaling_group(
            AutoScalingGroupName=landscape.auto_scaling_group,
            MinSize=env.min_instances,
            MaxSize=env.max_instances,
            DesiredCapacity=count,
        ),
        dry_run=dry_run,
        detail=f"{count} instance(s), was {current[2]}",
    )


def target_health(elbv2, target_group_arn):
    """{instance id: state} of the targets registered in the target group."""
    descriptions = elbv2.describe_target_health(TargetGroupArn=target_group_arn)
    return {
        d["Target"]["Id"]: d["TargetHealth"]["State"]
        for d in descriptions["TargetHealthDescriptions"]
    }


def wait_healthy(*, elbv2, target_group_arn, count, delay=15, attempts=60):
    """Wait until count targets are healthy; {id: state} then, OpsError after the attempts.

    No waiter fits: elbv2's target_in_service needs the targets' ids, which the group picks.
    """
    health = {}
    for attempt in range(attempts):
        health = target_health(elbv2, target_group_arn)
        if sum(state == "healthy" for state in health.values()) >= count:
            return health
        if attempt + 1 < attempts:
            time.sleep(delay)
    states = ", ".join(f"{i} {s}" for i, s in sorted(health.items())) or "no targets registered"
    raise OpsError(
        f"{count} healthy target(s) wanted after {delay * attempts}s, found: {states}; "
        "see ./manage.py ec2_status and the instances' /containers/<project>/logs"
    )
