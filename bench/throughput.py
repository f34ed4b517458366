"""Throughput: requests/s with the start-script's gunicorn settings against the best of a few
hand-tuned bare gunicorn settings, on the same WSGI app, image, database and cores.

Every server container is pinned to the same CPU set (--cpuset-cpus, default: the last CPU)
and wrk to the others (taskset), on 127.0.0.1, for a bounded time per path. Paths:
  /         the home page (a template; it does not query the database)
  /health   SELECT 1 through the health-check middleware
  /admin/   the admin index as a logged-in superuser: session, user and recent-actions
            queries, i.e. the DB-backed page
Rounds go through every setting in turn so all see the same machine load; each setting's
figure is its median over the rounds. Target: start-script >= 0.95x the best bare setting.

    .venv/bin/python -m bench.throughput [--rounds 3] [--duration 10] [--image IMAGE]
"""

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

# Makes a superuser and a logged-in session for it; prints the session key.
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
print("SESSION " + session.session_key)
"""


def wrk(url, *, duration, connections, cpus, cookie=None):
    """requests/s that wrk measured; fails on any non-2xx answer or socket error."""
    command = ["taskset", "-c", cpus, "wrk", "-t1", f"-c{connections}", f"-d{duration}s"]
    command += ["--timeout", "5s"]
    if cookie:
        command += ["-H", f"Cookie: {cookie}"]
    output = subprocess.run(
        [*command, url], capture_output=True, text=True, check=True, timeout=duration + 60
    ).stdout
    for bad in ("Non-2xx or 3xx responses", "Socket errors"):
        if bad in output:
            raise SystemExit(f"error: wrk {url}: {bad}:\n{output}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))


def measure(container, paths, args, cookie):
    """requests/s for each path on a running container, after a short warm-up each."""
    rates = {}
    for path in paths:
        headers = {"Cookie": cookie} if path == "/admin/" else {}
        answer = requests.get(
            container.url + path, headers=headers, allow_redirects=False, timeout=10
        )
        if answer.status_code != 200:
            raise SystemExit(f"error: {path} answered {answer.status_code}, not 200")
        options = dict(connections=args.connections, cpus=args.client_cpus)
        if path == "/admin/":
            options["cookie"] = cookie
        wrk(container.url + path, duration=2, **options)  # warm-up: connections, caches
        rates[path] = wrk(container.url + path, duration=args.duration, **options)
    return rates


def cpu_split():
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        raise SystemExit("error: needs at least 2 CPUs (one for the server, one for wrk)")
    return str(cpus[-1]), ",".join(str(c) for c in cpus[:-1])


def main():
    server_cpus, client_cpus = cpu_split()
    parser = common.arg_parser(__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
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
    settings = [(RELEASE, None), *((name, ["gunicorn", *a]) for name, a in BARE + extra)]
    rates = {name: {path: [] for path in paths} for name, _ in settings}
    with common.Backends() as backends, common.release_image(client, args.image) as image:
        config_uri = backends.put_config(backends.new_database())
        cookie = None
        for n in range(args.rounds):
            for name, bare in settings:
                port = common.free_port()
                command = None
                if bare:
                    command = [*bare, "--bind", f"127.0.0.1:{port}", "www.wsgi"]
                with common.Container(
                    client,
                    image,
                    config_uri=config_uri,
                    command=command,
                    port=port,
                    cpuset_cpus=args.server_cpus,
                ) as container:
                    container.wait_status("/health", timeout=180)
                    if cookie is None:  # the first container has migrated the database
                        output = common.run_once(
                            client,
                            image,
                            config_uri=config_uri,
                            command=["python3", "manage.py", "shell", "-c", SESSION_CODE],
                        )
                        key = next(ln for ln in output.splitlines() if ln.startswith("SESSION "))
                        cookie = f"sessionid={key.split()[1]}"
                    for path, rate in measure(container, paths, args, cookie).items():
                        rates[name][path].append(rate)
                common.log(
                    f"round {n + 1} {name}: "
                    + ", ".join(f"{p} {rates[name][p][-1]:.0f}/s" for p in paths)
                )
    print(
        f"image: {image}; server cpuset {args.server_cpus}, wrk on CPUs {args.client_cpus}, "
        f"-t1 -c{args.connections} -d{args.duration}s, {args.rounds} rounds, medians (req/s)"
    )
    print(f"{'setting':<20}" + "".join(f"{p:>12}" for p in paths))
    for name, _ in settings:
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
