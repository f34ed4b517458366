"""An environment's bucket: private, encrypted, versioned, with the policy and CORS templates.

The bucket's public access. The templates let the public read static/ and media/ (Django
serves them straight from S3) and nothing else. Block Public Access's BlockPublicPolicy and
RestrictPublicBuckets would refuse or neutralise exactly that policy, so they stay off, while
BlockPublicAcls and IgnorePublicAcls stay on and object ownership is BucketOwnerEnforced: no
ACL can ever make an object public, and the only public path is the reviewed bucket policy in
deploy/aws/bucket-policy.json. config/ and deploy/ are readable only by the instance role
(deploy/aws/iam/webserver-s3.json), and only over TLS: its statements require
aws:SecureTransport. boto3, the AWS CLI and django-storages all use HTTPS endpoints by default.

The instance role may list the bucket: without s3:ListBucket, S3 answers 403 instead of 404
for a missing key, and django-storages treats that as an error during collectstatic. Listing
shows key names, never their contents.
"""

import json

from botocore.exceptions import ClientError

from www.ops.errors import OpsError, error_code, value_or_none
from www.ops.results import Result, converge, converge_exists
from www.ops.templates import json_template

PUBLIC_ACCESS_BLOCK = {
    "BlockPublicAcls": True,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": False,  # the bucket policy opens static/ and media/ on purpose
    "RestrictPublicBuckets": False,
}
ENCRYPTION_RULE = {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
# What a dry run lists after "Would create bucket ...": the settings ensure_bucket converges.
BUCKET_SETTINGS = (
    "public access block",
    "object ownership",
    "encryption",
    "versioning",
    "policy",
    "CORS",
)


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


def ensure_bucket(*, s3, landscape, region, dry_run=False):
    """The bucket, private and encrypted and versioned, with the policy and CORS templates."""
    bucket, env = landscape.bucket, landscape.env
    exists = bucket_exists(s3, bucket)

    def create():
        kwargs = {"Bucket": bucket, "ObjectOwnership": "BucketOwnerEnforced"}
        if region != "us-east-1":  # us-east-1 rejects an explicit LocationConstraint
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        s3.create_bucket(**kwargs)

    yield converge_exists(f"bucket {bucket}", exists, create, dry_run=dry_run)
    if dry_run and not exists:
        for item in BUCKET_SETTINGS:
            yield Result("create", f"bucket {bucket} {item}", dry_run=True)
        return

    yield converge(
        f"bucket {bucket} public access block",
        value_or_none(
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
        value_or_none(
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
        value_or_none(
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
        value_or_none(
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
        value_or_none(
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
