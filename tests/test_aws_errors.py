"""The AWS commands' first-run failures: one line saying what to do, never a traceback.

No credentials and an unreachable endpoint are the real thing (no keys anywhere in the
environment; AWS_ENDPOINT_URL on a loopback port nobody listens on). Refusals come from a
second moto server that enforces IAM policies, with a user whose policy denies two calls.
"""

import io
import json

import boto3
import pytest
from django.core.management import CommandError, call_command

from tests.helpers import filled_config, manage
from tests.servers import MotoServer, free_port
from www import project

NO_CREDENTIALS = (
    "NoCredentialsError — no AWS credentials found: set AWS_PROFILE or "
    "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or run on an instance with a role"
)
# Each command, its arguments, and the first AWS call it makes.
COMMANDS = {
    "setup_aws": (["--env", "stage", "--dry-run"], "sts GetCallerIdentity"),
    "push_config": (["--env", "stage", "{config}"], "s3 GetObject"),
    "publish_image": (["--env", "stage", "1.0"], "s3 GetObject"),
    "launch_ec2": (["--env", "stage"], "s3 HeadBucket"),
    "ec2_status": (["--env", "stage"], "ec2 DescribeInstances"),
    "terminate_ec2": (
        ["--env", "stage", "i-0123456789abcdef0", "--no-input"],
        "ec2 DescribeInstances",
    ),
}


def run(command, tmp_path):
    args, _ = COMMANDS[command]
    # the config's secrets are not stored: the first AWS call fails before they are read
    config = str(filled_config(tmp_path, store_secrets=False)) if "{config}" in args else None
    args = [config if a == "{config}" else a for a in args]
    out = io.StringIO()
    call_command(command, *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


@pytest.fixture
def closed_endpoint(monkeypatch):
    """AWS_ENDPOINT_URL on a loopback port with nothing behind it."""
    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", url)
    return url


@pytest.mark.parametrize("command", COMMANDS)
def test_no_credentials_is_one_line(command, closed_endpoint, monkeypatch, tmp_path):
    # conftest points the AWS config files at /dev/null and turns instance metadata off, so
    # with the keys gone the default chain finds nothing (and the endpoint goes nowhere).
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(CommandError) as excinfo:
        run(command, tmp_path)
    _, first_call = COMMANDS[command]
    assert str(excinfo.value) == f"{first_call}: {NO_CREDENTIALS}"


@pytest.mark.parametrize("command", COMMANDS)
def test_unreachable_endpoint_is_one_line(command, closed_endpoint, tmp_path):
    with pytest.raises(CommandError) as excinfo:
        run(command, tmp_path)
    _, first_call = COMMANDS[command]
    assert str(excinfo.value) == (
        f"{first_call}: EndpointConnectionError — AWS endpoint unreachable ({closed_endpoint}): "
        "check the network, AWS_REGION, and AWS_ENDPOINT_URL if it is set"
    )


def test_manage_py_prints_the_line_and_no_traceback(closed_endpoint):
    result = manage("ec2_status", "--env", "stage")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "CommandError: ec2 DescribeInstances: EndpointConnectionError — AWS endpoint "
        f"unreachable ({closed_endpoint}): check the network, AWS_REGION, and "
        "AWS_ENDPOINT_URL if it is set"
    ]


# --- refusals: a moto server that enforces IAM ------------------------------------------------

# Requests moto serves before it starts checking credentials: the three that make the user.
SETUP_REQUESTS = 3
DENIED = ["s3:PutBucketVersioning", "ec2:DescribeInstances"]


@pytest.fixture(scope="module")
def enforcing_moto():
    """A moto server of its own that authorises every request after SETUP_REQUESTS, and a
    user allowed everything but DENIED; yields (server, access key id, secret key)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("INITIAL_NO_AUTH_ACTION_COUNT", str(SETUP_REQUESTS))  # read by the subprocess
    try:
        server = MotoServer().start()
    finally:
        mp.undo()
    try:
        iam = boto3.client("iam", endpoint_url=server.url)
        iam.create_user(UserName="operator")
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Action": "*", "Resource": "*"},
                {"Effect": "Deny", "Action": DENIED, "Resource": "*"},
            ],
        }
        iam.put_user_policy(
            UserName="operator", PolicyName="all-but", PolicyDocument=json.dumps(policy)
        )
        key = iam.create_access_key(UserName="operator")["AccessKey"]
        yield server, key["AccessKeyId"], key["SecretAccessKey"]
    finally:
        server.stop()


@pytest.fixture
def as_operator(enforcing_moto, monkeypatch):
    server, key_id, secret = enforcing_moto
    monkeypatch.setenv("AWS_ENDPOINT_URL", server.url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    return secret


def test_refused_bucket_call_names_the_call(as_operator):
    out = io.StringIO()
    with pytest.raises(CommandError) as excinfo:
        call_command("setup_aws", "--env", "stage", stdout=out)
    message = str(excinfo.value)
    assert message == (
        "s3 PutBucketVersioning: AccessDenied — these credentials may not do this: "
        "grant the permission to your IAM user or role"
    )
    assert as_operator not in message
    # what was done before the refusal was reported as it happened
    bucket = project.load().environment("stage").bucket
    assert f"Created bucket {bucket} encryption (SSE-S3 AES256)" in out.getvalue()


def test_refused_ec2_call_is_one_line(as_operator):
    # EC2 says UnauthorizedOperation where moto says AccessDenied; both get the same advice.
    with pytest.raises(CommandError) as excinfo:
        call_command("ec2_status", "--env", "stage", stdout=io.StringIO())
    assert str(excinfo.value) == (
        "ec2 DescribeInstances: AccessDenied — these credentials may not do this: "
        "grant the permission to your IAM user or role"
    )


def test_invalid_keys_are_one_line(enforcing_moto, monkeypatch):
    server, _, _ = enforcing_moto
    monkeypatch.setenv("AWS_ENDPOINT_URL", server.url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIANOTAREALKEY00000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-a-real-secret-canary")
    with pytest.raises(CommandError) as excinfo:
        call_command("ec2_status", "--env", "stage", stdout=io.StringIO())
    message = str(excinfo.value)
    assert message.startswith("ec2 DescribeInstances: AuthFailure — the AWS credentials are not")
    assert "not-a-real-secret-canary" not in message
