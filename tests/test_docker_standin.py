"""The air-gapped base: a stand-in for the Debian slim image, built from Debian packages.

build_docker_image.sh uses it when the base OS image can be neither found nor pulled; here
it is built under a name of the test's own, from the cached root filesystem when present.
"""

import os
import secrets
import string
import subprocess
from pathlib import Path

import pytest

from tests.docker_rig import ROOT, SESSION_TAG, default_base_os_image, remove_image
from www import project

pytestmark = pytest.mark.docker

SCRIPT = ROOT / "deploy" / "base" / "build-os-standin.sh"
HOST_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
# build_docker_image.sh's step that makes the base OS image exist (the script is sourceable).
BASE_OS_STEP = 'source ./project.env && source ./build_docker_image.sh && ensure_base_os_image "$1"'


def debian_suite():
    return default_base_os_image().split(":")[1].removesuffix("-slim")


def cached_rootfs():
    """Where build-os-standin.sh caches the default release's root filesystem."""
    arch = subprocess.run(
        ["dpkg", "--print-architecture"], capture_output=True, text=True, check=True
    ).stdout.strip()
    cache_home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache_home / project.load().name / f"debian-{debian_suite()}-slim-{arch}.tar"


@pytest.fixture(scope="module")
def standin(docker_client):
    """The stand-in under a name of its own; it also leaves the root filesystem cached."""
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
    for expected in (f"codename={debian_suite()}", "debs=0", "lists=0", "man=0", "docs=0"):
        assert expected in out
    assert "excludes=0" not in out and "machine_id=0" in out
    assert not env["PIP_CERT"].startswith("/etc/ssl/certs/")
    with open(HOST_CA_BUNDLE) as f:
        assert f.read().strip() in out


def test_build_script_falls_back_to_the_standin_and_says_why(docker_client, standin, tmp_path):
    """build_docker_image.sh's base OS step, for a Debian slim image no registry has: the
    pull's own error, then the stand-in (from the cached root filesystem, under the name)."""
    suite = "".join(secrets.choice(string.ascii_lowercase) for _ in range(12))
    image = f"debian:{suite}-slim"
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / cached_rootfs().name.replace(debian_suite(), suite)).symlink_to(cached_rootfs())
    try:
        result = subprocess.run(
            ["bash", "-c", BASE_OS_STEP, "-", image],
            cwd=ROOT,
            env={**os.environ, "STANDIN_CACHE_DIR": str(cache)},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr
        lines = result.stderr.splitlines()
        pull_error = next(line for line in lines if "cannot pull" in line)
        assert pull_error.startswith(f"build_docker_image.sh: cannot pull {image}: ")
        assert len(pull_error.partition(f"{image}: ")[2]) > 10, pull_error  # docker's reason
        assert (
            f"build_docker_image.sh: no registry has {image} for this machine: using a stand-in "
            "built from Debian packages (deploy/base/build-os-standin.sh)"
        ) in lines
        assert any(line.startswith(f"build-os-standin: tagged {image}") for line in lines)
        assert docker_client.images.get(image).attrs["Comment"].startswith("stand-in")
    finally:
        remove_image(docker_client, image)
