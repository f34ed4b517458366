"""remote and session against moto's server: the Run Command request moto records, and the
invocation results the command reads back. moto runs nothing (no agent, no data plane): it
reports every invocation as a success with no output. What the command runs on the instance
(deploy/aws/remote.sh) runs for real in the docker tier (tests/test_walkthrough.py).
"""

import io
import os
import shlex
import subprocess
import sys

import boto3
import pytest
from django.core.management import CommandError, call_command

from tests.helpers import PROJECT, instances, launch
from www import project
from www.ops import remote


def run_remote(*args):
    out, err = io.StringIO(), io.StringIO()
    call_command("remote", "--env", "stage", *args, stdout=out, stderr=err)
    return out.getvalue()


def recorded_commands():
    return boto3.client("ssm").list_commands()["Commands"]


def sent_arguments(command):
    """The remote.sh arguments of the one shell line a Run Command request carries."""
    (line,) = command["Parameters"]["commands"]
    words = shlex.split(line)
    assert words[:2] == ["bash", "-c"] and words[3] == "remote.sh"
    return words[2], words[4:]


def test_migrate_runs_with_the_lock_on_the_only_instance(ready):
    launch()
    (instance,) = instances()
    out = run_remote("--", "migrate", "--no-input")
    (command,) = recorded_commands()
    assert command["DocumentName"] == "AWS-RunShellScript"
    assert command["InstanceIds"] == [instance["InstanceId"]]
    assert command["Parameters"]["executionTimeout"] == ["600"]
    script, arguments = sent_arguments(command)
    assert arguments == ["--", "migrate_with_lock", "--no-input"]
    assert f"RENDERED_CONTAINER='{PROJECT.name}'" in script and "{{" + "container}}" not in script
    # moto's invocation record, read back: its status and exit status per instance
    assert out.splitlines()[0] == f"== {instance['InstanceId']}: Success, exit status 0"


def test_several_instances_need_a_choice_and_migrate_only_one(ready):
    launch("--count", "2")
    first, second = (i["InstanceId"] for i in instances())
    with pytest.raises(
        CommandError, match=r"2 instances of .* run .*: pass --instance ID or --all"
    ):
        run_remote("--", "check")
    with pytest.raises(CommandError, match=r"^migrate changes the schema: it runs on one instance"):
        run_remote("--all", "--", "migrate")
    assert recorded_commands() == []

    out = run_remote("--all", "--", "check", "--deploy")
    (command,) = recorded_commands()
    assert sorted(command["InstanceIds"]) == sorted([first, second])
    assert sent_arguments(command)[1] == ["--", "check", "--deploy"]
    assert out.count("Success, exit status 0") == 2

    out = run_remote("--instance", second, "--", "migrate")
    (migrate,) = (c for c in recorded_commands() if "migrate_with_lock" in sent_arguments(c)[1])
    # moto adds every instance to a request without Targets (its filter of none matches all),
    # so its record lists both; what the command asked for and read back is the one instance.
    assert second in migrate["InstanceIds"]
    assert [line for line in out.splitlines() if line.startswith("==")] == [
        f"== {second}: Success, exit status 0"
    ]


def test_variables_pass_but_secrets_never_go_through_run_command(ready):
    launch()
    run_remote("-e", "DJANGO_SUPERUSER_USERNAME=admin", "--", "createsuperuser", "--no-input")
    (command,) = recorded_commands()
    assert sent_arguments(command)[1] == [
        "-e",
        "DJANGO_SUPERUSER_USERNAME=admin",
        "--",
        "createsuperuser",
        "--no-input",
    ]
    with pytest.raises(CommandError, match=r"-e DJANGO_SUPERUSER_PASSWORD: Run Command keeps"):
        run_remote("-e", "DJANGO_SUPERUSER_PASSWORD=hunter2", "--", "createsuperuser")
    with pytest.raises(CommandError, match=r"-e admin: write NAME=VALUE"):
        run_remote("-e", "admin", "--", "createsuperuser")
    assert len(recorded_commands()) == 1


def test_no_instance_or_a_foreign_one_is_one_line(ready):
    with pytest.raises(CommandError, match=r"no running instance of .*-stage: ./manage.py ec2_st"):
        run_remote("--", "check")
    launch()
    with pytest.raises(CommandError, match=r"i-0000 is not a running instance of"):
        run_remote("--instance", "i-0000", "--", "check")


def manage_py(*args, path):
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=project.BASE_DIR,
        env={**os.environ, "PATH": path},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_session_without_the_plugin_is_one_line(ready, tmp_path):
    launch()
    result = manage_py("session", "--env", "stage", path=str(tmp_path))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "CommandError: no AWS CLI (aws) on PATH: install it, then Session Manager's plugin"
    ]
    aws_cli = tmp_path / "aws"
    aws_cli.write_text('#!/bin/sh\necho "aws $*"\n')
    aws_cli.chmod(0o755)
    result = manage_py("session", "--env", "stage", path=str(tmp_path))
    assert result.stderr.startswith("CommandError: no session-manager-plugin on PATH: the AWS")


def test_session_execs_the_aws_cli_for_the_instance(ready, tmp_path):
    """A stand-in `aws` on PATH prints its arguments: the command has become that process."""
    launch()
    (instance,) = instances()
    for name in ("aws", "session-manager-plugin"):
        tool = tmp_path / name
        tool.write_text('#!/bin/sh\necho "$0 $*"\n')
        tool.chmod(0o755)
    result = manage_py("session", "--env", "stage", path=f"{tmp_path}:/usr/bin:/bin")
    assert result.returncode == 0, result.stderr
    argv = remote.session_command(instance_id=instance["InstanceId"], region="eu-west-1")
    assert result.stdout.splitlines() == [" ".join(argv), f"{tmp_path}/aws {' '.join(argv[1:])}"]
