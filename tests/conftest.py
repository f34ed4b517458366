"""The test rig: a real PostgreSQL server and moto's server, both on loopback.

Every test that touches the database runs on the session's PostgreSQL server (via
pytest-django's django_db_modify_db_settings hook). boto3 reaches moto through
AWS_ENDPOINT_URL, exactly as production code reaches AWS.
"""

import io
import os

import pytest

from tests import helpers
from tests.servers import AWS_TEST_ENV, MotoServer, PostgresServer, RegistryServer

# The docker tier's session fixtures (docker_client, release_image, dev_image).
pytest_plugins = ["tests.docker_rig", "tests.instance_rig"]

# Nothing from the developer's own AWS setup may leak into the tests.
LEAKY_VARIABLES = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "DJANGO_CONFIG_URI",
    "DJANGO_CONFIG_CACHE",
    "DJANGO_DEBUG",
    "DJANGO_DATA_DIR",
)
for _var in list(os.environ):
    if _var in LEAKY_VARIABLES or _var.startswith("AWS_ENDPOINT_URL"):
        del os.environ[_var]
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


@pytest.fixture
def landscape(aws):
    """A clean AWS emulator holding the stage landscape setup_aws creates."""
    from django.core.management import call_command

    call_command("setup_aws", "--env", "stage", stdout=io.StringIO())
    return aws


@pytest.fixture
def configured(landscape, tmp_path):
    """The stage landscape with a filled-in config and stage 2 pushed to its bucket."""
    helpers.push_filled_config(tmp_path)
    return landscape


@pytest.fixture
def ready(configured):
    """Everything a launch needs: landscape, config and stage 2, a recorded release."""
    helpers.record_release()
    return configured


@pytest.fixture
def launched(ready):
    """An instance of stage launched by the commands; its config and stage 2 in S3, and no
    release recorded (withdrawn after the launch), so that stage 2 stops at its first step
    instead of pulling an image."""
    import boto3

    helpers.launch()
    boto3.client("s3").delete_object(Bucket=helpers.STAGE.bucket, Key=helpers.STAGE.env.release_key)
    (instance,) = helpers.instances()
    return instance


@pytest.fixture
def zone(aws):
    """The Route 53 zone of prod's first domain, for the fleet's certificate and records."""
    from tests import fleet_rig

    return fleet_rig.create_zone()


@pytest.fixture
def prod_fleet(zone, tmp_path):
    """A prod fleet that can launch: setup_aws (certificate issued), config, a release."""
    from tests import fleet_rig

    fleet_rig.setup_and_wait()
    helpers.push_filled_config(tmp_path, "prod", HOSTNAME=fleet_rig.DOMAINS[0])
    helpers.record_release(fleet_rig.PROD)
    return zone


@pytest.fixture(scope="module")
def registry():
    """Debian's docker-registry on a loopback port, for the tests of one module."""
    server = RegistryServer().start()
    yield server
    server.stop()


def pytest_sessionfinish(session, exitstatus):
    """Every tier runs in CI: a skipped or xfailed test fails the run instead of hiding."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None or exitstatus != 0:
        return
    hidden = [r for kind in ("skipped", "xfailed") for r in reporter.stats.get(kind, [])]
    if hidden:
        reporter.write_line(f"error: {len(hidden)} test(s) skipped or xfailed; none may be")
        session.exitstatus = 1
