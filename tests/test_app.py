"""The app itself: home page, admin, /health on the real PostgreSQL server."""

import json
import os
import subprocess
import sys

import pytest
import requests

from tests.servers import PostgresServer, free_port, wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.django_db
def test_home_page_links_its_stylesheet(client):
    response = client.get("/")
    assert response.status_code == 200
    assert b'<link rel="stylesheet" href="/static/www/site.css">' in response.content


@pytest.mark.django_db
def test_home_page_shows_published_announcements_from_the_database(client):
    from www.models import Announcement

    assert b"No announcements yet" in client.get("/").content
    Announcement.objects.create(title="Launch day", body="We are live.")
    Announcement.objects.create(title="Draft news", published=False)
    page = client.get("/").content.decode()
    assert "<h2>Launch day</h2>" in page and "We are live." in page
    assert "Draft news" not in page


@pytest.mark.django_db
def test_admin_login_renders(client):
    response = client.get("/admin/login/")
    assert response.status_code == 200
    assert b"/static/admin/css/base.css" in response.content


@pytest.mark.django_db
def test_health_runs_a_query_on_postgres(client, settings):
    from django.db import connection

    assert connection.vendor == "postgresql"
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok"}


@pytest.mark.django_db
def test_health_answers_any_host_but_the_site_does_not(client):
    assert client.get("/health", HTTP_HOST="10.1.2.3").status_code == 200
    assert client.get("/", HTTP_HOST="10.1.2.3").status_code == 400


def run_server(env, port):
    """gunicorn on the project's WSGI app, as the start-script runs it."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
            "--graceful-timeout",
            "1",
            "www.wsgi:application",
        ],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def get_health(url):
    try:
        return requests.get(url, timeout=10)
    except requests.ConnectionError:
        return None


def test_health_says_503_while_postgres_is_down_and_recovers(tmp_path):
    pg = PostgresServer().start()
    server = None
    try:
        pg.create_database("health")
        conf = tmp_path / "config.py"
        db = {**pg.django_settings("health"), "OPTIONS": {"connect_timeout": 2}}
        conf.write_text(f"SECRET_KEY = 'k' * 50\nDATABASES = {{'default': {db!r}}}\n")
        port = free_port()
        server = run_server({"DJANGO_CONFIG_URI": str(conf)}, port)
        url = f"http://127.0.0.1:{port}/health"
        wait_until(lambda: get_health(url) is not None, timeout=30, what="gunicorn")
        assert get_health(url).status_code == 200

        pg.stop()
        down = get_health(url)
        assert down.status_code == 503
        assert json.loads(down.content) == {"status": "error", "database": "unreachable"}

        pg.start()
        assert get_health(url).status_code == 200
    finally:
        if server:
            server.terminate()
            server.wait(timeout=10)
        pg.destroy()


def test_default_mode_needs_no_configuration(tmp_path):
    """`migrate && runserver` with nothing configured: SQLite, a kept secret key, DEBUG off."""
    env = {**os.environ, "DJANGO_DATA_DIR": str(tmp_path / "data")}
    env.pop("DJANGO_DEBUG", None)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--verbosity", "0"],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=120,
    )
    assert (tmp_path / "data" / "db.sqlite3").exists()
    key_file = tmp_path / "data" / "secret_key"
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    key = key_file.read_text()

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: get_health(base + "/health") is not None, timeout=30, what="runserver")
        home = requests.get(base + "/", timeout=10)
        assert home.status_code == 200 and "It works." in home.text
        css = requests.get(base + "/static/www/site.css", timeout=10)
        assert css.status_code == 200 and ".hero" in css.text
        # DEBUG is off: an unknown page is a plain 404, not Django's debug page.
        missing = requests.get(base + "/no-such-page", timeout=10)
        assert missing.status_code == 404 and "URLconf" not in missing.text
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert key_file.read_text() == key  # kept, not regenerated
