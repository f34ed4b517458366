"""Upload an environment's config file and its stage-2 boot script, after checking both.

A config is checked before anything leaves the machine: it compiles, no <<PLACEHOLDER>> is
left, and Django, started on it in a subprocess (www.config_probe), accepts it. What changes
against the object already in S3 is shown by setting NAME only: a value is never printed.
"""

import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from www.config import UnreadableText, placeholders_in, read_text
from www.ops.errors import OpsError
from www.ops.landscape import Landscape
from www.ops.objects import read_object, sync_object
from www.ops.results import Result
from www.ops.templates import TEMPLATE_DIR, boot_functions, render
from www.project import BASE_DIR

STAGE2_TEMPLATE = TEMPLATE_DIR / "webserver.sh"
SAFE_FACT = re.compile(r"^[A-Za-z0-9._:/@-]+$")
CHECK_TIMEOUT = 120


def default_config_file(env):
    return BASE_DIR / "deploy" / "aws" / "config" / f"{env.name}.py"


def _settings_subprocess(path, mode):
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    env.update(DJANGO_SETTINGS_MODULE="www.settings", DJANGO_CONFIG_URI=str(Path(path).resolve()))
    return subprocess.run(
        [sys.executable, "-m", "www.config_probe", mode],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=CHECK_TIMEOUT,
    )


def _why_rejected(result):
    """What the settings check reported: a kind of failure, never a message or a value."""
    lines = result.stdout.strip().splitlines()
    try:
        return json.loads(lines[-1])["rejected"]
    except (IndexError, ValueError, KeyError, TypeError):
        return f"the settings check exited with status {result.returncode}"


def read_config(path):
    """The config's source if it is readable UTF-8, compiles and is filled in (local checks)."""
    path = Path(path)
    try:
        source = read_text(path)
    except UnreadableText as exc:
        if isinstance(exc.error, FileNotFoundError):
            raise OpsError(f"{path}: no such file") from None
        raise OpsError(
            f"{path}: not a readable UTF-8 text file ({type(exc.error).__name__})"
        ) from None
    try:
        compile(source, str(path), "exec")
    except SyntaxError as exc:
        raise OpsError(f"{path}: syntax error at line {exc.lineno}: {exc.msg}") from None
    names = placeholders_in(source)
    if names:
        raise OpsError(
            f"{path}: fill in {names} first "
            "(in a copy kept out of git, e.g. deploy/aws/config/<env>.local.py)"
        )
    return source


def validate_config(path):
    """(fingerprint, deploy warnings) of a config read_config accepted, if Django accepts it:
    the settings load in a subprocess, reading the config's secrets from SSM."""
    result = _settings_subprocess(path, "check")
    if result.returncode != 0:
        raise OpsError(
            f"{path}: Django rejects these settings: {_why_rejected(result)} "
            f"(DJANGO_CONFIG_URI={Path(path).resolve()} ./manage.py check shows it in full)"
        )
    probe = json.loads(result.stdout.strip().splitlines()[-1])
    return probe["settings"], [tuple(w) for w in probe["warnings"]]


def refuses_deploy_warnings(env):
    """Every environment but stage refuses a config Django's deploy checks warn about."""
    return env.name != "stage"


def check_deploy_warnings(path, env, warnings):
    """Any environment but stage: one line refusing the config if a deploy check warns.
    stage: one line naming the warnings, to read and let pass.

    Django's own (security.*) are named by id (its check docs explain each); the project's
    own (www.*, www/checks.py) also say what they found."""
    if not warnings:
        return
    described = ", ".join(
        f"{id} ({msg.rstrip('.')})" if id.startswith("www.") else id for id, msg in warnings
    )
    see = f"DJANGO_CONFIG_URI={Path(path).resolve()} ./manage.py check --deploy: the hints"
    if refuses_deploy_warnings(env):
        raise OpsError(
            f"{path}: Django's deploy checks warn and {env.name} takes no warning: {described} "
            f"({see})"
        )
    yield Result("attention", "deploy checks warn:", detail=f"{described}; allowed on {env.name}")


def fingerprint_of(source):
    """Hashes per setting name of a config's effect, or None if it doesn't load."""
    fd, tmp = tempfile.mkstemp(prefix="config-current-", suffix=".py")  # 0600: it holds secrets
    try:
        with os.fdopen(fd, "w") as f:
            f.write(source)
        result = _settings_subprocess(tmp, "fingerprint")
    finally:
        os.unlink(tmp)
    if result.returncode != 0:
        return None
    return json.loads(result.stdout.strip().splitlines()[-1])["settings"]


def setting_changes(old, new):
    """'added: A; changed: B, C; removed: D' from two fingerprints, names only."""
    if old is None:
        return "the current config does not load; every setting is replaced"
    parts = []
    for label, names in (
        ("added", new.keys() - old.keys()),
        ("changed", {n for n in new.keys() & old.keys() if new[n] != old[n]}),
        ("removed", old.keys() - new.keys()),
    ):
        if names:
            parts.append(f"{label}: {', '.join(sorted(names))}")
    return "; ".join(parts) or "same settings, different source"


def render_stage2(*, project, env, region):
    """Stage 2 with the environment's facts; a load-balanced one also names its target group
    (empty otherwise), which the instance leaves and rejoins around a swap."""
    landscape = Landscape(project, env)
    facts = {
        "project": project.name,
        "env": env.name,
        "region": region,
        "config_uri": env.config_uri,
        "stage2_uri": env.stage2_uri,
        "release_uri": env.release_uri,
        "status_prefix": env.status_prefix,
        "failed_prefix": env.failed_releases_prefix,
        "log_group": landscape.log_group,
        "target_group": landscape.target_group if env.load_balanced else "",
        "lease_keys": " ".join(env.lease_keys),
        # project.env's container facts, for the template to take instead of its own copies
        "app_uid": str(project.app_uid),
        "containers_root": project.containers_root,
    }
    for name, value in facts.items():
        words = value.split(" ") if name == "lease_keys" else [value]  # space-separated
        if not all(map(SAFE_FACT.match, words)) and not (name == "target_group" and value == ""):
            raise OpsError(f"{name} {value!r} has characters a boot script cannot carry safely")
    return render(STAGE2_TEMPLATE.read_text(), boot_functions=boot_functions(), **facts)


def push_config(*, s3, project, env, config_file, region, dry_run=False):
    """Validate config_file, then upload it and the rendered stage-2 script if they changed."""
    source = read_config(config_file)
    # The bucket before the settings check (which reads the config's secrets from SSM): a
    # missing bucket, missing credentials or an unreachable endpoint are named by this call.
    read_object(s3, env.bucket, env.config_key, env_name=env.name)
    new_fingerprint, warnings = validate_config(config_file)
    yield from check_deploy_warnings(config_file, env, warnings)
    stage2 = render_stage2(project=project, env=env, region=region)
    yield sync_object(
        s3,
        env=env,
        key=env.config_key,
        body=source.encode(),
        content_type="text/x-python",
        dry_run=dry_run,
        describe_change=lambda current: setting_changes(
            fingerprint_of(current.decode()), new_fingerprint
        ),
    )
    yield sync_object(
        s3,
        env=env,
        key=env.stage2_key,
        body=stage2.encode(),
        content_type="text/x-shellscript",
        dry_run=dry_run,
        describe_change=lambda current: (
            "sha256 " + hashlib.sha256(stage2.encode()).hexdigest()[:12]
        ),
    )
