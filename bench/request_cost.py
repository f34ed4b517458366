"""Request cost: CPU instructions per request on /health, / and /admin/, counted by valgrind,
with the release's gunicorn.conf.py against bare gunicorn running the same worker setting.

Requests per second on a shared virtual machine swing by up to 2x (bench.throughput); an
instruction count does not: the same program, input and environment give the same count
(within 0.3% here), whatever else the machine is doing. This counts what gunicorn and the app
execute per request, not what the kernel does for them (a log line's write(2), for one), nor
time spent waiting for the database.

gunicorn runs from this checkout's .venv (the image's pinned gunicorn and Django), one worker
x 4 threads, in the deployed mode: the stage config template filled in for a PostgreSQL
server on loopback (tests/servers.py), as bench.throughput runs it, under `valgrind
--tool=callgrind --trace-children=yes`. A client sends N requests one after another on one
keep-alive connection, with the session cookie of a logged-in superuser (the admin needs it;
the other pages ignore it); a setting's cost per request is (count(N2) - count(N1)) /
(N2 - N1), which cancels start-up and shut-down. Pages (bench.throughput's):
  /health   SELECT 1 through the health-check middleware
  /         the home page: the five newest announcements from the database
  /admin/   the admin index, logged in: session, user and recent-actions queries
Settings:
  bare                       gunicorn --workers 1 --threads 4 (no access log)
  release conf               --config deploy/release/gunicorn.conf.py, access log to a file
  release conf, log off      the same with GUNICORN_ACCESS_LOG=off
  bare + gunicorn's log      bare with gunicorn's own access log to a file (/health only)
  bare sync                  gunicorn --workers 1 (a sync worker)
Target: on every page, release conf's requests per instruction >= 0.95x bare's.

    .venv/bin/python -m bench.request_cost [--paths /health,/,/admin/] [--requests LOW,HIGH]
        [--settings "release conf;release conf, log off;bare + gunicorn's log"]
        [--conn-max-age SECONDS]
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
from tests.docker_rig import stage_config
from tests.servers import AWS_TEST_ENV, free_port

TARGET = 0.95
RELEASE_CONF = str(common.ROOT / "deploy/release/gunicorn.conf.py")
BARE = ["--workers", "1", "--threads", "4"]
# (name, gunicorn arguments, GUNICORN_ACCESS_LOG or None for a file in the run's directory,
#  the paths it is counted on or None for all)
SETTINGS = [
    ("bare", BARE, None, None),
    ("release conf", ["--config", RELEASE_CONF], None, None),
    ("release conf, log off", ["--config", RELEASE_CONF], "off", None),
    (
        "bare + gunicorn's log",
        [*BARE, "--access-logfile", "{dir}/gunicorn-access.log"],
        None,
        {"/health"},
    ),
    # one sync worker: no poller or thread pool, which bench.throughput's sync w2 may owe
    # /health's 2 % on gthread 2 x 4 to
    ("bare sync", ["--workers", "1"], None, None),
]
# The two request counts per page: enough for a difference well above the count's noise,
# few enough that the admin's (~15x /health's instructions) runs stay in minutes.
REQUESTS = {"/health": (100, 1100), "/": (20, 220), "/admin/": (10, 60)}
START_TIMEOUT = 600  # seconds: Django's start-up under valgrind is ~50x slower


def send_requests(port, path, count, cookie):
    """count sequential GET path on one connection, once the server answers."""
    headers = {"Cookie": cookie}
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            connection.request("GET", path, headers=headers)
            connection.getresponse().read()
            break
        except OSError:
            if time.monotonic() > deadline:
                sys.exit(f"error: gunicorn on port {port} did not answer in {START_TIMEOUT}s")
            time.sleep(0.5)
    for _ in range(count):
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        body = response.read()
        if response.status != 200:
            sys.exit(f"error: {path} answered {response.status}: {body[:200]!r}")
    connection.close()


def count_instructions(name, arguments, access_log, path, requests, *, env, workdir, cookie):
    """Instructions executed by gunicorn (master and worker) serving requests + 1."""
    out = workdir / f"{name.replace(' ', '_')}-{path.strip('/') or 'home'}-{requests}"
    out.mkdir()
    port = free_port()
    env = env | {
        "PORT": str(port),
        "GUNICORN_WORKERS": "1",
        "GUNICORN_ACCESS_LOG": access_log or str(out / "access.log"),
    }
    command = ["valgrind", "--tool=callgrind", "--trace-children=yes"]
    command += [f"--callgrind-out-file={out}/callgrind.%p", sys.executable, "-m", "gunicorn"]
    command += [a.format(dir=out) for a in arguments]
    command += ["--bind", f"127.0.0.1:{port}", "www.wsgi"]
    with open(out / "gunicorn.log", "wb") as log:
        server = subprocess.Popen(command, cwd=common.ROOT, env=env, stdout=log, stderr=log)
    try:
        send_requests(port, path, requests, cookie)
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


def deployed_env(postgres, workdir, conn_max_age):
    """The environment of a deployed start: the stage config for a new, migrated database
    holding the pages' rows and a logged-in session, its secrets in moto's SSM and its static
    files collected to moto's S3 (hashed names: the pages name them); and the cookie."""
    dbname = postgres.create_database("bench_request_cost")
    config = workdir / "stage.py"
    # By default connections are kept for good, as the template keeps them (until the twelfth
    # session it kept them 60 s, which under valgrind, where a request takes ~50x its time,
    # meant a SCRAM handshake every few dozen requests). --conn-max-age 0 counts a new
    # connection per request.
    config.write_text(
        stage_config(postgres, dbname, secret_key=common.SECRET_KEY)
        + f'\nDATABASES["default"]["CONN_MAX_AGE"] = {conn_max_age}\n'
    )
    env = os.environ | AWS_TEST_ENV | {"DJANGO_CONFIG_URI": f"file://{config}"}
    manage = [sys.executable, str(common.ROOT / "manage.py")]
    steps = (
        ["migrate", "--no-input"],
        ["collectstatic_once", "--no-input"],
        ["shell", "-c", common.SESSION_CODE],
    )
    for command in steps:
        done = subprocess.run(
            manage + command, env=env, capture_output=True, text=True, timeout=300
        )
        if done.returncode != 0:
            sys.exit(f"error: manage.py {command[0]} failed:\n{done.stdout}{done.stderr}")
    return env, common.session_cookie(done.stdout)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--paths", default=",".join(REQUESTS), help="comma-separated (default: all three)"
    )
    parser.add_argument(
        "--requests",
        help="the two request counts whose difference is measured, for every page "
        "(default per page: " + "; ".join(f"{p} {a},{b}" for p, (a, b) in REQUESTS.items()) + ")",
    )
    parser.add_argument(
        "--settings",
        default=";".join(name for name, *_ in SETTINGS),
        help="semicolon-separated names of the settings to count (default: all; bare always)",
    )
    parser.add_argument(
        "--conn-max-age",
        type=int,
        default=None,
        help="the config's CONN_MAX_AGE (default: none, connections kept for good; 0: a new "
        "database connection for every request)",
    )
    args = parser.parse_args()
    paths = args.paths.split(",")
    chosen = {"bare", *args.settings.split(";")}
    if unknown := chosen - {name for name, *_ in SETTINGS}:
        sys.exit(f"error: --settings {';'.join(unknown)}: set names among those in --help")
    if unknown := [p for p in paths if p not in REQUESTS]:
        sys.exit(f"error: --paths {','.join(unknown)}: set pages among {', '.join(REQUESTS)}")
    counts = {path: REQUESTS[path] for path in paths}
    if args.requests:
        low, high = (int(n) for n in args.requests.split(","))
        if not 0 <= low < high:
            sys.exit("error: --requests LOW,HIGH: set two counts with 0 <= LOW < HIGH")
        counts = {path: (low, high) for path in paths}
    if not shutil.which("valgrind"):
        sys.exit("error: valgrind not found: apt-get install valgrind (bash .ci/run does)")
    print(f"machine: {common.machine()}")
    workdir = Path(tempfile.mkdtemp(prefix="bench-request-cost-"))
    per_request = {path: {} for path in paths}
    try:
        # moto stands in for SSM (the config's secrets) and S3 (the static files' manifest)
        with common.Backends() as backends:
            env, cookie = deployed_env(backends.postgres, workdir, args.conn_max_age)
            for path in paths:
                low, high = counts[path]
                for name, arguments, access_log, only in SETTINGS:
                    if name not in chosen or (only and path not in only):
                        continue
                    n = [
                        count_instructions(
                            name,
                            arguments,
                            access_log,
                            path,
                            requests,
                            env=env,
                            workdir=workdir,
                            cookie=cookie,
                        )
                        for requests in (low, high)
                    ]
                    per_request[path][name] = (n[1] - n[0]) / (high - low)
                    common.log(f"{path} {name}: {n} -> {per_request[path][name]:,.0f} per request")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    ok = True
    for path in paths:
        low, high = counts[path]
        bare = per_request[path]["bare"]
        print(f"instructions per {path} request, ({high} - {low} requests) under callgrind")
        for name, cost in per_request[path].items():
            print(f"  {name:<24}{cost:>14,.0f}{cost / bare - 1:>+9.1%}")
    for path in paths:
        if "release conf" not in per_request[path]:
            continue
        bare = per_request[path]["bare"]
        # Requests per instruction, release against bare: the throughput a CPU-bound server has.
        ok &= common.result(
            f"requests per instruction on {path}, release gunicorn.conf.py vs bare",
            baseline=1 / bare * 1e6,
            measured=1 / per_request[path]["release conf"] * 1e6,
            unit=" per M",
            target=TARGET,
            higher_is_better=True,
        )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(common.run(main))
