"""The two boot stages: shellcheck, the unrendered-template guard, and stage 1 run for real.

Stage 1 runs here on the host, against moto (AWS_ENDPOINT_URL) and the IMDSv2 test server
(IMDS_ENDPOINT) serving the metadata moto recorded for an instance launch_ec2 started. The
host already has Docker, curl and the AWS CLI, so stage 1 installs nothing; a run without
the AWS CLI on PATH would install Debian's awscli, so the test insists on it instead.
With no release published, stage 2 stops at its first step with its own clear error, which
shows stage 1 fetched and ran it. The full chain, image included, runs in the container that
plays the instance (the boot-stage tests).
"""

import base64
import grp
import http.server
import io
import json
import os
import stat
import subprocess
import threading
import time

import boto3
import pytest
from django.core.management import call_command

from tests.helpers import RELEASE, STAGE, record_release
from tests.imds import InstanceMetadata
from tests.stage1 import run_stage1
from www.ops import ec2, releases
from www.ops.config_push import STAGE2_TEMPLATE

STAGE1 = ec2.USER_DATA_FILE


def shellcheck(path):
    result = subprocess.run(["shellcheck", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_templates_pass_shellcheck():
    shellcheck(STAGE1)
    shellcheck(STAGE2_TEMPLATE)


def test_unrendered_stage1_refuses_to_run(tmp_path):
    result = subprocess.run(
        ["bash", str(STAGE1)],
        env={**os.environ, "BOOTSTRAP_LOG": str(tmp_path / "bootstrap.log")},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert "unrendered template: launch instances with ./manage.py launch_ec2" in result.stderr


def test_unrendered_stage2_refuses_to_run():
    result = subprocess.run(["bash", str(STAGE2_TEMPLATE)], capture_output=True, text=True)
    assert result.returncode == 1
    assert "unrendered template: upload it with ./manage.py push_config" in result.stderr


def test_user_data_sent_to_ec2_passes_shellcheck(launched, tmp_path):
    attribute = boto3.client("ec2").describe_instance_attribute(
        InstanceId=launched["InstanceId"], Attribute="userData"
    )
    path = tmp_path / "user-data.sh"
    path.write_bytes(base64.b64decode(attribute["UserData"]["Value"]))
    shellcheck(path)


def test_stage1_reads_imds_downloads_stage2_and_runs_it(launched, tmp_path):
    metadata = InstanceMetadata.from_ec2(boto3.client("ec2"), launched["InstanceId"])
    result = run_stage1(tmp_path, metadata)
    log = (tmp_path / "bootstrap.log").read_text()
    assert result.returncode == 1, log
    assert f"region eu-west-1, stage 2 from {STAGE.env.stage2_uri}" in log
    assert "running stage 2" in log
    # stage 2's own first step: the release record is missing
    assert "run ./manage.py publish_image --env stage TAG" in log
    assert "running stage 2" in result.stdout  # the console gets the log too
    stage2 = tmp_path / "bootstrap" / "webserver.sh"
    s3_copy = boto3.client("s3").get_object(Bucket=STAGE.bucket, Key=STAGE.env.stage2_key)
    assert stage2.read_bytes() == s3_copy["Body"].read()
    assert stage2.stat().st_mode & 0o777 == 0o700
    # The log may quote the container's last lines: root's alone.
    assert (tmp_path / "bootstrap.log").stat().st_mode & 0o777 == 0o600


def test_stage1_runs_its_kept_stage2_which_checks_itself_against_s3(aws, launched, tmp_path):
    """A timer run makes no AWS CLI call for stage 2: the copy stage 1 keeps checks itself
    with a conditional GET, and one pushed since replaces it and runs at once."""
    metadata = InstanceMetadata.from_ec2(boto3.client("ec2"), launched["InstanceId"])
    s3 = boto3.client("s3")
    kept = tmp_path / "bootstrap" / "webserver.sh"
    unchecked = kept.with_name("webserver.sh.unchecked")

    def stage2_requests(since):
        requests = aws.requests_since(since)
        return [
            (method, status) for method, path, status in requests if STAGE.env.stage2_key in path
        ]

    first = run_stage1(tmp_path, metadata)
    assert "run ./manage.py publish_image --env stage TAG" in first.stdout  # as above
    assert not unchecked.exists()  # the copy got through its check
    since = aws.log_offset()
    again = run_stage1(tmp_path, metadata)
    assert "run ./manage.py publish_image --env stage TAG" in again.stdout
    assert stage2_requests(since) == [("GET", "304")]  # curl's, and no download

    # A stage 2 pushed since comes with the GET's answer, replaces the copy and runs.
    pushed_copy = "#!/usr/bin/env bash\necho 'the pushed stage 2 ran'\nexit 3\n"
    s3.put_object(Bucket=STAGE.bucket, Key=STAGE.env.stage2_key, Body=pushed_copy.encode())
    newer = run_stage1(tmp_path, metadata)
    assert newer.returncode == 3, newer.stdout
    assert f"a new stage 2 is in {STAGE.env.stage2_uri}: running it" in newer.stdout
    assert "the pushed stage 2 ran" in newer.stdout
    assert kept.read_text() == pushed_copy
    assert stat.S_IMODE(kept.stat().st_mode) == 0o700

    # That copy never checked itself (it cannot): the next run downloads stage 2 again.
    assert unchecked.exists()
    since = aws.log_offset()
    run_stage1(tmp_path, metadata)
    assert ("GET", "200") in stage2_requests(since)


def test_stage1_makes_a_readable_log_private(launched, tmp_path):
    metadata = InstanceMetadata.from_ec2(boto3.client("ec2"), launched["InstanceId"])
    log = tmp_path / "bootstrap.log"
    log.write_text("an older boot's lines\n")
    log.chmod(0o644)
    run_stage1(tmp_path, metadata)
    assert log.stat().st_mode & 0o777 == 0o600
    assert log.read_text().startswith("an older boot's lines\n")


@pytest.mark.parametrize(
    "tag",
    [
        "s3://{bucket}/media/uploads/avatar.sh",  # a file any user of the site may upload
        "s3://attacker-bucket/deploy/webserver.sh",
        "s3://{bucket}/deploy/stage/webserver.sh.evil",
        "s3://{bucket}/deploy/prod/webserver.sh",  # another environment's stage 2
        "s3://{bucket}/deploy/../media/uploads/avatar.sh",
    ],
)
def test_stage1_runs_only_its_environments_stage2(launched, tmp_path, tag):
    """Whoever may tag an instance and upload a media file must not get a root shell."""
    tag = tag.format(bucket=STAGE.bucket)
    marker = tmp_path / "owned"
    boto3.client("s3").put_object(
        Bucket=STAGE.bucket, Key="media/uploads/avatar.sh", Body=f"touch {marker}\n".encode()
    )
    metadata = InstanceMetadata.from_ec2(boto3.client("ec2"), launched["InstanceId"])
    metadata.paths["/latest/meta-data/tags/instance/Bootstrap"] = tag
    result = run_stage1(tmp_path, metadata)
    assert result.returncode == 1
    errors = [line for line in result.stdout.splitlines() if "error:" in line]
    assert len(errors) == 1
    assert errors[0].endswith(
        f"bootstrap: error: the Bootstrap tag names {tag}, not this environment's stage 2 "
        f"({STAGE.env.stage2_uri}): refusing to run it; set the tag back or relaunch with "
        "./manage.py launch_ec2"
    )
    assert not marker.exists()
    assert not (tmp_path / "bootstrap" / "webserver.sh").exists()


def test_stage1_without_bootstrap_tag_fails_loudly(launched, tmp_path):
    metadata = InstanceMetadata.from_ec2(boto3.client("ec2"), launched["InstanceId"])
    del metadata.paths["/latest/meta-data/tags/instance/Bootstrap"]
    result = run_stage1(tmp_path, metadata)
    assert result.returncode == 1
    log = (tmp_path / "bootstrap.log").read_text()
    assert "no Bootstrap tag readable" in log
    assert not (tmp_path / "bootstrap" / "webserver.sh").exists()


def stage2_function(tmp_path, calls, env=None):
    """Run functions of the stage-2 script push_config uploaded, sourced into bash."""
    body = boto3.client("s3").get_object(Bucket=STAGE.bucket, Key=STAGE.env.stage2_key)
    script = tmp_path / "webserver.sh"
    script.write_bytes(body["Body"].read())
    return subprocess.run(
        ["bash", "-c", f'set -Eeuo pipefail; source "$0"; {calls}', str(script)],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_stage2_reads_the_release_record(configured, tmp_path):
    missing = stage2_function(tmp_path, "read_settings; release_image")
    assert missing.returncode == 1
    assert "run ./manage.py publish_image --env stage TAG" in missing.stderr
    record_release()
    found = stage2_function(tmp_path, "read_settings; release_image")
    assert found.returncode == 0, found.stderr
    assert found.stdout.strip() == RELEASE


def test_stage2_prepares_the_host_directory_for_the_app_user(configured, tmp_path):
    root = tmp_path / "containers"
    result = stage2_function(
        tmp_path,
        f"CONTAINERS_ROOT={root}; read_settings; prepare_host_dir",
    )
    assert result.returncode == 0, result.stderr
    app_uid = STAGE.project.app_uid
    for path in (root / STAGE.project.name, root / STAGE.project.name / "logs"):
        assert (path.stat().st_uid, path.stat().st_gid) == (app_uid, app_uid)
    # the release containers' sockets: the app's user and nginx's group only
    sockets = (root / f"{STAGE.project.name}-upstream").stat()
    assert (sockets.st_uid, grp.getgrgid(sockets.st_gid).gr_name) == (app_uid, "www-data")
    assert stat.S_IMODE(sockets.st_mode) == 0o750


# --- releases: the failed mark, the record pointed back, the status report ------------------

REPOSITORY = "127.0.0.1:5000/webapp-release"


def release(n):
    return f"{REPOSITORY}@sha256:{str(n) * 64}"


def publish_records(*tags):
    """Record releases one after another, as publish_image does (history and PREVIOUS_*)."""
    s3 = boto3.client("s3")
    for tag in tags:
        n = int(tag.partition(".")[0])  # release "2.0" is image release(2)
        list(
            releases.record(s3=s3, sts=None, env=STAGE.env, image=release(n), tag=tag, revision="r")
        )


@pytest.fixture
def pushed(configured):
    return boto3.client("s3")


def record_now(s3):
    values, etag = releases.read_record(s3, STAGE.env)
    return values, etag


def test_stage2_marks_a_release_failed_once_and_points_the_record_back(pushed, tmp_path):
    publish_records("1.0", "2.0")
    _, stale_etag = record_now(pushed)
    first = stage2_function(
        tmp_path,
        "read_settings; INSTANCE_ID=i-first; read_release; "
        'mark_release_failed "$RELEASE_IMAGE" "$RELEASE_TAG" "/health did not answer within 300s"',
    )
    assert first.returncode == 0, first.stderr
    assert "marked release 2.0 failed" in first.stderr
    values, _ = record_now(pushed)
    assert (values["IMAGE"], values["TAG"]) == (release(1), "1.0")
    assert values["ROLLED_BACK_FROM"] == "2.0"
    # A second instance that read the record before the first pointed it back also fails the
    # release: the first reason stands (If-None-Match) and a newer publish is kept (If-Match).
    publish_records("3.0")
    second = stage2_function(
        tmp_path,
        f"read_settings; INSTANCE_ID=i-second; RELEASE_IMAGE={release(2)} RELEASE_TAG=2.0 "
        f"PREVIOUS_IMAGE={release(1)} PREVIOUS_TAG=1.0 RECORD_ETAG='{stale_etag}'; "
        'mark_release_failed "$RELEASE_IMAGE" 2.0 "another reason"',
    )
    assert second.returncode == 0, second.stderr
    assert "already marked failed by another instance" in second.stderr
    assert "release record changed since it was read" in second.stderr
    mark = releases.failed_release(pushed, STAGE.env, release(2).partition("@")[2])
    assert (mark["instance"], mark["reason"]) == ("i-first", "/health did not answer within 300s")
    assert record_now(pushed)[0]["TAG"] == "3.0"
    out = io.StringIO()
    call_command("releases", "--env", "stage", stdout=out)
    assert "FAILED on i-first: /health did not answer within 300s" in out.getvalue()


def test_stage2_refuses_a_release_marked_failed(pushed, tmp_path):
    publish_records("1.0", "2.0")
    pushed.put_object(
        Bucket=STAGE.bucket,
        Key=STAGE.env.failed_release_key(release(2).partition("@")[2]),
        Body=b'{\n "reason": "it stopped (exited) before /health answered",\n "at": "x"\n}\n',
    )
    result = stage2_function(
        tmp_path,
        'read_settings; read_release; refuse_failed_release; echo "$RELEASE_IMAGE $RELEASE_TAG"',
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{release(1)} 1.0"
    assert (
        "release 2.0 is marked failed (it stopped (exited) before /health answered)"
        in result.stderr
    )
    assert record_now(pushed)[0]["TAG"] == "1.0"  # the first to see it points the record back


def test_stage2_reports_its_status_after_every_run(pushed, tmp_path):
    error = tmp_path / "last-error"
    state = {"STATE_DIR": str(tmp_path)}
    failed = stage2_function(
        tmp_path,
        f"read_settings; INSTANCE_ID=i-0abc; CONTAINER_NAME=no-such-{tmp_path.name}; "
        f"FAILURE_FILE={error}; printf 'cannot pull it\\n' >{error}; false || report_status",
        env=state,
    )
    assert failed.returncode == 0, failed.stderr
    key = f"{STAGE.env.status_prefix}i-0abc.json"
    status = json.loads(pushed.get_object(Bucket=STAGE.bucket, Key=key)["Body"].read())
    assert status["instance"] == "i-0abc"
    assert (status["healthy"], status["reason"]) == (False, "cannot pull it")
    assert status["at"].endswith("Z")
    unchanged = (
        f"read_settings; INSTANCE_ID=i-0abc; CONTAINER_NAME=no-such-{tmp_path.name}; report_status"
    )
    fine = stage2_function(tmp_path, unchanged, env=state)
    assert fine.returncode == 0, fine.stderr
    status = json.loads(pushed.get_object(Bucket=STAGE.bucket, Key=key)["Body"].read())
    assert (status["healthy"], status["reason"]) == (False, "no container answers /health")
    # The same report again is not written (one AWS CLI call less per quiet timer run) until
    # the last one is STATUS_REFRESH_MINUTES old.
    pushed.delete_object(Bucket=STAGE.bucket, Key=key)
    assert stage2_function(tmp_path, unchanged, env=state).returncode == 0
    with pytest.raises(pushed.exceptions.NoSuchKey):
        pushed.get_object(Bucket=STAGE.bucket, Key=key)
    eleven_minutes_ago = time.time() - 11 * 60
    os.utime(tmp_path / "status.json", (eleven_minutes_ago, eleven_minutes_ago))
    assert stage2_function(tmp_path, unchanged, env=state).returncode == 0
    status = json.loads(pushed.get_object(Bucket=STAGE.bucket, Key=key)["Body"].read())
    assert status["reason"] == "no container answers /health"


# --- the redeploy poll: conditional GETs through presigned URLs ------------------------------


@pytest.fixture
def refusing_server():
    """An HTTP server on loopback that answers 403 to every GET, as S3 answers a presigned
    URL whose signature or credentials have expired: (its base URL, the paths it refused)."""
    refused = []

    class Refuse(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            refused.append(self.path)
            self.send_response(403)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Refuse)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", refused
    server.shutdown()
    server.server_close()


def test_stage2_polls_the_release_with_conditional_gets(aws, pushed, tmp_path, refusing_server):
    publish_records("1.0")
    state = tmp_path / "state"
    env = {"STATE_DIR": str(state)}
    poll = 'read_settings; object_etag "$RELEASE_KEY"'
    etag = pushed.head_object(Bucket=STAGE.bucket, Key=STAGE.env.release_key)["ETag"].strip('"')

    first = stage2_function(tmp_path, poll, env=env)
    assert (first.returncode, first.stdout.strip()) == (0, etag), first.stderr
    (curl_config,) = (state / "presigned").glob("*.curl")  # the presigned URL, for curl
    signed = curl_config.stat()
    since = aws.log_offset()
    again = stage2_function(tmp_path, poll, env=env)
    assert (again.returncode, again.stdout.strip()) == (0, etag), again.stderr
    # Unchanged: S3 answered 304 to a presigned GET (curl's, no AWS CLI call), and no HEAD;
    # the URL was not signed again.
    requests = [r for r in aws.requests_since(since) if STAGE.env.release_key in r[1]]
    assert [(method, status) for method, _, status in requests] == [("GET", "304")], requests
    assert "X-Amz-Algorithm=AWS4-HMAC-SHA256" in requests[0][1]  # what S3 takes from any bucket
    assert (curl_config.stat().st_ino, curl_config.stat().st_mtime_ns) == (
        signed.st_ino,
        signed.st_mtime_ns,
    )
    # The URL is a credential: root's only, on no line printed.
    assert stat.S_IMODE((state / "presigned").stat().st_mode) == 0o700
    assert stat.S_IMODE(curl_config.stat().st_mode) == 0o600
    assert "X-Amz-Signature" not in first.stdout + first.stderr + again.stdout + again.stderr

    # A new release: the changed record's ETag.
    publish_records("2.0")
    etag = pushed.head_object(Bucket=STAGE.bucket, Key=STAGE.env.release_key)["ETag"].strip('"')
    changed = stage2_function(tmp_path, poll, env=env)
    assert (changed.returncode, changed.stdout.strip()) == (0, etag), changed.stderr

    # A URL S3 refuses (its credentials expired) is signed again, and the poll goes on.
    refusing_url, refused = refusing_server
    path = f"/{STAGE.bucket}/{STAGE.env.release_key}?X-Amz-Signature=expired"
    curl_config.write_text(f'url = "{refusing_url}{path}"\n')
    renewed = stage2_function(tmp_path, poll, env=env)
    assert (renewed.returncode, renewed.stdout.strip()) == (0, etag), renewed.stderr
    assert refused == [path]
    assert refusing_url not in curl_config.read_text()

    # On AWS (no endpoint override) the URL is signed with signature version 4 for the
    # bucket's regional host, whichever CLI signs it: a version 1 CLI's own choice would be
    # version 2 for the global host, which S3 refuses or redirects for a new bucket.
    on_aws = stage2_function(
        tmp_path,
        'unset AWS_ENDPOINT_URL; read_settings; presign "$RELEASE_KEY" "$STATE_DIR/on-aws" renewed;'
        ' echo "$AWS_REGION"; cat "$STATE_DIR/on-aws.curl"',
        env=env,
    )
    assert on_aws.returncode == 0, on_aws.stderr
    region, config = on_aws.stdout.splitlines()
    host = f"https://{STAGE.bucket}.s3.{region}.amazonaws.com"
    signed_url = f"{host}/{STAGE.env.release_key}?X-Amz-Algorithm=AWS4-HMAC-SHA256&"
    assert config.startswith(f'url = "{signed_url}'), config[:160]

    # A key nobody wrote: one line saying what S3 answered, and a non-zero status.
    missing = stage2_function(tmp_path, 'read_settings; object_etag "deploy/stage/none"', env=env)
    assert missing.returncode != 0
    assert f"GET s3://{STAGE.bucket}/deploy/stage/none: 404" in missing.stderr
