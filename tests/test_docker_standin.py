"""The air-gapped base: a stand-in for the Debian slim image, built from Debian packages.

build_docker_image.sh uses it when the base OS image can be neither found nor pulled; here
it is built under a name of the test's own, from the cached root filesystem when present.
"""

import subprocess

import pytest

from tests.docker_rig import ROOT, SESSION_TAG, remove_image
from www import project

pytestmark = pytest.mark.docker

SCRIPT = ROOT / "deploy" / "base" / "build-os-standin.sh"
HOST_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def default_base_os_image():
    for line in (ROOT / "deploy" / "base" / "Dockerfile").read_text().splitlines():
        if line.startswith("ARG BASE_OS_IMAGE="):
            return line.partition("=")[2]
    raise AssertionError("deploy/base/Dockerfile has no ARG BASE_OS_IMAGE default")


@pytest.fixture
def standin(docker_client):
    name = project.load().image("standin-test", SESSION_TAG)
    result = subprocess.run(
        [str(SCRIPT), default_base_os_image(), name], capture_output=True, text=True, timeout=1800
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"tagged {name}" in result.stderr
    yield name
    remove_image(docker_client, name)


def test_standin_is_a_trimmed_debian_slim_that_trusts_the_host_ca(docker_client, standin):
    image = docker_client.images.get(standin)
    env = dict(item.split("=", 1) for item in image.attrs["Config"]["Env"] or [])
    assert image.attrs["Config"]["Cmd"] == ["bash"]
    assert image.attrs["Size"] < 120_000_000  # the official slim image is about 80 MB

    script = r"""
        . /etc/os-release; echo "codename=$VERSION_CODENAME"
        echo "debs=$(find /var/cache/apt/archives -name '*.deb' | wc -l)"
        echo "lists=$(find /var/lib/apt/lists -type f | wc -l)"
        echo "man=$(find /usr/share/man -type f | wc -l)"
        echo "docs=$(find /usr/share/doc -type f ! -name copyright | wc -l)"
        echo "excludes=$(grep -c path-exclude /etc/dpkg/dpkg.cfg.d/docker)"
        echo "machine_id=$(wc -c < /etc/machine-id)"
        cat "$PIP_CERT"
    """
    out = docker_client.containers.run(standin, ["bash", "-c", script], remove=True).decode()
    suite = default_base_os_image().split(":")[1].removesuffix("-slim")
    for expected in (f"codename={suite}", "debs=0", "lists=0", "man=0", "docs=0"):
        assert expected in out
    assert "excludes=0" not in out and "machine_id=0" in out
    assert not env["PIP_CERT"].startswith("/etc/ssl/certs/")
    with open(HOST_CA_BUNDLE) as f:
        assert f.read().strip() in out
