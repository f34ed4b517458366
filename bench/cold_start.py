"""Cold start: `docker run` of the release image until the first 200 on /health.

The release container runs its start-script (config from S3 on moto, wait for the database,
migrate on an up-to-date database, collectstatic of an already collected release, supervisord,
gunicorn). The baseline is bare gunicorn on the same WSGI app in the same image, with the
same DJANGO_CONFIG_URI and worker count. Runs alternate release/bare so both see the same
machine load; the medians are compared. Target: release <= 1.2x bare.

    .venv/bin/python -m bench.cold_start [--runs 7] [--image webapp-release:TAG]
"""

import datetime
import os
import re
import time

from bench import common

TARGET = 1.2


def timeline(logs, started):
    """The container's log lines, each with its seconds since `docker run` (wall clock)."""
    lines = []
    for line in logs.splitlines():
        stamp, _, text = line.partition(" ")
        match = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d{1,6})?\d*Z$", stamp)
        if match:
            when = datetime.datetime.fromisoformat(match.group(1) + (match.group(2) or ""))
            when = when.replace(tzinfo=datetime.UTC).timestamp()
            lines.append(f"  {when - started:6.2f}s  {text[:110]}")
    return "\n".join(lines)


def time_to_health(client, image, *, config_uri, bare_workers=None, env=None, steps=None):
    """Seconds from `docker run` (create + start) to the first 200 on /health.

    bare_workers: run bare gunicorn with that many workers instead of the image's CMD.
    steps: a list to append the container's timestamped log to (where the time went).
    """
    port = common.free_port()
    command = None
    if bare_workers:
        command = ["gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", bare_workers]
        command.append("www.wsgi")
    started = time.time()
    start = time.monotonic()
    with common.Container(
        client, image, config_uri=config_uri, command=command, env=env, port=port
    ) as c:
        c.wait_status("/health", timeout=180, interval=0.02)
        seconds = time.monotonic() - start
        if steps is not None:
            steps.append(timeline(c.container.logs(timestamps=True).decode(), started))
            steps[-1] += f"\n  {seconds:6.2f}s  (first 200 on /health)"
        return seconds


def main():
    parser = common.arg_parser(__doc__.split("\n")[0])
    parser.add_argument(
        "--runs", type=int, default=7, help="runs of each kind (default %(default)s)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=2 * len(os.sched_getaffinity(0)),
        help="gunicorn workers for both (default: the start-script's, 2 x CPUs)",
    )
    args = parser.parse_args()
    workers = str(args.workers)
    client = common.docker_client()
    print(f"machine: {common.machine()}")
    with common.stage_release(client, args.image) as (_, image, config_uri):
        release_env = {"GUNICORN_WORKERS": workers}
        common.log("first start: migrates the new database and collects static files")
        first = time_to_health(client, image, config_uri=config_uri, env=release_env)
        common.log(f"first start {first:.2f}s (not counted)")

        release, bare, release_steps, bare_steps = [], [], [], []
        for n in range(args.runs):
            release.append(
                time_to_health(
                    client, image, config_uri=config_uri, env=release_env, steps=release_steps
                )
            )
            bare.append(
                time_to_health(
                    client, image, config_uri=config_uri, bare_workers=workers, steps=bare_steps
                )
            )
            common.log(f"run {n + 1}: release {release[-1]:.2f}s, bare {bare[-1]:.2f}s")
    print(f"image: {image}; {args.runs} runs each, {workers} gunicorn workers")
    print(f"release runs: {common.spread(release, 's')}")
    print(f"bare runs:    {common.spread(bare, 's')}")
    print(f"where the time went, last release run (seconds since docker run):\n{release_steps[-1]}")
    print(f"last bare run:\n{bare_steps[-1]}")
    ok = common.result(
        "cold start to first /health 200 (median)",
        baseline=common.median(bare),
        measured=common.median(release),
        unit="s",
        target=TARGET,
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(common.run(main))
