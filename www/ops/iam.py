"""The web servers' instance role: trust, inline policies from deploy/aws/iam/, instance profile."""

import json

from www.ops.errors import value_or_none
from www.ops.results import converge, converge_exists
from www.ops.templates import json_template


def role_policies(*, landscape, registry, region, account):
    """Inline policies of the webserver role, by name, from deploy/aws/iam/."""
    policies = {
        "s3-config-and-files": json_template("iam/webserver-s3.json", bucket=landscape.bucket),
        "s3-report-releases": json_template(
            "iam/webserver-releases.json",
            bucket=landscape.bucket,
            status_prefix=landscape.env.status_prefix,
            failed_prefix=landscape.env.failed_releases_prefix,
            release_key=landscape.env.release_key,
        ),
        # the awslogs driver and the boot log: new streams and lines in the environment's group
        "logs-write-own-group": json_template(
            "iam/webserver-logs.json", region=region, account=account, log_group=landscape.log_group
        ),
    }
    if registry == "ecr":
        policies["ecr-pull-release"] = json_template(
            "iam/webserver-ecr.json",
            region=region,
            account=account,
            repository=landscape.release_repository,
        )
    return policies


def _role_policy(iam, role, name):
    return value_or_none(
        lambda: iam.get_role_policy(RoleName=role, PolicyName=name),
        ("NoSuchEntity",),
        lambda r: r["PolicyDocument"],
    )


def _instance_profile(iam, name):
    return value_or_none(
        lambda: iam.get_instance_profile(InstanceProfileName=name),
        ("NoSuchEntity",),
        lambda r: r["InstanceProfile"],
    )


def ensure_role(*, iam, landscape, policies, dry_run=False):
    """The webserver role (EC2 may assume it), its inline policies and its instance profile."""
    role = landscape.role
    trust = json_template("iam/webserver-trust.json")
    current = value_or_none(
        lambda: iam.get_role(RoleName=role), ("NoSuchEntity",), lambda r: r["Role"]
    )

    def apply_trust():
        if current is None:
            iam.create_role(
                RoleName=role,
                AssumeRolePolicyDocument=json.dumps(trust),
                Description=f"{landscape.prefix} web servers",
                Tags=landscape.tags,
            )
        else:
            iam.update_assume_role_policy(RoleName=role, PolicyDocument=json.dumps(trust))

    yield converge(
        f"IAM role {role}",
        current and current["AssumeRolePolicyDocument"],
        trust,
        apply_trust,
        dry_run=dry_run,
        detail="" if current is None else "trust policy",
    )
    for name, document in policies.items():
        yield converge(
            f"IAM role {role} policy {name}",
            _role_policy(iam, role, name) if current else None,
            document,
            lambda name=name, document=document: iam.put_role_policy(
                RoleName=role, PolicyName=name, PolicyDocument=json.dumps(document)
            ),
            dry_run=dry_run,
        )

    profile_name = landscape.instance_profile
    profile = _instance_profile(iam, profile_name)
    roles = [r["RoleName"] for r in profile["Roles"]] if profile else []

    def apply_profile():
        if profile is None:
            iam.create_instance_profile(InstanceProfileName=profile_name, Tags=landscape.tags)
        if role not in roles:
            iam.add_role_to_instance_profile(InstanceProfileName=profile_name, RoleName=role)

    yield converge(
        f"instance profile {profile_name}",
        roles if profile else None,
        [role],
        apply_profile,
        dry_run=dry_run,
        detail=f"role {role}",
    )


def instance_profile_exists(iam, landscape):
    return _instance_profile(iam, landscape.instance_profile) is not None


# AWS's managed policy that lets the Systems Manager agent on an instance register and take
# Run Command and Session Manager requests: `./manage.py remote` and `session` need it, and it
# replaces SSH (no key pair, no port 22).
SSM_MANAGED_POLICY = "AmazonSSMManagedInstanceCore"


def managed_policy_arn(name, partition="aws"):
    return f"arn:{partition}:iam::aws:policy/{name}"


def _attached_policies(iam, role):
    arns = set()
    for page in iam.get_paginator("list_attached_role_policies").paginate(RoleName=role):
        arns.update(p["PolicyArn"] for p in page["AttachedPolicies"])
    return arns


def ensure_managed_policies(*, iam, landscape, names=(SSM_MANAGED_POLICY,), dry_run=False):
    """Attach AWS managed policies to the webserver role (created just before, by ensure_role)."""
    role = landscape.role
    role_exists = value_or_none(lambda: iam.get_role(RoleName=role), ("NoSuchEntity",), bool)
    attached = _attached_policies(iam, role) if role_exists else set()
    for name in names:
        arn = managed_policy_arn(name)
        yield converge_exists(
            f"IAM role {role} managed policy {name}",
            arn in attached,
            lambda arn=arn: iam.attach_role_policy(RoleName=role, PolicyArn=arn),
            dry_run=dry_run,
        )
