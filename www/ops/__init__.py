"""The AWS steps behind the management commands, as plain functions.

Each function takes the boto3 clients it needs as keyword arguments (the commands make
them with www.aws.client), so the same code runs against AWS and against a local
emulator reached through AWS_ENDPOINT_URL. Functions that converge a resource on its
desired state yield one Result per item, so a command can print each as it happens.
"""

import dataclasses
import json
import re

from www.project import BASE_DIR

TEMPLATE_DIR = BASE_DIR / "deploy" / "aws"
TEMPLATE_FIELD = re.compile(r"\{\{([a-z_]+)\}\}")


class OpsError(Exception):
    """A problem the operator can fix, in one line that says what to do."""


@dataclasses.dataclass(frozen=True)
class Result:
    """What happened to one item: created, updated or unchanged (or would be, in a dry run)."""

    verb: str  # "create" | "update" | "unchanged"
    what: str
    dry_run: bool = False
    detail: str = ""

    @property
    def changed(self):
        return self.verb != "unchanged"

    def __str__(self):
        if not self.changed:
            text = f"{self.what} exists, unchanged"
        elif self.dry_run:
            text = f"Would {self.verb} {self.what}"
        else:
            text = f"{self.verb.capitalize()}d {self.what}"
        return f"{text} ({self.detail})" if self.detail else text


def environment(project, name):
    """project.environment(name), failing with the list of known environments."""
    try:
        return project.environment(name)
    except ValueError as exc:
        raise OpsError(str(exc)) from None


def converge(what, current, desired, apply, *, dry_run, detail=""):
    """Apply the desired state unless it is already there; say which it was."""
    if current == desired:
        return Result("unchanged", what)
    if not dry_run:
        apply()
    return Result("create" if current is None else "update", what, dry_run, detail)


def render(text, **fields):
    """Fill {{field}} markers; a marker without a value is an error, never left in."""
    missing = set(TEMPLATE_FIELD.findall(text)) - fields.keys()
    if missing:
        raise OpsError(f"template needs values for: {', '.join(sorted(missing))}")
    return TEMPLATE_FIELD.sub(lambda m: str(fields[m.group(1)]), text)


def json_template(relative_path, **fields):
    """A JSON document from deploy/aws/, with its {{field}} markers filled."""
    path = TEMPLATE_DIR / relative_path
    return json.loads(render(path.read_text(), **fields))


def error_code(exc):
    return exc.response.get("Error", {}).get("Code", "")
