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
# The site's public name(s); /health needs none. Behind a load balancer without STAGE_DOMAINS,
# the load balancer's own DNS name (setup_aws prints it: "site answers at http://...").
ALLOWED_HOSTS = ["<<HOSTNAME>>"]
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

# TLS, if any, ends at a load balancer in front; stage accepts plain HTTP too. The request's
# scheme comes from gunicorn, which believes X-Forwarded-Proto only from FORWARDED_ALLOW_IPS
# (deploy/release/gunicorn.conf.py): no SECURE_PROXY_SSL_HEADER, which Django takes from anyone.
SESSION_COOKIE_SECURE = False
CSRF_COOKIE_SECURE = False
