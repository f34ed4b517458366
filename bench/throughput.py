"""Throughput: requests/s with the start-script's gunicorn settings against the best of a few
hand-tuned bare gunicorn settings, on the same WSGI app, image, database and cores.

Every server container is pinned to the same CPU set (--cpuset-cpus, default: the last CPU)
and wrk to the others (taskset), on 127.0.0.1, for a bounded time per path. Paths:
  /         the home page: the five newest published announcements from the database
            (five rows are created first), the DB-backed page
  /health   SELECT 1 through the health-check middleware
  /admin/   the admin index as a logged-in superuser: session, user and recent-actions
            queries
Head to head: the start-script and one other setting are loaded at the same time, each by
its own wrk, so they share the one server core and whatever its speed is in those seconds
(on a shared virtual machine it swings by up to 2x from one second to the next, which no
number of one-at-a-time rounds averages out). Each round pairs the start-script with every
other setting in turn, every other round in reverse order and with the other's wrk started
first. Every setting runs as --replicas containers, taken in turn by the rounds: identical
containers differ by up to ~10%. Each of them has a start-script container of its own as its
partner, so both sides of a pair are loaded and rest alike: one start-script container
loaded in every pair lost 1-6 % to an identical copy loaded in its pair only (the "diag
start-script again" control of --diagnose; docs/benchmarks.md, sixth session). A pair's
ratio is start-script req/s over the other's; each setting's figure is its median over the
rounds, and the best bare setting on a path is the one the start-script fares worst against.
That choice is the minimum of five noisy medians, so its own figure is biased low (the
winner's curse: five settings that all matched the start-script would still show it losing
by the spread of one median). The verdict is measured afresh: --confirm-rounds more rounds of
the start-script against the chosen setting alone, on each path, and their median ratio:
27 by default, where a median of 9 strayed from the pooled ratio by more than the 1 % that
separates the release from bare gunicorn on /health and /admin/ (docs/benchmarks.md,
eighteenth session). Target: start-script >= 1.00x the best bare setting, on every path.
The same confirming rounds also pair the start-script with itself (an A/A control: containers
of the image's own CMD, each with a start-script partner, never a candidate for best bare).
Beside each verdict it prints the control's median ratio, and the verdict over the control
round by round (each round's two pairs are loaded one after the other), each with the 95 %
interval of its median (the 8th to the 20th of 27 rounds, 98 %): an identical pair's median
strays from 1.00x by a per cent or two over 27 rounds here, and a verdict over the control
whose interval holds 1.00x is no cost this bench can tell from that.

    .venv/bin/python -m bench.throughput [--rounds 9] [--confirm-rounds 27] [--replicas 3]
        [--duration 3] [--diagnose] [--paths /,/health,/admin/] [--image IMAGE]
"""

import contextlib
import os
import re
import subprocess

import requests

from bench import common

TARGET = 1.0
# (name, gunicorn arguments) of the hand-tuned bare settings.
BARE = [
    ("bare sync w2", ["--workers", "2"]),
    ("bare sync w3", ["--workers", "3"]),
    ("bare sync w4", ["--workers", "4"]),
    ("bare gthread w2x4", ["--workers", "2", "--threads", "4"]),
    ("bare gthread w4x2", ["--workers", "4", "--threads", "2"]),
]
RELEASE = "start-script"
# --diagnose's "diag start-script again" is the same control in the choosing rounds
CONTROL = "start-script itself (A/A)"
# --diagnose adds these (never candidates for "best bare"), to split the start-script's cost
# between its access log and the rest (start.sh, supervisord, gunicorn.conf.py):
RELEASE_CONF = "/var/www/deploy/release/gunicorn.conf.py"
# The image's HEALTHCHECK, a Python process every 15 s in each of dozens of containers on the
# one server core, would land on random pairs: off for every container alike.
NO_HEALTHCHECK = {"test": ["NONE"]}
LOG = "/host/access.log"  # the host directory bench.common.Container mounts
DIAGNOSTIC = [
    # the start-script's worker setting run bare, logging requests as a user of bare gunicorn
    # would: gunicorn's own access log, to a file
    ("diag bare w2x4 + log", ["--workers", "2", "--threads", "4", "--access-logfile", LOG]),
    # the release's gunicorn.conf.py (access log included) without start.sh and supervisord
    ("diag conf, no supervisor", ["--config", RELEASE_CONF]),
    # the start-script's worker setting run bare, the app imported by the master before the
    # fork (as the release's gunicorn.conf.py does), nothing else of the release
    ("diag bare w2x4 --preload", ["--workers", "2", "--threads", "4", "--preload"]),
]
# (name, environment) of the start-script itself with its access log off, and sent to stdout
# (through supervisord, start.sh's tee and dockerd) instead of to /host/logs/access.log.
DIAGNOSTIC_RELEASE = [
    # the start-script unchanged, in containers of its own: what the bench gives or takes
    # from the side that is loaded in every pair (an A/A control; ideally 1.00x)
    ("diag start-script again", {}),
    ("diag start-script log off", {"GUNICORN_ACCESS_LOG": "off"}),
    ("diag start-script log to -", {"GUNICORN_ACCESS_LOG": "-"}),
]


def start_wrk(url, *, duration, cookie, args):
    command = ["taskset", "-c", args.client_cpus, "wrk", "-t1", f"-c{args.connections}"]
    command += [f"-d{duration}s", "--timeout", "5s", "-H", f"Cookie: {cookie}", url]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wrk_rate(url, process, duration):
    """requests/s that a wrk process measured; fails on any non-2xx answer or socket error."""
    output, _ = process.communicate(timeout=duration + 60)
    if process.returncode != 0:
        raise SystemExit(f"error: wrk {url} exited {process.returncode}:\n{output}")
    for bad in ("Non-2xx or 3xx responses", "Socket errors"):
        if bad in output:
            raise SystemExit(f"error: wrk {url}: {bad}:\n{output}")
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    if not rate:
        raise SystemExit(f"error: wrk {url}: no request answered:\n{output}")
    return rate


def wrk(urls, *, duration, cookie, args):
    """requests/s on each of urls, loaded at the same time, one wrk each."""
    processes = [start_wrk(url, duration=duration, cookie=cookie, args=args) for url in urls]
    try:
        return [wrk_rate(url, p, duration) for url, p in zip(urls, processes, strict=True)]
    finally:
        for process in processes:  # only left running when another one failed
            process.kill()
            process.wait()


def unmeasured_load(urls, *, duration, cookie, args):
    """Load every url at once for duration seconds; the figures are not kept."""
    processes = [start_wrk(url, duration=duration, cookie=cookie, args=args) for url in urls]
    for process in processes:
        process.communicate(timeout=duration + 60)


def warm_up(url, *, cookie, args, tries=10):
    """2-second wrk runs until one is answered: a container's first requests (each thread's
    database connection, lazily loaded code) can take longer than that on a busy machine."""
    for _ in range(tries):
        process = start_wrk(url, duration=2, cookie=cookie, args=args)
        output, _ = process.communicate(timeout=60)
        if process.returncode == 0 and re.search(r"\b[1-9]\d* requests in", output):
            return
    raise SystemExit(f"error: {url} answered no request in {tries} warm-up runs:\n{output}")


def check(name, container, paths, cookie):
    """Every path answers 200 (the admin to the session's cookie), or the run stops."""
    for path in paths:
        answer = requests.get(
            container.url + path, headers={"Cookie": cookie}, allow_redirects=False, timeout=10
        )
        if answer.status_code != 200:
            raise SystemExit(
                f"error: {name}: {container.url}{path} answered {answer.status_code}; its log:\n"
                + container.logs()[-3000:]
            )


def cpu_split():
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        raise SystemExit("error: needs at least 2 CPUs (one for the server, one for wrk)")
    return str(cpus[-1]), ",".join(str(c) for c in cpus[:-1])


def main():
    server_cpus, client_cpus = cpu_split()
    parser = common.arg_parser(__doc__.split("\n")[0])
    parser.add_argument(
        "--rounds",
        type=int,
        default=9,
        help="rounds that choose the best bare setting (default %(default)s)",
    )
    parser.add_argument(
        "--confirm-rounds",
        type=int,
        default=27,
        help="rounds against the chosen setting alone, whose median ratio is the verdict "
        "(default %(default)s)",
    )
    parser.add_argument("--duration", type=int, default=3, help="seconds per wrk run")
    parser.add_argument(
        "--replicas",
        type=int,
        default=3,
        help="containers of each setting, taken in turn by the rounds (default %(default)s): "
        "identical containers differ by up to ~10%% in req/s (memory layout), so one of each "
        "decides nothing",
    )
    parser.add_argument("--connections", type=int, default=16, help="wrk connections")
    parser.add_argument(
        "--pair-warmup",
        type=int,
        default=2,
        help="seconds of unmeasured load on both sides of a pair before it is measured "
        "(default %(default)s; 0: none). The start-script is loaded in every pair and the other "
        "side after ~30 s idle: without it, the other side's PostgreSQL backends, woken from "
        "sleep, get the database's busy core first, which decides a database-bound page",
    )
    parser.add_argument("--server-cpus", default=server_cpus, help="cpuset of the servers")
    parser.add_argument("--client-cpus", default=client_cpus, help="CPUs wrk runs on")
    parser.add_argument(
        "--paths", default="/,/health,/admin/", help="comma-separated (default: all three)"
    )
    parser.add_argument(
        "--diagnose",
        action="store_true",
        help="also run the start-script with its access log off and to stdout, the release's "
        "gunicorn.conf.py without supervisord, and the best bare setting with gunicorn's "
        "access log, to see where a gap comes from",
    )
    args = parser.parse_args()
    if args.rounds < 1 or args.confirm_rounds < 1:
        parser.error("--rounds and --confirm-rounds must be at least 1")
    paths = args.paths.split(",")
    client = common.docker_client()
    print(f"machine: {common.machine()}")
    extra = DIAGNOSTIC if args.diagnose else []
    # (name, command or None for the image's CMD, extra environment) of the settings the
    # start-script is paired with
    settings = [(name, ["gunicorn", *a], {}) for name, a in BARE + extra]
    if args.diagnose:
        settings += [(name, None, env) for name, env in DIAGNOSTIC_RELEASE]
    # pairs[setting][path]: (start-script req/s, setting req/s) per round, loaded together
    pairs = {name: {path: [] for path in paths} for name, _, _ in settings}
    settings.append((CONTROL, None, {}))  # loaded in the confirming rounds only
    with (
        common.Backends() as backends,
        common.release_image(client, args.image) as image,
        contextlib.ExitStack() as containers,
    ):
        config_uri = backends.put_config(backends.new_database())

        def start(command, env):
            port = common.free_port()
            container = containers.enter_context(
                common.Container(
                    client,
                    image,
                    config_uri=config_uri,
                    command=[*command, "--bind", f"127.0.0.1:{port}", "www.wsgi"]
                    if command
                    else None,
                    env=env,
                    port=port,
                    cpuset_cpus=args.server_cpus,
                    healthcheck=NO_HEALTHCHECK,
                )
            )
            # One at a time: the first (a start-script) migrates the new database.
            container.wait_status("/health", timeout=180)
            return container

        # Every setting's replicas, and as many start-script containers of its own to pair
        # with them: each side of a pair is loaded in that pair's turns only, and rests as
        # long. One start-script loaded in every pair lost up to 6 % to an identical copy.
        running, partners = {}, {}
        for name, command, env in settings:
            partners[name] = [start(None, {}) for _ in range(args.replicas)]
            running[name] = [start(command, env) for _ in range(args.replicas)]
        output = common.run_once(
            client,
            image,
            config_uri=config_uri,
            command=["python3", "manage.py", "shell", "-c", common.SESSION_CODE],
        )
        cookie = common.session_cookie(output)
        releases = [c for replicas in partners.values() for c in replicas]
        everything = [(RELEASE, c) for c in releases]
        everything += [(name, c) for name, replicas in running.items() for c in replicas]
        for name, container in everything:
            check(name, container, paths, cookie)
            for path in paths:  # warm-up: connections, caches, lazily loaded code
                warm_up(container.url + path, cookie=cookie, args=args)

        def measure_pair(name, path, n):
            """(start-script req/s, setting `name`'s) on path in round n, loaded together."""
            release = partners[name][n % args.replicas]
            urls = [release.url + path, running[name][n % args.replicas].url + path]
            # wrk started first fares slightly better: every other round goes first
            step = -1 if n % 2 else 1
            if args.pair_warmup:  # both sides busy, and so their database backends
                unmeasured_load(urls, duration=args.pair_warmup, cookie=cookie, args=args)
            pair = wrk(urls[::step], duration=args.duration, cookie=cookie, args=args)
            return tuple(pair[::step])

        cpu_before = [cpu_seconds(release) for release in releases]
        for n in range(args.rounds):
            order = list(pairs)  # every setting but CONTROL, added after pairs was made
            if n % 2:  # every other round backwards, so a drift in load hits all alike
                order.reverse()
            for path in paths:
                for name in order:
                    pairs[name][path].append(measure_pair(name, path, n))
            common.log(
                f"round {n + 1} (start-script/other req/s): "
                + "; ".join(
                    f"{name} " + " ".join(logged_pair(pairs[name][p][-1]) for p in paths)
                    for name in pairs
                )
            )
        # best[path]: the bare setting the start-script fared worst against; confirmed[path]:
        # the pairs of the rounds against it alone, which decide; controlled[path]: the
        # start-script against itself in the same rounds, the verdict's yardstick
        best = {
            path: min((n for n, _ in BARE), key=lambda n: ratio(pairs[n][path])) for path in paths
        }
        confirmed = {path: [] for path in paths}
        controlled = {path: [] for path in paths}
        for n in range(args.confirm_rounds):
            for path in paths if n % 2 == 0 else paths[::-1]:
                sides = [(confirmed, best[path]), (controlled, CONTROL)]
                for into, name in sides if n % 2 == 0 else sides[::-1]:
                    into[path].append(measure_pair(name, path, n))
            common.log(
                f"confirming round {n + 1} (start-script/other req/s): "
                + "; ".join(
                    f"{path} {best[path]} "
                    + logged_pair(confirmed[path][-1])
                    + " itself "
                    + logged_pair(controlled[path][-1])
                    for path in paths
                )
            )
        cpu_used = {}
        for before, after in zip(cpu_before, [cpu_seconds(r) for r in releases], strict=True):
            for command, seconds in after.items():
                cpu_used[command] = cpu_used.get(command, 0) + seconds - before.get(command, 0)
    print(
        "CPU seconds the start-script containers' processes used during the rounds, summed: "
        + ", ".join(f"{k} {v:.2f}" for k, v in sorted(cpu_used.items()))
    )
    print(
        f"image: {image}; server cpuset {args.server_cpus}, wrk on CPUs {args.client_cpus}, "
        f"two at a time, each -t1 -c{args.connections} -d{args.duration}s; {args.rounds} rounds "
        f"over {args.replicas} containers of each setting and as many start-script containers "
        "paired with them; medians; ratio = start-script / "
        "setting, loaded together"
    )
    print(f"{'setting':<28}" + "".join(f"{p + ' start/this req/s':>26}" for p in paths))
    for name in pairs:
        print(f"{name:<28}" + "".join(f"{summary(pairs[name][p]):>26}" for p in paths))
    print(
        f"{'chosen rounds, then':<28}"
        + "".join(f"{summary(confirmed[p]):>26}" for p in paths)
        + f"  ({args.confirm_rounds} confirming rounds against each path's best bare setting)"
    )
    print(
        f"{CONTROL:<28}"
        + "".join(f"{summary(controlled[p]):>26}" for p in paths)
        + "  (the same confirming rounds)"
    )
    ok = True
    for path in paths:
        ok &= common.result(
            f"requests/s on {path}, start-script vs best bare ({best[path]}), loaded together, "
            f"{args.confirm_rounds} confirming rounds",
            baseline=common.median([other for _, other in confirmed[path]]),
            measured=common.median([release for release, _ in confirmed[path]]),
            unit="/s",
            target=TARGET,
            higher_is_better=True,
            ratio=ratio(confirmed[path]),
        )
        control_ratios = round_ratios(controlled[path])
        over_control = [
            verdict / control
            for verdict, control in zip(round_ratios(confirmed[path]), control_ratios, strict=True)
        ]
        print(
            f"  beside it on {path}: the start-script against itself (A/A) "
            f"{interval(control_ratios)}; the verdict over the control, round by round, "
            f"{interval(over_control)}"
        )
    return 0 if ok else 1


def ratio(pairs):
    """The median over the rounds of start-script req/s / the other setting's req/s."""
    return common.median(round_ratios(pairs))


def logged_pair(pair):
    """A round's 'start-script/other' req/s as the log shows it: to a tenth, so that intervals
    recomputed from the log match the printed ones (whole numbers moved /admin/'s ratios by up
    to 0.9 %)."""
    return "{:.1f}/{:.1f}".format(*pair)


def round_ratios(pairs):
    """Each round's start-script req/s / the other setting's."""
    return [release / other for release, other in pairs]


def interval(ratios):
    """'MEDIANx (N % interval LOW-HIGHx)': the ratios' median and the interval that holds it
    (95 % or more, or fewer with too few rounds for that)."""
    low, high, coverage = common.median_interval(ratios)
    return f"{common.median(ratios):.2f}x ({coverage:.0%} interval {low:.2f}-{high:.2f}x)"


def cpu_seconds(container):
    """{command: CPU seconds} of the container's processes so far (gunicorn's summed), read
    from the host's /proc: what supervisord, tee and start.sh cost beside gunicorn."""
    ticks = os.sysconf("SC_CLK_TCK")
    used = {}
    top = container.container.top(ps_args="-o pid,comm")
    for pid, command in top["Processes"]:
        with contextlib.suppress(OSError):
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            # utime and stime: fields 14 and 15 of proc(5), 12 and 13 after the command
            used[command] = used.get(command, 0) + (int(fields[11]) + int(fields[12])) / ticks
    return used


def summary(pairs):
    """'RELEASE/OTHER RATIOx': the medians of both rates and of their ratio."""
    release = common.median([r for r, _ in pairs])
    other = common.median([o for _, o in pairs])
    return f"{release:.0f}/{other:.0f} {ratio(pairs):.2f}x"


if __name__ == "__main__":
    raise SystemExit(common.run(main))
