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
    (docs/benchmarks.md, twelfth session). Where a failover can leave a connection open on a
    node that no longer takes writes (the SELECT 1 still passes there), set an age in the
    config, spread per connection.

    A request waiting on a host that went silent (no reset) gets an error within 30 s
    (tcp_user_timeout; the keepalives find an idle connection dead), where the kernel's
    retransmissions would hold its thread for about 15 minutes."""
    return {
        "ENGINE": "django.db.backends.postgresql",
        "HOST": host,
        "PORT": port,
        "NAME": name,
        "USER": user,
        "PASSWORD": password,
        "CONN_MAX_AGE": None,
        "CONN_HEALTH_CHECKS": True,
        "OPTIONS": {
            "connect_timeout": 5,
            "keepalives_idle": 30,
            "keepalives_interval": 10,
            "keepalives_count": 3,
            "tcp_user_timeout": 30_000,  # milliseconds
            **options,
        },
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
