# Settings for the stage environment. They run after www/settings.py's defaults, with those
# names in scope (PROJECT, BASE_DIR, INSTALLED_APPS, ...).
#
# This template is committed and holds no secret. Copy it to stage.local.py (git ignores
# *.local.py), replace every <<...>> placeholder, then:
#     ./manage.py push_config --env stage deploy/aws/config/stage.local.py
from www.deployed import postgres_database, s3_storages

ENV = PROJECT.environment("stage")

SECRET_KEY = "<<SECRET_KEY>>"  # 50+ random characters, e.g. ./manage.py generate_secret_key
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
        password="<<DB_PASSWORD>>",
    )
}

# Static and media files in the environment's bucket, under the prefixes the public may read;
# config/ and deploy/ stay private.
STORAGES = s3_storages(ENV)

# TLS, if any, ends at a load balancer in front; stage accepts plain HTTP too. The request's
# scheme comes from gunicorn, which believes X-Forwarded-Proto only from FORWARDED_ALLOW_IPS
# (deploy/release/gunicorn.conf.py): no SECURE_PROXY_SSL_HEADER, which Django takes from anyone.
SESSION_COOKIE_SECURE = False
CSRF_COOKIE_SECURE = False
