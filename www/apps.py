from django.apps import AppConfig


class WwwConfig(AppConfig):
    name = "www"

    def ready(self):
        from www import checks  # noqa: F401 -- registers the project's deploy checks
