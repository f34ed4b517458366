"""Release history, rollback, failed marks and instance reports, read back from moto's S3.

The records are written by www.ops.releases.record, the step publish_image ends with (its
registry push is tested in test_aws_publish_image.py); stage 2's side of the same objects (the
failed mark, the record pointed back, the status object) runs in test_boot_scripts.py.
"""

import io
import json

import boto3
import pytest
from django.core.management import CommandError, call_command

from tests.helpers import STAGE
from www.ops import releases
from www.ops.errors import OpsError

ENV = STAGE.env
REPOSITORY = "127.0.0.1:5000/webapp-release"
DIGESTS = {tag: "sha256:" + str(n) * 64 for n, tag in enumerate(("1.0", "2.0", "3.0"), 1)}


def image(tag):
    return f"{REPOSITORY}@{DIGESTS[tag]}"


@pytest.fixture
def bucket(aws):
    call_command("setup_aws", "--env", "stage", stdout=io.StringIO())
    return boto3.client("s3")


def record(s3, tag, revision="abc123"):
    return list(
        releases.record(
            s3=s3,
            sts=boto3.client("sts"),
            env=ENV,
            image=image(tag),
            tag=tag,
            revision=revision,
        )
    )


def run(command, *args):
    out = io.StringIO()
    call_command(command, "--env", "stage", *args, stdout=out)
    return out.getvalue()


def current(s3):
    values, _ = releases.read_record(s3, ENV)
    return values


def mark_failed(s3, tag, reason, instance="i-0123456789abcdef0"):
    body = {"tag": tag, "image": image(tag), "instance": instance, "reason": reason}
    s3.put_object(
        Bucket=ENV.bucket,
        Key=ENV.failed_release_key(DIGESTS[tag]),
        Body=json.dumps(body).encode(),
        IfNoneMatch="*",
    )


def test_publishing_twice_keeps_a_history_newest_first(bucket):
    record(bucket, "1.0", revision="rev-one")
    results = record(bucket, "2.0", revision="rev-two")
    assert [r.verb for r in results] == ["update", "update"]
    out = run("releases")
    lines = out.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("* 2.0") and "rev-two" in lines[0]
    assert lines[1].startswith("  1.0") and "rev-one" in lines[1]
    entries, _ = releases.read_history(bucket, ENV)
    assert entries[0]["by"].startswith("arn:aws:") and entries[0]["at"].endswith("Z")
    assert current(bucket)["PREVIOUS_IMAGE"] == image("1.0")


def test_republishing_the_same_release_changes_nothing(bucket):
    record(bucket, "1.0")
    again = record(bucket, "1.0")
    assert [r.verb for r in again] == ["unchanged"]
    entries, _ = releases.read_history(bucket, ENV)
    assert len(entries) == 1


def test_a_stale_history_write_is_refused_not_lost(bucket):
    """If-Match: an append based on an old read of the history does not overwrite a newer one."""
    record(bucket, "1.0")
    _, stale_etag = releases.read_history(bucket, ENV)
    record(bucket, "2.0")
    assert not releases.put_if(
        bucket, ENV, ENV.release_history_key, b'{"releases": []}', etag=stale_etag
    )
    entries, _ = releases.read_history(bucket, ENV)
    assert [e["tag"] for e in entries] == ["1.0", "2.0"]


def test_rollback_points_the_record_at_the_previous_release(bucket):
    record(bucket, "1.0")
    record(bucket, "2.0")
    assert "Would update" in run("rollback", "--dry-run")
    assert current(bucket)["IMAGE"] == image("2.0")
    out = run("rollback")
    assert "2.0 -> 1.0" in out
    assert current(bucket)["IMAGE"] == image("1.0")
    assert "unchanged" in run("rollback")
    assert current(bucket)["IMAGE"] == image("1.0")
    assert run("releases").splitlines()[1].startswith("* 1.0")


def test_rollback_to_a_named_release_and_its_rerun(bucket):
    for tag in ("1.0", "2.0", "3.0"):
        record(bucket, tag)
    assert "3.0 -> 1.0" in run("rollback", "--to", "1.0")
    assert "unchanged" in run("rollback", "--to", "1.0")
    assert current(bucket)["IMAGE"] == image("1.0")
    with pytest.raises(CommandError, match=r"no release '9\.9' in the history"):
        run("rollback", "--to", "9.9")


def test_rollback_skips_a_failed_release_and_refuses_to_name_one(bucket):
    for tag in ("1.0", "2.0", "3.0"):
        record(bucket, tag)
    mark_failed(bucket, "2.0", "/health did not answer within 300s")
    assert "3.0 -> 1.0" in run("rollback")
    with pytest.raises(CommandError, match=r"release 2\.0 is marked failed \(/health did not"):
        run("rollback", "--to", "2.0")


def test_releases_marks_a_failed_release_with_its_reason(bucket):
    record(bucket, "1.0")
    record(bucket, "2.0")
    mark_failed(bucket, "2.0", "it stopped (exited) before /health answered")
    newest = run("releases").splitlines()[0]
    assert "2.0" in newest
    assert "FAILED on i-0123456789abcdef0: it stopped (exited) before /health answered" in newest


def test_releases_without_history_says_what_to_run(bucket):
    assert "run ./manage.py publish_image" in run("releases")


def test_rollback_without_a_record_is_one_line(bucket):
    with pytest.raises(CommandError, match="nothing to roll back"):
        run("rollback")


def test_a_release_marked_failed_is_not_recorded_again(bucket):
    record(bucket, "1.0")
    record(bucket, "2.0")
    mark_failed(bucket, "2.0", "/health did not answer within 300s")
    releases.rollback(s3=bucket, env=ENV)
    with pytest.raises(OpsError, match=r"release 2\.0 failed on i-\w+: /health did not answer"):
        record(bucket, "2.0")
    assert current(bucket)["IMAGE"] == image("1.0")
