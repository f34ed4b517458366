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


class UnknownEnvironment(ValueError):
    """An environment name that project.env's ENVIRONMENTS does not list."""


@dataclasses.dataclass(frozen=True)
class Environment:
    name: str
    bucket: str
    instance_type: str

    @property
    def config_key(self):
        return f"config/{self.name}.py"

    @property
    def config_uri(self):
        return f"s3://{self.bucket}/{self.config_key}"

    @property
    def deploy_prefix(self):
        """This environment's deploy/ keys: its own, so no environment's push or publish
        overwrites another's and its instance role reads only these (webserver-s3.json)."""
        return f"deploy/{self.name}"

    @property
    def bootstrap_key(self):
        return f"{self.deploy_prefix}/webserver.sh"

    @property
    def bootstrap_uri(self):
        return f"s3://{self.bucket}/{self.bootstrap_key}"

    @property
    def release_key(self):
        """Where publish_image records the image this environment runs."""
        return f"{self.deploy_prefix}/release.env"

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


def check_own_buckets(environments):
    """Each environment keeps its config, stage 2 and files in a bucket of its own: a shared one
    would let one environment's instance role read another's config."""
    owners = {}
    for env in environments.values():
        if env.bucket in owners:
            raise ValueError(
                f"project.env: {owners[env.bucket].upper()}_BUCKET and {env.name.upper()}_BUCKET "
                f"are both {env.bucket!r}: give each environment a bucket of its own"
            )
        owners[env.bucket] = env.name


@functools.cache
def load(path=PROJECT_FILE):
    values = parse_env_file(Path(path).read_text())
    environments = {
        env: Environment(
            name=env,
            bucket=values[f"{env.upper()}_BUCKET"],
            instance_type=values[f"{env.upper()}_INSTANCE_TYPE"],
        )
        for env in values["ENVIRONMENTS"].split()
    }
    check_own_buckets(environments)
    return Project(
        name=values["PROJECT_NAME"],
        region=values["AWS_REGION"],
        registry=values["IMAGE_REGISTRY"],
        environments=environments,
    )


def aws_region():
    """The environment's region if it names one, else the project's."""
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or load().region
