"""The environment's optional database: a small Postgres RDS instance in the backend group,
with the protections a client's data needs.

Always: storage encryption, automated backups (<ENV>_DB_BACKUP_DAYS days: 7 for stage and 30
for prod in the shipped project.env) in BACKUP_WINDOW, automatic minor version upgrades in
MAINTENANCE_WINDOW, tags copied to snapshots, and a final snapshot whenever delete_database
removes it. Where project.env asks (prod does): a Multi-AZ standby and deletion protection.
A rerun puts back a setting changed by hand, except encryption, which RDS cannot turn on in
place: that is reported with what to do.
"""

import datetime
import secrets

from www.ops.errors import OpsError, value_or_none
from www.ops.network import default_vpc, find_group
from www.ops.results import Result, converge, converge_exists

# UTC; the backup window must not overlap the maintenance window.
BACKUP_WINDOW = "02:00-02:30"
MAINTENANCE_WINDOW = "sun:03:00-sun:04:00"
MISSING_DATABASE = ("DBInstanceNotFound", "DBInstanceNotFoundFault")


def protections(env):
    """The settings setup_aws keeps on env's database, as describe_db_instances names them."""
    return {
        "BackupRetentionPeriod": env.db_backup_days,
        "PreferredBackupWindow": BACKUP_WINDOW,
        "PreferredMaintenanceWindow": MAINTENANCE_WINDOW,
        "AutoMinorVersionUpgrade": True,
        "CopyTagsToSnapshot": True,
        "MultiAZ": env.db_multi_az,
        "DeletionProtection": env.db_deletion_protection,
    }


def find_database(rds, landscape):
    return value_or_none(
        lambda: rds.describe_db_instances(DBInstanceIdentifier=landscape.database),
        MISSING_DATABASE,
        lambda r: r["DBInstances"][0],
    )


def ensure_database(*, rds, ssm, ec2, landscape, dry_run=False):
    """A small Postgres RDS instance in the backend group; its password only in SSM.

    The generated password goes to an SSM SecureString parameter and nowhere else: it is
    never printed, logged, or written to a file.
    """
    identifier = landscape.database
    parameter = landscape.database_password_parameter
    desired = protections(landscape.env)
    existing = find_database(rds, landscape)

    def create():
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
            DBName=landscape.database_name,
            MasterUsername="app",
            MasterUserPassword=password,
            VpcSecurityGroupIds=[group["GroupId"]],
            StorageEncrypted=True,
            PubliclyAccessible=False,
            Tags=landscape.tags,
            **desired,
        )

    if existing is None:
        yield converge_exists(
            f"RDS database {identifier}",
            False,
            create,
            dry_run=dry_run,
            detail=f"password in SSM {parameter}; {describe(desired)}",
        )
        return
    current = {key: existing.get(key) for key in desired}
    changed = [key for key in desired if current[key] != desired[key]]
    yield converge(
        f"RDS database {identifier}",
        current,
        desired,
        lambda: rds.modify_db_instance(
            DBInstanceIdentifier=identifier,
            ApplyImmediately=True,
            **{key: desired[key] for key in changed},
        ),
        dry_run=dry_run,
        detail=f"differed from project.env, set: {', '.join(changed)}",
    )
    if not existing.get("StorageEncrypted"):
        yield Result(
            "attention",
            f"RDS database {identifier} is not encrypted:",
            detail="RDS cannot encrypt it in place; restore an encrypted copy of a snapshot "
            "(docs/README.md, 'The database')",
        )


def describe(settings):
    """The protections in a few words, for the create line."""
    words = [f"{settings['BackupRetentionPeriod']} days of backups", "encrypted"]
    if settings["MultiAZ"]:
        words.append("Multi-AZ")
    if settings["DeletionProtection"]:
        words.append("deletion protection")
    return ", ".join(words)


def _require_database(rds, landscape):
    database = find_database(rds, landscape)
    if database is None:
        raise OpsError(
            f"no RDS database {landscape.database}: create it with ./manage.py setup_aws "
            f"--env {landscape.env.name} --with-rds"
        )
    return database


def _stamp(now):
    return now.strftime("%Y%m%d-%H%M%S")


def create_snapshot(*, rds, landscape, now=None, dry_run=False):
    """A manual snapshot <database>-<UTC time>; RDS keeps it until it is deleted by hand."""
    _require_database(rds, landscape)
    name = landscape.database_snapshot(_stamp(now or datetime.datetime.now(datetime.UTC)))

    def create():
        rds.create_db_snapshot(
            DBSnapshotIdentifier=name,
            DBInstanceIdentifier=landscape.database,
            Tags=landscape.tags,
        )

    return converge_exists(
        f"database snapshot {name}", False, create, dry_run=dry_run, detail="RDS is taking it"
    )


def snapshots(*, rds, landscape):
    """The database's snapshots, manual and automated, oldest first."""
    _require_database(rds, landscape)
    paginator = rds.get_paginator("describe_db_snapshots")
    found = [
        snapshot
        for page in paginator.paginate(DBInstanceIdentifier=landscape.database)
        for snapshot in page["DBSnapshots"]
    ]
    far_future = datetime.datetime.max.replace(tzinfo=datetime.UTC)  # still being taken
    return sorted(
        found, key=lambda s: (s.get("SnapshotCreateTime", far_future), s["DBSnapshotIdentifier"])
    )


def check_deletable(*, rds, landscape):
    """OpsError unless the database is absent or may go: deletion protection (prod) is
    turned off on purpose, in project.env, never by the command that removes it."""
    database = find_database(rds, landscape)
    if database is not None and database.get("DeletionProtection"):
        raise OpsError(
            f"RDS database {landscape.database} has deletion protection: set "
            f"{landscape.env.name.upper()}_DB_DELETION_PROTECTION=no in project.env and run "
            "setup_aws --with-rds first, if it really must go"
        )
    return database


def delete_database(*, rds, landscape, now=None, dry_run=False):
    """Remove the database, always through a final snapshot, keeping its automated backups.

    Deletion protection (prod) refuses: it must be turned off first, on purpose. An absent
    database, or one being deleted already, is said so and left alone. The password's SSM
    parameter stays: a database restored from the final snapshot keeps that password.
    """
    what = f"RDS database {landscape.database}"
    database = check_deletable(rds=rds, landscape=landscape)
    if database is None:
        return Result("skip", what, detail="absent: nothing to remove")
    if database.get("DBInstanceStatus") == "deleting":
        return Result("skip", what, detail="is being deleted already, with its final snapshot")
    final = landscape.database_snapshot(
        f"final-{_stamp(now or datetime.datetime.now(datetime.UTC))}"
    )
    if not dry_run:
        rds.delete_db_instance(
            DBInstanceIdentifier=landscape.database,
            SkipFinalSnapshot=False,
            FinalDBSnapshotIdentifier=final,
            DeleteAutomatedBackups=False,
        )
    return Result("delete", what, dry_run, f"final snapshot {final}")
