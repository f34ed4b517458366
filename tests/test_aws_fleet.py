"""The fleet of a load-balanced environment (prod) against moto's server: setup_aws's load
balancer, target group, certificate, listeners, Route 53 records, launch template and Auto
Scaling group, read back; launch_ec2 --count, ec2_status, terminate_ec2 and teardown.

moto issues a requested certificate MotoServer.acm_validation_wait seconds after the request
(tests/servers.py), whatever DNS holds. It registers a group's instances in the target group
and reports a registered running instance "healthy" at once: it has no data plane to probe
/health with. The product waits for "healthy" all the same.
"""

import base64
import dataclasses
import json
import os
import re
import subprocess
import sys

import boto3
import pytest
from django.core.management import CommandError

from tests.fleet_rig import (
    DOMAINS,
    PROD,
    PROJECT,
    ZONE,
    command,
    find_group,
    find_load_balancer,
    setup_and_wait,
    setup_aws,
)
from tests.helpers import MOTO_PUBLIC_AMI
from www import project
from www.ops import ec2, fleet, iam, loadbalancer, network, scaling, templates
from www.ops.landscape import Landscape

OPEN_TO_ALL = {"0.0.0.0/0", "::/0"}


def find_target_group():
    return loadbalancer.find_target_group(boto3.client("elbv2"), PROD)


def listeners():
    found = boto3.client("elbv2").describe_listeners(
        LoadBalancerArn=find_load_balancer()["LoadBalancerArn"]
    )
    return {lis["Port"]: lis for lis in found["Listeners"]}


def records(zone_id):
    found = boto3.client("route53").list_resource_record_sets(HostedZoneId=zone_id)
    return {(r["Name"], r["Type"]): r for r in found["ResourceRecordSets"]}


def groups_by_name():
    ec2_client = boto3.client("ec2")
    return {g["GroupName"]: g for g in ec2_client.describe_security_groups()["SecurityGroups"]}


def rules(group):
    """(port, source) of every ingress rule: a CIDR or a security group id."""
    found = set()
    for perm in group["IpPermissions"]:
        for key, field in (("IpRanges", "CidrIp"), ("Ipv6Ranges", "CidrIpv6")):
            found.update((perm.get("FromPort"), r[field]) for r in perm.get(key, []))
        found.update((perm.get("FromPort"), r["GroupId"]) for r in perm["UserIdGroupPairs"])
    return found


def template_versions():
    return boto3.client("ec2").describe_launch_template_versions(
        LaunchTemplateName=PROD.launch_template
    )["LaunchTemplateVersions"]


def changes(output):
    """Lines saying something was (or would be) created, updated or deleted."""
    return [
        line for line in output.splitlines() if re.match(r"(Created|Updated|Deleted|Would) ", line)
    ]


def test_setup_creates_an_https_front_door_on_two_zones_with_its_records(zone):
    out = setup_and_wait()
    lb = find_load_balancer()
    assert lb["Scheme"] == "internet-facing" and lb["Type"] == "application"
    assert len({z["ZoneName"] for z in lb["AvailabilityZones"]}) >= 2
    groups = groups_by_name()
    lb_group = groups[PROD.load_balancer_group]
    assert lb["SecurityGroups"] == [lb_group["GroupId"]]
    assert rules(lb_group) == {(port, cidr) for port in (80, 443) for cidr in OPEN_TO_ALL}

    listener = listeners()
    assert set(listener) == {80, 443}
    (redirect,) = listener[80]["DefaultActions"]
    assert redirect["Type"] == "redirect"
    assert redirect["RedirectConfig"]["Protocol"] == "HTTPS"
    assert redirect["RedirectConfig"]["Port"] == "443"
    assert redirect["RedirectConfig"]["StatusCode"] == "HTTP_301"
    https = listener[443]
    assert https["Protocol"] == "HTTPS"
    assert https["SslPolicy"] == "ELBSecurityPolicy-TLS13-1-2-2021-06"
    tg = find_target_group()
    assert (
        https["DefaultActions"] == [{"Type": "forward", "TargetGroupArn": tg["TargetGroupArn"]}]
        or https["DefaultActions"][0]["TargetGroupArn"] == tg["TargetGroupArn"]
    )

    acm = boto3.client("acm")
    (cert_arn,) = [c["CertificateArn"] for c in https["Certificates"]]
    cert = acm.describe_certificate(CertificateArn=cert_arn)["Certificate"]
    assert cert["Status"] == "ISSUED"
    assert set(cert["SubjectAlternativeNames"]) == set(DOMAINS)
    assert {o["ValidationMethod"] for o in cert["DomainValidationOptions"]} == {"DNS"}

    in_zone = records(zone)
    for option in cert["DomainValidationOptions"]:
        record = option["ResourceRecord"]
        written = in_zone[(record["Name"], "CNAME")]
        assert written["ResourceRecords"] == [{"Value": record["Value"]}]
    for domain in DOMAINS:
        alias = in_zone[(f"{domain}.", "A")]["AliasTarget"]
        assert alias["DNSName"].rstrip(".") == lb["DNSName"].lower()
        assert alias["HostedZoneId"] == lb["CanonicalHostedZoneId"]
    assert f"site answers at https://{DOMAINS[0]}" in out


def test_instances_are_reachable_only_through_the_load_balancer(zone):
    setup_and_wait()
    groups = groups_by_name()
    web, lb_group = groups[PROD.web_group], groups[PROD.load_balancer_group]
    assert rules(web) == {(80, lb_group["GroupId"])}
    assert not [r for r in rules(web) if r[1] in OPEN_TO_ALL]
    backend = groups[PROD.backend_group]
    assert rules(backend) == {(5432, web["GroupId"])}


def test_target_group_checks_health_and_drains_quickly(zone):
    setup_and_wait()
    tg = find_target_group()
    assert (tg["Protocol"], tg["Port"], tg["TargetType"]) == ("HTTP", 80, "instance")
    assert tg["HealthCheckPath"] == "/health"
    assert tg["Matcher"] == {"HttpCode": "200"}
    assert tg["HealthCheckIntervalSeconds"] == 15
    assert (tg["HealthyThresholdCount"], tg["UnhealthyThresholdCount"]) == (2, 3)
    attributes = boto3.client("elbv2").describe_target_group_attributes(
        TargetGroupArn=tg["TargetGroupArn"]
    )["Attributes"]
    delay = {a["Key"]: a["Value"] for a in attributes}["deregistration_delay.timeout_seconds"]
    assert int(delay) <= 30


def test_launch_template_holds_what_a_single_launch_puts_on_an_instance(zone):
    setup_and_wait()
    (version,) = template_versions()
    data = version["LaunchTemplateData"]
    ssm = boto3.client("ssm")
    assert data["ImageId"] == ssm.get_parameter(Name=MOTO_PUBLIC_AMI)["Parameter"]["Value"]
    assert data["InstanceType"] == PROD.env.instance_type
    assert data["IamInstanceProfile"] == {"Name": PROD.instance_profile}
    assert data["SecurityGroupIds"] == [groups_by_name()[PROD.web_group]["GroupId"]]
    options = data["MetadataOptions"]
    assert options["HttpTokens"] == "required"
    assert options["InstanceMetadataTags"] == "enabled"
    assert options["HttpPutResponseHopLimit"] == 2
    (volume,) = data["BlockDeviceMappings"]
    assert volume["Ebs"]["Encrypted"] is True
    stage1 = base64.b64decode(data["UserData"]).decode()  # stage 1, naming prod's stage 2
    assert stage1 == ec2.USER_DATA_FILE.read_text().replace(
        "STAGE2_URI='{{stage2_uri}}'", f"STAGE2_URI='{PROD.env.stage2_uri}'"
    ).replace("LOG_GROUP='{{log_group}}'", f"LOG_GROUP='{PROD.log_group}'").replace(
        "#{{boot_functions}}", "#" + templates.boot_functions()
    )
    tags = {
        s["ResourceType"]: {t["Key"]: t["Value"] for t in s["Tags"]}
        for s in data["TagSpecifications"]
    }
    assert tags["instance"] == {
        "Name": f"{PROJECT.name}-prod-web",
        "Project": PROJECT.name,
        "Env": "prod",
        "Bootstrap": PROD.env.stage2_uri,
    }
    assert tags["volume"] == {"Project": PROJECT.name, "Env": "prod"}


def test_group_runs_the_latest_template_behind_the_target_group_parked_at_zero(zone):
    out = setup_and_wait()
    group = find_group()
    assert group["TargetGroupARNs"] == [find_target_group()["TargetGroupArn"]]
    assert group["HealthCheckType"] == "ELB"
    assert group["HealthCheckGracePeriod"] >= 300
    assert group["LaunchTemplate"]["LaunchTemplateName"] == PROD.launch_template
    assert group["LaunchTemplate"]["Version"] == "$Latest"
    assert group["MaxSize"] == PROD.env.max_instances
    # Nothing boots before push_config and publish_image: launch_ec2 sets the count.
    assert (group["MinSize"], group["DesiredCapacity"], group["Instances"]) == (0, 0, [])
    assert "0 instances until launch_ec2 --count N" in out
    subnets = set(group["VPCZoneIdentifier"].split(","))
    assert subnets == {z["SubnetId"] for z in find_load_balancer()["AvailabilityZones"]}


def test_rerun_changes_nothing(zone):
    setup_and_wait()
    before = (find_load_balancer(), listeners(), records(zone), len(template_versions()))
    out = setup_and_wait()
    assert changes(out) == []
    assert "load balancer webapp-prod subnets exists, unchanged" in out.replace(
        PROJECT.name, "webapp"
    )
    after = (find_load_balancer(), listeners(), records(zone), len(template_versions()))
    assert after == before


def test_dry_run_creates_nothing(zone):
    out = setup_aws("--dry-run")
    assert "Would create load balancer" in out
    assert "Would create Auto Scaling group" in out
    assert "Would create launch template" in out
    assert find_load_balancer() is None and find_target_group() is None and find_group() is None
    assert boto3.client("acm").list_certificates()["CertificateSummaryList"] == []
    assert PROD.load_balancer_group not in groups_by_name()
    assert set(records(zone)) == {(ZONE, "NS"), (ZONE, "SOA")}


def test_dry_run_after_setup_plans_nothing(zone):
    setup_and_wait()
    assert changes(setup_aws("--dry-run")) == []


def test_hand_changes_are_reported_and_put_back(zone):
    setup_and_wait()
    elbv2, ec2_client = boto3.client("elbv2"), boto3.client("ec2")
    tg = find_target_group()
    elbv2.modify_target_group(TargetGroupArn=tg["TargetGroupArn"], HealthCheckPath="/")
    elbv2.modify_target_group_attributes(
        TargetGroupArn=tg["TargetGroupArn"],
        Attributes=[{"Key": "deregistration_delay.timeout_seconds", "Value": "300"}],
    )
    elbv2.modify_listener(
        ListenerArn=listeners()[80]["ListenerArn"],
        DefaultActions=[{"Type": "forward", "TargetGroupArn": tg["TargetGroupArn"]}],
    )
    web = groups_by_name()[PROD.web_group]
    ec2_client.authorize_security_group_ingress(
        GroupId=web["GroupId"],
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 80,
                "ToPort": 80,
                "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
            }
        ],
    )

    out = setup_and_wait()
    assert "Updated target group webapp-prod-web health check" in out.replace(
        PROJECT.name, "webapp"
    )
    assert "deregistration delay" in "\n".join(changes(out))
    assert "Updated listener" in out
    assert "remove 80 from 0.0.0.0/0" in out
    tg = find_target_group()
    assert tg["HealthCheckPath"] == "/health"
    assert listeners()[80]["DefaultActions"][0]["Type"] == "redirect"
    assert not [r for r in rules(groups_by_name()[PROD.web_group]) if r[1] in OPEN_TO_ALL]
    assert changes(setup_and_wait()) == []


def test_changed_instance_type_makes_exactly_one_new_template_version(zone):
    setup_and_wait()
    bigger = dataclasses.replace(PROD, env=dataclasses.replace(PROD.env, instance_type="t3.large"))
    ec2_client = boto3.client("ec2")
    (version,) = template_versions()
    old = version["LaunchTemplateData"]

    def converge():
        data = scaling.template_data(
            landscape=bigger,
            ami=old["ImageId"],
            device=old["BlockDeviceMappings"][0]["DeviceName"],
            instance_type=bigger.env.instance_type,
            group_id=old["SecurityGroupIds"][0],
        )
        return scaling.ensure_launch_template(ec2=ec2_client, landscape=bigger, data=data)

    result = converge()
    assert (result.verb, result.detail) == ("update", "new version 2: InstanceType")
    assert converge().verb == "unchanged"
    versions = template_versions()
    assert len(versions) == 2
    latest = max(versions, key=lambda v: v["VersionNumber"])["LaunchTemplateData"]
    assert latest["InstanceType"] == "t3.large"


def test_without_a_hosted_zone_the_records_to_create_are_printed(aws):
    out = setup_aws()
    cert = boto3.client("acm").list_certificates()["CertificateSummaryList"]
    assert [c["DomainName"] for c in cert] == [DOMAINS[0]]
    record = boto3.client("acm").describe_certificate(CertificateArn=cert[0]["CertificateArn"])[
        "Certificate"
    ]["DomainValidationOptions"][0]["ResourceRecord"]
    assert f"{record['Name']} CNAME {record['Value']}" in out
    assert f"DNS record {DOMAINS[0]} has no Route 53 hosted zone here: point it at" in out
    # Until ACM issues the certificate, HTTP redirects and there is no 443 listener yet.
    assert set(listeners()) == {80}
    assert "listener webapp-prod:443 waits for the certificate" in out.replace(
        PROJECT.name, "webapp"
    )
    out = setup_and_wait()
    assert "Created listener" in out and set(listeners()) == {80, 443}


def test_launch_sets_the_count_and_waits_for_healthy_targets(prod_fleet):
    out = command("launch_ec2", "--count", "3", "--wait", "--wait-delay", "1")
    group = find_group()
    assert (group["MinSize"], group["MaxSize"], group["DesiredCapacity"]) == (
        PROD.env.min_instances,
        PROD.env.max_instances,
        3,
    )
    members = sorted(i["InstanceId"] for i in group["Instances"])
    assert len(members) == 3
    health = scaling.target_health(boto3.client("elbv2"), find_target_group()["TargetGroupArn"])
    assert sorted(health) == members and set(health.values()) == {"healthy"}
    assert f"3 healthy target(s): {', '.join(members)}" in out
    assert out.strip().endswith(f"Site: https://{DOMAINS[0]}")

    running = ec2.environment_instances(ec2=boto3.client("ec2"), landscape=PROD)
    assert sorted(i["InstanceId"] for i in running) == members
    web_id = groups_by_name()[PROD.web_group]["GroupId"]
    for instance in running:
        assert [g["GroupId"] for g in instance["SecurityGroups"]] == [web_id]
        tags = {t["Key"]: t["Value"] for t in instance["Tags"]}
        assert tags["Bootstrap"] == PROD.env.stage2_uri

    again = command("launch_ec2", "--count", "3")
    assert "capacity exists, unchanged" in again
    assert len(find_group()["Instances"]) == 3

    status = command("ec2_status")
    for member in members:
        assert re.search(rf"^{member} .* healthy$", status, re.MULTILINE)
    assert status.strip().endswith(f"Site: https://{DOMAINS[0]}")


def test_count_outside_the_bounds_is_refused_in_one_line(prod_fleet):
    for count in (PROD.env.max_instances + 1, PROD.env.min_instances - 1):
        with pytest.raises(CommandError) as refused:
            command("launch_ec2", "--count", str(count))
        message = str(refused.value)
        assert "\n" not in message
        assert f"--count {count} is outside prod's bounds" in message
        assert "PROD_MIN_INSTANCES/PROD_MAX_INSTANCES" in message
    assert find_group()["DesiredCapacity"] == 0


def test_launch_before_setup_says_what_to_run(aws):
    with pytest.raises(CommandError, match="run ./manage.py setup_aws --env prod first"):
        command("launch_ec2", "--count", "2")


def test_terminating_a_group_member_says_the_group_replaces_it(prod_fleet):
    command("launch_ec2", "--count", "2")
    member = find_group()["Instances"][0]["InstanceId"]
    out = command("terminate_ec2", member, "--no-input")
    assert f"{member} belongs to Auto Scaling group {PROD.auto_scaling_group}" in out
    assert "launches a replacement" in out and "launch_ec2 --env prod --count N" in out


def status_check_alarm_names():
    found = boto3.client("cloudwatch").describe_alarms(AlarmNamePrefix=PROD.alarm("status-check"))
    return {alarm["AlarmName"] for alarm in found["MetricAlarms"]}


def test_an_instance_outside_the_group_keeps_its_own_status_check_alarm(prod_fleet):
    """prod made load-balanced while a single instance still runs: the group's alarm watches
    its members, the single instance keeps its own, and terminating one of each at once
    deletes the single one's alarm."""
    command("launch_ec2", "--count", "2")
    member = find_group()["Instances"][0]["InstanceId"]
    ami = boto3.client("ssm").get_parameter(Name=MOTO_PUBLIC_AMI)["Parameter"]["Value"]
    (single,) = boto3.client("ec2").run_instances(
        ImageId=ami,
        MinCount=1,
        MaxCount=1,
        InstanceType="t3.small",
        TagSpecifications=[{"ResourceType": "instance", "Tags": PROD.tags}],
    )["Instances"]
    single = single["InstanceId"]
    setup_aws()
    group_alarm, single_alarm = PROD.alarm("status-check"), PROD.alarm(f"status-check-{single}")
    assert status_check_alarm_names() == {group_alarm, single_alarm}

    out = command("terminate_ec2", member, single, "--no-input")
    assert f"Deleted alarm {single_alarm} (its instance is gone)" in out
    assert f"{member} belongs to Auto Scaling group {PROD.auto_scaling_group}" in out
    assert status_check_alarm_names() == {group_alarm}


def test_teardown_removes_the_fleet_and_nothing_else(prod_fleet):
    command("launch_ec2", "--count", "2")
    cert_arns = [
        c["CertificateArn"]
        for c in boto3.client("acm").list_certificates()["CertificateSummaryList"]
    ]

    planned = command("teardown", "--dry-run")
    assert "Would delete load balancer" in planned
    assert find_load_balancer() is not None and find_group() is not None

    out = command("teardown", "--no-input")
    for removed in (
        "Auto Scaling group",
        "launch template",
        "listener",
        "load balancer",
        "target group",
        f"security group {PROD.load_balancer_group}",
        "DNS record",
    ):
        assert f"Deleted {removed}" in out
    assert find_load_balancer() is None and find_target_group() is None and find_group() is None
    with pytest.raises(boto3.client("ec2").exceptions.ClientError):
        template_versions()
    assert (f"{DOMAINS[0]}.", "A") not in records(prod_fleet)
    assert ec2.environment_instances(ec2=boto3.client("ec2"), landscape=PROD) == []
    # Kept: bucket with config and release, web and backend groups, role, certificate.
    s3 = boto3.client("s3")
    assert s3.head_object(Bucket=PROD.bucket, Key=PROD.env.config_key)
    assert s3.head_object(Bucket=PROD.bucket, Key=PROD.env.release_key)
    groups = groups_by_name()
    assert PROD.web_group in groups and PROD.backend_group in groups
    assert PROD.load_balancer_group not in groups
    boto3.client("iam").get_role(RoleName=PROD.role)
    assert [
        c["CertificateArn"]
        for c in boto3.client("acm").list_certificates()["CertificateSummaryList"]
    ] == cert_arns

    assert (
        command("teardown", "--no-input").strip()
        == f"No fleet of {PROD.prefix}: nothing to remove."
    )


def test_teardown_asks_first_and_a_no_changes_nothing(prod_fleet):
    result = subprocess.run(
        [sys.executable, "manage.py", "teardown", "--env", "prod"],
        cwd=project.BASE_DIR,
        input="no\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert f"Remove the fleet of {PROD.prefix}" in result.stdout
    assert result.stderr.splitlines() == ["CommandError: Teardown cancelled; nothing changed."]
    assert find_load_balancer() is not None and find_group() is not None


def test_an_environment_without_a_load_balancer_gets_no_fleet(aws):
    out = setup_aws(env="stage")
    created = [line for line in out.splitlines() if line.startswith(("Created", "Would"))]
    assert not [line for line in created if "load balancer" in line or "Auto Scaling" in line]
    assert "Auto Scaling" not in out
    assert boto3.client("elbv2").describe_load_balancers()["LoadBalancers"] == []
    web = groups_by_name()[Landscape.of(PROJECT, "stage").web_group]
    assert rules(web) == {(port, cidr) for port in (80, 443) for cidr in OPEN_TO_ALL}


def aws_cli(*args):
    """The AWS CLI as an operator runs it. Debian 12's CLI (2.9) ignores AWS_ENDPOINT_URL."""
    result = subprocess.run(
        ["aws", "--endpoint-url", os.environ["AWS_ENDPOINT_URL"], "--output", "json", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(result.stdout)


def test_the_aws_cli_reads_the_fleet_back(prod_fleet):
    command("launch_ec2", "--count", "2")
    (lb,) = aws_cli("elbv2", "describe-load-balancers", "--names", PROD.load_balancer)[
        "LoadBalancers"
    ]
    assert lb["Scheme"] == "internet-facing"
    found = aws_cli("elbv2", "describe-listeners", "--load-balancer-arn", lb["LoadBalancerArn"])
    by_port = {lis["Port"]: lis for lis in found["Listeners"]}
    assert by_port[80]["DefaultActions"][0]["RedirectConfig"]["Protocol"] == "HTTPS"
    assert by_port[443]["SslPolicy"] == "ELBSecurityPolicy-TLS13-1-2-2021-06"
    (group,) = aws_cli(
        "autoscaling",
        "describe-auto-scaling-groups",
        "--auto-scaling-group-names",
        PROD.auto_scaling_group,
    )["AutoScalingGroups"]
    assert group["DesiredCapacity"] == 2 and group["HealthCheckType"] == "ELB"
    health = aws_cli(
        "elbv2", "describe-target-health", "--target-group-arn", group["TargetGroupARNs"][0]
    )["TargetHealthDescriptions"]
    assert sorted(h["Target"]["Id"] for h in health) == sorted(
        i["InstanceId"] for i in group["Instances"]
    )


def test_without_domains_one_http_listener_forwards_on_the_load_balancers_name(aws):
    """A load-balanced environment with no domains (e.g. STAGE_LOAD_BALANCER=yes alone):
    no certificate, no DNS record, one HTTP listener forwarding to the target group."""
    stage = Landscape.of(PROJECT, "stage")
    land = dataclasses.replace(
        stage, env=dataclasses.replace(stage.env, load_balanced=True, domains=())
    )
    ec2_client = boto3.client("ec2")
    list(network.ensure_security_groups(ec2=ec2_client, landscape=land))
    list(iam.ensure_role(iam=boto3.client("iam"), landscape=land, policies={}))
    ami = boto3.client("ssm").get_parameter(Name=MOTO_PUBLIC_AMI)["Parameter"]["Value"]
    plan = fleet.FleetPlan(ec2=ec2_client, landscape=land, ami=ami)

    def converge():
        return list(
            fleet.ensure_fleet(
                ec2=ec2_client,
                elbv2=boto3.client("elbv2"),
                acm=boto3.client("acm"),
                route53=boto3.client("route53"),
                autoscaling=boto3.client("autoscaling"),
                plan=plan,
            )
        )

    results = converge()
    elbv2 = boto3.client("elbv2")
    lb = loadbalancer.find_load_balancer(elbv2, land)
    (listener,) = elbv2.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"]
    assert (listener["Port"], listener["Protocol"]) == (80, "HTTP")
    (action,) = listener["DefaultActions"]
    target_group = loadbalancer.find_target_group(elbv2, land)
    assert action["Type"] == "forward"
    assert action["TargetGroupArn"] == target_group["TargetGroupArn"]
    assert boto3.client("acm").list_certificates()["CertificateSummaryList"] == []
    assert f"site answers at http://{lb['DNSName']}" in [str(r) for r in results]
    assert [r for r in converge() if r.changed] == []
