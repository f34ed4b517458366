"""The project's identity, read from the one file a fork edits: project.env.

Bash sources project.env; this module parses the same KEY=value lines with shlex, so
neither side needs a third tool and no value is written down twice.
"""

import dataclasses
import functools
import os
import shlex
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
PROJECT_FILE = BASE_DIR / "project.env"
# The key prefixes of a bucket the public may read: collectstatic's output and uploaded files.
# The config templates store under them (ENV.static_prefix, ENV.media_prefix) and the policy
# templates in deploy/aws/ are rendered with them ({{static_prefix}}, {{media_prefix}}).
STATIC_PREFIX = "static"
MEDIA_PREFIX = "media"


# An environment's fleet bounds when project.env names none: one instance, room for a second.
DEFAULT_MIN_INSTANCES = 1
DEFAULT_MAX_INSTANCES = 2


class UnknownEnvironment(ValueError):
    """An environment name that project.env's ENVIRONMENTS does not list."""


@dataclasses.dataclass(frozen=True)
class Environment:
    """One environment's facts from project.env.

    load_balanced (<ENV>_LOAD_BALANCER=yes) puts the environment behind an Application Load
    Balancer with an Auto Scaling group of min_instances..max_instances (<ENV>_MIN_INSTANCES,
    <ENV>_MAX_INSTANCES); without it the environment is single instances launched by
    launch_ec2. domains (<ENV>_DOMAINS, space-separated) get an ACM certificate and HTTPS;
    subnets (<ENV>_SUBNETS) replace the default VPC's default subnets.
    """

    name: str
    bucket: str
    instance_type: str
    load_balanced: bool = False
    domains: tuple = ()
    min_instances: int = DEFAULT_MIN_INSTANCES
    max_instances: int = DEFAULT_MAX_INSTANCES
    subnets: tuple = ()

    @property
    def config_key(self):
        return f"config/{self.name}.py"

    @property
    def config_uri(self):
        return f"s3://{self.bucket}/{self.config_key}"

    @property
    def bootstrap_key(self):
        return "deploy/webserver.sh"

    @property
    def bootstrap_uri(self):
        return f"s3://{self.bucket}/{self.bootstrap_key}"

    @property
    def release_key(self):
        """Where publish_image records the image this environment runs."""
        return "deploy/release.env"

    @property
    def static_prefix(self):
        return STATIC_PREFIX

    @property
    def media_prefix(self):
        return MEDIA_PREFIX


@dataclasses.dataclass(frozen=True)
class Project:
    name: str
    region: str
    registry: str
    environments: dict

    def environment(self, name):
        try:
            return self.environments[name]
        except KeyError:
            known = ", ".join(self.environments)
            raise UnknownEnvironment(
                f"unknown environment {name!r}: choose one of {known} (ENVIRONMENTS in project.env)"
            ) from None

    def image(self, kind, tag=None):
        repo = f"{self.name}-{kind}"
        return f"{repo}:{tag}" if tag else repo


def parse_env_file(text):
    """Parse KEY=value lines the way `source` would for plain assignments."""
    values = {}
    for line in text.splitlines():
        tokens = shlex.split(line, comments=True)
        if not tokens:
            continue
        key, sep, value = tokens[0].partition("=")
        if not sep or len(tokens) != 1 or not key.isidentifier():
            raise ValueError(f"project.env: not a KEY=value line: {line!r}")
        values[key] = value
    return values


def _yes_no(values, key):
    value = values.get(key, "no")
    if value not in ("yes", "no"):
        raise ValueError(f"project.env: {key}={value!r}: set it to yes or no")
    return value == "yes"


def _count(values, key, default):
    value = values.get(key, str(default))
    if not value.isdigit():
        raise ValueError(f"project.env: {key}={value!r}: set it to a whole number")
    return int(value)


def environment_from(values, env):
    """The Environment named env, from project.env's values; one line for a bad value."""
    prefix = env.upper()
    min_instances = _count(values, f"{prefix}_MIN_INSTANCES", DEFAULT_MIN_INSTANCES)
    max_instances = _count(values, f"{prefix}_MAX_INSTANCES", DEFAULT_MAX_INSTANCES)
    if not 1 <= min_instances <= max_instances:
        raise ValueError(
            f"project.env: {prefix}_MIN_INSTANCES={min_instances} and "
            f"{prefix}_MAX_INSTANCES={max_instances}: need 1 <= min <= max"
        )
    return Environment(
        name=env,
        bucket=values[f"{prefix}_BUCKET"],
        instance_type=values[f"{prefix}_INSTANCE_TYPE"],
        load_balanced=_yes_no(values, f"{prefix}_LOAD_BALANCER"),
        domains=tuple(values.get(f"{prefix}_DOMAINS", "").split()),
        min_instances=min_instances,
        max_instances=max_instances,
        subnets=tuple(values.get(f"{prefix}_SUBNETS", "").split()),
    )


@functools.cache
def load(path=PROJECT_FILE):
    values = parse_env_file(Path(path).read_text())
    environments = {env: environment_from(values, env) for env in values["ENVIRONMENTS"].split()}
    return Project(
        name=values["PROJECT_NAME"],
        region=values["AWS_REGION"],
        registry=values["IMAGE_REGISTRY"],
        environments=environments,
    )


def aws_region():
    """The environment's region if it names one, else the project's."""
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or load().region
