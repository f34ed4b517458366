"""docs/deployment.md's walk-through, run as written: every ```sh block of the page, in order.

The walk cannot drift from the code: each ./manage.py line runs through Django's command
parser and the real command, against moto's server, Debian's docker-registry on loopback, the
session's Postgres and a container playing the instance
(tests/instance_rig.py, the boot tests' rig).
A line of a kind this test does not know fails it, so a new step gets a player here.

The stand-ins, each the documented one for what AWS or the developer's machine does:
  - `. .venv/bin/activate`: the tests already run in the virtualenv;
  - `git tag release/1.0` and `./build_docker_image.sh release 1.0`: the session's release
    image, built by that script (tests/docker_rig.py; tagging and the clean-tree refusal are
    tested in tests/test_docker_release.py), tagged as the walk's release;
  - `cp ... stage.local.py` and "fill in every <<...>>": the stage template filled in for this
    machine's Postgres (tests/docker_rig.py's stage_config), in a temporary directory;
  - publish_image gets `--registry` (the local registry: moto's ECR has no data plane);
    launch_ec2 gets `--ami` (moto serves no Canonical parameter; its Ubuntu image);
  - after launch_ec2 the rig's container boots as the instance (cloud-init's part);
  - `remote`: moto records the Run Command and runs nothing, so the test plays the agent: it
    runs the recorded shell line in the instance container, against the release container;
  - `aws ...`: Debian's AWS CLI in the instance container, pointed at moto;
  - `curl http://203.0.113.10/...`: the rig's serving port.
Placeholders of the page (tag 1.0, i-0123456789abcdef0, 203.0.113.10) become the real ones.
"""

import io
import os
import re
import shlex
from pathlib import Path

import boto3
import pytest
import requests
from django.core.management import call_command

from tests.docker_rig import SESSION_TAG
from tests.helpers import MOTO_UBUNTU_AMI
from tests.instance_rig import REGISTRY_PATH, recorded_image
from www import project

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parent.parent
WALK = ROOT / "docs" / "deployment.md"
DOC_TAG = "1.0"
DOC_INSTANCE = "i-0123456789abcdef0"
DOC_ADDRESS = "203.0.113.10"
DOC_CONFIG = "deploy/aws/config/stage.local.py"
WALK_TAG = f"{SESSION_TAG}-walk"


def walk_lines(text):
    """The command lines of the page's ```sh blocks, in order (continuations joined)."""
    lines = []
    for block in re.findall(r"^```sh\n(.*?)^```$", text, re.MULTILINE | re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                lines.append(line.strip())
    return lines


def test_the_walk_has_its_steps_in_order():
    commands = [
        words[1] if words[0] == "./manage.py" else words[0]
        for words in (shlex.split(line, comments=True) for line in walk_lines(WALK.read_text()))
    ]
    order = ["setup_aws", "./build_docker_image.sh", "publish_image", "push_config"]
    order += ["launch_ec2", "ec2_status", "remote"]
    positions = [commands.index(name) for name in order]
    assert positions == sorted(positions), commands


class Walker:
    """Plays each line of the walk; keeps what the commands printed."""

    def __init__(self, rig):
        self.rig = rig
        self.config = None
        self.region = project.aws_region()
        self.instance_id = None
        self.address = None
        self.outputs = []  # (line, output)

    def substitute(self, words):
        real = {DOC_TAG: WALK_TAG, DOC_INSTANCE: self.instance_id, DOC_CONFIG: self.config}
        return [real.get(w) or w for w in words]

    def play(self, line):
        words = shlex.split(line, comments=True)
        player = {
            ".": self.activate,
            "./manage.py": self.manage,
            "git": self.git,
            "./build_docker_image.sh": self.build,
            "cp": self.copy_template,
            "aws": self.aws,
            "curl": self.curl,
        }.get(words[0])
        assert player, f"the walk has a line this test cannot play (add a player): {line}"
        self.outputs.append((line, player(words)))

    def activate(self, words):
        assert words == [".", ".venv/bin/activate"]
        assert (ROOT / ".venv" / "bin" / "activate").exists()
        return ""

    def git(self, words):
        assert words == ["git", "tag", f"release/{DOC_TAG}"]
        return ""

    def build(self, words):
        assert words[1:] == ["release", DOC_TAG]
        image = self.rig.docker.images.get(self.rig.release_image)
        repository = project.load().image("release")
        self.rig.images.append(f"{repository}:{WALK_TAG}")
        image.tag(repository, WALK_TAG)
        return ""

    def copy_template(self, words):
        assert words[1:] == ["deploy/aws/config/stage.py", DOC_CONFIG]
        assert "<<DB_PORT>>" in (ROOT / words[1]).read_text()
        self.rig.database()
        self.config = str(self.rig.config_file())  # filled in, outside the checkout
        return ""

    def manage(self, words):
        args = self.substitute(words[1:])
        name = args[0]
        if name == "publish_image":
            target = f"{self.rig.registry.address}/{REGISTRY_PATH}"
            args += ["--registry", target]
            self.rig.images.append(f"{target}/{project.load().image('release', WALK_TAG)}")
        elif name == "launch_ec2":
            args += ["--ami", MOTO_UBUNTU_AMI, "--wait-delay", "1"]
        out, err = io.StringIO(), io.StringIO()
        call_command(*args, stdout=out, stderr=err)
        output = out.getvalue() + err.getvalue()
        if name == "publish_image":
            self.rig.images.append(recorded_image())
        if name == "launch_ec2":
            output += self.boot_instance()
        if name == "remote":
            output += self.play_run_command()
        return output

    def boot_instance(self):
        """cloud-init's part: the rig's container boots as the instance moto launched."""
        metadata = self.rig.launch_instance()
        self.instance_id = metadata.paths["/latest/meta-data/instance-id"]
        status, console = self.rig.boot()
        assert status == 0, console
        return console

    def play_run_command(self):
        """The SSM agent's part: run the Run Command's one shell line on the instance."""
        ssm = boto3.client("ssm")
        commands = ssm.list_commands()["Commands"]
        command = max(commands, key=lambda c: c["RequestedDateTime"])
        assert command["DocumentName"] == "AWS-RunShellScript"
        (line,) = command["Parameters"]["commands"]
        result = self.rig.instance.exec_run(["sh", "-c", line])
        output = result.output.decode(errors="replace")
        assert result.exit_code == 0, output
        return output

    def aws(self, words):
        assert words[words.index("--region") + 1] == self.region, words
        cli = ["aws", "--endpoint-url", self.rig.moto.url, *self.substitute(words[1:])]
        # the developer's credentials: the test's keys for moto
        keys = {k: os.environ[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
        result = self.rig.instance.exec_run(cli, environment=keys)
        output = result.output.decode(errors="replace")
        assert result.exit_code == 0, f"{words}: {output}"
        return output

    def curl(self, words):
        url = words[-1]
        assert url.startswith(f"http://{DOC_ADDRESS}/"), url
        answer = requests.get(self.rig.url(url.removeprefix(f"http://{DOC_ADDRESS}")), timeout=10)
        assert answer.status_code == 200, answer.text
        return answer.text


def test_the_walk_through_runs_as_written(rig):
    walker = Walker(rig)
    for line in walk_lines(WALK.read_text()):
        walker.play(line)
    outputs = dict(walker.outputs)

    setup = outputs["./manage.py setup_aws --env stage"]
    assert "managed policy AmazonSSMManagedInstanceCore" in setup
    status = outputs["./manage.py ec2_status --env stage"]
    row = next(line for line in status.splitlines() if line.startswith(walker.instance_id))
    assert row.split()[1] == "running"
    assert '"status": "ok"' in outputs[f"curl -fsS http://{DOC_ADDRESS}/health"]
    migrate = outputs["./manage.py remote --env stage -- migrate"]
    assert f"== {walker.instance_id}: Success, exit status 0" in migrate
    assert "No migrations to apply." in migrate  # migrate_with_lock, in the release container
