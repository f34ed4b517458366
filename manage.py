#!/usr/bin/env python3
"""Django's command-line utility; a bad DJANGO_CONFIG_URI ends it with one line."""

import os
import sys


def main():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "www.settings")
    from django.core.management import execute_from_command_line

    from www.config import ConfigError

    try:
        execute_from_command_line(sys.argv)
    except ConfigError as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
