"""The release's gunicorn.conf.py run for real (gunicorn from .venv, the default SQLite mode)
as start.sh runs it: the master imports the app while the start-up steps run but serves
nothing until start.sh opens the gate, and it exits by itself when start.sh kills supervisord
after a failed start."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.servers import free_port, served, wait_until

ROOT = Path(__file__).resolve().parent.parent
GUNICORN = [sys.executable, "-m", "gunicorn", "--config", "deploy/release/gunicorn.conf.py"]
IMPORTED = "App imported; serving once the start-up steps are done"


def status(url):
    try:
        return requests.get(url, timeout=2).status_code
    except requests.ConnectionError:
        return None


def gone(pid):
    """The process has exited (a zombie left for its new parent counts as exited)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


@pytest.fixture
def gated(tmp_path):
    """The gate's path, gunicorn's environment as start.sh sets it, its /health URL, its log."""
    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "GUNICORN_WORKERS": "1",
        "GUNICORN_START_GATE": str(tmp_path / "gate"),
        "GUNICORN_ACCESS_LOG": str(tmp_path / "access.log"),
        "DJANGO_DATA_DIR": str(tmp_path / "data"),
    }
    return tmp_path / "gate", env, f"http://127.0.0.1:{port}/health", tmp_path / "gunicorn.log"


def test_nothing_is_served_until_the_gate_opens(gated):
    gate, env, url, log = gated
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [*GUNICORN, "www.wsgi"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        wait_until(lambda: IMPORTED in log.read_text(), timeout=60, what="app import")
        time.sleep(0.5)  # time to bind, were it going to
        assert server.poll() is None, log.read_text()
        assert status(url) is None, "gunicorn served before the start-up steps were done"
        migrate = [sys.executable, "manage.py", "migrate", "--no-input"]
        subprocess.run(migrate, cwd=ROOT, env=env, check=True, capture_output=True, timeout=120)
        gate.touch()  # as start.sh's steps do once they have migrated
        wait_until(lambda: status(url) == 200, timeout=60, what="200 on /health")
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    assert "Traceback" not in log.read_text()
    # The worker's warm-up (GET / in-process, before its first request) succeeded and left
    # no line in the access log: every line there is one of this test's /health requests.
    assert "Warm-up" not in log.read_text()
    requests = [line.split('"')[1] for line in (log.parent / "access.log").read_text().splitlines()]
    assert requests and set(requests) == {"GET /health HTTP/1.1"}


# supervisord's stand-in: starts gunicorn, prints its pid, then waits to be killed.
PARENT = """
import subprocess, sys, time
child = subprocess.Popen(sys.argv[1:])
print(child.pid, flush=True)
time.sleep(300)
"""


def test_a_gated_master_exits_when_its_supervisor_is_killed(gated):
    gate, env, url, log = gated
    with open(log, "wb") as out:
        parent = subprocess.Popen(
            [sys.executable, "-c", PARENT, *GUNICORN, "www.wsgi"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=out,
            text=True,
        )
    master = int(parent.stdout.readline())
    try:
        wait_until(lambda: IMPORTED in log.read_text(), timeout=60, what="app import")
        parent.kill()  # what start.sh does to supervisord when a start-up step fails
        parent.wait(timeout=30)
        wait_until(lambda: gone(master), timeout=10, what="exit of the orphaned master")
    finally:
        if not gone(master):
            os.kill(master, signal.SIGKILL)
    assert not gate.exists()
    assert status(url) is None


# The release's settings, but the last of the first workers starts its warm-up 2 s late.
SLOW_LAST_WORKER = """
import runpy, time
globals().update(runpy.run_path({release!r}))
release_post_worker_init = post_worker_init


def post_worker_init(worker):
    if worker.age == worker.cfg.workers:
        time.sleep(2)
        worker.log.info("the last worker starts its warm-up")
    release_post_worker_init(worker)
"""


def test_no_worker_serves_until_all_are_warm(gated, tmp_path):
    """A swap switches to a new container at its first 200 on /health: by then every worker
    must be past its warm-up, none still starting beside the requests switched to it."""
    _, env, url, log = gated
    del env["GUNICORN_START_GATE"]
    env["GUNICORN_WORKERS"] = "3"
    config = tmp_path / "slow_last_worker.py"
    config.write_text(SLOW_LAST_WORKER.format(release=str(ROOT / GUNICORN[-1])))
    command = [*GUNICORN[:-1], str(config), "www.wsgi"]
    with open(log, "wb") as out:
        server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        # connections wait in the socket's queue while the workers warm up
        wait_until(lambda: served(url), timeout=60, what="200 on /health")
        first_served = log.read_text()
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    assert "the last worker starts its warm-up" in first_served, first_served
    assert first_served.count("Worker warm") == 3, first_served
    # the master removed the workers' count on its way out
    assert not list(Path("/dev/shm").glob(f"gunicorn-warm-{server.pid}")), "marks left behind"
