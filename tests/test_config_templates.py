"""The stage/prod templates: placeholders only, and filled in they deploy cleanly."""

from pathlib import Path

import pytest

from tests.helpers import filled_config, manage, put_secrets
from www import project
from www.aws import client as aws_client
from www.config import PLACEHOLDER

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "deploy" / "aws" / "config"


# A secret key with the characters Django's deploy check wants, and a local database host.
DEPLOY_SECRET_KEY = "vK3#p9!zQ2@wL8$eR5^tY1&uI7*oP4(aS6)dF0_gH2+jK9-lZ3=x"
TEMPLATE_VALUES = {"HOSTNAME": "www.example.com", "DB_HOST": "127.0.0.1"}


def filled(env, tmp_path, **values):
    """The env's template filled in; its secrets in the emulator's SSM."""
    path = filled_config(tmp_path, env, **{**TEMPLATE_VALUES, **values})
    put_secrets(env, secret_key=DEPLOY_SECRET_KEY)
    return path


@pytest.mark.parametrize("env", project.load().environments)
def test_template_names_its_secrets_and_holds_none(env):
    text = (TEMPLATES / f"{env}.py").read_text()
    assert {"DB_HOST", "HOSTNAME", "CDN_DOMAIN"} <= set(PLACEHOLDER.findall(text))
    # Every secret-bearing assignment is a secret("name") reference, never a value.
    secret_lines = [
        line
        for line in text.splitlines()
        if any(word in line for word in ("SECRET_KEY =", "password="))
    ]
    assert [line.strip() for line in secret_lines] == [
        'SECRET_KEY = secret("secret-key")',
        'password=secret("database-password"),',
    ]


def test_filled_prod_passes_check_deploy_with_zero_warnings(aws, tmp_path):
    result = manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        env={"DJANGO_CONFIG_URI": str(filled("prod", tmp_path))},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_collectstatic_puts_admin_css_in_the_environment_bucket(aws, tmp_path):
    bucket = project.load().environment("stage").bucket
    s3 = aws_client("s3")
    s3.create_bucket(
        Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": project.aws_region()}
    )
    result = manage(
        "collectstatic",
        "--no-input",
        "--verbosity",
        "1",
        env={"DJANGO_CONFIG_URI": str(filled("stage", tmp_path))},
    )
    assert result.returncode == 0, result.stderr
    obj = s3.get_object(Bucket=bucket, Key="static/admin/css/base.css")
    assert obj["ContentType"] == "text/css"
    assert b"body" in obj["Body"].read()
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    assert "static/www/site.css" in keys
    assert not any(k.startswith(("config/", "deploy/")) for k in keys)
