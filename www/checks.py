"""The project's own deploy checks (./manage.py check --deploy), on top of Django's.

push_config runs the deploy checks on every config before it uploads it: prod refuses any
warning, stage shows them. These catch what Django's own checks let through: secrets written
into the config file instead of secret("name") references (www/config_secrets.py), and a
wildcard host.
"""

from django.conf import settings
from django.core.checks import Tags, register
from django.core.checks import Warning as CheckWarning

MOVE_TO_SSM = (
    'store it in SSM (./manage.py secret --env ENV set NAME) and write secret("NAME") in its place'
)


@register(Tags.security, deploy=True)
def secrets_by_reference(app_configs, **kwargs):
    """A config file (DJANGO_CONFIG_URI) names its secrets; it does not hold them."""
    if not getattr(settings, "CONFIG_URI", None):
        return []  # the default mode's key is generated locally, never in a file
    references = getattr(settings, "CONFIG_SECRETS", {})
    warnings = []
    if "SECRET_KEY" not in references:
        warnings.append(
            CheckWarning(
                "SECRET_KEY is written in the config file.",
                hint=MOVE_TO_SSM.replace("NAME", "secret-key"),
                id="www.W001",
            )
        )
    for alias, database in settings.DATABASES.items():
        if database.get("PASSWORD") and f"DATABASES.{alias}.PASSWORD" not in references:
            warnings.append(
                CheckWarning(
                    f"DATABASES[{alias!r}] has its password written in the config file.",
                    hint=MOVE_TO_SSM.replace("NAME", "database-password"),
                    id="www.W002",
                )
            )
    return warnings


@register(Tags.security, deploy=True)
def no_wildcard_host(app_configs, **kwargs):
    """ALLOWED_HOSTS = ["*"] answers for any Host header (password-reset links, caches)."""
    if "*" in settings.ALLOWED_HOSTS:
        return [
            CheckWarning(
                "ALLOWED_HOSTS allows any host ('*').",
                hint="list the site's public names; /health needs none",
                id="www.W003",
            )
        ]
    return []
