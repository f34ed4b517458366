"""docs/reference.md mentions every management command and every environment variable read.

Variables are found by scanning, not listed by hand: Python reads of os.environ in www/ and
manage.py, and `${VAR:-...}`-style reads in the shell scripts under deploy/ and at the top
level, of names the script does not assign itself. The keys of project.env count too.
"""

import ast
import re
import shlex
from pathlib import Path

from tests.helpers import is_shell_script

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = "docs/reference.md"
SECTIONS = [
    "## Commands",
    "## Environment variables",
    "### Start-scripts",
    "### Settings",
    "## S3 locations",
    "## Templates",
    "## Defaults",
]
# Set by the system or the shell for every process; documenting them would be noise.
WELL_KNOWN = {"HOME", "PATH", "PWD", "TMPDIR", "USER", "XDG_CACHE_HOME"}

ENVIRON_CALLS = {"get", "setdefault", "pop"}  # os.environ.<call>("NAME", ...)
# ${NAME:-x} ${NAME-x} ${NAME:?x} ${NAME?x} ${NAME:=x} ${NAME:+x}
SHELL_READ = re.compile(r"\$\{([A-Z][A-Z0-9_]*):?[-?=+]")


def is_environ(node):
    """os.environ or a bare environ (from os import environ)."""
    return (isinstance(node, ast.Attribute) and node.attr == "environ") or (
        isinstance(node, ast.Name) and node.id == "environ"
    )


def constant_string(node):
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def python_reads(source):
    """Names read from the environment: environ.get/setdefault/pop, environ[...], getenv."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and node.args:
            func = node.func
            environ_call = (
                isinstance(func, ast.Attribute)
                and func.attr in ENVIRON_CALLS
                and is_environ(func.value)
            )
            getenv = (isinstance(func, ast.Attribute) and func.attr == "getenv") or (
                isinstance(func, ast.Name) and func.id == "getenv"
            )
            if environ_call or getenv:
                names.add(constant_string(node.args[0]))
        elif (
            isinstance(node, ast.Subscript)
            and isinstance(node.ctx, ast.Load)
            and is_environ(node.value)
        ):
            names.add(constant_string(node.slice))
    return names - {None}


def assigns(line, name):
    """Whether line assigns name in the script (not just for one command: `NAME=x cmd`)."""
    if re.search(rf"\bfor\s+{name}\s+in\b|\bread\b.*\s{name}\b", line):
        return True
    if re.match(rf"\s*(?:export|local|readonly|declare)\s(?:.*\s)?{name}\+?=", line):
        return True
    try:
        words = shlex.split(line, comments=True)
    except ValueError:  # quotes spanning lines: a multi-line value
        return re.match(rf"\s*{name}\+?=", line) is not None
    assignment = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\+?=")
    return (
        bool(words)
        and all(assignment.match(word) for word in words)
        and any(re.match(rf"{name}\+?=", word) for word in words)
    )


def shell_reads(source):
    """Names read with a ${NAME<op>...} expansion and never assigned in the script."""
    lines = [line for line in source.splitlines() if not line.lstrip().startswith("#")]
    read = set(SHELL_READ.findall("\n".join(lines)))
    return {name for name in read if not any(assigns(line, name) for line in lines)}


def python_files(root):
    return [root / "manage.py", *sorted((root / "www").rglob("*.py"))]


def shell_files(root):
    deploy = [p for p in sorted((root / "deploy").rglob("*")) if p.is_file() and is_shell_script(p)]
    return [*sorted(root.glob("*.sh")), *deploy]


def commands(root):
    """{command: where} for every module in www/management/commands/."""
    return {
        path.stem: path.relative_to(root)
        for path in sorted((root / "www/management/commands").glob("*.py"))
        if not path.stem.startswith("_")
    }


def environment_variables(root):
    """{NAME: [where, ...]} for every variable the code, the scripts or project.env define."""
    found = {}
    sources = [(path, python_reads) for path in python_files(root) if path.exists()]
    sources += [(path, shell_reads) for path in shell_files(root)]
    for path, reads in sources:
        for name in reads(path.read_text()) - WELL_KNOWN:
            found.setdefault(name, []).append(str(path.relative_to(root)))
    project_env = root / "project.env"
    if project_env.exists():
        for name in re.findall(r"(?m)^([A-Z][A-Z0-9_]*)=", project_env.read_text()):
            found.setdefault(name, []).append("project.env")
    return found


def mentioned(name, text):
    return re.search(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", text) is not None


def undocumented(root):
    """Lines naming each command and variable the reference does not mention, and where."""
    text = (root / REFERENCE).read_text()
    missing = [
        f"command {name} ({where})"
        for name, where in commands(root).items()
        if not mentioned(name, text)
    ]
    missing += [
        f"variable {name} ({', '.join(where)})"
        for name, where in sorted(environment_variables(root).items())
        if not mentioned(name, text)
    ]
    return missing


def test_reference_mentions_every_command_and_variable():
    missing = undocumented(ROOT)
    assert not missing, f"{REFERENCE} does not mention:\n  " + "\n  ".join(missing)


def test_reference_has_its_sections():
    text = (ROOT / REFERENCE).read_text()
    headings = [line.strip() for line in text.splitlines() if line.startswith("#")]
    assert [h for h in headings if h in SECTIONS] == SECTIONS


def write(root, name, text):
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_scanner_catches_undocumented_commands_and_variables(tmp_path):
    write(tmp_path, "www/management/commands/__init__.py", "")
    write(tmp_path, "www/management/commands/documented_cmd.py", "")
    write(tmp_path, "www/management/commands/new_cmd.py", "")
    write(
        tmp_path,
        "www/settings.py",
        "import os\nfrom os import environ, getenv\n"
        "A = os.environ.get('PY_GET')\nB = os.environ['PY_ITEM']\nC = os.getenv('PY_GETENV', 'x')\n"
        "D = environ.get('PY_BARE')\nE = getenv('PY_BARE_GETENV')\n"
        "os.environ['PY_ASSIGNED_ONLY'] = '1'\nF = os.environ.get(f'{A}_DYNAMIC')\n"
        "G = os.environ.get('DOCUMENTED_VAR')\n",
    )
    write(tmp_path, "manage.py", "import os\nos.environ.setdefault('PY_SETDEFAULT', 'x')\n")
    write(
        tmp_path,
        "deploy/release/start",
        "#!/usr/bin/env bash\n"
        ': "${START_REQUIRED:?set START_REQUIRED}"\n'
        'LOCAL_VAR=1\necho "${LOCAL_VAR:-}" "${HOME:-/root}" "${START_DEFAULT-x}"\n'
        "# ${COMMENTED_OUT:-x}\n"
        'helper() {\n\tlocal FUNC_LOCAL="$1"\n\techo "${FUNC_LOCAL:-}"\n}\n'
        'for LOOP_VAR in a b; do echo "${LOOP_VAR:+x}"; done\n'
        'PASSED_ON="${PASSED_ON:-x}" ./other-script\n'
        'X=1 Y=2\necho "${X:-}${Y:-}"\n',
    )
    write(tmp_path, "deploy/aws/user-data.sh", 'echo "${USER_DATA_VAR:=x}"\n')
    write(tmp_path, "deploy/notes.txt", "${NOT_A_SCRIPT:-x}\n")
    write(tmp_path, "build.sh", 'if [[ "${BUILD_FLAG:-0}" == 1 ]]; then :; fi\n')
    write(tmp_path, "project.env", "# comment\nPROJECT_NAME=x\nENV_KEY=y\n")
    write(tmp_path, REFERENCE, "`documented_cmd`, DOCUMENTED_VAR, PROJECT_NAME; not PY_GET_X\n")

    assert undocumented(tmp_path) == [
        "command new_cmd (www/management/commands/new_cmd.py)",
        "variable BUILD_FLAG (build.sh)",
        "variable ENV_KEY (project.env)",
        "variable PASSED_ON (deploy/release/start)",
        "variable PY_BARE (www/settings.py)",
        "variable PY_BARE_GETENV (www/settings.py)",
        "variable PY_GET (www/settings.py)",
        "variable PY_GETENV (www/settings.py)",
        "variable PY_ITEM (www/settings.py)",
        "variable PY_SETDEFAULT (manage.py)",
        "variable START_DEFAULT (deploy/release/start)",
        "variable START_REQUIRED (deploy/release/start)",
        "variable USER_DATA_VAR (deploy/aws/user-data.sh)",
    ]
