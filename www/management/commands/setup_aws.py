from django.core.management.base import BaseCommand

from www import aws, project
from www.ops import command_errors, ec2, fleet, landscape


class Command(BaseCommand):
    help = (
        "Create an environment's AWS landscape: its bucket (private, encrypted, versioned, "
        "policy and CORS from deploy/aws/), security groups, and the web servers' IAM role and "
        "instance profile. A load-balanced environment (<ENV>_LOAD_BALANCER=yes) also gets its "
        "fleet: load balancer, target group, certificate, listeners, DNS records, launch "
        "template, Auto Scaling group. Idempotent; --dry-run shows the plan and changes nothing."
    )
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("--env", required=True, help="environment from project.env")
        parser.add_argument(
            "--ssh-cidr",
            help="also allow SSH to the web servers from this CIDR (e.g. 203.0.113.7/32)",
        )
        parser.add_argument(
            "--with-rds",
            action="store_true",
            help="also create a Postgres RDS database; its password goes to SSM, never output",
        )
        parser.add_argument(
            "--ami", help="load-balanced env: AMI id for the launch template instead of a lookup"
        )
        parser.add_argument(
            "--ami-parameter",
            default=ec2.DEFAULT_AMI_PARAMETER,
            help="load-balanced env: SSM parameter naming the AMI (default: Debian 13's)",
        )
        parser.add_argument(
            "--wait",
            action="store_true",
            help="load-balanced env with domains: wait until ACM issues the certificate",
        )
        parser.add_argument(
            "--wait-delay", type=int, default=15, help="seconds between certificate checks (--wait)"
        )
        parser.add_argument("--dry-run", action="store_true", help="print the plan only")

    def handle(self, *args, **options):
        proj = project.load()
        dry_run = options["dry_run"]
        with command_errors():
            land = landscape.Landscape.of(proj, options["env"])
            if options["ssh_cidr"]:  # before any change: nothing half-done
                landscape.check_ssh_cidr(options["ssh_cidr"])
            plan = None
            if land.env.load_balanced:  # AMI and subnets checked before any change
                ec2_client = aws.client("ec2")
                ami = options["ami"] or ec2.lookup_ami(
                    ssm=aws.client("ssm"), parameter=options["ami_parameter"]
                )
                plan = fleet.FleetPlan(ec2=ec2_client, landscape=land, ami=ami)
            region = project.aws_region()
            account = aws.client("sts").get_caller_identity()["Account"]
            steps = [
                landscape.ensure_bucket(
                    s3=aws.client("s3"), landscape=land, region=region, dry_run=dry_run
                ),
                landscape.ensure_security_groups(
                    ec2=aws.client("ec2"),
                    landscape=land,
                    ssh_cidr=options["ssh_cidr"],
                    dry_run=dry_run,
                ),
                landscape.ensure_role(
                    iam=aws.client("iam"),
                    landscape=land,
                    policies=landscape.role_policies(
                        landscape=land, registry=proj.registry, region=region, account=account
                    ),
                    dry_run=dry_run,
                ),
            ]
            if options["with_rds"]:
                steps.append(
                    landscape.ensure_database(
                        rds=aws.client("rds"),
                        ssm=aws.client("ssm"),
                        ec2=aws.client("ec2"),
                        landscape=land,
                        dry_run=dry_run,
                    )
                )
            if plan is not None:
                steps.append(
                    fleet.ensure_fleet(
                        ec2=aws.client("ec2"),
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
            for step in steps:
                for result in step:
                    self.report(result, options["verbosity"])

    def report(self, result, verbosity):
        if result.verb == "attention":
            self.stdout.write(self.style.WARNING(str(result)))
            return
        if verbosity < 1:
            return
        style = self.style.SUCCESS if result.changed and not result.dry_run else str
        self.stdout.write(style(str(result)))
