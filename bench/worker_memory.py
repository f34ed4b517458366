"""Worker memory: what gunicorn's workers hold to themselves after serving, release against
bare gunicorn that preloads the app the same way.

Both fork their workers from a master that imported the app, so the workers start out
sharing its pages. What a worker writes to is copied: the objects a request makes, and, at a
full garbage collection, the header of every object the collector walks, the import's too.
The release's gunicorn.conf.py freezes what the import made (gc.freeze()), so no collection
walks it; bare gunicorn --preload does not. Both containers run from the same image on the
host network, with the same config (PostgreSQL and moto on loopback), workers and threads,
and are loaded at the same time by wrk (keep-alive, 127.0.0.1, bounded in time) on each path
in turn; then each worker's private memory (Private_Clean + Private_Dirty in
/proc/PID/smaps_rollup: what it alone holds) and the container's gunicorn PSS are read.
Target: the release's workers hold no more than bare's.

    .venv/bin/python -m bench.worker_memory [--rounds 3] [--duration 10] [--workers 4]
        [--image webapp-release:TAG]
"""

import re
import subprocess

from bench import common

TARGET = 1.0
PATHS = ("/", "/health", "/admin/login/")


def gunicorn_memory(container):
    """{host pid: (private kB, pss kB, is master)} of the container's gunicorn processes."""
    top = container.top(ps_args="-eo pid,ppid,args")
    processes = {
        int(pid): int(parent)
        for pid, parent, command in top["Processes"]
        if "gunicorn" in command and not command.split()[0].endswith("tini")
    }
    memory = {}
    for pid, parent in processes.items():
        fields = {}
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                name, _, value = line.partition(":")
                if value.strip().endswith("kB"):
                    fields[name] = int(value.split()[0])
        private = fields["Private_Clean"] + fields["Private_Dirty"]
        memory[pid] = (private, fields["Pss"], parent not in processes)
    return memory


def load_together(urls, *, duration):
    """wrk on every url at once for duration seconds; fails on a non-2xx answer or a failed
    connection, read or write (a request slower than wrk's 2 s timeout is only counted: this
    measures memory, not latency)."""
    command = ["wrk", "-t1", "-c8", f"-d{duration}s"]
    runs = [subprocess.Popen([*command, url], stdout=subprocess.PIPE, text=True) for url in urls]
    for url, run in zip(urls, runs, strict=True):
        output = run.communicate(timeout=duration + 60)[0]
        errors = re.search(r"connect (\d+), read (\d+), write (\d+)", output)
        if (
            run.returncode != 0
            or "Non-2xx" in output
            or (errors and any(map(int, errors.groups())))
        ):
            raise SystemExit(f"error: wrk {url}:\n{output}")
        if timeouts := re.search(r"timeout (\d+)", output):
            common.log(f"{url}: {timeouts.group(1)} request(s) slower than wrk's 2 s timeout")


def describe(name, memory):
    workers = sorted(private for private, _, master in memory.values() if not master)
    pss = sum(pss for _, pss, _ in memory.values())
    print(
        f"{name:<8} workers' private memory {sum(workers) / 1024:6.1f} MB "
        f"(each: {', '.join(f'{kb / 1024:.1f}' for kb in workers)} MB); "
        f"gunicorn PSS {pss / 1024:.1f} MB"
    )
    return sum(workers)


def main():
    parser = common.arg_parser(__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="times each path is loaded")
    parser.add_argument("--duration", type=int, default=10, help="seconds per path and round")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers, both sides")
    args = parser.parse_args()
    workers = str(args.workers)
    client = common.docker_client()
    print(f"machine: {common.machine()}")
    with (
        common.stage_release(client, args.image) as (_, image, config_uri),
        common.Container(
            client, image, config_uri=config_uri, env={"GUNICORN_WORKERS": workers}
        ) as release,
    ):
        release.wait_status("/health", timeout=300)  # it migrates the new database
        port = common.free_port()
        bare_command = ["gunicorn", "--preload", "--worker-class", "gthread"]
        bare_command += ["--workers", workers, "--threads", "4"]
        bare_command += ["--bind", f"127.0.0.1:{port}", "www.wsgi"]
        with common.Container(
            client, image, config_uri=config_uri, command=bare_command, port=port
        ) as bare:
            bare.wait_status("/health", timeout=300)
            common.log(f"release on {release.url}, bare on {bare.url}")
            for n in range(args.rounds):
                for path in PATHS:
                    load_together([release.url + path, bare.url + path], duration=args.duration)
                common.log(f"round {n + 1} of {args.rounds} loaded")
            release_memory = gunicorn_memory(release.container)
            bare_memory = gunicorn_memory(bare.container)
    print(f"image: {image}; {workers} workers x 4 threads each side, after {args.rounds} rounds")
    print(f"of {args.duration} s on each of {', '.join(PATHS)}")
    ok = common.result(
        "private memory of the workers after the load, release vs bare --preload",
        baseline=describe("bare", bare_memory) / 1024,
        measured=describe("release", release_memory) / 1024,
        unit=" MB",
        target=TARGET,
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(common.run(main))
