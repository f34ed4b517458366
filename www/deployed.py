"""Building blocks for the deployed environments' settings files (deploy/aws/config/).

They ship with the release, so every environment's config gets the same tested shape and the
files themselves hold only what differs: names, hosts and secrets.
"""


def postgres_database(*, host, port, name, user, password, **options):
    """A PostgreSQL DATABASES entry with bounded connects and health-checked reuse.

    Each thread keeps its connection for as long as it runs (CONN_MAX_AGE None), checked
    with a SELECT 1 before a request reuses it (CONN_HEALTH_CHECKS): one that broke, e.g. at
    an RDS failover, is replaced then. A connection costs a TLS handshake and SCRAM (~80
    /health requests' CPU), and gunicorn.conf.py opens every thread's at the same moment, so a
    finite age would expire them all together: with 60 s, each instance reconnected every
    thread in the same second once a minute, and those requests were most of the p99
    (docs/benchmarks.md, twelfth session). On a database whose failover leaves old
    connections open to a read-only node (Aurora, a proxy), set a finite age in the config."""
    return {
        "ENGINE": "django.db.backends.postgresql",
        "HOST": host,
        "PORT": port,
        "NAME": name,
        "USER": user,
        "PASSWORD": password,
        "CONN_MAX_AGE": None,
        "CONN_HEALTH_CHECKS": True,
        "OPTIONS": {"connect_timeout": 5, **options},
    }


def s3_storages(env, *, cdn_domain):
    """STORAGES with static and media files in the environment's bucket, under the two
    prefixes its CloudFront distribution may read (www/project.py owns them), and their URLs
    on that distribution's domain (setup_aws prints it): https://<cdn_domain>/static/..."""
    common = {
        "bucket_name": env.bucket,
        "default_acl": None,
        "querystring_auth": False,
        "custom_domain": cdn_domain,
    }
    return {
        "default": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {**common, "location": env.media_prefix, "file_overwrite": False},
        },
        "staticfiles": {
            # content-hashed names cached a year, each URL worked out once (www/storage.py)
            "BACKEND": "www.storage.StaticS3Storage",
            "OPTIONS": {**common, "location": env.static_prefix},
        },
    }
