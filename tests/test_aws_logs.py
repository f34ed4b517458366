"""`./manage.py logs` against moto's CloudWatch Logs: lines in time order with instance and
time, --since, --grep, --instance, a missing group, and --follow in a real subprocess that
sees a line written after it started exactly once and stops cleanly on Ctrl-C (SIGINT)."""

import datetime
import signal
import time
import uuid

import boto3
import pytest
from django.core.management import CommandError

from tests.cloudwatch import follow, kill_if_running, logs, put_line, wait_for
from tests.helpers import STAGE
from www.ops import logs as ops_logs


@pytest.fixture
def group(aws):
    client = boto3.client("logs")
    client.create_log_group(logGroupName=STAGE.log_group)
    return client


def minutes(n):
    return datetime.timedelta(minutes=n)


def test_lines_in_time_order_with_instance_and_time(group):
    put_line(group, "i-0bbb/webapp", "GET /admin/ 500", ago=minutes(1))
    put_line(group, "i-0aaa/webapp", "GET /health 200", ago=minutes(10))
    boot = put_line(group, "i-0bbb/boot", "bootstrap-webserver: up", ago=minutes(5))
    put_line(group, "i-0aaa/webapp", "an old line", ago=minutes(90))

    lines = logs()
    assert [line.split(" ", 1)[1] for line in lines] == [
        "i-0aaa/webapp GET /health 200",
        "i-0bbb/boot bootstrap-webserver: up",
        "i-0bbb/webapp GET /admin/ 500",
    ]
    assert lines[1] == ops_logs.format_event(
        {"timestamp": boot, "logStreamName": "i-0bbb/boot", "message": "bootstrap-webserver: up"}
    )
    shown = datetime.datetime.fromisoformat(lines[1].split()[0])
    assert abs(shown.timestamp() * 1000 - boot) < 1  # the line's own time, in UTC

    assert [line.split(" ", 1)[1] for line in logs("--since", "2h")][0] == (
        "i-0aaa/webapp an old line"
    )
    assert [line.split(" ", 1)[1] for line in logs("--grep", "/admin/")] == [
        "i-0bbb/webapp GET /admin/ 500"
    ]
    assert [line.split(" ", 1)[1] for line in logs("--instance", "i-0bbb")] == [
        "i-0bbb/boot bootstrap-webserver: up",
        "i-0bbb/webapp GET /admin/ 500",
    ]
    assert logs("--instance", "i-0ccc") == []
    assert [line.split(" ", 1)[1] for line in logs("--since", "3m")] == [
        "i-0bbb/webapp GET /admin/ 500"
    ]


def test_a_missing_group_says_to_run_setup_aws(aws):
    with pytest.raises(
        CommandError,
        match=r"^log group /webapp/stage does not exist: run ./manage.py setup_aws --env stage$",
    ):
        logs()


def test_a_bad_since_is_one_line(aws):
    with pytest.raises(CommandError, match=r"'5x' is not a duration: give a number and a unit"):
        logs("--since", "5x")


def test_follow_sees_a_new_line_exactly_once_and_stops_on_ctrl_c(group):
    put_line(group, "i-0aaa/webapp", "before follow", ago=minutes(2))
    proc, lines, reader = follow("--poll-seconds", "0.3")
    seen = []
    try:
        wait_for(lines, seen, lambda s: any("before follow" in line for line in s), 60)
        marker = f"written after follow started {uuid.uuid4().hex}"
        put_line(group, "i-0bbb/webapp", marker)
        wait_for(lines, seen, lambda s: any(marker in line for line in s), 30)
        time.sleep(2)  # several more polls, each re-reading the window that holds both lines
        proc.send_signal(signal.SIGINT)
        returncode = proc.wait(timeout=30)
    finally:
        kill_if_running(proc)
    reader.join(timeout=10)
    while not lines.empty():
        seen.append(lines.get())
    stderr = proc.stderr.read()
    assert returncode == 0, stderr
    assert "Traceback" not in stderr
    assert sum(marker in line for line in seen) == 1, seen
    assert sum("before follow" in line for line in seen) == 1, seen
    assert [line for line in seen if marker in line][0].split(" ", 1)[1] == (
        f"i-0bbb/webapp {marker}"
    )
