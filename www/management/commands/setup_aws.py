from www import aws, project
from www.management.base import AWSCommand, add_ami_arguments, ami_of
from www.ops import alarms, bucket, cdn, fleet, iam, images, logs, network, rds


class Command(AWSCommand):
    help = (
        "Create an environment's AWS landscape: its bucket (private, encrypted, versioned, "
        "policy and CORS from deploy/aws/), the CloudFront distribution serving its static and "
        "media files, security groups, the web servers' IAM role (with "
        "AmazonSSMManagedInstanceCore, for ./manage.py remote and session) and instance profile, "
        "the log group, and the alarms with the SNS topic that emails ALERT_EMAILS. A "
        "load-balanced environment (<ENV>_LOAD_BALANCER=yes) also gets its fleet: load "
        "balancer, target group, certificate, listeners, DNS records, launch template, Auto "
        "Scaling group. Idempotent; --dry-run shows the plan and changes nothing. Rules and "
        "policies it did not set are reported as drift; --prune removes them."
    )
    dry_run_help = "print the plan only"

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument(
            "--ssh-cidr",
            help="also allow SSH to the web servers from this CIDR (e.g. 203.0.113.7/32)",
        )
        parser.add_argument(
            "--prune",
            action="store_true",
            help="remove what it reports as drift: security-group rules and role policies it "
            "did not set",
        )
        parser.add_argument(
            "--with-rds",
            action="store_true",
            help="also create a Postgres RDS database (encrypted, backed up, its alarms); its "
            "password goes to SSM, never output",
        )
        add_ami_arguments(parser, scope="load-balanced env: ")
        parser.add_argument(
            "--wait",
            action="store_true",
            help="load-balanced env with domains: wait until ACM issues the certificate",
        )
        parser.add_argument(
            "--wait-delay", type=int, default=15, help="seconds between certificate checks (--wait)"
        )

    def handle(self, *args, dry_run, ssh_cidr, prune, with_rds, **options):
        land = self.landscape(options)
        if ssh_cidr:  # before any change: nothing half-done
            network.check_ssh_cidr(ssh_cidr)
        warning = images.registry_warning(self.project.registry)
        if warning:
            self.stdout.write(self.style.WARNING(f"warning: {warning}"))
        ec2_client = aws.client("ec2")
        plan = None
        if land.env.load_balanced:  # the AMI and the subnets too
            ami = ami_of(options)
            plan = fleet.FleetPlan(ec2=ec2_client, landscape=land, ami=ami)
        region = project.aws_region()
        account = aws.client("sts").get_caller_identity()["Account"]
        policies = iam.role_policies(
            landscape=land,
            registry=self.project.registry,
            region=region,
            account=account,
            key_arn=iam.secrets_key_arn(aws.client("kms"), land),
        )
        self.report_all(
            bucket.ensure_bucket(
                s3=aws.client("s3"), landscape=land, region=region, dry_run=dry_run
            ),
            cdn.ensure_static_distribution(
                cloudfront=aws.client("cloudfront"), landscape=land, region=region, dry_run=dry_run
            ),
        )
        distribution = cdn.find_distribution(aws.client("cloudfront"), land)
        self.report_all(
            bucket.ensure_bucket_policy(
                s3=aws.client("s3"),
                landscape=land,
                distribution_arn=distribution and distribution["ARN"],
                dry_run=dry_run,
            ),
            network.ensure_security_groups(
                ec2=ec2_client,
                landscape=land,
                ssh_cidr=ssh_cidr,
                prune=prune,
                dry_run=dry_run,
            ),
            iam.ensure_role(
                iam=aws.client("iam"), landscape=land, policies=policies, dry_run=dry_run
            ),
            iam.ensure_managed_policies(iam=aws.client("iam"), landscape=land, dry_run=dry_run),
            iam.role_drift(
                iam=aws.client("iam"),
                landscape=land,
                inline=policies.keys(),
                attached={iam.managed_policy_arn(iam.SSM_MANAGED_POLICY)},
                prune=prune,
                dry_run=dry_run,
            ),
        )
        if with_rds:
            self.report_all(
                rds.ensure_database(
                    rds=aws.client("rds"),
                    ssm=aws.client("ssm"),
                    ec2=ec2_client,
                    landscape=land,
                    dry_run=dry_run,
                )
            )
        if plan is not None:
            self.report_all(
                fleet.ensure_fleet(
                    ec2=ec2_client,
                    elbv2=aws.client("elbv2"),
                    acm=aws.client("acm"),
                    route53=aws.client("route53"),
                    autoscaling=aws.client("autoscaling"),
                    plan=plan,
                    dry_run=dry_run,
                    wait=options["wait"],
                    wait_delay=options["wait_delay"],
                )
            )
        self.report_all(
            logs.ensure_log_group(
                logs=aws.client("logs"),
                landscape=land,
                retention_days=self.project.log_retention_days,
                dry_run=dry_run,
            ),
            alarms.ensure_alert_topic(
                sns=aws.client("sns"),
                landscape=land,
                region=region,
                account=account,
                emails=self.project.alert_emails,
                dry_run=dry_run,
            ),
            alarms.ensure_alarms(
                cloudwatch=aws.client("cloudwatch"),
                elbv2=aws.client("elbv2"),
                autoscaling=aws.client("autoscaling"),
                ec2=aws.client("ec2"),
                landscape=land,
                topic_arn=alarms.topic_arn(landscape=land, region=region, account=account),
                with_database=with_rds,
                dry_run=dry_run,
            ),
        )
