"""A steady, bounded HTTP load on loopback, for the swap test and bench.swap.

A few threads, each with its own keep-alive session (as a browser or a load balancer keeps
its connections), request the given URLs in turn as fast as they are answered (or, given a
pace, at most one request per pace seconds each), until stop()
or until the request count or the time bound is reached, whichever comes first. Every request
is recorded: when it started, how long it took, and its status code or the error that ended it
(a refused or reset connection, a timeout). Nothing is retried: a failure counts as one.
"""

import math
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
        self.urls = list(urls)
        self.pace = pace  # the least seconds between two of one thread's requests (0: none)
        self.headers = headers or {}  # e.g. the Host a browser names
        self.threads = threads
        self.max_requests = max_requests
        self.max_seconds = max_seconds
        self.timeout = timeout
        self.requests = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._workers = []
        self._in_flight = 0

    def __enter__(self):
        self.deadline = time.monotonic() + self.max_seconds
        for index in range(self.threads):
            worker = threading.Thread(target=self._run, args=(index,), daemon=True)
            worker.start()
            self._workers.append(worker)
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=self.timeout + 5)

    def _claim(self):
        with self._lock:
            if len(self.requests) + self._in_flight >= self.max_requests:
                return False
            self._in_flight += 1
            return True

    def _run(self, index):
        session = requests.Session()
        session.headers.update(self.headers)
        turn = index
        try:
            while not self._stop.is_set() and time.monotonic() < self.deadline and self._claim():
                url = self.urls[turn % len(self.urls)]
                turn += 1
                started = time.monotonic()
                next_start = started + self.pace
                try:
                    response = session.get(url, timeout=self.timeout, allow_redirects=False)
                    outcome = response.status_code
                except requests.RequestException as error:
                    outcome = f"{type(error).__name__}: {error}"
                record = Request(started, time.monotonic() - started, outcome)
                with self._lock:
                    self._in_flight -= 1
                    self.requests.append(record)
                self._stop.wait(max(0.0, next_start - time.monotonic()))
        finally:
            session.close()

    def count(self):
        with self._lock:
            return len(self.requests)

    def wait_for(self, count, timeout=60):
        """Until `count` requests have been answered (or failed) in all; False on timeout."""
        deadline = time.monotonic() + timeout
        while self.count() < count:
            if time.monotonic() >= deadline or self._stop.is_set():
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
