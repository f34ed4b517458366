# Settings of the dev container (DJANGO_CONFIG_URI in deploy/dev/Dockerfile): the container's
# own Postgres over its unix socket, DEBUG on. Committed on purpose: nothing here guards
# anything beyond a developer's machine.
DEBUG = True
SECRET_KEY = "dev-container-only-insecure-key-never-use-it-elsewhere"  # noqa: S105
ALLOWED_HOSTS = ["*"]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "HOST": "/run/postgresql",
        "NAME": "app",
        "USER": "app",
    }
}

STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
MEDIA_ROOT = "/host/media"
