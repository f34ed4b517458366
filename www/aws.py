"""The one boto3 client factory: bounded timeouts and retries, never called at import."""

import boto3
from botocore.config import Config

from www.project import aws_region

CLIENT_CONFIG = Config(
    connect_timeout=5,
    read_timeout=30,
    retries={"max_attempts": 3, "mode": "standard"},
)
# Fetching the settings file at start-up: a small object, so an endpoint that accepts but
# never answers must fail the start in seconds, not minutes.
STARTUP_CONFIG = Config(
    connect_timeout=3,
    read_timeout=5,
    retries={"max_attempts": 2, "mode": "standard"},
)


def client(service, *, region=None, config=CLIENT_CONFIG):
    """A boto3 client on the default credential chain; honours AWS_ENDPOINT_URL."""
    return boto3.session.Session().client(
        service, region_name=region or aws_region(), config=config
    )
