"""launch_ec2, ec2_status and terminate_ec2 against moto's server.

moto serves some public SSM parameters (Amazon Linux, ECS) but not Ubuntu's or Debian's, and,
like AWS, refuses to let anyone create parameters under /aws/. Its images include one of
Canonical's Ubuntu AMIs, which the launches use (--ami). The lookup is exercised with a
parameter of the account's own naming that Ubuntu AMI (--ami-parameter), the refusal of a
family stage 1 cannot boot with the Amazon Linux parameter moto serves, and the default
parameter's absence for its clear error.
"""

import base64
import http.client
import http.server
import io
import json
import re
import subprocess
import threading
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from django.core.management import CommandError, call_command

from tests.helpers import (
    MOTO_PUBLIC_AMI,
    MOTO_UBUNTU_AMI,
    PROJECT,
    RELEASE,
    STAGE,
    instances,
    launch,
    manage,
)
from tests.servers import free_port
from www.ops import ec2, templates
from www.ops.errors import OpsError


def tags_of(instance):
    return {t["Key"]: t["Value"] for t in instance["Tags"]}


def test_launch_tags_metadata_profile_groups_and_user_data(ready):
    out = launch()
    (instance,) = instances()
    assert f"Created instance {instance['InstanceId']}" in out
    assert instance["ImageId"] == MOTO_UBUNTU_AMI
    assert instance["InstanceType"] == "t3.small"
    tags = tags_of(instance)
    assert tags["Name"] == f"{PROJECT.name}-stage-web"
    assert tags["Project"] == PROJECT.name and tags["Env"] == "stage"
    assert tags["Bootstrap"] == f"s3://{STAGE.bucket}/deploy/stage/webserver.sh"
    assert tags["Release"] == RELEASE
    options = instance["MetadataOptions"]
    assert options["HttpTokens"] == "required"
    assert options["HttpEndpoint"] == "enabled"
    assert options["InstanceMetadataTags"] == "enabled"
    assert options["HttpPutResponseHopLimit"] == 2
    assert instance["IamInstanceProfile"]["Arn"].endswith(f"instance-profile/{STAGE.role}")
    assert [g["GroupName"] for g in instance["SecurityGroups"]] == [STAGE.web_group]
    attribute = boto3.client("ec2").describe_instance_attribute(
        InstanceId=instance["InstanceId"], Attribute="userData"
    )
    user_data = base64.b64decode(attribute["UserData"]["Value"]).decode()
    # stage 1, with the one stage-2 URI it will run and its log group filled in from project.env
    expected = f"STAGE2_URI='{STAGE.env.stage2_uri}'"
    assert user_data == ec2.USER_DATA_FILE.read_text().replace(
        "STAGE2_URI='{{stage2_uri}}'", expected
    ).replace("LOG_GROUP='{{log_group}}'", f"LOG_GROUP='{STAGE.log_group}'").replace(
        "#{{boot_functions}}", "#" + templates.boot_functions()
    )
    assert expected in user_data and "{{" not in user_data.replace("'{{'", "")
    assert len(user_data.encode()) < 16 * 1024


def test_rerun_launches_nothing_more(ready):
    launch()
    (first,) = instances()
    out = launch()
    address = first.get("PublicIpAddress") or first.get("PublicDnsName") or "no address"
    instance_id = first["InstanceId"]
    assert out.splitlines() == [
        f"instance {instance_id} exists, unchanged (running, {address})",
        f"alarm {STAGE.alarm(f'status-check-{instance_id}')} exists, unchanged",
    ]
    assert len(instances()) == 1


def test_count_and_overrides(ready):
    launch("--count", "2", "--ami", MOTO_UBUNTU_AMI, "--instance-type", "t3.micro")
    launched = instances()
    assert len(launched) == 2
    assert {i["ImageId"] for i in launched} == {MOTO_UBUNTU_AMI}
    assert {i["InstanceType"] for i in launched} == {"t3.micro"}
    assert all(tags_of(i)["Env"] == "stage" for i in launched)
    # a third one on request, the two running ones are kept
    launch("--count", "3")
    assert len(instances()) == 3


def test_wait_prints_the_public_address(ready):
    out = launch("--wait", "--wait-delay", "1")
    (instance,) = instances()
    assert instance["State"]["Name"] == "running"
    assert instance["PublicIpAddress"] in out


def test_dry_run_prints_the_request_and_launches_nothing(ready):
    out = launch("--dry-run")
    request = json.loads(out[: out.rindex("}") + 1])
    assert request["MetadataOptions"]["HttpTokens"] == "required"
    assert request["IamInstanceProfile"] == {"Name": STAGE.instance_profile}
    assert request["UserData"].startswith("#!/usr/bin/env bash")
    assert request["ClientToken"]
    assert f"Would create 1 instance(s) of {STAGE.prefix}" in out
    assert instances(states=ec2.EXISTING_STATES) == []


def test_default_ami_parameter_missing_is_a_clear_error(ready):
    with pytest.raises(
        CommandError, match=r"no AMI parameter /aws/service/canonical/ubuntu/.*pass --ami"
    ):
        call_command("launch_ec2", "--env", "stage", stdout=io.StringIO())
    assert instances(states=ec2.EXISTING_STATES) == []


def test_ami_parameter_is_looked_up(ready):
    name = f"/{PROJECT.name}/test/ubuntu-ami"
    boto3.client("ssm").put_parameter(
        Name=name, Value=MOTO_UBUNTU_AMI, Type="String", DataType="aws:ec2:image"
    )
    launch("--ami-parameter", name)
    (instance,) = instances()
    assert instance["ImageId"] == MOTO_UBUNTU_AMI


@pytest.mark.parametrize(
    ("args", "refusal"),
    [
        (
            ("--ami-parameter", MOTO_PUBLIC_AMI),
            r"^AMI ami-\w+ \(al2023-ami-[^)]*\) is not Debian or Ubuntu: stage 1 installs Docker "
            r"and the AWS CLI with apt; leave --ami/--ami-parameter out for Ubuntu LTS",
        ),
        (("--ami", "ami-1812c061"), r"^AMI ami-1812c061 \(Windows_Server-2016-[^)]*\) is not"),
        (("--ami", "ami-bb9a6bc2"), r"^AMI ami-bb9a6bc2 \(RHEL-7\.4[^)]*\) is not Debian"),
        (("--ami", "ami-0123456789abcdef0"), r"^no AMI ami-0123456789abcdef0 in this region"),
    ],
    ids=["amazon-linux", "windows", "rhel", "unknown"],
)
def test_an_ami_stage_1_cannot_boot_is_refused(ready, args, refusal):
    with pytest.raises(CommandError, match=refusal):
        launch(*args)
    assert instances(states=ec2.EXISTING_STATES) == []


def test_rerun_with_instances_running_needs_no_ami_lookup(ready):
    launch()
    (instance,) = instances()
    # the default parameter is missing here (see the docstring): a rerun never asks for it
    out = io.StringIO()
    call_command("launch_ec2", "--env", "stage", stdout=out)
    assert out.getvalue().startswith(f"instance {instance['InstanceId']} exists, unchanged")


def test_no_landscape(aws):
    with pytest.raises(CommandError, match="run ./manage.py setup_aws --env stage first"):
        launch()


def test_no_config_pushed(landscape):
    with pytest.raises(CommandError, match="run ./manage.py push_config --env stage first"):
        launch()


def test_no_image_published(configured):
    with pytest.raises(CommandError, match="run ./manage.py publish_image --env stage TAG first"):
        launch()
    assert instances(states=ec2.EXISTING_STATES) == []


def test_unknown_env(aws):
    with pytest.raises(CommandError, match="unknown environment 'qa'"):
        call_command("launch_ec2", "--env", "qa", stdout=io.StringIO())


def test_profile_gone_after_setup_is_caught_before_launch(ready):
    iam = boto3.client("iam")
    iam.remove_role_from_instance_profile(
        InstanceProfileName=STAGE.instance_profile, RoleName=STAGE.role
    )
    iam.delete_instance_profile(InstanceProfileName=STAGE.instance_profile)
    with pytest.raises(CommandError, match="no instance profile .*run ./manage.py setup_aws"):
        launch()
    assert instances(states=ec2.EXISTING_STATES) == []


def test_launch_failing_half_way_leaves_no_instance_running(ready):
    client = boto3.client("ec2")
    group_id, release = ec2.check_prerequisites(
        s3=boto3.client("s3"), ec2=client, iam=boto3.client("iam"), landscape=STAGE
    )
    request = ec2.launch_request(
        landscape=STAGE,
        ami=MOTO_UBUNTU_AMI,
        instance_type="t3.small",
        count=2,
        group_id=group_id,
        release=release,
        client_token=ec2.new_client_token(),
    )
    request["IamInstanceProfile"] = {"Name": "no-such-profile"}
    with pytest.raises(OpsError, match="launch failed .*no instance was left running") as raised:
        ec2.launch(ec2=client, landscape=STAGE, request=request)
    # One line with AWS's error code, never AWS's message text (it echoes the request).
    message = str(raised.value)
    assert re.fullmatch(r"launch failed \([A-Za-z.]+\); no instance was left running", message)
    assert "no-such-profile" not in message
    assert instances(states=ec2.EXISTING_STATES) == []


def test_status_lists_state_address_release_and_launch_time(ready):
    launch("--count", "2")
    out = io.StringIO()
    call_command("ec2_status", "--env", "stage", stdout=out)
    lines = out.getvalue().splitlines()
    assert lines[0].split() == ["id", "state", "address", "release", "health", "launched"]
    for instance in instances():
        row = next(line for line in lines if line.startswith(instance["InstanceId"]))
        assert "running" in row and RELEASE in row and instance["PublicIpAddress"] in row
    # Once an instance reports (stage 2's status object), its release and health are shown.
    reporter = instances()[0]["InstanceId"]
    boto3.client("s3").put_object(
        Bucket=STAGE.bucket,
        Key=f"{STAGE.env.status_prefix}{reporter}.json",
        Body=json.dumps(
            {"release": "2.0", "healthy": False, "reason": "/health did not answer"}
        ).encode(),
    )
    reported = io.StringIO()
    call_command("ec2_status", "--env", "stage", stdout=reported)
    row = next(line for line in reported.getvalue().splitlines() if line.startswith(reporter))
    assert "2.0" in row and "unhealthy: /health did not answer" in row
    other = io.StringIO()
    call_command("ec2_status", "--env", "prod", stdout=other)
    assert other.getvalue().strip() == f"No instances of {PROJECT.name}-prod."


def test_terminate_only_this_envs_instances(ready):
    launch("--count", "2")
    first, second = (i["InstanceId"] for i in instances())
    stranger = boto3.client("ec2").run_instances(
        ImageId="ami-0123456789abcdef0", MinCount=1, MaxCount=1
    )["Instances"][0]["InstanceId"]

    with pytest.raises(CommandError, match=f"not an instance of .*{stranger}; nothing"):
        call_command("terminate_ec2", "--env", "stage", first, stranger, "--no-input")
    with pytest.raises(CommandError, match="not an instance"):
        call_command("terminate_ec2", "--env", "prod", first, "--no-input")
    assert len(instances()) == 2

    out = io.StringIO()
    call_command("terminate_ec2", "--env", "stage", first, "--no-input", stdout=out)
    assert f"Terminated instance {first}" in out.getvalue()
    assert [i["InstanceId"] for i in instances()] == [second]
    state = boto3.client("ec2").describe_instances(InstanceIds=[stranger])
    assert state["Reservations"][0]["Instances"][0]["State"]["Name"] == "running"


def test_terminate_dry_run_and_rerun(ready):
    launch()
    (instance,) = instances()
    instance_id = instance["InstanceId"]
    out = io.StringIO()
    call_command("terminate_ec2", "--env", "stage", instance_id, "--dry-run", stdout=out)
    assert out.getvalue().splitlines() == [
        f"Would terminate instance {instance_id} (running)",
        f"Would delete alarm {STAGE.alarm(f'status-check-{instance_id}')} (its instance is gone)",
    ]
    assert [i["InstanceId"] for i in instances()] == [instance_id]

    call_command("terminate_ec2", "--env", "stage", instance_id, "--no-input", stdout=out)
    again = io.StringIO()
    call_command("terminate_ec2", "--env", "stage", instance_id, "--no-input", stdout=again)
    assert again.getvalue().strip() in (
        f"instance {instance_id} exists, unchanged (already {state})" for state in ec2.GONE_STATES
    )


def test_terminate_asks_first_and_a_no_changes_nothing(ready):
    launch()
    (instance,) = instances()
    result = manage("terminate_ec2", "--env", "stage", instance["InstanceId"], input="no\n")
    assert result.returncode == 1
    assert f"Terminate {instance['InstanceId']} of {STAGE.prefix}? Type 'yes'" in result.stdout
    assert "Terminate cancelled; nothing changed." in result.stderr
    assert [i["InstanceId"] for i in instances()] == [instance["InstanceId"]]


def test_terminate_with_no_answer_on_stdin_changes_nothing(ready):
    launch()
    (instance,) = instances()
    result = manage(
        "terminate_ec2", "--env", "stage", instance["InstanceId"], stdin=subprocess.DEVNULL
    )
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "CommandError: no answer on stdin; pass --no-input to terminate without asking"
    ]
    assert [i["InstanceId"] for i in instances()] == [instance["InstanceId"]]


def test_rerun_with_a_stopped_instance_says_start_or_terminate_it(ready):
    launch()
    (instance,) = instances()
    instance_id = instance["InstanceId"]
    boto3.client("ec2").stop_instances(InstanceIds=[instance_id])
    out = launch()
    assert out.splitlines() == [
        f"instance {instance_id} exists, stopped, serving nothing: start it "
        f"(aws ec2 start-instances --region eu-west-1 --instance-ids {instance_id}) "
        "or terminate it "
        f"(./manage.py terminate_ec2 --env stage {instance_id})",
        f"alarm {STAGE.alarm(f'status-check-{instance_id}')} exists, unchanged",
    ]
    assert [i["InstanceId"] for i in instances(states=ec2.EXISTING_STATES)] == [instance_id]
    status = io.StringIO()
    call_command("ec2_status", "--env", "stage", stdout=status)
    row = next(line for line in status.getvalue().splitlines() if line.startswith(instance_id))
    assert row.split()[1] == "stopped"


# --- failures between the client and EC2 -------------------------------------------------------


class DroppingProxy(http.server.ThreadingHTTPServer):
    """An HTTP proxy on loopback in front of moto that passes each request on, and for the
    EC2 actions drop(action) picks, hangs up instead of answering, as a connection lost
    after AWS has acted would. Records the actions it saw."""

    def __init__(self, upstream, drop):
        self.upstream = urlsplit(upstream)
        self.drop = drop
        self.actions = []
        super().__init__(("127.0.0.1", free_port()), _ProxyHandler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.shutdown()
        self.server_close()
        self.thread.join(timeout=10)


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _relay(self):
        proxy = self.server
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        action = parse_qs(body.decode(errors="replace")).get("Action", [""])[0]
        proxy.actions.append(action)
        upstream = http.client.HTTPConnection(
            proxy.upstream.hostname, proxy.upstream.port, timeout=30
        )
        try:
            upstream.request(self.command, self.path, body, dict(self.headers))
            response = upstream.getresponse()
            payload = response.read()
        finally:
            upstream.close()
        if proxy.drop(action, proxy.actions):
            self.close_connection = True  # no answer: the client sees the connection close
            return
        self.send_response(response.status)
        for name, value in response.getheaders():
            if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _relay


def emulator_instances(aws):
    """The env's instances as moto holds them, asked directly (not through the proxy)."""
    return ec2.environment_instances(ec2=boto3.client("ec2", endpoint_url=aws.url), landscape=STAGE)


def test_connection_lost_after_run_instances_terminates_what_it_started(ready, monkeypatch):
    with DroppingProxy(ready.url, drop=lambda action, _: action == "RunInstances") as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        with pytest.raises(CommandError) as excinfo:
            launch()
    started = proxy.actions.count("RunInstances")  # botocore retries: each one launched
    assert started >= 1
    assert str(excinfo.value) == (
        f"launch failed (ConnectionClosedError); terminated {started} instance(s) it had started"
    )
    assert emulator_instances(ready) == []


def test_a_failing_clean_up_still_reports_why_the_launch_failed(ready, monkeypatch):
    def after_run_instances(action, seen):
        return "RunInstances" in seen

    with DroppingProxy(ready.url, drop=after_run_instances) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        with pytest.raises(CommandError) as excinfo:
            launch()
    message = str(excinfo.value)
    assert message.startswith(
        "launch failed (ConnectionClosedError); the clean-up failed too (ConnectionClosedError): "
        "instances may be running; see ./manage.py ec2_status --env stage"
    )
    (instance,) = emulator_instances(ready)[:1]
    assert f"tag Launch={tags_of(instance)['Launch']}" in message
