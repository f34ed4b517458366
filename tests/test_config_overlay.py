"""DJANGO_CONFIG_URI: the overlay's schemes, its one-line errors, and its per-start cache."""

import os
import socket
import stat
import subprocess
import sys

import boto3
import pytest

from tests.helpers import manage
from tests.servers import MotoServer, free_port
from www import aws, config, project
from www.config import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECRET = "s3cr3t-value-that-must-not-leak"


def s3():
    return aws.client("s3")


def put_config(bucket, key, source):
    client = s3()
    client.create_bucket(
        Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": project.aws_region()}
    )
    client.put_object(Bucket=bucket, Key=key, Body=source.encode())
    return f"s3://{bucket}/{key}"


def test_s3_overlay_replaces_and_extends_defaults(aws):
    uri = put_config(
        "cfg-bucket",
        "config/stage.py",
        'DEBUG = False\nALLOWED_HOSTS = ["stage.example.com"]\n'
        'INSTALLED_APPS += ["django.contrib.humanize"]\nSECRET_KEY = "x" * 50\n',
    )
    namespace = {"INSTALLED_APPS": ["django.contrib.admin"], "DEBUG": True}
    config.apply(uri, namespace)
    assert namespace["ALLOWED_HOSTS"] == ["stage.example.com"]
    assert namespace["INSTALLED_APPS"] == ["django.contrib.admin", "django.contrib.humanize"]
    assert namespace["DEBUG"] is False


def test_diffsettings_shows_the_s3_overlay(aws):
    uri = put_config(
        project.load().environment("stage").bucket,
        "config/stage.py",
        'ALLOWED_HOSTS = ["stage.example.com"]\nSECRET_KEY = "k" * 50\n'
        'TIME_ZONE = "Europe/Paris"\n',
    )
    result = manage("diffsettings", env={"DJANGO_CONFIG_URI": uri})
    assert result.returncode == 0, result.stderr
    assert "ALLOWED_HOSTS = ['stage.example.com']" in result.stdout
    assert "TIME_ZONE = 'Europe/Paris'" in result.stdout


def test_bad_uri_ends_manage_py_with_one_line(aws):
    result = manage("diffsettings", env={"DJANGO_CONFIG_URI": "s3://no-such-bucket/config/x.py"})
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert lines == [
        "error: DJANGO_CONFIG_URI=s3://no-such-bucket/config/x.py: no such bucket 'no-such-bucket'"
    ]


def test_manage_py_outside_the_virtualenv_says_how_to_get_it():
    """A Python without the virtualenv's packages (-S: no site-packages) gets one line."""
    result = subprocess.run(
        [sys.executable, "-S", "manage.py", "check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"error: Django is not installed for {sys.executable}: run ./run_tests.sh first (it "
        "creates .venv), then activate it: . .venv/bin/activate"
    ]


def test_file_uri_and_absolute_path(tmp_path):
    path = tmp_path / "local.py"
    path.write_text("TIME_ZONE = 'Asia/Tokyo'\n")
    for uri in (f"file://{path}", str(path)):
        namespace = {}
        config.apply(uri, namespace)
        assert namespace["TIME_ZONE"] == "Asia/Tokyo"


@pytest.mark.parametrize(
    "uri",
    ["http://example.com/c.py", "relative/path.py", "ftp://host/c.py", "file://otherhost/c.py"],
)
def test_unknown_scheme_is_refused(uri):
    with pytest.raises(ConfigError, match="unsupported; use s3://BUCKET/KEY"):
        config.apply(uri, {})


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match=r"no such file .*/absent\.py$"):
        config.apply(str(tmp_path / "absent.py"), {})


def test_no_such_bucket(aws):
    with pytest.raises(ConfigError, match="no such bucket 'absent-bucket'$"):
        config.apply("s3://absent-bucket/config/stage.py", {})


def test_no_such_key(aws):
    put_config("cfg-bucket", "config/other.py", "X = 1\n")
    with pytest.raises(ConfigError, match="no such key 'config/stage.py' in bucket 'cfg-bucket'$"):
        config.apply("s3://cfg-bucket/config/stage.py", {})


def test_access_denied(monkeypatch):
    """A second moto server with IAM enforced after its first four (set-up) requests."""
    server = MotoServer()
    os.environ["INITIAL_NO_AUTH_ACTION_COUNT"] = "4"
    try:
        server.start()
    finally:
        del os.environ["INITIAL_NO_AUTH_ACTION_COUNT"]
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL", server.url)
        uri = put_config("locked-bucket", "config/prod.py", f"SECRET_KEY = {SECRET!r}\n")
        iam = boto3.client("iam")
        iam.create_user(UserName="nobody")
        key = iam.create_access_key(UserName="nobody")["AccessKey"]
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
        with pytest.raises(ConfigError, match="access denied") as raised:
            config.apply(uri, {})
        assert SECRET not in str(raised.value)
    finally:
        server.stop()


def test_no_credentials(aws, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(ConfigError, match="no AWS credentials found"):
        config.apply("s3://cfg-bucket/config/stage.py", {})


def test_endpoint_unreachable(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(ConfigError, match=r"S3 endpoint unreachable \(EndpointConnectionError\)"):
        config.apply("s3://cfg-bucket/config/stage.py", {})


def test_syntax_error_names_the_line_but_not_its_text(aws):
    uri = put_config("cfg-bucket", "config/stage.py", f"A = 1\nSECRET_KEY = '{SECRET}\n")
    with pytest.raises(ConfigError, match="syntax error at line 2") as raised:
        config.apply(uri, {})
    assert SECRET not in str(raised.value)


def test_runtime_error_names_the_line(tmp_path):
    path = tmp_path / "c.py"
    path.write_text(f"SECRET_KEY = {SECRET!r}\nX = 1\nINSTALLED_APPS += undefined_name\n")
    with pytest.raises(ConfigError) as raised:
        config.apply(str(path), {"INSTALLED_APPS": []})
    message = str(raised.value)
    assert message.endswith("NameError (name 'undefined_name') at line 3")
    assert SECRET not in message


def test_value_error_message_is_not_echoed(tmp_path):
    path = tmp_path / "c.py"
    path.write_text(f"raise ValueError({SECRET!r})\n")
    with pytest.raises(ConfigError, match="ValueError at line 1$") as raised:
        config.apply(str(path), {})
    assert SECRET not in str(raised.value)


def test_cache_makes_one_start_cost_one_get(aws, tmp_path):
    uri = put_config("cfg-bucket", "config/stage.py", "TIME_ZONE = 'Asia/Tokyo'\n")
    cache = tmp_path / "run" / "config.py"
    config.apply(uri, {}, cache=str(cache))
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    # The object is gone from S3, yet later processes of the same start still load it.
    s3().delete_object(Bucket="cfg-bucket", Key="config/stage.py")
    namespace = {}
    config.apply(uri, namespace, cache=str(cache))
    assert namespace["TIME_ZONE"] == "Asia/Tokyo"
    # A cache written for another URI is not used.
    with pytest.raises(ConfigError, match="no such key"):
        config.apply("s3://cfg-bucket/config/stage.py?other", {}, cache=str(cache))


def test_config_without_secret_key_is_refused(tmp_path):
    path = tmp_path / "c.py"
    path.write_text("DEBUG = False\n")
    result = manage("check", env={"DJANGO_CONFIG_URI": str(path)})
    assert result.returncode != 0
    expected = f"error: DJANGO_CONFIG_URI={path}: the config must set SECRET_KEY"
    assert result.stderr.strip() == expected


def test_endpoint_that_never_answers_ends_with_one_line():
    """An endpoint that accepts connections but never replies: bounded, no hang."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        result = manage(
            "check",
            env={"AWS_ENDPOINT_URL": url, "DJANGO_CONFIG_URI": "s3://cfg-bucket/config/stage.py"},
        )
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "error: DJANGO_CONFIG_URI=s3://cfg-bucket/config/stage.py: "
        "S3 endpoint unreachable (ReadTimeoutError)"
    )


def test_config_that_is_not_text(tmp_path):
    path = tmp_path / "c.py"
    path.write_bytes(b"SECRET_KEY = '\xff\xfe'\n")
    with pytest.raises(ConfigError, match="not UTF-8 text$"):
        config.apply(str(path), {})


def test_cache_that_cannot_be_written(tmp_path):
    path = tmp_path / "c.py"
    path.write_text("X = 1\n")
    (tmp_path / "file").write_text("")
    cache = tmp_path / "file" / "config.py"  # its "directory" is a file
    with pytest.raises(ConfigError, match=f"DJANGO_CONFIG_CACHE={cache}: cannot write"):
        config.apply(str(path), {}, cache=str(cache))


def test_empty_secret_key_is_refused(tmp_path):
    path = tmp_path / "c.py"
    path.write_text("SECRET_KEY = ''\n")
    result = manage("check", env={"DJANGO_CONFIG_URI": str(path)})
    assert result.returncode != 0
    assert result.stderr.strip().endswith("the config must set SECRET_KEY")


def test_import_error_names_the_module(tmp_path):
    path = tmp_path / "c.py"
    path.write_text("X = 1\nimport no_such_settings_helper\n")
    with pytest.raises(ConfigError) as raised:
        config.apply(str(path), {})
    assert str(raised.value).endswith(
        "ModuleNotFoundError (module 'no_such_settings_helper') at line 2"
    )


def test_config_still_holding_placeholders_is_refused_at_start(aws):
    """Uploaded by other means than push_config: the template's known values never run."""
    template = (project.BASE_DIR / "deploy" / "aws" / "config" / "stage.py").read_text()
    source = template.replace("<<DB_USER>>", SECRET).replace("<<HOSTNAME>>", "example.com")
    uri = put_config(project.load().environment("stage").bucket, "config/stage.py", source)
    result = manage("check", env={"DJANGO_CONFIG_URI": uri})
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: DJANGO_CONFIG_URI={uri}: still holds the placeholder(s) <<CDN_DOMAIN>>, "
        "<<DB_HOST>>, <<DB_NAME>>, <<DB_PORT>>: fill them in and upload it "
        "again (./manage.py push_config)"
    ]
    assert SECRET not in result.stderr


def test_placeholder_anywhere_in_the_file_is_refused(tmp_path):
    path = tmp_path / "c.py"
    path.write_text(f"SECRET_KEY = {SECRET * 2!r}\nALLOWED_HOSTS = ['<<HOSTNAME>>']\n")
    with pytest.raises(ConfigError, match=r"still holds the placeholder\(s\) <<HOSTNAME>>:"):
        config.apply(str(path), {})


def test_short_secret_key_is_refused(tmp_path):
    path = tmp_path / "c.py"
    path.write_text(f"SECRET_KEY = {'k' * 49!r}\n")
    result = manage("check", env={"DJANGO_CONFIG_URI": str(path)})
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"error: DJANGO_CONFIG_URI={path}: SECRET_KEY is shorter than 50 characters: "
        "store a new one (./manage.py secret --env ENV generate secret-key --replace)"
    )
    path.write_text(f"SECRET_KEY = {'k' * 50!r}\n")
    assert manage("check", env={"DJANGO_CONFIG_URI": str(path)}).returncode == 0


def cached_copy(tmp_path, uri, source):
    """A cache file as write_cache lays it out, written by hand."""
    cache = tmp_path / "run" / "config.py"
    cache.parent.mkdir(mode=0o700, exist_ok=True)
    cache.write_text(f"{config.CACHE_HEADER}{uri}\n{source}")
    cache.chmod(0o600)
    return cache


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o606], ids=oct)
def test_cache_others_may_read_or_write_is_not_trusted(tmp_path, mode):
    path = tmp_path / "c.py"
    path.write_text("TIME_ZONE = 'Asia/Tokyo'\n")
    cache = cached_copy(tmp_path, str(path), "TIME_ZONE = 'Planted/Value'\n")
    cache.chmod(mode)
    namespace = {}
    config.apply(str(path), namespace, cache=str(cache))
    assert namespace["TIME_ZONE"] == "Asia/Tokyo"
    # refetched, and the copy replaced by one only this user may read
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    assert "Asia/Tokyo" in cache.read_text()


def test_cache_owned_by_another_user_is_not_trusted(tmp_path):
    if os.getuid() != 0:
        pytest.fail("this test creates a file owned by another user: run it as root (as CI does)")
    path = tmp_path / "c.py"
    path.write_text("TIME_ZONE = 'Asia/Tokyo'\n")
    cache = cached_copy(tmp_path, str(path), "TIME_ZONE = 'Planted/Value'\n")
    os.chown(cache, 65534, 65534)  # nobody
    namespace = {}
    config.apply(str(path), namespace, cache=str(cache))
    assert namespace["TIME_ZONE"] == "Asia/Tokyo"
    assert cache.stat().st_uid == os.getuid()


def test_cache_that_is_a_symlink_is_not_followed(tmp_path):
    path = tmp_path / "c.py"
    path.write_text("TIME_ZONE = 'Asia/Tokyo'\n")
    planted = cached_copy(tmp_path, str(path), "TIME_ZONE = 'Planted/Value'\n")
    cache = tmp_path / "run" / "link.py"
    cache.symlink_to(planted)
    namespace = {}
    config.apply(str(path), namespace, cache=str(cache))
    assert namespace["TIME_ZONE"] == "Asia/Tokyo"


def test_own_private_cache_is_used(tmp_path):
    """The counterpart of the tests above: a copy this user alone wrote is read."""
    path = tmp_path / "c.py"
    path.write_text("TIME_ZONE = 'Asia/Tokyo'\n")
    cache = cached_copy(tmp_path, str(path), "TIME_ZONE = 'Europe/Paris'\n")
    namespace = {}
    config.apply(str(path), namespace, cache=str(cache))
    assert namespace["TIME_ZONE"] == "Europe/Paris"
