"""The environment's alarms: an SNS topic that emails the team, and CloudWatch alarms on it.

Every alarm notifies the topic <project>-<env>-alerts when it goes into ALARM and again when
it is back to OK. The thresholds below are the documented ones (docs/README.md, "Alarms"):

  alb-5xx            the load balancer itself answered 5xx (no healthy target, timeouts) at
                     least ALB_5XX_COUNT times in 5 minutes
  target-5xx         the application answered 5xx at least TARGET_5XX_COUNT times in 5 minutes
  unhealthy-targets  at least one registered instance failed its health check for
                     UNHEALTHY_MINUTES minutes in a row
  status-check       an instance failed its EC2 status check (system or instance) for
                     STATUS_CHECK_MINUTES minutes in a row: one alarm for the Auto Scaling
                     group, and one per instance outside a group (status-check-<id>)
  db-cpu             the database's CPU averaged above DB_CPU_PERCENT for 15 minutes
  db-free-storage    the database has less than DB_FREE_STORAGE_BYTES of free storage
  db-connections     the database had more than DB_CONNECTIONS connections for 10 minutes

Missing data counts as fine: no requests means no 5xx, and a metric of a stopped instance
stops. The load balancer's alarms exist only once the environment has a load balancer.
"""

import dataclasses

from www.ops.ec2 import GROUP_TAG, environment_instances, tag
from www.ops.errors import value_or_none
from www.ops.results import Result, converge
from www.project import aws_region

ALB_5XX_COUNT = 10
TARGET_5XX_COUNT = 10
UNHEALTHY_MINUTES = 5
STATUS_CHECK_MINUTES = 2
DB_CPU_PERCENT = 80
DB_FREE_STORAGE_BYTES = 2 * 1024**3  # a tenth of the 20 GiB setup_aws allocates
DB_CONNECTIONS = 80  # db.t4g.micro allows about 110 (max_connections from its memory)

# The fields of an alarm setup_aws owns: compared with what CloudWatch holds (drift), and
# passed whole to put_metric_alarm, which replaces an alarm of the same name.
ALARM_FIELDS = (
    "AlarmDescription",
    "ActionsEnabled",
    "AlarmActions",
    "OKActions",
    "Namespace",
    "MetricName",
    "Statistic",
    "Dimensions",
    "Period",
    "EvaluationPeriods",
    "DatapointsToAlarm",
    "Threshold",
    "ComparisonOperator",
    "TreatMissingData",
)


@dataclasses.dataclass(frozen=True)
class Alarm:
    """One CloudWatch alarm on one metric: breaching for periods x period seconds."""

    name: str  # after the environment's prefix, e.g. "alb-5xx"
    description: str
    namespace: str
    metric: str
    statistic: str
    dimensions: dict
    period: int
    periods: int
    threshold: float
    comparison: str

    def request(self, landscape, topic_arn):
        """put_metric_alarm's arguments."""
        return {
            "AlarmName": landscape.alarm(self.name),
            "AlarmDescription": self.description,
            "ActionsEnabled": True,
            "AlarmActions": [topic_arn],
            "OKActions": [topic_arn],
            "Namespace": self.namespace,
            "MetricName": self.metric,
            "Statistic": self.statistic,
            "Dimensions": [{"Name": k, "Value": v} for k, v in sorted(self.dimensions.items())],
            "Period": self.period,
            "EvaluationPeriods": self.periods,
            "DatapointsToAlarm": self.periods,
            "Threshold": float(self.threshold),
            "ComparisonOperator": self.comparison,
            "TreatMissingData": "notBreaching",
            "Tags": landscape.tags,
        }


def topic_arn(*, landscape, region, account):
    return f"arn:aws:sns:{region}:{account}:{landscape.alert_topic}"


def _topic_exists(sns, arn):
    for page in sns.get_paginator("list_topics").paginate():
        if any(topic["TopicArn"] == arn for topic in page["Topics"]):
            return True
    return False


def _email_subscriptions(sns, arn):
    """{address: subscription ARN ("PendingConfirmation" until the address confirms)}."""
    paginator = sns.get_paginator("list_subscriptions_by_topic")
    return {
        sub["Endpoint"]: sub["SubscriptionArn"]
        for page in paginator.paginate(TopicArn=arn)
        for sub in page["Subscriptions"]
        if sub["Protocol"] == "email"
    }


def ensure_alert_topic(*, sns, landscape, region, account, emails, dry_run=False):
    """The topic the alarms notify, and an email subscription for each of emails.

    An email subscription not in emails (ALERT_EMAILS) any more is removed; one still waiting
    for its confirmation cannot be, and is reported.
    """
    arn = topic_arn(landscape=landscape, region=region, account=account)
    exists = _topic_exists(sns, arn)
    yield converge(
        f"SNS topic {landscape.alert_topic}",
        True if exists else None,
        True,
        lambda: sns.create_topic(Name=landscape.alert_topic, Tags=landscape.tags),
        dry_run=dry_run,
    )
    if not emails:
        yield Result(
            "skip",
            "no ALERT_EMAILS in project.env:",
            detail=f"nobody is emailed by the alarms (set it to subscribe addresses to {arn})",
        )
    subscribed = _email_subscriptions(sns, arn) if exists else {}
    for email in emails:
        yield converge(
            f"alert email subscription {email}",
            True if email in subscribed else None,
            True,
            lambda email=email: sns.subscribe(TopicArn=arn, Protocol="email", Endpoint=email),
            dry_run=dry_run,
            detail="AWS mails the address a link to confirm it first",
        )
    for email, subscription in sorted(subscribed.items()):
        if email in emails:
            continue
        what = f"alert email subscription {email}"
        if subscription == "PendingConfirmation":
            yield Result(
                "attention",
                f"{what}:",
                detail="not in ALERT_EMAILS but still unconfirmed; AWS drops it after 3 days",
            )
            continue
        if not dry_run:
            sns.unsubscribe(SubscriptionArn=subscription)
        yield Result("delete", what, dry_run, detail="not in ALERT_EMAILS")


def load_balancer_alarms(*, elbv2, landscape):
    """The load balancer's alarms, or None when the environment has no load balancer."""
    balancer = value_or_none(
        lambda: elbv2.describe_load_balancers(Names=[landscape.load_balancer]),
        ("LoadBalancerNotFound",),
        lambda r: r["LoadBalancers"][0],
    )
    if balancer is None:
        return None
    # CloudWatch's dimensions are the ARNs' tails: app/<name>/<id>, targetgroup/<name>/<id>
    lb = balancer["LoadBalancerArn"].partition(":loadbalancer/")[2]
    group = value_or_none(
        lambda: elbv2.describe_target_groups(Names=[landscape.target_group]),
        ("TargetGroupNotFound",),
        lambda r: r["TargetGroups"][0],
    )
    alarms = [
        Alarm(
            "alb-5xx",
            f"The load balancer answered 5xx itself {ALB_5XX_COUNT}+ times in 5 minutes "
            "(no healthy instance, or instances too slow)",
            "AWS/ApplicationELB",
            "HTTPCode_ELB_5XX_Count",
            "Sum",
            {"LoadBalancer": lb},
            300,
            1,
            ALB_5XX_COUNT,
            "GreaterThanOrEqualToThreshold",
        )
    ]
    if group is not None:
        both = {"LoadBalancer": lb, "TargetGroup": group["TargetGroupArn"].rpartition(":")[2]}
        alarms += [
            Alarm(
                "target-5xx",
                f"The application answered 5xx {TARGET_5XX_COUNT}+ times in 5 minutes",
                "AWS/ApplicationELB",
                "HTTPCode_Target_5XX_Count",
                "Sum",
                both,
                300,
                1,
                TARGET_5XX_COUNT,
                "GreaterThanOrEqualToThreshold",
            ),
            Alarm(
                "unhealthy-targets",
                f"An instance failed the /health check for {UNHEALTHY_MINUTES} minutes",
                "AWS/ApplicationELB",
                "UnHealthyHostCount",
                "Maximum",
                both,
                60,
                UNHEALTHY_MINUTES,
                1,
                "GreaterThanOrEqualToThreshold",
            ),
        ]
    return alarms


def _status_check(name, dimensions, whose):
    return Alarm(
        name,
        f"{whose} failed its EC2 status check for {STATUS_CHECK_MINUTES} minutes",
        "AWS/EC2",
        "StatusCheckFailed",
        "Maximum",
        dimensions,
        60,
        STATUS_CHECK_MINUTES,
        1,
        "GreaterThanOrEqualToThreshold",
    )


def status_check_alarms(*, autoscaling, ec2, landscape):
    """One alarm for the Auto Scaling group if there is one, and one per instance outside it."""
    groups = autoscaling.describe_auto_scaling_groups(
        AutoScalingGroupNames=[landscape.auto_scaling_group]
    )["AutoScalingGroups"]
    alarms = instance_status_checks(ec2=ec2, landscape=landscape)
    if groups:
        group = landscape.auto_scaling_group
        watch = {"AutoScalingGroupName": group}
        alarms.insert(0, _status_check("status-check", watch, f"An instance of {group}"))
    return alarms


def instance_status_checks(*, ec2, landscape):
    """One status-check alarm per single instance of the environment. A group's members are
    left out: the group's alarm watches them, and the group replaces them under new ids."""
    return [
        _status_check(
            f"status-check-{instance['InstanceId']}",
            {"InstanceId": instance["InstanceId"]},
            f"Instance {instance['InstanceId']}",
        )
        for instance in environment_instances(ec2=ec2, landscape=landscape)
        if not tag(instance, GROUP_TAG)
    ]


def database_alarms(*, landscape):
    database = {"DBInstanceIdentifier": landscape.database}
    return [
        Alarm(
            "db-cpu",
            f"The database's CPU averaged over {DB_CPU_PERCENT}% for 15 minutes",
            "AWS/RDS",
            "CPUUtilization",
            "Average",
            database,
            300,
            3,
            DB_CPU_PERCENT,
            "GreaterThanThreshold",
        ),
        Alarm(
            "db-free-storage",
            f"The database has less than {DB_FREE_STORAGE_BYTES // 1024**3} GiB of free storage",
            "AWS/RDS",
            "FreeStorageSpace",
            "Minimum",
            database,
            300,
            1,
            DB_FREE_STORAGE_BYTES,
            "LessThanThreshold",
        ),
        Alarm(
            "db-connections",
            f"The database had over {DB_CONNECTIONS} connections for 10 minutes",
            "AWS/RDS",
            "DatabaseConnections",
            "Maximum",
            database,
            300,
            2,
            DB_CONNECTIONS,
            "GreaterThanThreshold",
        ),
    ]


def _owned(alarm):
    """The fields setup_aws owns, as put_metric_alarm takes them (dimensions sorted)."""
    fields = {key: alarm.get(key) for key in ALARM_FIELDS}
    fields["Dimensions"] = sorted(fields["Dimensions"] or [], key=lambda d: d["Name"])
    return fields


def _existing_alarms(cloudwatch, landscape):
    paginator = cloudwatch.get_paginator("describe_alarms")
    pages = paginator.paginate(AlarmNamePrefix=landscape.alarm_prefix, AlarmTypes=["MetricAlarm"])
    return {alarm["AlarmName"]: alarm for page in pages for alarm in page["MetricAlarms"]}


def ensure_alarms(
    *,
    cloudwatch,
    elbv2,
    autoscaling,
    ec2,
    landscape,
    topic_arn,
    with_database=False,
    dry_run=False,
):
    """The environment's alarms, as documented above; a changed one is reported and put back.

    Per-instance status-check alarms of instances that no longer exist are deleted.
    """
    existing = _existing_alarms(cloudwatch, landscape)
    alarms = load_balancer_alarms(elbv2=elbv2, landscape=landscape)
    if alarms is None:
        yield Result(
            "skip",
            f"no load balancer {landscape.load_balancer}:",
            detail="ALB alarms skipped",
        )
        alarms = []
    alarms += status_check_alarms(autoscaling=autoscaling, ec2=ec2, landscape=landscape)
    if with_database:
        alarms += database_alarms(landscape=landscape)
    for alarm in alarms:
        yield _converge_alarm(cloudwatch, landscape, topic_arn, alarm, existing, dry_run)
    yield from _delete_stale_status_checks(cloudwatch, landscape, alarms, existing, dry_run)


def instance_status_alarms(*, cloudwatch, sns, sts, ec2, landscape, leaving=(), dry_run=False):
    """The status-check alarms of the environment's instances outside an Auto Scaling group,
    kept with them as launch_ec2 and terminate_ec2 change them: one per such instance (but
    those `leaving`, being terminated), none for an instance gone. Nothing but one skip
    before setup_aws has created the alert topic (it then creates them)."""
    account = sts.get_caller_identity()["Account"]
    arn = topic_arn(landscape=landscape, region=aws_region(), account=account)
    if not _topic_exists(sns, arn):
        yield Result(
            "skip",
            f"alert topic {landscape.alert_topic}:",
            detail=f"none yet, so no status-check alarms: ./manage.py setup_aws --env "
            f"{landscape.env.name} creates both",
        )
        return
    existing = _existing_alarms(cloudwatch, landscape)
    alarms = [
        alarm
        for alarm in instance_status_checks(ec2=ec2, landscape=landscape)
        if alarm.dimensions["InstanceId"] not in leaving
    ]
    for alarm in alarms:
        yield _converge_alarm(cloudwatch, landscape, arn, alarm, existing, dry_run)
    yield from _delete_stale_status_checks(cloudwatch, landscape, alarms, existing, dry_run)


def _converge_alarm(cloudwatch, landscape, topic_arn, alarm, existing, dry_run):
    """Alarm created, or put back if it differs from what this module sets."""
    request = alarm.request(landscape, topic_arn)
    name = request["AlarmName"]
    current = existing.get(name)
    desired = _owned(request)
    owned = None if current is None else _owned(current)
    changed = [key for key in ALARM_FIELDS if owned and owned[key] != desired[key]]
    return converge(
        f"alarm {name}",
        owned,
        desired,
        lambda: cloudwatch.put_metric_alarm(**request),
        dry_run=dry_run,
        detail=f"differed, put back: {', '.join(changed)}" if changed else "",
    )


def _delete_stale_status_checks(cloudwatch, landscape, alarms, existing, dry_run):
    """Per-instance status-check alarms of instances no longer among `alarms`'."""
    wanted = {landscape.alarm(alarm.name) for alarm in alarms}
    stale = [
        name
        for name in existing
        if name.startswith(landscape.alarm("status-check-")) and name not in wanted
    ]
    for name in sorted(stale):
        if not dry_run:
            cloudwatch.delete_alarms(AlarmNames=[name])
        yield Result("delete", f"alarm {name}", dry_run, detail="its instance is gone")
