"""A release rolled across prod's load-balanced fleet of three instances, under steady load.

The fleet is the one setup_aws and launch_ec2 --count 3 make in moto: a load balancer, its
target group and an Auto Scaling group whose three instances moto registered. Each instance
is played as in tests/test_boot_e2e.py (tests/instance_rig.py): a container running the
user-data moto holds for it, with its own IMDS server, nginx port and host directory, the
host's Docker engine doing stage 2's work. moto's load balancer forwards nothing: HAProxy
plays its data plane (tests/alb_standin.py), following the target group's registrations in
moto and checking /health as the target group does. The load goes through it, as a browser's
requests go through the ALB, naming the site's domain.

No systemd runs the instances' redeploy timers: each is a thread here that reruns the
instance's boot every few seconds (TIMER_EVERY), as the timer would, while ./manage.py deploy
waits for the fleet to report the release healthy.
"""

import json
import threading
import time

import boto3
import pytest

from tests import fleet_rig
from tests.alb_standin import LoadBalancerStandIn
from tests.docker_rig import SESSION_TAG
from tests.instance_rig import REGISTRY_PATH, Rig, command
from tests.load import SteadyLoad

pytestmark = pytest.mark.docker

PROD = fleet_rig.PROD
INSTANCES = 3
TIMER_EVERY = 3  # seconds between two runs of an instance's redeploy timer, here
ROLL_TIMEOUT = 600  # deploy's wait for the whole fleet, bounded
# The lease the killed instance takes: short, so that the test waits little for it to expire.
# The others keep stage 2's default, longer than any roll here.
KILLED_LEASE_SECONDS = 15


class Timer:
    """An instance's redeploy timer: its boot rerun every `every` seconds until stop()."""

    def __init__(self, rig, every=TIMER_EVERY, **settings):
        self.rig = rig
        self.every = every
        self.settings = settings
        self.runs = []  # (exit status, output) of each run
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def _run(self):
        deadline = time.monotonic() + ROLL_TIMEOUT
        while not self._stop.is_set() and time.monotonic() < deadline:
            self.runs.append(self.rig.boot(**self.settings))
            self._stop.wait(self.every)

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=300)

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


def wait_until(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout}s: {what}"
        time.sleep(0.2)


@pytest.fixture
def fleet(
    aws,
    zone,
    docker_client,
    postgres_server,
    registry,
    release_image,
    instance_image,
    tmp_path,
):
    """prod set up in moto with three instances booted on the session's release, and the
    load balancer's stand-in in front of them. Returns (rigs, load balancer)."""
    rigs = []
    balancer = None
    try:
        fleet_rig.setup_and_wait()
        for index in range(INSTANCES):
            rig = Rig(docker_client, postgres_server, aws, registry, tmp_path / str(index), PROD)
            rig.tmp_path.mkdir()
            rig.release_image, rig.instance_image = release_image, instance_image
            rigs.append(rig)
        first = rigs[0]
        first.publish(release_image.partition(":")[2])
        first.database()
        command(
            "push_config", str(first.config_file(ALLOWED_HOSTS=[fleet_rig.DOMAINS[0]])), env="prod"
        )
        command("launch_ec2", "--count", str(INSTANCES), env="prod")
        group = fleet_rig.find_group()
        ids = sorted(i["InstanceId"] for i in group["Instances"])
        assert len(ids) == INSTANCES
        profile = launch_template_profile(group)
        for rig, instance_id in zip(rigs, ids, strict=True):
            # nginx believes X-Forwarded-* from the load balancer's address: here, loopback
            rig.launch_instance(instance_id, profile=profile, FORWARDED_ALLOW_IPS="127.0.0.1")
        boot_together(rigs)

        balancer = LoadBalancerStandIn(
            target_group_arn(),
            {rig.instance_id: rig.host_port for rig in rigs},
            host=fleet_rig.DOMAINS[0],
        ).start()
        assert balancer.wait_serving(INSTANCES), balancer.describe()
        yield rigs, balancer
    finally:
        if balancer is not None:
            balancer.stop()
        for rig in reversed(rigs):  # the first one's images last: all run them
            rig.teardown()


def steady_load(balancer):
    """Browsers' requests through the load balancer: a DB-backed page and /health."""
    return SteadyLoad(
        [f"{balancer.url}/", f"{balancer.url}/health"],
        threads=4,
        pace=0.04,  # at most 100 requests a second: CPU left for the instances on 2 cores
        max_requests=200_000,
        max_seconds=ROLL_TIMEOUT + 120,
        headers={"Host": fleet_rig.DOMAINS[0]},
    )


def deploy(rig, tag):
    """./manage.py deploy of tag, which rig published (so deploy finds it published)."""
    registry = f"{rig.registry.address}/{REGISTRY_PATH}"
    options = ("--registry", registry, "--timeout", str(ROLL_TIMEOUT), "--interval", "1")
    return command("deploy", tag, *options, env="prod")


def test_releases_roll_across_three_instances_one_at_a_time_with_no_failed_request(fleet):
    rigs, balancer = fleet
    first, *others = rigs
    ids = [rig.instance_id for rig in rigs]

    # A new release, rolled by the instances' own timers while deploy waits for them.
    tag, next_tag = f"{SESSION_TAG}-2", f"{SESSION_TAG}-3"
    second, third = first.derived_release(tag), first.derived_release(next_tag)
    with steady_load(balancer) as load:
        assert load.wait_for(100), load.failures()[:5]
        first.publish(tag)
        rolled_from = time.monotonic()
        timers = [Timer(rig).start() for rig in rigs]
        try:
            out = deploy(first, tag)
        finally:
            for timer in timers:
                timer.stop()
        assert load.wait_for(load.count() + 100), load.failures()[:5]
    assert load.failures() == [], load.failures()[:5]
    assert len(load.requests) > 500  # the load ran through the roll
    assert not [t.failed_runs() for t in timers if t.failed_runs()]
    for instance_id in ids:
        assert f"{instance_id}: runs {tag}, healthy" in out
    # Every instance serves the new release, and all three are back behind the balancer.
    for rig in rigs:
        assert rig.app().image.id == second.id
    assert balancer.wait_serving(INSTANCES), balancer.describe()
    # One at a time: each took the lease once and gave it back (a lease is created only
    # where none is, If-None-Match), and the target group never had fewer than two.
    assert sorted(lease["instance"] for lease in lease_versions(tag)) == ids
    assert current_lease() is None
    assert balancer.fewest_registered(since=rolled_from) == INSTANCES - 1

    # The next release: the first instance takes the lease, leaves the target group, and
    # loses power there. Its lease expires, another instance takes it over, and the roll
    # completes when the first instance is back.
    tag = next_tag
    with steady_load(balancer) as load:
        assert load.wait_for(100), load.failures()[:5]
        first.publish(tag)
        killed = Timer(first, LEASE_SECONDS=str(KILLED_LEASE_SECONDS)).start()
        wait_until(
            lambda: (
                (current_lease() or {}).get("instance") == first.instance_id
                and balancer.registered[first.instance_id] is False
            ),
            120,
            "the first instance holds the lease, out of the target group",
        )
        first.kill_boot()
        killed.stop()
        held = current_lease()
        timers = [Timer(rig).start() for rig in others]
        wait_until(
            lambda: (current_lease() or {}).get("instance", first.instance_id) != first.instance_id,
            KILLED_LEASE_SECONDS + 120,
            "another instance takes over the expired lease",
        )
        timers.append(Timer(first).start())  # the first instance is back
        try:
            out = deploy(first, tag)
        finally:
            for timer in timers:
                timer.stop()
        assert load.wait_for(load.count() + 100), load.failures()[:5]
    assert load.failures() == [], load.failures()[:5]
    assert not [t.failed_runs() for t in timers if t.failed_runs()]
    takeover = lease_versions(tag)[1]
    assert takeover["instance"] != first.instance_id
    assert takeover["taken_at"] >= held["expires_at"]
    refused = "".join(output for timer in timers[:2] for _, output in timer.runs)
    assert f"the lease is held by {first.instance_id}" in refused
    assert "took over the lease" in refused
    assert "an interrupted run left target group" in "".join(o for _, o in timers[2].runs)
    for rig in rigs:
        assert rig.app().image.id == third.id
        assert f"{rig.instance_id}: runs {tag}, healthy" in out
    assert balancer.wait_serving(INSTANCES), balancer.describe()
    assert current_lease() is None
