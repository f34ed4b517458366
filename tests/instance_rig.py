"""The instance rig of the boot tests (tests/test_boot_e2e.py), shared with the walk-through
test and bench.swap: a container plays the EC2 instance moto recorded, running the user-data
moto holds for it as cloud-init would, with the IMDSv2 test server answering for it and the
host's Docker engine doing stage 2's work. See tests/test_boot_e2e.py's docstring for how the
pieces fit. A pytest plugin (conftest's pytest_plugins): its fixtures are instance_image and rig.
"""

import contextlib
import io
import re
import shutil
import tarfile
import tempfile
import time
import uuid

import boto3
import docker
import pytest
import requests
from django.core.management import call_command

from tests.docker_rig import SESSION_TAG, stage_config
from tests.helpers import MOTO_UBUNTU_AMI
from tests.imds import IMDSServer, InstanceMetadata
from tests.servers import free_port
from www import project
from www.ops import images
from www.ops.landscape import Landscape
from www.project import BASE_DIR

PROJECT = project.load()
STAGE = Landscape.of(PROJECT, "stage")
USER_DATA_PATH = "/var/lib/cloud/instance/user-data.txt"  # where cloud-init keeps it
BOOT_PID = "/run/boot.pid"  # the boot's process group, for kill_boot
BOOTSTRAP_LOG = "/var/log/bootstrap.log"
HEALTH_TIMEOUT = 150  # stage 2's wait for /health, per container
REGISTRY_PATH = "e2e"
MARKER_SETTING = "E2E_DEPLOYED_BY"
# The user-data run as cloud-init runs it, in a process group of its own (its leader's pid in
# BOOT_PID) that kill_boot ends: Rig.boot's command, and each run of tests/fleet_rig.Timer.
BOOT_COMMAND = ["setsid", "--wait", "sh", "-c", f'echo $$ >{BOOT_PID}; exec "$0"', USER_DATA_PATH]
ERROR_LINE = re.compile(r"^\S+ (bootstrap|bootstrap-webserver): error: .*$", re.MULTILINE)


def base_os_image():
    """The OS image the project's base image is built from (deploy/base/Dockerfile's default)."""
    text = (BASE_DIR / "deploy" / "base" / "Dockerfile").read_text()
    return re.search(r"^ARG BASE_OS_IMAGE=(\S+)$", text, re.MULTILINE).group(1)


INSTANCE_DOCKERFILE = """\
FROM {os_image}
RUN apt-get update -q \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \\
      awscli ca-certificates curl docker-cli iproute2 nginx \\
 && rm -rf /var/lib/apt/lists/*
LABEL org.opencontainers.image.title="an EC2 instance for the boot tests ({tag})"
"""


def command(name, *args, env="stage"):
    out = io.StringIO()
    call_command(name, "--env", env, *args, stdout=out)
    return out.getvalue()


def recorded_image(landscape=STAGE):
    return images.read_release(s3=boto3.client("s3"), env=landscape.env)["IMAGE"]


class Rig:
    """One test's world: database, host directory, IMDS server, instance container, and the
    names of everything created, removed at teardown by those names."""

    def __init__(
        self, docker_client, postgres_server, moto_server, registry, tmp_path, landscape=STAGE
    ):
        self.landscape = landscape
        self.docker = docker_client
        self.postgres = postgres_server
        self.moto = moto_server
        self.registry = registry
        self.tmp_path = tmp_path
        self.id = uuid.uuid4().hex[:8]
        self.container_name = f"{PROJECT.name}-e2e-{self.id}"
        self.host_port = free_port()
        self.root = tempfile.mkdtemp(prefix="boot-e2e-")  # CONTAINERS_ROOT on both sides
        self.images = []  # references this test created, removed at teardown
        self.cdn = None  # a tests.cdn.CdnStandIn, where static URLs point
        self.imds = None
        self.instance = None
        self.instance_id = None
        self.dbname = None

    # --- the developer's side -------------------------------------------------------------

    def database(self):
        self.dbname = self.postgres.create_database(f"e2e_{self.id}")
        return self.dbname

    def config_file(self, **settings):
        source = stage_config(
            self.postgres,
            self.dbname,
            cdn_domain=self.cdn.domain if self.cdn else "cdn.invalid",
            env=self.landscape.env.name,
        )
        source += "".join(f"\n{name} = {value!r}\n" for name, value in settings.items())
        path = self.tmp_path / f"{self.landscape.env.name}.local.py"
        path.write_text(source)
        return path

    def derived_release(self, tag, *instructions):
        """<project>-release:TAG built FROM the session's release image, in seconds."""
        from_image = self.release_image
        dockerfile = "\n".join([f"FROM {from_image}", f"LABEL e2e.release={tag}", *instructions])
        name = PROJECT.image("release", tag)
        self.images.append(name)
        self.docker.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=name, rm=True)
        return self.docker.images.get(name)

    def publish(self, tag):
        repository = f"{self.registry.address}/{REGISTRY_PATH}/{PROJECT.name}-release"
        self.images.append(f"{repository}:{tag}")
        target = f"{self.registry.address}/{REGISTRY_PATH}"
        out = command("publish_image", tag, "--registry", target, env=self.landscape.env.name)
        self.images.append(recorded_image(self.landscape))  # the by-digest one stage 2 pulls
        return out

    # --- the instance's side --------------------------------------------------------------

    def launch_instance(self, instance_id=None, *, profile=None, **settings):
        """The instance moto launched (the environment's only one unless instance_id names
        one), played by a container: its metadata served by IMDS (its role from instance
        profile `profile` when moto recorded none). settings: more of stage 2's environment
        (its header lists them)."""
        ec2 = boto3.client("ec2")
        if instance_id is None:
            env_tag = {"Name": "tag:Env", "Values": [self.landscape.env.name]}
            (reservation,) = ec2.describe_instances(Filters=[env_tag])["Reservations"]
            (instance,) = reservation["Instances"]
            instance_id = instance["InstanceId"]
        metadata = InstanceMetadata.from_ec2(
            ec2, instance_id, iam=boto3.client("iam"), profile=profile
        )
        self.instance_id = instance_id
        self.imds = IMDSServer(metadata).start()
        self.instance = self.docker.containers.run(
            self.instance_image,
            ["sleep", "infinity"],
            name=f"{self.container_name}-instance",
            detach=True,
            init=True,
            network_mode="host",
            environment={
                "IMDS_ENDPOINT": self.imds.url,
                "AWS_ENDPOINT_URL": self.moto.url,
                "CONTAINERS_ROOT": self.root,
                "CONTAINER_NAME": self.container_name,
                "CONTAINER_NETWORK": "host",
                # the machine's shared daemon has no AWS credentials for the awslogs driver
                # (tests/test_docker_awslogs.py runs that driver on a daemon of its own)
                "CONTAINER_LOG_DRIVER": "json-file",
                "HOST_PORT": str(self.host_port),
                "HEALTH_TIMEOUT": str(HEALTH_TIMEOUT),
                "REDEPLOY_EVERY": "off",  # no systemd here: the test reruns the boot itself
                **settings,
            },
            volumes={
                "/var/run/docker.sock": {"bind": "/var/run/docker.sock", "mode": "rw"},
                self.root: {"bind": self.root, "mode": "rw"},
            },
            labels={"tests.session": SESSION_TAG},
        )
        self._put_user_data(metadata.paths["/latest/user-data"])
        return metadata

    def _put_user_data(self, user_data):
        data = io.BytesIO()
        with tarfile.open(fileobj=data, mode="w") as tar:
            for directory in ("var/lib/cloud", "var/lib/cloud/instance"):
                info = tarfile.TarInfo(directory)
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            info = tarfile.TarInfo(USER_DATA_PATH.lstrip("/"))
            info.size, info.mode = len(user_data), 0o700
            tar.addfile(info, io.BytesIO(user_data))
        assert self.instance.put_archive("/", data.getvalue())

    def boot(self, **settings):
        """Run the user-data as cloud-init does (settings: more of stage 2's environment, for
        this run only); (exit status, what it printed). It runs in a process group of its
        own, which kill_boot ends."""
        result = self.instance.exec_run(BOOT_COMMAND, environment=settings)
        return result.exit_code, result.output.decode(errors="replace")

    def kill_boot(self):
        """SIGKILL to a running boot's every process, as when the instance loses power: no
        exit trap runs."""
        result = self.instance.exec_run(["bash", "-c", f'kill -KILL -- "-$(<{BOOT_PID})"'])
        assert result.exit_code == 0, result.output.decode(errors="replace")

    def bootstrap_log(self):
        result = self.instance.exec_run(["cat", BOOTSTRAP_LOG])
        return result.output.decode(errors="replace")

    # --- what runs ------------------------------------------------------------------------

    def containers(self):
        """The project's containers this test's stage 2 started, by their exact names."""
        names = (self.container_name, f"{self.container_name}-next")
        names += (f"{self.container_name}-previous",)
        found = []
        for name in names:
            with contextlib.suppress(docker.errors.NotFound):
                found.append(self.docker.containers.get(name))
        return found

    def app(self):
        return self.docker.containers.get(self.container_name)

    def published_ports(self, container):
        """The ports Docker publishes for container (none on the host network)."""
        container.reload()
        return [p for p in (container.attrs["NetworkSettings"]["Ports"] or {}).values() if p]

    def url(self, path):
        return f"http://127.0.0.1:{self.host_port}{path}"

    def health(self):
        try:
            return requests.get(self.url("/health"), timeout=5).status_code
        except requests.RequestException:
            return None

    def wait_healthy(self, timeout=120):
        deadline = time.monotonic() + timeout
        while self.health() != 200 and time.monotonic() < deadline:
            time.sleep(1)
        return self.health()

    def teardown(self):
        for container in self.containers():
            container.remove(force=True)
        if self.instance is not None:
            self.instance.remove(force=True)
        if self.imds is not None:
            self.imds.stop()
        for name in reversed(self.images):
            with contextlib.suppress(docker.errors.ImageNotFound):
                self.docker.images.remove(name)
        shutil.rmtree(self.root, ignore_errors=True)


def deploy_and_boot(rig):
    """The walk-through of docs/deployment.md, in order; the commands' outputs."""
    tag = rig.release_image.partition(":")[2]
    outputs = {
        "setup_aws": command("setup_aws"),
        "publish_image": rig.publish(tag),
    }
    rig.database()
    outputs["push_config"] = command(
        "push_config", str(rig.config_file(**{MARKER_SETTING: f"boot-e2e {rig.id}"}))
    )
    outputs["launch_ec2"] = command("launch_ec2", "--ami", MOTO_UBUNTU_AMI)
    rig.launch_instance()
    status, output = rig.boot()
    assert status == 0, output
    return outputs, output


def error_lines(log):
    """The boot stages' own error lines (not the lines of a container's log they replay)."""
    return [match.group(0) for match in ERROR_LINE.finditer(log)]


def marker(app):
    """The marker setting as the app in container `app` sees it (its config from S3)."""
    code, out = app.exec_run(
        [
            "python3",
            "manage.py",
            "shell",
            "-c",
            f"from django.conf import settings; print(settings.{MARKER_SETTING})",
        ]
    )
    assert code == 0, out.decode(errors="replace")
    return out.decode().strip().splitlines()[-1]


def build_instance_image(docker_client, name, tag):
    """The instance image (INSTANCE_DOCKERFILE) as `name`, labelled with tag; its OS image
    must exist (the release image's build makes it: pulled, or the stand-in)."""
    dockerfile = INSTANCE_DOCKERFILE.format(os_image=base_os_image(), tag=tag)
    docker_client.images.build(
        fileobj=io.BytesIO(dockerfile.encode()),
        tag=name,
        network_mode="host",
        rm=True,
        forcerm=True,
        timeout=600,
    )
    return name


@pytest.fixture(scope="session")
def instance_image(docker_client, release_image):
    """The instance's OS with its tools; release_image first, as it makes the OS image exist
    (pulled, or the stand-in built from Debian packages)."""
    name = f"{PROJECT.name}-e2e-instance:{SESSION_TAG}"
    yield build_instance_image(docker_client, name, SESSION_TAG)
    # The tag and its LABEL layer go; the apt layer under it stays as the next session's cache.
    with contextlib.suppress(docker.errors.ImageNotFound):
        docker_client.images.remove(name, noprune=True)


@pytest.fixture
def rig(
    aws,
    docker_client,
    postgres_server,
    registry,
    release_image,
    instance_image,
    cdn_stand_in,
    tmp_path,
):
    rig = Rig(docker_client, postgres_server, aws, registry, tmp_path)
    rig.cdn = cdn_stand_in  # the distribution's stand-in: static files as a browser gets them
    rig.release_image = release_image
    rig.instance_image = instance_image
    yield rig
    rig.teardown()
