"""What can go wrong in ops, in terms the operator acts on, without the command layer.

OpsError is the domain error: a problem the operator can fix, in one line that says what to do.
describe_aws_failure() reads a boto3/botocore exception the same way: "<service> <Operation>:
<code or class> — <what to do>", carrying no message text from AWS (which may echo a request's
values). The commands (www.management.base) turn both into CommandError; nothing here imports
Django's command machinery.
"""

from urllib.parse import urlsplit

from botocore import exceptions as aws_errors

from www import aws


class OpsError(Exception):
    """A problem the operator can fix, in one line that says what to do."""


def error_code(exc):
    """A ClientError's code, e.g. "NoSuchKey"."""
    return exc.response.get("Error", {}).get("Code", "")


def value_or_none(call, missing_codes, pick):
    """pick(call()), or None when AWS answers with one of missing_codes (the thing is absent)."""
    try:
        return pick(call())
    except aws_errors.ClientError as exc:
        if error_code(exc) in missing_codes:
            return None
        raise


RERUN = "rerun (reruns redo only what is missing)"
DENIED_HELP = "these credentials may not do this: grant the permission to your IAM user or role"
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
    """'service Operation' of the boto3 call exc came out of, as the client factory recorded it.

    A failure raised outside any call (e.g. a waiter giving up) is just "AWS", or "AWS
    <Operation>" for a ClientError from a client the factory did not make.
    """
    operation = getattr(exc, "operation_name", None)
    call = aws.unfinished_call()
    if call and (operation is None or call.endswith(f" {operation}")):
        return call
    return f"AWS {operation}" if operation else "AWS"


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
        return code, DENIED_HELP
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


AWS_ERRORS = (aws_errors.ClientError, aws_errors.BotoCoreError)


def describe_aws_failure(exc):
    """One line for a ClientError or BotoCoreError: the call, what failed, what to do."""
    call = _failed_call(exc)
    if isinstance(exc, aws_errors.ClientError):
        code, advice = _client_error_help(exc, call)
    else:
        code, advice = _botocore_error_help(exc)
    return f"{call}: {code} — {advice}"
