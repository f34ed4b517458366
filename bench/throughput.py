"""Throughput: requests/s with the start-script's gunicorn settings against the best of a few
hand-tuned bare gunicorn settings, on the same WSGI app, image, database and cores.

Every server container is pinned to the same CPU set (--cpuset-cpus, default: the last CPU)
and wrk to the others (taskset), on 127.0.0.1, for a bounded time per path. Paths:
  /         the home page: the five newest published announcements from the database
            (five rows are created first), the DB-backed page
  /health   SELECT 1 through the health-check middleware
  /admin/   the admin index as a logged-in superuser: session, user and recent-actions
            queries
All the servers run at once (idle ones cost nothing) and each round measures every setting
in turn for a short time, so they all see the same machine load; each setting's figure is
its median over the rounds (every other round goes in reverse order).
Target: start-script >= 0.95x the best bare setting.

    .venv/bin/python -m bench.throughput [--rounds 7] [--duration 3] [--diagnose] [--image IMAGE]
"""

import contextlib
import os
import re
import subprocess

import requests

from bench import common

TARGET = 0.95
# (name, gunicorn arguments) of the hand-tuned bare settings.
BARE = [
    ("bare sync w2", ["--workers", "2"]),
    ("bare sync w3", ["--workers", "3"]),
    ("bare sync w4", ["--workers", "4"]),
    ("bare gthread w2x4", ["--workers", "2", "--threads", "4"]),
    ("bare gthread w4x2", ["--workers", "4", "--threads", "2"]),
]
RELEASE = "start-script"
# --diagnose adds these (not candidates for "best bare"): where the start-script's cost is.
RELEASE_CONF = "/var/www/deploy/release/gunicorn.conf.py"
DIAGNOSTIC = [
    ("diag w3 accesslog", ["--workers", "3", "--access-logfile", "-"]),
    ("diag release conf", ["--config", RELEASE_CONF]),
    ("diag conf no-log", ["--config", RELEASE_CONF, "--access-logfile", "/dev/null"]),
]
# The start-script itself with gunicorn's access log sent to stdout, i.e. through
# supervisord, start.sh's tee and dockerd, instead of straight to /host/logs/access.log.
DIAGNOSTIC_RELEASE = ("diag start-script log to stdout", {"GUNICORN_ACCESS_LOG": "-"})

# Makes a superuser and a logged-in session for it, and the home page's five announcements;
# prints the session key.
SESSION_CODE = """
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.auth import get_user_model
from django.contrib.sessions.backends.db import SessionStore
user, _ = get_user_model().objects.get_or_create(
    username="bench", defaults={"is_staff": True, "is_superuser": True})
user.set_unusable_password(); user.save()
session = SessionStore()
session[SESSION_KEY] = str(user.pk)
session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
session[HASH_SESSION_KEY] = user.get_session_auth_hash()
session.create()
from www.models import Announcement
for n in range(5 - Announcement.objects.count()):
    Announcement.objects.create(title=f"Bench announcement {n}", body="A line of text. " * 20)
print("SESSION " + session.session_key)
"""


def wrk(url, *, duration, cookie, args):
    """requests/s that wrk measured; fails on any non-2xx answer or socket error."""
    command = ["taskset", "-c", args.client_cpus, "wrk", "-t1", f"-c{args.connections}"]
    command += [f"-d{duration}s", "--timeout", "5s", "-H", f"Cookie: {cookie}", url]
    output = subprocess.run(
        command, capture_output=True, text=True, check=True, timeout=duration + 60
    ).stdout
    for bad in ("Non-2xx or 3xx responses", "Socket errors"):
        if bad in output:
            raise SystemExit(f"error: wrk {url}: {bad}:\n{output}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))


def check(container, paths, cookie):
    """Every path answers 200 (the admin to the session's cookie), or the run stops."""
    for path in paths:
        answer = requests.get(
            container.url + path, headers={"Cookie": cookie}, allow_redirects=False, timeout=10
        )
        if answer.status_code != 200:
            raise SystemExit(f"error: {container.url}{path} answered {answer.status_code}")


def cpu_split():
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        raise SystemExit("error: needs at least 2 CPUs (one for the server, one for wrk)")
    return str(cpus[-1]), ",".join(str(c) for c in cpus[:-1])


def main():
    server_cpus, client_cpus = cpu_split()
    parser = common.arg_parser(__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7, help="rounds (default 7)")
    parser.add_argument("--duration", type=int, default=3, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections")
    parser.add_argument("--server-cpus", default=server_cpus, help="cpuset of the servers")
    parser.add_argument("--client-cpus", default=client_cpus, help="CPUs wrk runs on")
    parser.add_argument(
        "--paths", default="/,/health,/admin/", help="comma-separated (default: all three)"
    )
    parser.add_argument(
        "--diagnose",
        action="store_true",
        help="also run gunicorn with an access log, and with the release's gunicorn.conf.py "
        "without supervisord, to see where a gap comes from",
    )
    args = parser.parse_args()
    paths = args.paths.split(",")
    client = common.docker_client()
    print(f"machine: {common.machine()}")
    extra = DIAGNOSTIC if args.diagnose else []
    # (name, command or None for the image's CMD, extra environment)
    settings = [(RELEASE, None, {})]
    settings += [(name, ["gunicorn", *a], {}) for name, a in BARE + extra]
    if args.diagnose:
        settings.append((DIAGNOSTIC_RELEASE[0], None, DIAGNOSTIC_RELEASE[1]))
    rates = {name: {path: [] for path in paths} for name, _, _ in settings}
    with (
        common.Backends() as backends,
        common.release_image(client, args.image) as image,
        contextlib.ExitStack() as containers,
    ):
        config_uri = backends.put_config(backends.new_database())
        running = {}
        for name, bare, env in settings:
            port = common.free_port()
            command = [*bare, "--bind", f"127.0.0.1:{port}", "www.wsgi"] if bare else None
            running[name] = containers.enter_context(
                common.Container(
                    client,
                    image,
                    config_uri=config_uri,
                    command=command,
                    env=env,
                    port=port,
                    cpuset_cpus=args.server_cpus,
                )
            )
            # One at a time: the first (the start-script) migrates the new database.
            running[name].wait_status("/health", timeout=180)
        output = common.run_once(
            client,
            image,
            config_uri=config_uri,
            command=["python3", "manage.py", "shell", "-c", SESSION_CODE],
        )
        key = next(ln for ln in output.splitlines() if ln.startswith("SESSION "))
        cookie = f"sessionid={key.split()[1]}"
        for container in running.values():
            check(container, paths, cookie)
            for path in paths:  # warm-up: connections, caches, lazily loaded code
                wrk(container.url + path, duration=2, cookie=cookie, args=args)
        for n in range(args.rounds):
            order = list(running.items())
            if n % 2:  # every other round backwards, so a drift in load hits all alike
                order.reverse()
            for path in paths:
                for name, container in order:
                    rate = wrk(
                        container.url + path, duration=args.duration, cookie=cookie, args=args
                    )
                    rates[name][path].append(rate)
            common.log(
                f"round {n + 1}: "
                + "; ".join(
                    f"{name} " + " ".join(f"{rates[name][p][-1]:.0f}" for p in paths)
                    for name in running
                )
            )
    print(
        f"image: {image}; server cpuset {args.server_cpus}, wrk on CPUs {args.client_cpus}, "
        f"-t1 -c{args.connections} -d{args.duration}s, {args.rounds} rounds, medians (req/s)"
    )
    print(f"{'setting':<20}" + "".join(f"{p:>12}" for p in paths))
    for name, _, _ in settings:
        print(f"{name:<20}" + "".join(f"{common.median(rates[name][p]):>12.0f}" for p in paths))
    ok = True
    for path in paths:
        best = max((name for name, _ in BARE), key=lambda name: common.median(rates[name][path]))
        ok &= common.result(
            f"requests/s on {path}, start-script vs best bare ({best})",
            baseline=common.median(rates[best][path]),
            measured=common.median(rates[RELEASE][path]),
            unit="/s",
            target=TARGET,
            higher_is_better=True,
        )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
