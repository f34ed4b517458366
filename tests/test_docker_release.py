"""The release image on a real Docker engine: start-script, supervisord, gunicorn, S3 config.

Every container runs on the host network against the session's Postgres (a database of its
own per test) and moto's server (reset per test by the `aws` fixture).
"""

import re
import socket
import time
import uuid
from urllib.parse import urlparse

import psycopg2
import pytest
import requests

from tests.docker_rig import (
    APP_UID,
    TEST_SECRET_KEY,
    put_s3_config,
    run_release,
    stage_bucket,
    stage_config,
)
from tests.servers import free_port, wait_until
from www import aws, project

pytestmark = pytest.mark.docker

SUPERVISORD_CONF = "/var/www/deploy/release/supervisord.conf"


def new_database(postgres_server):
    return postgres_server.create_database(f"release_{uuid.uuid4().hex[:12]}")


def query(postgres_server, db, sql):
    conn = psycopg2.connect(**postgres_server.connect_kwargs(db))
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall()
    finally:
        conn.close()


def public_tables(postgres_server, db):
    return query(
        postgres_server,
        db,
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'",
    )


def process_uids(container):
    """UID of every process in the container, as the host's ps sees them."""
    top = container.top(ps_args="-o uid,pid,args")
    return {row[2]: row[0] for row in top["Processes"]}


def test_release_serves_health_and_admin_css_from_s3(
    aws, postgres_server, docker_client, release_image, cdn_stand_in
):
    db = new_database(postgres_server)
    bucket = stage_bucket()
    cdn = cdn_stand_in
    uri = put_s3_config(stage_config(postgres_server, db, cdn_domain=cdn.domain))

    with run_release(docker_client, release_image, config_uri=uri) as app:
        app.wait_healthy()
        app.wait_docker_health("healthy")
        assert requests.get(app.url + "/health", timeout=5).json()["database"] == "ok"

        login = requests.get(app.url + "/admin/login/", timeout=10)
        assert login.status_code == 200
        # The content-hashed copy (www/storage.py), which the CDN and browsers keep a year.
        css_url = re.search(r'href="([^"]*/admin/css/base\.[0-9a-f]{12}\.css)"', login.text)
        assert css_url, login.text
        css_url = css_url.group(1)
        assert css_url.startswith(f"https://{cdn.domain}/static/admin/css/base.")
        css = requests.get(css_url, timeout=10, verify=cdn.ca_file)
        assert css.status_code == 200 and "body" in css.text
        assert css.headers["Cache-Control"] == "public, max-age=31536000, immutable"

        # The app, supervisord and tini all run as the image's non-root user.
        uids = process_uids(app.container)
        assert any("gunicorn" in args for args in uids), uids
        assert set(uids.values()) == {str(APP_UID)}, uids
        assert "[ERROR]" not in app.logs() and "Traceback" not in app.logs()
        host_log = (app.host_dir_path / "logs" / "container.log").read_text()
        assert "start.sh: starting" in host_log and "Collected static files" in host_log
        # gunicorn writes the access log straight to the host directory, within a second.
        access_log = app.host_dir_path / "logs" / "access.log"
        wait_until(
            lambda: '"GET /admin/login/ HTTP/1.1" 200' in access_log.read_text(),
            timeout=10,
            what="the login's access-log line",
        )

    s3 = aws_client()
    hashed_key = urlparse(css_url).path.lstrip("/")
    before = s3.head_object(Bucket=bucket, Key=hashed_key)["LastModified"]

    # A second start of the same release on the same storage uploads nothing.
    with run_release(docker_client, release_image, config_uri=uri) as again:
        again.wait_healthy()
        assert "already collected" in again.logs()
        assert "Collected static files" not in again.logs()
    after = s3.head_object(Bucket=bucket, Key=hashed_key)["LastModified"]
    assert after == before


def aws_client():
    return aws.client("s3")


BAD_CONFIGS = {
    "missing variable": (None, None, "DJANGO_CONFIG_URI is not set"),
    "missing key": ("s3", None, "no such key 'config/absent.py'"),
    "syntax error": ("s3", "DEBUG = = True\n", "syntax error at line"),
    "bad port": ("s3", "", "PORT=http: set it to a whole number"),
}


@pytest.mark.parametrize("case", BAD_CONFIGS)
def test_bad_config_stops_the_container_with_one_line(
    case, aws, postgres_server, docker_client, release_image
):
    where, prefix, expected = BAD_CONFIGS[case]
    db = new_database(postgres_server)
    source = stage_config(postgres_server, db)
    uri, env = None, {}
    if where == "s3" and prefix is None:
        put_s3_config(source)
        uri = uri_of_missing_key()
    elif where == "s3":
        uri = put_s3_config(prefix + source)
    if case == "bad port":
        env["PORT"] = "http"

    started = time.monotonic()
    with run_release(docker_client, release_image, config_uri=uri, env=env) as app:
        status = app.wait_exit(timeout=30)
        assert time.monotonic() - started < 30
        logs = app.logs()
    assert status != 0
    error_lines = [line for line in logs.splitlines() if "error" in line.lower()]
    assert len(error_lines) == 1 and expected in error_lines[0], logs
    assert TEST_SECRET_KEY not in logs
    assert "Traceback" not in logs
    assert public_tables(postgres_server, db) == []


def uri_of_missing_key():
    return f"s3://{stage_bucket()}/config/absent.py"


def test_unwritable_host_dir_says_what_to_chown(
    aws, postgres_server, docker_client, release_image, tmp_path
):
    db = new_database(postgres_server)
    uri = put_s3_config(stage_config(postgres_server, db))
    tmp_path.chmod(0o755)  # owned by root, as a fresh /containers/<project> would be
    with run_release(docker_client, release_image, config_uri=uri, host_dir=str(tmp_path)) as app:
        assert app.wait_exit(timeout=30) != 0
        logs = app.logs()
    assert f"/host/logs is not writable by uid {APP_UID}" in logs
    assert f"chown {APP_UID} /containers/{project.load().name}" in logs
    assert public_tables(postgres_server, db) == []


def test_three_containers_on_one_empty_database_migrate_once(
    aws, postgres_server, docker_client, release_image
):
    db = new_database(postgres_server)
    uri = put_s3_config(stage_config(postgres_server, db))
    apps = []
    try:
        for _ in range(3):
            apps.append(run_release(docker_client, release_image, config_uri=uri))
        for app in apps:
            app.wait_healthy(timeout=240)
        rows = query(postgres_server, db, "SELECT app, name FROM django_migrations")
        assert len(rows) == len(set(rows)) > 10
        applied_by = [app for app in apps if "Applying auth.0001_initial" in app.logs()]
        assert len(applied_by) == 1
        for app in apps:
            assert app.reload()["Status"] == "running"
    finally:
        for app in apps:
            app.remove()


def test_supervisord_restarts_gunicorn_and_docker_stop_is_clean(
    aws, postgres_server, docker_client, release_image
):
    db = new_database(postgres_server)
    uri = put_s3_config(stage_config(postgres_server, db))
    with run_release(docker_client, release_image, config_uri=uri) as app:
        app.wait_healthy()

        def gunicorn_pid():
            code, out = app.exec("supervisorctl", "-c", SUPERVISORD_CONF, "pid", "gunicorn")
            return int(out) if code == 0 and out.strip().isdigit() else 0

        old = gunicorn_pid()
        assert old > 0
        # The config is fetched once per start: a restarted gunicorn reads the start's copy.
        aws_client().delete_object(Bucket=stage_bucket(), Key="config/stage.py")
        code, out = app.exec("bash", "-c", f"kill -KILL {old}")
        assert code == 0, out
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (gunicorn_pid() not in (0, old)):
            time.sleep(0.5)
        assert gunicorn_pid() not in (0, old), app.logs()
        # The killed master's workers can still answer /health for a moment (they notice
        # their parent is gone within a second), so /health alone does not say the new master
        # is up. It logs "Listening at" once its signal handlers are in place: before that, a
        # SIGTERM ends it as a signal's default would, which is no test of its stop.
        deadline = time.monotonic() + 60
        while app.logs().count("Listening at:") < 2 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert app.logs().count("Listening at:") >= 2, app.logs()
        app.wait_healthy(timeout=60)
        assert "exited: gunicorn (terminated by SIGKILL" in app.logs()

        # Clean means stopped by SIGTERM within docker's grace, not killed (exit 137): no
        # wall-clock bound, which a loaded machine would turn into noise.
        app.container.stop(timeout=30)
        state = app.reload()
        assert state["ExitCode"] == 0, app.logs()
        assert "stopped: gunicorn (exit status 0)" in app.logs()


def test_a_command_given_to_docker_run_replaces_the_start_script(
    aws, postgres_server, docker_client, release_image
):
    db = new_database(postgres_server)
    uri = put_s3_config(stage_config(postgres_server, db))
    command = [
        "./manage.py",
        "shell",
        "-c",
        "from django.conf import settings; print('db is', settings.DATABASES['default']['NAME'])",
    ]
    with run_release(docker_client, release_image, config_uri=uri, command=command) as run:
        assert run.wait_exit(timeout=60) == 0, run.logs()
        logs = run.logs()
    assert f"db is {db}" in logs
    assert "start.sh" not in logs
    assert public_tables(postgres_server, db) == []


# Imports every module under www/ (the settings with nothing configured: no config needed).
IMPORT_ALL = (
    "import importlib, pkgutil, www;"
    "names = [m.name for m in pkgutil.walk_packages(www.__path__, 'www.')];"
    "[importlib.import_module(n) for n in names];"
    "print('imported', len(names))"
)


def test_every_module_the_release_ships_imports_and_operator_commands_fail_cleanly(
    docker_client, release_image
):
    """The operator's tooling (www/ops, the AWS commands) ships in the release image, where
    the docker SDK is not installed: it must import, and publish_image must say so in a line."""
    command = [
        "sh",
        "-c",
        f'./manage.py shell -c "{IMPORT_ALL}" && ./manage.py publish_image '
        "--env stage 1.0 --registry 127.0.0.1:9/x",
    ]
    with run_release(docker_client, release_image, config_uri=None, command=command) as run:
        assert run.wait_exit(timeout=120) == 1, run.logs()
        logs = run.logs()
    assert "imported " in logs, logs
    assert "Traceback" not in logs, logs
    assert "CommandError: publish_image needs the docker SDK" in logs, logs


def test_unreachable_database_stops_the_start_after_db_wait_timeout(
    aws, postgres_server, docker_client, release_image
):
    closed_port = free_port()  # nothing listens here
    uri = put_s3_config(stage_config(postgres_server, "absent", DB_PORT=str(closed_port)))
    started = time.monotonic()
    with run_release(
        docker_client, release_image, config_uri=uri, env={"DB_WAIT_TIMEOUT": "3"}
    ) as app:
        assert app.wait_exit(timeout=30) != 0
        logs = app.logs()
        host_log = (app.host_dir_path / "logs" / "container.log").read_text()
    assert time.monotonic() - started < 30
    last_line = logs.splitlines()[-1]
    assert f"at 127.0.0.1:{closed_port} did not answer within 3s" in last_line, logs
    assert "DB_WAIT_TIMEOUT" in last_line
    # The last line reaches /host/logs too: the start-script waits for its tee.
    assert host_log.splitlines()[-1] == last_line
    assert postgres_server.password not in logs


def gunicorn_workers(app, expected, timeout=30):
    """The number of gunicorn worker processes (children of the master), once it is
    `expected` or after timeout."""

    def count():
        rows = app.container.top(ps_args="-o pid,ppid,args")["Processes"]
        gunicorns = {pid: ppid for pid, ppid, args in rows if "gunicorn" in args}
        masters = [pid for pid, ppid in gunicorns.items() if ppid not in gunicorns]
        return sum(ppid in masters for ppid in gunicorns.values())

    deadline = time.monotonic() + timeout
    while (found := count()) != expected and time.monotonic() < deadline:
        time.sleep(0.5)
    return found


def test_migrate_switch_workers_and_data_dir(aws, postgres_server, docker_client, release_image):
    """DJANGO_MIGRATE=0 leaves an empty database empty; the worker count follows the CPU
    quota (--cpus 1: 2 x 1) unless GUNICORN_WORKERS says; a fork on SQLite keeps its
    database in the host directory (DJANGO_DATA_DIR=/host/data)."""
    db = new_database(postgres_server)
    postgres_uri = put_s3_config(stage_config(postgres_server, db))
    sqlite_uri = put_s3_config(
        f'SECRET_KEY = "{TEST_SECRET_KEY}"\nALLOWED_HOSTS = ["127.0.0.1"]\n',
        key="config/sqlite.py",
    )
    quick = {"DJANGO_COLLECTSTATIC": "0"}
    with (
        run_release(
            docker_client,
            release_image,
            config_uri=postgres_uri,
            env={**quick, "DJANGO_MIGRATE": "0", "GUNICORN_WORKERS": None},
            nano_cpus=1_000_000_000,
        ) as unmigrated,
        run_release(
            docker_client,
            release_image,
            config_uri=sqlite_uri,
            env={**quick, "GUNICORN_WORKERS": "4"},
        ) as on_sqlite,
    ):
        unmigrated.wait_healthy()
        on_sqlite.wait_healthy()
        assert gunicorn_workers(unmigrated, 2) == 2
        assert gunicorn_workers(on_sqlite, 4) == 4

        assert "DJANGO_MIGRATE=0: not migrating" in unmigrated.logs()
        assert "Applying" not in unmigrated.logs()
        assert public_tables(postgres_server, db) == []

        database = on_sqlite.host_dir_path / "data" / "db.sqlite3"
        assert "Applying auth.0001_initial" in on_sqlite.logs()
        assert database.stat().st_size > 0 and database.stat().st_uid == APP_UID


def test_gunicorn_that_cannot_start_stops_the_container_with_one_line(
    aws, postgres_server, docker_client, release_image
):
    db = new_database(postgres_server)
    uri = put_s3_config(stage_config(postgres_server, db))
    port = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        with run_release(
            docker_client,
            release_image,
            config_uri=uri,
            port=port,
            env={"DJANGO_COLLECTSTATIC": "0"},
        ) as app:
            status = app.wait_exit(timeout=120)
            logs = app.logs()
            host_log = (app.host_dir_path / "logs" / "container.log").read_text()
    assert status != 0
    assert "Connection in use" in logs
    expected = (
        "start.sh: error: gunicorn could not be started (supervisord gave up: FATAL; "
        "its own error is above): stopping the container"
    )
    assert logs.splitlines()[-1] == expected, logs
    assert host_log.splitlines()[-1] == expected
    assert [line for line in logs.splitlines() if line.startswith("start.sh: error")] == [expected]
