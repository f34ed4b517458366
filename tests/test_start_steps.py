"""The commands the release start-script runs, on the session's real Postgres:
wait_for_db, migrate_with_lock and collectstatic_once, and start_steps, which runs them in one
process."""

from io import StringIO

import psycopg2
import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from tests.helpers import manage
from tests.servers import free_port
from www import start_steps


def run(*args, **options):
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO(), **options)
    return out.getvalue()


@pytest.mark.django_db
def test_wait_for_db_says_when_the_database_answered():
    assert "answered after" in run("wait_for_db", timeout=5)


def test_wait_for_db_gives_up_after_db_wait_timeout_in_one_line(postgres_server, tmp_path):
    config = tmp_path / "settings.py"
    db = {**postgres_server.django_settings("app"), "PORT": str(free_port())}
    config.write_text(f"SECRET_KEY = 'x' * 50\nDATABASES = {{'default': {db!r}}}\n")
    result = manage(
        "wait_for_db", env={"DJANGO_CONFIG_URI": str(config), "DB_WAIT_TIMEOUT": "1"}, timeout=60
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"CommandError: postgresql app at 127.0.0.1:{db['PORT']} did not answer within 1s: "
        f'connection to server at "127.0.0.1", port {db["PORT"]} failed: Connection refused '
        "(DB_WAIT_TIMEOUT or --timeout sets the wait)"
    ]


@pytest.mark.django_db(transaction=True)
def test_migrate_with_lock_holds_the_advisory_lock():
    out = run("migrate_with_lock", interactive=False, verbosity=2)
    assert f"Holding advisory lock '{django_settings.PROJECT.name}:migrate'" in out
    assert "No migrations to apply" in out


@pytest.mark.django_db(transaction=True)
def test_migrate_with_lock_waits_for_the_holder_at_most_lock_timeout(postgres_server):
    holder = psycopg2.connect(**postgres_server.connect_kwargs(connection.settings_dict["NAME"]))
    try:
        with holder.cursor() as cur:
            key = start_steps.lock_key(f"{django_settings.PROJECT.name}:migrate")
            cur.execute("SELECT pg_advisory_lock(%s)", [key])
        with pytest.raises(CommandError, match="still held by another process after 1s"):
            run("migrate_with_lock", interactive=False, lock_timeout=1)
    finally:
        holder.close()


def test_collectstatic_once_collects_once_per_fingerprint(settings, tmp_path):
    settings.STATIC_ROOT = tmp_path / "static"
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    dry = run("collectstatic_once", interactive=False, dry_run=True)
    assert dry.startswith("Would collect static files")
    assert not settings.STATIC_ROOT.exists()

    first = run("collectstatic_once", interactive=False)
    assert "Collected static files" in first
    assert (settings.STATIC_ROOT / "admin" / "css" / "base.css").exists()
    fingerprint = start_steps.static_fingerprint()
    assert (settings.STATIC_ROOT / ".collected" / fingerprint).exists()

    second = run("collectstatic_once", interactive=False)
    assert second.strip() == (
        f"Static files {fingerprint} already collected (.collected/{fingerprint} exists), "
        "unchanged."
    )


def file_static_storage(settings, tmp_path):
    settings.STATIC_ROOT = tmp_path / "static"
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    return settings.STATIC_ROOT


@pytest.mark.django_db(transaction=True)
def test_start_steps_waits_migrates_and_collects_in_one_process(settings, tmp_path):
    static_root = file_static_storage(settings, tmp_path)
    out = run("start_steps", interactive=False, verbosity=2)
    fingerprint = start_steps.static_fingerprint()
    lines = out.splitlines()
    answered = next(i for i, line in enumerate(lines) if "answered after" in line)
    locked = next(i for i, line in enumerate(lines) if "Holding advisory lock" in line)
    collected = next(i for i, line in enumerate(lines) if "Collected static files" in line)
    assert answered < locked < collected
    assert "No migrations to apply" in out
    assert (static_root / ".collected" / fingerprint).exists()

    again = run("start_steps", interactive=False)
    assert f"Static files {fingerprint} already collected" in again


@pytest.mark.django_db
def test_start_steps_skips_what_its_flags_turn_off(settings, tmp_path):
    static_root = file_static_storage(settings, tmp_path)
    out = run("start_steps", interactive=False, migrate=False, collectstatic=False)
    waited, *skipped = out.splitlines()
    assert "answered after" in waited
    assert skipped == [
        "Not migrating (--no-migrate).",
        "Not collecting static files (--no-collectstatic).",
    ]
    assert not static_root.exists()


@pytest.mark.django_db
def test_start_steps_creates_its_ready_file_only_after_every_step(settings, tmp_path):
    file_static_storage(settings, tmp_path)
    ready = tmp_path / "ready"
    run("start_steps", interactive=False, migrate=False, ready_file=ready)
    assert ready.exists()


def test_start_steps_stops_at_an_unreachable_database_in_one_line(postgres_server, tmp_path):
    config = tmp_path / "settings.py"
    ready = tmp_path / "ready"
    db = {**postgres_server.django_settings("app"), "PORT": str(free_port())}
    config.write_text(f"SECRET_KEY = 'x' * 50\nDATABASES = {{'default': {db!r}}}\n")
    result = manage(
        "start_steps",
        "--no-input",
        "--ready-file",
        str(ready),
        env={"DJANGO_CONFIG_URI": str(config), "DB_WAIT_TIMEOUT": "1"},
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stdout == ""
    assert not ready.exists()  # gunicorn, behind it, never serves
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"CommandError: postgresql app at 127.0.0.1:{db['PORT']} did not")
    assert line.endswith("(DB_WAIT_TIMEOUT or --timeout sets the wait)")
