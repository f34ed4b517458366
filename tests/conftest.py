"""The test rig: a real PostgreSQL server and moto's server, both on loopback.

Every test that touches the database runs on the session's PostgreSQL server (via
pytest-django's django_db_modify_db_settings hook). boto3 reaches moto through
AWS_ENDPOINT_URL, exactly as production code reaches AWS.
"""

import os

import pytest

from tests.servers import AWS_TEST_ENV, MotoServer, PostgresServer

# The docker tier's session fixtures (docker_client, release_image, dev_image).
pytest_plugins = ["tests.docker_rig"]

# Nothing from the developer's own AWS setup may leak into the tests.
for _var in (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "DJANGO_CONFIG_URI",
    "DJANGO_CONFIG_CACHE",
):
    os.environ.pop(_var, None)
os.environ.update(AWS_TEST_ENV)
os.environ["AWS_CONFIG_FILE"] = os.devnull
os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"


@pytest.fixture(scope="session")
def postgres_server():
    server = PostgresServer().start()
    yield server
    server.destroy()


@pytest.fixture(scope="session")
def django_db_modify_db_settings(postgres_server):
    from django.conf import settings
    from django.db import connections

    settings.DATABASES["default"] = {
        **settings.DATABASES["default"],
        **postgres_server.django_settings("app"),
    }
    settings.DATABASES["default"].pop("OPTIONS", None)
    connections.close_all()
    connections.__dict__.pop("settings", None)  # re-read DATABASES on next use
    del connections["default"]  # and drop the wrapper built from the old ones


@pytest.fixture(scope="session")
def moto_server():
    server = MotoServer().start()
    os.environ["AWS_ENDPOINT_URL"] = server.url
    yield server
    os.environ.pop("AWS_ENDPOINT_URL", None)
    server.stop()


@pytest.fixture
def aws(moto_server):
    """A clean AWS emulator for one test."""
    moto_server.reset()
    return moto_server
