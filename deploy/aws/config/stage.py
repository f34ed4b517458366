# Settings for the stage environment. They run after www/settings.py's defaults, with those
# names in scope (PROJECT, BASE_DIR, INSTALLED_APPS, ...).
#
# This template is committed and holds no secret. Copy it to stage.local.py (git ignores
# *.local.py), replace every <<...>> placeholder, then:
#     ./manage.py push_config --env stage deploy/aws/config/stage.local.py
ENV = PROJECT.environment("stage")

SECRET_KEY = "<<SECRET_KEY>>"  # 50+ random characters, e.g. ./manage.py generate_secret_key
DEBUG = False
ALLOWED_HOSTS = ["<<HOSTNAME>>"]  # the site's public name(s); /health needs none
CSRF_TRUSTED_ORIGINS = [f"https://{host}" for host in ALLOWED_HOSTS]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "HOST": "<<DB_HOST>>",
        "PORT": "<<DB_PORT>>",
        "NAME": "<<DB_NAME>>",
        "USER": "<<DB_USER>>",
        "PASSWORD": "<<DB_PASSWORD>>",
        "CONN_MAX_AGE": 60,
        "CONN_HEALTH_CHECKS": True,
        "OPTIONS": {"connect_timeout": 5},
    }
}

# Static and media files in the environment's bucket, under the two prefixes the public may
# read (ENV.static_prefix, ENV.media_prefix: www/project.py, which the bucket policy in
# deploy/aws/bucket-policy.json is rendered with); config/ and deploy/ stay private.
_s3 = {"bucket_name": ENV.bucket, "default_acl": None}
STORAGES = {
    "default": {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            **_s3,
            "location": ENV.media_prefix,
            "file_overwrite": False,
            "querystring_auth": False,
        },
    },
    "staticfiles": {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {**_s3, "location": ENV.static_prefix, "querystring_auth": False},
    },
}

# TLS ends in front of the instance (load balancer or CDN); stage accepts plain HTTP too.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = False
CSRF_COOKIE_SECURE = False
