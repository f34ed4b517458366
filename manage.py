#!/usr/bin/env python3
"""Django's command-line utility; a bad DJANGO_CONFIG_URI or project.env ends it with one line."""

import os
import sys


def main():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "www.settings")
    from django.conf import settings
    from django.core.management import execute_from_command_line

    from www.config import ConfigError
    from www.project import ProjectFileError

    try:
        # Load settings here first: Django's own loader would swallow a ConfigError and
        # load them again, fetching a broken config twice.
        settings.INSTALLED_APPS  # noqa: B018
        execute_from_command_line(sys.argv)
    except (ConfigError, ProjectFileError) as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
