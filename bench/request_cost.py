"""Request cost: CPU instructions per /health request, counted by valgrind, with the release's
gunicorn.conf.py against bare gunicorn running the same worker setting.

Requests per second on a shared virtual machine swing by up to 2x (bench.throughput); an
instruction count does not: the same program, input and environment give the same count
(within 0.3% here), whatever else the machine is doing. This counts what gunicorn and the app
execute per request, not what the kernel does for them (a log line's write(2), for one).

gunicorn runs from this checkout's .venv (the image's pinned gunicorn and Django), one worker
x 4 threads, in the project's default mode (no DJANGO_CONFIG_URI: SQLite in a temporary
DJANGO_DATA_DIR; /health runs SELECT 1), under `valgrind --tool=callgrind
--trace-children=yes`. A client sends N requests one after another on one keep-alive
connection; a setting's cost per request is (count(N2) - count(N1)) / (N2 - N1), which
cancels start-up and shut-down. Settings:
  bare                       gunicorn --workers 1 --threads 4 (no access log)
  release conf               --config deploy/release/gunicorn.conf.py, access log to a file
  release conf, log off      the same with GUNICORN_ACCESS_LOG=off
  bare + gunicorn's log      bare with gunicorn's own access log to a file
Target: release conf's requests per instruction >= 0.95x bare's.

    .venv/bin/python -m bench.request_cost [--requests 100,1100]
"""

import argparse
import http.client
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import common
from tests.servers import free_port

TARGET = 0.95
RELEASE_CONF = str(common.ROOT / "deploy/release/gunicorn.conf.py")
BARE = ["--workers", "1", "--threads", "4"]
# (name, gunicorn arguments, GUNICORN_ACCESS_LOG or None for a file in the run's directory)
SETTINGS = [
    ("bare", BARE, None),
    ("release conf", ["--config", RELEASE_CONF], None),
    ("release conf, log off", ["--config", RELEASE_CONF], "off"),
    ("bare + gunicorn's log", [*BARE, "--access-logfile", "{dir}/gunicorn-access.log"], None),
]
START_TIMEOUT = 600  # seconds: Django's start-up under valgrind is ~50x slower


def send_requests(port, count):
    """count sequential GET /health on one connection, once the server answers."""
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            connection.request("GET", "/health")
            connection.getresponse().read()
            break
        except OSError:
            if time.monotonic() > deadline:
                sys.exit(f"error: gunicorn on port {port} did not answer in {START_TIMEOUT}s")
            time.sleep(0.5)
    for _ in range(count):
        connection.request("GET", "/health")
        response = connection.getresponse()
        body = response.read()
        if response.status != 200:
            sys.exit(f"error: /health answered {response.status}: {body[:200]!r}")
    connection.close()


def count_instructions(name, arguments, access_log, requests, workdir):
    """Instructions executed by gunicorn (master and worker) serving requests + 1."""
    out = workdir / f"{name.replace(' ', '_')}-{requests}"
    out.mkdir()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_CONFIG_URI"}
    env |= {
        "PORT": str(port),
        "GUNICORN_WORKERS": "1",
        "GUNICORN_ACCESS_LOG": access_log or str(out / "access.log"),
        "DJANGO_DATA_DIR": str(workdir / "data"),
    }
    command = ["valgrind", "--tool=callgrind", "--trace-children=yes"]
    command += [f"--callgrind-out-file={out}/callgrind.%p", sys.executable, "-m", "gunicorn"]
    command += [a.format(dir=out) for a in arguments]
    command += ["--bind", f"127.0.0.1:{port}", "www.wsgi"]
    with open(out / "gunicorn.log", "wb") as log:
        server = subprocess.Popen(command, cwd=common.ROOT, env=env, stdout=log, stderr=log)
    try:
        send_requests(port, requests)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=300)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    total = 0
    for profile in out.glob("callgrind.*"):
        for line in profile.read_text(errors="replace").splitlines():
            if line.startswith(("summary:", "totals:")):
                total += int(line.split()[1])
                break
    if not total:
        sys.exit(f"error: no instruction count for {name}; see {out}/gunicorn.log")
    return total


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--requests",
        default="100,1100",
        help="the two request counts whose difference is measured (default 100,1100)",
    )
    args = parser.parse_args()
    low, high = (int(n) for n in args.requests.split(","))
    if not 0 <= low < high:
        sys.exit("error: --requests LOW,HIGH: set two counts with 0 <= LOW < HIGH")
    if not shutil.which("valgrind"):
        sys.exit("error: valgrind not found: apt-get install valgrind (bash .ci/run does)")
    print(f"machine: {common.machine()}")
    workdir = Path(tempfile.mkdtemp(prefix="bench-request-cost-"))
    per_request = {}
    try:
        for name, arguments, access_log in SETTINGS:
            counts = [
                count_instructions(name, arguments, access_log, n, workdir) for n in (low, high)
            ]
            per_request[name] = (counts[1] - counts[0]) / (high - low)
            common.log(f"{name}: {counts} -> {per_request[name]:,.0f} instructions/request")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    bare = per_request["bare"]
    print(f"instructions per /health request, ({high} - {low} requests) under callgrind")
    for name, cost in per_request.items():
        print(f"{name:<24}{cost:>14,.0f}{cost / bare - 1:>+9.1%}")
    # Requests per instruction, release against bare: the throughput a CPU-bound server has.
    return (
        0
        if common.result(
            "requests per instruction on /health, release gunicorn.conf.py vs bare",
            baseline=1 / bare * 1e6,
            measured=1 / per_request["release conf"] * 1e6,
            unit=" per M",
            target=TARGET,
            higher_is_better=True,
        )
        else 1
    )


if __name__ == "__main__":
    raise SystemExit(main())
