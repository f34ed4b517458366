"""gunicorn's settings in the release image, from the environment start.sh checked.

PORT                port to bind on all interfaces (the image's: project.env's APP_PORT)
GUNICORN_SOCKET     a Unix socket to bind instead of PORT (stage 2 sets it: nginx on the host
                    reaches the container through it, and nothing else can)
GUNICORN_WORKERS    worker processes (default 2 x CPUs available)
GUNICORN_THREADS    threads per worker (default 4)
GUNICORN_TIMEOUT    seconds a request may take before its worker is restarted (default 30)
GUNICORN_ACCESS_LOG where gunicorn writes the access log: a file (default
                    $HOST_LOG_DIR/access.log, the image's), "-" for stdout (the container
                    log), "off" for none
GUNICORN_WARM_UP    the path each worker serves itself before its first request (default
                    "/"), "off" for none; the workers then serve once all are warm
                    (post_worker_init)
GUNICORN_START_GATE set by start.sh: the master imports the app at once but binds its port
                    only once this file exists, after the start-up steps (on_starting)
"""

import gc
import importlib.util
import math
import os
import sys
import threading
import time
import wsgiref.util
from pathlib import Path

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


def load_beside(name):
    """The module in name.py beside this file (deploy/release is not a package), imported
    without adding its directory to the app's sys.path."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]


def access_log(setting):
    """gunicorn's accesslog for GUNICORN_ACCESS_LOG: a path, "-" (stdout), or None ("off").

    A file's directory is created if missing: gunicorn run without start.sh (`docker run
    IMAGE gunicorn --config ...`) finds no $HOST_LOG_DIR.
    """
    if setting == "off":
        return None
    if setting != "-":
        Path(setting).parent.mkdir(parents=True, exist_ok=True)
    return setting


def import_app(server):
    """Import the app, then gc.freeze() what the import made: it lives as long as the process,
    and a full collection in a worker would otherwise walk every one of those objects, writing
    to its header, so the kernel copies the page it shares with the master. Frozen, the pages
    stay shared and the walk is shorter (bench.worker_memory; docs/benchmarks.md)."""
    server.app.wsgi()
    gc.freeze()


def on_starting(server):
    """The master imports the app once and forks ready workers, instead of every worker
    importing Django after the fork (seconds on a small machine): what preload_app does, here
    so that under start.sh it overlaps the start-up steps (database wait, migrate,
    collectstatic) instead of following them. Safe: Django opens no database connection at
    import, and the config fetch's S3 client is not kept. A code change means a new container
    anyway.

    Under start.sh (GUNICORN_START_GATE set, the file absent) the port is bound, and the
    workers forked, only once the start-up process (manage.py start_steps --ready-file) has
    created the file after its last step: nothing is served before the migrations. If the
    steps fail, start.sh reports it in one line and kills supervisord; this master then exits
    quietly. An import error meanwhile is the steps' to report (they load the same settings);
    it is raised here only if they succeeded.
    """
    gate = os.environ.get("GUNICORN_START_GATE")
    if not gate or os.path.exists(gate):
        import_app(server)
        return
    supervisor = os.getppid()
    try:
        import_app(server)
        failed = False
        server.log.info("App imported; serving once the start-up steps are done (%s)", gate)
    except Exception:
        failed = True
    while not os.path.exists(gate):
        if os.getppid() != supervisor:  # orphaned: start.sh stopped the start
            os._exit(0)
        time.sleep(0.01)
    if failed:
        server.app.wsgi()


def post_fork(server, worker):
    """The worker's responses are the release's (gunicorn_response.py): each sent in one
    write where it can, its Date header formatted once a second. The master loads the module
    (below) and the worker installs it: loading this file (the tests do) changes no gunicorn
    in that process."""
    gunicorn_response.install()


def post_worker_init(worker):
    """The worker serves GET GUNICORN_WARM_UP (default /) to itself, in-process, before its
    first request, and drops the answer: what a worker does once for a page (its templates
    compiled, the URL patterns, the static files' URLs) is then done before anyone waits for
    it. A new container's first requests took 50-150 ms against 4 ms after them
    (docs/benchmarks.md), and a swap sends every request to a new container. The answer goes
    to no access log; one that is not 2xx or 3xx is logged, and the worker serves anyway. The
    warm-up's database connection is closed: requests run in the worker's thread pool, and
    each of those threads opens its connections now (connect_threads). Then it waits for the
    other workers to be warm too (wait_for_siblings)."""
    path = os.environ.get("GUNICORN_WARM_UP") or "/"
    if path == "off":
        return
    from django.conf import settings
    from django.db import connections

    host = next((h.lstrip(".") for h in settings.ALLOWED_HOSTS if "*" not in h), "localhost")
    # as the load balancer's HTTPS reaches it: a redirect to https would warm nothing
    environ = {"PATH_INFO": path, "HTTP_HOST": host, "SERVER_NAME": host, "SERVER_PORT": "443"}
    environ["wsgi.url_scheme"] = "https"
    wsgiref.util.setup_testing_defaults(environ)  # the rest of a WSGI GET, from the stdlib
    answered = []
    try:
        response = worker.wsgi(
            environ, lambda status, headers, exc_info=None: answered.append(status)
        )
        try:
            for _ in response:
                pass
        finally:
            response.close()  # Django's request_finished, as after any request
        if not answered or not answered[0].startswith(("2", "3")):
            worker.log.warning("Warm-up GET %s answered %s", path, answered[:1] or "nothing")
    except Exception as error:  # a page that fails fails its visitors too, not the worker
        worker.log.warning("Warm-up GET %s failed: %s", path, error)
    finally:
        connections.close_all()
    connect_threads(worker)
    wait_for_siblings(worker)


def wait_for_siblings(worker):
    """The worker takes no request until all its master's first workers are warm, or for at
    most half gunicorn's timeout: the first 200 on /health (what stage 2's swap waits for)
    then means every worker is ready. Otherwise the switch sent requests to a container whose
    other workers were still warming up, their start-up sharing the CPU with those requests
    (docs/benchmarks.md, seventh session). Each warm worker appends a byte to a file named
    after its master, on the container's tmpfs; a worker started later (a restart, a
    replacement) finds the count reached and goes on at once."""
    marks = warm_marks(worker.cfg, worker.ppid)
    worker.log.info("Worker warm: serving once all %d are", worker.cfg.workers)
    with open(marks, "ab") as file:
        file.write(b".")
    deadline = time.monotonic() + worker.cfg.timeout / 2
    while marks.stat().st_size < worker.cfg.workers and time.monotonic() < deadline:
        worker.notify()  # the heartbeat gunicorn's timeout watches
        time.sleep(0.01)


def warm_marks(cfg, master_pid):
    """The file where master_pid's workers count themselves warm (wait_for_siblings)."""
    return Path(cfg.worker_tmp_dir or "/tmp") / f"gunicorn-warm-{master_pid}"


def on_exit(server):
    """The master removes its workers' warm marks."""
    warm_marks(server.cfg, server.pid).unlink(missing_ok=True)


def connect_threads(worker):
    """Every thread of a gthread worker's pool opens its database connections (kept for
    CONN_MAX_AGE) before the worker takes a request: a connection costs a TLS handshake and
    PostgreSQL's SCRAM (4,096 rounds of PBKDF2 in the client), ~80 /health requests' CPU, which
    each thread's first visitor would otherwise wait for. A database that does not answer is
    logged; the threads connect on their first request then, as without this. Opened together,
    they would also expire together: www/deployed.py keeps them for good."""
    from django.db import connections

    pool = getattr(worker, "tpool", None)
    if pool is None:
        return
    # Each task waits for all the others, so the pool starts a thread for every one of them.
    together = threading.Barrier(worker.cfg.threads, timeout=60)

    def connect():
        together.wait()
        for connection in connections.all():
            connection.ensure_connection()

    for task in [pool.submit(connect) for _ in range(worker.cfg.threads)]:
        try:
            task.result()
        except Exception as error:
            worker.log.warning("A thread could not connect to the database yet: %s", error)
            return


def bind_address(environ):
    """The socket's path when GUNICORN_SOCKET names one, else every address on PORT."""
    if environ.get("GUNICORN_SOCKET"):
        return f"unix:{environ['GUNICORN_SOCKET']}"
    return f"0.0.0.0:{environ['PORT']}"


bind = bind_address(os.environ)
# preload_app stays off: on_starting imports the app in the master instead, the same way.
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
accesslog = access_log(
    os.environ.get("GUNICORN_ACCESS_LOG") or f"{os.environ['HOST_LOG_DIR']}/access.log"
)
AccessLogger = load_beside("access_log").AccessLogger
gunicorn_response = load_beside("gunicorn_response")
logger_class = AccessLogger
errorlog = "-"
# Whom gunicorn believes about the request's scheme: only the load balancer, which ends TLS
# and sets X-Forwarded-Proto (through nginx on the host). FORWARDED_ALLOW_IPS names where it
# can be; by default only this host. On GUNICORN_SOCKET (stage 2) every peer is believed:
# only nginx on the host can reach that socket, and it replaces the headers of anyone but
# the load balancer. From anyone else
# the header changes nothing: wsgi.url_scheme stays http and Django (no SECURE_PROXY_SSL_HEADER
# in the config templates) redirects to https. X-Forwarded-Ssl and X-Forwarded-Protocol are
# not honoured from anyone, nor SCRIPT_NAME/PATH_INFO headers (forwarder_headers), and
# header names with underscores are dropped (header_map).
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS") or "127.0.0.1,::1"
secure_scheme_headers = {"X-FORWARDED-PROTO": "https"}
forwarder_headers = ""
header_map = "drop"
