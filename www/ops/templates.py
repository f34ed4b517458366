"""The files in deploy/aws/ that ops fills in: {{field}} markers, never left unfilled."""

import json
import re

from www.ops.errors import OpsError
from www.project import BASE_DIR, CONFIG_PREFIX, DEPLOY_PREFIX, MEDIA_PREFIX, STATIC_PREFIX

TEMPLATE_DIR = BASE_DIR / "deploy" / "aws"
TEMPLATE_FIELD = re.compile(r"\{\{([a-z][a-z0-9_]*)\}\}")


def render(text, **fields):
    """Fill {{field}} markers; a marker without a value is an error, never left in."""
    missing = set(TEMPLATE_FIELD.findall(text)) - fields.keys()
    if missing:
        raise OpsError(f"template needs values for: {', '.join(sorted(missing))}")
    return TEMPLATE_FIELD.sub(lambda m: str(fields[m.group(1)]), text)


BOOT_FUNCTIONS_FILE = TEMPLATE_DIR / "boot-functions.sh"


def boot_functions():
    """The boot stages' shared functions for their `#{{boot_functions}}` line: the file
    without its header (its first paragraph, about the file itself), starting on a line of
    its own so that the marker's `#` stays a comment of its own."""
    _header, _, functions = BOOT_FUNCTIONS_FILE.read_text().partition("\n\n")
    return "\n" + functions.rstrip("\n")


def json_template(relative_path, **fields):
    """A JSON document from deploy/aws/, with its {{field}} markers filled.

    Every template may also use the bucket's key prefixes (www.project): {{static_prefix}},
    {{media_prefix}}, {{config_prefix}} and {{deploy_prefix}}, so the policies name the
    prefixes the settings and push_config store under.
    """
    path = TEMPLATE_DIR / relative_path
    facts = {
        "static_prefix": STATIC_PREFIX,
        "media_prefix": MEDIA_PREFIX,
        "config_prefix": CONFIG_PREFIX,
        "deploy_prefix": DEPLOY_PREFIX,
    }
    return json.loads(render(path.read_text(), **{**facts, **fields}))
