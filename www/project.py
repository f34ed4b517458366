"""The project's identity, read from the one file a fork edits: project.env.

Bash sources project.env; this module parses the same KEY=value lines with shlex, so
neither side needs a third tool and no value is written down twice.
"""

import dataclasses
import functools
import keyword
import os
import re
import shlex
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
PROJECT_FILE = BASE_DIR / "project.env"
# The key prefixes of an environment's bucket, owned here. The public may read two:
# collectstatic's output and uploaded files; the config templates store under them
# (ENV.static_prefix, ENV.media_prefix). config/ (the settings file) and deploy/ (stage 2 and
# the release record) are readable by the instance role only. The policy templates in
# deploy/aws/ are rendered with all four ({{static_prefix}}, ..., www.ops.templates).
STATIC_PREFIX = "static"
MEDIA_PREFIX = "media"
CONFIG_PREFIX = "config"
DEPLOY_PREFIX = "deploy"
# How long CloudWatch keeps log lines when project.env names no LOG_RETENTION_DAYS, and the
# values CloudWatch Logs accepts for a retention.
DEFAULT_LOG_RETENTION_DAYS = 30
LOG_RETENTION_CHOICES = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731,
    1096, 1827, 2192, 2557, 2922, 3288, 3653,
)  # fmt: skip
# The database's automated backups when project.env names no <ENV>_DB_BACKUP_DAYS.
DEFAULT_DB_BACKUP_DAYS = 7


def bucket_variable(env_name):
    """The project.env variable naming an environment's bucket, e.g. STAGE_BUCKET."""
    return f"{env_name.upper()}_BUCKET"


def instance_type_variable(env_name):
    """The project.env variable naming an environment's instance type."""
    return f"{env_name.upper()}_INSTANCE_TYPE"


# Lowercase words joined by single hyphens: the intersection of S3 bucket names, Docker
# repository names, and (with '-' as '_') Python identifiers.
NAME = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")
# An environment's name also forms project.env's keys (<ENV>_BUCKET), so it has no hyphen.
ENVIRONMENT_NAME = re.compile(r"[a-z][a-z0-9]*")
BUCKET_MIN, BUCKET_MAX = 3, 63
# https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html
BUCKET_RESERVED_PREFIXES = ("sthree-", "amzn-s3-demo-")
BUCKET_RESERVED_SUFFIXES = ("-s3alias",)


class ProjectFileError(ValueError):
    """One line saying what in project.env is wrong and what to set."""


class InvalidName(ValueError):
    """One line saying why a name can't be the project's."""


def check_name(name):
    """The rule for a project name, kept here with the facts; rename_project uses it too."""
    if not NAME.fullmatch(name):
        raise InvalidName(
            f"invalid project name {name!r}: use lowercase letters, digits and single hyphens, "
            "starting with a letter (it names S3 buckets and Docker images, and with '-' as '_' "
            "a Python identifier)"
        )
    if keyword.iskeyword(name.replace("-", "_")):
        raise InvalidName(f"invalid project name {name!r}: it is a Python keyword")
    check_bucket(name, "bucket", name)


def check_bucket(name, key, bucket):
    """Refuse a name whose bucket (the value of key) S3 would refuse."""
    if not BUCKET_MIN <= len(bucket) <= BUCKET_MAX:
        reason = f"has {len(bucket)} characters, S3 allows {BUCKET_MIN} to {BUCKET_MAX}"
    elif bucket.startswith(BUCKET_RESERVED_PREFIXES) or bucket.endswith(BUCKET_RESERVED_SUFFIXES):
        reason = "uses a prefix or suffix S3 reserves"
    else:
        return
    raise InvalidName(f"invalid project name {name!r}: {key} {bucket!r} {reason}")


def check_environment_name(name):
    if not ENVIRONMENT_NAME.fullmatch(name):
        raise InvalidName(
            f"invalid environment name {name!r}: use lowercase letters and digits, starting "
            f"with a letter (it forms the keys <ENV>_BUCKET and <ENV>_INSTANCE_TYPE, S3 keys "
            "and AWS resource names)"
        )


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

    The optional RDS database keeps db_backup_days of automated backups (<ENV>_DB_BACKUP_DAYS),
    and has a Multi-AZ standby (<ENV>_DB_MULTI_AZ=yes) and deletion protection
    (<ENV>_DB_DELETION_PROTECTION=yes) where project.env asks for them (prod does).
    """

    name: str
    bucket: str
    instance_type: str
    load_balanced: bool = False
    domains: tuple = ()
    min_instances: int = DEFAULT_MIN_INSTANCES
    max_instances: int = DEFAULT_MAX_INSTANCES
    roll_at_once: int = 1
    subnets: tuple = ()
    db_backup_days: int = DEFAULT_DB_BACKUP_DAYS
    db_multi_az: bool = False
    db_deletion_protection: bool = False

    def uri(self, key):
        """s3://<bucket>/<key>: an object in this environment's bucket."""
        return f"s3://{self.bucket}/{key}"

    @property
    def config_key(self):
        return f"{CONFIG_PREFIX}/{self.name}.py"

    @property
    def config_uri(self):
        return self.uri(self.config_key)

    @property
    def deploy_prefix(self):
        """This environment's deploy/ keys: its own, so no environment's push or publish
        overwrites another's and its instance role reads only these (webserver-s3.json)."""
        return f"{DEPLOY_PREFIX}/{self.name}"

    @property
    def stage2_key(self):
        return f"{self.deploy_prefix}/webserver.sh"

    @property
    def stage2_uri(self):
        return self.uri(self.stage2_key)

    @property
    def release_key(self):
        """Where publish_image records the image this environment runs (www.ops.images)."""
        return f"{self.deploy_prefix}/release.env"

    @property
    def release_uri(self):
        return self.uri(self.release_key)

    @property
    def release_history_key(self):
        """Every release publish_image recorded (JSON, oldest first), appended with If-Match."""
        return f"{self.deploy_prefix}/releases/history.json"

    @property
    def failed_releases_prefix(self):
        return f"{self.deploy_prefix}/releases/failed/"

    def failed_release_key(self, digest):
        """The mark of a release no instance could make healthy (the first one's reason)."""
        return f"{self.failed_releases_prefix}{digest.removeprefix('sha256:')}.json"

    @property
    def lease_key(self):
        """Which instance of a load-balanced environment is out of its target group for a
        swap, and until when (boot stage 2 takes it with conditional writes)."""
        return f"{self.deploy_prefix}/lease.json"

    @property
    def lease_keys(self):
        """One lease per instance that may be out of service at once (roll_at_once): the
        first is lease_key, the others lease-2.json, lease-3.json, ..."""
        more = (f"{self.deploy_prefix}/lease-{n}.json" for n in range(2, self.roll_at_once + 1))
        return (self.lease_key, *more)

    @property
    def lease_pattern(self):
        """Every lease key, as an IAM resource pattern."""
        return f"{self.deploy_prefix}/lease*.json"

    @property
    def status_prefix(self):
        """Each instance's report of what it runs: <prefix><instance-id>.json."""
        return f"{self.deploy_prefix}/status/"

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
    The container's facts: app_uid (APP_UID), app_port (APP_PORT), containers_root
    (CONTAINERS_ROOT) and db_wait_timeout (DB_WAIT_TIMEOUT, seconds).
    """

    name: str
    region: str
    registry: str
    environments: dict
    app_uid: int
    app_port: int
    containers_root: str
    db_wait_timeout: int
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
            raise ProjectFileError(f"project.env: not a KEY=value line: {line!r}")
        values[key] = value
    return values


def require(values, key):
    try:
        return values[key]
    except KeyError:
        raise ProjectFileError(f"project.env: set {key}") from None


def check_values(values):
    """Names every tool builds on (buckets, images, keys, scripts): refused here, at load."""
    try:
        check_name(require(values, "PROJECT_NAME"))
        names = require(values, "ENVIRONMENTS").split()
        if not names:
            raise ProjectFileError('project.env: set ENVIRONMENTS, e.g. ENVIRONMENTS="stage prod"')
        for name in names:
            check_environment_name(name)
    except InvalidName as exc:
        raise ProjectFileError(f"project.env: {exc}") from None


def _yes_no(values, key):
    value = values.get(key, "no")
    if value not in ("yes", "no"):
        raise ProjectFileError(f"project.env: {key}={value!r}: set it to yes or no")
    return value == "yes"


def _count(values, key, default):
    value = values.get(key, str(default))
    if not value.isdigit():
        raise ProjectFileError(f"project.env: {key}={value!r}: set it to a whole number")
    return int(value)


def _required_count(values, key):
    value = require(values, key)
    if not value.isdigit():
        raise ProjectFileError(f"project.env: {key}={value!r}: set it to a whole number")
    return int(value)


def _log_retention_days(values):
    days = _count(values, "LOG_RETENTION_DAYS", DEFAULT_LOG_RETENTION_DAYS)
    if days not in LOG_RETENTION_CHOICES:
        choices = " ".join(map(str, LOG_RETENTION_CHOICES))
        raise ProjectFileError(
            f"project.env: LOG_RETENTION_DAYS={days}: CloudWatch keeps logs for one of {choices}"
        )
    return days


def _database_facts(values, env):
    """The optional database's protections for env: backups, Multi-AZ, deletion protection."""
    prefix = env.upper()
    backup_days = _count(values, f"{prefix}_DB_BACKUP_DAYS", DEFAULT_DB_BACKUP_DAYS)
    if not 1 <= backup_days <= 35:
        raise ProjectFileError(
            f"project.env: {prefix}_DB_BACKUP_DAYS={backup_days}: RDS keeps 1 to 35 days of backups"
        )
    return {
        "db_backup_days": backup_days,
        "db_multi_az": _yes_no(values, f"{prefix}_DB_MULTI_AZ"),
        "db_deletion_protection": _yes_no(values, f"{prefix}_DB_DELETION_PROTECTION"),
    }


def environment_from(values, env):
    """The Environment named env, from project.env's values; one line for a bad value."""
    prefix = env.upper()
    min_instances = _count(values, f"{prefix}_MIN_INSTANCES", DEFAULT_MIN_INSTANCES)
    max_instances = _count(values, f"{prefix}_MAX_INSTANCES", DEFAULT_MAX_INSTANCES)
    if not 1 <= min_instances <= max_instances:
        raise ProjectFileError(
            f"project.env: {prefix}_MIN_INSTANCES={min_instances} and "
            f"{prefix}_MAX_INSTANCES={max_instances}: need 1 <= min <= max"
        )
    roll_at_once = _count(values, f"{prefix}_ROLL_AT_ONCE", 1)
    most = max(min_instances - 1, 1)  # one always serves (a lone one swaps in service)
    if not 1 <= roll_at_once <= most:
        allowed = "it to 1" if most == 1 else f"it from 1 to {most}"
        raise ProjectFileError(
            f"project.env: {prefix}_ROLL_AT_ONCE={roll_at_once}: set {allowed} "
            f"({prefix}_MIN_INSTANCES={min_instances}): one instance must serve during a roll"
        )
    return Environment(
        name=env,
        bucket=require(values, bucket_variable(env)),
        instance_type=require(values, instance_type_variable(env)),
        load_balanced=_yes_no(values, f"{prefix}_LOAD_BALANCER"),
        domains=tuple(values.get(f"{prefix}_DOMAINS", "").split()),
        min_instances=min_instances,
        max_instances=max_instances,
        roll_at_once=roll_at_once,
        subnets=tuple(values.get(f"{prefix}_SUBNETS", "").split()),
        **_database_facts(values, env),
    )


def check_own_buckets(environments):
    """Each environment keeps its config, stage 2 and files in a bucket of its own: a shared one
    would let one environment's instance role read another's config."""
    owners = {}
    for env in environments.values():
        if env.bucket in owners:
            raise ProjectFileError(
                f"project.env: {owners[env.bucket].upper()}_BUCKET and {env.name.upper()}_BUCKET "
                f"are both {env.bucket!r}: give each environment a bucket of its own"
            )
        owners[env.bucket] = env.name


@functools.cache
def load(path=PROJECT_FILE):
    values = parse_env_file(Path(path).read_text())
    check_values(values)
    environments = {env: environment_from(values, env) for env in values["ENVIRONMENTS"].split()}
    check_own_buckets(environments)
    return Project(
        name=values["PROJECT_NAME"],
        region=require(values, "AWS_REGION"),
        registry=require(values, "IMAGE_REGISTRY"),
        environments=environments,
        app_uid=_required_count(values, "APP_UID"),
        app_port=_required_count(values, "APP_PORT"),
        containers_root=require(values, "CONTAINERS_ROOT"),
        db_wait_timeout=_required_count(values, "DB_WAIT_TIMEOUT"),
        log_retention_days=_log_retention_days(values),
        alert_emails=tuple(values.get("ALERT_EMAILS", "").split()),
    )


def aws_region():
    """The environment's region if it names one, else the project's."""
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or load().region
