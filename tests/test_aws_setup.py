"""setup_aws against moto's server: what the emulator holds afterwards, reruns, dry runs."""

import fnmatch
import io
import json
import os
import re
import subprocess
import sys

import boto3
import pytest
from django.core.management import CommandError, call_command

from tests.helpers import filled_config
from tests.moto_rig import evaluate_bucket_policy
from www import project
from www.ops import cdn
from www.ops.bucket import CONFIG_VERSION_DAYS
from www.ops.landscape import Landscape

PROJECT = project.load()
STAGE = Landscape.of(PROJECT, "stage")


def setup_aws(*args):
    out = io.StringIO()
    call_command("setup_aws", "--env", "stage", *args, stdout=out)
    return out.getvalue()


def groups_by_name(ec2):
    return {g["GroupName"]: g for g in ec2.describe_security_groups()["SecurityGroups"]}


def test_bucket_is_private_encrypted_versioned_with_policy_and_cors(aws):
    setup_aws()
    s3 = boto3.client("s3")
    bucket = STAGE.bucket
    assert s3.get_bucket_location(Bucket=bucket)["LocationConstraint"] == "eu-west-1"
    block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert block == {
        "BlockPublicAcls": True,
        "IgnorePublicAcls": True,
        "BlockPublicPolicy": True,
        "RestrictPublicBuckets": True,
    }
    rule = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    ownership = s3.get_bucket_ownership_controls(Bucket=bucket)["OwnershipControls"]
    assert ownership["Rules"][0]["ObjectOwnership"] == "BucketOwnerEnforced"
    (lifecycle,) = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert lifecycle["Filter"] == {"Prefix": "config/"} and lifecycle["Status"] == "Enabled"
    assert lifecycle["NoncurrentVersionExpiration"]["NoncurrentDays"] == CONFIG_VERSION_DAYS

    distribution = cdn.find_distribution(boto3.client("cloudfront"), STAGE)
    policy = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
    statements = {s["Sid"]: s for s in policy["Statement"]}
    assert set(statements) == {"CloudFrontReadsStaticAndMediaOnly", "TlsOnly"}
    reads = statements["CloudFrontReadsStaticAndMediaOnly"]
    assert reads["Effect"] == "Allow" and reads["Action"] == "s3:GetObject"
    assert reads["Principal"] == {"Service": "cloudfront.amazonaws.com"}
    assert reads["Condition"] == {"StringEquals": {"AWS:SourceArn": distribution["ARN"]}}
    assert set(reads["Resource"]) == {
        f"arn:aws:s3:::{bucket}/static/*",
        f"arn:aws:s3:::{bucket}/media/*",
    }
    tls = statements["TlsOnly"]
    assert tls["Effect"] == "Deny" and tls["Principal"] == "*" and tls["Action"] == "s3:*"
    assert tls["Resource"] == [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]
    assert tls["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert not any(s["Principal"] == "*" and s["Effect"] == "Allow" for s in policy["Statement"])

    cors = s3.get_bucket_cors(Bucket=bucket)["CORSRules"]
    assert cors[0]["AllowedMethods"] == ["GET", "HEAD"]


def test_static_and_media_go_through_cloudfront_with_origin_access_control(aws):
    out = setup_aws()
    cloudfront = boto3.client("cloudfront")
    control = cdn.find_access_control(cloudfront, STAGE.static_distribution)
    assert control["SigningProtocol"] == "sigv4" and control["SigningBehavior"] == "always"
    assert control["OriginAccessControlOriginType"] == "s3"
    summary = cdn.find_distribution(cloudfront, STAGE)
    assert summary["DomainName"] in out
    config = cloudfront.get_distribution_config(Id=summary["Id"])["DistributionConfig"]
    assert config["Enabled"] is True
    (origin,) = config["Origins"]["Items"]
    assert origin["DomainName"] == f"{STAGE.bucket}.s3.eu-west-1.amazonaws.com"
    assert origin["OriginAccessControlId"] == control["Id"]
    behavior = config["DefaultCacheBehavior"]
    assert behavior["ViewerProtocolPolicy"] == "redirect-to-https"
    assert behavior["Compress"] is True
    assert behavior["CachePolicyId"] == cdn.CACHING_OPTIMIZED
    assert behavior["AllowedMethods"]["Items"] == ["GET", "HEAD"]

    # Someone switches HTTP back on: the rerun puts HTTPS-only back.
    answer = cloudfront.get_distribution_config(Id=summary["Id"])
    answer["DistributionConfig"]["DefaultCacheBehavior"]["ViewerProtocolPolicy"] = "allow-all"
    cloudfront.update_distribution(
        Id=summary["Id"], IfMatch=answer["ETag"], DistributionConfig=answer["DistributionConfig"]
    )
    assert f"Updated CloudFront distribution {STAGE.static_distribution}" in setup_aws()
    config = cloudfront.get_distribution_config(Id=summary["Id"])["DistributionConfig"]
    assert config["DefaultCacheBehavior"]["ViewerProtocolPolicy"] == "redirect-to-https"


def test_the_tls_only_deny_refuses_plain_http_and_nothing_else(aws):
    """The policy setup_aws stored, evaluated the way AWS does (tests/moto_rig.py: moto itself
    evaluates conditions without a request context): over plain HTTP every request is denied,
    over TLS only the CloudFront distribution may read, and only static/ and media/."""
    setup_aws()
    policy = boto3.client("s3").get_bucket_policy(Bucket=STAGE.bucket)["Policy"]
    distribution = cdn.find_distribution(boto3.client("cloudfront"), STAGE)["ARN"]
    arn = f"arn:aws:s3:::{STAGE.bucket}"

    def verdict(action, key, **context):
        return evaluate_bucket_policy(policy, action, f"{arn}/{key}", context).name

    assert verdict("s3:GetObject", "static/x.css", **{"aws:SecureTransport": "false"}) == "DENIED"
    assert verdict("s3:PutObject", "config/stage.py", **{"aws:SecureTransport": "false"}) == (
        "DENIED"
    )
    tls = {"aws:SecureTransport": "true"}
    assert verdict("s3:GetObject", "static/x.css", **tls, **{"aws:SourceArn": distribution}) == (
        "PERMITTED"
    )
    assert verdict("s3:GetObject", "config/stage.py", **tls, **{"aws:SourceArn": distribution}) == (
        "NEUTRAL"
    )
    other = "arn:aws:cloudfront::123456789012:distribution/EOTHER"
    assert verdict("s3:GetObject", "static/x.css", **tls, **{"aws:SourceArn": other}) == "NEUTRAL"
    assert verdict("s3:GetObject", "static/x.css", **tls) == "NEUTRAL"


def test_security_groups_open_web_and_only_web_to_backend(aws):
    setup_aws()
    groups = groups_by_name(boto3.client("ec2"))
    web, backend = groups[STAGE.web_group], groups[STAGE.backend_group]
    web_rules = {(p["FromPort"], r["CidrIp"]) for p in web["IpPermissions"] for r in p["IpRanges"]}
    assert web_rules == {(80, "0.0.0.0/0"), (443, "0.0.0.0/0")}
    assert not any(p["FromPort"] == 22 for p in web["IpPermissions"])
    (backend_rule,) = backend["IpPermissions"]
    assert backend_rule["FromPort"] == 5432
    assert backend_rule["IpRanges"] == []
    assert [g["GroupId"] for g in backend_rule["UserIdGroupPairs"]] == [web["GroupId"]]
    assert {"Key": "Env", "Value": "stage"} in web["Tags"]


def test_ssh_only_from_the_given_cidr_and_never_from_everywhere(aws):
    setup_aws("--ssh-cidr", "203.0.113.7/32")
    web = groups_by_name(boto3.client("ec2"))[STAGE.web_group]
    ssh = [p for p in web["IpPermissions"] if p["FromPort"] == 22]
    assert [r["CidrIp"] for r in ssh[0]["IpRanges"]] == ["203.0.113.7/32"]

    with pytest.raises(CommandError, match="opens SSH to the world"):
        call_command("setup_aws", "--env", "prod", "--ssh-cidr", "0.0.0.0/0", stdout=io.StringIO())
    assert PROJECT.environment("prod").bucket not in [
        b["Name"] for b in boto3.client("s3").list_buckets()["Buckets"]
    ]


def test_role_policies_and_instance_profile_are_least_privilege(aws):
    setup_aws()
    iam = boto3.client("iam")
    role = iam.get_role(RoleName=STAGE.role)["Role"]
    trust = role["AssumeRolePolicyDocument"]["Statement"][0]
    assert trust["Principal"] == {"Service": "ec2.amazonaws.com"}
    names = iam.list_role_policies(RoleName=STAGE.role)["PolicyNames"]
    assert sorted(names) == [
        "ecr-pull-release",
        "logs-write-own-group",
        "s3-config-and-files",
        "s3-report-releases",
        "ssm-read-secrets",
    ]

    s3_policy = iam.get_role_policy(RoleName=STAGE.role, PolicyName="s3-config-and-files")
    statements = {s["Sid"]: s for s in s3_policy["PolicyDocument"]["Statement"]}
    bucket = STAGE.bucket
    assert statements["ReadConfigAndBootstrap"]["Action"] == "s3:GetObject"
    assert statements["ReadConfigAndBootstrap"]["Resource"] == [
        f"arn:aws:s3:::{bucket}/config/stage.py",
        f"arn:aws:s3:::{bucket}/deploy/stage/*",
    ]
    writes = statements["WriteStaticAndMedia"]
    assert "s3:PutObject" in writes["Action"]
    assert writes["Resource"] == [
        f"arn:aws:s3:::{bucket}/static/*",
        f"arn:aws:s3:::{bucket}/media/*",
    ]
    for statement in statements.values():
        assert "*" not in json.dumps(statement["Action"])
        assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "true"}}

    ecr_policy = iam.get_role_policy(RoleName=STAGE.role, PolicyName="ecr-pull-release")
    pull = ecr_policy["PolicyDocument"]["Statement"][1]
    assert (
        pull["Resource"] == f"arn:aws:ecr:eu-west-1:123456789012:repository/{PROJECT.name}-release"
    )
    assert "ecr:PutImage" not in pull["Action"]

    profile = iam.get_instance_profile(InstanceProfileName=STAGE.instance_profile)
    assert [r["RoleName"] for r in profile["InstanceProfile"]["Roles"]] == [STAGE.role]

    # Systems Manager (./manage.py remote and session), AWS's own managed policy, nothing else
    attached = iam.list_attached_role_policies(RoleName=STAGE.role)["AttachedPolicies"]
    assert attached == [
        {
            "PolicyName": "AmazonSSMManagedInstanceCore",
            "PolicyArn": "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore",
        }
    ]


def test_second_run_changes_nothing_and_says_so(aws):
    first = setup_aws()
    assert "Created bucket" in first
    second = setup_aws()
    notes = (  # said on every run: what setup_aws leaves alone, and why
        "no ALERT_EMAILS in project.env: ",
        f"no load balancer {STAGE.load_balancer}: ALB alarms skipped",
    )
    lines = [line for line in second.strip().splitlines() if not line.startswith(notes)]
    assert lines and all(
        re.search(r"exists, unchanged( \(\S+\.cloudfront\.net\))?$", line) for line in lines
    ), second
    assert f"bucket {STAGE.bucket} exists, unchanged" in lines
    assert f"security group {STAGE.web_group} exists, unchanged" in lines
    assert f"IAM role {STAGE.role} exists, unchanged" in lines
    assert f"instance profile {STAGE.instance_profile} exists, unchanged" in lines
    assert (
        f"IAM role {STAGE.role} managed policy AmazonSSMManagedInstanceCore exists, unchanged"
        in lines
    )


def test_rerun_repairs_drift(aws):
    setup_aws()
    s3 = boto3.client("s3")
    s3.delete_bucket_policy(Bucket=STAGE.bucket)
    s3.put_bucket_versioning(Bucket=STAGE.bucket, VersioningConfiguration={"Status": "Suspended"})
    out = setup_aws()
    assert f"Created bucket {STAGE.bucket} policy" in out
    assert f"Updated bucket {STAGE.bucket} versioning" in out
    assert s3.get_bucket_versioning(Bucket=STAGE.bucket)["Status"] == "Enabled"


def test_dry_run_creates_nothing(aws):
    out = setup_aws("--dry-run")
    assert f"Would create bucket {STAGE.bucket}" in out
    assert f"Would create security group {STAGE.web_group}" in out
    assert f"Would create IAM role {STAGE.role}" in out
    assert f"Would create IAM role {STAGE.role} managed policy AmazonSSMManagedInstanceCore" in out
    assert boto3.client("s3").list_buckets()["Buckets"] == []
    assert STAGE.web_group not in groups_by_name(boto3.client("ec2"))
    assert boto3.client("iam").list_roles()["Roles"] == []


def test_unknown_env_is_one_clear_error(aws):
    with pytest.raises(CommandError, match="unknown environment 'qa': choose one of stage, prod"):
        call_command("setup_aws", "--env", "qa", stdout=io.StringIO())


def test_with_rds_keeps_the_password_in_ssm_only(aws):
    out = setup_aws("--with-rds")
    rds = boto3.client("rds")
    (db,) = rds.describe_db_instances(DBInstanceIdentifier=STAGE.database)["DBInstances"]
    assert db["Engine"] == "postgres" and db["StorageEncrypted"] and not db["PubliclyAccessible"]
    backend = groups_by_name(boto3.client("ec2"))[STAGE.backend_group]
    assert [g["VpcSecurityGroupId"] for g in db["VpcSecurityGroups"]] == [backend["GroupId"]]
    parameter = boto3.client("ssm").get_parameter(
        Name=STAGE.database_password_parameter, WithDecryption=True
    )["Parameter"]
    assert parameter["Type"] == "SecureString"
    assert len(parameter["Value"]) >= 32
    assert parameter["Value"] not in out
    assert f"RDS database {STAGE.database} exists, unchanged" in setup_aws("--with-rds")


# Stores one uploaded file through the settings' default (media) storage; prints its name.
SAVE_MEDIA = (
    "from django.core.files.base import ContentFile;"
    "from django.core.files.storage import default_storage;"
    "print(default_storage.save('probe.txt', ContentFile(b'x')))"
)


def test_where_the_settings_store_files_is_where_the_policies_open(aws, tmp_path):
    """collectstatic's keys and an upload's key fall under the CloudFront read of the bucket
    policy and the instance role's write, and nothing else in the bucket is readable by it."""
    setup_aws()
    config = filled_config(tmp_path)
    env = {**os.environ, "DJANGO_CONFIG_URI": str(config)}
    for args in (["collectstatic", "--no-input"], ["shell", "-c", SAVE_MEDIA]):
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=project.BASE_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr
    s3 = boto3.client("s3")
    bucket = STAGE.bucket
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    assert "media/probe.txt" in keys and "static/admin/css/base.css" in keys

    policy = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
    public = {
        r
        for s in policy["Statement"]
        if s["Effect"] == "Allow" and s["Principal"] == {"Service": "cloudfront.amazonaws.com"}
        for r in s["Resource"]
    }
    role = boto3.client("iam").get_role_policy(
        RoleName=STAGE.role, PolicyName="s3-config-and-files"
    )["PolicyDocument"]
    writable = {
        r for s in role["Statement"] if "s3:PutObject" in s["Action"] for r in s["Resource"]
    }
    assert public == writable
    for key in keys:
        arn = f"arn:aws:s3:::{bucket}/{key}"
        assert any(fnmatch.fnmatchcase(arn, pattern) for pattern in public), key
    for private in (STAGE.env.config_key, STAGE.env.stage2_key):
        arn = f"arn:aws:s3:::{bucket}/{private}"
        assert not any(fnmatch.fnmatchcase(arn, pattern) for pattern in public)


def add_ingress(ec2, group_id, port, cidr):
    ec2.authorize_security_group_ingress(
        GroupId=group_id,
        IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": port, "ToPort": port, "IpRanges": [{"CidrIp": cidr}]}
        ],
    )


ADMIN = json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
)


def test_drift_it_did_not_create_is_reported_then_pruned(aws):
    setup_aws()
    ec2, iam = boto3.client("ec2"), boto3.client("iam")
    groups = groups_by_name(ec2)
    web, backend = groups[STAGE.web_group]["GroupId"], groups[STAGE.backend_group]["GroupId"]
    add_ingress(ec2, web, 22, "0.0.0.0/1")
    add_ingress(ec2, web, 22, "0.0.0.0/0")
    add_ingress(ec2, backend, 5432, "0.0.0.0/0")
    iam.put_role_policy(RoleName=STAGE.role, PolicyName="debugging", PolicyDocument=ADMIN)
    arn = iam.create_policy(PolicyName="hand-made-admin", PolicyDocument=ADMIN)["Policy"]["Arn"]
    iam.attach_role_policy(RoleName=STAGE.role, PolicyArn=arn)

    out = setup_aws()
    drift = [line for line in out.splitlines() if line.startswith("Drift: ")]
    assert drift == [
        f"Drift: security group {STAGE.web_group} ingress 22 from 0.0.0.0/0, 22 from 0.0.0.0/1 "
        "(not set by setup_aws; --prune removes it)",
        f"Drift: security group {STAGE.backend_group} ingress 5432 from 0.0.0.0/0 "
        "(not set by setup_aws; --prune removes it)",
        f"Drift: IAM role {STAGE.role} inline policy debugging (allows every action on every "
        "resource; not set by setup_aws; --prune removes it)",
        f"Drift: IAM role {STAGE.role} attached policy {arn} (allows every action on every "
        "resource; not set by setup_aws; --prune removes it)",
    ]
    assert "Drift" not in setup_aws("--dry-run", "--prune").replace("Would delete", "")
    assert len([x for x in setup_aws().splitlines() if x.startswith("Drift")]) == 4

    out = setup_aws("--prune")
    assert f"Deleted IAM role {STAGE.role} inline policy debugging" in out
    assert f"Deleted security group {STAGE.web_group} ingress 22 from 0.0.0.0/0" in out
    groups = groups_by_name(ec2)
    assert not any(p["FromPort"] == 22 for p in groups[STAGE.web_group]["IpPermissions"])
    (backend_rule,) = groups[STAGE.backend_group]["IpPermissions"]
    assert backend_rule["IpRanges"] == []
    assert sorted(iam.list_role_policies(RoleName=STAGE.role)["PolicyNames"]) == [
        "ecr-pull-release",
        "logs-write-own-group",
        "s3-config-and-files",
        "s3-report-releases",
        "ssm-read-secrets",
    ]
    attached = iam.list_attached_role_policies(RoleName=STAGE.role)["AttachedPolicies"]
    assert [p["PolicyName"] for p in attached] == ["AmazonSSMManagedInstanceCore"]  # setup_aws's
    notes = ("no ALERT_EMAILS in project.env: ", f"no load balancer {STAGE.load_balancer}: ")
    lines = [line for line in setup_aws().strip().splitlines() if not line.startswith(notes)]
    assert all("exists, unchanged" in line for line in lines), lines


@pytest.mark.parametrize("cidr", ["10.0.0.0/8", "0.0.0.0/1", "2001:db8::/32"])
def test_ssh_cidr_wider_than_a_site_is_refused(aws, cidr):
    with pytest.raises(CommandError, match=f"--ssh-cidr {cidr} is wider than /"):
        setup_aws("--ssh-cidr", cidr)
    assert boto3.client("s3").list_buckets()["Buckets"] == []
