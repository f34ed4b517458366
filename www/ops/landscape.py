"""An environment's landscape: its bucket, security groups, instance role and (optionally) database.

Names carry the project as well as the environment (webapp-stage-web-sg, webapp-stage-webserver):
security-group names are unique per VPC and IAM names per account, so two projects forked from
this skeleton can share one account without taking each other's groups or roles.

The bucket's public access. The templates let the public read static/ and media/ (Django
serves them straight from S3) and nothing else. Block Public Access's BlockPublicPolicy and
RestrictPublicBuckets would refuse or neutralise exactly that policy, so they stay off, while
BlockPublicAcls and IgnorePublicAcls stay on and object ownership is BucketOwnerEnforced: no
ACL can ever make an object public, and the only public path is the reviewed bucket policy in
deploy/aws/bucket-policy.json. config/ and deploy/ are readable only by the instance role
(deploy/aws/iam/webserver-s3.json), and only over TLS: its statements require
aws:SecureTransport. The usual bucket-wide "Deny unless aws:SecureTransport" statement is left
out on purpose: moto (5.2.5) treats a Deny whose condition does not match as a denial, so every
object request against the emulator would fail. boto3, the AWS CLI and django-storages all use
HTTPS endpoints by default.

The instance role may list the bucket: without s3:ListBucket, S3 answers 403 instead of 404
for a missing key, and django-storages treats that as an error during collectstatic. Listing
shows key names, never their contents.
"""

import dataclasses
import ipaddress
import json
import secrets

from botocore.exceptions import ClientError

from www.ops import OpsError, Result, converge, environment, error_code, json_template

PUBLIC_ACCESS_BLOCK = {
    "BlockPublicAcls": True,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": False,  # the bucket policy opens static/ and media/ on purpose
    "RestrictPublicBuckets": False,
}
ENCRYPTION_RULE = {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
OPEN_TO_ALL = ("0.0.0.0/0", "::/0")
WEB_PORTS = (80, 443)
DATABASE_PORT = 5432


@dataclasses.dataclass(frozen=True)
class Landscape:
    """The names of one environment's AWS resources: the one place they are spelled."""

    project: str
    env: object  # www.project.Environment

    @classmethod
    def of(cls, project, env_name):
        return cls(project.name, environment(project, env_name))

    @property
    def prefix(self):
        return f"{self.project}-{self.env.name}"

    @property
    def bucket(self):
        return self.env.bucket

    @property
    def web_group(self):
        return f"{self.prefix}-web-sg"

    @property
    def backend_group(self):
        return f"{self.prefix}-backend-sg"

    @property
    def load_balancer_group(self):
        return f"{self.prefix}-lb-sg"

    @property
    def load_balancer(self):
        return self.prefix  # ALB and target group names: 32 characters at most

    @property
    def target_group(self):
        return f"{self.prefix}-web"

    @property
    def launch_template(self):
        return f"{self.prefix}-webserver"

    @property
    def auto_scaling_group(self):
        return f"{self.prefix}-web"

    @property
    def role(self):
        return f"{self.prefix}-webserver"

    @property
    def instance_profile(self):
        return self.role

    @property
    def database(self):
        return self.prefix

    @property
    def database_password_parameter(self):
        return f"/{self.project}/{self.env.name}/database-password"

    @property
    def release_repository(self):
        return f"{self.project}-release"

    @property
    def tags(self):
        return [{"Key": "Project", "Value": self.project}, {"Key": "Env", "Value": self.env.name}]


# --- the bucket -------------------------------------------------------------------------------


def bucket_exists(s3, bucket):
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as exc:
        if error_code(exc) in ("404", "NoSuchBucket"):
            return False
        if error_code(exc) in ("403", "AccessDenied"):
            raise OpsError(
                f"bucket {bucket!r} exists but this account cannot use it: S3 bucket names "
                "are global, choose another <ENV>_BUCKET in project.env"
            ) from None
        raise
    return True


def _get_or_none(call, missing_codes, pick):
    try:
        return pick(call())
    except ClientError as exc:
        if error_code(exc) in missing_codes:
            return None
        raise


def ensure_bucket(*, s3, landscape, region, dry_run=False):
    """The bucket, private and encrypted and versioned, with the policy and CORS templates."""
    bucket, env = landscape.bucket, landscape.env
    exists = bucket_exists(s3, bucket)

    def create():
        kwargs = {"Bucket": bucket, "ObjectOwnership": "BucketOwnerEnforced"}
        if region != "us-east-1":  # us-east-1 rejects an explicit LocationConstraint
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        s3.create_bucket(**kwargs)

    yield converge(f"bucket {bucket}", True if exists else None, True, create, dry_run=dry_run)
    if dry_run and not exists:
        for item in (
            "public access block",
            "object ownership",
            "encryption",
            "versioning",
            "policy",
            "CORS",
        ):
            yield Result("create", f"bucket {bucket} {item}", dry_run=True)
        return

    yield converge(
        f"bucket {bucket} public access block",
        _get_or_none(
            lambda: s3.get_public_access_block(Bucket=bucket),
            ("NoSuchPublicAccessBlockConfiguration",),
            lambda r: r["PublicAccessBlockConfiguration"],
        ),
        PUBLIC_ACCESS_BLOCK,
        lambda: s3.put_public_access_block(
            Bucket=bucket, PublicAccessBlockConfiguration=PUBLIC_ACCESS_BLOCK
        ),
        dry_run=dry_run,
    )
    yield converge(
        f"bucket {bucket} object ownership",
        _get_or_none(
            lambda: s3.get_bucket_ownership_controls(Bucket=bucket),
            ("OwnershipControlsNotFoundError",),
            lambda r: r["OwnershipControls"]["Rules"][0]["ObjectOwnership"],
        ),
        "BucketOwnerEnforced",
        lambda: s3.put_bucket_ownership_controls(
            Bucket=bucket,
            OwnershipControls={"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
        ),
        dry_run=dry_run,
    )
    yield converge(
        f"bucket {bucket} encryption",
        _get_or_none(
            lambda: s3.get_bucket_encryption(Bucket=bucket),
            ("ServerSideEncryptionConfigurationNotFoundError",),
            lambda r: r["ServerSideEncryptionConfiguration"]["Rules"][0][
                "ApplyServerSideEncryptionByDefault"
            ],
        ),
        ENCRYPTION_RULE["ApplyServerSideEncryptionByDefault"],
        lambda: s3.put_bucket_encryption(
            Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [ENCRYPTION_RULE]}
        ),
        dry_run=dry_run,
        detail="SSE-S3 AES256",
    )
    versioning = s3.get_bucket_versioning(Bucket=bucket).get("Status")
    yield converge(
        f"bucket {bucket} versioning",
        versioning and (versioning == "Enabled"),
        True,
        lambda: s3.put_bucket_versioning(
            Bucket=bucket, VersioningConfiguration={"Status": "Enabled"}
        ),
        dry_run=dry_run,
    )
    policy = json_template("bucket-policy.json", bucket=bucket)
    yield converge(
        f"bucket {bucket} policy",
        _get_or_none(
            lambda: s3.get_bucket_policy(Bucket=bucket),
            ("NoSuchBucketPolicy",),
            lambda r: json.loads(r["Policy"]),
        ),
        policy,
        lambda: s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy)),
        dry_run=dry_run,
        detail=f"public read on {env.static_prefix}/ and {env.media_prefix}/ only",
    )
    cors = json_template("cors.json")
    yield converge(
        f"bucket {bucket} CORS",
        _get_or_none(
            lambda: s3.get_bucket_cors(Bucket=bucket),
            ("NoSuchCORSConfiguration",),
            lambda r: {"CORSRules": [_without_id(rule) for rule in r["CORSRules"]]},
        ),
        cors,
        lambda: s3.put_bucket_cors(Bucket=bucket, CORSConfiguration=cors),
        dry_run=dry_run,
    )


def _without_id(rule):
    return {k: v for k, v in rule.items() if k != "ID"}


# --- security groups --------------------------------------------------------------------------


def default_vpc(ec2):
    vpcs = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"]
    if not vpcs:
        raise OpsError("this region has no default VPC: create one (aws ec2 create-default-vpc)")
    return vpcs[0]["VpcId"]


def find_group(ec2, name, vpc_id):
    groups = ec2.describe_security_groups(
        Filters=[
            {"Name": "group-name", "Values": [name]},
            {"Name": "vpc-id", "Values": [vpc_id]},
        ]
    )["SecurityGroups"]
    return groups[0] if groups else None


def _rules_of(group):
    """Ingress rules as comparable (protocol, from, to, source) tuples."""
    rules = set()
    for perm in group.get("IpPermissions", []) if group else []:
        key = (perm.get("IpProtocol"), perm.get("FromPort"), perm.get("ToPort"))
        rules.update((*key, r["CidrIp"]) for r in perm.get("IpRanges", []))
        rules.update((*key, r["CidrIpv6"]) for r in perm.get("Ipv6Ranges", []))
        rules.update((*key, r["GroupId"]) for r in perm.get("UserIdGroupPairs", []))
    return rules


def _permission(rule):
    protocol, from_port, to_port, source = rule
    perm = {"IpProtocol": protocol, "FromPort": from_port, "ToPort": to_port}
    if source.startswith("sg-"):
        perm["UserIdGroupPairs"] = [{"GroupId": source}]
    elif ":" in source:
        perm["Ipv6Ranges"] = [{"CidrIpv6": source}]
    else:
        perm["IpRanges"] = [{"CidrIp": source}]
    return perm


def _ensure_group(ec2, *, name, description, vpc_id, rules_for, landscape, dry_run):
    """One group and its ingress rules; rules added by hand are left alone."""
    group = find_group(ec2, name, vpc_id)
    created_id = None
    if group is None and not dry_run:
        created_id = ec2.create_security_group(
            GroupName=name,
            Description=description,
            VpcId=vpc_id,
            TagSpecifications=[{"ResourceType": "security-group", "Tags": landscape.tags}],
        )["GroupId"]
    group_id = group["GroupId"] if group else created_id
    wanted = rules_for(group_id)
    missing = wanted - _rules_of(group)
    if missing and not dry_run:
        ec2.authorize_security_group_ingress(
            GroupId=group_id, IpPermissions=[_permission(r) for r in sorted(missing)]
        )
    described = ", ".join(f"{r[1]} from {r[3]}" for r in sorted(wanted))
    if group is None:
        return Result("create", f"security group {name}", dry_run, described), group_id
    if missing:
        added = ", ".join(f"{r[1]} from {r[3]}" for r in sorted(missing))
        return Result("update", f"security group {name}", dry_run, f"add {added}"), group_id
    return Result("unchanged", f"security group {name}"), group_id


def _close_to_world(ec2, name, group_id, *, dry_run):
    """Remove rules opening the web ports to the world (a load-balanced env's web group)."""
    group = ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"][0]
    open_rules = sorted(
        r
        for r in _rules_of(group)
        if r[1] in WEB_PORTS and r[2] in WEB_PORTS and r[3] in OPEN_TO_ALL
    )
    if not open_rules:
        return None
    if not dry_run:
        ec2.revoke_security_group_ingress(
            GroupId=group_id, IpPermissions=[_permission(r) for r in open_rules]
        )
    removed = ", ".join(f"{r[1]} from {r[3]}" for r in open_rules)
    return Result(
        "update", f"security group {name}", dry_run, f"remove {removed}: behind the load balancer"
    )


def check_ssh_cidr(ssh_cidr):
    """A CIDR SSH may come from: a real network, and never the whole internet."""
    try:
        network = ipaddress.ip_network(ssh_cidr)
    except ValueError:
        raise OpsError(f"--ssh-cidr {ssh_cidr}: not a CIDR such as 203.0.113.7/32") from None
    if network.prefixlen == 0:
        raise OpsError(f"--ssh-cidr {ssh_cidr} opens SSH to the world: give your own address/32")
    return str(network)


def ensure_security_groups(*, ec2, landscape, ssh_cidr=None, dry_run=False):
    """<prefix>-web-sg open on 80/443 (and SSH from ssh_cidr only); backend from web only.

    A load-balanced environment gets <prefix>-lb-sg open on 80/443 instead, and its web group
    admits port 80 from that group only: rules opening 80 or 443 to the world are removed.
    """
    ssh_cidr = ssh_cidr and check_ssh_cidr(ssh_cidr)
    vpc_id = default_vpc(ec2)
    load_balancer_id = None
    if landscape.env.load_balanced:
        result, load_balancer_id = _ensure_group(
            ec2,
            name=landscape.load_balancer_group,
            description=f"{landscape.prefix} load balancer: HTTP and HTTPS from anywhere",
            vpc_id=vpc_id,
            rules_for=lambda _id: {
                ("tcp", port, port, cidr) for port in WEB_PORTS for cidr in OPEN_TO_ALL
            },
            landscape=landscape,
            dry_run=dry_run,
        )
        yield result

    def web_rules(_group_id):
        if landscape.env.load_balanced:
            source = load_balancer_id or landscape.load_balancer_group  # dry run: by name
            rules = {("tcp", 80, 80, source)}
        else:
            rules = {("tcp", port, port, cidr) for port in WEB_PORTS for cidr in OPEN_TO_ALL}
        if ssh_cidr:
            rules.add(("tcp", 22, 22, ssh_cidr))
        return rules

    result, web_id = _ensure_group(
        ec2,
        name=landscape.web_group,
        description=f"{landscape.prefix} web servers: HTTP and HTTPS",
        vpc_id=vpc_id,
        rules_for=web_rules,
        landscape=landscape,
        dry_run=dry_run,
    )
    yield result
    closed = (
        web_id
        and landscape.env.load_balanced
        and _close_to_world(ec2, landscape.web_group, web_id, dry_run=dry_run)
    )
    if closed:
        yield closed

    def backend_rules(_group_id):
        if not web_id:  # dry run, web group not created yet
            return {("tcp", DATABASE_PORT, DATABASE_PORT, landscape.web_group)}
        return {("tcp", DATABASE_PORT, DATABASE_PORT, web_id)}

    result, _ = _ensure_group(
        ec2,
        name=landscape.backend_group,
        description=f"{landscape.prefix} backends: reachable from the web servers only",
        vpc_id=vpc_id,
        rules_for=backend_rules,
        landscape=landscape,
        dry_run=dry_run,
    )
    yield result


# --- the instance role ------------------------------------------------------------------------


def role_policies(*, landscape, registry, region, account):
    """Inline policies of the webserver role, by name, from deploy/aws/iam/."""
    policies = {
        "s3-config-and-files": json_template("iam/webserver-s3.json", bucket=landscape.bucket)
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
    return _get_or_none(
        lambda: iam.get_role_policy(RoleName=role, PolicyName=name),
        ("NoSuchEntity",),
        lambda r: r["PolicyDocument"],
    )


def ensure_role(*, iam, landscape, policies, dry_run=False):
    """The webserver role (EC2 may assume it), its inline policies and its instance profile."""
    role = landscape.role
    trust = json_template("iam/webserver-trust.json")
    current = _get_or_none(
        lambda: iam.get_role(RoleName=role), ("NoSuchEntity",), lambda r: r["Role"]
    )
    if current is None:
        if not dry_run:
            iam.create_role(
                RoleName=role,
                AssumeRolePolicyDocument=json.dumps(trust),
                Description=f"{landscape.prefix} web servers",
                Tags=landscape.tags,
            )
        yield Result("create", f"IAM role {role}", dry_run)
    else:
        yield converge(
            f"IAM role {role}",
            current["AssumeRolePolicyDocument"],
            trust,
            lambda: iam.update_assume_role_policy(RoleName=role, PolicyDocument=json.dumps(trust)),
            dry_run=dry_run,
            detail="trust policy",
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
    profile = _get_or_none(
        lambda: iam.get_instance_profile(InstanceProfileName=profile_name),
        ("NoSuchEntity",),
        lambda r: r["InstanceProfile"],
    )
    if profile is None and not dry_run:
        iam.create_instance_profile(InstanceProfileName=profile_name, Tags=landscape.tags)
    roles = [r["RoleName"] for r in profile["Roles"]] if profile else []
    if role not in roles and not dry_run:
        iam.add_role_to_instance_profile(InstanceProfileName=profile_name, RoleName=role)
    yield converge(
        f"instance profile {profile_name}",
        roles if profile else None,
        [role],
        lambda: None,
        dry_run=dry_run,
        detail=f"role {role}",
    )


def instance_profile_exists(iam, landscape):
    return (
        _get_or_none(
            lambda: iam.get_instance_profile(InstanceProfileName=landscape.instance_profile),
            ("NoSuchEntity",),
            lambda r: r["InstanceProfile"],
        )
        is not None
    )


# --- the database (optional) ------------------------------------------------------------------


def ensure_database(*, rds, ssm, ec2, landscape, dry_run=False):
    """A small Postgres RDS instance in the backend group; its password only in SSM.

    The generated password goes to an SSM SecureString parameter and nowhere else: it is
    never printed, logged, or written to a file.
    """
    identifier = landscape.database
    existing = _get_or_none(
        lambda: rds.describe_db_instances(DBInstanceIdentifier=identifier),
        ("DBInstanceNotFound", "DBInstanceNotFoundFault"),
        lambda r: r["DBInstances"][0],
    )
    if existing is not None:
        yield Result("unchanged", f"RDS database {identifier}")
        return
    parameter = landscape.database_password_parameter
    if dry_run:
        yield Result("create", f"RDS database {identifier}", True, f"password in SSM {parameter}")
        return
    group = find_group(ec2, landscape.backend_group, default_vpc(ec2))
    if group is None:
        raise OpsError(f"security group {landscape.backend_group} missing: run setup_aws again")
    password = secrets.token_urlsafe(30)
    ssm.put_parameter(
        Name=parameter,
        Value=password,
        Type="SecureString",
        Overwrite=True,
        Description=f"master password of RDS database {identifier}",
    )
    rds.create_db_instance(
        DBInstanceIdentifier=identifier,
        Engine="postgres",
        DBInstanceClass="db.t4g.micro",
        AllocatedStorage=20,
        DBName=landscape.project.replace("-", "_"),
        MasterUsername="app",
        MasterUserPassword=password,
        VpcSecurityGroupIds=[group["GroupId"]],
        StorageEncrypted=True,
        PubliclyAccessible=False,
        BackupRetentionPeriod=7,
        Tags=landscape.tags,
    )
    yield Result("create", f"RDS database {identifier}", detail=f"password in SSM {parameter}")
