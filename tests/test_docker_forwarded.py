"""Who may say "https": a real release container with the prod config template.

gunicorn runs with FORWARDED_ALLOW_IPS=127.0.0.2, playing the load balancer's range. The
tests reach it over loopback from 127.0.0.1 (outside that range: any client) and from
127.0.0.2 (inside: the load balancer), which Linux lets a socket bind without setup.
"""

import http.client
import uuid

import pytest

from tests.docker_rig import ROOT, TEST_SECRET_KEY, put_s3_config, run_release
from tests.helpers import fill_placeholders, put_secrets
from www import project

pytestmark = pytest.mark.docker

TRUSTED, UNTRUSTED = "127.0.0.2", "127.0.0.1"
PROD = project.load().environment("prod")


def prod_config(postgres_server, dbname):
    """The prod template filled in for this machine; the test Postgres speaks no TLS, so the
    one change to the template is the database's sslmode."""
    db = postgres_server.django_settings(dbname)
    # the template names its secrets; they live in the emulator's SSM
    put_secrets("prod", secret_key=TEST_SECRET_KEY, database_password=db["PASSWORD"])
    filled = {
        "SECRET_KEY": TEST_SECRET_KEY,
        "HOSTNAME": "127.0.0.1",
        "CDN_DOMAIN": "cdn.invalid",
        "DB_HOST": db["HOST"],
        "DB_PORT": db["PORT"],
        "DB_NAME": db["NAME"],
        "DB_USER": db["USER"],
        "DB_PASSWORD": db["PASSWORD"],
    }
    template = (ROOT / "deploy" / "aws" / "config" / "prod.py").read_text()
    source = fill_placeholders(template, filled)
    return source + '\nDATABASES["default"]["OPTIONS"]["sslmode"] = "disable"\n'


def get(app, path, headers, *, source):
    """GET path from the source address; (status, headers, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", app.port, timeout=10, source_address=(source, 0))
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read().decode()
    finally:
        conn.close()


@pytest.fixture
def prod_app(aws, postgres_server, docker_client, release_image):
    db = postgres_server.create_database(f"forwarded_{uuid.uuid4().hex[:12]}")
    uri = put_s3_config(prod_config(postgres_server, db), bucket=PROD.bucket, key=PROD.config_key)
    with run_release(
        docker_client, release_image, config_uri=uri, env={"FORWARDED_ALLOW_IPS": TRUSTED}
    ) as app:
        app.wait_healthy()
        yield app


def test_forwarded_headers_count_only_from_the_trusted_range(prod_app):
    login = "/admin/login/"
    https = {"X-Forwarded-Proto": "https"}

    # Any client claiming https is still sent to https.
    status, headers, _ = get(prod_app, login, https, source=UNTRUSTED)
    assert status == 301
    assert headers["Location"] == f"https://127.0.0.1:{prod_app.port}{login}"

    # The load balancer's claim is believed: the page, with HSTS (sent on https only).
    status, headers, body = get(prod_app, login, https, source=TRUSTED)
    assert status == 200, body[:500]
    assert headers["Strict-Transport-Security"].startswith("max-age=31536000")

    # X-Forwarded-Ssl and X-Forwarded-Protocol say nothing, whoever sends them.
    for source in (TRUSTED, UNTRUSTED):
        for claim in ({"X-Forwarded-Ssl": "on"}, {"X-Forwarded-Protocol": "ssl"}):
            status, headers, _ = get(prod_app, login, claim, source=source)
            assert status == 301, (source, claim)
            assert headers["Location"].startswith("https://")

    # A SCRIPT_NAME header moves no URL, from the trusted range or elsewhere.
    status, _, body = get(prod_app, login, {**https, "SCRIPT_NAME": "/evil"}, source=TRUSTED)
    assert status == 200
    assert 'action="/admin/login/' in body and "/evil" not in body
    status, headers, _ = get(prod_app, login, {"SCRIPT_NAME": "/evil"}, source=UNTRUSTED)
    assert status == 301 and "/evil" not in headers["Location"]
