"""What a container does between fetching its config and serving: wait for the database,
migrate once however many containers start together, collect static files once per release.

Plain functions on a Django connection or storage; the management commands wait_for_db,
migrate_with_lock and collectstatic_once are their command-line faces, and start_steps
runs all three in one process (the release start-script's stage-3 step).
"""

import contextlib
import hashlib
import time

from django.contrib.staticfiles.finders import get_finders
from django.db import DatabaseError, OperationalError, connections


class DatabaseUnavailable(Exception):
    pass


class LockTimeout(Exception):
    pass


def describe(connection):
    """Where a connection points, without its credentials."""
    settings = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite {settings['NAME']}"
    host = settings.get("HOST") or "local socket"
    port = f":{settings['PORT']}" if settings.get("PORT") else ""
    return f"{connection.vendor} {settings.get('NAME')} at {host}{port}"


def wait_for_database(connection, *, timeout, interval=1.0):
    """Return the seconds it took until `SELECT 1` answered; DatabaseUnavailable after timeout."""
    start = time.monotonic()
    while True:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
                cursor.fetchone()
            return time.monotonic() - start
        except DatabaseError as exc:
            connection.close()
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            remaining = timeout - (time.monotonic() - start)
            if remaining <= 0:
                raise DatabaseUnavailable(
                    f"{describe(connection)} did not answer within {timeout:g}s: {reason}"
                ) from None
            time.sleep(min(interval, remaining))


def lock_key(name):
    """A stable signed 64-bit advisory-lock key for a name."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


@contextlib.contextmanager
def advisory_lock(alias, name, *, timeout):
    """Hold PostgreSQL's session advisory lock `name` on a connection of its own.

    Other holders of the same name wait at most `timeout` seconds (LockTimeout). The lock
    ends with its connection, so a process that dies never leaves it held.
    """
    lock_connection = connections.create_connection(alias)
    try:
        with lock_connection.cursor() as cursor:
            cursor.execute(
                "SELECT set_config('lock_timeout', %s, false)", [f"{timeout * 1000:.0f}"]
            )
            try:
                cursor.execute("SELECT pg_advisory_lock(%s)", [lock_key(name)])
            except OperationalError as exc:
                if getattr(exc.__cause__, "pgcode", None) == "55P03":  # lock_not_available
                    raise LockTimeout(
                        f"lock {name!r} still held by another process after {timeout:g}s"
                    ) from None
                raise
        yield
    finally:
        lock_connection.close()


def static_fingerprint():
    """A hash of every file the staticfiles finders would collect, names and contents."""
    digest = hashlib.sha256()
    found = {}
    for finder in get_finders():
        for path, storage in finder.list([]):
            prefixed = f"{storage.prefix}/{path}" if getattr(storage, "prefix", None) else path
            found.setdefault(
                prefixed, (storage, path)
            )  # the first finder wins, as in collectstatic
    for prefixed in sorted(found):
        storage, path = found[prefixed]
        digest.update(prefixed.encode() + b"\0")
        with storage.open(path) as f:
            for chunk in iter(lambda f=f: f.read(1 << 16), b""):
                digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def collected_marker(fingerprint):
    """The storage name that says: files with this fingerprint are all in this storage."""
    return f".collected/{fingerprint}"


def static_manifest(fingerprint):
    """The name of the manifest (name -> content-hashed name) of the files with this
    fingerprint, in a storage that hashes names (www/storage.py)."""
    return f"staticfiles.{fingerprint}.json"


def is_collected(storage, fingerprint):
    """Whether the files with this fingerprint are all in storage: their marker, and in a
    storage that hashes names their manifest too. A marker alone is what a storage that
    did not hash names left (a release before hashing): without a manifest every page that
    names a static file would fail."""
    if not storage.exists(collected_marker(fingerprint)):
        return False
    manifest = getattr(storage, "manifest_name", None)
    return manifest is None or storage.manifest_storage.exists(manifest)
