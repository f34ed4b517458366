# Settings for the prod environment. They run after www/settings.py's defaults, with those
# names in scope (PROJECT, BASE_DIR, INSTALLED_APPS, ...).
#
# This template is committed and holds no secret, nor does a filled-in copy: secrets are
# secret("name") references (below). Copy it to prod.local.py (git ignores *.local.py),
# replace every <<...>> placeholder, then:
#     ./manage.py push_config --env prod deploy/aws/config/prod.local.py
# Filled in, it passes ./manage.py check --deploy --fail-level WARNING.
from www.deployed import postgres_database, s3_storages

ENV = PROJECT.environment("prod")

# Secrets are references to SSM SecureStrings /<project>/prod/<name>, read at each start:
#     ./manage.py secret --env prod generate secret-key
#     ./manage.py secret --env prod set database-password   (setup_aws --with-rds sets it)
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
        sslmode="require",
    )
}

# Static and media files in the environment's bucket, served by its CloudFront distribution
# (setup_aws prints its domain, e.g. d1234abcd.cloudfront.net); the bucket itself is private.
STORAGES = s3_storages(ENV, cdn_domain="<<CDN_DOMAIN>>")

# TLS ends at the load balancer, which sets X-Forwarded-Proto. gunicorn believes it only from
# the load balancer's addresses (FORWARDED_ALLOW_IPS, deploy/release/gunicorn.conf.py) and
# tells Django through the request's scheme, so there is no SECURE_PROXY_SSL_HEADER here:
# Django would take that header from anyone.
SECURE_SSL_REDIRECT = True
SECURE_HSTS_SECONDS = 31536000
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
