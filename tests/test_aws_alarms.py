"""setup_aws's alarms against moto's server: the SNS topic and its email subscriptions, the
CloudWatch alarms with their thresholds and actions, reruns, drift put back, the log group's
retention and the role's log policy."""

import dataclasses
import io
import re

import boto3
import pytest
from django.core.management import call_command

from tests.helpers import instances, launch
from www import project
from www.ops import alarms
from www.ops.landscape import Landscape

PROJECT = project.load()
STAGE = Landscape.of(PROJECT, "stage")
ACCOUNT = "123456789012"  # moto's
TOPIC_ARN = f"arn:aws:sns:eu-west-1:{ACCOUNT}:{STAGE.alert_topic}"
NOTES = ("no ALERT_EMAILS in project.env: ", f"no load balancer {STAGE.load_balancer}: ")


@pytest.fixture
def alert_emails(monkeypatch):
    """Let project.env name alert addresses: set_emails(*addresses)."""

    def set_emails(*addresses):
        changed = dataclasses.replace(PROJECT, alert_emails=addresses)
        monkeypatch.setattr(project, "load", lambda *args: changed)

    return set_emails


def setup_aws(*args):
    out = io.StringIO()
    call_command("setup_aws", "--env", "stage", *args, stdout=out)
    return out.getvalue()


def alarms_by_name():
    cloudwatch = boto3.client("cloudwatch")
    found = cloudwatch.describe_alarms(AlarmNamePrefix=STAGE.alarm_prefix)["MetricAlarms"]
    return {alarm["AlarmName"]: alarm for alarm in found}


def dimensions(alarm):
    return {d["Name"]: d["Value"] for d in alarm["Dimensions"]}


def load_balancer():
    """The environment's ALB and target group, as the fleet's setup creates them."""
    ec2 = boto3.client("ec2")
    vpc = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]
    subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc["VpcId"]]}])
    elbv2 = boto3.client("elbv2")
    balancer = elbv2.create_load_balancer(
        Name=STAGE.load_balancer, Subnets=[s["SubnetId"] for s in subnets["Subnets"][:2]]
    )["LoadBalancers"][0]
    group = elbv2.create_target_group(
        Name=STAGE.target_group, Protocol="HTTP", Port=80, VpcId=vpc["VpcId"]
    )["TargetGroups"][0]
    return balancer["LoadBalancerArn"], group["TargetGroupArn"]


def web_instance():
    ec2 = boto3.client("ec2")
    image = ec2.describe_images()["Images"][0]["ImageId"]
    tags = [{"ResourceType": "instance", "Tags": STAGE.tags}]
    (instance,) = ec2.run_instances(
        ImageId=image, MinCount=1, MaxCount=1, InstanceType="t3.small", TagSpecifications=tags
    )["Instances"]
    return instance["InstanceId"]


def test_topic_emails_the_addresses_and_every_alarm_notifies_it(aws, alert_emails):
    alert_emails("ops@example.com", "oncall@example.com")
    balancer_arn, group_arn = load_balancer()
    instance = web_instance()
    out = setup_aws()

    sns = boto3.client("sns")
    assert TOPIC_ARN in [t["TopicArn"] for t in sns.list_topics()["Topics"]]
    subscriptions = sns.list_subscriptions_by_topic(TopicArn=TOPIC_ARN)["Subscriptions"]
    assert sorted((s["Protocol"], s["Endpoint"]) for s in subscriptions) == [
        ("email", "oncall@example.com"),
        ("email", "ops@example.com"),
    ]
    assert "no ALERT_EMAILS" not in out and "ALB alarms skipped" not in out

    found = alarms_by_name()
    assert sorted(found) == sorted(
        STAGE.alarm(name)
        for name in ("alb-5xx", "target-5xx", "unhealthy-targets", f"status-check-{instance}")
    )
    for alarm in found.values():
        assert alarm["AlarmActions"] == [TOPIC_ARN] and alarm["OKActions"] == [TOPIC_ARN]
        assert alarm["ActionsEnabled"] and alarm["TreatMissingData"] == "notBreaching"

    lb_dimension = balancer_arn.split(":loadbalancer/")[1]
    assert lb_dimension.startswith(f"app/{STAGE.load_balancer}/")
    alb_5xx = found[STAGE.alarm("alb-5xx")]
    assert (alb_5xx["Namespace"], alb_5xx["MetricName"]) == (
        "AWS/ApplicationELB",
        "HTTPCode_ELB_5XX_Count",
    )
    assert dimensions(alb_5xx) == {"LoadBalancer": lb_dimension}
    assert (alb_5xx["Statistic"], alb_5xx["Period"], alb_5xx["Threshold"]) == ("Sum", 300, 10.0)

    target_5xx = found[STAGE.alarm("target-5xx")]
    assert target_5xx["MetricName"] == "HTTPCode_Target_5XX_Count"
    assert dimensions(target_5xx) == {
        "LoadBalancer": lb_dimension,
        "TargetGroup": group_arn.split(":")[-1],
    }
    unhealthy = found[STAGE.alarm("unhealthy-targets")]
    assert unhealthy["MetricName"] == "UnHealthyHostCount"
    assert (unhealthy["Period"], unhealthy["EvaluationPeriods"]) == (60, alarms.UNHEALTHY_MINUTES)
    assert unhealthy["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert unhealthy["Threshold"] == 1.0

    status = found[STAGE.alarm(f"status-check-{instance}")]
    assert (status["Namespace"], status["MetricName"]) == ("AWS/EC2", "StatusCheckFailed")
    assert dimensions(status) == {"InstanceId": instance}


def test_rerun_changes_nothing_and_an_alarm_changed_by_hand_is_put_back(aws, alert_emails):
    alert_emails("ops@example.com")
    load_balancer()
    setup_aws()
    rerun = setup_aws().strip().splitlines()
    assert rerun and all(
        re.search(r"exists, unchanged( \(\S+\.cloudfront\.net\))?$", line) for line in rerun
    ), rerun
    assert f"alarm {STAGE.alarm('alb-5xx')} exists, unchanged" in rerun
    assert f"SNS topic {STAGE.alert_topic} exists, unchanged" in rerun
    assert "alert email subscription ops@example.com exists, unchanged" in rerun

    name = STAGE.alarm("alb-5xx")
    by_hand = {k: v for k, v in alarms_by_name()[name].items() if k in alarms.ALARM_FIELDS}
    boto3.client("cloudwatch").put_metric_alarm(
        AlarmName=name, **{**by_hand, "Threshold": 1000.0, "OKActions": []}
    )
    out = setup_aws()
    assert f"Updated alarm {name} (differed, put back: OKActions, Threshold)" in out
    restored = alarms_by_name()[name]
    assert restored["Threshold"] == 10.0 and restored["OKActions"] == [TOPIC_ARN]


def test_addresses_follow_alert_emails(aws, alert_emails):
    alert_emails("ops@example.com", "old@example.com")
    setup_aws()
    alert_emails("ops@example.com")
    out = setup_aws()
    sns = boto3.client("sns")
    endpoints = [
        s["Endpoint"] for s in sns.list_subscriptions_by_topic(TopicArn=TOPIC_ARN)["Subscriptions"]
    ]
    assert endpoints == ["ops@example.com"]
    assert "Deleted alert email subscription old@example.com (not in ALERT_EMAILS)" in out


def test_without_addresses_or_load_balancer_it_says_so_once(aws):
    instance = web_instance()
    out = setup_aws()
    lines = out.splitlines()
    assert [line for line in lines if line.startswith(NOTES[0])] == [
        f"no ALERT_EMAILS in project.env: nobody is emailed by the alarms (set it to subscribe "
        f"addresses to {TOPIC_ARN})"
    ]
    assert lines.count(f"no load balancer {STAGE.load_balancer}: ALB alarms skipped") == 1
    assert sorted(alarms_by_name()) == [STAGE.alarm(f"status-check-{instance}")]
    assert boto3.client("sns").list_subscriptions()["Subscriptions"] == []

    boto3.client("ec2").terminate_instances(InstanceIds=[instance])
    waiter = boto3.client("ec2").get_waiter("instance_terminated")
    waiter.wait(InstanceIds=[instance], WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    out = setup_aws()
    assert f"Deleted alarm {STAGE.alarm(f'status-check-{instance}')} (its instance is gone)" in out
    assert alarms_by_name() == {}


def test_launch_and_terminate_keep_each_instances_status_check_alarm(ready):
    launch()
    (instance,) = [i["InstanceId"] for i in instances()]
    name = STAGE.alarm(f"status-check-{instance}")
    alarm = alarms_by_name()[name]  # at launch: no setup_aws rerun needed
    assert dimensions(alarm) == {"InstanceId": instance}
    assert alarm["AlarmActions"] == [TOPIC_ARN] and alarm["OKActions"] == [TOPIC_ARN]

    out = io.StringIO()
    call_command("terminate_ec2", "--env", "stage", instance, "--dry-run", stdout=out)
    assert f"Would delete alarm {name} (its instance is gone)" in out.getvalue()
    assert name in alarms_by_name()
    out = io.StringIO()
    call_command("terminate_ec2", "--env", "stage", instance, "--no-input", stdout=out)
    assert f"Deleted alarm {name} (its instance is gone)" in out.getvalue()
    assert name not in alarms_by_name()


def test_an_auto_scaling_group_gets_one_status_check_alarm(aws):
    ec2 = boto3.client("ec2")
    image = ec2.describe_images()["Images"][0]["ImageId"]
    ec2.create_launch_template(
        LaunchTemplateName="probe",
        LaunchTemplateData={"ImageId": image, "InstanceType": "t3.small"},
    )
    zones = [z["ZoneName"] for z in ec2.describe_availability_zones()["AvailabilityZones"]]
    boto3.client("autoscaling").create_auto_scaling_group(
        AutoScalingGroupName=STAGE.auto_scaling_group,
        LaunchTemplate={"LaunchTemplateName": "probe"},
        MinSize=0,
        MaxSize=1,
        AvailabilityZones=zones[:1],
    )
    setup_aws()
    (alarm,) = alarms_by_name().values()
    assert alarm["AlarmName"] == STAGE.alarm("status-check")
    assert dimensions(alarm) == {"AutoScalingGroupName": STAGE.auto_scaling_group}


def test_with_rds_the_database_has_its_alarms(aws):
    setup_aws("--with-rds")
    found = alarms_by_name()
    database = {"DBInstanceIdentifier": STAGE.database}
    expected = {
        "db-cpu": ("CPUUtilization", "GreaterThanThreshold", 80.0),
        "db-free-storage": ("FreeStorageSpace", "LessThanThreshold", 2.0 * 1024**3),
        "db-connections": ("DatabaseConnections", "GreaterThanThreshold", 80.0),
    }
    for name, (metric, comparison, threshold) in expected.items():
        alarm = found[STAGE.alarm(name)]
        assert (alarm["Namespace"], alarm["MetricName"]) == ("AWS/RDS", metric)
        assert (alarm["ComparisonOperator"], alarm["Threshold"]) == (comparison, threshold)
        assert dimensions(alarm) == database
        assert alarm["AlarmActions"] == [TOPIC_ARN] == alarm["OKActions"]


def test_dry_run_creates_no_topic_alarm_or_log_group(aws, alert_emails):
    alert_emails("ops@example.com")
    load_balancer()
    out = setup_aws("--dry-run")
    assert f"Would create SNS topic {STAGE.alert_topic}" in out
    assert "Would create alert email subscription ops@example.com" in out
    assert f"Would create alarm {STAGE.alarm('alb-5xx')}" in out
    assert f"Would create log group {STAGE.log_group} (lines kept 30 days)" in out
    assert boto3.client("sns").list_topics()["Topics"] == []
    assert alarms_by_name() == {}
    assert boto3.client("logs").describe_log_groups()["logGroups"] == []


def test_log_group_keeps_lines_as_long_as_project_env_says(aws):
    setup_aws()
    logs = boto3.client("logs")
    (group,) = logs.describe_log_groups(logGroupNamePrefix=STAGE.log_group)["logGroups"]
    assert group["logGroupName"] == f"/{PROJECT.name}/stage"
    assert group["retentionInDays"] == PROJECT.log_retention_days == 30

    logs.put_retention_policy(logGroupName=STAGE.log_group, retentionInDays=1)
    assert f"Updated log group {STAGE.log_group}" in setup_aws()
    (group,) = logs.describe_log_groups(logGroupNamePrefix=STAGE.log_group)["logGroups"]
    assert group["retentionInDays"] == 30


def test_the_role_may_write_its_own_log_group_only(aws):
    setup_aws()
    policy = boto3.client("iam").get_role_policy(
        RoleName=STAGE.role, PolicyName="logs-write-own-group"
    )["PolicyDocument"]
    (statement,) = policy["Statement"]
    assert sorted(statement["Action"]) == ["logs:CreateLogStream", "logs:PutLogEvents"]
    group_arn = f"arn:aws:logs:eu-west-1:{ACCOUNT}:log-group:{STAGE.log_group}"
    assert statement["Resource"] == [group_arn, f"{group_arn}:log-stream:*"]


def test_a_bad_retention_in_project_env_is_one_line(tmp_path):
    env_file = tmp_path / "project.env"
    text = project.PROJECT_FILE.read_text().replace(
        "LOG_RETENTION_DAYS=30", "LOG_RETENTION_DAYS=31"
    )
    env_file.write_text(text)
    with pytest.raises(
        ValueError, match=r"LOG_RETENTION_DAYS=31: CloudWatch keeps logs for one of 1 3 5"
    ):
        project.load.__wrapped__(env_file)
