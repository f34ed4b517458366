"""The release's gunicorn logger: gunicorn's own, with a cheaper access-log line.

gunicorn's access() turns every request header and environ variable into an atom, wraps
them all and passes a LogRecord through logging. AccessLogger builds gunicorn's default line
(Apache combined) from the nine values it shows and writes it straight to the access log's
one file or stream: the same bytes, escaping included (tests/test_access_log.py compares them
with gunicorn's own logger on requests gunicorn parsed). docs/benchmarks.md has what each
path costs per request. It uses gunicorn's public Logger interface only (access, now, error,
debug, the access_log logger and the configuration).

The lines are written in batches, as nginx's `access_log ... buffer= flush=` does: a worker
keeps them until it holds BATCH_BYTES, at most FLUSH_SECONDS (a thread of its own writes them
then), and writes what it holds when it exits. One write(2) for some 25 lines instead of one
per request, and on stdout (stage 2's setting) one wake-up of supervisord and start.sh's tee
instead of 25. A batch is whole lines of at most PIPE_BUF bytes, which the kernel appends to
a file or a pipe in one piece: two workers' batches never interleave mid-line. A worker
killed with SIGKILL (gunicorn's timeout, the OOM killer) loses its last second of lines.
Measured in-process (docs/benchmarks.md, sixth session): 4.3 us a request, against 7.9 us
with a write per line and 28-31 us for gunicorn's own logger. Since the fourteenth session a
line is formatted once (again, escaped, only if a field holds a double quote) and its
timestamp once a second: 1.7 us against 2.3 us before, on that session's machine.

A custom access_log_format, a logging configuration, or filters or other handlers on the
access log take gunicorn's own path, a line at a time. Setting a logger_class turns off
gunicorn's switch to its statsd logger: to send statsd metrics, derive this class from
gunicorn.instrument.statsd.Statsd instead.
"""

import atexit
import base64
import binascii
import logging
import os
import select
import threading
import time
import traceback

from gunicorn import glogging

FLUSH_SECONDS = 1.0
BATCH_BYTES = select.PIPE_BUF


def combined(host, user, stamp, request, status, sent, referer, agent):
    """A line in gunicorn's default access_log_format, Apache's combined log format."""
    return f'{host} - {user} {stamp} "{request}" {status} {sent} "{referer}" "{agent}"'


# The format's own double quotes: around the request line, the referer and the user agent.
COMBINED_QUOTES = 6


def escape(field):
    """A field as gunicorn writes it: a double quote as \\" (a str; anything else as is)."""
    return field.replace('"', '\\"') if isinstance(field, str) else field


class AccessLogger(glogging.Logger):
    def __init__(self, cfg):
        super().__init__(cfg)
        self._lines = []  # waiting to be written, each with its terminator
        self._size = 0  # their bytes
        self._flusher_pid = None  # the process whose flusher thread runs (workers fork)
        self._stamp = None, None  # (second, now()'s text for it)

    def access(self, resp, req, environ, request_time):
        handler = self.plain_access_handler()
        if handler is None:
            return super().access(resp, req, environ, request_time)
        try:
            self.write_line(handler, self.combined_line(resp, environ))
        except Exception:  # as gunicorn's own access(): a failed log line fails no request
            self.error(traceback.format_exc())

    def setup(self, cfg):
        super().setup(cfg)
        # Read once: gunicorn's settings change only through setup (the master's reload on
        # HUP), and reading five of them cost 2.7 us, as much as writing the line.
        configured = cfg.logconfig or cfg.logconfig_dict or cfg.logconfig_json
        default = cfg.settings["access_log_format"].default
        self.default_format = cfg.access_log_format == default and not configured

    def plain_access_handler(self):
        """The access log's handler, if it is gunicorn's one file or stream, as configured."""
        log = self.access_log
        if not self.default_format or len(log.handlers) != 1 or log.filters:
            return None
        handler = log.handlers[0]
        plain = type(handler) in (logging.FileHandler, logging.StreamHandler)
        return handler if plain and not handler.filters else None

    def combined_line(self, resp, environ):
        status = resp.status.split(None, 1)[0] if isinstance(resp.status, str) else resp.status
        sent = getattr(resp, "sent", None)
        fields = (
            environ.get("REMOTE_ADDR", "-"),
            self.basic_auth_user(environ) or "-",
            self.now(),
            # one field, escaped whole, as gunicorn's %(r)s is (its parts need not be str)
            f"{environ['REQUEST_METHOD']} {environ['RAW_URI']} {environ['SERVER_PROTOCOL']}",
            status,
            (str(sent) if sent is not None else "") or "-",
            environ.get("HTTP_REFERER", "-"),
            environ.get("HTTP_USER_AGENT", "-"),
        )
        line = combined(*fields)
        # Formatted again, escaped, only if a field holds a double quote: few requests do.
        if line.count('"') > COMBINED_QUOTES:
            line = combined(*(escape(field) for field in fields))
        return line

    def now(self):
        """gunicorn's timestamp ([01/Dec/2026:06:06:58 +0000]), formatted once a second
        rather than for every line."""
        second = int(time.time())
        stamped, stamp = self._stamp
        if second != stamped:
            stamp = time.strftime("[%d/%b/%Y:%H:%M:%S %z]", time.localtime(second))
            self._stamp = second, stamp  # one tuple: a thread reads both or neither
        return stamp

    def basic_auth_user(self, environ):
        """The user name of an HTTP Basic Authorization header (gunicorn's %(u)s), or None."""
        header = environ.get("HTTP_AUTHORIZATION")
        if not header or not header.lower().startswith("basic"):
            return None
        _, _, credentials = header.partition(" ")
        if not credentials:
            return None
        try:
            return base64.b64decode(credentials.strip().encode()).split(b":", 1)[0].decode()
        except (binascii.Error, UnicodeDecodeError) as exc:
            self.debug("Couldn't get username: %s", exc)
            return None

    def write_line(self, handler, line):
        """Keep line for the next batch; write the kept lines first if it would overflow it,
        and the batch once it is full (a line as long as a batch goes alone)."""
        line += handler.terminator
        length = len(line) if line.isascii() else len(line.encode())
        with handler.lock:
            if self._flusher_pid != os.getpid():
                self._start_flusher()
            if self._size + length > BATCH_BYTES:
                self._write_kept(handler)
            self._lines.append(line)
            self._size += length
            if self._size >= BATCH_BYTES:
                self._write_kept(handler)

    def flush_lines(self):
        """Write every line kept so far (the flusher thread, at exit, and tests)."""
        handler = self.plain_access_handler()
        if handler is None:
            return
        with handler.lock:
            self._write_kept(handler)

    def _start_flusher(self):
        self._flusher_pid = os.getpid()
        self._lines, self._size = [], 0  # a forked copy's lines are its parent's to write
        threading.Thread(target=self._flush_every_second, name="access-log", daemon=True).start()
        atexit.register(self.flush_lines)

    def _flush_every_second(self):
        while True:
            time.sleep(FLUSH_SECONDS)
            try:
                self.flush_lines()
            except Exception:  # a full disk costs lines, not the thread
                self.error(traceback.format_exc())

    def _write_kept(self, handler):
        """The kept lines in one write: write_line keeps at most BATCH_BYTES of them (or one
        longer line). The caller holds handler.lock."""
        if self._lines:
            text, self._lines, self._size = "".join(self._lines), [], 0
            self._write(handler, text)

    def _write(self, handler, text):
        if handler.stream is not None:
            handler.stream.write(text)
            handler.flush()
            return
        # A logging reconfiguration (Django's, at start-up) closes file handlers; logging
        # reopens the file on the next record. No arguments: a "%" in the URL stays as is.
        self.access_log.info(text.removesuffix(handler.terminator))
