"""The deployed static storage: the same URLs as django-storages' S3Storage gives, for every
name, however often a page asks; anything signed or parameterised still goes to S3Storage."""

from urllib.parse import parse_qs, urlparse

from storages.backends.s3 import S3Storage

from www import project
from www.deployed import s3_storages
from www.storage import StaticS3Storage

NAMES = ["admin/css/base.css", "www/site.css", "dir with space/ü.js", "admin/js/theme.js"]


CDN_DOMAIN = "d111111abcdef8.cloudfront.net"


def storages_for(env, cdn_domain=CDN_DOMAIN):
    options = s3_storages(env, cdn_domain=cdn_domain)["staticfiles"]["OPTIONS"]
    return StaticS3Storage(**options), S3Storage(**options)


def test_static_urls_are_s3storages_however_often_asked(aws):
    env = project.load().environment("stage")
    for cdn_domain in (CDN_DOMAIN, None):  # the distribution's domain, or S3's own
        ours, theirs = storages_for(env, cdn_domain)
        for _ in range(3):
            assert [ours.url(name) for name in NAMES] == [theirs.url(name) for name in NAMES]
        url = urlparse(ours.url("admin/css/base.css"))
        assert url.path.endswith("/static/admin/css/base.css") and not url.query
        assert (url.netloc == CDN_DOMAIN) == (cdn_domain is not None)


def test_signed_and_parameterised_urls_are_not_remembered(aws):
    env = project.load().environment("stage")
    options = s3_storages(env, cdn_domain=None)["staticfiles"]["OPTIONS"]
    options = {**options, "querystring_auth": True}
    signed = StaticS3Storage(**options)
    # Signed URLs expire: each one is worked out anew, never an old one handed out again.
    assert urlparse(signed.url("a.css")).query
    assert signed.url("a.css", expire=60) != signed.url("a.css", expire=120)
    ours, _ = storages_for(env, None)
    with_parameter = ours.url("a.css", parameters={"VersionId": "v1"})
    assert parse_qs(urlparse(with_parameter).query)["versionId"] == ["v1"]
    assert not urlparse(ours.url("a.css")).query
