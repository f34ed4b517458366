"""Settings that run with nothing configured: SQLite, local files, DEBUG off.

Stage and prod overlay these from DJANGO_CONFIG_URI (see www/config.py and
deploy/aws/config/). Environment variables read here:
  DJANGO_DEBUG=1        turn DEBUG on (defaults only; a config file may set DEBUG itself)
  DJANGO_DATA_DIR       where the default mode keeps its database, files and secret key
  DJANGO_CONFIG_URI     s3://BUCKET/KEY, file:///ABS/PATH or /ABS/PATH of a settings file
  DJANGO_CONFIG_CACHE   local copy of that file, shared by the processes of one start

A config file sees these names, PROJECT (www.project.Project, from project.env) included,
and secret("name"): a reference to its environment's SSM SecureString (www/config_secrets.py).
"""

import os
import warnings
from pathlib import Path

from www import config, project, secret

BASE_DIR = Path(__file__).resolve().parent.parent
PROJECT = project.load()
DATA_DIR = Path(os.environ.get("DJANGO_DATA_DIR") or BASE_DIR / "var")

DEBUG = os.environ.get("DJANGO_DEBUG") == "1"
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "[::1]"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "www",
]

MIDDLEWARE = [
    "www.health.HealthCheckMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "www.urls"
WSGI_APPLICATION = "www.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": DATA_DIR / "db.sqlite3",
    }
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
MEDIA_URL = "media/"
MEDIA_ROOT = DATA_DIR / "media"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# WhiteNoise serves static files with DEBUG off too; straight from the apps in the default
# mode, so `migrate && runserver` needs no collectstatic.
WHITENOISE_USE_FINDERS = True
warnings.filterwarnings("ignore", message="No directory at: ", category=UserWarning)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "INFO"},
    # botocore narrates every credential and endpoint lookup at INFO.
    "loggers": {"botocore": {"level": "WARNING"}},
}

CONFIG_URI = config.apply_from_environment(globals())

if CONFIG_URI:
    config.check_secret_key(CONFIG_URI, globals().get("SECRET_KEY"))
elif not globals().get("SECRET_KEY"):
    # Default mode only: generated on first use, kept beside the local database.
    SECRET_KEY = secret.local_secret_key(DATA_DIR)
