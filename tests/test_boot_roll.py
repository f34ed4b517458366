"""Boot stage 2's roll across a load-balanced fleet (prod): the lease in S3 and the target group.

The rendered stage 2 is sourced into bash and its functions run with the AWS CLI against
moto's server, as in test_boot_scripts. moto has the control plane only: it reports a
registered running instance healthy at once, and deregistration ends at once. The swap
itself (Docker, nginx) is the end-to-end tests' (test_boot_e2e); here the stand-in for
swap_container records what the fleet looked like while it ran, or fails as a container
that never answers /health makes it fail.
"""

import dataclasses
import json
import os
import shutil
import subprocess
import time

import boto3
import pytest

from tests.fleet_rig import current_lease as lease
from tests.helpers import MOTO_UBUNTU_AMI, PROJECT, STAGE
from www.ops import iam
from www.ops.config_push import render_stage2
from www.ops.landscape import Landscape

PROD = Landscape.of(PROJECT, "prod")
REGION = "eu-west-1"
# swap_container's stand-in: where this instance stood in its target group during the swap,
# and who held the lease, into $SWAP_RECORD.
RECORDING_SWAP = """
swap_container() {
	printf '%s %s %s\\n' "$1" "$(target_state)" \\
		"$(aws_cli s3api head-object --bucket "$BUCKET" --key "$LEASE_KEY" >/dev/null 2>&1 \\
			&& echo held || echo free)" >"$SWAP_RECORD"
}"""
FAILING_SWAP = """
swap_container() {
	die "the new container did not become healthy: $CONTAINER_NAME keeps serving old"
}"""


def stage2(landscape, tmp_path):
    """The stage 2 push_config renders for the landscape's environment, as a file."""
    script = tmp_path / f"webserver-{landscape.env.name}.sh"
    script.write_text(render_stage2(project=PROJECT, env=landscape.env, region=REGION))
    return script


def run(script, instance, calls, tmp_path, *, exit_trap=True, **env):
    """Source stage 2 and run calls as instance, with stage 2's own exit trap (on_exit: the
    roll finished after a failure, the status report) unless exit_trap is false: then a lease
    taken stays held, as during a roll."""
    state = tmp_path / f"state-{instance}"
    prelude = (
        f"read_settings; INSTANCE_ID={instance}; STATE_DIR={state}; "
        f'install -d "$STATE_DIR"; FAILURE_FILE="$STATE_DIR/last-error"; '
        + ("trap 'on_exit $?' EXIT; " if exit_trap else "")
    )
    return subprocess.Popen(
        ["bash", "-c", f'set -Eeuo pipefail; source "$0"; {prelude}{calls}', str(script)],
        env={
            **os.environ,
            "CONTAINER_NAME": f"no-such-{tmp_path.name}",
            "BOOTSTRAP_LOG": "/dev/null",
            "SWAP_RECORD": str(tmp_path / f"swap-{instance}"),
            **env,
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process):
    stdout, stderr = process.communicate(timeout=120)
    return process.returncode, stdout, stderr


def run_now(script, instance, calls, tmp_path, **options):
    return finish(run(script, instance, calls, tmp_path, **options))


TAKE = "if take_lease 2.0; then echo took; else echo refused; fi"


def health():
    """{instance id: state} of every target the target group lists."""
    elbv2 = boto3.client("elbv2")
    arn = elbv2.describe_target_groups(Names=[PROD.target_group])["TargetGroups"][0]
    found = elbv2.describe_target_health(TargetGroupArn=arn["TargetGroupArn"])
    return {
        t["Target"]["Id"]: t["TargetHealth"]["State"] for t in found["TargetHealthDescriptions"]
    }


@pytest.fixture
def fleet(aws, tmp_path):
    """prod's bucket and target group in moto, two running instances registered in it; the
    prod stage 2 rendered. Returns (script, [instance ids])."""
    boto3.client("s3").create_bucket(
        Bucket=PROD.bucket, CreateBucketConfiguration={"LocationConstraint": REGION}
    )
    ec2 = boto3.client("ec2")
    vpc = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]
    elbv2 = boto3.client("elbv2")
    group = elbv2.create_target_group(
        Name=PROD.target_group,
        Protocol="HTTP",
        Port=80,
        VpcId=vpc["VpcId"],
        TargetType="instance",
    )["TargetGroups"][0]
    started = ec2.run_instances(ImageId=MOTO_UBUNTU_AMI, MinCount=2, MaxCount=2)["Instances"]
    ids = sorted(i["InstanceId"] for i in started)
    elbv2.register_targets(TargetGroupArn=group["TargetGroupArn"], Targets=[{"Id": i} for i in ids])
    return stage2(PROD, tmp_path), ids


def put_lease(holder, expires):
    boto3.client("s3").put_object(
        Bucket=PROD.bucket,
        Key=PROD.env.lease_key,
        Body=json.dumps(
            {
                "instance": holder,
                "release": "1.0",
                "expires": expires,
                "expires_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires)),
            },
            indent=1,
        ).encode(),
    )


def test_push_config_renders_the_target_group_and_the_lease_for_a_load_balanced_env(tmp_path):
    prod = stage2(PROD, tmp_path).read_text()
    assert f"TARGET_GROUP='{PROD.target_group}'" in prod
    assert "LEASE_KEYS='deploy/prod/lease.json'" in prod  # PROD_ROLL_AT_ONCE=1: one lease
    stage = stage2(STAGE, tmp_path).read_text()
    assert "TARGET_GROUP=''" in stage


def test_the_lease_is_taken_when_free_and_refused_to_a_second_instance(fleet, tmp_path):
    script, (first, second) = fleet
    code, out, err = run_now(script, first, TAKE, tmp_path, exit_trap=False)
    assert (code, out.strip()) == (0, "took"), err
    held = lease()
    assert held["instance"] == first and held["release"] == "2.0"
    assert held["expires"] > time.time() + 60  # LEASE_SECONDS: the whole roll
    code, out, err = run_now(script, second, TAKE, tmp_path, exit_trap=False)
    assert (code, out.strip()) == (0, "refused"), err
    (line,) = [line for line in err.splitlines() if "lease" in line]
    assert f"the lease is held by {first} (release 2.0) until {held['expires_at']}" in line
    assert "the timer's next run tries again" in line
    assert lease() == held
    # its holder's own next run (e.g. after a reboot) takes it back
    code, out, err = run_now(script, first, TAKE, tmp_path, exit_trap=False)
    assert (code, out.strip()) == (0, "took"), err
    assert "took back this instance's own lease" in err


def test_roll_at_once_lets_that_many_instances_out_and_no_more(fleet, tmp_path):
    _, (first, second) = fleet
    third = boto3.client("ec2").run_instances(ImageId=MOTO_UBUNTU_AMI, MinCount=1, MaxCount=1)[
        "Instances"
    ][0]["InstanceId"]
    # PROD_ROLL_AT_ONCE=2 (of at least 3 instances): two leases
    two_at_once = Landscape(PROJECT, dataclasses.replace(PROD.env, roll_at_once=2))
    script = stage2(two_at_once, tmp_path)
    took = []
    for instance in (first, second):
        code, out, err = run_now(
            script, instance, f"{TAKE}; echo $LEASE_KEY", tmp_path, exit_trap=False
        )
        assert out.split()[0] == "took", err
        took.append(out.split()[1])
    assert took == [PROD.env.lease_key, "deploy/prod/lease-2.json"]
    code, out, err = run_now(script, third, TAKE, tmp_path, exit_trap=False)
    assert (code, out.strip()) == (0, "refused"), err
    held = [line for line in err.splitlines() if "the lease is held by" in line]
    assert [line.split("held by ")[1].split()[0] for line in held] == [first, second]
    assert held[0].endswith("trying the next lease")
    assert held[1].endswith("not swapping now; the timer's next run tries again")


def test_an_expired_lease_is_taken_over_by_exactly_one_of_two_contenders(fleet, tmp_path):
    script, ids = fleet
    put_lease("i-dead", int(time.time()) - 5)
    barrier = tmp_path / "go"
    # both start together: both find the lease taken, read the expired one, and replace it
    # with If-Match on the version they read; only one write can match
    calls = f"while [[ ! -e {barrier} ]]; do sleep 0.01; done; {TAKE}"
    contenders = [run(script, instance, calls, tmp_path, exit_trap=False) for instance in ids]
    time.sleep(1)
    barrier.touch()
    results = dict(zip(ids, map(finish, contenders), strict=True))
    winners = [i for i, (code, out, _) in results.items() if out.strip() == "took"]
    assert all(code == 0 for code, _, _ in results.values()), results
    assert len(winners) == 1, results
    (winner,) = winners
    assert lease()["instance"] == winner
    assert "took over the lease i-dead held" in results[winner][2]
    (loser,) = set(ids) - {winner}
    assert results[loser][1].strip() == "refused"


def test_a_roll_leaves_the_target_group_swaps_rejoins_and_gives_the_lease_back(fleet, tmp_path):
    script, (rolling, serving) = fleet
    code, out, err = run_now(
        script, rolling, f"{RECORDING_SWAP}; {TAKE}; roll_container 2.0", tmp_path
    )
    assert code == 0, err
    # during the swap: out of the target group, the lease held; the other one serving
    assert (tmp_path / f"swap-{rolling}").read_text().split() == ["2.0", "unused", "held"]
    assert health() == {rolling: "healthy", serving: "healthy"}
    assert lease() is None
    assert "gave the lease back" in err
    assert not (tmp_path / f"state-{rolling}" / "left-target-group").exists()
    # the lease is free again: the next instance rolls
    code, out, err = run_now(script, serving, TAKE, tmp_path, exit_trap=False)
    assert out.strip() == "took", err


def test_the_only_instance_in_service_swaps_without_leaving_the_target_group(fleet, tmp_path):
    script, (alone, unhealthy) = fleet
    elbv2 = boto3.client("elbv2")
    arn = elbv2.describe_target_groups(Names=[PROD.target_group])["TargetGroups"][0]
    elbv2.deregister_targets(
        TargetGroupArn=arn["TargetGroupArn"], Targets=[{"Id": unhealthy}]
    )  # (moto reports every registered running instance healthy: this one is out instead)
    code, out, err = run_now(
        script, alone, f"{RECORDING_SWAP}; {TAKE}; roll_container 2.0", tmp_path
    )
    assert code == 0, err
    # in service all through its swap, which drops no request on one host
    assert (tmp_path / f"swap-{alone}").read_text().split() == ["2.0", "healthy", "held"]
    assert "no other instance of target group" in err and "left target group" not in err
    assert health() == {alone: "healthy"}
    assert lease() is None


def test_a_failed_swap_rejoins_with_the_old_container_and_gives_the_lease_back(fleet, tmp_path):
    script, (rolling, serving) = fleet
    code, out, err = run_now(
        script, rolling, f"{FAILING_SWAP}; {TAKE}; roll_container 3.0", tmp_path
    )
    assert code == 1
    assert "rejoining target group" in err
    assert health() == {rolling: "healthy", serving: "healthy"}
    assert lease() is None
    # the status report keeps the swap's own reason
    status = boto3.client("s3").get_object(
        Bucket=PROD.bucket, Key=f"{PROD.env.status_prefix}{rolling}.json"
    )
    reason = json.loads(status["Body"].read())["reason"]
    assert reason.startswith("the new container did not become healthy")


def test_a_run_killed_out_of_the_target_group_is_rejoined_by_the_next(fleet, tmp_path):
    script, (killed, serving) = fleet
    # a run killed after it left: no exit trap ran, the lease still names it
    code, _, err = run_now(
        script, killed, f"{TAKE}; find_target_group; leave_target_group", tmp_path, exit_trap=False
    )
    assert code == 0, err
    assert health() == {serving: "healthy"}
    assert lease()["instance"] == killed
    code, _, err = run_now(script, killed, "rejoin_if_left", tmp_path)
    assert code == 0, err
    assert health() == {killed: "healthy", serving: "healthy"}
    assert lease() is None
    assert "an interrupted run left target group" in err


def test_a_first_boot_takes_no_lease_and_leaves_no_target_group(fleet, tmp_path):
    script, (booting, serving) = fleet
    put_lease(serving, int(time.time()) + 600)  # another instance is rolling
    swap = 'swap_container() { echo "swapped $1"; }'
    code, out, err = run_now(
        script, booting, f"{swap}; RELEASE_TAG=2.0; replace_container 2.0", tmp_path
    )
    assert (code, out.strip()) == (0, "swapped 2.0"), err
    assert "lease" not in err and "target group" not in err
    assert lease()["instance"] == serving
    assert health() == {booting: "healthy", serving: "healthy"}


def test_an_environment_without_a_load_balancer_never_takes_a_lease(aws, tmp_path):
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=STAGE.bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    swap = 'swap_container() { echo "swapped $1"; }'
    script = stage2(STAGE, tmp_path)
    # a container serves (the name of any running container would do: none is touched)
    code, out, err = run_now(
        script,
        "i-single",
        f"{swap}; container_exists() {{ true; }}; RELEASE_TAG=2.0; replace_container 2.0; "
        ': >"$STATE_DIR/left-target-group"; rejoin_if_left',
        tmp_path,
    )
    assert (code, out.strip()) == (0, "swapped 2.0"), err
    assert "lease" not in err and "target group" not in err
    assert "Contents" not in s3.list_objects_v2(Bucket=STAGE.bucket, Prefix="deploy/stage/lease")
    assert boto3.client("elbv2").describe_target_groups()["TargetGroups"] == []


def test_only_a_load_balanced_role_may_leave_its_own_target_group_and_write_the_lease():
    def policies(landscape):
        return iam.role_policies(
            landscape=landscape,
            registry="ecr",
            region=REGION,
            account="123456789012",
            key_arn="arn:aws:kms:eu-west-1:123456789012:key/x",
        )

    assert "elb-roll-own-target-group" not in policies(STAGE)
    statements = {s["Sid"]: s for s in policies(PROD)["elb-roll-own-target-group"]["Statement"]}
    leave = statements["LeaveAndRejoinOwnTargetGroup"]
    assert leave["Resource"] == (
        f"arn:aws:elasticloadbalancing:{REGION}:123456789012:targetgroup/{PROD.target_group}/*"
    )
    assert sorted(leave["Action"]) == [
        "elasticloadbalancing:DeregisterTargets",
        "elasticloadbalancing:RegisterTargets",
    ]
    # the Describe calls have no resource-level permissions in IAM: read-only, on "*"
    assert all(
        a.startswith("elasticloadbalancing:Describe")
        for a in statements["FindTargetGroupAndReadHealth"]["Action"]
    )
    lease_arn = f"arn:aws:s3:::{PROD.bucket}/deploy/prod/lease*.json"  # each of ROLL_AT_ONCE
    writes = [s for s in statements.values() if s["Action"] == "s3:PutObject"]
    assert {s["Resource"] for s in writes} == {lease_arn}
    assert sorted(next(iter(s["Condition"]["Null"])) for s in writes) == [
        "s3:if-match",
        "s3:if-none-match",
    ]
    assert statements["GiveLeaseBack"]["Resource"] == lease_arn


def test_an_aws_cli_without_conditional_deletes_compares_before_it_deletes(fleet, tmp_path):
    """Before S3's conditional deletes, delete-object had no --if-match: the CLI refuses the
    option (its own 'Unknown options' line). Stage 2 then reads, compares and deletes."""
    script, (rolling, _) = fleet
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    older = bin_dir / "aws"
    older.write_text(
        "#!/bin/bash\n"
        'if [[ " $* " == *" delete-object "* && " $* " == *" --if-match "* ]]; then\n'
        '\techo "aws: error: Unknown options: --if-match" >&2\n'
        "\texit 252\n"
        "fi\n"
        f'exec {shutil.which("aws")} "$@"\n'
    )
    older.chmod(0o755)
    path = f"{bin_dir}:{os.environ['PATH']}"
    code, _, err = run_now(script, rolling, f"{TAKE}; release_lease", tmp_path, PATH=path)
    assert code == 0, err
    assert "read, compared and deleted: this AWS CLI has no delete-object --if-match" in err
    assert lease() is None
    # a lease that is no longer the version it wrote is left alone
    code, _, err = run_now(
        script,
        rolling,
        f"{TAKE}; echo '{{}}' >\"$STATE_DIR/other\"; "
        'put_lease /dev/null "$STATE_DIR/other" --if-match "$LEASE_ETAG" >/dev/null; '
        "release_lease",
        tmp_path,
        PATH=path,
    )
    assert code == 0, err
    assert "left as it is" in err
    assert lease() is not None
