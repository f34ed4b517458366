"""Building blocks for the deployed environments' settings files (deploy/aws/config/).

They ship with the release, so every environment's config gets the same tested shape and the
files themselves hold only what differs: names, hosts and secrets.
"""


def postgres_database(*, host, port, name, user, password, **options):
    """A PostgreSQL DATABASES entry with bounded connects and health-checked reuse."""
    return {
        "ENGINE": "django.db.backends.postgresql",
        "HOST": host,
        "PORT": port,
        "NAME": name,
        "USER": user,
        "PASSWORD": password,
        "CONN_MAX_AGE": 60,
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
