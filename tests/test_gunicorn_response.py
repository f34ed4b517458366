"""The release's gunicorn responses (deploy/release/gunicorn_response.py): the same bytes as
gunicorn's own, for requests gunicorn parsed, in fewer writes; and the release's workers use
them."""

import importlib.util
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from gunicorn import util
from gunicorn.config import Config
from gunicorn.http.message import Request
from gunicorn.http.unreader import IterUnreader

from tests.servers import free_port, served, wait_until

ROOT = Path(__file__).resolve().parent.parent
RELEASE = ROOT / "deploy/release"
DATE = re.compile(rb"\r\nDate: [^\r]+\r\n")
PEER = ("203.0.113.7", 50000)


def load_release_response():
    spec = importlib.util.spec_from_file_location(
        "gunicorn_response", RELEASE / "gunicorn_response.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


release = load_release_response()

GET = b"GET /page HTTP/1.1\r\nHost: example.com\r\n\r\n"
HTML = [("Content-Type", "text/html; charset=utf-8"), ("X-Frame-Options", "DENY")]
CASES = {
    # name: (request, status, headers, the body's pieces, writes gunicorn / the release's)
    "one piece": (GET, "200 OK", [*HTML, ("Content-Length", "11")], [b"hello world"], (2, 1)),
    "two pieces": (GET, "200 OK", [*HTML, ("Content-Length", "11")], [b"hello", b" world"], (3, 2)),
    "chunked": (GET, "200 OK", HTML, [b"hello", b" world"], (4, 4)),
    "HTTP/1.0, no length": (
        b"GET /page HTTP/1.0\r\n\r\n",
        "200 OK",
        HTML,
        [b"hello world"],
        (2, 1),
    ),
    "HEAD": (
        b"HEAD /page HTTP/1.1\r\nHost: example.com\r\n\r\n",
        "200 OK",
        [*HTML, ("Content-Length", "11")],
        [b"hello world"],
        (1, 1),
    ),
    "304": (GET, "304 Not Modified", [("ETag", '"x"')], [b"dropped"], (1, 1)),
    "no body": (GET, "302 Found", [("Location", "/"), ("Content-Length", "0")], [], (1, 1)),
    "an empty piece first": (GET, "200 OK", [*HTML, ("Content-Length", "2")], [b"", b"ok"], (3, 3)),
    "longer than its length": (
        GET,
        "200 OK",
        [*HTML, ("Content-Length", "5")],
        [b"hello world"],
        (2, 2),
    ),
    "past its length, in two pieces": (
        GET,
        "200 OK",
        [*HTML, ("Content-Length", "5")],
        [b"hel", b"lo world"],
        (3, 2),
    ),
    "over COMBINED_BYTES": (
        GET,
        "200 OK",
        [*HTML, ("Content-Length", str(release.COMBINED_BYTES + 1))],
        [b"x" * (release.COMBINED_BYTES + 1)],
        (2, 2),
    ),
    "a hop-by-hop header": (
        GET,
        "200 OK",
        [("Connection", "close"), ("Content-Length", "2")],
        [b"ok"],
        (2, 1),
    ),
}


class RecordingSocket:
    """Where a response writes: each sendall's bytes, in order."""

    def __init__(self):
        self.writes = []

    def sendall(self, data):
        self.writes.append(bytes(data))


def serve(response_class, raw, status, headers, body):
    """What response_class writes for the request raw, served as gunicorn's gthread worker
    serves it (start_response, write each piece, close), and what it counted: bytes sent, and
    whether its headers were."""
    cfg = Config()
    sock = RecordingSocket()
    response = response_class(Request(cfg, IterUnreader([raw]), PEER), sock, cfg)
    response.start_response(status, list(headers))
    for piece in body:
        response.write(piece)
    response.close()
    return sock.writes, response.sent, response.headers_sent


@pytest.mark.parametrize("case", CASES)
def test_same_bytes_as_gunicorn_in_fewer_writes(case):
    raw, status, headers, body, (gunicorns_writes, releases_writes) = CASES[case]
    theirs, *their_counts = serve(release.gunicorn_response, raw, status, headers, body)
    ours, *our_counts = serve(release.Response, raw, status, headers, body)
    assert our_counts == their_counts  # the access log's bytes sent, among others
    assert DATE.sub(b"\r\nDate: D\r\n", b"".join(ours)) == DATE.sub(
        b"\r\nDate: D\r\n", b"".join(theirs)
    )
    assert (len(theirs), len(ours)) == (gunicorns_writes, releases_writes)


def test_one_piece_goes_out_whole():
    """What a client reads for a page: status line, headers and body, in one write."""
    raw, status, headers, body, _ = CASES["one piece"]
    [sent], _, _ = serve(release.Response, raw, status, headers, body)
    assert DATE.sub(b"\r\nDate: D\r\n", sent) == (
        b"HTTP/1.1 200 OK\r\nServer: gunicorn\r\nDate: D\r\nConnection: keep-alive\r\n"
        b"Content-Type: text/html; charset=utf-8\r\nX-Frame-Options: DENY\r\n"
        b"Content-Length: 11\r\n\r\nhello world"
    )


def test_date_is_gunicorns_as_seconds_pass():
    """The Date header, formatted once a second, is the one gunicorn formats in that second,
    in this second and the next; a given time is gunicorn's own."""

    def dated():
        while True:
            before, date, after = util.http_date(), release.http_date(), util.http_date()
            if before == after:  # not across a second's edge
                return date, before

    first, expected = dated()
    assert first == expected
    time.sleep(1.05 - time.time() % 1)
    second, expected = dated()
    assert second == expected != first
    assert release.http_date(784111777) == "Sun, 06 Nov 1994 08:49:37 GMT"


# The release's settings, and each worker says whose responses it builds.
REPORTING_WORKER = """
import runpy
globals().update(runpy.run_path({release!r}))
release_post_worker_init = post_worker_init


def post_worker_init(worker):
    from gunicorn import util
    from gunicorn.http import wsgi
    worker.log.info("responses from %s, dates from %s", wsgi.Response.__module__,
                    util.http_date.__module__)
    release_post_worker_init(worker)
"""


BARE_GUNICORN = [sys.executable, "-m", "gunicorn", "--worker-class", "gthread", "--threads", "4"]


def raw_get(port, path):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        client.sendall(
            f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode()
        )
        received = b""
        while chunk := client.recv(65536):
            received += chunk
    return received


def test_the_releases_workers_answer_with_them(tmp_path):
    """gunicorn run with the release's gunicorn.conf.py: its workers build the release's
    responses, and a page reads as it does from bare gunicorn."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/health"
    env = {
        **os.environ,
        "PORT": str(port),
        "GUNICORN_WORKERS": "1",
        "GUNICORN_ACCESS_LOG": "off",
        "DJANGO_DATA_DIR": str(tmp_path / "data"),
    }
    config = tmp_path / "reporting_worker.py"
    config.write_text(REPORTING_WORKER.format(release=str(RELEASE / "gunicorn.conf.py")))
    log = tmp_path / "gunicorn.log"
    pages = {}
    commands = {
        "release": [sys.executable, "-m", "gunicorn", "--config", str(config), "www.wsgi"],
        "bare": [*BARE_GUNICORN, "--bind", f"127.0.0.1:{port}", "www.wsgi"],
    }
    for name, command in commands.items():
        with open(log, "wb") as out:
            server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=out)
        try:
            wait_until(lambda: served(url), timeout=60, what=f"{name} gunicorn's 200")
            pages[name] = [raw_get(port, path) for path in ("/health", "/no-such-page/")]
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)
        if name == "release":
            assert "responses from gunicorn_response, dates from gunicorn_response" in (
                log.read_text()
            )
    normal = [[DATE.sub(b"\r\nDate: D\r\n", page) for page in run] for run in pages.values()]
    assert normal[0] == normal[1]
    assert normal[0][0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert normal[0][1].startswith(b"HTTP/1.1 404 Not Found\r\n")
