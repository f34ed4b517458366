"""The environment's optional database: a small Postgres RDS instance in the backend group."""

import secrets

from www.ops.errors import OpsError, value_or_none
from www.ops.network import default_vpc, find_group
from www.ops.results import converge_exists


def ensure_database(*, rds, ssm, ec2, landscape, dry_run=False):
    """A small Postgres RDS instance in the backend group; its password only in SSM.

    The generated password goes to an SSM SecureString parameter and nowhere else: it is
    never printed, logged, or written to a file.
    """
    identifier = landscape.database
    parameter = landscape.database_password_parameter
    existing = value_or_none(
        lambda: rds.describe_db_instances(DBInstanceIdentifier=identifier),
        ("DBInstanceNotFound", "DBInstanceNotFoundFault"),
        lambda r: r["DBInstances"][0],
    )

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
            BackupRetentionPeriod=7,
            Tags=landscape.tags,
        )

    yield converge_exists(
        f"RDS database {identifier}",
        existing is not None,
        create,
        dry_run=dry_run,
        detail=f"password in SSM {parameter}",
    )
