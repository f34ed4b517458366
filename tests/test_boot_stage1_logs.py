"""A boot that fails in stage 1, before stage 2 runs, still reaches CloudWatch Logs.

Stage 1 runs for real on the host (tests/stage1.py: moto, the IMDSv2 test
server serving the metadata moto recorded for an instance launch_ec2 started). Its AWS CLI
has no key: the keys are taken out of its environment, so it sends the log with the instance
role's credentials, which the test IMDS hands out as EC2 does.
"""

import io
import os

import boto3
from django.core.management import call_command

from tests import cloudwatch
from tests.helpers import STAGE, filled_config
from tests.imds import InstanceMetadata
from tests.stage1 import run_stage1

NO_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


def run_stage1_with_role(tmp_path, instance_id):
    """The user-data EC2 holds for the instance, run as cloud-init would, keys only from IMDS."""
    metadata = InstanceMetadata.from_ec2(boto3.client("ec2"), instance_id, iam=boto3.client("iam"))
    assert metadata.paths.get("/latest/meta-data/iam/security-credentials") == STAGE.role
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in NO_KEYS and key != "AWS_EC2_METADATA_DISABLED"
    }
    return run_stage1(tmp_path, metadata, environment)


def logs(instance):
    return cloudwatch.logs("--instance", instance)


def messages(lines, instance):
    assert {line.split()[1] for line in lines} == {f"{instance}/boot"}
    return [line.split(" ", 2)[2] for line in lines]


def local_lines(tmp_path):
    return [line for line in (tmp_path / "bootstrap.log").read_text().splitlines() if line.strip()]


def test_a_stage1_failure_is_readable_with_logs_and_stage2_sends_only_the_rest(
    launched,
    tmp_path,
):
    instance = launched["InstanceId"]
    s3 = boto3.client("s3")
    s3.delete_object(Bucket=STAGE.bucket, Key=STAGE.env.stage2_key)

    result = run_stage1_with_role(tmp_path, instance)
    assert result.returncode == 1, result.stdout
    # said on the console (after the log file is complete, so not in it)
    assert f"the boot log is in CloudWatch Logs {STAGE.log_group}, stream {instance}/boot" in (
        result.stderr
    )
    shipped = messages(logs(instance), instance)
    (error,) = [m for m in shipped if "bootstrap: error:" in m]
    assert error.endswith(
        f"bootstrap: error: cannot download stage 2 from {STAGE.env.stage2_uri}: upload it "
        "with ./manage.py push_config --env ENV (and check the instance role)"
    )
    assert shipped == local_lines(tmp_path)  # every line of the failed boot, in order
    assert not any("running stage 2" in m for m in shipped)

    # stage 2 uploaded again: the next run gets to stage 2 (which stops: no release), whose own
    # shipping sends the new lines only, after the ones stage 1 sent
    call_command(
        "push_config", "--env", "stage", str(filled_config(tmp_path)), stdout=io.StringIO()
    )
    assert run_stage1_with_role(tmp_path, instance).returncode == 1
    again = messages(logs(instance), instance)
    assert again == local_lines(tmp_path)
    assert sum("cannot download stage 2" in m for m in again) == 1
    assert sum(m.endswith("bootstrap: running stage 2") for m in again) == 1


def test_a_failure_before_instance_metadata_is_read_is_sent_too(launched, tmp_path):
    instance = launched["InstanceId"]
    (tmp_path / "bootstrap").write_text("a file where stage 1 keeps its directory\n")
    result = run_stage1_with_role(tmp_path, instance)
    assert result.returncode == 1, result.stdout
    shipped = messages(logs(instance), instance)
    assert shipped[0].endswith("bootstrap: stage 1 starting")
    assert any("'install -d -m 0700 \"$BOOTSTRAP_DIR\"' failed" in m for m in shipped), shipped
    assert shipped == local_lines(tmp_path)
