"""A steady, bounded HTTP load on loopback, for the swap and roll tests and bench.swap/roll.

A few threads, each with its own keep-alive session (as a browser or a load balancer keeps
its connections), request the given URLs in turn as fast as they are answered (or, given a
pace, at most one request per pace seconds each), until stop()
or until the request count or the time bound is reached, whichever comes first. Every request
is recorded: when it started, how long it took, and its status code or the error that ended it
(a refused or reset connection, a timeout). Nothing is retried: a failure counts as one.

The threads run in a child process of their own, as browsers are clients of their own: what
the caller's process does meanwhile (the deploy command's boto3 calls, the rig's timers)
holds that process's GIL, and a load thread waiting for it would count the wait as the
server's latency. A 30 ms loop in the caller's process made 23 % of the requests in flight
take over twice the steady p99 (docs/benchmarks.md, eighth session). The records come back
as JSON lines on its stdout, and its stdin's end stops it (so does the parent's exit);
`started` is time.monotonic(), the same clock in both processes.
"""

import json
import math
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

import requests


@dataclass(frozen=True)
class Request:
    started: float  # time.monotonic()
    seconds: float
    outcome: int | str  # the status code, or the exception's name and message

    @property
    def ok(self):
        return self.outcome == 200


class SteadyLoad:
    def __init__(
        self,
        urls,
        *,
        threads=4,
        max_requests=50_000,
        max_seconds=300,
        timeout=30,
        headers=None,
        pace=0,
    ):
        self.settings = {
            "urls": list(urls),
            "threads": threads,
            "max_requests": max_requests,
            "max_seconds": max_seconds,
            "timeout": timeout,
            "headers": headers or {},  # e.g. the Host a browser names
            "pace": pace,  # the least seconds between two of one thread's requests (0: none)
        }
        self.timeout = timeout
        self.requests = []
        self._lock = threading.Lock()
        self._ended = threading.Event()  # every record received: the child has exited
        self._process = None
        self._reader = None

    def __enter__(self):
        self._process = subprocess.Popen(
            # -P: the child's sys.path starts without tests/, whose modules would shadow others
            [sys.executable, "-P", __file__, json.dumps(self.settings)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._reader = threading.Thread(target=self._receive, daemon=True)
        self._reader.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def _receive(self):
        try:
            for line in self._process.stdout:
                record = Request(*json.loads(line))
                with self._lock:
                    self.requests.append(record)
        finally:
            self._ended.set()

    def stop(self):
        """Stop the load (the child stops at the end of its stdin) and wait for its last
        records: a request in flight may take up to `timeout`."""
        if self._process.stdin and not self._process.stdin.closed:
            self._process.stdin.close()
        try:
            status = self._process.wait(timeout=self.timeout + 10)
        except subprocess.TimeoutExpired:
            self._process.kill()  # past its bounds: killed here, not a failure of its own
            self._process.wait()
            status = 0
        self._reader.join(timeout=10)
        self._process.stdout.close()
        if status:
            raise RuntimeError(f"the load's process exited with status {status} (its stderr above)")

    def count(self):
        with self._lock:
            return len(self.requests)

    def wait_for(self, count, timeout=60):
        """Until `count` requests have been answered (or failed) in all; False on timeout."""
        deadline = time.monotonic() + timeout
        while self.count() < count:
            if time.monotonic() >= deadline or self._ended.is_set():
                return False
            time.sleep(0.05)
        return True

    def failures(self):
        with self._lock:
            return [r for r in self.requests if not r.ok]

    def between(self, start, end):
        """The requests that started in [start, end)."""
        with self._lock:
            return [r for r in self.requests if start <= r.started < end]


def generate(*, urls, threads, max_requests, max_seconds, timeout, headers, pace):
    """The child process: `threads` threads load `urls` until stdin ends or a bound is
    reached, each request's [started, seconds, outcome] a JSON line on stdout."""
    deadline = time.monotonic() + max_seconds
    stop = threading.Event()
    lock = threading.Lock()  # one stdout for every thread; also guards the counts
    counts = {"sent": 0, "in_flight": 0}

    def claim():
        with lock:
            if counts["sent"] + counts["in_flight"] >= max_requests:
                return False
            counts["in_flight"] += 1
            return True

    def run(index):
        session = requests.Session()
        session.headers.update(headers)
        turn = index
        try:
            while not stop.is_set() and time.monotonic() < deadline and claim():
                url = urls[turn % len(urls)]
                turn += 1
                started = time.monotonic()
                next_start = started + pace
                try:
                    response = session.get(url, timeout=timeout, allow_redirects=False)
                    outcome = response.status_code
                except requests.RequestException as error:
                    outcome = f"{type(error).__name__}: {error}"
                record = json.dumps([started, time.monotonic() - started, outcome])
                with lock:
                    counts["in_flight"] -= 1
                    counts["sent"] += 1
                    print(record, flush=True)
                stop.wait(max(0.0, next_start - time.monotonic()))
        finally:
            session.close()

    workers = [threading.Thread(target=run, args=(index,)) for index in range(threads)]
    for worker in workers:
        worker.start()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    for worker in workers:
        worker.join()


def percentile(values, fraction):
    """The value below which `fraction` of `values` lie (nearest rank); None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def p99_ms(requests):
    """The 99th percentile of the requests' durations, in milliseconds."""
    return percentile([r.seconds for r in requests], 0.99) * 1000


if __name__ == "__main__":
    generate(**json.loads(sys.argv[1]))
