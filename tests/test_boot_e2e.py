"""The whole pipeline, offline: from setup_aws to a healthy release container on an "instance".

The commands run as a developer runs them (call_command): setup_aws, publish_image of the
session's release image to Debian's docker-registry on loopback, push_config of a filled-in
stage config (the session's Postgres, static files on the emulator's S3), launch_ec2. Then a
container plays the instance moto recorded: it runs the user-data moto holds for it, exactly
as cloud-init would, with the IMDSv2 test server answering for that instance (token, region,
tags, the role's credentials) and the host's Docker engine, reached through its socket,
doing stage 2's work. Nothing on the instance is given an AWS key: the AWS CLI there and the
app in the release container get the role's credentials from instance metadata.

Everything is on the host's loopback (--network host). Stage 2 creates its host directory,
CONTAINERS_ROOT/<project>, inside the instance container, while the engine mounts that path
from the host into the release container: so a per-test host directory is mounted at the
same path in the instance container and named as CONTAINERS_ROOT. The release container gets
a unique name (CONTAINER_NAME) and a free port for the instance's nginx (HOST_PORT; the
release containers behind it bind sockets in CONTAINERS_ROOT/<project>-upstream), and is
removed at teardown by that name. nginx runs inside the instance container (its own process
namespace): it goes with it.

The instance image is the Debian release of the project's base OS with the docker CLI, the
AWS CLI, curl and nginx from Debian's archive already in it, so stage 1 installs nothing here
(its install path costs a minute of downloads per run). Without systemd there, nothing starts
nginx when it is installed: stage 2 starts it, as it would on an instance where it stopped.
"""

import io
import json
import re
import time

import boto3
import psycopg2
import pytest
import requests
from django.core.management import CommandError, call_command

from tests.docker_rig import SESSION_TAG
from tests.helpers import MOTO_UBUNTU_AMI, instances
from tests.instance_rig import (
    BOOTSTRAP_LOG,
    MARKER_SETTING,
    PROJECT,
    REGISTRY_PATH,
    STAGE,
    command,
    deploy_and_boot,
    error_lines,
    marker,
    recorded_image,
)
from tests.load import SteadyLoad
from tests.servers import free_port
from www.ops import images

pytestmark = pytest.mark.docker


def test_pipeline_from_setup_aws_to_a_healthy_instance(rig):
    outputs, console = deploy_and_boot(rig)
    assert "Created" in outputs["publish_image"] and "Created" in outputs["launch_ec2"]

    log = rig.bootstrap_log()
    assert f"stage 2 from {STAGE.env.stage2_uri}" in log
    assert f"release of stage: {recorded_image()}" in log
    assert f"{rig.container_name}-next (stage) is up" in log  # on its socket
    live_socket = f"{rig.root}/{PROJECT.name}-upstream/live.sock"
    assert f"nginx on port {rig.host_port} proxies to {live_socket}" in log
    assert "live.sock points at blue.sock" in log
    assert f"{rig.container_name} (stage) is up on port {rig.host_port}" in log
    assert "running stage 2" in console  # cloud-init's console gets the log too
    # root's alone: on a failure it quotes the container's last log lines
    mode = rig.instance.exec_run(["stat", "-c", "%a %U", BOOTSTRAP_LOG]).output.decode().strip()
    assert mode == "600 root"
    # ... and in CloudWatch Logs, readable without SSH: stage 2 sent it to <instance-id>/boot
    (instance,) = boto3.client("ec2").describe_instances(
        Filters=[{"Name": "tag:Env", "Values": ["stage"]}]
    )["Reservations"][0]["Instances"]
    shipped = io.StringIO()
    call_command("logs", "--env", "stage", "--instance", instance["InstanceId"], stdout=shipped)
    assert f"{instance['InstanceId']}/boot" in shipped.getvalue()
    assert f"{rig.container_name} (stage) is up" in shipped.getvalue()

    # The site answers, with the settings of the config pushed to S3: DEBUG off, this host
    # allowed, the admin's CSS linked from the CDN and served from the bucket's static/ prefix.
    assert rig.health() == 200
    login = requests.get(rig.url("/admin/login/"), timeout=10)
    assert login.status_code == 200
    css = re.search(r'href="([^"]+/static/admin/css/base\.[0-9a-f]{12}\.css)"', login.text)
    assert css.group(1).startswith(f"https://{rig.cdn.domain}/static/")
    stylesheet = requests.get(css.group(1), timeout=10, verify=rig.cdn.ca_file)
    assert stylesheet.status_code == 200
    assert "immutable" in stylesheet.headers["Cache-Control"]  # a hashed name: cached for good
    (app,) = rig.containers()
    assert marker(app) == f"boot-e2e {rig.id}"

    # The image publish_image recorded, by digest; the role's credentials came from instance
    # metadata, as no key was given to the instance or the app.
    app.reload()
    assert app.attrs["Config"]["Image"] == recorded_image()
    assert app.image.id == rig.docker.images.get(rig.release_image).id
    for env in (app.attrs["Config"]["Env"], rig.instance.attrs["Config"]["Env"]):
        assert not [v for v in env if v.startswith(("AWS_ACCESS_KEY_ID=", "AWS_SECRET"))]
    assert f"DJANGO_CONFIG_URI={STAGE.env.config_uri}" in app.attrs["Config"]["Env"]

    # Postgres on loopback holds the migrated schema; /host is the host's directory.
    conn = psycopg2.connect(**rig.postgres.connect_kwargs(rig.dbname))
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM django_migrations WHERE app = 'auth'")
            assert cur.fetchone()[0] > 0
    finally:
        conn.close()
    container_log = f"{rig.root}/{PROJECT.name}/logs/container.log"
    with open(container_log) as f:
        assert "starting supervisord" in f.read()


def test_new_release_replaces_the_container_only_once_healthy(rig):
    deploy_and_boot(rig)
    first = rig.app()
    assert first.labels["bootstrap.slot"] == "blue"
    assert rig.published_ports(first) == []  # behind nginx only

    # Nothing published or pushed since: a rerun (the redeploy timer's) leaves it alone.
    status, output = rig.boot()
    assert status == 0, output
    assert (
        f"{rig.container_name} runs {recorded_image()} with the current config, unchanged" in output
    )
    assert [c.id for c in rig.containers()] == [first.id]

    # A new release reaches the running instance: publish it, run the boot again. The new
    # container takes the other slot; nginx switches to it before the old one stops.
    second_image = rig.derived_release(f"{SESSION_TAG}-2")
    rig.publish(f"{SESSION_TAG}-2")
    status, output = rig.boot()
    assert status == 0, output
    (app,) = rig.containers()
    assert app.name == rig.container_name and app.id != first.id
    assert app.image.id == second_image.id
    assert app.labels["bootstrap.slot"] == "green"
    assert rig.health() == 200
    # It started at a quarter of the serving one's CPU weight; now it serves, with the full one.
    host_config = app.attrs["HostConfig"]
    assert host_config["CpuShares"] == 1024
    assert host_config["RestartPolicy"]["Name"] == "unless-stopped"
    log = rig.bootstrap_log()
    new_up = log.index(f"{rig.container_name}-next (stage) is up")
    switched = log.index("live.sock points at green.sock")
    old_stopped = log.index(f"stopped {rig.container_name}-previous")
    assert new_up < switched < old_stopped

    # A new config alone (push_config) is picked up too: the container is replaced. This one
    # redirects plain HTTP to HTTPS, which shows that a client's own X-Forwarded-Proto (or
    # gunicorn's other scheme headers) do not reach the app: only a load balancer's would.
    command(
        "push_config",
        str(rig.config_file(**{MARKER_SETTING: "config 2", "SECURE_SSL_REDIRECT": True})),
    )
    status, output = rig.boot()
    assert status == 0, output
    (app,) = rig.containers()
    assert app.image.id == second_image.id and marker(app) == "config 2"
    assert app.labels["bootstrap.slot"] == "blue"
    for spoofed in ({"X-Forwarded-Proto": "https"}, {"X-Forwarded-Ssl": "on"}):
        response = requests.get(
            rig.url("/admin/login/"), headers=spoofed, allow_redirects=False, timeout=10
        )
        assert response.status_code == 301, spoofed
        assert response.headers["Location"].startswith("https://"), spoofed

    # A release that never becomes healthy: the running container keeps serving, and not one
    # request fails meanwhile.
    rig.derived_release(f"{SESSION_TAG}-bad", "ENV DJANGO_MIGRATE=maybe")
    rig.publish(f"{SESSION_TAG}-bad")
    with SteadyLoad([rig.url("/health")], threads=2, max_requests=50_000, max_seconds=300) as load:
        assert load.wait_for(50), load.failures()[:5]
        status, output = rig.boot()
        assert load.wait_for(load.count() + 50), load.failures()[:5]
    assert load.failures() == [], load.failures()[:5]
    assert status != 0
    assert error_lines(output)[-1].endswith(
        f"bootstrap-webserver: error: the new container did not become healthy: "
        f"{rig.container_name} keeps serving {app.attrs['Config']['Image']}"
    ), output
    assert "DJANGO_MIGRATE=maybe: set it to 1 or 0" in output  # the new container's last words
    (still,) = rig.containers()
    assert still.id == app.id and rig.health() == 200
    assert_the_failed_release_went_back(rig, f"{SESSION_TAG}-bad", f"{SESSION_TAG}-2", still)


def assert_the_failed_release_went_back(rig, bad, good, serving):
    """After one instance could not make release bad healthy: it is marked failed with that
    instance's reason, the record points back to good, the instance reports good, and neither
    its next run nor a deploy tries bad again."""
    (instance_id,) = [i["InstanceId"] for i in instances()]
    assert images.read_release(s3=boto3.client("s3"), env=STAGE.env)["TAG"] == good
    bad_line = next(line for line in command("releases").splitlines() if f" {bad} " in line)
    assert f"FAILED on {instance_id}: it stopped (exited) before /health answered" in bad_line
    report = json.loads(
        boto3.client("s3")
        .get_object(Bucket=STAGE.bucket, Key=f"{STAGE.env.status_prefix}{instance_id}.json")["Body"]
        .read()
    )
    assert (report["release"], report["healthy"]) == (good, True)
    assert "did not become healthy" in report["reason"]
    status, output = rig.boot()
    assert status == 0, output
    assert "trying " not in output  # exactly one attempt: this run starts no new container
    assert [c.id for c in rig.containers()] == [serving.id] and rig.health() == 200
    with pytest.raises(CommandError, match=rf"release {bad} failed on {instance_id}: it stopped"):
        command("deploy", bad, "--registry", f"{rig.registry.address}/{REGISTRY_PATH}")


def test_a_swap_under_load_fails_no_request(rig):
    """One instance, no load balancer: a new release replaces the running one while requests
    keep coming, and not one of them fails."""
    deploy_and_boot(rig)
    first = rig.app()
    second_image = rig.derived_release(f"{SESSION_TAG}-2")
    rig.publish(f"{SESSION_TAG}-2")

    urls = [rig.url("/health"), rig.url("/admin/login/")]
    with SteadyLoad(urls, threads=4, max_requests=100_000, max_seconds=400) as load:
        assert load.wait_for(200), load.failures()[:5]
        status, output = rig.boot()
        during = load.count()
        assert load.wait_for(during + 200), load.failures()[:5]
    assert status == 0, output

    failures = load.failures()
    assert failures == [], f"{len(failures)} of {load.count()} failed, e.g. {failures[:5]}"
    assert during >= 400  # requests kept coming while the boot ran
    (app,) = rig.containers()
    assert app.name == rig.container_name and app.id != first.id
    assert app.image.id == second_image.id  # and the requests after the boot, all 200, were its
    # nginx was not reloaded (a reload resets kept-alive connections): live.sock moved first,
    # then the old container stopped.
    assert "nginx reloaded" not in output
    assert output.index("live.sock points at green.sock") < output.index(
        f"stopped {rig.container_name}-previous"
    )


STAGE2_ON_INSTANCE = "/var/lib/bootstrap/webserver.sh"


def stage2_steps(rig, steps):
    """Run some of stage 2's functions on the instance, as a run interrupted after them."""
    script = (
        f"set -Eeuo pipefail; source {STAGE2_ON_INSTANCE}; read_settings; "
        'export AWS_EC2_METADATA_SERVICE_ENDPOINT="${IMDS_ENDPOINT%/}/"; '
        "CONFIG_ETAG=$(config_etag); image=$(release_image); "
        'slot=$(next_slot "$CONTAINER_NAME"); next="$CONTAINER_NAME-next"; ' + steps
    )
    result = rig.instance.exec_run(["bash", "-c", script])
    assert result.exit_code == 0, result.output.decode(errors="replace")


def test_an_interrupted_swap_is_finished_by_the_next_run(rig):
    deploy_and_boot(rig)
    first = rig.app()

    # Stopped while the new container was on trial: the next run removes it and swaps anew.
    rig.derived_release(f"{SESSION_TAG}-2")
    rig.publish(f"{SESSION_TAG}-2")
    stage2_steps(rig, 'pull_image "$image"; run_container "$next" "$image" "$slot" 1024')
    assert len(rig.containers()) == 2 and rig.health() == 200
    status, output = rig.boot()
    assert status == 0, output
    assert f"removing {rig.container_name}-next, left by an interrupted run" in output
    (second,) = rig.containers()
    assert second.id != first.id and second.attrs["Config"]["Image"] == recorded_image()

    # Stopped after live.sock moved to the new container, before the old one stopped: the
    # next run keeps the new one (the one nginx reaches) and retires the old one.
    third_image = rig.derived_release(f"{SESSION_TAG}-3")
    rig.publish(f"{SESSION_TAG}-3")
    stage2_steps(
        rig,
        'pull_image "$image"; run_container "$next" "$image" "$slot" 256; '
        'wait_healthy "$next"; switch_live "$slot"',
    )
    assert len(rig.containers()) == 2 and rig.health() == 200
    status, output = rig.boot()
    assert status == 0, output
    assert f"finishing an interrupted swap to {rig.container_name}-next" in output
    assert f"stopped {rig.container_name}-previous" in output
    (third,) = rig.containers()
    assert third.name == rig.container_name and third.image.id == third_image.id
    assert rig.health() == 200

    # Nothing left to do: the next run says so.
    status, output = rig.boot()
    assert status == 0 and "with the current config, unchanged" in output, output


def stage_failure(rig, breakage):
    """Launch with a release recorded, break one thing, boot: (status, console)."""
    command("setup_aws")
    rig.database()
    command("push_config", str(rig.config_file()))
    images.record_release(
        s3=boto3.client("s3"),
        env=STAGE.env,
        image=f"{rig.registry.address}/{REGISTRY_PATH}/{PROJECT.name}-release@sha256:" + "0" * 64,
        tag="missing",
    )
    command("launch_ec2", "--ami", MOTO_UBUNTU_AMI)
    metadata = rig.launch_instance()
    breakage(rig, metadata)
    return rig.boot()


def no_bootstrap_tag(rig, metadata):
    del metadata.paths["/latest/meta-data/tags/instance/Bootstrap"]


def stage2_missing(rig, metadata):
    boto3.client("s3").delete_object(Bucket=STAGE.bucket, Key=STAGE.env.stage2_key)


def registry_unreachable(rig, metadata):
    nowhere = f"127.0.0.1:{free_port()}/{REGISTRY_PATH}/{PROJECT.name}-release@sha256:" + "1" * 64
    images.record_release(s3=boto3.client("s3"), env=STAGE.env, image=nowhere, tag="x")


def image_missing(rig, metadata):
    pass  # the recorded digest was never pushed to the (running) registry


@pytest.mark.parametrize(
    ("breakage", "expected", "cause"),
    [
        (
            no_bootstrap_tag,
            r"bootstrap: error: no Bootstrap tag readable: launch with",
            r"error: 404",
        ),
        (
            stage2_missing,
            r"bootstrap: error: cannot download stage 2 from "
            r"s3://[^ ]+/deploy/stage/webserver\.sh: "
            r"upload it with \./manage\.py push_config",
            r"\(404\).*does not exist",
        ),
        (
            registry_unreachable,
            r"bootstrap-webserver: error: cannot pull 127\.0\.0\.1:\d+/\S+ from its registry "
            r"\(.*connection refused.*\): check IMAGE_REGISTRY",
            r"release of stage: 127\.0\.0\.1",
        ),
        (
            image_missing,
            r"bootstrap-webserver: error: image \S+ is not in the registry \(.*\): "
            r"publish it with \./manage\.py publish_image --env stage TAG",
            r"manifest unknown",
        ),
    ],
    ids=["no-bootstrap-tag", "stage2-missing", "registry-unreachable", "image-missing"],
)
def test_each_failure_says_where_it_stopped(rig, breakage, expected, cause):
    started = time.monotonic()
    status, console = stage_failure(rig, breakage)
    assert status == 1, console
    log = rig.bootstrap_log()
    lines = error_lines(log)
    assert len(lines) == 1, log  # one clear line, not a trace of every caller
    assert re.search(expected, lines[0]), log
    assert re.search(cause, log), log  # it stopped for that reason, not another
    assert lines[0] in console
    assert rig.containers() == []  # nothing half-started
    assert time.monotonic() - started < 180
