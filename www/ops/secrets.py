"""An environment's secrets: SSM SecureStrings under /<project>/<env>/, read by the configs.

Values go in (set, generate) and never come out: nothing here reads a value back, lists show
names, versions and dates, and no Result carries a value. They are encrypted with SSM's
AWS-managed key (www.ops.landscape.Landscape.secrets_key_alias); the instance role may read
only its environment's path and decrypt only through SSM (deploy/aws/iam/webserver-secrets.json).
"""

import secrets as random

from botocore.exceptions import ClientError

from www.config_secrets import InvalidSecretName, check_name
from www.ops.errors import OpsError, error_code, value_or_none
from www.ops.results import Result

GENERATED_BYTES = 48  # token_urlsafe: 64 characters, past Django's 50 for a SECRET_KEY
MAX_VALUE_BYTES = 4096  # SSM's standard tier


def _name(name):
    try:
        return check_name(name)
    except InvalidSecretName as exc:
        raise OpsError(str(exc)) from None


def _version(ssm, parameter):
    """The parameter's current version, or None if there is none (no value is read)."""
    return value_or_none(
        lambda: ssm.describe_parameters(
            ParameterFilters=[{"Key": "Name", "Option": "Equals", "Values": [parameter]}]
        ),
        (),
        lambda r: r["Parameters"][0]["Version"] if r["Parameters"] else None,
    )


def put_secret(*, ssm, landscape, name, value, replace=True, dry_run=False):
    """Store value as /<project>/<env>/<name>; a Result naming the parameter and its version."""
    parameter = landscape.secret_parameter(_name(name))
    if not value:
        raise OpsError(f"{parameter}: the value is empty: nothing stored")
    if len(value.encode()) > MAX_VALUE_BYTES:
        raise OpsError(f"{parameter}: the value is over SSM's {MAX_VALUE_BYTES} bytes")
    current = _version(ssm, parameter)
    if current is not None and not replace:
        return Result("unchanged", f"SSM parameter {parameter}", detail=f"version {current}")
    verb = "create" if current is None else "update"
    if dry_run:
        return Result(verb, f"SSM parameter {parameter}", dry_run=True)
    version = ssm.put_parameter(
        Name=parameter,
        Value=value,
        Type="SecureString",
        KeyId=landscape.secrets_key_alias,
        Overwrite=True,
        Description=f"{landscape.prefix} secret {name} (./manage.py secret)",
    )["Version"]
    return Result(verb, f"SSM parameter {parameter}", detail=f"version {version}")


def generate_secret(*, ssm, landscape, name, replace=False, dry_run=False):
    """A new random value (64 URL-safe characters) for name, never shown."""
    return put_secret(
        ssm=ssm,
        landscape=landscape,
        name=name,
        value=random.token_urlsafe(GENERATED_BYTES),
        replace=replace,
        dry_run=dry_run,
    )


def list_secrets(*, ssm, landscape):
    """(name, version, last modified) of every secret of the environment, by name."""
    paginator = ssm.get_paginator("describe_parameters")
    rows = []
    prefix = landscape.secrets_path + "/"
    for page in paginator.paginate(
        ParameterFilters=[{"Key": "Path", "Option": "OneLevel", "Values": [landscape.secrets_path]}]
    ):
        for p in page["Parameters"]:
            rows.append((p["Name"].removeprefix(prefix), p.get("Version"), p["LastModifiedDate"]))
    return sorted(rows)


def remove_secret(*, ssm, landscape, name, dry_run=False):
    parameter = landscape.secret_parameter(_name(name))
    if _version(ssm, parameter) is None:
        raise OpsError(f"no secret {name!r} in {landscape.secrets_path}/: nothing removed")
    if dry_run:
        return Result("delete", f"SSM parameter {parameter}", dry_run=True)
    try:
        ssm.delete_parameter(Name=parameter)
    except ClientError as exc:  # removed by someone else meanwhile: the same outcome
        if error_code(exc) != "ParameterNotFound":
            raise
    return Result("delete", f"SSM parameter {parameter}")
