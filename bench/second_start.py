"""Second start of the same release: static uploads and collectstatic time against the first.

1. Uploads: the release container starts twice on one bucket (moto) and database; moto's
   request log counts the object writes under static/ during each start. Target: 0 on the
   second start.
2. Time: the step as start.sh runs it, `collectstatic_once` called inside the one start-up
   process (`manage.py start_steps`), where Django is already set up, on an empty static/ prefix
   (first) and then again (second), in one container. For scale, also the whole start-up
   process, `manage.py start_steps --no-input` (Python, Django set-up, S3 config fetch,
   wait_for_db, migrate, collectstatic_once), first and second. The static/ prefix is
   emptied before each run; medians over the runs. Target: the step's second <= 10% of first.

    .venv/bin/python -m bench.second_start [--runs 5] [--image webapp-release:TAG]
"""

import json

from bench import common

TARGET = 0.10

# Runs inside the release image (working directory /var/www). argv[1]: "process" runs the
# start-script's whole start-up process twice; "inprocess" sets Django up once and then
# times the collectstatic_once step itself twice. Prints one JSON line with the seconds.
TIMER = r"""
import json, os, subprocess, sys, time
mode = sys.argv[1]
command = ["collectstatic_once", "--no-input"]
times = []
if mode == "process":
    for _ in range(2):
        start = time.monotonic()
        subprocess.run([sys.executable, "manage.py", "start_steps", "--no-input"], check=True)
        times.append(time.monotonic() - start)
else:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "www.settings")
    import django
    from django.core.management import call_command
    django.setup()
    for _ in range(2):
        start = time.monotonic()
        call_command(*command)
        times.append(time.monotonic() - start)
print("BENCH " + json.dumps(times))
"""


def timed(client, image, config_uri, mode):
    output = common.run_once(
        client, image, config_uri=config_uri, command=["python3", "-c", TIMER, mode]
    )
    line = next(ln for ln in output.splitlines() if ln.startswith("BENCH "))
    return json.loads(line.removeprefix("BENCH "))


def start_uploads(client, image, backends, config_uri):
    """Static object writes during one start of the release container, until /health 200."""
    offset = backends.log_offset()
    with common.Container(client, image, config_uri=config_uri) as c:
        c.wait_status("/health", timeout=180)
        logs = c.logs()
    line = next((ln for ln in logs.splitlines() if "static files" in ln.lower()), "")
    return backends.uploads_since(offset), line.strip()


def main():
    parser = common.arg_parser(__doc__.split("\n")[0])
    parser.add_argument(
        "--runs", type=int, default=5, help="timed runs of each (default %(default)s)"
    )
    args = parser.parse_args()
    client = common.docker_client()
    print(f"machine: {common.machine()}")
    with common.stage_release(client, args.image) as (backends, image, config_uri):
        first_uploads, first_line = start_uploads(client, image, backends, config_uri)
        second_uploads, second_line = start_uploads(client, image, backends, config_uri)
        common.log(f"first start: {first_uploads} uploads ({first_line})")
        common.log(f"second start: {second_uploads} uploads ({second_line})")

        process, inprocess, uploads = {1: [], 2: []}, {1: [], 2: []}, []
        for n in range(args.runs):
            for mode, into in (("process", process), ("inprocess", inprocess)):
                backends.delete_prefix("static/")
                offset = backends.log_offset()
                first, second = timed(client, image, config_uri, mode)
                into[1].append(first)
                into[2].append(second)
                uploads.append(backends.uploads_since(offset))
            common.log(
                f"run {n + 1}: process {process[1][-1]:.2f}s -> {process[2][-1]:.2f}s, "
                f"in-process {inprocess[1][-1]:.2f}s -> {inprocess[2][-1]:.3f}s"
            )
    print(f"image: {image}; {args.runs} timed runs")
    print(f"first start {first_line!r}; second start {second_line!r}")
    print(f"static writes per timed pair (first + second run): {sorted(set(uploads))}")
    print(f"process first:  {common.spread(process[1], 's')}")
    print(f"process second: {common.spread(process[2], 's')}")
    print(f"in-process first:  {common.spread(inprocess[1], 's')}")
    print(f"in-process second: {common.spread(inprocess[2], 's')}")
    ok = common.absolute(
        "static uploads on the second start",
        measured=second_uploads,
        unit="",
        limit=0,
        detail=f"; first start uploaded {first_uploads}",
    )
    ok &= common.result(
        "collectstatic_once as start.sh runs it (in the start-up process), second vs first "
        "(median)",
        baseline=common.median(inprocess[1]),
        measured=common.median(inprocess[2]),
        unit="s",
        target=TARGET,
    )
    print(
        f"for scale, the whole start-up process (manage.py start_steps): first "
        f"{common.median(process[1]):.2f}s, second {common.median(process[2]):.2f}s (median)"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(common.run(main))
