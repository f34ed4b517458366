"""The web servers' instance role: trust, inline policies from deploy/aws/iam/, instance profile.

A policy on the role that setup_aws did not put there (inline or attached) is drift: reported,
and removed with --prune. The role holds exactly the permissions this code grants.
"""

import json

from www.ops.errors import value_or_none
from www.ops.results import Result, converge, converge_exists
from www.ops.templates import json_template


def secrets_key_arn(kms, landscape):
    """The ARN of the key the secrets are encrypted with (SSM's AWS-managed key).

    DescribeKey on an AWS alias such as alias/aws/ssm creates the AWS-managed key if the
    account has none yet, so the role can name that one key before any secret exists.
    """
    return kms.describe_key(KeyId=landscape.secrets_key_alias)["KeyMetadata"]["Arn"]


def role_policies(*, landscape, registry, region, account, key_arn):
    """Inline policies of the webserver role, by name, from deploy/aws/iam/."""
    policies = {
        "s3-config-and-files": json_template(
            "iam/webserver-s3.json",
            bucket=landscape.bucket,
            config_key=landscape.env.config_key,
            deploy_prefix=landscape.env.deploy_prefix,
        ),
        "ssm-read-secrets": json_template(
            "iam/webserver-secrets.json",
            region=region,
            account=account,
            secrets_path=landscape.secrets_path,
            key_arn=key_arn,
        ),
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
    if landscape.env.load_balanced:
        # boot stage 2's roll: its own target group, and the lease (conditional writes only)
        policies["elb-roll-own-target-group"] = json_template(
            "iam/webserver-roll.json",
            region=region,
            account=account,
            target_group=landscape.target_group,
            bucket=landscape.bucket,
            lease_pattern=landscape.env.lease_pattern,
        )
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


def ensure_managed_policies(*, iam, landscape, names=(SSM_MANAGED_POLICY,), dry_run=False):
    """Attach AWS managed policies to the webserver role (created just before, by ensure_role)."""
    role = landscape.role
    role_exists = value_or_none(lambda: iam.get_role(RoleName=role), ("NoSuchEntity",), bool)
    attached = set(_attached_policy_arns(iam, role)) if role_exists else set()
    for name in names:
        arn = managed_policy_arn(name)
        yield converge_exists(
            f"IAM role {role} managed policy {name}",
            arn in attached,
            lambda arn=arn: iam.attach_role_policy(RoleName=role, PolicyArn=arn),
            dry_run=dry_run,
        )


def _attached_policy_arns(iam, role):
    arns = []
    for page in iam.get_paginator("list_attached_role_policies").paginate(RoleName=role):
        arns.extend(p["PolicyArn"] for p in page["AttachedPolicies"])
    return arns


def _managed_document(iam, arn):
    policy = iam.get_policy(PolicyArn=arn)["Policy"]
    version = iam.get_policy_version(PolicyArn=arn, VersionId=policy["DefaultVersionId"])
    return version["PolicyVersion"]["Document"]


def _as_list(value):
    return value if isinstance(value, list) else [value]


def allows_everything(document):
    """Whether a policy document allows every action on every resource."""
    if isinstance(document, str):
        document = json.loads(document)
    return any(
        statement.get("Effect") == "Allow"
        and "*" in _as_list(statement.get("Action", []))
        and "*" in _as_list(statement.get("Resource", []))
        for statement in _as_list(document.get("Statement", []))
    )


def role_drift(*, iam, landscape, inline, attached=(), prune=False, dry_run=False):
    """Results for the role's policies other than inline (names) and attached (ARNs): drift,
    or with prune their removal."""
    role = landscape.role
    if value_or_none(lambda: iam.get_role(RoleName=role), ("NoSuchEntity",), bool) is None:
        return
    extras = []
    for page in iam.get_paginator("list_role_policies").paginate(RoleName=role):
        for name in page["PolicyNames"]:
            if name not in inline:
                document = iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
                extras.append(
                    (
                        f"IAM role {role} inline policy {name}",
                        document,
                        lambda name=name: iam.delete_role_policy(RoleName=role, PolicyName=name),
                    )
                )
    for arn in _attached_policy_arns(iam, role):
        if arn not in attached:
            extras.append(
                (
                    f"IAM role {role} attached policy {arn}",
                    _managed_document(iam, arn),
                    lambda arn=arn: iam.detach_role_policy(RoleName=role, PolicyArn=arn),
                )
            )
    for what, document, remove in extras:
        everything = allows_everything(document) and "allows every action on every resource; "
        if not prune:
            yield Result(
                "drift", what, detail=f"{everything or ''}not set by setup_aws; --prune removes it"
            )
            continue
        if not dry_run:
            remove()
        yield Result("delete", what, dry_run)
