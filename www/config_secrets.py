"""Secrets by reference: a config names its secrets, SSM Parameter Store holds them.

A settings file says `SECRET_KEY = secret("secret-key")` or `password=secret("database-password")`.
While the file runs, secret() returns a reference (a SecretRef), not a value; once it has run,
every reference left in a setting (at any depth of dicts, lists and tuples) is collected, all
the names are read in one GetParameters call (with decryption) from the SecureStrings
/<project>/<env>/<name> (www.ops.landscape owns the path; <env> is the config's own
ENV = PROJECT.environment(...)), and the references are replaced by the values.

The values live only in this process's settings: the config cache (www/config.py) holds the
file's source, with the references. A missing or unreadable parameter stops the start with one
line naming the parameter, never a value. A reference used inside an expression (an f-string,
a concatenation) cannot be resolved and stops the start too: use it as a whole value.
"""

import contextlib
import re

from www.config import ConfigError

# What SSM allows in one level of a parameter name, minus "/": names stay one level deep.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
GET_PARAMETERS_LIMIT = 10  # names per GetParameters call
# The setting that records which settings came from references: {"SECRET_KEY": "secret-key",
# "DATABASES.default.PASSWORD": "database-password"} (names only; the deploy checks read it).
REFERENCES_SETTING = "CONFIG_SECRETS"


class SecretError(ConfigError):
    """One line naming the parameter that could not be used; never a value."""


class InvalidSecretName(ValueError):
    """secret(name) with a name SSM could not hold one level deep."""


class MissingParameter(SecretError):
    """The parameter named (the exception's argument) does not exist."""


class SecretUsedInExpression(TypeError):
    """secret(...) was formatted, concatenated or compared: only a whole value can be replaced."""


def check_name(name):
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise InvalidSecretName(
            f"secret({name!r}): a name is letters, digits, '.', '_' and '-' (e.g. 'secret-key')"
        )
    return name


class SecretRef:
    """Stands for the SSM parameter's value until the config has run."""

    __slots__ = ("name",)

    def __init__(self, name):
        self.name = check_name(name)

    def __repr__(self):
        return f"secret({self.name!r})"

    def _refuse(self, *args):
        raise SecretUsedInExpression(f"secret({self.name!r}) used in an expression")

    __str__ = __format__ = __add__ = __radd__ = __mod__ = __len__ = __iter__ = _refuse
    __eq__ = __lt__ = __gt__ = __contains__ = __getitem__ = _refuse
    __hash__ = object.__hash__

    def __bool__(self):
        return True


def secret(name):
    """What a config file calls: a reference to /<project>/<env>/<name>, resolved after it ran."""
    return SecretRef(name)


@contextlib.contextmanager
def in_scope(namespace):
    """secret() in the config's namespace while it runs; the namespace's own name after."""
    missing = object()
    previous = namespace.get("secret", missing)
    namespace["secret"] = secret
    try:
        yield
    finally:
        if previous is missing:
            namespace.pop("secret", None)
        else:
            namespace["secret"] = previous


def _references(value, path, found):
    """Collect (setting path, SecretRef) pairs from value, walking dicts, lists and tuples."""
    if isinstance(value, SecretRef):
        found.append((path, value))
    elif isinstance(value, dict):
        for key, item in value.items():
            _references(item, f"{path}.{key}", found)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _references(item, f"{path}.{index}", found)


def _replaced(value, values):
    """value with every SecretRef replaced; containers without one are kept as they are."""
    if isinstance(value, SecretRef):
        return values[value.name]
    if isinstance(value, dict):
        new = {key: _replaced(item, values) for key, item in value.items()}
        if any(new[key] is not value[key] for key in value):
            value.clear()
            value.update(new)
        return value
    if isinstance(value, list):
        value[:] = [_replaced(item, values) for item in value]
        return value
    if isinstance(value, tuple):
        return type(value)(_replaced(item, values) for item in value)
    return value


def fetch(parameters, *, ssm=None):
    """{parameter name: value} for every name, or SecretError naming what could not be read."""
    from botocore.exceptions import BotoCoreError, ClientError

    from www import aws

    ssm = ssm or aws.client("ssm", config=aws.SETTINGS_FILE_CLIENT_CONFIG)
    names = sorted(set(parameters))
    values = {}
    for start in range(0, len(names), GET_PARAMETERS_LIMIT):
        batch = names[start : start + GET_PARAMETERS_LIMIT]
        try:
            answer = ssm.get_parameters(Names=batch, WithDecryption=True)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "ClientError")
            raise SecretError(
                f"SSM parameter(s) {', '.join(batch)} unreadable ({code}): the instance role "
                "must allow ssm:GetParameters on them and kms:Decrypt with their key "
                "(./manage.py setup_aws grants both)"
            ) from None
        except BotoCoreError as exc:
            raise SecretError(
                f"SSM parameter(s) {', '.join(batch)} unreadable ({exc.__class__.__name__})"
            ) from None
        if answer.get("InvalidParameters"):
            raise MissingParameter(sorted(answer["InvalidParameters"])[0])
        values.update({p["Name"]: p["Value"] for p in answer["Parameters"]})
    return values


def resolve(uri, namespace, *, ssm=None):
    """Replace the references in namespace's settings by their values; record where they were."""
    found = []
    for name, value in list(namespace.items()):
        if name.isupper():
            _references(value, name, found)
    namespace[REFERENCES_SETTING] = {path: ref.name for path, ref in found}
    if not found:
        return
    from www.ops.landscape import Landscape
    from www.project import Environment, Project

    env, proj = namespace.get("ENV"), namespace.get("PROJECT")
    if not isinstance(env, Environment) or not isinstance(proj, Project):
        raise SecretError(
            f"DJANGO_CONFIG_URI={uri}: secret() needs the config to say whose secrets they "
            'are: set ENV = PROJECT.environment("<env>")'
        )
    landscape = Landscape(proj, env)
    parameters = {ref.name: landscape.secret_parameter(ref.name) for _, ref in found}
    try:
        by_parameter = fetch(parameters.values(), ssm=ssm)
    except MissingParameter as exc:
        (parameter,) = exc.args
        name = parameter.rpartition("/")[2]
        raise SecretError(
            f"DJANGO_CONFIG_URI={uri}: SSM parameter {parameter} does not exist: "
            f"set it with ./manage.py secret --env {env.name} set {name}"
        ) from None
    except SecretError as exc:
        raise SecretError(f"DJANGO_CONFIG_URI={uri}: {exc}") from None
    values = {name: by_parameter[parameter] for name, parameter in parameters.items()}
    for name, value in list(namespace.items()):
        if name.isupper():
            namespace[name] = _replaced(value, values)
