from django.core.management.base import CommandError

from www import aws
from www.management.base import AWSCommand
from www.ops import bucket, cdn, rds, teardown


class Command(AWSCommand):
    help = (
        "Remove a load-balanced environment's fleet: its Route 53 alias records, Auto Scaling "
        "group and instances, launch template, listeners, load balancer, target group and the "
        "load balancer's security group. The bucket (config, releases, files), the database, "
        "the instance role and the certificate stay unless told: --with-rds also removes the "
        "database (through a final snapshot), --with-bucket the bucket with every version of "
        "every object in it. Asks first unless --no-input."
    )
    dry_run_help = "print what would go only"
    no_input_help = "do not ask for confirmation"

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument(
            "--with-rds",
            action="store_true",
            help="also remove the RDS database, after a final snapshot; refused while it has "
            "deletion protection (<ENV>_DB_DELETION_PROTECTION=no and setup_aws --with-rds "
            "turn it off)",
        )
        parser.add_argument(
            "--with-bucket",
            action="store_true",
            help="also remove the bucket and every object version in it: config/, deploy/, "
            "releases, static and media files (the CloudFront distribution is disabled)",
        )

    def handle(self, *args, dry_run, interactive, with_rds, with_bucket, **options):
        land = self.landscape(options)
        if with_rds or with_bucket:  # before any change and before asking: nothing half-done
            teardown.check_no_single_instances(
                ec2=aws.client("ec2"), autoscaling=aws.client("autoscaling"), landscape=land
            )
        if with_rds:
            rds.check_deletable(rds=aws.client("rds"), landscape=land)
        if interactive and not dry_run:
            self.confirm(question(land, with_rds, with_bucket))
        removed = 0
        for result in teardown.teardown_fleet(
            ec2=aws.client("ec2"),
            elbv2=aws.client("elbv2"),
            route53=aws.client("route53"),
            autoscaling=aws.client("autoscaling"),
            landscape=land,
            dry_run=dry_run,
        ):
            removed += 1
            self.report(result)
        if not removed:
            self.stdout.write(f"No fleet of {land.prefix}: nothing to remove.")
        if with_rds:
            self.report(rds.delete_database(rds=aws.client("rds"), landscape=land, dry_run=dry_run))
        if with_bucket:
            self.report_all(
                cdn.disable_static_distribution(
                    cloudfront=aws.client("cloudfront"), landscape=land, dry_run=dry_run
                ),
                bucket.delete_bucket(s3=aws.client("s3"), landscape=land, dry_run=dry_run),
            )

    def confirm(self, question):
        try:
            answer = input(question)
        except EOFError:
            raise CommandError(
                "no answer on stdin; pass --no-input to remove the fleet without asking"
            ) from None
        if answer.strip() != "yes":
            raise CommandError("Teardown cancelled; nothing changed.")


def question(land, with_rds, with_bucket):
    """What teardown asks before removing anything."""
    parts = [f"the fleet of {land.prefix} (load balancer, group and its instances, DNS records)"]
    if with_rds:
        parts.append(f"the RDS database {land.database} (a final snapshot is kept)")
    if with_bucket:
        parts.append(
            f"the bucket {land.bucket} with every object version in it (config, releases, files)"
        )
    listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return f"Remove {listed}? Type 'yes': "
