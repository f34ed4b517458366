"""The docker tier's rig: the session's images, built once through build_docker_image.sh, and
release containers on the host network against the session's Postgres and moto servers.

Session fixtures (tests/conftest.py registers them for every test module):
  docker_client   a docker SDK client
  release_image   "<project>-release:<session tag>", built with ALLOW_UNRELEASED_BUILD=1
  dev_image       "<project>-dev:<session tag>"
  cdn_stand_in    (per test) the stage bucket's CloudFront distribution on loopback: .domain
                  for stage_config(cdn_domain=...), .ca_file for clients
Both tags are removed at teardown by that exact name; the base image, and the dev image's
intermediate layers (Postgres, dev requirements), stay behind as the build cache, so the
next session builds in seconds.

Helpers:
  stage_config(postgres_server, dbname, secret_key=...)   settings source from the stage
      template (deploy/aws/config/stage.py) with its placeholders filled for this machine
  put_s3_config(source, bucket=..., key=...)              upload it; returns its s3:// URI
  run_release(client, image, config_uri=...)              a ReleaseContainer (context manager:
      removes the container and its host directory); .wait_healthy() waits for /health 200

    with run_release(docker_client, release_image, config_uri=uri) as app:
        app.wait_healthy()
        requests.get(app.url + "/admin/login/")
"""

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import docker
import pytest
import requests

from tests.cdn import CdnStandIn
from tests.helpers import fill_placeholders, put_secrets
from tests.servers import AWS_TEST_ENV, free_port
from www import aws, project
from www.ops.config_push import default_config_file
from www.ops.templates import json_template

ROOT = Path(__file__).resolve().parent.parent
BUILD_SCRIPT = ROOT / "build_docker_image.sh"
APP_UID = project.load().app_uid  # the app user (project.env, into deploy/base/Dockerfile)
SESSION_TAG = f"test-{uuid.uuid4().hex[:10]}"
TEST_SECRET_KEY = "docker-tier-secret-key-" + uuid.uuid4().hex
# Build through the host's network, as the tests' servers are on the host's loopback.
BUILD_ARGS = ["--network", "host"]


def build_image(kind, tag, *, cwd=ROOT, env=None, build_args=BUILD_ARGS, timeout=1800):
    """Run build_docker_image.sh KIND TAG in cwd; return the image name and the script's output.

    The name is the one cwd's project.env gives (www.project), so a renamed copy builds its own.
    """
    result = subprocess.run(
        [str(Path(cwd) / BUILD_SCRIPT.name), kind, tag, *build_args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    output = result.stdout + result.stderr
    if result.returncode != 0:
        raise AssertionError(f"build of {kind} {tag} failed:\n{output[-6000:]}")
    return project.load(Path(cwd) / project.PROJECT_FILE.name).image(kind, tag), output


def default_base_os_image():
    """The base OS image deploy/base/Dockerfile names (ARG BASE_OS_IMAGE's default)."""
    for line in (ROOT / "deploy" / "base" / "Dockerfile").read_text().splitlines():
        if line.startswith("ARG BASE_OS_IMAGE="):
            return line.partition("=")[2]
    raise AssertionError("deploy/base/Dockerfile has no ARG BASE_OS_IMAGE default")


def remove_image(client, name, *, keep_cache=False):
    """Remove exactly this name, with the intermediate images only it used, unless
    keep_cache: then they stay as the build cache (worth it where they are slow to build)."""
    with contextlib.suppress(docker.errors.ImageNotFound):
        client.images.remove(name, noprune=keep_cache)


@pytest.fixture(scope="session")
def docker_client():
    client = docker.from_env(timeout=300)
    client.ping()
    yield client
    client.close()


@pytest.fixture(scope="session")
def release_image(docker_client):
    name, _ = build_image("release", SESSION_TAG, env={"ALLOW_UNRELEASED_BUILD": "1"})
    yield name
    remove_image(docker_client, name)


@pytest.fixture(scope="session")
def dev_image(docker_client):
    name, _ = build_image("dev", SESSION_TAG)
    yield name
    remove_image(docker_client, name, keep_cache=True)  # Postgres and dev requirements


@pytest.fixture
def cdn_stand_in(aws):
    """The stage bucket's CloudFront distribution played on loopback (tests/cdn.py)."""
    with CdnStandIn(stage_bucket()) as cdn:
        yield cdn


def stage_config(
    postgres_server,
    dbname,
    *,
    secret_key=TEST_SECRET_KEY,
    cdn_domain="cdn.invalid",
    env="stage",
    **values,
):
    """The env's template (stage's unless named) filled in for a container on this machine's
    loopback; its secrets (the SECRET_KEY and the database password) stored in the emulator's
    SSM. Static URLs name cdn_domain: a tests.cdn.CdnStandIn's where a test loads them."""
    db = postgres_server.django_settings(dbname)
    filled = {
        "HOSTNAME": "127.0.0.1",
        "CDN_DOMAIN": cdn_domain,
        "DB_HOST": db["HOST"],
        "DB_PORT": db["PORT"],
        "DB_NAME": db["NAME"],
        "DB_USER": db["USER"],
        **values,
    }
    put_secrets(env, secret_key=secret_key, database_password=db["PASSWORD"])
    template = default_config_file(project.load().environment(env)).read_text()
    return fill_placeholders(template, filled)


def stage_bucket():
    return project.load().environment("stage").bucket


def ensure_bucket(s3, bucket):
    """The bucket with the project's policy (a made-up distribution as its one reader)."""
    with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
        s3.create_bucket(
            Bucket=bucket,
            CreateBucketConfiguration={"LocationConstraint": project.aws_region()},
        )
    policy = json_template(
        "bucket-policy.json",
        bucket=bucket,
        distribution_arn="arn:aws:cloudfront::123456789012:distribution/EDFDVBD6EXAMPLE",
    )
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))


def put_s3_config(source, *, bucket=None, key="config/stage.py"):
    """Upload a config to the emulator's bucket (the stage bucket by default); its URI."""
    s3 = aws.client("s3")
    bucket = bucket or stage_bucket()
    ensure_bucket(s3, bucket)
    s3.put_object(Bucket=bucket, Key=key, Body=source.encode())
    return f"s3://{bucket}/{key}"


def make_host_dir(prefix="docker-host-"):
    """A host directory for /host, owned by the image's app user as stage 2 leaves it."""
    path = tempfile.mkdtemp(prefix=prefix)
    os.chown(path, APP_UID, APP_UID)
    return path


class ReleaseContainer:
    """A running release container on the host network, listening on its own port."""

    def __init__(self, client, container, port, host_dir, own_host_dir):
        self.client = client
        self.container = container
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.host_dir = host_dir
        self.host_dir_path = Path(host_dir)
        self._own_host_dir = own_host_dir

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()

    def reload(self):
        self.container.reload()
        return self.container.attrs["State"]

    def logs(self):
        return self.container.logs().decode(errors="replace")

    def health(self):
        try:
            return requests.get(self.url + "/health", timeout=5).status_code
        except requests.RequestException:
            return None

    def wait_healthy(self, timeout=120):
        """Wait for /health 200; fail at once, with the logs, if the container exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.reload()
            if state["Status"] == "exited":
                raise AssertionError(
                    f"container exited ({state['ExitCode']}) before /health:\n{self.logs()}"
                )
            if self.health() == 200:
                return
            time.sleep(0.5)
        raise AssertionError(f"/health not 200 after {timeout}s:\n{self.logs()}")

    def wait_docker_health(self, status="healthy", timeout=60):
        """Wait for Docker's own HEALTHCHECK verdict."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            health = self.reload().get("Health", {}).get("Status")
            if health == status:
                return
            time.sleep(0.5)
        raise AssertionError(f"docker health not {status} after {timeout}s:\n{self.logs()}")

    def wait_exit(self, timeout=60):
        """The exit code, once the container has stopped by itself."""
        result = self.container.wait(timeout=timeout)
        return result["StatusCode"]

    def exec(self, *cmd, user=None):
        result = self.container.exec_run(list(cmd), user=user or "")
        return result.exit_code, result.output.decode(errors="replace")

    def remove(self):
        with contextlib.suppress(docker.errors.NotFound):
            self.container.remove(force=True)
        if self._own_host_dir:
            shutil.rmtree(self.host_dir, ignore_errors=True)


def container_env(config_uri, port, env):
    values = {
        **AWS_TEST_ENV,
        "PORT": str(port),
        "GUNICORN_WORKERS": "2",
        "DB_WAIT_TIMEOUT": "20",
        **(
            {"AWS_ENDPOINT_URL": os.environ["AWS_ENDPOINT_URL"]}
            if "AWS_ENDPOINT_URL" in os.environ
            else {}
        ),
        **({"DJANGO_CONFIG_URI": config_uri} if config_uri is not None else {}),
        **(env or {}),
    }
    return {k: v for k, v in values.items() if v is not None}


def run_release(
    client, image, *, config_uri, env=None, host_dir=None, port=None, command=None, **run_options
):
    """Start a release container (detached) on the host network; a ReleaseContainer.

    config_uri=None leaves DJANGO_CONFIG_URI unset; env entries set to None are removed.
    run_options go to containers.create (e.g. nano_cpus).
    The Docker health check runs every second here (the image's interval is 15s).
    """
    port = port or free_port()
    own_host_dir = host_dir is None
    host_dir = host_dir or make_host_dir()
    container = None
    try:
        # create, then start: a container that fails to start is still ours to remove.
        container = client.containers.create(
            image,
            command=command,
            network_mode="host",
            environment=container_env(config_uri, port, env),
            volumes={host_dir: {"bind": "/host", "mode": "rw"}},
            healthcheck={"interval": 1_000_000_000, "start_period": 60_000_000_000},
            labels={"tests.session": SESSION_TAG},
            **run_options,
        )
        container.start()
    except BaseException:
        if container is not None:
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True)
        if own_host_dir:
            shutil.rmtree(host_dir, ignore_errors=True)
        raise
    return ReleaseContainer(client, container, port, host_dir, own_host_dir)
