"""Load the settings DJANGO_CONFIG_URI names and report on them, for push_config.

    python -m www.config_probe check        Django's system and deploy checks, the fingerprint
    python -m www.config_probe fingerprint  the fingerprint only

push_config (www.ops.config_push) runs this in a subprocess on a config under test, so the
operator's own process never loads it. It prints on stdout's last line, as JSON,
{"settings": fingerprint, "warnings": [[id, message], ...]}: the fingerprint is a hash per
setting name, never a value; the warnings are the deploy checks', which push_config judges
per environment. CONFIG_URI names the file the settings came from (a temporary copy), not
something the file sets. A failure is reported the same way, as {"rejected": ...} with exit
status 1, and by its kind only: an exception's message (or a check's) may quote a setting's
value, so it never leaves this process.
"""

import hashlib
import json
import os
import sys

MODES = ("check", "fingerprint")


def rejected(reason):
    print(json.dumps({"rejected": reason}))
    sys.exit(1)


def fingerprint(settings):
    return {
        name: hashlib.sha256(repr(getattr(settings, name)).encode()).hexdigest()
        for name in dir(settings._wrapped)
        if name.isupper() and name not in ("CONFIG_URI", "CONFIG_SECRETS")
    }


def deploy_warnings(messages):
    """(id, message) of each warning; the message only for Django's security checks and the
    project's own (www/checks.py), whose text is fixed: another's may quote a value."""
    from django.core import checks

    return sorted(
        (m.id or "warning", m.msg if (m.id or "").startswith(("security.", "www.")) else "")
        for m in messages
        if m.level >= checks.WARNING
    )


def main(mode):
    import django
    from django.conf import settings
    from django.core import checks

    from www.config import ConfigError, line_of_error

    uri = os.environ["DJANGO_CONFIG_URI"]
    warnings = []
    try:
        django.setup()
        if mode == "check":
            found = [
                m for m in checks.run_checks(include_deployment_checks=True) if not m.is_silenced()
            ]
            errors = [m for m in found if m.level >= checks.ERROR]
            if errors:
                rejected("system check " + ", ".join(sorted({m.id or "error" for m in errors})))
            warnings = deploy_warnings(found)
    except ConfigError as exc:  # www.config's own line: the file's error class and line, no value
        rejected(str(exc).removeprefix(f"DJANGO_CONFIG_URI={uri}: "))
    except Exception as exc:
        line = line_of_error(exc, uri)
        rejected(exc.__class__.__name__ + (f" at line {line}" if line else ""))
    print(json.dumps({"settings": fingerprint(settings), "warnings": warnings}))


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in MODES:
        sys.exit(f"usage: python -m www.config_probe {{{','.join(MODES)}}}")
    main(sys.argv[1])
