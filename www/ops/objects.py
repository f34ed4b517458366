"""Objects in an environment's bucket: read, check, and write one only when it changed.

Everything ops writes to config/ and deploy/ goes through put_private: server-side encrypted,
no ACL (the bucket's policy keeps those prefixes private).
"""

from botocore.exceptions import ClientError

from www.ops.errors import OpsError, error_code
from www.ops.results import converge


def _no_bucket(bucket, env_name):
    return OpsError(
        f"bucket {bucket} does not exist: run ./manage.py setup_aws --env {env_name} first"
    )


def read_object(s3, bucket, key, *, env_name):
    """The object's bytes, or None when there is none yet."""
    try:
        return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        if error_code(exc) == "NoSuchKey":
            return None
        if error_code(exc) == "NoSuchBucket":
            raise _no_bucket(bucket, env_name) from None
        raise


def object_exists(s3, bucket, key):
    """Whether the key exists (a HEAD request: the body is not downloaded)."""
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if error_code(exc) in ("404", "NoSuchKey", "NotFound"):
            return False
        raise
    return True


def put_private(s3, bucket, key, body, content_type):
    """Server-side encrypted, no ACL: the bucket policy keeps config/ and deploy/ private."""
    s3.put_object(
        Bucket=bucket,
        Key=key,
        Body=body,
        ContentType=content_type,
        ServerSideEncryption="AES256",
    )


def sync_object(s3, *, env, key, body, content_type, dry_run, describe_change=None):
    """Write body to the env's bucket at key unless it is already there; one Result.

    describe_change(current bytes) says what an update changes; it is not called for a
    creation or when nothing changes.
    """
    current = read_object(s3, env.bucket, key, env_name=env.name)
    detail = describe_change(current) if describe_change and current not in (None, body) else ""
    return converge(
        env.uri(key),
        current,
        body,
        lambda: put_private(s3, env.bucket, key, body, content_type),
        dry_run=dry_run,
        detail=detail,
    )
