"""The prod fleet's names and the commands the fleet tests run against moto's server; and
the fleet of booted instances behind the load balancer's stand-in that tests/test_fleet_roll.py
and bench.roll roll releases across (start_fleet).

The fixtures built on them (zone, prod_fleet) are conftest's.
"""

import io
import json
import re
import threading
import time
import uuid

import boto3
from django.core.management import call_command

from tests.helpers import MOTO_PUBLIC_AMI, PROJECT
from tests.servers import wait_until
from tests.timer_cgroup import TimerCgroup
from www.ops import loadbalancer, scaling
from www.ops.ec2 import USER_DATA_FILE
from www.ops.landscape import Landscape

PROD = Landscape.of(PROJECT, "prod")
DOMAINS = PROD.env.domains
ZONE = DOMAINS[0].split(".", 1)[1] + "."  # webapp.example.com -> example.com.
TIMER_EVERY = 3  # seconds between two runs of an instance's redeploy timer, here
ROLL_TIMEOUT = 600  # deploy's wait for the whole fleet, bounded


def setup_aws(*args, env="prod"):
    out = io.StringIO()
    call_command("setup_aws", "--env", env, "--ami-parameter", MOTO_PUBLIC_AMI, *args, stdout=out)
    return out.getvalue()


def setup_and_wait():
    return setup_aws("--wait", "--wait-delay", "1")


def command(name, *args, env="prod"):
    out = io.StringIO()
    call_command(name, "--env", env, *args, stdout=out)
    return out.getvalue()


def create_zone():
    zone = boto3.client("route53").create_hosted_zone(Name=ZONE, CallerReference="test")
    return zone["HostedZone"]["Id"]


def find_load_balancer():
    return loadbalancer.find_load_balancer(boto3.client("elbv2"), PROD)


def find_group():
    return scaling.find_group(boto3.client("autoscaling"), PROD)


def start_fleet(
    stack,
    *,
    docker_client,
    postgres,
    moto,
    registry,
    release_image,
    instance_image,
    tmp_path,
    count,
):
    """prod set up in moto (its zone already made: create_zone) with `count` instances booted
    on release_image, and the load balancer's stand-in in front of them; everything removed
    when contextlib.ExitStack `stack` closes. Returns (rigs, load balancer)."""
    from tests.alb_standin import LoadBalancerStandIn
    from tests.instance_rig import Rig

    setup_and_wait()
    rigs = []
    for index in range(count):
        rig = Rig(docker_client, postgres, moto, registry, tmp_path / f"instance-{index}", PROD)
        rig.tmp_path.mkdir()
        rig.release_image, rig.instance_image = release_image, instance_image
        rigs.append(rig)
    for rig in rigs:  # the first one's images last (closed in reverse): all run them
        stack.callback(rig.teardown)
    first = rigs[0]
    first.publish(release_image.partition(":")[2])
    first.database()
    config = first.config_file(ALLOWED_HOSTS=[DOMAINS[0]])
    command("push_config", str(config))
    command("launch_ec2", "--count", str(count))
    group = find_group()
    ids = sorted(i["InstanceId"] for i in group["Instances"])
    assert len(ids) == count, ids
    profile = launch_template_profile(group)
    for rig, instance_id in zip(rigs, ids, strict=True):
        # nginx believes X-Forwarded-* from the load balancer's address: here, loopback
        rig.launch_instance(instance_id, profile=profile, FORWARDED_ALLOW_IPS="127.0.0.1")
    boot_together(rigs)
    balancer = LoadBalancerStandIn(
        target_group_arn(), {rig.instance_id: rig.host_port for rig in rigs}, host=DOMAINS[0]
    ).start()
    stack.callback(balancer.stop)
    assert balancer.wait_serving(count), balancer.describe()
    return rigs, balancer


# What stage 2 logs as it starts a new container beside the serving one (swap_container).
SWAP_LINE = re.compile(r"trying \S+ as \S+ in slot")


def timer_environment():
    """The environment bootstrap-redeploy.service gives the timer's runs: its Environment=
    lines in user-data.sh (BOOTSTRAP_LOG=/dev/null: a quiet run ships no boot log)."""
    text = USER_DATA_FILE.read_text()
    return dict(re.findall(r"^\s*Environment=(\w+)=(\S*)$", text, re.MULTILINE))


def production_timer_seconds():
    """Seconds between two runs of the redeploy timer on an instance: user-data.sh's default
    REDEPLOY_EVERY (a systemd time span such as 1min or 30s)."""
    (span,) = re.findall(r"\$\{REDEPLOY_EVERY:=(\w+)\}", USER_DATA_FILE.read_text())
    number, unit = re.fullmatch(r"(\d+)(s|sec|min)?", span).groups()
    return int(number) * (60 if unit == "min" else 1)


# The redeploy timer inside an instance container: one long-lived loop, as systemd runs it on
# EC2 (OnUnitInactiveSec: the next run `every` seconds after the last one ended), rather than a
# `docker exec` per run, whose runc start-up slows the instances' requests by itself
# (docs/benchmarks.md, eighth session). A line on the FIFO ends the loop after the run in hand.
TIMER_LOOP = r"""
fifo=$1 every=$2 offset=$3 lasting=$4
shift 4  # the boot's command
mkfifo -m 600 "$fifo" && exec 3<>"$fifo" || exit
trap 'rm -f "$fifo"' EXIT
echo "@@timer ready"
# the rig moves this loop into the timer's CPU cgroup, then says go
read -r -t 60 -u 3 go && [[ $go == go ]] || exit
read -r -t "$offset" -u 3 && exit 0
while ((SECONDS < lasting)); do
    echo "@@timer run"
    # through cat: the run's output is all read (stage 1's tee may outlive it) before its end
    "$@" 2>&1 3<&- | cat
    echo "@@timer ended ${PIPESTATUS[0]}"
    read -r -t "$every" -u 3 && exit 0
done
"""


class Timer:
    """An instance's redeploy timer: its boot rerun `every` seconds after the last run ended,
    the first run `offset` seconds after start(), until stop() or for `lasting` seconds at
    most. The loop runs inside the instance container (TIMER_LOOP), in a CPU cgroup at the
    timer unit's weight (tests/timer_cgroup.py); this side reads its output and stamps each
    run with time.monotonic() as the loop's marker lines arrive."""

    def __init__(self, rig, every=TIMER_EVERY, *, offset=0, lasting=ROLL_TIMEOUT, **settings):
        from tests.instance_rig import BOOT_COMMAND

        self.rig = rig
        self.settings = {**timer_environment(), **settings}
        self.arguments = [f"{every:g}", f"{offset:g}", f"{lasting:.0f}", *BOOT_COMMAND]
        name = f"timer-{uuid.uuid4().hex[:8]}"
        self.fifo = f"/run/{name}"
        self.cgroup = TimerCgroup(f"rig-{name}")
        self.runs = []  # (exit status, output) of each run
        self.swaps = []  # (start, end) in time.monotonic() of each run that swapped containers
        self._ready = threading.Event()
        self._waiting = False  # for "go": the loop is up, its first run not started
        self._thread = threading.Thread(target=self._read, daemon=True)

    def start(self):
        api, instance = self.rig.instance.client.api, self.rig.instance
        loop = api.exec_create(
            instance.id,
            ["bash", "-c", TIMER_LOOP, "timer", self.fifo, *self.arguments],
            environment=self.settings,
        )["Id"]
        self._stream = api.exec_start(loop, stream=True)
        self._thread.start()
        self._ready.wait(60)
        if not self._waiting:
            raise RuntimeError(f"the timer loop in {instance.name} did not start")
        try:
            # dockerd records the pid a moment after the process starts, which may already
            # have said it is ready
            wait_until(lambda: api.exec_inspect(loop)["Pid"], timeout=10, what="the loop's pid")
            self.cgroup.enter(api.exec_inspect(loop)["Pid"])
            self._say("go")
        except BaseException:
            self.stop()
            raise
        return self

    def _say(self, line):
        """A line to the loop, through its FIFO: opened read-write, so that nothing waits for
        a reader should the loop be gone."""
        self.rig.instance.exec_run(["sh", "-c", f'[ -p "$0" ] && echo {line} 1<>"$0"', self.fifo])

    def _read(self):
        pending, output, started = b"", [], None
        for chunk in self._stream:
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for raw in lines:
                line = raw.decode(errors="replace")
                if line == "@@timer ready":
                    self._waiting = True
                    self._ready.set()
                elif line == "@@timer run":
                    output, started = [], time.monotonic()
                elif line.startswith("@@timer ended "):
                    text = "".join(output)
                    self.runs.append((int(line.split()[-1]), text))
                    if SWAP_LINE.search(text):
                        self.swaps.append((started, time.monotonic()))
                else:
                    output.append(line + "\n")
        self._ready.set()  # a loop that could not start ends the wait too

    def stop(self):
        """End the loop once the run in hand is over, and wait for it."""
        if self._thread.ident is None:
            return  # never started
        self._say("stop")
        self._thread.join(timeout=ROLL_TIMEOUT)
        if self._thread.is_alive():
            raise RuntimeError(f"the timer loop in {self.rig.instance.name} did not stop")
        self.cgroup.remove()

    def failed_runs(self):
        return [output for status, output in self.runs if status != 0]


def lease_versions(release):
    """The leases taken for release, oldest first: each version's body, from the bucket's
    history of the lease object (versioned)."""
    s3 = boto3.client("s3")
    found = s3.list_object_versions(Bucket=PROD.bucket, Prefix=PROD.env.lease_key)
    leases = []
    for version in found.get("Versions", []):
        body = s3.get_object(
            Bucket=PROD.bucket, Key=PROD.env.lease_key, VersionId=version["VersionId"]
        )["Body"].read()
        lease = json.loads(body)
        if lease["release"] == release:
            leases.append(lease)
    return sorted(leases, key=lambda lease: lease["taken_at"])


def current_lease():
    try:
        body = boto3.client("s3").get_object(Bucket=PROD.bucket, Key=PROD.env.lease_key)["Body"]
    except boto3.client("s3").exceptions.NoSuchKey:
        return None
    return json.loads(body.read())


def boot_together(rigs):
    """Each instance's first boot, all at once as the Auto Scaling group starts them."""
    results = {}
    threads = [
        threading.Thread(target=lambda rig=rig: results.update({rig: rig.boot()})) for rig in rigs
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    for rig in rigs:
        status, output = results[rig]
        assert status == 0, output


def launch_template_profile(group):
    """The instance profile of the group's launch template: EC2 gives it to every instance
    the group launches, where moto records none."""
    template = group["LaunchTemplate"]
    named = {k: v for k, v in template.items() if k in ("LaunchTemplateId", "LaunchTemplateName")}
    (version,) = boto3.client("ec2").describe_launch_template_versions(
        **named, Versions=[template["Version"]]
    )["LaunchTemplateVersions"]
    profile = version["LaunchTemplateData"]["IamInstanceProfile"]
    return profile.get("Name") or profile["Arn"].split("/")[-1]


def target_group_arn():
    (group,) = boto3.client("elbv2").describe_target_groups(Names=[PROD.target_group])[
        "TargetGroups"
    ]
    return group["TargetGroupArn"]


def steady_load(site, **options):
    """Browsers' requests to the site at base URL `site` (the load balancer's, naming prod's
    domain), a DB-backed page and /health in turn: 4 threads of at most 25 requests a second
    each (CPU left for the instances on 2 cores), bounded; options replace those settings."""
    from tests.load import SteadyLoad

    settings = {
        "threads": 4,
        "pace": 0.04,
        "max_requests": 200_000,
        "max_seconds": ROLL_TIMEOUT + 120,
        "headers": {"Host": DOMAINS[0]},
        **options,
    }
    return SteadyLoad([f"{site}/", f"{site}/health"], **settings)


def deploy(rig, tag, timers=(), *, env="prod"):
    """./manage.py deploy of tag, which rig published (so deploy finds it published), while
    the started `timers` roll it; they are stopped when deploy ends. Its output."""
    from tests.instance_rig import REGISTRY_PATH

    registry = f"{rig.registry.address}/{REGISTRY_PATH}"
    options = ("--registry", registry, "--timeout", str(ROLL_TIMEOUT), "--interval", "1")
    try:
        return command("deploy", tag, *options, env=env)
    finally:
        for timer in timers:
            timer.stop()
