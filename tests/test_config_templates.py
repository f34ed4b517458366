"""The stage/prod templates: placeholders only, and filled in they deploy cleanly."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.docker_rig import put_secrets
from www import project
from www.aws import client as aws_client
from www.config import PLACEHOLDER

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "deploy" / "aws" / "config"


def filled(env, tmp_path, **values):
    """The env's template filled in; the secrets it references stored in moto's SSM."""
    put_secrets(
        env,
        secret_key="vK3#p9!zQ2@wL8$eR5^tY1&uI7*oP4(aS6)dF0_gH2+jK9-lZ3=x",
        database_password="not-a-real-password",
    )
    defaults = {
        "HOSTNAME": "www.example.com",
        "CDN_DOMAIN": "d1234abcd.cloudfront.net",
        "DB_HOST": "127.0.0.1",
        "DB_PORT": "5432",
        "DB_NAME": "app",
        "DB_USER": "app",
    }
    defaults.update(values)
    text = PLACEHOLDER.sub(lambda m: defaults[m.group(1)], (TEMPLATES / f"{env}.py").read_text())
    path = tmp_path / f"{env}.local.py"
    path.write_text(text)
    return path


def manage(*args, env):
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


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
