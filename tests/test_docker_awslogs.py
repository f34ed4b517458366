"""A real release container logs to CloudWatch through Docker's awslogs driver, and
`./manage.py logs` reads its lines back.

The container is started the way stage 2 starts it (the --log-opt set its log_options
prints, the access log on stdout), with the driver's endpoint pointed at moto's server
(stage 2 passes AWS_ENDPOINT_URL on as awslogs-endpoint). It runs on a Docker daemon
of the rig's own (tests/own_dockerd.py), because the driver takes its credentials from the
daemon's environment and the machine's shared daemon must stay as it is.
"""

import datetime
import os
import signal
import time
import uuid

import boto3
import pytest
import requests

from tests.cloudwatch import (
    follow,
    kill_if_running,
    logs,
    put_line,
    wait_for,
)
from tests.docker_rig import SESSION_TAG, put_s3_config, run_release, stage_config
from tests.own_dockerd import OwnDockerDaemon
from tests.stage2 import log_options
from www import project
from www.ops import logs as ops_logs
from www.ops.landscape import Landscape

pytestmark = pytest.mark.docker

PROJECT = project.load()
STAGE = Landscape.of(PROJECT, "stage")
INSTANCE = f"i-0rig{uuid.uuid4().hex[:12]}"  # the instance this container plays on
CONTAINER = f"{PROJECT.name}-{SESSION_TAG}"


@pytest.fixture(scope="module")
def own_daemon(docker_client, release_image):
    with OwnDockerDaemon() as daemon:
        daemon.load_image(docker_client, release_image)
        yield daemon


def wait_for_lines(*args, predicate, timeout=90):
    """logs(*args) once predicate(lines) holds; the awslogs driver sends every 5 s or so."""
    deadline = time.monotonic() + timeout
    while True:
        lines = logs(*args)
        if predicate(lines):
            return lines
        if time.monotonic() > deadline:
            raise AssertionError(f"logs {args} after {timeout}s:\n" + "\n".join(lines))
        time.sleep(2)


def test_container_lines_reach_cloudwatch_and_logs_reads_them(
    aws, postgres_server, own_daemon, release_image, tmp_path
):
    for _ in ops_logs.ensure_log_group(
        logs=boto3.client("logs"), landscape=STAGE, retention_days=PROJECT.log_retention_days
    ):
        pass
    db = postgres_server.create_database(f"awslogs_{uuid.uuid4().hex[:12]}")
    uri = put_s3_config(stage_config(postgres_server, db))
    stream = STAGE.log_stream(INSTANCE, CONTAINER)
    probe = uuid.uuid4().hex
    driver, options = log_options(  # stage 2's own, with AWS_ENDPOINT_URL: moto's server
        STAGE, region="eu-west-1", instance=INSTANCE, container=CONTAINER, directory=tmp_path
    )
    assert (driver, options["awslogs-stream"]) == ("awslogs", stream)
    assert options["awslogs-endpoint"] == os.environ["AWS_ENDPOINT_URL"]
    with run_release(
        own_daemon.client,
        release_image,
        config_uri=uri,
        env={"GUNICORN_ACCESS_LOG": "-"},  # as stage 2 runs it: requests in the container log
        name=CONTAINER,
        log_config={"type": driver, "config": options},
    ) as app:
        app.wait_healthy()
        assert requests.get(f"{app.url}/admin/login/?probe={probe}", timeout=10).status_code == 200

        # the request's access line, and the start-up before it, from the container's stream
        lines = wait_for_lines(predicate=lambda found: any(probe in line for line in found))
        ours = [line for line in lines if line.split()[1] == stream]
        assert ours == lines, "only this container logs to the group so far"
        (request,) = [line for line in ours if probe in line]
        assert f'"GET /admin/login/?probe={probe} HTTP/1.1" 200' in request
        startup = ours[: ours.index(request)]
        assert any("spawned: 'gunicorn'" in line for line in startup), startup
        stamps = [line.split()[0] for line in ours]
        assert stamps == sorted(stamps)

        # another instance's boot log, and an older line: --instance and --since tell them apart
        put_line(boto3.client("logs"), "i-0other/boot", "stage 2 of another instance")
        put_line(
            boto3.client("logs"),
            "i-0other/boot",
            "a boot two hours ago",
            ago=datetime.timedelta(hours=2),
        )
        both = wait_for_lines(predicate=lambda found: any("another" in line for line in found))
        assert not any("two hours ago" in line for line in both)
        assert any("two hours ago" in line for line in logs("--since", "3h"))
        mine = logs("--instance", INSTANCE)
        assert mine and all(line.split()[1] == stream for line in mine)
        assert [line.split()[1] for line in logs("--instance", "i-0other")] == ["i-0other/boot"]
        grep = logs("--grep", f"probe={probe}")
        assert [line for line in grep] == [request]

        # --follow, in a real process: a request made after it started shows up exactly once
        process, printed, _ = follow("--instance", INSTANCE, "--poll-seconds", "1")
        seen = []
        try:
            wait_for(printed, seen, lambda s: any(probe in line for line in s), 60)
            later = uuid.uuid4().hex
            requests.get(f"{app.url}/admin/login/?later={later}", timeout=10)
            wait_for(printed, seen, lambda s: any(later in line for line in s), 90)
            time.sleep(3)  # more polls over the same window
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=30) == 0, process.stderr.read()
        finally:
            kill_if_running(process)
        time.sleep(0.5)
        while not printed.empty():
            seen.append(printed.get())
        assert sum(later in line for line in seen) == 1, seen
        assert sum(probe in line for line in seen) == 1, seen
