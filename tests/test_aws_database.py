"""The optional database's protections (setup_aws --with-rds) and db_snapshot, against moto."""

import dataclasses
import datetime
import io

import boto3
import pytest
from django.core.management import CommandError, call_command

from www import project
from www.ops import rds
from www.ops.landscape import Landscape

PROJECT = project.load()


@pytest.fixture(autouse=True)
def without_fleets(monkeypatch):
    """Every environment on single instances: the database's setup is the same with a fleet,
    and a fleet's setup (AMI, certificate, load balancer) is tests/test_aws_fleet.py's."""
    environments = {
        name: dataclasses.replace(env, load_balanced=False)
        for name, env in PROJECT.environments.items()
    }
    single = dataclasses.replace(PROJECT, environments=environments)
    monkeypatch.setattr(project, "load", lambda *args: single)


def setup_aws(env, *args):
    out = io.StringIO()
    call_command("setup_aws", "--env", env, "--with-rds", *args, stdout=out)
    return out.getvalue()


def database(landscape):
    client = boto3.client("rds")
    return client.describe_db_instances(DBInstanceIdentifier=landscape.database)["DBInstances"][0]


def db_snapshot(*args):
    out = io.StringIO()
    call_command("db_snapshot", *args, stdout=out)
    return out.getvalue()


@pytest.mark.parametrize(
    ("env", "backup_days", "multi_az", "deletion_protection"),
    [("stage", 7, False, False), ("prod", 30, True, True)],
)
def test_database_protections_read_back(aws, env, backup_days, multi_az, deletion_protection):
    land = Landscape.of(PROJECT, env)
    out = setup_aws(env)
    db = database(land)
    assert db["StorageEncrypted"] and not db["PubliclyAccessible"]
    assert db["BackupRetentionPeriod"] == backup_days
    assert db["MultiAZ"] is multi_az
    assert db["DeletionProtection"] is deletion_protection
    assert db["PreferredMaintenanceWindow"] == rds.MAINTENANCE_WINDOW
    assert db["PreferredBackupWindow"] == rds.BACKUP_WINDOW
    assert db["AutoMinorVersionUpgrade"] and db["CopyTagsToSnapshot"]
    assert f"{backup_days} days of backups, encrypted" in out
    assert ("deletion protection" in out) is deletion_protection


def test_a_protection_changed_by_hand_is_put_back(aws):
    land = Landscape.of(PROJECT, "prod")
    setup_aws("prod")
    boto3.client("rds").modify_db_instance(
        DBInstanceIdentifier=land.database,
        BackupRetentionPeriod=1,
        DeletionProtection=False,
        ApplyImmediately=True,
    )
    out = setup_aws("prod")
    assert (
        f"Updated RDS database {land.database} (differed from project.env, set: "
        "BackupRetentionPeriod, DeletionProtection)" in out
    )
    db = database(land)
    assert db["BackupRetentionPeriod"] == 30 and db["DeletionProtection"]
    assert f"RDS database {land.database} exists, unchanged" in setup_aws("prod")


def test_db_snapshot_takes_one_and_lists_them(aws):
    land = Landscape.of(PROJECT, "stage")
    setup_aws("stage")
    first = db_snapshot("--env", "stage")
    (taken,) = [line for line in first.splitlines() if line.startswith("Created database snapshot")]
    name = taken.split()[3]
    assert name.startswith(f"{land.database}-")
    client = boto3.client("rds")
    listed = client.describe_db_snapshots(DBInstanceIdentifier=land.database, SnapshotType="manual")
    assert [s["DBSnapshotIdentifier"] for s in listed["DBSnapshots"]] == [name]
    automated = client.describe_db_snapshots(
        DBInstanceIdentifier=land.database, SnapshotType="automated"
    )["DBSnapshots"]
    assert any(line.startswith(f"{name}  manual  ") for line in first.splitlines())

    listing = db_snapshot("--env", "stage", "--list-only")
    assert "Created" not in listing
    assert sorted(line.split()[0] for line in listing.splitlines()) == sorted(
        [name, *(s["DBSnapshotIdentifier"] for s in automated)]
    )


def test_db_snapshot_dry_run_takes_none(aws):
    setup_aws("stage")
    out = db_snapshot("--env", "stage", "--dry-run")
    assert "Would create database snapshot webapp-stage-" in out
    assert boto3.client("rds").describe_db_snapshots(SnapshotType="manual")["DBSnapshots"] == []


def test_db_snapshot_without_a_database_says_what_to_run(aws):
    with pytest.raises(CommandError, match=r"^no RDS database webapp-stage: create it with "):
        db_snapshot("--env", "stage")


def test_removing_the_database_always_leaves_a_final_snapshot(aws):
    stage, prod = Landscape.of(PROJECT, "stage"), Landscape.of(PROJECT, "prod")
    setup_aws("stage")
    client = boto3.client("rds")
    now = datetime.datetime(2026, 11, 29, 15, 0, tzinfo=datetime.UTC)
    result = rds.delete_database(rds=client, landscape=stage, now=now)
    final = f"{stage.database}-final-20261129-150000"
    assert str(result) == f"Deleted RDS database {stage.database} (final snapshot {final})"
    snapshots = client.describe_db_snapshots()["DBSnapshots"]
    assert final in [s["DBSnapshotIdentifier"] for s in snapshots]

    setup_aws("prod")
    with pytest.raises(rds.OpsError, match="has deletion protection"):
        rds.delete_database(rds=client, landscape=prod, now=now)
    assert database(prod)["DBInstanceStatus"] != "deleting"
