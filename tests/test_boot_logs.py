"""Stage 2 ships the boot log to CloudWatch Logs and sends the container's output there.

Stage 1 runs for real on the host (tests/stage1.py: moto, the IMDSv2 test
server); with no release published stage 2 fails at its first step, and that failed boot is
then readable with `./manage.py logs`, without SSH.
"""

import boto3

from tests.cloudwatch import logs
from tests.helpers import STAGE
from tests.imds import InstanceMetadata
from tests.stage1 import run_stage1
from tests.stage2 import log_options


def test_a_failed_boot_is_readable_with_logs_and_sent_once(launched, tmp_path):
    instance = launched["InstanceId"]
    metadata = InstanceMetadata.from_ec2(boto3.client("ec2"), instance)
    assert run_stage1(tmp_path, metadata).returncode == 1

    lines = logs("--instance", instance)
    assert lines, "the boot log reached CloudWatch"
    assert {line.split()[1] for line in lines} == {f"{instance}/boot"}
    messages = [line.split(" ", 2)[2] for line in lines]
    assert any(m.endswith("bootstrap: running stage 2") for m in messages), messages
    (error,) = [m for m in messages if "bootstrap-webserver: error:" in m]
    assert "run ./manage.py publish_image --env stage TAG" in error
    local = (tmp_path / "bootstrap.log").read_text().splitlines()
    # every line, in order (`logs` prints a message without its trailing blanks, such as the
    # one dpkg's "(Reading database ... " ends with when stage 1 installs nginx)
    assert messages == [line.rstrip() for line in local if line.strip()]

    # a second boot run sends its own lines only: nothing twice
    assert run_stage1(tmp_path, metadata).returncode == 1
    again = [line.split(" ", 2)[2] for line in logs("--instance", instance)]
    assert sum(m.endswith("bootstrap: running stage 2") for m in again) == 2
    assert len(again) == len(
        [line for line in (tmp_path / "bootstrap.log").read_text().splitlines() if line.strip()]
    )


def test_stage2_logs_the_container_to_its_instance_stream(tmp_path):
    driver, options = log_options(
        STAGE, region="eu-west-1", instance="i-0abc", container="webapp", directory=tmp_path
    )
    assert driver == "awslogs"
    assert options["awslogs-group"] == STAGE.log_group == "/webapp/stage"
    assert options["awslogs-stream"] == "i-0abc/webapp"
    assert options["awslogs-region"] == "eu-west-1"
    assert options["awslogs-create-group"] == "false"
    assert options["mode"] == "non-blocking"
    assert not any("key" in name or "secret" in name for name in options)  # the role's

    driver, options = log_options(
        STAGE,
        region="eu-west-1",
        instance="i-0abc",
        container="webapp",
        directory=tmp_path,
        driver="json-file",
    )
    assert (driver, options) == ("json-file", {"max-size": "20m", "max-file": "5"})
