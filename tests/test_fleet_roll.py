"""A release rolled across prod's load-balanced fleet of three instances, under steady load.

The fleet is the one setup_aws and launch_ec2 --count 3 make in moto: a load balancer, its
target group and an Auto Scaling group whose three instances moto registered. Each instance
is played as in tests/test_boot_e2e.py (tests/instance_rig.py): a container running the
user-data moto holds for it, with its own IMDS server, nginx port and host directory, the
host's Docker engine doing stage 2's work. moto's load balancer forwards nothing: HAProxy
plays its data plane (tests/alb_standin.py), following the target group's registrations in
moto and checking /health as the target group does. The load goes through it, as a browser's
requests go through the ALB, naming the site's domain.

No systemd runs the instances' redeploy timers: each is a loop inside the instance's
container (tests/fleet_rig.Timer) that reruns its boot every few seconds (TIMER_EVERY), as the
timer would, at the timer unit's CPU weight (tests/timer_cgroup.py), while ./manage.py deploy
waits for the fleet to report the release healthy.
"""

import contextlib
import time

import pytest

from tests import fleet_rig
from tests.docker_rig import SESSION_TAG
from tests.fleet_rig import Timer, current_lease, deploy, lease_versions, steady_load
from tests.servers import wait_until

pytestmark = pytest.mark.docker

INSTANCES = 3
# The lease the killed instance takes: short, so that the test waits little for it to expire.
# The others keep stage 2's default, longer than any roll here.
KILLED_LEASE_SECONDS = 15


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
    with contextlib.ExitStack() as stack:
        yield fleet_rig.start_fleet(
            stack,
            docker_client=docker_client,
            postgres=postgres_server,
            moto=aws,
            registry=registry,
            release_image=release_image,
            instance_image=instance_image,
            tmp_path=tmp_path,
            count=INSTANCES,
        )


def test_releases_roll_across_three_instances_one_at_a_time_with_no_failed_request(fleet):
    rigs, balancer = fleet
    first, *others = rigs
    ids = [rig.instance_id for rig in rigs]

    # A new release, rolled by the instances' own timers while deploy waits for them.
    tag, next_tag = f"{SESSION_TAG}-2", f"{SESSION_TAG}-3"
    second, third = first.derived_release(tag), first.derived_release(next_tag)
    with steady_load(balancer.url) as load:
        assert load.wait_for(100), load.failures()[:5]
        first.publish(tag)
        rolled_from = time.monotonic()
        timers = [Timer(rig).start() for rig in rigs]
        out = deploy(first, tag, timers)
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
    with steady_load(balancer.url) as load:
        assert load.wait_for(100), load.failures()[:5]
        first.publish(tag)
        killed = Timer(first, LEASE_SECONDS=str(KILLED_LEASE_SECONDS)).start()
        wait_until(
            lambda: (
                (current_lease() or {}).get("instance") == first.instance_id
                and balancer.registered[first.instance_id] is False
            ),
            timeout=120,
            what="the first instance holds the lease, out of the target group",
        )
        first.kill_boot()
        killed.stop()
        held = current_lease()
        timers = [Timer(rig).start() for rig in others]
        wait_until(
            lambda: (current_lease() or {}).get("instance", first.instance_id) != first.instance_id,
            timeout=KILLED_LEASE_SECONDS + 120,
            what="another instance takes over the expired lease",
        )
        timers.append(Timer(first).start())  # the first instance is back
        out = deploy(first, tag, timers)
        assert load.wait_for(load.count() + 100), load.failures()[:5]
    assert load.failures() == [], load.failures()[:5]
    assert not [t.failed_runs() for t in timers if t.failed_runs()]
    refused = "".join(output for timer in timers[:2] for _, output in timer.runs)
    assert f"the lease is held by {first.instance_id}" in refused
    (takeover,) = [line for line in refused.splitlines() if "took over the lease" in line]
    assert f"the lease {first.instance_id} held, expired at {held['expires_at']}" in takeover
    assert takeover.split()[0] >= held["expires_at"]  # its log stamp: taken once expired
    assert lease_versions(tag)[1]["instance"] != first.instance_id
    assert "an interrupted run left target group" in "".join(o for _, o in timers[2].runs)
    for rig in rigs:
        assert rig.app().image.id == third.id
        assert f"{rig.instance_id}: runs {tag}, healthy" in out
    assert balancer.wait_serving(INSTANCES), balancer.describe()
    assert current_lease() is None
