"""The stage log group in the emulator, and `./manage.py logs` read back or followed in a
subprocess: what the logs tests of every tier share."""

import contextlib
import datetime
import io
import os
import queue
import signal
import subprocess
import sys
import threading
import time

from django.core.management import call_command

from tests.helpers import ROOT, STAGE


def sigint_as_at_a_terminal():
    """A child's preexec_fn: SIGINT back to its default, which a background CI run ignores."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def logs(*args):
    out = io.StringIO()
    call_command("logs", "--env", "stage", *args, stdout=out)
    return out.getvalue().splitlines()


def put_line(client, stream, message, *, ago=datetime.timedelta(0)):
    """One line in the stage group's stream, timestamped `ago` before now; its timestamp."""
    moment = datetime.datetime.now(datetime.UTC) - ago
    stamp = int(moment.timestamp() * 1000)
    with contextlib.suppress(client.exceptions.ResourceAlreadyExistsException):
        client.create_log_stream(logGroupName=STAGE.log_group, logStreamName=stream)
    client.put_log_events(
        logGroupName=STAGE.log_group,
        logStreamName=stream,
        logEvents=[{"timestamp": stamp, "message": message}],
    )
    return stamp


def read_lines(stream, into):
    for line in stream:
        into.put(line.rstrip("\n"))


def wait_for(lines, seen, predicate, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            seen.append(lines.get(timeout=0.5))
        except queue.Empty:
            continue
        if predicate(seen):
            return
    raise AssertionError(f"not seen within {timeout}s; lines so far: {seen}")


def follow(*args):
    """`./manage.py logs --env stage --follow args` in a real process, Ctrl-C working as at a
    terminal; (the process, a queue of its stdout lines, the thread filling it)."""
    process = subprocess.Popen(
        [sys.executable, "manage.py", "logs", "--env", "stage", "--follow", *args],
        # a job started in the background (CI) inherits SIGINT ignored
        preexec_fn=sigint_as_at_a_terminal,
        cwd=ROOT,
        env=os.environ.copy(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines = queue.Queue()
    reader = threading.Thread(target=read_lines, args=(process.stdout, lines), daemon=True)
    reader.start()
    return process, lines, reader


def kill_if_running(process):
    if process.poll() is None:
        process.kill()
        process.wait(timeout=10)
