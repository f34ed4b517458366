"""A release container resolves its config's secret("name") references from SSM (moto's, on
loopback), and no secret value appears anywhere but in its settings: not in an S3 object, an
image layer, `docker inspect`, a log line, the config cache or a command's output."""

import hashlib
import json
import uuid

import pytest
import requests

from tests.docker_rig import (
    APP_UID,
    TEST_SECRET_KEY,
    put_s3_config,
    run_release,
    stage_config,
)
from www import aws as aws_clients
from www import project
from www.ops.landscape import Landscape

pytestmark = pytest.mark.docker

STAGE = Landscape.of(project.load(), "stage")
CONFIG_CACHE = "/tmp/django-config/settings.py"  # deploy/release/start.sh's default


def new_database(postgres_server):
    return postgres_server.create_database(f"secrets_{uuid.uuid4().hex[:12]}")


def s3_bodies():
    s3 = aws_clients.client("s3")
    for bucket in (b["Name"] for b in s3.list_buckets()["Buckets"]):
        for version in s3.list_object_versions(Bucket=bucket).get("Versions", []):
            obj = s3.get_object(Bucket=bucket, Key=version["Key"], VersionId=version["VersionId"])
            yield f"s3://{bucket}/{version['Key']}", obj["Body"].read()


def image_bytes_contain(client, image, needles):
    """Which needles occur in the image's saved layers and config (docker save's tar)."""
    found, tail = set(), b""
    for chunk in client.images.get(image).save(chunk_size=1 << 20):
        window = tail + chunk
        found.update(n for n in needles if n in window)
        tail = window[-256:]
    return found


def test_release_resolves_its_secrets_from_ssm_and_shows_them_nowhere(
    aws, postgres_server, docker_client, release_image
):
    db = new_database(postgres_server)
    source = stage_config(postgres_server, db)
    assert TEST_SECRET_KEY not in source and postgres_server.password not in source
    uri = put_s3_config(source)
    secrets = [TEST_SECRET_KEY, postgres_server.password]

    with run_release(docker_client, release_image, config_uri=uri) as app:
        app.wait_healthy()
        # The database password came from SSM: /health's database check reaches Postgres.
        assert requests.get(app.url + "/health", timeout=5).json()["database"] == "ok"
        # The SECRET_KEY came from SSM: the running settings hold it.
        status, output = app.exec(
            "python3",
            "-c",
            "import os; os.environ['DJANGO_SETTINGS_MODULE'] = 'www.settings'; "
            "import django, hashlib; django.setup(); from django.conf import settings; "
            "print(hashlib.sha256(settings.SECRET_KEY.encode()).hexdigest())",
            user=str(APP_UID),
        )
        assert status == 0, output
        assert hashlib.sha256(TEST_SECRET_KEY.encode()).hexdigest() in output
        status, cached = app.exec("cat", CONFIG_CACHE, user=str(APP_UID))
        assert status == 0 and 'secret("secret-key")' in cached

        inspected = json.dumps(docker_client.api.inspect_container(app.container.id))
        logs = app.logs()
        host_logs = "".join(p.read_text() for p in (app.host_dir_path / "logs").glob("*"))
        for where, text in {
            "docker inspect": inspected,
            "container log": logs,
            "host logs": host_logs,
            "config cache": cached,
        }.items():
            for value in secrets:
                assert value not in text, f"a secret value in the {where}"

    for key, body in s3_bodies():
        for value in secrets:
            assert value.encode() not in body, f"a secret value in {key}"
    history = json.dumps(docker_client.api.history(release_image))
    assert not any(value in history for value in secrets)
    assert image_bytes_contain(docker_client, release_image, [v.encode() for v in secrets]) == set()


def test_missing_parameter_stops_the_start_with_one_line_naming_it(
    aws, postgres_server, docker_client, release_image
):
    db = new_database(postgres_server)
    uri = put_s3_config(stage_config(postgres_server, db))
    parameter = STAGE.secret_parameter("database-password")
    aws_clients.client("ssm").delete_parameter(Name=parameter)
    with run_release(docker_client, release_image, config_uri=uri) as app:
        assert app.wait_exit(timeout=60) != 0
        logs = app.logs()
    errors = [line for line in logs.splitlines() if "error" in line.lower()]
    assert len(errors) == 1, logs
    assert f"SSM parameter {parameter} does not exist" in errors[0]
    assert TEST_SECRET_KEY not in logs and "Traceback" not in logs
