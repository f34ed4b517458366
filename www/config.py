"""Overlay settings from the Python file named by DJANGO_CONFIG_URI.

The file runs after the defaults, in the settings module's namespace, so it may both
replace (DATABASES = {...}) and extend (INSTALLED_APPS += [...]) them.

Within one container start the file is fetched once: when DJANGO_CONFIG_CACHE names a
path, the first process writes the fetched source there (mode 0600, atomically) and every
later process (collectstatic, gunicorn and its restarted workers) reads that copy. The
start-script deletes the copy before it starts, so restarting the container picks up a
changed config. A copy this process's user does not own, or that others may read or write,
is not trusted: the config is fetched again and the copy replaced.

A config that still holds a template's <<PLACEHOLDER>> is refused, however it was uploaded,
and so is a SECRET_KEY shorter than Django's deploy check asks for.

secret("name") in a config stands for the SSM SecureString /<project>/<env>/<name>, read when
the settings load (www/config_secrets.py); the cached copy holds the references, not values.
"""

import os
import re
import stat
import tempfile
import traceback
from pathlib import Path
from urllib.parse import unquote, urlparse

from django.core.exceptions import ImproperlyConfigured

CACHE_HEADER = "# DJANGO_CONFIG_URI="
# How the templates in deploy/aws/config/ mark a value the operator must fill in.
PLACEHOLDER = re.compile(r"<<([A-Z0-9_]+)>>")
# Django's deploy check (security.W009) asks for at least this many characters.
SECRET_KEY_MIN_LENGTH = 50


class ConfigError(ImproperlyConfigured):
    """One line that says which config failed and why; never a value from it."""


def fetch_s3(uri):
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        ConnectTimeoutError,
        EndpointConnectionError,
        NoCredentialsError,
        ReadTimeoutError,
    )

    from www import aws

    parsed = urlparse(uri)
    bucket, key = parsed.netloc, parsed.path.lstrip("/")
    if not bucket or not key:
        raise ConfigError(f"DJANGO_CONFIG_URI={uri}: expected s3://BUCKET/KEY")
    try:
        s3 = aws.client("s3", config=aws.SETTINGS_FILE_CLIENT_CONFIG)
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        code = exc.response["Error"]["Code"]
        reasons = {
            "NoSuchBucket": f"no such bucket {bucket!r}",
            "NoSuchKey": f"no such key {key!r} in bucket {bucket!r}",
            "AccessDenied": "access denied: the credentials may not read this object",
            "InvalidAccessKeyId": "access denied: the AWS access key is not valid",
            "SignatureDoesNotMatch": "access denied: the AWS secret key does not match",
        }
        raise ConfigError(f"DJANGO_CONFIG_URI={uri}: {reasons.get(code, code)}") from None
    except NoCredentialsError:
        raise ConfigError(
            f"DJANGO_CONFIG_URI={uri}: no AWS credentials found "
            "(set AWS_PROFILE or AWS_ACCESS_KEY_ID, or run with an instance role)"
        ) from None
    except (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError) as exc:
        raise ConfigError(
            f"DJANGO_CONFIG_URI={uri}: S3 endpoint unreachable ({exc.__class__.__name__})"
        ) from None
    except BotoCoreError as exc:
        raise ConfigError(f"DJANGO_CONFIG_URI={uri}: {exc.__class__.__name__}") from None
    try:
        return decode(body)
    except UnreadableText as exc:
        raise ConfigError(f"DJANGO_CONFIG_URI={uri}: {exc}") from None


class UnreadableText(Exception):
    """Why a config's bytes are no text: the message in a few words, error the cause."""

    def __init__(self, message, error):
        super().__init__(message)
        self.error = error


def decode(data):
    """A config's text: its bytes as UTF-8, or UnreadableText."""
    try:
        return data.decode()
    except UnicodeDecodeError as exc:
        raise UnreadableText("not UTF-8 text", exc) from None


def read_text(path):
    """A config file's text (UTF-8), or UnreadableText saying why not; every config file
    read from disk is read here (the settings overlay and push_config)."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError as exc:
        raise UnreadableText(f"no such file {path}", exc) from None
    except OSError as exc:
        raise UnreadableText(f"cannot read {path} ({exc.strerror})", exc) from None
    return decode(data)


def fetch_file(uri, path):
    try:
        return read_text(path)
    except UnreadableText as exc:
        raise ConfigError(f"DJANGO_CONFIG_URI={uri}: {exc}") from None


def fetch(uri):
    """Return the config file's source text."""
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        return fetch_s3(uri)
    if parsed.scheme == "file" and parsed.netloc in ("", "localhost"):
        return fetch_file(uri, unquote(parsed.path))
    if not parsed.scheme and os.path.isabs(uri):
        return fetch_file(uri, uri)
    raise ConfigError(
        f"DJANGO_CONFIG_URI={uri}: unsupported; use s3://BUCKET/KEY, file:///ABS/PATH "
        "or an absolute path"
    )


def read_cache(cache, uri):
    """The cached source, or None if there is no copy this user alone could have written."""
    try:
        fd = os.open(cache, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:  # absent, a symlink, or not readable: fetch instead
        return None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if info.st_uid != os.getuid() or info.st_mode & 0o077 or not stat.S_ISREG(info.st_mode):
            return None
        try:
            text = f.read().decode()
        except UnicodeDecodeError:
            return None
    header, _, source = text.partition("\n")
    return source if header == CACHE_HEADER + uri else None


def write_cache(cache, uri, source):
    """Write atomically with mode 0600, so no reader sees half a file or another user's copy."""
    directory = os.path.dirname(os.path.abspath(cache))
    os.makedirs(directory, mode=0o700, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".config-")  # mkstemp creates it 0600
    try:
        with os.fdopen(fd, "w") as f:
            f.write(f"{CACHE_HEADER}{uri}\n{source}")
        os.replace(tmp, cache)
    except BaseException:
        os.unlink(tmp)
        raise


def source_for(uri, cache=None):
    if cache:
        source = read_cache(cache, uri)
        if source is not None:
            return source
    source = fetch(uri)
    if cache:
        try:
            write_cache(cache, uri, source)
        except OSError as exc:
            raise ConfigError(
                f"DJANGO_CONFIG_CACHE={cache}: cannot write the local copy ({exc.strerror})"
            ) from None
    return source


def line_of_error(exc, filename):
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename == filename:
            return frame.lineno
    return None


def placeholders_in(source):
    """The template's <<NAME>>s left in source, as one "<<A>>, <<B>>" string ("" for none)."""
    return ", ".join(f"<<{name}>>" for name in sorted(set(PLACEHOLDER.findall(source))))


def refuse_placeholders(uri, source):
    """A template's <<NAME>> left in means values are missing (a publicly known SECRET_KEY)."""
    names = placeholders_in(source)
    if names:
        raise ConfigError(
            f"DJANGO_CONFIG_URI={uri}: still holds the placeholder(s) {names}: "
            "fill them in and upload it again (./manage.py push_config)"
        )


def check_secret_key(uri, secret_key):
    """A config must set a SECRET_KEY long enough to withstand guessing."""
    if not secret_key:
        raise ConfigError(f"DJANGO_CONFIG_URI={uri}: the config must set SECRET_KEY")
    if len(str(secret_key)) < SECRET_KEY_MIN_LENGTH:
        raise ConfigError(
            f"DJANGO_CONFIG_URI={uri}: SECRET_KEY is shorter than {SECRET_KEY_MIN_LENGTH} "
            "characters: store a new one (./manage.py secret --env ENV generate secret-key "
            "--replace)"
        )


def apply(uri, namespace, cache=None):
    """Run the config named by uri in namespace (the settings module's globals)."""
    source = source_for(uri, cache)
    refuse_placeholders(uri, source)
    try:
        code = compile(source, uri, "exec")
    except SyntaxError as exc:
        # exc.text would echo the offending line, which may hold a secret.
        raise ConfigError(
            f"DJANGO_CONFIG_URI={uri}: syntax error at line {exc.lineno}: {exc.msg}"
        ) from None
    from www import config_secrets

    try:
        with config_secrets.in_scope(namespace):
            exec(code, namespace)  # noqa: S102 -- running the operator's settings file is the point
    except Exception as exc:
        detail = exc.__class__.__name__
        if isinstance(exc, NameError) and exc.name:
            detail += f" (name {exc.name!r})"
        elif isinstance(exc, ImportError) and exc.name:
            detail += f" (module {exc.name!r})"
        raise ConfigError(
            f"DJANGO_CONFIG_URI={uri}: {detail} at line {line_of_error(exc, uri)}"
        ) from None
    config_secrets.resolve(uri, namespace)


def apply_from_environment(namespace):
    """Apply DJANGO_CONFIG_URI if set; return the URI applied, or None."""
    uri = os.environ.get("DJANGO_CONFIG_URI", "").strip()
    if not uri:
        return None
    apply(uri, namespace, cache=os.environ.get("DJANGO_CONFIG_CACHE") or None)
    return uri
