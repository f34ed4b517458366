"""The AWS steps behind the management commands, as plain functions.

Each function takes the boto3 clients it needs as keyword arguments (the commands make
them with www.aws.client), so the same code runs against AWS and against a local
emulator reached through AWS_ENDPOINT_URL. Functions that converge a resource on its
desired state yield one Result per item, so a command can print each as it happens.
"""

import contextlib
import dataclasses
import json
import re
from urllib.parse import urlsplit

from botocore import exceptions as aws_errors
from django.core.management.base import CommandError

from www.project import BASE_DIR, MEDIA_PREFIX, STATIC_PREFIX

TEMPLATE_DIR = BASE_DIR / "deploy" / "aws"
TEMPLATE_FIELD = re.compile(r"\{\{([a-z_]+)\}\}")


class OpsError(Exception):
    """A problem the operator can fix, in one line that says what to do."""


@dataclasses.dataclass(frozen=True)
class Result:
    """What happened to one item: created, updated or unchanged (or would be, in a dry run)."""

    verb: str  # "create" | "update" | "delete" | "unchanged" | "attention" (detail: what to do)
    what: str
    dry_run: bool = False
    detail: str = ""

    @property
    def changed(self):
        return self.verb in ("create", "update", "delete")

    def __str__(self):
        if self.verb == "attention":
            return f"{self.what} {self.detail}"
        if not self.changed:
            text = f"{self.what} exists, unchanged"
        elif self.dry_run:
            text = f"Would {self.verb} {self.what}"
        else:
            text = f"{self.verb.capitalize()}d {self.what}"
        return f"{text} ({self.detail})" if self.detail else text


def environment(project, name):
    """project.environment(name), failing with the list of known environments."""
    try:
        return project.environment(name)
    except ValueError as exc:
        raise OpsError(str(exc)) from None


def converge(what, current, desired, apply, *, dry_run, detail=""):
    """Apply the desired state unless it is already there; say which it was."""
    if current == desired:
        return Result("unchanged", what)
    if not dry_run:
        apply()
    return Result("create" if current is None else "update", what, dry_run, detail)


def render(text, **fields):
    """Fill {{field}} markers; a marker without a value is an error, never left in."""
    missing = set(TEMPLATE_FIELD.findall(text)) - fields.keys()
    if missing:
        raise OpsError(f"template needs values for: {', '.join(sorted(missing))}")
    return TEMPLATE_FIELD.sub(lambda m: str(fields[m.group(1)]), text)


def json_template(relative_path, **fields):
    """A JSON document from deploy/aws/, with its {{field}} markers filled.

    Every template may also use the bucket's public prefixes, {{static_prefix}} and
    {{media_prefix}}, so the policies name the prefixes the settings store under.
    """
    path = TEMPLATE_DIR / relative_path
    facts = {"static_prefix": STATIC_PREFIX, "media_prefix": MEDIA_PREFIX}
    return json.loads(render(path.read_text(), **{**facts, **fields}))


def error_code(exc):
    return exc.response.get("Error", {}).get("Code", "")


# --- failures, as the commands report them ----------------------------------------------------

RERUN = "rerun (reruns redo only what is missing)"
CREDENTIALS_HELP = (
    "set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or run on an instance with a role"
)
# ClientError codes that mean the same thing to the operator, whichever service sent them.
DENIED_CODES = {
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
    "UnauthorizedAccess",
    "AuthorizationError",
    "Forbidden",
    "403",
}
INVALID_KEY_CODES = {
    "InvalidClientTokenId",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AuthFailure",
    "UnrecognizedClientException",
    "IncompleteSignature",
    "InvalidSignatureException",
}
EXPIRED_CODES = {"ExpiredToken", "ExpiredTokenException", "RequestExpired"}
THROTTLED_CODES = {
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "SlowDown",
    "TooManyRequestsException",
}


def _failed_call(exc):
    """'service Operation' of the boto3 call exc came out of, read from its traceback.

    Every client call goes through BaseClient._make_api_call(self, operation_name, ...), so
    its frame names both; a failure raised anywhere else is just "AWS".
    """
    call = f"AWS {exc.operation_name}" if isinstance(exc, aws_errors.ClientError) else "AWS"
    tb = exc.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_code.co_name == "_make_api_call" and "operation_name" in frame.f_locals:
            client = frame.f_locals.get("self")
            service = getattr(getattr(client, "meta", None), "service_model", None)
            service = service.service_name if service else "AWS"
            call = f"{service} {frame.f_locals['operation_name']}"
        tb = tb.tb_next
    return call


def _endpoint(exc):
    """scheme://host:port of the URL a connection error names (never a path or userinfo)."""
    url = exc.kwargs.get("endpoint_url") or exc.kwargs.get("proxy_url") or ""
    parts = urlsplit(url)
    if not parts.hostname:
        return "the AWS endpoint"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}"


def _client_error_help(exc, call):
    code = error_code(exc)
    if code in DENIED_CODES:
        advice = "these credentials may not do this: grant the permission to your IAM user or role"
        if call == "s3 PutBucketPolicy":
            advice += (
                " (an account-level S3 Block Public Access setting refuses the public read on "
                "the static and media prefixes: allow public bucket policies for this bucket)"
            )
        return code, advice
    if code in INVALID_KEY_CODES:
        return code, f"the AWS credentials are not valid: {CREDENTIALS_HELP}"
    if code in EXPIRED_CODES:
        return code, "the AWS credentials have expired: renew them (e.g. aws sso login)"
    if code in THROTTLED_CODES:
        return code, "AWS is throttling requests: wait a minute and rerun"
    return (
        code or "ClientError",
        f"AWS refused the request (--traceback shows its answer); {RERUN}",
    )


def _botocore_error_help(exc):
    name = exc.__class__.__name__
    if isinstance(exc, aws_errors.NoCredentialsError):
        return name, f"no AWS credentials found: {CREDENTIALS_HELP}"
    if isinstance(exc, aws_errors.PartialCredentialsError):
        return name, f"incomplete AWS credentials: {CREDENTIALS_HELP}"
    if isinstance(exc, aws_errors.ProfileNotFound):
        return name, "AWS_PROFILE names a profile missing from ~/.aws/config: fix AWS_PROFILE"
    if isinstance(exc, (aws_errors.SSOError, aws_errors.TokenRetrievalError)):
        return name, "the AWS SSO session is missing or expired: run aws sso login"
    if isinstance(exc, aws_errors.CredentialRetrievalError):
        return name, f"the AWS credentials could not be loaded: {CREDENTIALS_HELP}"
    if isinstance(exc, aws_errors.ConnectionError):  # refused, DNS, connect timeout, proxy, TLS
        return name, (
            f"AWS endpoint unreachable ({_endpoint(exc)}): check the network, AWS_REGION, "
            "and AWS_ENDPOINT_URL if it is set"
        )
    if isinstance(exc, (aws_errors.ReadTimeoutError, aws_errors.ConnectionClosedError)):
        return name, (
            f"no answer from {_endpoint(exc)}: the request may or may not have been carried "
            f"out; {RERUN}"
        )
    return name, "the AWS client failed (--traceback shows the detail)"


@contextlib.contextmanager
def command_errors():
    """Let a command fail with one line, never a traceback, whatever AWS or boto3 raised.

    The line is "<service> <Operation>: <error code or class> — <what to do>". It carries no
    message text from AWS or botocore, which may echo a request's values; the chained
    exception keeps them for ./manage.py ... --traceback.
    """
    try:
        yield
    except OpsError as exc:
        raise CommandError(str(exc)) from None
    except aws_errors.ClientError as exc:
        call = _failed_call(exc)
        code, advice = _client_error_help(exc, call)
        raise CommandError(f"{call}: {code} — {advice}") from exc
    except aws_errors.BotoCoreError as exc:
        name, advice = _botocore_error_help(exc)
        raise CommandError(f"{_failed_call(exc)}: {name} — {advice}") from exc
