from www import aws, project
from www.management.base import AWSCommand
from www.ops import bucket, cdn, iam, network, rds


class Command(AWSCommand):
    help = (
        "Create an environment's AWS landscape: its bucket (private, encrypted, versioned, "
        "policy and CORS from deploy/aws/), the CloudFront distribution serving its static and "
        "media files, security groups, and the web servers' IAM role and "
        "instance profile. Idempotent; --dry-run shows the plan and changes nothing. Rules and "
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
            help="also create a Postgres RDS database; its password goes to SSM, never output",
        )

    def handle(self, *args, dry_run, ssh_cidr, prune, with_rds, **options):
        land = self.landscape(options)
        if ssh_cidr:  # before any change: nothing half-done
            network.check_ssh_cidr(ssh_cidr)
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
                ec2=aws.client("ec2"),
                landscape=land,
                ssh_cidr=ssh_cidr,
                prune=prune,
                dry_run=dry_run,
            ),
            iam.ensure_role(
                iam=aws.client("iam"), landscape=land, policies=policies, dry_run=dry_run
            ),
            iam.role_drift(
                iam=aws.client("iam"),
                landscape=land,
                inline=policies.keys(),
                prune=prune,
                dry_run=dry_run,
            ),
        )
        if with_rds:
            self.report_all(
                rds.ensure_database(
                    rds=aws.client("rds"),
                    ssm=aws.client("ssm"),
                    ec2=aws.client("ec2"),
                    landscape=land,
                    dry_run=dry_run,
                )
            )
