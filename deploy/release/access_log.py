"""The release's gunicorn logger: gunicorn's own, with a cheaper access-log line.

gunicorn's access() turns every request header and environ variable into an atom, wraps
them all and passes a LogRecord through logging. AccessLogger builds gunicorn's default line
(Apache combined) from the nine values it shows and writes it straight to the access log's
one file or stream: the same bytes, escaping included (tests/test_access_log.py compares them
with gunicorn's own logger on requests gunicorn parsed). docs/benchmarks.md has what each
path costs per request. It uses gunicorn's public Logger interface only (access, now, error,
debug, the access_log logger and the configuration).

A custom access_log_format, a logging configuration, or filters or other handlers on the
access log take gunicorn's own path. Setting a logger_class turns off gunicorn's switch to its
statsd logger: to send statsd metrics, derive this class from gunicorn.instrument.statsd.Statsd
instead.
"""

import base64
import binascii
import logging
import traceback

from gunicorn import glogging


class AccessLogger(glogging.Logger):
    def access(self, resp, req, environ, request_time):
        handler = self.plain_access_handler()
        if handler is None:
            return super().access(resp, req, environ, request_time)
        try:
            self.write_line(handler, self.combined_line(resp, environ))
        except Exception:  # as gunicorn's own access(): a failed log line fails no request
            self.error(traceback.format_exc())

    def plain_access_handler(self):
        """The access log's handler, if it is gunicorn's one file or stream, as configured."""
        cfg, log = self.cfg, self.access_log
        if (
            cfg.access_log_format != cfg.settings["access_log_format"].default
            or cfg.logconfig
            or cfg.logconfig_dict
            or cfg.logconfig_json
            or len(log.handlers) != 1
            or log.filters
        ):
            return None
        handler = log.handlers[0]
        plain = type(handler) in (logging.FileHandler, logging.StreamHandler)
        return handler if plain and not handler.filters else None

    def combined_line(self, resp, environ):
        status = resp.status.split(None, 1)[0] if isinstance(resp.status, str) else resp.status
        sent = getattr(resp, "sent", None)
        fields = (
            environ.get("REMOTE_ADDR", "-"),
            "-",
            self.basic_auth_user(environ) or "-",
            self.now(),
            f"{environ['REQUEST_METHOD']} {environ['RAW_URI']} {environ['SERVER_PROTOCOL']}",
            status,
            (str(sent) if sent is not None else "") or "-",
            environ.get("HTTP_REFERER", "-"),
            environ.get("HTTP_USER_AGENT", "-"),
        )
        h, l, u, t, r, s, b, f, a = (  # noqa: E741 - gunicorn's atom names
            v.replace('"', '\\"') if isinstance(v, str) else v for v in fields
        )
        return f'{h} {l} {u} {t} "{r}" {s} {b} "{f}" "{a}"'

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
        handler.acquire()
        try:
            if handler.stream is not None:
                handler.stream.write(line + handler.terminator)
                handler.flush()
                return
        finally:
            handler.release()
        # A logging reconfiguration (Django's, at start-up) closes file handlers; logging
        # reopens the file on the next record. No arguments: a "%" in the URL stays as is.
        self.access_log.info(line)
