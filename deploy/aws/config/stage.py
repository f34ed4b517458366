# Settings for the stage environment. They run after www/settings.py's defaults, with those
# names in scope (PROJECT, BASE_DIR, INSTALLED_APPS, ...).
#
# This template is committed and holds no secret, nor does a filled-in copy: secrets are
# secret("name") references (below). Copy it to stage.local.py (git ignores *.local.py),
# replace every <<...>> placeholder, then:
#     ./manage.py push_config --env stage deploy/aws/config/stage.local.py
from www.deployed import postgres_database, s3_storages

ENV = PROJECT.environment("stage")

# Secrets are references to SSM SecureStrings /<project>/stage/<name>, read at each start:
#     ./manage.py secret --env stage generate secret-key
#     ./manage.py secret --env stage set database-password   (setup_aws --with-rds sets it)
SECRET_KEY = secret("secret-key")
DEBUG = False
ALLOWED_HOSTS = ["<<HOSTNAME>>"]  # the site's public name(s); /health needs none
CSRF_TRUSTED_ORIGINS = [f"https://{host}" for host in ALLOWED_HOSTS]

DATABASES = {
    "default": postgres_database(
        host="<<DB_HOST>>",
        port="<<DB_PORT>>",
        name="<<DB_NAME>>",
        user="<<DB_USER>>",
        password=secret("database-password"),
    )
}

# Static and media files in the environment's bucket, served by its CloudFront distribution
# (setup_aws prints its domain, e.g. d1234abcd.cloudfront.net); the bucket itself is private.
STORAGES = s3_storages(ENV, cdn_domain="<<CDN_DOMAIN>>")

# TLS ends in front of the instance (load balancer or CDN); stage accepts plain HTTP too.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = False
CSRF_COOKIE_SECURE = False
