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
# How long CloudWatch keeps log lines when project.env names no LOG_RETENTION_DAYS, and the
# values CloudWatch Logs accepts for a retention.
DEFAULT_LOG_RETENTION_DAYS = 30
LOG_RETENTION_CHOICES = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731,
    1096, 1827, 2192, 2557, 2922, 3288, 3653,
)  # fmt: skip
# The database's automated backups when project.env names no <ENV>_DB_BACKUP_DAYS.
DEFAULT_DB_BACKUP_DAYS = 7


class UnknownEnvironment(ValueError):
    """An environment name that project.env's ENVIRONMENTS does not list."""


@dataclasses.dataclass(frozen=True)
class Environment:
    """One environment's facts from project.env.

    The optional RDS database keeps db_backup_days of automated backups (<ENV>_DB_BACKUP_DAYS),
    and has a Multi-AZ standby (<ENV>_DB_MULTI_AZ=yes) and deletion protection
    (<ENV>_DB_DELETION_PROTECTION=yes) where project.env asks for them (prod does).
    """

    name: str
    bucket: str
    instance_type: str
    db_backup_days: int = DEFAULT_DB_BACKUP_DAYS
    db_multi_az: bool = False
    db_deletion_protection: bool = False

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
    """The project's facts from project.env.

    log_retention_days: how long CloudWatch Logs keeps every environment's lines
    (LOG_RETENTION_DAYS); alert_emails: who the alarms email (ALERT_EMAILS, space-separated).
    """

    name: str
    region: str
    registry: str
    environments: dict
    log_retention_days: int = DEFAULT_LOG_RETENTION_DAYS
    alert_emails: tuple = ()

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


def _log_retention_days(values):
    days = _count(values, "LOG_RETENTION_DAYS", DEFAULT_LOG_RETENTION_DAYS)
    if days not in LOG_RETENTION_CHOICES:
        choices = " ".join(map(str, LOG_RETENTION_CHOICES))
        raise ValueError(
            f"project.env: LOG_RETENTION_DAYS={days}: CloudWatch keeps logs for one of {choices}"
        )
    return days


def _database_facts(values, env):
    """The optional database's protections for env: backups, Multi-AZ, deletion protection."""
    prefix = env.upper()
    backup_days = _count(values, f"{prefix}_DB_BACKUP_DAYS", DEFAULT_DB_BACKUP_DAYS)
    if not 1 <= backup_days <= 35:
        raise ValueError(
            f"project.env: {prefix}_DB_BACKUP_DAYS={backup_days}: RDS keeps 1 to 35 days of backups"
        )
    return {
        "db_backup_days": backup_days,
        "db_multi_az": _yes_no(values, f"{prefix}_DB_MULTI_AZ"),
        "db_deletion_protection": _yes_no(values, f"{prefix}_DB_DELETION_PROTECTION"),
    }


@functools.cache
def load(path=PROJECT_FILE):
    values = parse_env_file(Path(path).read_text())
    environments = {
        env: Environment(
            name=env,
            bucket=values[f"{env.upper()}_BUCKET"],
            instance_type=values[f"{env.upper()}_INSTANCE_TYPE"],
            **_database_facts(values, env),
        )
        for env in values["ENVIRONMENTS"].split()
    }
    return Project(
        name=values["PROJECT_NAME"],
        region=values["AWS_REGION"],
        registry=values["IMAGE_REGISTRY"],
        environments=environments,
        log_retention_days=_log_retention_days(values),
        alert_emails=tuple(values.get("ALERT_EMAILS", "").split()),
    )


def aws_region():
    """The environment's region if it names one, else the project's."""
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or load().region
