"""Release delta: what a release image adds to its base, and how fast a code change rebuilds.

Works in a temporary copy of the repository's tracked files (never the shared working tree),
under a project name of its own, so every image it builds has a name nobody else uses; it
removes those images by name at the end.

1. Full build: build_docker_image.sh release with --no-cache (base and release from nothing).
   Size: release image minus base image, against the size of the code and static files the
   release carries (the build context after .dockerignore). Target: <= that + 5 MB.
2. Rebuild: one line appended to www/urls.py, build_docker_image.sh release again (cache
   on), timed against the full build. Target: <= 10 s, with every layer but the code reused.

    .venv/bin/python -m bench.release_delta
"""

import contextlib
import fnmatch
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import docker

from bench import common

SIZE_SLACK = 5_000_000  # bytes: the target's "+ 5 MB"
REBUILD_LIMIT = 10.0  # seconds
MB = 1_000_000


def tracked_copy(dest):
    """Copy the working tree's version of every tracked file to dest; commit it there."""
    listed = subprocess.run(
        ["git", "-C", str(common.ROOT), "ls-files", "-z"],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout.split(b"\0")
    for rel in filter(None, (name.decode() for name in listed)):
        source = common.ROOT / rel
        if source.is_file():  # a tracked file deleted in the working tree is skipped
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    git = ["git", "-C", str(dest), "-c", "user.name=bench", "-c", "user.email=bench@localhost"]
    subprocess.run([*git, "init", "-q"], check=True, timeout=60)
    subprocess.run([*git, "add", "-A"], check=True, timeout=60)
    subprocess.run([*git, "commit", "-q", "-m", "bench copy"], check=True, timeout=60)


def rename_project(dest, name):
    env_file = dest / "project.env"
    text = env_file.read_text()
    env_file.write_text(re.sub(r"(?m)^PROJECT_NAME=.*$", f"PROJECT_NAME={name}", text))


def matches(prefixes, pattern):
    """Whether a .dockerignore pattern matches a path or a directory above it."""
    candidates = {pattern, pattern.removeprefix("**/")}
    for prefix in prefixes:
        if any(fnmatch.fnmatchcase(prefix, c) for c in candidates):
            return True
        if pattern.startswith("**/") and fnmatch.fnmatchcase(
            prefix.rsplit("/", 1)[-1], pattern.removeprefix("**/")
        ):
            return True
    return False


def ignored(rel, patterns):
    """Whether .dockerignore keeps rel out of the build context: as Docker reads it, the
    last matching pattern decides, and a `!pattern` lets a path back in (an allow-list)."""
    parts = rel.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for pattern in patterns:
        if matches(prefixes, pattern.removeprefix("!")):
            result = not pattern.startswith("!")
    return result


def context_bytes(root):
    """Bytes of the files the release's COPY takes: the repository after .dockerignore."""
    patterns = [
        line.strip()
        for line in (root / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = Path(dirpath) / name
            if not ignored(str(path.relative_to(root)), patterns):
                total += path.lstat().st_size
    return total


def layers(client, image):
    return client.images.get(image).attrs["RootFS"]["Layers"]


def remove_images(client, project_name):
    """Every tag of this run's own project name (unique to the run), release tags first."""
    for kind in ("release", "base"):
        for image in client.images.list(name=f"{project_name}-{kind}"):
            for tag in image.tags:
                with contextlib.suppress(docker.errors.ImageNotFound):
                    client.images.remove(tag)


def main():
    common.arg_parser(__doc__.split("\n")[0]).parse_args()
    client = common.docker_client()
    print(f"machine: {common.machine()}")
    name = f"benchdelta-{common.RUN_ID}"
    full, rebuilt = f"{name}-release:full", f"{name}-release:rebuild"
    workdir = Path(tempfile.mkdtemp(prefix="bench-delta-"))
    try:
        copy = workdir / "repo"
        tracked_copy(copy)
        rename_project(copy, name)
        common.log(f"full build (--no-cache) in {copy} as {full}")
        _, full_seconds = common.build_release(
            "full", cwd=copy, build_args=("--network", "host", "--no-cache")
        )
        base = next(
            tag
            for image in client.images.list(name=f"{name}-base")
            for tag in image.tags
            if not tag.endswith(":latest")
        )
        release_size = client.images.get(full).attrs["Size"]
        base_size = client.images.get(base).attrs["Size"]
        delta = release_size - base_size
        code = context_bytes(copy)
        in_image = int(
            client.containers.run(
                full, ["du", "-sb", "/var/www"], remove=True, network_mode="host"
            ).split()[0]
        )

        with (copy / "www" / "urls.py").open("a") as f:
            f.write(f"# bench: a one-line change ({common.RUN_ID})\n")
        common.log(f"rebuild after a one-line change as {rebuilt}")
        _, rebuild_seconds = common.build_release("rebuild", cwd=copy)
        before, after = layers(client, full), layers(client, rebuilt)
        reused = sum(1 for a, b in zip(before, after, strict=False) if a == b)
    finally:
        remove_images(client, name)
        shutil.rmtree(workdir, ignore_errors=True)

    print(
        f"base {base_size / MB:.1f} MB, release {release_size / MB:.1f} MB; build context "
        f"(code + static, after .dockerignore) {code / MB:.2f} MB; /var/www in the image "
        f"{in_image / MB:.2f} MB"
    )
    print(f"layers: {len(after)} in the rebuilt image, {reused} identical to the full build's")
    ok = common.absolute(
        "release delta (release minus base)",
        measured=delta / MB,
        unit=" MB",
        limit=(code + SIZE_SLACK) / MB,
        detail=f"; code + static {code / MB:.2f} MB, delta - code {(delta - code) / MB:+.2f} MB",
    )
    ok &= common.absolute(
        "rebuild after a one-line change (baseline: full build)",
        baseline=full_seconds,
        measured=rebuild_seconds,
        unit="s",
        limit=REBUILD_LIMIT,
    )
    code_only = reused == len(after) - 1
    print(f"rebuild reused every layer but the code: {'OK' if code_only else 'MISSED'}")
    return 0 if ok and code_only else 1


if __name__ == "__main__":
    raise SystemExit(common.run(main))
