"""The web servers' instance role: trust, inline policies from deploy/aws/iam/, instance profile."""

import json

from www.ops.errors import value_or_none
from www.ops.results import converge
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
