"""The release's access log: deploy/release/access_log.py's AccessLogger, as gunicorn.conf.py
loads it, writes the same lines as gunicorn's own logger, for real requests parsed by
gunicorn, only cheaper."""

import os
import re
import runpy
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from gunicorn import glogging
from gunicorn.config import Config
from gunicorn.http import wsgi
from gunicorn.http.message import Request
from gunicorn.http.unreader import IterUnreader

from www import project

GUNICORN_CONF = Path(__file__).resolve().parent.parent / "deploy/release/gunicorn.conf.py"
# The release image sets PORT (project.env's APP_PORT); gunicorn.conf.py reads it.
IMAGE_PORT = str(project.load().app_port)
# Apache's common log time, e.g. [25/Nov/2026:09:58:17 +0000]
TIMESTAMP = re.compile(r"\[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\]")
REQUEST_TIME = timedelta(microseconds=1234)

REQUESTS = [
    # (raw request, status, bytes sent)
    (b"GET /health HTTP/1.1\r\nHost: example.com\r\nX-Request-ID: abc-123\r\n\r\n", "200 OK", 35),
    (
        b"GET /search?q=%22x%22&page=2 HTTP/1.1\r\nHost: example.com\r\n"
        b'Referer: https://example.com/"quoted"\r\n'
        b'User-Agent: Mozilla/5.0 "evil" agent\r\n'
        b"Authorization: Basic YWxpY2U6c2VjcmV0\r\n\r\n",
        "404 Not Found",
        179,
    ),
    (
        b"POST /admin/login/ HTTP/1.0\r\nHost: example.com\r\nContent-Length: 0\r\n\r\n",
        "302 Found",
        0,
    ),
    # Authorization headers with no Basic user in them: no user in the line, no failure.
    (
        b"GET /api/ HTTP/1.1\r\nHost: example.com\r\nAuthorization: Bearer abc.def\r\n\r\n",
        "200 OK",
        2,
    ),
    (
        b"GET /api/ HTTP/1.1\r\nHost: example.com\r\nAuthorization: Basic !!!bad\r\n\r\n",
        "401 Unauthorized",
        0,
    ),
    (
        b"GET /api/ HTTP/1.1\r\nHost: example.com\r\nAuthorization: Basic\r\n\r\n",
        "401 Unauthorized",
        0,
    ),
]


class Socket:
    def getsockname(self):
        return ("127.0.0.1", 8000)

    def sendall(self, data):
        pass


def log_lines(logger_class, path, *, access_log_format=None, before=None):
    """The access-log lines logger_class writes to path for REQUESTS; before(logger), if
    given, runs first."""
    cfg = Config()
    cfg.set("accesslog", str(path))
    if access_log_format:
        cfg.set("access_log_format", access_log_format)
    logger = logger_class(cfg)
    if before:
        before(logger)
    for raw, status, sent in REQUESTS:
        request = Request(cfg, IterUnreader([raw]), ("203.0.113.7", 50000))
        response, environ = wsgi.create(
            request, Socket(), ("203.0.113.7", 50000), ("127.0.0.1", 8000), cfg
        )
        response.start_response(status, [("Content-Type", "text/html")])
        response.sent = sent
        logger.access(response, request, environ, REQUEST_TIME)
    if hasattr(logger, "flush_lines"):  # ours keeps them up to a second
        logger.flush_lines()
    for handler in logger.access_log.handlers:
        handler.close()
    return path.read_text().splitlines()


@pytest.fixture
def access_logger(tmp_path, monkeypatch):
    """gunicorn.conf.py's AccessLogger, the file loaded as gunicorn loads it."""
    monkeypatch.setenv("GUNICORN_ACCESS_LOG", str(tmp_path / "logs" / "access.log"))
    monkeypatch.setenv("PORT", IMAGE_PORT)
    return runpy.run_path(str(GUNICORN_CONF))["AccessLogger"]


def test_lines_match_gunicorn(access_logger, tmp_path):
    ours = log_lines(access_logger, tmp_path / "ours.log")
    theirs = log_lines(glogging.Logger, tmp_path / "gunicorn.log")
    assert len(ours) == len(REQUESTS)
    assert all(TIMESTAMP.search(line) for line in ours)
    assert [TIMESTAMP.sub("[T]", line) for line in ours] == [
        TIMESTAMP.sub("[T]", line) for line in theirs
    ]
    # What an operator reads: the combined format, quotes escaped, the Basic auth user.
    assert TIMESTAMP.sub("[T]", ours[1]) == (
        '203.0.113.7 - alice [T] "GET /search?q=%22x%22&page=2 HTTP/1.1" 404 179 '
        '"https://example.com/\\"quoted\\"" "Mozilla/5.0 \\"evil\\" agent"'
    )


def test_custom_format_is_gunicorns(access_logger, tmp_path):
    custom = '%(h)s "%(r)s" %(s)s %({x-request-id}i)s %(D)s'
    ours = log_lines(access_logger, tmp_path / "ours.log", access_log_format=custom)
    theirs = log_lines(glogging.Logger, tmp_path / "gunicorn.log", access_log_format=custom)
    assert ours == theirs
    assert ours[0] == '203.0.113.7 "GET /health HTTP/1.1" 200 abc-123 1234'


def test_timestamp_is_gunicorns_as_seconds_pass(access_logger):
    """The line's timestamp, formatted once a second, is the one gunicorn's logger gives in
    that second, formatted or kept, and the next second's once the clock has moved on."""
    logger = access_logger(Config())

    def stamp():
        before = glogging.Logger.now(logger)
        ours, kept = logger.now(), logger.now()
        after = glogging.Logger.now(logger)
        assert {ours, kept} <= {before, after}
        return kept

    first = stamp()
    time.sleep(1.01 - time.time() % 1)  # into the next second
    assert stamp() != first


# In a fresh interpreter, as in a gunicorn worker: pytest's own logging handlers would
# otherwise join the reconfiguration.
RECONFIGURED = """
import logging.config, runpy, sys
from pathlib import Path
from tests.test_access_log import GUNICORN_CONF, log_lines
AccessLogger = runpy.run_path(str(GUNICORN_CONF))["AccessLogger"]
def reconfigure(logger):
    # What django.utils.log.configure_logging does with Django's default LOGGING.
    logging.config.dictConfig({"version": 1, "disable_existing_loggers": False})
    assert logger.access_log.handlers[0].stream is None, "the reconfiguration closed nothing"
print("\\n".join(log_lines(AccessLogger, Path(sys.argv[1]), before=reconfigure)))
"""


def test_lines_after_logging_reconfigured(tmp_path):
    """Django configures logging when gunicorn preloads the app, which closes gunicorn's file
    handlers: the access log reopens its file instead of failing every request."""
    lines = subprocess.run(
        [sys.executable, "-c", RECONFIGURED, str(tmp_path / "access.log")],
        cwd=GUNICORN_CONF.parent.parent.parent,
        env={
            **os.environ,
            "GUNICORN_ACCESS_LOG": str(tmp_path / "default" / "access.log"),
            "PORT": IMAGE_PORT,
        },
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert len(lines) == len(REQUESTS)
    assert '"GET /health HTTP/1.1" 200 35' in lines[0]


# One worker: COUNT requests with its own marker in the URL and a long User-Agent, logged
# as fast as it can, then a normal exit (the last batch is written at exit); with "quiet", it
# waits up to 5 s for them to reach the file before it exits, and exits 3 if they do not.
# In a fresh interpreter, as in a gunicorn worker (pytest's handlers stay out of the log).
WORKER = """
import runpy, sys, time
from pathlib import Path
from tests.test_access_log import GUNICORN_CONF, Socket, REQUEST_TIME
from gunicorn.config import Config
from gunicorn.http import wsgi
from gunicorn.http.message import Request
from gunicorn.http.unreader import IterUnreader
AccessLogger = runpy.run_path(str(GUNICORN_CONF))["AccessLogger"]
path, marker, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
cfg = Config()
cfg.set("accesslog", path)
logger = AccessLogger(cfg)
for n in range(count):
    raw = (f"GET /{marker}/{n} HTTP/1.1\\r\\nHost: example.com\\r\\n"
           f"User-Agent: {marker * 200}\\r\\n\\r\\n").encode()
    request = Request(cfg, IterUnreader([raw]), ("203.0.113.7", 50000))
    response, environ = wsgi.create(request, Socket(), ("203.0.113.7", 50000),
                                    ("127.0.0.1", 8000), cfg)
    response.start_response("200 OK", [])
    response.sent = 2
    logger.access(response, request, environ, REQUEST_TIME)
deadline = time.monotonic() + 5
while sys.argv[4:] == ["quiet"] and len(Path(path).read_text().splitlines()) < count:
    if time.monotonic() > deadline:
        sys.exit(3)
    time.sleep(0.1)
"""


def run_worker(tmp_path, path, marker, count, *options):
    return subprocess.Popen(
        [sys.executable, "-c", WORKER, str(path), marker, str(count), *options],
        cwd=GUNICORN_CONF.parent.parent.parent,
        env={
            **os.environ,
            "GUNICORN_ACCESS_LOG": str(tmp_path / "default.log"),
            "PORT": IMAGE_PORT,
        },
    )


def test_lines_reach_the_file_within_a_second_with_no_request_after_them(tmp_path):
    """Lines wait in the worker for a fuller batch, but no longer than FLUSH_SECONDS."""
    assert run_worker(tmp_path, tmp_path / "quiet.log", "q", 3, "quiet").wait(timeout=60) == 0


def test_two_workers_lines_never_interleave_and_none_is_lost_at_exit(tmp_path):
    """Both workers append batches to one file at once: every line arrives whole, once."""
    path, count = tmp_path / "shared.log", 2999  # the last batch part-filled at exit
    workers = [run_worker(tmp_path, path, marker, count) for marker in "ab"]
    assert [worker.wait(timeout=120) for worker in workers] == [0, 0]
    lines = path.read_text().splitlines()
    whole = re.compile(
        r'203\.0\.113\.7 - - \[[^]]+\] "GET /(a|b)/(\d+) HTTP/1\.1" 200 2 "-" "(\w+)"'
    )
    seen = {"a": [], "b": []}
    for line in lines:
        match = whole.fullmatch(line)
        assert match and match[3] == match[1] * 200, f"a broken line: {line[:120]!r}"
        seen[match[1]].append(int(match[2]))
    assert {marker: sorted(numbers) for marker, numbers in seen.items()} == {
        "a": list(range(count)),
        "b": list(range(count)),
    }
