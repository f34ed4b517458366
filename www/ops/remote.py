"""Reaching instances without SSH: Systems Manager Run Command and Session Manager.

`./manage.py remote` sends deploy/aws/remote.sh (the serving container's name rendered in)
with a manage.py command line as one AWS-RunShellScript command to the chosen instances,
waits for each, and reads back what each printed and its exit status. `migrate` runs as
`migrate_with_lock` (the advisory lock start-up takes) and on one instance only.
`./manage.py session` execs the AWS CLI's `ssm start-session`, which needs Session Manager's
plugin. Both need the instance role's AmazonSSMManagedInstanceCore (setup_aws attaches it)
and an AMI with the agent (the default Ubuntu has it).
"""

import contextlib
import dataclasses
import re
import shlex
import shutil

from botocore.exceptions import ClientError, WaiterError

from www.ops.ec2 import environment_instances
from www.ops.errors import OpsError, error_code
from www.ops.templates import TEMPLATE_DIR, render

REMOTE_SCRIPT = TEMPLATE_DIR / "remote.sh"
DOCUMENT = "AWS-RunShellScript"
# Commands that change the schema: one instance runs them, under start-up's advisory lock.
SCHEMA_COMMANDS = {"migrate": "migrate_with_lock"}
# A variable with one of these in its name is a secret: Run Command keeps its parameters in
# the command history, readable by whoever may list commands.
SECRET_WORDS = ("PASSWORD", "SECRET", "TOKEN", "KEY")
VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
RUNNING_STATUSES = ("Pending", "InProgress", "Delayed")
PLUGIN = "session-manager-plugin"
PLUGIN_HELP = (
    "https://docs.aws.amazon.com/systems-manager/latest/userguide/"
    "session-manager-working-with-install-plugin.html"
)


@dataclasses.dataclass(frozen=True)
class Invocation:
    """What one instance made of a Run Command: its status, exit status and output."""

    command_id: str
    instance_id: str
    status: str
    exit_status: int
    stdout: str
    stderr: str

    @property
    def succeeded(self):
        return self.status == "Success" and self.exit_status == 0


def running_instances(*, ec2, landscape):
    return environment_instances(ec2=ec2, landscape=landscape, states=["running"])


def choose_instances(*, ec2, landscape, instance_id=None, everyone=False):
    """The ids to reach: --instance ID, --all, or the environment's one running instance."""
    env = landscape.env.name
    running = [i["InstanceId"] for i in running_instances(ec2=ec2, landscape=landscape)]
    if not running:
        raise OpsError(
            f"no running instance of {landscape.prefix}: ./manage.py ec2_status --env {env}"
        )
    if instance_id:
        if instance_id not in running:
            raise OpsError(
                f"{instance_id} is not a running instance of {landscape.prefix} "
                f"(running: {', '.join(running)})"
            )
        return [instance_id]
    if everyone or len(running) == 1:
        return running
    raise OpsError(
        f"{len(running)} instances of {landscape.prefix} run ({', '.join(running)}): "
        "pass --instance ID or --all"
    )


def manage_arguments(arguments, *, instance_count):
    """The manage.py command line to run: migrate becomes migrate_with_lock, on one instance."""
    if not arguments:
        raise OpsError("no manage.py command given: e.g. ./manage.py remote --env stage -- check")
    name, *rest = arguments
    if name in SCHEMA_COMMANDS:
        if instance_count > 1:
            raise OpsError(
                f"{name} changes the schema: it runs on one instance only (--instance ID, "
                "not --all); the others see the new schema at once"
            )
        return [SCHEMA_COMMANDS[name], *rest]
    return list(arguments)


def check_variables(variables):
    for variable in variables:
        if not VARIABLE.match(variable):
            raise OpsError(f"-e {variable}: write NAME=VALUE")
        name = variable.partition("=")[0]
        if any(word in name.upper() for word in SECRET_WORDS):
            raise OpsError(
                f"-e {name}: Run Command keeps its parameters in its history, so no secret "
                "goes that way; set it in ./manage.py session instead"
            )


def shell_command(*, landscape, arguments, variables=()):
    """The one shell line Run Command runs: the rendered remote.sh, given the arguments."""
    script = render(REMOTE_SCRIPT.read_text(), container=landscape.project.name)
    words = [f for v in variables for f in ("-e", v)] + ["--", *arguments]
    return f"bash -c {shlex.quote(script)} remote.sh {shlex.join(words)}"


def send(*, ssm, landscape, instance_ids, command_line, timeout, comment):
    """Send the Run Command request; its command id."""
    try:
        reply = ssm.send_command(
            InstanceIds=instance_ids,
            DocumentName=DOCUMENT,
            Comment=comment[:100],
            Parameters={"commands": [command_line], "executionTimeout": [str(timeout)]},
            TimeoutSeconds=max(30, min(timeout, 2592000)),
        )
    except ClientError as exc:
        if error_code(exc) == "InvalidInstanceId":
            raise OpsError(
                f"{', '.join(instance_ids)}: not managed by Systems Manager (yet): the agent "
                "registers a minute after boot; its role needs AmazonSSMManagedInstanceCore "
                f"(./manage.py setup_aws --env {landscape.env.name}) and its AMI the agent "
                "(the default Ubuntu has it)"
            ) from None
        raise
    return reply["Command"]["CommandId"]


def wait(*, ssm, command_id, instance_id, delay, attempts):
    """Wait for one instance's invocation to end; what it reported (status, output)."""
    # failed, cancelled or timed out: the invocation itself says which
    with contextlib.suppress(WaiterError):
        ssm.get_waiter("command_executed").wait(
            CommandId=command_id,
            InstanceId=instance_id,
            WaiterConfig={"Delay": delay, "MaxAttempts": attempts},
        )
    reply = ssm.get_command_invocation(CommandId=command_id, InstanceId=instance_id)
    return Invocation(
        command_id=command_id,
        instance_id=instance_id,
        status=reply["Status"],
        exit_status=reply.get("ResponseCode", -1),
        stdout=reply.get("StandardOutputContent", ""),
        stderr=reply.get("StandardErrorContent", ""),
    )


def run(*, ssm, landscape, instance_ids, command_line, comment, timeout=600, delay=3):
    """Run command_line on instance_ids; yield each instance's Invocation as it ends."""
    command_id = send(
        ssm=ssm,
        landscape=landscape,
        instance_ids=instance_ids,
        command_line=command_line,
        timeout=timeout,
        comment=comment,
    )
    attempts = max(1, timeout // delay + 10)
    for instance_id in instance_ids:
        yield wait(
            ssm=ssm, command_id=command_id, instance_id=instance_id, delay=delay, attempts=attempts
        )


# --- Session Manager ----------------------------------------------------------------------


def session_command(*, instance_id, region):
    """The AWS CLI command that opens a shell on the instance."""
    return ["aws", "ssm", "start-session", "--target", instance_id, "--region", region]


def check_session_tools(path=None):
    """The AWS CLI and Session Manager's plugin must be on PATH; one line if not."""
    if shutil.which("aws", path=path) is None:
        raise OpsError("no AWS CLI (aws) on PATH: install it, then Session Manager's plugin")
    if shutil.which(PLUGIN, path=path) is None:
        raise OpsError(f"no {PLUGIN} on PATH: the AWS CLI needs it for sessions; see {PLUGIN_HELP}")
