"""A release swap on one instance under steady load: failed requests, p99, and its duration.

The instance is the boot tests' (tests/instance_rig.py's Rig): a container running the real
stages 1 and 2 against moto, the IMDSv2 test server and a local registry, with nginx in front
of the release container. A steady keep-alive load (tests/load.py: a few threads in a process
of their own, `/health` and `/admin/login/` in turn, loopback only, bounded in count and time)
runs against the site's port the whole time. Each round first measures a window of the same
load with no swap (the baseline), then publishes a new release (a one-label image derived from
the one under test) and reruns the boot: the window is the stage-2 run, from the release record
read to the old container removed.

Printed: requests sent and failed over all windows (target 0 failed); p99 latency of the
requests started during the swaps against those of the steady windows (target <= 2x); the
swap's duration (median, seconds) and how long the switch to the new container took (median).

    .venv/bin/python -m bench.swap [--rounds 3] [--steady 15] [--threads 4] [--image NAME]
"""

import contextlib
import statistics
import tempfile
import time
from pathlib import Path

from bench import common

TARGET_P99_RATIO = 2.0


# A swap's steps, as stage 2 logs them: the new container is up, live.sock points at it
# (nginx's next requests go there), the old container has stopped.
STEPS = ("-next (stage) is up", "live.sock points at", "-previous (")


def step_stamps(log):
    """The UTC second (stage 2's log stamp) of each of STEPS in one run's log."""
    stamps = []
    for needle in STEPS:
        line = next(ln for ln in log.splitlines() if needle in ln and "bootstrap-webserver" in ln)
        stamps.append(time.mktime(time.strptime(line.split()[0], "%Y-%m-%dT%H:%M:%SZ")))
    return stamps


def main():
    parser = common.arg_parser(__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="swaps (default %(default)s)")
    parser.add_argument(
        "--steady", type=float, default=15, help="seconds of load with no swap per round"
    )
    parser.add_argument(
        "--threads", type=int, default=4, help="client threads (default %(default)s)"
    )
    args = parser.parse_args()

    print(f"machine: {common.machine()}", flush=True)
    client = common.docker_client()
    with contextlib.ExitStack() as stack:
        postgres, moto, registry = common.instance_rig_servers(stack)
        from tests import instance_rig as e2e
        from tests.load import SteadyLoad, p99_ms

        image, instance_image = common.instance_rig_images(stack, client, args.image)

        rig = e2e.Rig(client, postgres, moto, registry, Path(tempfile.mkdtemp(prefix="bench-")))
        rig.release_image, rig.instance_image = image, instance_image
        stack.callback(rig.teardown)
        common.log("first boot: setup_aws, publish_image, push_config, launch_ec2, stages 1-2")
        e2e.deploy_and_boot(rig)

        urls = [rig.url("/health"), rig.url("/admin/login/")]
        steady, during, swaps, switches, stops = [], [], [], [], []
        with SteadyLoad(
            urls, threads=args.threads, max_requests=2_000_000, max_seconds=3600
        ) as load:
            load.wait_for(100)
            for round_ in range(1, args.rounds + 1):
                tag = f"bench-{common.RUN_ID}-{round_}"
                rig.derived_release(tag)
                rig.publish(tag)
                start = time.monotonic()
                time.sleep(args.steady)
                steady += load.between(start, time.monotonic())
                start = time.monotonic()
                status, output = rig.boot()
                end = time.monotonic()
                if status != 0:
                    raise SystemExit(f"error: the swap failed:\n{output[-4000:]}")
                during += load.between(start, end)
                swaps.append(end - start)
                up, switched, stopped = step_stamps(output)
                switches.append(switched - up)
                stops.append(stopped - switched)
                common.log(
                    f"round {round_}: swap {end - start:.1f}s, "
                    f"{len(load.between(start, end))} requests during it"
                )
            load.wait_for(load.count() + 100)
        sent, failed = load.count(), load.failures()

    steady_p99 = p99_ms(steady)
    during_p99 = p99_ms(during)
    print(f"requests: sent {sent}, failed {len(failed)} (target 0)", flush=True)
    for failure in failed[:5]:
        print(f"  failed: {failure.outcome}", flush=True)
    print(
        f"requests per window: steady {len(steady)} in {args.rounds * args.steady:.0f}s, "
        f"during swaps {len(during)} in {sum(swaps):.1f}s",
        flush=True,
    )
    print(
        f"swap duration: median {statistics.median(swaps):.1f}s ({common.spread(swaps, 's')}); "
        f"of which the switch (live.sock moved): {common.spread(switches, 's')}, "
        f"the old container's graceful stop: {common.spread(stops, 's')} "
        "(stage 2's log stamps, 1 s resolution)",
        flush=True,
    )
    ok = common.result(
        "p99 latency during a swap",
        baseline=steady_p99,
        measured=during_p99,
        unit="ms",
        target=TARGET_P99_RATIO,
    )
    ok = not failed and ok
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(common.run(main))
