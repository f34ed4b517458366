"""The deployed static storage on moto's S3: collectstatic stores content-hashed copies that
CloudFront and browsers may keep for a year, {% static %} names them on the distribution's
domain, each set of files keeps its own names (rolling deploys, rollbacks), and the URLs are
django-storages' own however often asked."""

import hashlib
from io import StringIO
from urllib.parse import unquote, urlparse

import pytest
from django.contrib.staticfiles.storage import staticfiles_storage
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.template import Context, Template
from storages.backends.s3 import S3Storage

from www import project, start_steps
from www.aws import client as aws_client
from www.deployed import s3_storages
from www.storage import StaticS3Storage

CDN_DOMAIN = "d111111abcdef8.cloudfront.net"
NAMES = ["css/site.css", "js/app.js", "dir with space/ü.js"]
YEAR_IMMUTABLE = "public, max-age=31536000, immutable"
ENV = project.load().environment("stage")


def static_url(name):
    return Template("{% load static %}{% static name %}").render(Context({"name": name}))


def collect(command="collectstatic"):
    out = StringIO()
    call_command(command, interactive=False, verbosity=1, stdout=out, stderr=StringIO())
    return out.getvalue()


@pytest.fixture
def bucket(aws, settings):
    """The stage bucket on the emulator, the settings storing in it as the stage config does."""
    s3 = aws_client("s3")
    s3.create_bucket(
        Bucket=ENV.bucket,
        CreateBucketConfiguration={"LocationConstraint": project.aws_region()},
    )
    settings.STORAGES = s3_storages(ENV, cdn_domain=CDN_DOMAIN)
    settings.DEBUG = False
    return s3


def only_files(settings, directory, files):
    """The static files are these (name: text) in directory, not the apps' (a quick collect)."""
    for name, text in files.items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_text(text)
    settings.STATICFILES_FINDERS = ["django.contrib.staticfiles.finders.FileSystemFinder"]
    settings.STATICFILES_DIRS = [directory]
    settings.STORAGES = s3_storages(ENV, cdn_domain=CDN_DOMAIN)  # a new process's storage


def cache_control(s3, key):
    return s3.head_object(Bucket=ENV.bucket, Key=key).get("CacheControl")


def test_static_names_hashed_copies_cached_for_a_year(bucket, settings, tmp_path):
    s3 = bucket
    # A file that merely looks hashed: its name is no promise about its content.
    (tmp_path / "vendor.0123456789ab.js").write_text("var vendor = 1;\n")
    settings.STATICFILES_DIRS = [tmp_path]
    collect()

    url = urlparse(static_url("admin/css/base.css"))
    assert url.scheme == "https" and url.netloc == CDN_DOMAIN and not url.query
    stem, digest, ext = url.path.rsplit(".", 2)
    assert (stem, ext) == ("/static/admin/css/base", "css") and len(digest) == 12
    key = url.path.lstrip("/")
    obj = s3.get_object(Bucket=ENV.bucket, Key=key)
    assert obj["CacheControl"] == YEAR_IMMUTABLE
    assert obj["ContentType"] == "text/css"
    content_hash = hashlib.md5(obj["Body"].read(), usedforsecurity=False).hexdigest()
    assert content_hash[:12] == digest  # the name says the content

    # The original names (anything may still ask for them) and the manifest: no long cache.
    assert cache_control(s3, "static/admin/css/base.css") is None
    manifest = f"static/{start_steps.static_manifest(start_steps.static_fingerprint())}"
    assert cache_control(s3, manifest) == "no-cache"
    assert cache_control(s3, "static/vendor.0123456789ab.js") is None
    vendor = urlparse(static_url("vendor.0123456789ab.js")).path.lstrip("/")
    assert vendor != "static/vendor.0123456789ab.js"
    assert cache_control(s3, vendor) == YEAR_IMMUTABLE
    # Every stored copy with a hash in its name carries the long cache; media are left alone.
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=ENV.bucket)["Contents"]]
    immutable = [k for k in keys if cache_control(s3, k) == YEAR_IMMUTABLE]
    assert len(immutable) > 20 and all(k.startswith("static/") for k in immutable)
    assert default_storage.save("upload.css", ContentFile(b"a {}")) == "upload.css"
    assert cache_control(s3, "media/upload.css") is None


def test_each_set_of_files_keeps_its_own_names(bucket, settings, tmp_path):
    """Release A's and release B's instances share the bucket during a rolling deploy, and a
    rollback starts A again: each reads its own manifest, and a second start collects nothing."""
    releases = {}
    for release, colour in (("a", "red"), ("b", "blue")):
        only_files(settings, tmp_path / release, {"app.css": f"body {{ color: {colour}; }}\n"})
        assert "Collected static files" in collect("collectstatic_once")
        releases[release] = static_url("app.css")
    assert releases["a"] != releases["b"]

    only_files(settings, tmp_path / "a", {})  # the rollback
    assert "already collected" in collect("collectstatic_once")
    assert static_url("app.css") == releases["a"]
    body = bucket.get_object(Bucket=ENV.bucket, Key=urlparse(releases["a"]).path.lstrip("/"))
    assert body["Body"].read() == b"body { color: red; }\n"

    # A marker without a manifest is what a release that did not hash names left: collect.
    fingerprint = start_steps.static_fingerprint()
    manifest = f"static/{start_steps.static_manifest(fingerprint)}"
    bucket.delete_object(Bucket=ENV.bucket, Key=manifest)
    settings.STORAGES = s3_storages(ENV, cdn_domain=CDN_DOMAIN)  # a new process's storage
    assert staticfiles_storage.exists(start_steps.collected_marker(fingerprint))
    assert "Collected static files" in collect("collectstatic_once")
    assert static_url("app.css") == releases["a"]


def test_debug_names_files_without_a_manifest(bucket, settings, tmp_path):
    """A developer running a deployed config with DEBUG on, before any collectstatic, gets the
    plain names rather than an error page."""
    only_files(settings, tmp_path, {"css/site.css": "p {}"})
    settings.DEBUG = True
    assert static_url("css/site.css") == f"https://{CDN_DOMAIN}/static/css/site.css"
    settings.DEBUG = False
    settings.STORAGES = s3_storages(ENV, cdn_domain=CDN_DOMAIN)  # DEBUG is set per process
    with pytest.raises(ValueError, match="Missing staticfiles manifest entry"):
        static_url("css/site.css")


def test_a_storage_made_before_collectstatic_finds_the_manifest_later(bucket, settings, tmp_path):
    """gunicorn's master imports the app, and WhiteNoise asks the static storage for URLs,
    while the start-up steps are still collecting in another process; the workers it forks
    inherit that storage and must still name the hashed copies."""
    only_files(settings, tmp_path, {"css/site.css": "p {}"})
    options = s3_storages(ENV, cdn_domain=CDN_DOMAIN)["staticfiles"]["OPTIONS"]
    early = StaticS3Storage(**options)
    with pytest.raises(ValueError, match="Missing staticfiles manifest entry"):
        early.url("css/site.css")
    collect()  # staticfiles_storage: another storage, as the start-up process has
    assert early.url("css/site.css") == static_url("css/site.css")
    assert urlparse(early.url("css/site.css")).path.startswith("/static/css/site.")
    assert early.url("css/site.css") != f"https://{CDN_DOMAIN}/static/css/site.css"


def test_static_urls_are_s3storages_however_often_asked(bucket, settings, tmp_path):
    only_files(settings, tmp_path, dict.fromkeys(NAMES, "p {}"))
    collect()
    for cdn_domain in (CDN_DOMAIN, None):  # the distribution's domain, or S3's own
        options = s3_storages(ENV, cdn_domain=cdn_domain)["staticfiles"]["OPTIONS"]
        ours, theirs = StaticS3Storage(**options), S3Storage(**options)
        hashed = [ours.stored_name(name) for name in NAMES]
        assert all(h != name for h, name in zip(hashed, NAMES, strict=True))
        for _ in range(3):
            # (unquoted, as Django's hashing storages give every URL)
            assert [ours.url(name) for name in NAMES] == [unquote(theirs.url(h)) for h in hashed]
        url = urlparse(ours.url("css/site.css"))
        assert url.path.endswith(f"/static/{hashed[0]}") and not url.query
        assert (url.netloc == CDN_DOMAIN) == (cdn_domain is not None)


def test_signed_urls_are_not_remembered(bucket, settings, tmp_path):
    only_files(settings, tmp_path, {"www/site.css": "p {}"})
    collect()
    options = s3_storages(ENV, cdn_domain=None)["staticfiles"]["OPTIONS"]
    signed = StaticS3Storage(**{**options, "querystring_auth": True})
    # Signed URLs expire: each one is worked out anew, never an old one handed out again.
    first = signed.url("www/site.css")
    assert urlparse(first).query
    assert signed.url("www/site.css") is not first
    assert signed._urls == {}
