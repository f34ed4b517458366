"""README's first command, ./run_dev.sh: build the dev image and serve this checkout."""

import os
import re
import subprocess
import uuid

import pytest
import requests

from tests.docker_rig import ROOT, SESSION_TAG
from tests.servers import free_port, wait_until

pytestmark = pytest.mark.docker


def readme_commands():
    readme = (ROOT / "README.md").read_text()
    return re.findall(r"^```sh\n(\./\S+\.sh)\n```$", readme, re.MULTILINE)


def test_readme_names_the_two_commands():
    assert readme_commands() == ["./run_dev.sh", "./run_tests.sh"]


def test_run_dev_serves_the_checkout_on_localhost(dev_image, docker_client, tmp_path):
    port = free_port()
    name = f"run-dev-test-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "DEV_HOST_DIR": str(tmp_path / "host"),
        "DEV_PORT": str(port),
        "DEV_TAG": SESSION_TAG,  # the session's dev image: the build is all cache hits
        "DEV_CONTAINER_NAME": name,
    }
    output = tmp_path / "run_dev.out"
    with open(output, "wb") as out:  # a file, not a pipe nobody reads while we wait
        proc = subprocess.Popen(
            ["./run_dev.sh", "--network", "host"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:

        def home():
            try:
                return requests.get(f"http://127.0.0.1:{port}/", timeout=5)
            except requests.ConnectionError:
                return None

        wait_until(lambda: home() is not None, timeout=240, what="run_dev.sh's server")
        page = home()
        assert page.status_code == 200 and "It works." in page.text
        assert (tmp_path / "host" / "postgres" / "data" / "PG_VERSION").exists()
        docker_client.containers.get(name).stop(timeout=20)
        assert proc.wait(timeout=60) == 0, output.read_text()[-3000:]
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
