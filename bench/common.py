"""What the benchmarks share: the machine's description, Postgres and moto on loopback, the
release image under test, containers on the host network, and the one way results print.

Every benchmark measures its baseline in the same run, so the ratio it prints compares two
figures taken under the same load (this machine is shared; absolute figures are noisy).
Everything started here is stopped or removed by the id or exact name it was given.
"""

import argparse
import contextlib
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import docker
import requests

from tests import docker_rig
from tests.docker_rig import stage_config
from tests.servers import AWS_TEST_ENV, MotoServer, PostgresServer, RegistryServer, free_port
from www import aws, project

ROOT = Path(__file__).resolve().parent.parent
RUN_ID = uuid.uuid4().hex[:8]
LABEL = {"bench.run": RUN_ID}
SECRET_KEY = "bench-only-secret-key-" + uuid.uuid4().hex


def log(message):
    print(f"[bench] {message}", file=sys.stderr, flush=True)


class Stopped(KeyboardInterrupt):
    """SIGINT or SIGTERM, raised where the benchmark is: like Ctrl-C's exception, no `except
    Exception` catches it, and every `with` block on the way out removes what it started."""


def stop(signum, frame):
    # a second signal would break off the cleanup the first one started
    for each in (signal.SIGINT, signal.SIGTERM):
        signal.signal(each, signal.SIG_IGN)
    raise Stopped(signum)


def run(main):
    """A benchmark's main() run to its exit status. SIGTERM (timeout(1), kill) unwinds it as
    Ctrl-C does, so the servers, containers and image tags it started are removed by the same
    exits as on a normal end (without this a terminated run left them all behind); then the
    process dies of the signal."""
    for each in (signal.SIGINT, signal.SIGTERM):
        signal.signal(each, stop)
    try:
        return main()
    except Stopped as stopped:
        remove_run_containers()
        signum = stopped.args[0]
        log(f"stopped by {signal.Signals(signum).name}; what it started is removed")
        # die of the signal, so that a calling shell sees it (and stops on Ctrl-C)
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


def remove_run_containers():
    """This run's containers still there: a signal between a container's start and its
    `with` block leaves it to nothing else."""
    with contextlib.suppress(docker.errors.DockerException):
        labels = [f"{key}={value}" for key, value in LABEL.items()]
        for container in docker_client().containers.list(all=True, filters={"label": labels}):
            container.remove(force=True)


def arg_parser(description):
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--image",
        help="release image to measure (default: build one from this tree with "
        "build_docker_image.sh and remove its tag afterwards)",
    )
    return parser


# --- machine -------------------------------------------------------------------------------


def machine():
    """One line: what the figures were measured on."""
    with open("/proc/meminfo") as f:
        mem_kb = int(next(line for line in f if line.startswith("MemTotal")).split()[1])
    cpu = "unknown CPU"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    engine = subprocess.run(
        ["docker", "version", "--format", "{{.Server.Version}}"],
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout.strip()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{os.cpu_count()} CPUs ({cpu}), {mem_kb / 1024 / 1024:.1f} GiB RAM, "
        f"docker {engine}, kernel {platform.release()}, load average {load}"
    )


# --- the pages measured ---------------------------------------------------------------------

# Makes a superuser and a logged-in session for it, and the home page's five announcements;
# prints the session key.
SESSION_CODE = """
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.auth import get_user_model
from django.contrib.sessions.backends.db import SessionStore
user, _ = get_user_model().objects.get_or_create(
    username="bench", defaults={"is_staff": True, "is_superuser": True})
user.set_unusable_password(); user.save()
session = SessionStore()
session[SESSION_KEY] = str(user.pk)
session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
session[HASH_SESSION_KEY] = user.get_session_auth_hash()
session.create()
from www.models import Announcement
for n in range(5 - Announcement.objects.count()):
    Announcement.objects.create(title=f"Bench announcement {n}", body="A line of text. " * 20)
print("SESSION " + session.session_key)
"""


def session_cookie(output):
    """The Cookie header value for the session SESSION_CODE printed."""
    line = next(ln for ln in output.splitlines() if ln.startswith("SESSION "))
    return f"sessionid={line.split()[1]}"


# --- statistics and output -----------------------------------------------------------------


def median(values):
    return statistics.median(values)


def median_interval(values, confidence=0.95):
    """(low, high, coverage): the order statistics that hold the median of what values were
    drawn from with probability `coverage`, at least `confidence` where there are values enough
    (the sign test's interval, no assumption about the distribution), else the whole range and
    what it covers. For 9 values, the 2nd and the 8th: 96 %."""
    ordered = sorted(values)
    n = len(ordered)

    def coverage(cut):  # the interval without `cut` values at each end
        return 1 - 2 * sum(math.comb(n, i) for i in range(cut + 1)) / 2**n

    cut = 0
    while n - 2 * (cut + 1) >= 1 and coverage(cut + 1) >= confidence:
        cut += 1
    return ordered[cut], ordered[n - 1 - cut], coverage(cut)


def spread(values, unit):
    return ", ".join(f"{v:.2f}{unit}" for v in values)


def result(name, *, baseline, measured, unit, target, higher_is_better=False, ratio=None):
    """Print one result line: baseline, measured, ratio, and whether the target holds.

    target is a ratio (measured/baseline): a ceiling, or a floor when higher_is_better.
    ratio defaults to measured/baseline; a benchmark with paired rounds passes its own.
    Returns True when the target holds.
    """
    if ratio is None:
        ratio = measured / baseline if baseline else float("inf")
    ok = ratio >= target if higher_is_better else ratio <= target
    sign = ">=" if higher_is_better else "<="
    shown = f"{ratio:.2f}"
    if float(shown) == target and not ok:  # not "1.00x ... MISSED" for 0.996x
        shown = f"{ratio:.3f}"
    print(
        f"{name}: baseline {baseline:.2f}{unit}, measured {measured:.2f}{unit}, "
        f"ratio {shown}x (target {sign} {target:g}x) {'OK' if ok else 'MISSED'}",
        flush=True,
    )
    return ok


def absolute(name, *, measured, unit, limit, baseline=None, detail=""):
    """Print a result checked against an absolute limit (measured <= limit), with its ratio
    to a baseline when there is one. Returns True when the limit holds."""
    ok = measured <= limit
    against = ""
    if baseline is not None:
        against = f"baseline {baseline:.2f}{unit}, "
        detail = f", ratio {measured / baseline:.2f}x{detail}"
    print(
        f"{name}: {against}measured {measured:.2f}{unit}{detail} (target <= {limit:.2f}{unit}) "
        f"{'OK' if ok else 'MISSED'}",
        flush=True,
    )
    return ok


# --- servers on loopback -------------------------------------------------------------------


def instance_rig_servers(stack):
    """What the boot tests' instance rig (tests/instance_rig.py) needs, for bench.swap and
    bench.roll: AWS pointed at moto alone (no credentials file, no instance metadata),
    Django set up, and PostgreSQL, moto and a registry on loopback, stopped when
    contextlib.ExitStack `stack` closes. Returns (postgres, moto, registry)."""
    os.environ.update(AWS_TEST_ENV)
    os.environ["AWS_CONFIG_FILE"] = os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "www.settings")
    import django

    django.setup()
    postgres = PostgresServer().start()
    stack.callback(postgres.destroy)
    moto = MotoServer().start()
    stack.callback(moto.stop)
    os.environ["AWS_ENDPOINT_URL"] = moto.url
    registry = RegistryServer().start()
    stack.callback(registry.stop)
    return postgres, moto, registry


def instance_rig_images(stack, client, given):
    """The release image to measure (release_image: `given`, or one built now) and the boot
    tests' instance image, both untagged when contextlib.ExitStack `stack` closes."""
    from tests import instance_rig

    image = stack.enter_context(release_image(client, given))
    log("building the instance image (the OS of the base image, Debian's tools)")
    instance_image = instance_rig.build_instance_image(
        client, f"{instance_rig.PROJECT.name}-bench-instance:{RUN_ID}", RUN_ID
    )
    stack.callback(client.images.remove, instance_image, noprune=True)
    return image, instance_image


class Backends:
    """Postgres and moto on loopback, the stage bucket, and a stage config in it."""

    def __init__(self):
        self.postgres = PostgresServer()
        self.moto = MotoServer()
        self.env = project.load().environment("stage")
        self.bucket = self.env.bucket

    def __enter__(self):
        self.postgres.start()
        self.moto.start()
        os.environ.update(AWS_TEST_ENV)
        os.environ["AWS_ENDPOINT_URL"] = self.moto.url
        self.s3 = aws.client("s3")
        self.s3.create_bucket(
            Bucket=self.bucket,
            CreateBucketConfiguration={"LocationConstraint": project.aws_region()},
        )
        return self

    def __exit__(self, *exc):
        with contextlib.suppress(Exception):
            self.moto.stop()
        self.postgres.destroy()

    def new_database(self):
        return self.postgres.create_database(f"bench_{uuid.uuid4().hex[:8]}")

    def put_config(self, dbname, key="config/stage.py"):
        """The stage template filled in for this machine, uploaded; its s3:// URI."""
        source = stage_config(self.postgres, dbname, secret_key=SECRET_KEY)
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=source.encode())
        return f"s3://{self.bucket}/{key}"

    def log_offset(self):
        """Where moto's request log ends now; uploads_since() counts from here."""
        return self.moto.log_offset()

    def uploads_since(self, offset, prefix="static/"):
        """Object writes (PUT/POST) under prefix in the bucket, answered 200, that moto logged
        after offset."""
        under = f"/{self.bucket}/{prefix}"
        return sum(
            1
            for method, path, status in self.moto.requests_since(offset)
            if method in ("PUT", "POST") and status == "200" and path.startswith(under)
        )

    def delete_prefix(self, prefix):
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                self.s3.delete_objects(Bucket=self.bucket, Delete={"Objects": keys})


# --- images and containers -----------------------------------------------------------------


def docker_client():
    client = docker.from_env(timeout=300)
    client.ping()
    return client


def build_release(tag, *, cwd=ROOT, env=None, build_args=("--network", "host")):
    """Run build_docker_image.sh release TAG in cwd (the rig's build); (image name, seconds)."""
    start = time.monotonic()
    try:
        name, _ = docker_rig.build_image(
            "release",
            tag,
            cwd=cwd,
            env={"ALLOW_UNRELEASED_BUILD": "1", **(env or {})},
            build_args=list(build_args),
            timeout=3600,
        )
    except AssertionError as exc:
        sys.exit(f"error: release build failed:\n{str(exc)[-4000:]}")
    return name, time.monotonic() - start


@contextlib.contextmanager
def release_image(client, given):
    """The image to measure: the one given, or one built now and untagged afterwards."""
    if given:
        client.images.get(given)  # fails early, with the name, when it does not exist
        yield given
        return
    log("building the release image from this tree (ALLOW_UNRELEASED_BUILD=1)")
    name, seconds = build_release(f"bench-{RUN_ID}")
    log(f"built {name} in {seconds:.1f}s")
    try:
        yield name
    finally:
        with contextlib.suppress(docker.errors.ImageNotFound):
            client.images.remove(name, noprune=True)  # keep the layers: the build cache


@contextlib.contextmanager
def stage_release(client, given):
    """PostgreSQL and moto on loopback, a stage config for a new database in the bucket, and
    the release image under test (release_image): (backends, image, the config's URI)."""
    with Backends() as backends, release_image(client, given) as image:
        yield backends, image, backends.put_config(backends.new_database())


def make_host_dir():
    """A host directory for /host owned by the app user, as bootstrap stage 2 leaves it."""
    return docker_rig.make_host_dir(prefix="bench-host-")


class Container:
    """A container on the host network serving on self.port; removed by its id."""

    def __init__(self, client, image, *, config_uri, command=None, env=None, port=None, **kw):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.host_dir = make_host_dir()
        environment = {
            **AWS_TEST_ENV,
            "AWS_ENDPOINT_URL": os.environ["AWS_ENDPOINT_URL"],
            "DJANGO_CONFIG_URI": config_uri,
            "PORT": str(self.port),
            **(env or {}),
        }
        self.container = client.containers.run(
            image,
            command=command,
            detach=True,
            network_mode="host",
            environment=environment,
            volumes={self.host_dir: {"bind": "/host", "mode": "rw"}},
            labels=LABEL,
            **kw,
        )

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()

    def logs(self):
        return self.container.logs().decode(errors="replace")

    def wait_status(self, path="/health", *, status=200, timeout=120, interval=0.02):
        """Poll until path answers status; fail with the logs if it exits or times out."""
        deadline = time.monotonic() + timeout
        checks = 0
        while time.monotonic() < deadline:
            try:
                if requests.get(self.url + path, timeout=2).status_code == status:
                    return
            except requests.RequestException:
                pass
            checks += 1
            if checks % 25 == 0:
                self.container.reload()
                if self.container.status == "exited":
                    sys.exit(f"error: container exited before {path} answered:\n{self.logs()}")
            time.sleep(interval)
        sys.exit(f"error: {path} not {status} after {timeout}s:\n{self.logs()[-4000:]}")

    def remove(self):
        with contextlib.suppress(docker.errors.NotFound):
            self.container.remove(force=True)
        shutil.rmtree(self.host_dir, ignore_errors=True)


def run_once(client, image, *, config_uri, command, env=None, timeout=300):
    """Run a command to completion in a container of image; its output (fails on non-zero)."""
    container = client.containers.run(
        image,
        command=command,
        detach=True,
        network_mode="host",
        environment={
            **AWS_TEST_ENV,
            "AWS_ENDPOINT_URL": os.environ["AWS_ENDPOINT_URL"],
            "DJANGO_CONFIG_URI": config_uri,
            **(env or {}),
        },
        labels=LABEL,
    )
    try:
        status = container.wait(timeout=timeout)["StatusCode"]
        output = container.logs().decode(errors="replace")
    finally:
        container.remove(force=True)
    if status != 0:
        sys.exit(f"error: {command!r} exited {status}:\n{output[-4000:]}")
    return output
