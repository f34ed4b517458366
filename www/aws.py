"""The one AWS client factory: bounded timeouts and retries, never called at import.

Each client it makes records the call it is making (service and operation) through botocore's
event hooks, so a failure can be reported as "s3 GetObject: ..." whatever raised it: a
ClientError knows its operation but not its service, and a credentials or connection error
knows neither.
"""

import contextvars
import functools

import botocore.loaders
import botocore.session
from botocore.config import Config

from www.project import aws_region

CLIENT_CONFIG = Config(
    connect_timeout=5,
    read_timeout=30,
    retries={"max_attempts": 3, "mode": "standard"},
)
# Fetching the settings file as a container starts: a small object, so an endpoint that accepts
# but never answers must fail the start in seconds, not minutes.
SETTINGS_FILE_CLIENT_CONFIG = Config(
    connect_timeout=3,
    read_timeout=5,
    retries={"max_attempts": 2, "mode": "standard"},
)

# "service Operation" of the call in flight or that failed last; None once a call succeeded.
_unfinished_call = contextvars.ContextVar("unfinished_aws_call", default=None)


def _call_started(model, **_):
    _unfinished_call.set(f"{model.service_model.service_name} {model.name}")


def _call_answered(http_response, **_):
    if http_response.status_code < 300:  # an error answer raises ClientError after this hook
        _unfinished_call.set(None)


def unfinished_call():
    """'service Operation' of the last call a client of this factory started and did not
    complete successfully (the one a ClientError or BotoCoreError came out of), else None."""
    return _unfinished_call.get()


@functools.cache
def _data_loader():
    """botocore's loader of the services' models, and its cache of what it parsed."""
    return botocore.loaders.create_loader()


def client(service, *, region=None, config=CLIENT_CONFIG):
    """A client (what boto3.client returns, without boto3's S3 transfer helpers) on the default
    credential chain, in a session of its own: credentials and settings, AWS_ENDPOINT_URL
    among them, are read afresh. The sessions share one loader, so each service's model is
    parsed once a process: a new loader cost 85 ms a client, and setup_aws makes 16."""
    session = botocore.session.get_session()
    session.register_component("data_loader", _data_loader())
    aws_client = session.create_client(service, region_name=region or aws_region(), config=config)
    aws_client.meta.events.register("before-call", _call_started)
    aws_client.meta.events.register("after-call", _call_answered)
    return aws_client
