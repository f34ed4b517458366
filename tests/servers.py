"""Real servers for the tests, on loopback: PostgreSQL, moto (the AWS endpoint) and an image
registry (Debian's docker-registry).

Each server is started by the fixture that owns it and stopped by that same object, by
its own pid or data directory, never by a name match.
"""

import contextlib
import glob
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process(proc, *, grace=10):
    """SIGTERM, then SIGKILL if it is still there after grace seconds (a busy machine can
    keep a server in a request past a short grace)."""
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=grace)


def wait_until(check, *, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise TimeoutError(f"not within {timeout}s: {what}")


def served(url):
    """Whether url answers 200 now (a server still starting answers nothing)."""
    try:
        return requests.get(url, timeout=2).status_code == 200
    except (requests.ConnectionError, requests.Timeout):
        return False


def postgres_bindir():
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise RuntimeError("PostgreSQL server binaries missing: apt-get install postgresql")
    return Path(found[-1]).parent


class PostgresServer:
    """A throwaway cluster in a temp dir. initdb/postgres refuse root: run as `postgres`."""

    user = "postgres"
    password = "test-only-password"

    def __init__(self):
        self.bindir = postgres_bindir()
        self.dir = Path(tempfile.mkdtemp(prefix="pg-test-"))
        self.datadir = self.dir / "data"
        self.port = free_port()
        self.host = "127.0.0.1"

    def _run(self, *argv):
        cmd = [str(self.bindir / argv[0]), *argv[1:]]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            log = self.dir / "log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{argv[0]} failed: {result.stderr.strip()}\n{tail}")

    def start(self):
        if not self.datadir.exists():
            if os.geteuid() == 0:
                shutil.chown(self.dir, "postgres", "postgres")
            pwfile = self.dir / "pw"
            pwfile.write_text(self.password)
            if os.geteuid() == 0:
                shutil.chown(pwfile, "postgres", "postgres")
            self._run(
                "initdb",
                "-D",
                str(self.datadir),
                "-U",
                self.user,
                "-A",
                "scram-sha-256",
                f"--pwfile={pwfile}",
                "--no-sync",
                "-E",
                "UTF8",
            )
            self._make_certificate()
        # bench.throughput --diagnose holds 2 x 11 settings x 3 replicas of containers with up
        # to 8 connections each (the release's workers open every thread's at start).
        self._run(
            "pg_ctl",
            "start",
            "-w",
            "-D",
            str(self.datadir),
            "-l",
            str(self.dir / "log"),
            "-o",
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
            f"-c max_connections=600 -c ssl=on -c ssl_cert_file={self.dir / 'server.crt'} "
            f"-c ssl_key_file={self.dir / 'server.key'}",
        )
        return self

    def _make_certificate(self):
        """A self-signed certificate, so that prod's sslmode="require" connects as to RDS."""
        cert, key = self.dir / "server.crt", self.dir / "server.key"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"]
            + ["-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
            check=True,
            capture_output=True,
            timeout=60,
        )
        key.chmod(0o600)
        if os.geteuid() == 0:
            for path in (cert, key):
                shutil.chown(path, "postgres", "postgres")

    def stop(self):
        if (self.datadir / "postmaster.pid").exists():
            self._run("pg_ctl", "stop", "-w", "-m", "fast", "-D", str(self.datadir))

    def destroy(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def create_database(self, name):
        import psycopg2

        conn = psycopg2.connect(**self.connect_kwargs("postgres"))
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        conn.close()
        return name

    def connect_kwargs(self, dbname):
        return dict(
            host=self.host, port=self.port, user=self.user, password=self.password, dbname=dbname
        )

    def django_settings(self, dbname):
        return {
            "ENGINE": "django.db.backends.postgresql",
            "HOST": self.host,
            "PORT": str(self.port),
            "USER": self.user,
            "PASSWORD": self.password,
            "NAME": dbname,
        }


class MotoServer:
    """moto's server as a subprocess: the AWS endpoint for boto3 via AWS_ENDPOINT_URL.
    It runs through tests/moto_rig.py, which closes two gaps of the emulator (read it).

    moto marks a requested ACM certificate issued this many seconds after the request (it
    checks no DNS); AWS takes minutes once the validation records resolve.
    """

    acm_validation_wait = 2

    def __init__(self):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        fd, self.log_path = tempfile.mkstemp(prefix="moto-", suffix=".log")
        os.close(fd)
        self.proc = None

    def start(self):
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.moto_rig", "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=Path(__file__).resolve().parent.parent,  # where `tests` is a package
                env={
                    **os.environ,
                    "MOTO_ACM_VALIDATION_WAIT": str(self.acm_validation_wait),
                    # AWS's managed policies exist in every account (setup_aws attaches one)
                    "MOTO_IAM_LOAD_MANAGED_POLICIES": "true",
                },
            )

        def up():
            try:
                return requests.get(self.url + "/moto-api/", timeout=1).ok
            except requests.ConnectionError:
                return False

        try:
            wait_until(up, timeout=30, what="moto server")
        except TimeoutError:
            self.stop()
            raise
        return self

    def log_offset(self):
        """Where moto's request log ends now: requests_since() reads from here."""
        return os.path.getsize(self.log_path)

    def requests_since(self, offset):
        """(method, path, status) of each request moto logged after byte `offset` of its log.
        werkzeug colours every status line but a 200's; the colours are taken off."""
        with open(self.log_path, "rb") as log:
            log.seek(offset)
            text = log.read().decode(errors="replace")
        lines = re.sub(r"\x1b\[[0-9;]*m", "", text).splitlines()
        found = (re.search(r'"(\w+) (\S+) HTTP/[\d.]+" (\d{3})', line) for line in lines)
        return [match.groups() for match in found if match]

    def reset(self):
        # A reset drops every resource the last test made: tens of seconds on a busy machine.
        requests.post(self.url + "/moto-api/reset", timeout=120).raise_for_status()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            stop_process(self.proc)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.log_path)


class RegistryServer:
    """Debian's docker-registry (distribution 2.x) on a free loopback port, in a temp dir."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="registry-test-"))
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.proc = None

    def start(self):
        config = self.dir / "config.yml"
        config.write_text(
            "version: 0.1\n"
            "log:\n  level: warn\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self.dir / 'data'}\n"
            f"http:\n  addr: {self.address}\n"
        )
        self.log = open(self.dir / "log", "wb")  # noqa: SIM115 -- closed in stop()
        self.proc = subprocess.Popen(
            ["/usr/bin/docker-registry", "serve", str(config)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

        def up():
            try:
                return requests.get(f"http://{self.address}/v2/", timeout=1).ok
            except requests.ConnectionError:
                return False

        try:
            wait_until(up, timeout=30, what="docker-registry")
        except TimeoutError:
            self.stop()
            raise
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            stop_process(self.proc)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


AWS_TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": "eu-west-1",
    "AWS_DEFAULT_REGION": "eu-west-1",
}
