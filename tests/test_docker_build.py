"""build_docker_image.sh as a release manager uses it, on a copy of this repository that is
its own git repository: tags, labels, layer reuse, and what never gets into an image.
"""

import io
import json
import os
import re
import subprocess
import tarfile
import uuid

import pytest

from tests.docker_rig import (
    APP_UID,
    BUILD_SCRIPT,
    ROOT,
    SESSION_TAG,
    build_image,
    default_base_os_image,
    remove_image,
)
from www import project

pytestmark = pytest.mark.docker

CANARY = "canary-secret-" + uuid.uuid4().hex
NEVER_SHIPPED = tuple(f"var/www/{d}/" for d in (".git", "tests", "bench", "docs", ".venv"))


def git(repo, *args):
    return subprocess.run(
        ["git", "-c", "user.name=Test", "-c", "user.email=test@example.com", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


@pytest.fixture
def repo(tmp_path):
    """This repository's files (tracked and untracked, not ignored) as a fresh git repo,
    plus a local config holding a secret, ignored by git as real ones are."""
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.split(b"\0")
    copy = tmp_path / "repo"
    copy.mkdir()
    archive = subprocess.run(
        ["tar", "-C", str(ROOT), "--null", "-T", "-", "-cf", "-"],
        input=b"\0".join(f for f in files if f and (ROOT / f.decode()).exists()),
        capture_output=True,
        check=True,
    ).stdout
    subprocess.run(["tar", "-C", str(copy), "-xf", "-"], input=archive, check=True)
    git(copy, "init", "-q")
    git(copy, "add", "-A")
    git(copy, "commit", "-q", "-m", "release candidate")
    (copy / "deploy" / "aws" / "config" / "stage.local.py").write_text(f'SECRET_KEY = "{CANARY}"\n')
    # Ignored only by this clone's .git/info/exclude (as by a global gitignore): no
    # .dockerignore rule knows it, and `git status` shows the tree clean.
    with open(copy / ".git" / "info" / "exclude", "a") as exclude:
        exclude.write("/www/private_settings.py\n")
    (copy / "www" / "private_settings.py").write_text(f'API_TOKEN = "{CANARY}"\n')
    assert git(copy, "status", "--porcelain") == ""
    return copy


def run_script(repo, *args, env=None):
    return subprocess.run(
        [str(repo / BUILD_SCRIPT.name), *args],
        cwd=repo,
        env={k: v for k, v in {**os.environ, **(env or {})}.items() if v is not None},
        capture_output=True,
        text=True,
        timeout=1800,
    )


def test_help_explains_kinds_tag_and_override():
    result = subprocess.run([str(BUILD_SCRIPT), "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    for words in ("{dev|release} TAG", "release/TAG", "ALLOW_UNRELEASED_BUILD=1", "--network host"):
        assert words in result.stdout


def test_release_refuses_untagged_or_dirty_tree_in_one_line(repo, docker_client):
    tag = f"{SESSION_TAG}-refused"
    untagged = run_script(repo, "release", tag, env={"ALLOW_UNRELEASED_BUILD": None})
    assert untagged.returncode != 0
    assert untagged.stderr.strip().splitlines() == [
        f"build_docker_image.sh: error: release {tag} refused: there is no git tag "
        f"release/{tag}; commit, then git tag release/{tag} "
        "(or set ALLOW_UNRELEASED_BUILD=1 for a local trial)"
    ]
    git(repo, "tag", f"release/{tag}")
    (repo / "www" / "urls.py").write_text((repo / "www" / "urls.py").read_text() + "# edit\n")
    (repo / "project.env").write_text((repo / "project.env").read_text() + "# edit\n")
    dirty = run_script(repo, "release", tag, env={"ALLOW_UNRELEASED_BUILD": None})
    assert dirty.returncode != 0
    assert dirty.stderr.strip().splitlines() == [
        f"build_docker_image.sh: error: release {tag} refused: the working tree has uncommitted "
        "changes: project.env, www/urls.py; commit them (git commit), then move the tag: "
        f"git tag -f release/{tag} (or set ALLOW_UNRELEASED_BUILD=1 for a local trial)"
    ]
    # committed, the tag is one commit behind: the line says how to move it
    git(repo, "commit", "-q", "-am", "edits")
    behind = run_script(repo, "release", tag, env={"ALLOW_UNRELEASED_BUILD": None})
    assert behind.returncode != 0
    assert re.search(
        rf"refused: git tag release/{tag} is [0-9a-f]{{12}}, not HEAD; move it to HEAD with "
        rf"git tag -f release/{tag} ",
        behind.stderr,
    ), behind.stderr
    image = project.load().image("release", tag)
    assert not docker_client.images.list(name=image)


def layer_tars(docker_client, image):
    """Every layer of an image, as (name, TarFile) from `docker image save`."""
    saved = io.BytesIO(b"".join(docker_client.images.get(image).save(named=True)))
    with tarfile.open(fileobj=saved) as outer:
        manifest = json.load(outer.extractfile("manifest.json"))
        for layer in manifest[0]["Layers"]:
            with tarfile.open(fileobj=outer.extractfile(layer)) as tar:
                yield layer, tar


def test_tagged_release_is_labelled_reuses_layers_and_holds_no_secret(
    repo, docker_client, release_image
):
    # release_image: the session's build, so the base image exists and is reused here.
    first_tag, second_tag = f"{SESSION_TAG}-a", f"{SESSION_TAG}-b"
    images = []
    try:
        git(repo, "tag", f"release/{first_tag}")
        # a remote cloned with a token in its URL, as CI systems do
        git(repo, "remote", "add", "origin", f"https://ci:{CANARY}@git.example.com/team/app.git")
        first, output = build_image("release", first_tag, cwd=repo, env=no_override())
        images.append(first)
        assert f"Images built:\n  {project.load().image('base')}:" in output
        assert first in output and "MB" in output
        labels = docker_client.images.get(first).labels
        assert labels["org.opencontainers.image.version"] == first_tag
        assert labels["org.opencontainers.image.revision"] == git(repo, "rev-parse", "HEAD")
        assert labels["org.opencontainers.image.created"].endswith("Z")
        assert labels["org.opencontainers.image.source"] == "https://git.example.com/team/app.git"
        assert CANARY not in json.dumps(docker_client.images.get(first).attrs)

        # A one-line code change: every layer but the code's is reused.
        urls = repo / "www" / "urls.py"
        urls.write_text(urls.read_text() + "# a one-line change\n")
        git(repo, "commit", "-q", "-am", "one-line change")
        git(repo, "tag", f"release/{second_tag}")
        second, _ = build_image("release", second_tag, cwd=repo, env=no_override())
        images.append(second)
        layers_a = docker_client.images.get(first).attrs["RootFS"]["Layers"]
        layers_b = docker_client.images.get(second).attrs["RootFS"]["Layers"]
        assert len(layers_a) == len(layers_b)
        assert layers_a[:-1] == layers_b[:-1] and layers_a[-1] != layers_b[-1]

        # The ignored files with their secret, git's metadata, and what production does not
        # run (tests, benchmarks, docs) stay out of every layer.
        scanned = set()
        for layer, tar in layer_tars(docker_client, second):
            for member in tar:
                scanned.add(member.name)
                assert not member.name.endswith(".local.py"), (layer, member.name)
                assert not member.name.startswith(NEVER_SHIPPED), (layer, member.name)
                if member.isfile() and member.size < 5_000_000:
                    data = tar.extractfile(member).read()
                    assert CANARY.encode() not in data, (layer, member.name)
        assert {
            "var/www/manage.py",
            "var/www/project.env",
            "var/www/www/urls.py",
            "var/www/deploy/release/start.sh",
            "var/www/requirements/base.txt",
        } <= scanned
        assert "var/www/www/private_settings.py" not in scanned
    finally:
        for image in images:
            remove_image(docker_client, image)


@pytest.mark.parametrize(
    ("remote", "label"),
    [
        (
            "https://ci:{secret}@git.example.com/team/app.git",
            "https://git.example.com/team/app.git",
        ),
        (
            "https://oauth2:{secret}@x@gitlab.example.com/app.git",
            "https://gitlab.example.com/app.git",
        ),
        ("HTTPS://{secret}@git.example.com:8443/app", "HTTPS://git.example.com:8443/app"),
        ("ssh://git:{secret}@git.example.com/app.git", "ssh://git.example.com/app.git"),
        ("{secret}@git.example.com:team/app.git", "git.example.com:team/app.git"),
        ("https://git.example.com/team/app.git", "https://git.example.com/team/app.git"),
    ],
)
def test_source_label_never_carries_the_remotes_credentials(repo, remote, label):
    git(repo, "remote", "add", "origin", remote.format(secret=CANARY))
    result = subprocess.run(
        ["bash", "-c", 'source "$0" && source_url', str(repo / BUILD_SCRIPT.name)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == label


def no_override():
    return {"ALLOW_UNRELEASED_BUILD": ""}


def test_image_metadata_holds_no_config_or_secret(docker_client, release_image, dev_image):
    for image in (release_image, dev_image):
        attrs = docker_client.images.get(image).attrs
        env = dict(item.split("=", 1) for item in attrs["Config"]["Env"])
        assert not {k for k in env if k.startswith("AWS_")}, env
        assert "DJANGO_CONFIG_CACHE" not in env and "SECRET_KEY" not in env
        history = docker_client.api.history(image)
        text = "\n".join(step["CreatedBy"] for step in history)
        for word in ("SECRET", "PASSWORD", "AWS_ACCESS_KEY", "TOKEN"):
            assert word not in text.upper(), (image, word)
    release_env = docker_client.images.get(release_image).attrs["Config"]
    assert "DJANGO_CONFIG_URI" not in " ".join(release_env["Env"])
    assert release_env["User"] == f"{APP_UID}:{APP_UID}"


def test_unreleased_trial_takes_the_working_tree_but_nothing_ignored(
    repo, docker_client, release_image
):
    tag = f"{SESSION_TAG}-trial"
    urls = repo / "www" / "urls.py"
    urls.write_text(urls.read_text() + "# uncommitted trial edit\n")
    (repo / "www" / "scratch.py").write_text("NOTE = 1\n")  # untracked, not ignored
    image = None
    try:
        image, output = build_image("release", tag, cwd=repo, env={"ALLOW_UNRELEASED_BUILD": "1"})
        assert "WARNING: ALLOW_UNRELEASED_BUILD=1" in output
        assert "build_docker_image.sh: untracked files included: www/scratch.py\n" in output
        labels = docker_client.images.get(image).labels
        revision = labels["org.opencontainers.image.revision"]
        assert revision == git(repo, "rev-parse", "HEAD") + "-dirty"
        code = code_layer_files(docker_client, image)
        assert code["var/www/www/urls.py"].endswith(b"# uncommitted trial edit\n")
        assert code["var/www/www/scratch.py"] == b"NOTE = 1\n"
        # Ignored by .gitignore (stage.local.py) or by .git/info/exclude: never in.
        assert "var/www/www/private_settings.py" not in code
        assert not any(name.endswith(".local.py") for name in code)
        assert not any(CANARY.encode() in data for data in code.values())
        assert not any(name.startswith(NEVER_SHIPPED) for name in code)
    finally:
        if image:
            remove_image(docker_client, image)
    # The trial went through a copy of git's index: the clone's own is untouched.
    assert git(repo, "status", "--porcelain") == "M www/urls.py\n?? www/scratch.py"


def code_layer_files(docker_client, image):
    """Name -> content of each file under var/www/ in the image's last layer (the code)."""
    files = {}
    for _, tar in layer_tars(docker_client, image):
        files = {
            m.name: tar.extractfile(m).read()
            for m in tar
            if m.isfile() and m.name.startswith("var/www/")
        }
    return files


def test_dry_run_prints_the_plan_and_rebuild_base_skips_the_cache(docker_client, release_image):
    """REBUILD_BASE=1 rebuilds base without docker's build cache (which would reuse the old
    apt-get upgrade), pulling the base OS image afresh unless it is the local stand-in."""
    tag = f"{SESSION_TAG}-plan"
    base_os = default_base_os_image()
    standin = docker_client.images.get(base_os).attrs.get("Comment", "").startswith("stand-in")

    cached = run_script(ROOT, "--dry-run", "dev", tag, "--network", "host")
    assert cached.returncode == 0, cached.stderr
    assert "is up to date" in cached.stderr
    assert "--no-cache" not in cached.stderr

    rebuild = run_script(
        ROOT, "--dry-run", "dev", tag, "--network", "host", env={"REBUILD_BASE": "1"}
    )
    assert rebuild.returncode == 0, rebuild.stderr
    base_build = next(
        line
        for line in rebuild.stderr.splitlines()
        if line.startswith("build_docker_image.sh: would run: docker build")
        and "deploy/base/Dockerfile" in line
    )
    assert "--no-cache" in base_build
    assert ("--pull" in base_build) is not standin
    plan = "not pulled" if standin else f"pulling {base_os} afresh"
    assert f"REBUILD_BASE=1: rebuilding {project.load().image('base')}:" in rebuild.stderr
    assert plan in rebuild.stderr
    assert "deploy/dev/Dockerfile" in rebuild.stderr.splitlines()[-1]
    assert not docker_client.images.list(name=project.load().image("dev", tag))
