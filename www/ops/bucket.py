"""An environment's bucket: private, encrypted, versioned, with the policy and CORS templates.

Nobody can make it public: all four Block Public Access settings are on, object ownership is
BucketOwnerEnforced (no ACL counts), and the bucket policy (deploy/aws/bucket-policy.json)
grants one reader, the environment's CloudFront distribution, on static/ and media/ only
(www/ops/cdn.py), and denies every request that does not come over TLS. The instance role
(deploy/aws/iam/webserver-s3.json) reads its config and deploy/<env>/ keys and writes the static
and media prefixes, also over TLS only.

Old versions of config/ objects (which may once have held secrets) expire after
CONFIG_VERSION_DAYS days.

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
    "BlockPublicPolicy": True,
    "RestrictPublicBuckets": True,
}
# How long a replaced config/ object's old version is kept (to roll back by hand) before S3
# deletes it: old configs may hold secrets written before secret() references.
CONFIG_VERSION_DAYS = 30
LIFECYCLE = {
    "Rules": [
        {
            "ID": "expire-old-config-versions",
            "Filter": {"Prefix": "config/"},
            "Status": "Enabled",
            "NoncurrentVersionExpiration": {"NoncurrentDays": CONFIG_VERSION_DAYS},
        }
    ]
}
ENCRYPTION_RULE = {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
# What a dry run lists after "Would create bucket ...": the settings ensure_bucket converges.
BUCKET_SETTINGS = (
    "public access block",
    "object ownership",
    "encryption",
    "versioning",
    "lifecycle",
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
    """The bucket: private, encrypted, versioned, old config versions expiring, CORS from
    deploy/aws/cors.json (its policy: ensure_bucket_policy, once the distribution exists)."""
    bucket = landscape.bucket
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
    yield converge(
        f"bucket {bucket} lifecycle",
        value_or_none(
            lambda: s3.get_bucket_lifecycle_configuration(Bucket=bucket),
            ("NoSuchLifecycleConfiguration",),
            lambda r: {"Rules": r["Rules"]},
        ),
        LIFECYCLE,
        lambda: s3.put_bucket_lifecycle_configuration(
            Bucket=bucket, LifecycleConfiguration=LIFECYCLE
        ),
        dry_run=dry_run,
        detail=f"old config/ versions expire after {CONFIG_VERSION_DAYS} days",
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


def ensure_bucket_policy(*, s3, landscape, distribution_arn, dry_run=False):
    """The policy: CloudFront's distribution reads static/ and media/; nothing without TLS."""
    bucket, env = landscape.bucket, landscape.env
    policy = json_template(
        "bucket-policy.json",
        bucket=bucket,
        distribution_arn=distribution_arn or f"<distribution {landscape.static_distribution}>",
    )
    current = (
        None
        if dry_run and not bucket_exists(s3, bucket)
        else value_or_none(
            lambda: s3.get_bucket_policy(Bucket=bucket),
            ("NoSuchBucketPolicy",),
            lambda r: json.loads(r["Policy"]),
        )
    )
    yield converge(
        f"bucket {bucket} policy",
        current,
        policy,
        lambda: s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy)),
        dry_run=dry_run,
        detail=f"CloudFront reads {env.static_prefix}/ and {env.media_prefix}/; TLS only",
    )


def delete_bucket(*, s3, landscape, dry_run=False):
    """Remove the environment's bucket with every version of every object in it (config/,
    deploy/, releases, static/ and media/): S3 deletes only an empty bucket, and a versioned
    bucket keeps old versions and delete markers until each is deleted by its version id."""
    bucket = landscape.bucket
    what = f"bucket {bucket}"
    if not bucket_exists(s3, bucket):
        yield Result("skip", what, detail="absent: nothing to remove")
        return
    count, prefixes = 0, set()
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        batch = [
            {"Key": item["Key"], "VersionId": item["VersionId"]}
            for item in page.get("Versions", []) + page.get("DeleteMarkers", [])
        ]
        if batch and not dry_run:  # a page holds at most 1000: one DeleteObjects call
            answer = s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
            if answer.get("Errors"):
                failed = answer["Errors"][0]
                raise OpsError(
                    f"bucket {bucket}: {len(answer['Errors'])} object version(s) not deleted "
                    f"(first: {failed['Key']}: {failed.get('Code', 'error')}): rerun teardown"
                )
        count += len(batch)
        prefixes.update(item["Key"].split("/", 1)[0] + "/" for item in batch if "/" in item["Key"])
    if not dry_run:
        s3.delete_bucket(Bucket=bucket)
    under = f" under {', '.join(sorted(prefixes))}" if prefixes else ""
    yield Result("delete", what, dry_run, f"and its {count} object version(s){under}")
