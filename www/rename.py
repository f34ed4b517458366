"""Rename a fork: the project name in project.env and the values derived from it.

The name is written down once, in project.env; everything else (image names, the
/containers/<name>/ host directory, settings' PROJECT) reads it from there. A few values
still hold it as text: each environment's bucket (`<name>` for prod, `<name>-<env>`
otherwise), the labels of <ENV>_DOMAINS that are the name (the placeholder
webapp.example.com) and pyproject.toml's distribution name. They follow the new name only while
they still follow the old one, so a bucket a fork chose by hand is left alone.
"""

import dataclasses
import re
import shlex
from pathlib import Path

# The naming rule belongs to www/project.py, which also applies it whenever project.env loads.
from www.project import InvalidName, bucket_variable, check_bucket, check_name, parse_env_file

__all__ = ["InvalidName", "check_name", "rename"]


@dataclasses.dataclass(frozen=True)
class Change:
    path: str
    key: str
    old: str
    new: str

    def __str__(self):
        return f"{self.path}: {self.key} {self.old} -> {self.new}"


def follow(value, old, new):
    """`old` -> `new` and `old-suffix` -> `new-suffix`; anything else is kept."""
    if value == old:
        return new
    if value.startswith(old + "-"):
        return new + value[len(old) :]
    return value


def follow_domain(domain, old, new):
    """A domain's labels that are the old name become the new one (webapp.example.com ->
    shop.example.com); a domain a fork chose by hand keeps its other labels."""
    return ".".join(new if label == old else label for label in domain.split("."))


# KEY=value, where value is one shell word (bare or quoted); a trailing comment is kept.
ASSIGNMENT = re.compile(r"(?P<key>[A-Za-z_][A-Za-z0-9_]*)=(?P<value>\"[^\"]*\"|'[^']*'|[^\s#]*)")


def rewrite_env(text, new_values):
    lines = []
    for line in text.splitlines(keepends=True):
        match = ASSIGNMENT.match(line)
        if match and match["key"] in new_values:
            line = f"{match['key']}={new_values[match['key']]}{line[match.end() :]}"
        lines.append(line)
    return "".join(lines)


def rewrite_pyproject_name(text, old, new):
    """Rewrite `name = "old"` in the [project] table only; return (text, changed)."""
    table = None
    lines = text.splitlines(keepends=True)
    for index, line in enumerate(lines):
        header = re.match(r"\s*\[([^\]]+)\]\s*$", line)
        if header:
            table = header[1].strip()
            continue
        name = re.match(r'(\s*name\s*=\s*")([^"]*)(".*)', line, re.DOTALL)
        if table == "project" and name:
            if name[2] != old or old == new:
                return text, False
            lines[index] = f"{name[1]}{new}{name[3]}"
            return "".join(lines), True
    return text, False


def rename(root, new_name, *, dry_run=False):
    """Rename the project in root; return (old name, changes made or, if dry_run, planned).

    project.env is written last: it is where the old name is read from, so if writing
    stops half-way, running again with the same name finishes the job.
    """
    check_name(new_name)
    root = Path(root)
    env_path, pyproject_path = root / "project.env", root / "pyproject.toml"
    env_text = env_path.read_text()
    values = parse_env_file(env_text)
    old_name = values["PROJECT_NAME"]

    changes, new_values = [], {}
    keys = ["PROJECT_NAME"] + [bucket_variable(env) for env in values["ENVIRONMENTS"].split()]
    for key in keys:
        new_value = new_name if key == "PROJECT_NAME" else follow(values[key], old_name, new_name)
        if new_value != values[key]:
            if key != "PROJECT_NAME":
                check_bucket(new_name, key, new_value)
            new_values[key] = new_value
            changes.append(Change("project.env", key, values[key], new_value))
    for env in values["ENVIRONMENTS"].split():
        key = f"{env.upper()}_DOMAINS"
        domains = values.get(key, "")
        new_domains = " ".join(follow_domain(d, old_name, new_name) for d in domains.split())
        if new_domains != domains:
            new_values[key] = shlex.quote(new_domains)
            changes.append(Change("project.env", key, domains, new_domains))

    pyproject_text, renamed = rewrite_pyproject_name(pyproject_path.read_text(), old_name, new_name)
    if renamed:
        changes.append(Change("pyproject.toml", "[project] name", old_name, new_name))

    if not dry_run:
        if renamed:
            pyproject_path.write_text(pyproject_text)
        if new_values:
            env_path.write_text(rewrite_env(env_text, new_values))
    return old_name, changes
