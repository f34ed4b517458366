"""teardown's data options against moto's server: --with-rds removes the database through a
final snapshot, --with-bucket the bucket with every object version; without them both stay.

The fleet part of teardown (and that it keeps everything else) is tests/test_aws_fleet.py's.
"""

import dataclasses
import io

import boto3
import pytest
from django.core.management import CommandError, call_command

from tests.fleet_rig import (
    PROD,
    PROJECT,
    command,
    find_group,
    find_load_balancer,
    setup_aws,
)
from tests.helpers import MOTO_UBUNTU_AMI, RELEASE, filled_config, instances
from www import project
from www.ops import cdn, images, rds
from www.ops.landscape import Landscape

STAGE = Landscape.of(PROJECT, "stage")


@pytest.fixture
def unprotected(monkeypatch):
    """project.env with PROD_DB_DELETION_PROTECTION=no: the deliberate way to let it go."""
    environments = dict(PROJECT.environments)
    environments["prod"] = dataclasses.replace(environments["prod"], db_deletion_protection=False)
    changed = dataclasses.replace(PROJECT, environments=environments)
    monkeypatch.setattr(project, "load", lambda *args: changed)


def database():
    return rds.find_database(boto3.client("rds"), PROD)


def snapshot_names():
    found = boto3.client("rds").describe_db_snapshots()["DBSnapshots"]
    return {s["DBSnapshotIdentifier"] for s in found}


def bucket_exists(name):
    return any(b["Name"] == name for b in boto3.client("s3").list_buckets()["Buckets"])


def object_versions(bucket):
    answer = boto3.client("s3").list_object_versions(Bucket=bucket)
    return answer.get("Versions", []) + answer.get("DeleteMarkers", [])


def distribution_enabled(landscape):
    client = boto3.client("cloudfront")
    summary = cdn.find_distribution(client, landscape)
    return client.get_distribution_config(Id=summary["Id"])["DistributionConfig"]["Enabled"]


def test_a_protected_database_is_refused_before_anything_changes(prod_fleet):
    setup_aws("--with-rds")
    with pytest.raises(CommandError) as refused:
        command("teardown", "--no-input", "--with-rds", "--with-bucket")
    message = str(refused.value)
    assert "\n" not in message
    assert message == (
        f"RDS database {PROD.database} has deletion protection: set "
        "PROD_DB_DELETION_PROTECTION=no in project.env and run setup_aws --with-rds first, if "
        "it really must go"
    )
    assert find_load_balancer() is not None and database() is not None
    assert bucket_exists(PROD.bucket)

    # without being told, teardown leaves the database, the bucket and its config
    command("teardown", "--no-input")
    assert find_load_balancer() is None
    assert database()["DBInstanceStatus"] == "available"
    boto3.client("s3").head_object(Bucket=PROD.bucket, Key=PROD.env.config_key)
    assert distribution_enabled(PROD)


def test_with_rds_and_bucket_removes_them_after_a_final_snapshot(
    prod_fleet,
    unprotected,
    tmp_path,
):
    assert "deletion protection" not in setup_aws("--with-rds")
    assert not database()["DeletionProtection"]
    command("launch_ec2", "--count", "2")
    # a second config: the bucket now holds an old version too
    call_command(
        "push_config",
        "--env",
        "prod",
        str(filled_config(tmp_path, "prod", HOSTNAME="www.example.org")),
        stdout=io.StringIO(),
    )
    versions = len(object_versions(PROD.bucket))
    assert versions > len({v["Key"] for v in object_versions(PROD.bucket)})

    planned = command("teardown", "--dry-run", "--with-rds", "--with-bucket")
    assert f"Would delete RDS database {PROD.database} (final snapshot {PROD.database}-final-" in (
        planned
    )
    assert (
        f"Would update CloudFront distribution {PROD.static_distribution} (disabled: its "
        "bucket goes; setup_aws enables it again)" in planned
    )
    assert (
        f"Would delete bucket {PROD.bucket} (and its {versions} object version(s) under "
        "config/, deploy/" in planned
    )
    assert database() is not None and len(object_versions(PROD.bucket)) == versions
    assert find_group() is not None and distribution_enabled(PROD)

    before = snapshot_names()
    out = command("teardown", "--no-input", "--with-rds", "--with-bucket")
    assert "Deleted Auto Scaling group" in out and "Deleted load balancer" in out
    assert f"Deleted RDS database {PROD.database} (final snapshot " in out
    (final,) = snapshot_names() - before
    assert final.startswith(f"{PROD.database}-final-") and final in out
    assert database() is None
    assert f"Deleted bucket {PROD.bucket} (and its {versions} object version(s)" in out
    assert not bucket_exists(PROD.bucket)
    assert not distribution_enabled(PROD)
    # the database's password stays in SSM: a database restored from the snapshot keeps it
    boto3.client("ssm").get_parameter(Name=PROD.database_password_parameter)

    again = command("teardown", "--no-input", "--with-rds", "--with-bucket").splitlines()
    assert again == [
        f"No fleet of {PROD.prefix}: nothing to remove.",
        f"RDS database {PROD.database} absent: nothing to remove",
        f"CloudFront distribution {PROD.static_distribution} exists, unchanged (disabled)",
        f"bucket {PROD.bucket} absent: nothing to remove",
    ]
    assert snapshot_names() - before == {final}


def test_single_instances_keep_their_bucket_and_database(aws, tmp_path):
    call_command("setup_aws", "--env", "stage", stdout=io.StringIO())
    call_command(
        "push_config", "--env", "stage", str(filled_config(tmp_path)), stdout=io.StringIO()
    )
    images.record_release(s3=boto3.client("s3"), env=STAGE.env, image=RELEASE, tag="1.0")
    call_command("launch_ec2", "--env", "stage", "--ami", MOTO_UBUNTU_AMI, stdout=io.StringIO())
    (instance,) = instances()
    with pytest.raises(CommandError) as refused:
        call_command(
            "teardown", "--env", "stage", "--no-input", "--with-bucket", stdout=io.StringIO()
        )
    assert str(refused.value) == (
        f"1 instance(s) of stage still use its bucket and database ({instance['InstanceId']}): "
        "terminate them first with ./manage.py terminate_ec2 --env stage "
        f"{instance['InstanceId']}, then rerun teardown"
    )
    assert bucket_exists(STAGE.bucket)
