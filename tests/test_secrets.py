"""Secrets by reference: secret("name") in a config, SSM SecureStrings on moto, the secret
command, the role's access, and push_config's refusals."""

import io
import json
import re
import stat

import boto3
import pytest
from django.core.management import CommandError, call_command

from tests.helpers import CONFIG_DB_PASSWORD as DB_PASSWORD
from tests.helpers import CONFIG_SECRET as SECRET
from tests.helpers import MOTO_PUBLIC_AMI, filled_config, put_secrets
from www import aws, config, config_secrets, project
from www.config import ConfigError
from www.ops.landscape import Landscape

PROJECT = project.load()
STAGE = Landscape.of(PROJECT, "stage")
PROD = Landscape.of(PROJECT, "prod")
REFERENCING_CONFIG = """\
ENV = PROJECT.environment("stage")
SECRET_KEY = secret("secret-key")
DATABASES = {"default": {"ENGINE": "x", "PASSWORD": secret("database-password")}}
PAIR = (secret("secret-key"), "plain")
"""


def namespace():
    return {"PROJECT": PROJECT, "DATABASES": {}}


def write(tmp_path, source, name="c.py"):
    path = tmp_path / name
    path.write_text(source)
    return str(path)


def secret_cmd(*args, stdin=None, env="stage"):
    out = io.StringIO()
    call_command("secret", "--env", env, *args, stdout=out, stdin=stdin or io.StringIO())
    return out.getvalue()


def counting_ssm():
    """An SSM client on moto that counts its GetParameters calls (botocore's own events)."""
    client = aws.client("ssm")
    calls = []
    client.meta.events.register("before-call.ssm.GetParameters", lambda **kw: calls.append(1))
    return client, calls


def test_references_resolve_in_one_call_at_any_depth(aws, tmp_path):
    put_secrets(secret_key=SECRET, database_password=DB_PASSWORD)
    uri = write(tmp_path, REFERENCING_CONFIG)
    ns = namespace()
    code = compile(REFERENCING_CONFIG, uri, "exec")
    with config_secrets.in_scope(ns):
        exec(code, ns)  # noqa: S102 -- what www.config.apply does, minus the resolution
    ssm, calls = counting_ssm()
    config_secrets.resolve(uri, ns, ssm=ssm)
    assert len(calls) == 1
    assert ns["SECRET_KEY"] == SECRET
    assert ns["DATABASES"]["default"]["PASSWORD"] == DB_PASSWORD
    assert ns["PAIR"] == (SECRET, "plain")
    assert ns["CONFIG_SECRETS"] == {
        "SECRET_KEY": "secret-key",
        "DATABASES.default.PASSWORD": "database-password",
        "PAIR.0": "secret-key",
    }
    assert "secret" not in ns  # the name is the config's only while it runs


def test_the_cache_holds_references_never_values(aws, tmp_path):
    put_secrets(secret_key=SECRET, database_password=DB_PASSWORD)
    uri = write(tmp_path, REFERENCING_CONFIG)
    cache = tmp_path / "run" / "config.py"
    ns = namespace()
    config.apply(uri, ns, cache=str(cache))
    assert ns["SECRET_KEY"] == SECRET
    text = cache.read_text()
    assert 'secret("secret-key")' in text
    assert SECRET not in text and DB_PASSWORD not in text
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600


def test_missing_parameter_stops_the_start_naming_it(aws, tmp_path):
    put_secrets(secret_key=SECRET)
    uri = write(tmp_path, REFERENCING_CONFIG)
    with pytest.raises(ConfigError) as raised:
        config.apply(uri, namespace())
    message = str(raised.value)
    assert message == (
        f"DJANGO_CONFIG_URI={uri}: SSM parameter /{PROJECT.name}/stage/database-password does "
        "not exist: set it with ./manage.py secret --env stage set database-password"
    )


def test_a_reference_inside_an_expression_is_refused(aws, tmp_path):
    uri = write(tmp_path, "ENV = PROJECT.environment('stage')\nURL = f\"pg://{secret('pw')}@h\"\n")
    with pytest.raises(ConfigError, match=r"SecretUsedInExpression at line 2$"):
        config.apply(uri, namespace())


def test_references_need_the_config_to_name_its_environment(aws, tmp_path):
    uri = write(tmp_path, 'SECRET_KEY = secret("secret-key")\n')
    with pytest.raises(ConfigError, match=r'set ENV = PROJECT.environment\("<env>"\)'):
        config.apply(uri, namespace())


@pytest.mark.parametrize("name", ["../prod/secret-key", "a/b", "", "with space"])
def test_a_name_outside_the_environment_path_is_refused(aws, tmp_path, name):
    uri = write(tmp_path, f'ENV = PROJECT.environment("stage")\nX = secret({name!r})\n')
    with pytest.raises(ConfigError, match=r"InvalidSecretName at line 2$"):
        config.apply(uri, namespace())


def test_set_reads_stdin_and_never_prints_the_value(aws):
    out = secret_cmd("set", "database-password", stdin=io.StringIO(DB_PASSWORD + "\n"))
    parameter = STAGE.secret_parameter("database-password")
    assert out.strip() == f"Created SSM parameter {parameter} (version 1)"
    stored = boto3.client("ssm").get_parameter(Name=parameter, WithDecryption=True)["Parameter"]
    assert stored["Type"] == "SecureString" and stored["Value"] == DB_PASSWORD
    out = secret_cmd("set", "database-password", stdin=io.StringIO("another-value"))
    assert out.strip() == f"Updated SSM parameter {parameter} (version 2)"
    assert DB_PASSWORD not in out and "another-value" not in out


def test_set_takes_no_value_on_the_command_line_and_refuses_an_empty_one(aws):
    with pytest.raises(CommandError, match="unrecognized arguments: hunter2"):
        secret_cmd("set", "database-password", "hunter2")
    with pytest.raises(CommandError, match="the value is empty: nothing stored"):
        secret_cmd("set", "database-password", stdin=io.StringIO(""))
    assert boto3.client("ssm").describe_parameters()["Parameters"] == []


def test_generate_stores_a_long_random_value_and_keeps_it_unless_replaced(aws):
    parameter = STAGE.secret_parameter("secret-key")
    ssm = boto3.client("ssm")
    out = secret_cmd("generate", "secret-key")
    first = ssm.get_parameter(Name=parameter, WithDecryption=True)["Parameter"]["Value"]
    assert len(first) >= 50 and first not in out
    assert out.strip() == f"Created SSM parameter {parameter} (version 1)"
    assert secret_cmd("generate", "secret-key").strip() == (
        f"SSM parameter {parameter} exists, unchanged (version 1)"
    )
    out = secret_cmd("generate", "secret-key", "--replace")
    second = ssm.get_parameter(Name=parameter, WithDecryption=True)["Parameter"]["Value"]
    assert second != first and second not in out


def test_list_shows_names_versions_dates_never_values(aws):
    put_secrets(secret_key=SECRET, database_password=DB_PASSWORD)
    put_secrets("prod", secret_key="prod-only-" + SECRET)
    out = secret_cmd("list")
    lines = out.strip().splitlines()
    assert [line.split("\t")[:2] for line in lines] == [
        ["database-password", "version 1"],
        ["secret-key", "version 1"],
    ]
    assert all(re.search(r"\t\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", line) for line in lines)
    assert SECRET not in out and DB_PASSWORD not in out


def test_rm_deletes_one_secret_and_dry_run_keeps_it(aws):
    put_secrets(secret_key=SECRET, database_password=DB_PASSWORD)
    parameter = STAGE.secret_parameter("secret-key")
    assert secret_cmd("--dry-run", "rm", "secret-key").strip() == (
        f"Would delete SSM parameter {parameter}"
    )
    assert secret_cmd("rm", "secret-key").strip() == f"Deleted SSM parameter {parameter}"
    names = [p["Name"] for p in boto3.client("ssm").describe_parameters()["Parameters"]]
    assert names == [STAGE.secret_parameter("database-password")]
    with pytest.raises(CommandError, match="no secret 'secret-key'"):
        secret_cmd("rm", "secret-key")


def test_role_reads_only_its_environments_secrets_through_ssm(aws):
    call_command("setup_aws", "--env", "stage", stdout=io.StringIO())
    iam = boto3.client("iam")
    document = iam.get_role_policy(RoleName=STAGE.role, PolicyName="ssm-read-secrets")[
        "PolicyDocument"
    ]
    read, decrypt = document["Statement"]
    parameters = f"arn:aws:ssm:eu-west-1:123456789012:parameter/{PROJECT.name}/stage/*"
    assert read["Action"] == "ssm:GetParameters" and read["Resource"] == parameters
    key = boto3.client("kms").describe_key(KeyId="alias/aws/ssm")["KeyMetadata"]["Arn"]
    assert decrypt["Action"] == "kms:Decrypt" and decrypt["Resource"] == key
    assert decrypt["Condition"] == {
        "StringEquals": {"kms:ViaService": "ssm.eu-west-1.amazonaws.com"},
        "StringLike": {"kms:EncryptionContext:PARAMETER_ARN": parameters},
    }
    all_policies = json.dumps(
        [
            iam.get_role_policy(RoleName=STAGE.role, PolicyName=name)["PolicyDocument"]
            for name in iam.list_role_policies(RoleName=STAGE.role)["PolicyNames"]
        ]
    )
    assert 'ssm:GetParameter"' not in all_policies and "/prod/" not in all_policies


def test_with_rds_writes_the_password_where_the_templates_read_it(aws):
    call_command("setup_aws", "--env", "stage", "--with-rds", stdout=io.StringIO())
    template = (project.BASE_DIR / "deploy" / "aws" / "config" / "stage.py").read_text()
    (name,) = re.findall(r'password=secret\("([^"]+)"\)', template)
    assert STAGE.database_password_parameter == STAGE.secret_parameter(name)
    boto3.client("ssm").get_parameter(Name=STAGE.secret_parameter(name), WithDecryption=True)


@pytest.fixture
def landscapes(aws):
    for env in ("stage", "prod"):
        call_command(
            "setup_aws", "--env", env, "--ami-parameter", MOTO_PUBLIC_AMI, stdout=io.StringIO()
        )
    return aws


def push(env, path):
    out = io.StringIO()
    call_command("push_config", "--env", env, str(path), stdout=out)
    return out.getvalue()


def objects_in(bucket):
    s3 = boto3.client("s3")
    versions = s3.list_object_versions(Bucket=bucket).get("Versions", [])
    return {v["Key"]: v for v in versions}


def test_push_config_refuses_a_reference_to_a_missing_parameter(landscapes, tmp_path):
    path = filled_config(tmp_path)
    boto3.client("ssm").delete_parameter(Name=STAGE.secret_parameter("secret-key"))
    with pytest.raises(CommandError) as raised:
        push("stage", path)
    assert f"SSM parameter /{PROJECT.name}/stage/secret-key does not exist" in str(raised.value)
    assert "set it with ./manage.py secret --env stage set secret-key" in str(raised.value)
    assert objects_in(STAGE.bucket) == {}


@pytest.mark.parametrize(
    ("literal", "check"),
    [
        (('SECRET_KEY = secret("secret-key")', f"SECRET_KEY = {SECRET!r}"), "www.W001"),
        (('password=secret("database-password")', f"password={DB_PASSWORD!r}"), "www.W002"),
    ],
)
def test_push_config_refuses_a_prod_config_holding_a_secret(landscapes, tmp_path, literal, check):
    path = filled_config(tmp_path, "prod")
    path.write_text(path.read_text().replace(*literal))
    with pytest.raises(CommandError) as raised:
        push("prod", path)
    message = str(raised.value)
    assert "Django's deploy checks warn and prod takes no warning" in message
    assert check in message and "written in the config file" in message
    assert SECRET not in message and DB_PASSWORD not in message
    assert objects_in(PROD.bucket) == {}


def test_push_config_refuses_prod_debug_and_any_host(landscapes, tmp_path):
    path = filled_config(tmp_path, "prod", HOSTNAME="*")
    path.write_text(path.read_text() + "\nDEBUG = True\n")
    with pytest.raises(CommandError, match=r"security\.W018, www\.W003 \(ALLOWED_HOSTS allows"):
        push("prod", path)
    assert objects_in(PROD.bucket) == {}


def test_prod_template_filled_in_pushes_clean_and_stage_shows_its_warnings(landscapes, tmp_path):
    out = push("prod", filled_config(tmp_path, "prod"))
    assert "deploy checks" not in out
    assert f"Created s3://{PROD.bucket}/{PROD.env.config_key}" in out
    out = push("stage", filled_config(tmp_path))
    (warned,) = [line for line in out.splitlines() if line.startswith("deploy checks warn:")]
    assert "security.W004" in warned and warned.endswith("allowed on stage")
    assert f"Created s3://{STAGE.bucket}/{STAGE.env.config_key}" in out


def test_no_secret_value_in_any_object_or_output(landscapes, tmp_path):
    """The whole operator path: setup, secrets, configs pushed; the values are in SSM only."""
    outputs = [
        secret_cmd("set", "secret-key", stdin=io.StringIO(SECRET)),
        secret_cmd("set", "database-password", stdin=io.StringIO(DB_PASSWORD)),
        secret_cmd("list"),
        push("stage", filled_config(tmp_path)),
    ]
    s3 = boto3.client("s3")
    bodies = []
    for bucket in (b["Name"] for b in s3.list_buckets()["Buckets"]):
        for key, version in objects_in(bucket).items():
            obj = s3.get_object(Bucket=bucket, Key=key, VersionId=version["VersionId"])
            bodies.append(obj["Body"].read().decode(errors="replace"))
    assert bodies
    for text in outputs + bodies:
        assert SECRET not in text and DB_PASSWORD not in text
