"""The environment's log group in CloudWatch Logs, and reading it: the operator's `logs`.

Every instance writes to the group /<project>/<env> (Landscape.log_group): Docker's awslogs
driver sends each container's output to the stream <instance-id>/<container>, and stage 2
sends the boot log of stages 1 and 2 to <instance-id>/boot (stage 1 itself when it fails
before stage 2 runs). Reading merges the streams in time order; following polls, re-reading
a short window so that a line which reaches CloudWatch late is still printed, and remembers
the event ids it printed so none is printed twice.
"""

import datetime
import json
import re
import time

from botocore import exceptions as aws_errors

from www.ops.errors import OpsError, error_code
from www.ops.results import converge

# A line may reach CloudWatch this long after its timestamp (the awslogs driver sends every
# 5 s; the boot log at the end of a stage): following re-reads this window on every poll.
LATE_LINE_WINDOW = datetime.timedelta(minutes=2)
DURATION = re.compile(r"^(\d+)([smhdw])$")
DURATION_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text):
    """'30m', '2h', '7d' ... as a timedelta; ValueError with one line for anything else."""
    match = DURATION.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a duration: give a number and a unit, e.g. 30m, 2h, 7d")
    return datetime.timedelta(**{DURATION_UNITS[match[2]]: int(match[1])})


def _log_group(logs, name):
    paginator = logs.get_paginator("describe_log_groups")
    for page in paginator.paginate(logGroupNamePrefix=name):
        for group in page["logGroups"]:
            if group["logGroupName"] == name:
                return group
    return None


def ensure_log_group(*, logs, landscape, retention_days, dry_run=False):
    """The environment's log group, keeping lines retention_days days (LOG_RETENTION_DAYS)."""
    name = landscape.log_group
    group = _log_group(logs, name)

    def apply():
        if group is None:
            tags = {tag["Key"]: tag["Value"] for tag in landscape.tags}
            logs.create_log_group(logGroupName=name, tags=tags)
        logs.put_retention_policy(logGroupName=name, retentionInDays=retention_days)

    current = None if group is None else {"retention": group.get("retentionInDays")}
    yield converge(
        f"log group {name}",
        current,
        {"retention": retention_days},
        apply,
        dry_run=dry_run,
        detail=f"lines kept {retention_days} days",
    )


def _milliseconds(moment):
    return int(moment.timestamp() * 1000)


def _streams(logs, group, instance):
    """Names of the group's streams of one instance (<instance-id>/...)."""
    paginator = logs.get_paginator("describe_log_streams")
    pages = paginator.paginate(logGroupName=group, logStreamNamePrefix=f"{instance}/")
    return [stream["logStreamName"] for page in pages for stream in page["logStreams"]]


def read_events(*, logs, landscape, since, instance=None, grep=None):
    """The group's events from since (a datetime) on, in time order.

    instance keeps the streams of that instance only; grep the lines that contain that text
    (CloudWatch's quoted-term filter: case-sensitive). A missing group is an OpsError that
    says to run setup_aws.
    """
    group = landscape.log_group
    request = {"logGroupName": group, "startTime": _milliseconds(since)}
    if grep:
        request["filterPattern"] = json.dumps(grep)  # a quoted term: the text as it is
    try:
        if instance:
            streams = _streams(logs, group, instance)
            if not streams:
                return []
            # filter_log_events takes at most 100 stream names
            batches = [streams[i : i + 100] for i in range(0, len(streams), 100)]
        else:
            batches = [None]
        events = []
        paginator = logs.get_paginator("filter_log_events")
        for batch in batches:
            named = {"logStreamNames": batch} if batch else {}
            for page in paginator.paginate(**request, **named):
                events.extend(page["events"])
    except aws_errors.ClientError as exc:
        if error_code(exc) == "ResourceNotFoundException":
            raise OpsError(
                f"log group {group} does not exist: run ./manage.py setup_aws "
                f"--env {landscape.env.name}"
            ) from None
        raise
    # stable: lines of one stream with the same time keep the order CloudWatch holds them in
    return sorted(events, key=lambda e: (e["timestamp"], e["logStreamName"]))


def follow_events(*, logs, landscape, since, instance=None, grep=None, poll_seconds=2.0):
    """read_events from since on, then every poll_seconds the lines that arrived since.

    Each poll re-reads the last LATE_LINE_WINDOW and skips the event ids already yielded, so
    no line is repeated and none that reaches CloudWatch late is skipped. Runs until the
    caller stops iterating (Ctrl-C in the command).
    """
    printed = {}  # eventId -> timestamp (ms), forgotten once out of the window
    start = since
    while True:
        poll_started = datetime.datetime.now(datetime.UTC)
        for event in read_events(
            logs=logs, landscape=landscape, since=start, instance=instance, grep=grep
        ):
            if event["eventId"] not in printed:
                printed[event["eventId"]] = event["timestamp"]
                yield event
        start = max(since, poll_started - LATE_LINE_WINDOW)
        oldest = _milliseconds(start)
        printed = {key: ts for key, ts in printed.items() if ts >= oldest}
        time.sleep(poll_seconds)


def format_event(event):
    """'<UTC time> <instance-id>/<source> <line>'."""
    moment = datetime.datetime.fromtimestamp(event["timestamp"] / 1000, datetime.UTC)
    stamp = moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    return f"{stamp} {event['logStreamName']} {event['message'].rstrip()}"
