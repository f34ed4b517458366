"""The dev image as a newcomer runs it: their checkout at /var/www, a host directory at /host.

Postgres lives in /host/postgres/data: initialised on the first start, kept by the next
container on the same host directory.
"""

import shutil
import tempfile
import time
from pathlib import Path

import pytest
import requests

from tests.docker_rig import APP_UID, ROOT, SESSION_TAG
from tests.servers import free_port

pytestmark = pytest.mark.docker


def run_dev(client, image, host_dir, port):
    return client.containers.run(
        image,
        detach=True,
        network_mode="host",
        environment={"PORT": str(port)},
        volumes={
            str(ROOT): {"bind": "/var/www", "mode": "ro"},
            host_dir: {"bind": "/host", "mode": "rw"},
        },
        labels={"tests.session": SESSION_TAG},
    )


def wait_serving(container, url, timeout=180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        container.reload()
        if container.status == "exited":
            raise AssertionError(container.logs().decode(errors="replace"))
        try:
            response = requests.get(url, timeout=5)
            if response.status_code == 200:
                return response
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise AssertionError(f"{url} not 200 after {timeout}s:\n{container.logs().decode()}")


def shell(container, code):
    result = container.exec_run(["python3", "manage.py", "shell", "-c", code], user="app")
    output = result.output.decode(errors="replace")
    assert result.exit_code == 0, output
    return output


@pytest.fixture
def host_dir():
    path = tempfile.mkdtemp(prefix="docker-dev-host-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_dev_container_serves_and_keeps_postgres_data_across_containers(
    docker_client, dev_image, host_dir
):
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    # What a first start that died halfway through initialising Postgres leaves behind.
    partial = Path(host_dir) / "postgres" / "data.partial"
    partial.mkdir(parents=True)
    (partial / "PG_VERSION").write_text("17\n")
    first = run_dev(docker_client, dev_image, host_dir, port)
    try:
        assert wait_serving(first, url).status_code == 200
        logs = first.logs().decode(errors="replace")
        assert "initialising PostgreSQL in /host/postgres/data" in logs
        assert not partial.exists()
        shell(
            first,
            "from django.contrib.auth.models import User; User.objects.create(username='kept')",
        )

        # Postgres and runserver run as their own non-root users.
        users = {row[2]: row[0] for row in first.top(ps_args="-o uid,pid,args")["Processes"]}
        app_user = str(APP_UID)
        assert any("runserver" in args and user == app_user for args, user in users.items()), users
        assert any("postgres -D" in args and user != "0" for args, user in users.items()), users

        first.stop(timeout=30)
        assert first.wait(timeout=10)["StatusCode"] == 0
        # supervisord's last line reaches /host/logs too: the start-script waits for its tee.
        last_line = first.logs().decode(errors="replace").splitlines()[-1]
        host_log = (Path(host_dir) / "logs" / "container.log").read_text()
        assert host_log.splitlines()[-1] == last_line
    finally:
        first.remove(force=True)

    second = run_dev(docker_client, dev_image, host_dir, port)
    try:
        wait_serving(second, url)
        logs = second.logs().decode(errors="replace")
        assert "initialising PostgreSQL" not in logs
        assert "PostgreSQL data in /host/postgres/data" in logs
        out = shell(
            second,
            "from django.contrib.auth.models import User; "
            "print('kept rows:', User.objects.filter(username='kept').count())",
        )
        assert "kept rows: 1" in out
    finally:
        second.remove(force=True)
