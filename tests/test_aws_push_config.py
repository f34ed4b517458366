"""push_config against moto's server: validation, encryption, names-only diff, no-op reruns."""

import io
import re
import subprocess

import boto3
import pytest
from django.core.management import CommandError, call_command

from tests.helpers import CONFIG_DB_PASSWORD, CONFIG_SECRET, filled_config, put_secrets
from www import project
from www.ops.templates import TEMPLATE_FIELD

PROJECT = project.load()
STAGE = PROJECT.environment("stage")
SECRET = CONFIG_SECRET
DB_PASSWORD = CONFIG_DB_PASSWORD


def push_config(*args):
    out = io.StringIO()
    call_command("push_config", "--env", "stage", *args, stdout=out)
    return out.getvalue()


def test_uploads_config_and_stage2_encrypted_and_private(landscape, tmp_path):
    path = filled_config(tmp_path)
    out = push_config(str(path))
    assert f"Created s3://{STAGE.bucket}/{STAGE.config_key}" in out
    assert f"Created s3://{STAGE.bucket}/{STAGE.stage2_key}" in out
    s3 = boto3.client("s3")
    config = s3.get_object(Bucket=STAGE.bucket, Key=STAGE.config_key)
    assert config["ServerSideEncryption"] == "AES256"
    assert config["Body"].read() == path.read_bytes()
    stage2 = s3.get_object(Bucket=STAGE.bucket, Key=STAGE.stage2_key)
    assert stage2["ServerSideEncryption"] == "AES256"
    script = stage2["Body"].read().decode()
    assert f"PROJECT_NAME='{PROJECT.name}'" in script
    assert f"CONFIG_URI='{STAGE.config_uri}'" in script
    assert f"RELEASE_URI='s3://{STAGE.bucket}/{STAGE.release_key}'" in script
    assert not TEMPLATE_FIELD.search(script)  # every field filled in
    for key in (STAGE.config_key, STAGE.stage2_key):
        grants = s3.get_object_acl(Bucket=STAGE.bucket, Key=key)["Grants"]
        assert all("AllUsers" not in str(g["Grantee"]) for g in grants)
    assert SECRET not in out


def test_rendered_stage2_passes_shellcheck(landscape, tmp_path):
    push_config(str(filled_config(tmp_path)))
    script = boto3.client("s3").get_object(Bucket=STAGE.bucket, Key=STAGE.stage2_key)
    path = tmp_path / "webserver.sh"
    path.write_bytes(script["Body"].read())
    result = subprocess.run(["shellcheck", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_second_push_uploads_nothing(landscape, tmp_path):
    path = filled_config(tmp_path)
    push_config(str(path))
    s3 = boto3.client("s3")
    versions_before = s3.list_object_versions(Bucket=STAGE.bucket)["Versions"]
    out = push_config(str(path))
    assert [line for line in out.splitlines() if not line.startswith("deploy checks")] == [
        f"s3://{STAGE.bucket}/{STAGE.config_key} exists, unchanged",
        f"s3://{STAGE.bucket}/{STAGE.stage2_key} exists, unchanged",
    ]
    assert s3.list_object_versions(Bucket=STAGE.bucket)["Versions"] == versions_before


def test_change_shows_setting_names_never_values(landscape, tmp_path):
    push_config(str(filled_config(tmp_path)))
    changed = filled_config(tmp_path, HOSTNAME="www.example.com", DB_NAME="other-db-name")
    out = push_config(str(changed))
    line = next(x for x in out.splitlines() if STAGE.config_key in x)
    assert line.startswith(f"Updated s3://{STAGE.bucket}/{STAGE.config_key}")
    assert "changed: ALLOWED_HOSTS, CSRF_TRUSTED_ORIGINS, DATABASES" in line
    assert "other-db-name" not in out and "www.example.com" not in out
    body = boto3.client("s3").get_object(Bucket=STAGE.bucket, Key=STAGE.config_key)["Body"]
    assert "other-db-name" in body.read().decode()


def test_dry_run_uploads_nothing(landscape, tmp_path):
    out = push_config("--dry-run", str(filled_config(tmp_path)))
    assert f"Would create s3://{STAGE.bucket}/{STAGE.config_key}" in out
    assert "Contents" not in boto3.client("s3").list_objects_v2(Bucket=STAGE.bucket)


def test_template_with_placeholders_is_refused(landscape):
    with pytest.raises(CommandError, match=r"fill in <<CDN_DOMAIN>>, <<DB_HOST>>, .* first"):
        push_config()
    assert "Contents" not in boto3.client("s3").list_objects_v2(Bucket=STAGE.bucket)


def test_syntax_error_is_refused_without_echoing_the_line(landscape, tmp_path):
    path = tmp_path / "broken.py"
    path.write_text(f'SECRET_KEY = "{SECRET}"\nDEBUG = (\n')
    with pytest.raises(CommandError, match="syntax error at line 2") as excinfo:
        push_config(str(path))
    assert SECRET not in str(excinfo.value)


CANARY = "hunter2-canary"


@pytest.mark.parametrize(
    ("addition", "reason"),
    [
        # raised by the config file itself: its class and line, as www/config.py says it
        (f'\nDB_PORT = int("{CANARY}")\n', r"ValueError at line \d+"),
        # raised by Django while it sets up: the message would name the app
        (f'\nINSTALLED_APPS += ["{CANARY.replace("-", "_")}"]\n', "ModuleNotFoundError"),
        # a system check whose message quotes the value: its id only
        (f'\nSTATICFILES_DIRS = [("{CANARY}/", "/tmp")]\n', r"system check staticfiles\.E003"),
    ],
)
def test_settings_django_rejects_are_refused_without_their_values(
    landscape, tmp_path, addition, reason
):
    path = filled_config(tmp_path)
    path.write_text(path.read_text() + addition)
    with pytest.raises(CommandError) as excinfo:
        push_config(str(path))
    message = str(excinfo.value)
    assert re.search(f"Django rejects these settings: {reason} \\(DJANGO_CONFIG_URI=", message)
    assert CANARY not in message and CANARY.replace("-", "_") not in message
    assert SECRET not in message and "\n" not in message
    assert "Contents" not in boto3.client("s3").list_objects_v2(Bucket=STAGE.bucket)


def test_missing_bucket_says_run_setup_aws(aws, tmp_path):
    with pytest.raises(CommandError, match="run ./manage.py setup_aws --env stage first"):
        push_config(str(filled_config(tmp_path)))


def test_missing_file_and_unknown_env(aws, tmp_path):
    with pytest.raises(CommandError, match="no such file"):
        push_config(str(tmp_path / "nope.py"))
    with pytest.raises(CommandError, match="unknown environment 'qa'"):
        call_command("push_config", "--env", "qa", stdout=io.StringIO())


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda path: path.mkdir(), "IsADirectoryError"),
        (lambda path: path.write_bytes(b"SECRET_KEY = '\xff\xfe'\n"), "UnicodeDecodeError"),
    ],
    ids=["directory", "not-utf8"],
)
def test_unreadable_config_is_refused_in_one_line(landscape, tmp_path, make, reason):
    path = tmp_path / "stage.local.py"
    make(path)
    with pytest.raises(CommandError) as raised:
        push_config(str(path))
    assert str(raised.value) == f"{path}: not a readable UTF-8 text file ({reason})"
    assert "Contents" not in boto3.client("s3").list_objects_v2(Bucket=STAGE.bucket)


def test_short_secret_key_is_refused_before_upload(landscape, tmp_path):
    path = filled_config(tmp_path)
    put_secrets(secret_key="tiny-key-123")  # what the config's secret("secret-key") reads
    with pytest.raises(CommandError) as raised:
        push_config(str(path))
    message = str(raised.value)
    assert "Django rejects these settings: SECRET_KEY is shorter than 50 characters" in message
    assert "tiny-key-123" not in message
    assert "Contents" not in boto3.client("s3").list_objects_v2(Bucket=STAGE.bucket)
