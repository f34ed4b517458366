"""gunicorn's settings in the release image, from the environment start.sh checked.

PORT                port to bind on all interfaces (default 8000)
GUNICORN_WORKERS    worker processes (default 2 x CPUs available)
GUNICORN_THREADS    threads per worker (default 4)
GUNICORN_TIMEOUT    seconds a request may take before its worker is restarted (default 30)
GUNICORN_ACCESS_LOG where gunicorn writes the access log: a file (default
                    /host/logs/access.log), "-" for stdout (the container log), "off" for none
"""

import logging
import math
import os
import traceback
from pathlib import Path

from gunicorn import glogging

# The container's CPU quota (docker run --cpus), cgroup v2 then v1: "QUOTA PERIOD" in
# microseconds, or "max" / -1 for no quota.
CGROUP_V2_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")
CGROUP_V1_CPU = Path("/sys/fs/cgroup/cpu")


def cpu_quota():
    """CPUs the cgroup quota allows (rounded up), or None without a quota."""
    try:
        if CGROUP_V2_CPU_MAX.exists():
            quota, period = CGROUP_V2_CPU_MAX.read_text().split()
        else:
            quota = (CGROUP_V1_CPU / "cpu.cfs_quota_us").read_text().strip()
            period = (CGROUP_V1_CPU / "cpu.cfs_period_us").read_text().strip()
    except (OSError, ValueError):
        return None
    if quota in ("max", "-1"):
        return None
    return max(1, math.ceil(int(quota) / int(period)))


def available_cpus():
    """The CPUs this container may use: its affinity, capped by its cgroup quota."""
    cpus = len(os.sched_getaffinity(0))
    quota = cpu_quota()
    return min(cpus, quota) if quota else cpus


def access_log(setting):
    """gunicorn's accesslog for GUNICORN_ACCESS_LOG: a path, "-" (stdout), or None ("off").

    A file's directory is created if missing: gunicorn run without start.sh (`docker run
    IMAGE gunicorn --config ...`) finds no /host/logs.
    """
    if setting == "off":
        return None
    if setting != "-":
        Path(setting).parent.mkdir(parents=True, exist_ok=True)
    return setting


class AccessLogger(glogging.Logger):
    """gunicorn's logger, with its default access-log line (Apache combined) built from the
    nine values it shows and written straight to the log's one file or stream.

    gunicorn's own path turns every request header and environ variable into an atom, wraps
    them all and passes a LogRecord through logging: +18% CPU instructions on a /health
    request, this path +2.7% (docs/benchmarks.md). The line is the same, escaping included
    (tests/test_access_log.py). A custom access_log_format, a logging configuration, or
    filters or other handlers on the access log take gunicorn's own path. Setting a
    logger_class turns off gunicorn's switch to its statsd logger: to send statsd metrics,
    derive this class from gunicorn.instrument.statsd.Statsd instead.
    """

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
        user = self._get_user(environ) if "HTTP_AUTHORIZATION" in environ else None
        fields = (
            environ.get("REMOTE_ADDR", "-"),
            "-",
            user or "-",
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


bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"
# The master imports the app once and forks ready workers, instead of every worker importing
# Django after the fork (seconds on a small machine). Safe: Django opens no database
# connection and the app creates no boto3 client at import. A code change means a new
# container anyway.
preload_app = True
# Threads keep connections alive and overlap database round trips; Django is thread-safe.
# Each thread holds its own database connection (CONN_MAX_AGE): max_connections must cover
# workers x threads x instances.
worker_class = "gthread"
workers = int(os.environ.get("GUNICORN_WORKERS") or 2 * available_cpus())
threads = int(os.environ.get("GUNICORN_THREADS") or 4)
timeout = int(os.environ.get("GUNICORN_TIMEOUT") or 30)
# SIGTERM lets running requests finish this long; supervisord's stopwaitsecs is longer.
graceful_timeout = 20
# Heartbeat files on the container's own tmpfs, not the overlay filesystem.
worker_tmp_dir = "/dev/shm"
# gunicornc's socket; the default under $HOME (/var/www) is not writable by the app user.
control_socket = "/tmp/gunicorn.ctl"
# Straight to a file by default: through stdout every request's line would pass supervisord,
# start.sh's tee and dockerd, which cost a quarter of the throughput on one core.
accesslog = access_log(os.environ.get("GUNICORN_ACCESS_LOG") or "/host/logs/access.log")
logger_class = AccessLogger
errorlog = "-"
# Whom gunicorn believes about the request's scheme: only the load balancer, which ends TLS
# and sets X-Forwarded-Proto. FORWARDED_ALLOW_IPS names where it can be (stage 2 sets the
# VPC's ranges, read from instance metadata); by default only this host. From anyone else
# the header changes nothing: wsgi.url_scheme stays http and Django (no SECURE_PROXY_SSL_HEADER
# in the config templates) redirects to https. X-Forwarded-Ssl and X-Forwarded-Protocol are
# not honoured from anyone, nor SCRIPT_NAME/PATH_INFO headers (forwarder_headers), and
# header names with underscores are dropped (header_map).
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS") or "127.0.0.1,::1"
secure_scheme_headers = {"X-FORWARDED-PROTO": "https"}
forwarder_headers = ""
header_map = "drop"
