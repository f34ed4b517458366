"""What several test modules share: the project's names, filled-in configs, manage.py runs.

Fixtures live in conftest.py (and the docker tier's in docker_rig.py); plain values and
functions live here, so no test module imports from another.
"""

import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from www import project
from www.config import PLACEHOLDER
from www.ops.config_push import default_config_file
from www.ops.landscape import Landscape

ROOT = Path(__file__).resolve().parent.parent
PROJECT = project.load()
STAGE = Landscape.of(PROJECT, "stage")
# An AMI parameter moto's SSM serves (Debian's, the default, is not among them).
MOTO_PUBLIC_AMI = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
# Among moto's images: Canonical's Ubuntu 16.04 server; launch_ec2 takes only Debian or Ubuntu
# (moto serves no Canonical parameter, the default).
MOTO_UBUNTU_AMI = "ami-785db401"
# A release record's image, by digest, in a registry nobody needs to reach.
RELEASE = f"127.0.0.1:5000/team/{PROJECT.name}-release@sha256:" + "ab" * 32
# The secrets a filled-in config references (secret("secret-key"), secret("database-password")).
CONFIG_SECRET = "a-secret-key-that-must-never-be-printed-" + "x" * 20
CONFIG_DB_PASSWORD = "db-password-never-printed"
# The parent test run's AWS emulator and settings overlay must not reach a copy of the repository.
PARENT_ONLY_ENV = ("AWS_ENDPOINT_URL", "DJANGO_CONFIG_URI", "DJANGO_CONFIG_CACHE", "PYTEST_ADDOPTS")
# Values for a config template's <<PLACEHOLDER>>s; none of them reaches a real service.
CONFIG_VALUES = {
    "HOSTNAME": "stage.example.com",
    "CDN_DOMAIN": "d1234abcd.cloudfront.net",
    "DB_HOST": "db.internal",
    "DB_PORT": "5432",
    "DB_NAME": "app",
    "DB_USER": "app",
}


def fill_placeholders(template, values):
    """A config template's text with every <<NAME>> replaced by values[NAME]."""
    return PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def put_secrets(env_name="stage", **values):
    """Store secrets in the emulator's SSM where the env's config reads them: secret_key=...
    becomes /<project>/<env>/secret-key (underscores as hyphens)."""
    from www import aws

    landscape = Landscape.of(PROJECT, env_name)
    ssm = aws.client("ssm")
    for name, value in values.items():
        ssm.put_parameter(
            Name=landscape.secret_parameter(name.replace("_", "-")),
            Value=value,
            Type="SecureString",
            Overwrite=True,
        )


def filled_config(tmp_path, env="stage", *, store_secrets=True, **values):
    """deploy/aws/config/<env>.py filled in (CONFIG_VALUES, then values), as <env>.local.py;
    unless store_secrets is false, the secrets it references stored in the emulator's SSM
    (CONFIG_SECRET, CONFIG_DB_PASSWORD)."""
    if store_secrets:
        put_secrets(env, secret_key=CONFIG_SECRET, database_password=CONFIG_DB_PASSWORD)
    template = default_config_file(PROJECT.environment(env)).read_text()
    path = tmp_path / f"{env}.local.py"
    path.write_text(fill_placeholders(template, {**CONFIG_VALUES, **values}))
    return path


def manage(*args, cwd=ROOT, env=None, timeout=300, drop=(), **run_options):
    """./manage.py args in a subprocess (in cwd, with env added and the drop names removed);
    run_options (input=..., stdin=...) go to subprocess.run."""
    environment = {k: v for k, v in os.environ.items() if k not in drop}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=cwd,
        env={**environment, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        **run_options,
    )


def copy_repository(dest):
    """Copy the tracked files, as a fresh clone of the fork would have them."""
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, text=True
    ).stdout.split("\0")
    for name in filter(None, tracked):
        source = ROOT / name
        if source.is_file():  # tracked but deleted in the working tree: not part of the copy
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


def manage_copy(cwd, *args, env=None):
    """./manage.py args in the repository copy cwd, without the parent run's PARENT_ONLY_ENV."""
    return manage(*args, cwd=cwd, env=env, drop=PARENT_ONLY_ENV)


def push_filled_config(tmp_path, env="stage", **values):
    """./manage.py push_config of a filled-in config (filled_config with values), stage 2
    with it."""
    from django.core.management import call_command

    config = filled_config(tmp_path, env, **values)
    call_command("push_config", "--env", env, str(config), stdout=io.StringIO())


def record_release(landscape=STAGE):
    """The RELEASE image recorded as the environment's release 1.0, as publish_image would."""
    import boto3

    from www.ops import images

    images.record_release(s3=boto3.client("s3"), env=landscape.env, image=RELEASE, tag="1.0")


def launch(*args):
    """./manage.py launch_ec2 --env stage args (with --ami MOTO_UBUNTU_AMI unless args name
    an AMI); its output."""
    from django.core.management import call_command

    out = io.StringIO()
    if "--ami" not in args and "--ami-parameter" not in args:
        args = ("--ami", MOTO_UBUNTU_AMI, *args)
    call_command("launch_ec2", "--env", "stage", *args, stdout=out)
    return out.getvalue()


def instances(states=("pending", "running")):
    """The stage environment's instances in the emulator, in those states."""
    import boto3

    from www.ops import ec2

    return ec2.environment_instances(ec2=boto3.client("ec2"), landscape=STAGE, states=states)


def is_shell_script(path):
    """A .sh file, or one whose #! line runs sh, bash or dash."""
    if path.suffix == ".sh":
        return True
    with path.open("rb") as f:
        first = f.readline(200)
    return first.startswith(b"#!") and re.search(rb"\b(ba|da)?sh\b", first) is not None
