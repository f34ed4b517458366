"""Changing a fleet's bounds in project.env under a running group, against moto's server.

AWS itself moves a group's desired capacity into new bounds without a word (and terminates
instances doing so); setup_aws does it on purpose, says what it does to the instances and
what to set instead, and launch_ec2 without --count keeps the group's size within the bounds.
"""

import dataclasses

import pytest
from django.core.management import CommandError

from tests.fleet_rig import (
    PROD,
    PROJECT,
    command,
    find_group,
    setup_aws,
)
from www import project


@pytest.fixture
def bounds(monkeypatch):
    """Let project.env give prod other bounds: bounds(min, max)."""

    def set_bounds(low, high):
        environments = dict(PROJECT.environments)
        environments["prod"] = dataclasses.replace(
            environments["prod"], min_instances=low, max_instances=high
        )
        changed = dataclasses.replace(PROJECT, environments=environments)
        monkeypatch.setattr(project, "load", lambda *args: changed)

    return set_bounds


def capacity():
    group = find_group()
    return group["MinSize"], group["MaxSize"], group["DesiredCapacity"]


def test_a_lowered_max_shrinks_the_group_on_purpose_and_says_so(prod_fleet, bounds):
    command("launch_ec2", "--count", "4")
    bounds(PROD.env.min_instances, 3)

    planned = setup_aws("--dry-run")
    assert (
        f"Would update Auto Scaling group {PROD.auto_scaling_group} "
        "(DesiredCapacity 4 -> 3, MaxSize 6 -> 3)" in planned
    )
    assert (
        f"Auto Scaling group {PROD.auto_scaling_group}: 4 instance(s) do not fit "
        "PROD_MAX_INSTANCES=3 in project.env, so the group would terminate 1 instance(s) to "
        "run 3; to keep 4, set PROD_MIN_INSTANCES/PROD_MAX_INSTANCES around it and rerun "
        "setup_aws --env prod" in planned
    )
    assert capacity() == (2, 6, 4)

    out = setup_aws()
    assert f"Updated Auto Scaling group {PROD.auto_scaling_group} (DesiredCapacity 4 -> 3" in out
    assert "so the group terminates 1 instance(s) to run 3" in out
    assert capacity() == (2, 3, 3) and len(find_group()["Instances"]) == 3

    again = setup_aws()
    assert f"Auto Scaling group {PROD.auto_scaling_group} exists, unchanged" in again
    assert "do not fit" not in again

    # launch_ec2 without --count keeps the fleet as it is; --count above the bounds: one line
    assert "capacity exists, unchanged" in command("launch_ec2")
    with pytest.raises(CommandError) as refused:
        command("launch_ec2", "--count", "4")
    assert "\n" not in str(refused.value)
    assert "--count 4 is outside prod's bounds 2..3" in str(refused.value)
    assert capacity() == (2, 3, 3)


def test_a_raised_min_grows_the_group_and_says_so(prod_fleet, bounds):
    command("launch_ec2", "--count", "2")
    bounds(3, 6)
    out = setup_aws()
    assert "(DesiredCapacity 2 -> 3, MinSize 2 -> 3)" in out
    assert "PROD_MIN_INSTANCES=3 in project.env, so the group launches 1 instance(s)" in out
    assert capacity() == (3, 6, 3) and len(find_group()["Instances"]) == 3


def test_launch_without_count_never_shrinks_a_grown_fleet(prod_fleet):
    command("launch_ec2", "--count", "5")
    assert "capacity exists, unchanged" in command("launch_ec2")
    assert capacity() == (2, 6, 5)
