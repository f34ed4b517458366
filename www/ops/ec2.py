"""Web-server instances: prerequisites, the launch request, launch, status, termination.

Every instance carries the tags Name, Project, Env, Bootstrap (the S3 URI of its stage-2
script, read by stage 1 through instance-metadata tags), Release (the image recorded when it
was launched) and Launch (the launch's idempotency token). IMDSv2 is required; the hop limit
of 2 lets the app's container reach instance metadata for the role's credentials.
"""

import uuid

from botocore.exceptions import BotoCoreError, ClientError, WaiterError

from www.ops.bucket import bucket_exists
from www.ops.config_push import SAFE_FACT
from www.ops.errors import OpsError, error_code
from www.ops.iam import instance_profile_exists
from www.ops.images import read_release
from www.ops.network import default_vpc, find_group
from www.ops.objects import object_exists
from www.ops.results import Result
from www.ops.templates import TEMPLATE_DIR, boot_functions, render
from www.project import aws_region

# Canonical's public parameter for the current Ubuntu LTS server image. Ubuntu, not Debian,
# for the host (the images stay Debian): its AMIs ship the Systems Manager agent, which
# ./manage.py remote and session need and Debian's AMIs lack; and it is apt-based, as stage 1
# installs Docker and the AWS CLI with apt.
DEFAULT_AMI_PARAMETER = (
    "/aws/service/canonical/ubuntu/server/24.04/stable/current/amd64/hvm/ebs-gp3/ami-id"
)
# Families stage 1 can install on (apt), as AMI names and descriptions spell them.
APT_FAMILIES = ("ubuntu", "debian")
USER_DATA_FILE = TEMPLATE_DIR / "user-data.sh"
USER_DATA_LIMIT = 16 * 1024  # EC2's limit, before base64
# Every state an instance can be left in: a launch counts these toward --count, so a rerun
# never starts a second instance beside a stopped one; it tells the operator instead.
EXISTING_STATES = ["pending", "running", "stopping", "stopped"]
STOPPED_STATES = ("stopping", "stopped")
GONE_STATES = ("shutting-down", "terminated")
METADATA_OPTIONS = {
    "HttpTokens": "required",
    "HttpEndpoint": "enabled",
    "HttpPutResponseHopLimit": 2,
    "InstanceMetadataTags": "enabled",
}


def choose_ami(*, ssm, ami=None, parameter=DEFAULT_AMI_PARAMETER):
    """The AMI given (--ami), else the one the SSM parameter names (--ami-parameter)."""
    return ami or lookup_ami(ssm=ssm, parameter=parameter)


def lookup_ami(*, ssm, parameter):
    try:
        return ssm.get_parameter(Name=parameter)["Parameter"]["Value"]
    except ClientError as exc:
        if error_code(exc) == "ParameterNotFound":
            raise OpsError(
                f"no AMI parameter {parameter} in this region: "
                "pass --ami ami-... or --ami-parameter NAME"
            ) from None
        raise


def check_ami(*, ec2, ami):
    """The AMI's name if stage 1 can boot it (a Debian or Ubuntu image), else one line why not.

    The family is read from the image's name, description and platform details: stage 1
    installs with apt, so Amazon Linux, RHEL, SUSE or Windows would launch and never boot.
    """
    try:
        found = ec2.describe_images(ImageIds=[ami])["Images"]
    except ClientError as exc:
        if not error_code(exc).startswith("InvalidAMIID"):
            raise
        found = []
    if not found:
        raise OpsError(f"no AMI {ami} in this region: pass a Debian or Ubuntu AMI with --ami")
    image = found[0]
    name = image.get("Name") or image.get("Description") or ami
    described = " ".join(
        image.get(field) or "" for field in ("Name", "Description", "PlatformDetails", "Platform")
    ).lower()
    if image.get("Platform") == "windows" or not any(f in described for f in APT_FAMILIES):
        raise OpsError(
            f"AMI {ami} ({name}) is not Debian or Ubuntu: stage 1 installs Docker and the AWS "
            "CLI with apt; leave --ami/--ami-parameter out for Ubuntu LTS, or pass a Debian or "
            "Ubuntu AMI"
        )
    return name


def user_data(landscape):
    """Stage 1 with the one stage-2 URI it may run (it refuses any other Bootstrap tag) and the
    log group a failed boot's log goes to."""
    facts = {"stage2_uri": landscape.env.stage2_uri, "log_group": landscape.log_group}
    for value in facts.values():
        if not SAFE_FACT.match(value):
            raise OpsError(f"{value!r} has characters a boot script cannot carry safely")
    text = render(USER_DATA_FILE.read_text(), boot_functions=boot_functions(), **facts)
    if len(text.encode()) > USER_DATA_LIMIT:
        raise OpsError(f"{USER_DATA_FILE} is over EC2's 16 KB user-data limit")
    return text


def check_prerequisites(*, s3, ec2, iam, landscape):
    """What a launch needs, in the order the commands make it; returns (group id, release)."""
    env = landscape.env
    setup = f"run ./manage.py setup_aws --env {env.name} first"
    if not bucket_exists(s3, landscape.bucket):
        raise OpsError(f"no bucket {landscape.bucket}: {setup}")
    group = find_group(ec2, landscape.web_group, default_vpc(ec2))
    if group is None:
        raise OpsError(f"no security group {landscape.web_group}: {setup}")
    if not instance_profile_exists(iam, landscape):
        raise OpsError(f"no instance profile {landscape.instance_profile}: {setup}")
    for key in (env.config_key, env.stage2_key):
        if not object_exists(s3, env.bucket, key):
            raise OpsError(f"no {env.uri(key)}: run ./manage.py push_config --env {env.name} first")
    release = read_release(s3=s3, env=env)
    if not release or not release.get("IMAGE"):
        raise OpsError(
            f"no image published for {env.name}: "
            f"run ./manage.py publish_image --env {env.name} TAG first"
        )
    return group["GroupId"], release


def launch_request(*, landscape, ami, instance_type, count, group_id, release, client_token):
    """The run_instances arguments; printed whole by --dry-run."""
    env = landscape.env
    tags = [
        {"Key": "Name", "Value": landscape.web_instance},
        *landscape.tags,
        {"Key": "Bootstrap", "Value": env.stage2_uri},
        {"Key": "Release", "Value": release["IMAGE"]},
        {"Key": "Launch", "Value": client_token},
    ]
    return {
        "ImageId": ami,
        "InstanceType": instance_type,
        "MinCount": count,
        "MaxCount": count,
        "SecurityGroupIds": [group_id],
        "IamInstanceProfile": {"Name": landscape.instance_profile},
        "UserData": user_data(landscape),
        "MetadataOptions": METADATA_OPTIONS,
        "TagSpecifications": [
            {"ResourceType": "instance", "Tags": tags},
            {"ResourceType": "volume", "Tags": landscape.tags},
        ],
        "ClientToken": client_token,
    }


def new_client_token():
    return str(uuid.uuid4())


def environment_instances(*, ec2, landscape, states=EXISTING_STATES, extra_filters=()):
    filters = [
        {"Name": "tag:Project", "Values": [landscape.project.name]},
        {"Name": "tag:Env", "Values": [landscape.env.name]},
        {"Name": "instance-state-name", "Values": list(states)},
        *extra_filters,
    ]
    instances = []
    for page in ec2.get_paginator("describe_instances").paginate(Filters=filters):
        for reservation in page["Reservations"]:
            instances.extend(reservation["Instances"])
    return sorted(instances, key=lambda i: (i["LaunchTime"], i["InstanceId"]))


def _abandon_launch(ec2, landscape, client_token):
    """Terminate whatever this launch started; return how many."""
    started = environment_instances(
        ec2=ec2,
        landscape=landscape,
        extra_filters=[{"Name": "tag:Launch", "Values": [client_token]}],
    )
    ids = [i["InstanceId"] for i in started]
    if ids:
        ec2.terminate_instances(InstanceIds=ids)
    return len(ids)


def _failure(exc):
    if isinstance(exc, ClientError):
        return error_code(exc)
    return exc.__class__.__name__


def launch(*, ec2, landscape, request, wait=False, wait_delay=5, wait_attempts=60):
    """Run the request; on any failure terminate what it started, so nothing is left running.

    A timeout or dropped connection may come after EC2 started the instances, so those are
    cleaned up too: they are found by the launch's token (the Launch tag), not by the reply.
    """
    token = request["ClientToken"]
    try:
        reservation = ec2.run_instances(**request)
        ids = [i["InstanceId"] for i in reservation["Instances"]]
        if wait:
            ec2.get_waiter("instance_running").wait(
                InstanceIds=ids,
                WaiterConfig={"Delay": wait_delay, "MaxAttempts": wait_attempts},
            )
    except (ClientError, BotoCoreError, WaiterError, KeyboardInterrupt) as exc:
        # The code only: AWS's message text may echo the request's values (--traceback has it).
        reason = _failure(exc)
        try:
            terminated = _abandon_launch(ec2, landscape, token)
        except (ClientError, BotoCoreError) as cleanup_exc:
            cleanup = (
                f"the clean-up failed too ({_failure(cleanup_exc)}): instances may be running; "
                f"see ./manage.py ec2_status --env {landscape.env.name} and terminate those "
                f"with tag Launch={token}"
            )
        else:
            cleanup = (
                f"terminated {terminated} instance(s) it had started"
                if terminated
                else "no instance was left running"
            )
        raise OpsError(f"launch failed ({reason}); {cleanup}") from exc
    return describe(ec2, ids)


def describe(ec2, ids):
    instances = []
    for page in ec2.get_paginator("describe_instances").paginate(InstanceIds=ids):
        for reservation in page["Reservations"]:
            instances.extend(reservation["Instances"])
    return instances


def ensure_instances(*, ec2, landscape, request, dry_run=False, **launch_options):
    """Launch until the env has request["MaxCount"] instances; yield a Result each.

    Stopped instances count: a rerun says to start or terminate them rather than launching
    more beside them.
    """
    existing = environment_instances(ec2=ec2, landscape=landscape)
    wanted = request["MaxCount"]
    yield from existing_results(existing[:wanted], landscape)
    missing = wanted - len(existing)
    if missing <= 0:
        return
    request = {**request, "MinCount": missing, "MaxCount": missing}
    if dry_run:
        yield Result("create", f"{missing} instance(s) of {landscape.prefix}", True)
        return
    for instance in launch(ec2=ec2, landscape=landscape, request=request, **launch_options):
        yield Result("create", f"instance {instance['InstanceId']}", detail=summary(instance))


def existing_results(instances, landscape):
    """A Result for each instance already there: unchanged, or stopped and needing a hand."""
    for instance in instances:
        yield _existing(instance, landscape)


def _existing(instance, landscape):
    instance_id, state = instance["InstanceId"], instance["State"]["Name"]
    if state in STOPPED_STATES:
        return Result(
            "attention",
            f"instance {instance_id}",
            detail=(
                f"exists, {state}, serving nothing: start it "
                f"(aws ec2 start-instances --region {aws_region()} --instance-ids {instance_id}) "
                "or terminate it "
                f"(./manage.py terminate_ec2 --env {landscape.env.name} {instance_id})"
            ),
        )
    return Result("unchanged", f"instance {instance_id}", detail=summary(instance))


def tag(instance, key):
    return next((t["Value"] for t in instance.get("Tags", []) if t["Key"] == key), "")


def summary(instance):
    address = instance.get("PublicIpAddress") or instance.get("PublicDnsName") or "no address"
    return f"{instance['State']['Name']}, {address}"


def status_rows(instances):
    for i in instances:
        yield {
            "id": i["InstanceId"],
            "state": i["State"]["Name"],
            "address": i.get("PublicIpAddress") or i.get("PublicDnsName") or "-",
            "release": tag(i, "Release") or "-",
            "launched": i["LaunchTime"].strftime("%Y-%m-%d %H:%M:%SZ"),
        }


GROUP_TAG = "aws:autoscaling:groupName"  # EC2 Auto Scaling tags the instances it launches


def group_members(*, ec2, landscape, ids):
    """{instance id: Auto Scaling group} for those of ids a group launched."""
    found = environment_instances(
        ec2=ec2, landscape=landscape, extra_filters=[{"Name": "instance-id", "Values": ids}]
    )
    return {i["InstanceId"]: tag(i, GROUP_TAG) for i in found if tag(i, GROUP_TAG)}


def terminate(*, ec2, landscape, ids, dry_run=False):
    """Terminate ids, all of which must be instances of this env; else change nothing.

    Yields a Result per id: one already terminated (or shutting down) is "unchanged", so a
    rerun says so instead of failing.
    """
    found = {
        i["InstanceId"]: i["State"]["Name"]
        for i in environment_instances(
            ec2=ec2,
            landscape=landscape,
            states=[*EXISTING_STATES, *GONE_STATES],
            extra_filters=[{"Name": "instance-id", "Values": ids}],
        )
    }
    foreign = [i for i in ids if i not in found]
    if foreign:
        raise OpsError(
            f"not an instance of {landscape.project.name} {landscape.env.name}: "
            f"{', '.join(foreign)}; nothing terminated"
        )
    live = [i for i in ids if found[i] not in GONE_STATES]
    changes = {}
    if live and not dry_run:
        reply = ec2.terminate_instances(InstanceIds=live)["TerminatingInstances"]
        changes = {c["InstanceId"]: c["CurrentState"]["Name"] for c in reply}
    for instance_id in ids:
        if instance_id in live:
            state = changes.get(instance_id, found[instance_id])
            yield Result("terminate", f"instance {instance_id}", dry_run, detail=state)
        else:
            yield Result(
                "unchanged", f"instance {instance_id}", detail=f"already {found[instance_id]}"
            )
