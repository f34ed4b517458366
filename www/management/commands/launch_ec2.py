import json

from django.core.management.base import BaseCommand, CommandError

from www import aws, project
from www.ops import command_errors, ec2, landscape


class Command(BaseCommand):
    help = (
        "Launch an environment's web servers: a current Debian AMI (from SSM public "
        "parameters), its security group and instance profile, deploy/aws/user-data.sh as "
        "user-data, IMDSv2 only. Launches until the environment has --count instances, so a "
        "rerun launches nothing; a stopped one counts, and the rerun says to start or "
        "terminate it. --dry-run prints the full request."
    )
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("--env", required=True, help="environment from project.env")
        parser.add_argument("--count", type=int, default=1, help="instances wanted (default 1)")
        parser.add_argument("--ami", help="AMI id to use instead of looking one up")
        parser.add_argument(
            "--ami-parameter",
            default=ec2.DEFAULT_AMI_PARAMETER,
            help=f"SSM parameter naming the AMI (default {ec2.DEFAULT_AMI_PARAMETER})",
        )
        parser.add_argument(
            "--instance-type", help="instance type (default: <ENV>_INSTANCE_TYPE in project.env)"
        )
        parser.add_argument(
            "--wait", action="store_true", help="wait until running; print the addresses"
        )
        parser.add_argument(
            "--wait-delay", type=int, default=5, help="seconds between state checks (--wait)"
        )
        parser.add_argument("--dry-run", action="store_true", help="print the request only")

    def handle(self, *args, **options):
        if options["count"] < 1:
            raise CommandError("--count must be 1 or more")
        proj = project.load()
        with command_errors():
            land = landscape.Landscape.of(proj, options["env"])
            ec2_client = aws.client("ec2")
            group_id, release = ec2.check_prerequisites(
                s3=aws.client("s3"), ec2=ec2_client, iam=aws.client("iam"), landscape=land
            )
            ami = options["ami"] or ec2.lookup_ami(
                ssm=aws.client("ssm"), parameter=options["ami_parameter"]
            )
            request = ec2.launch_request(
                landscape=land,
                ami=ami,
                instance_type=options["instance_type"] or land.env.instance_type,
                count=options["count"],
                group_id=group_id,
                release=release,
                client_token=ec2.new_client_token(),
            )
            if options["dry_run"]:
                self.stdout.write(json.dumps(request, indent=2))
            for result in ec2.ensure_instances(
                ec2=ec2_client,
                landscape=land,
                request=request,
                dry_run=options["dry_run"],
                wait=options["wait"],
                wait_delay=options["wait_delay"],
            ):
                if result.verb == "attention":
                    self.stdout.write(self.style.WARNING(str(result)))
                elif options["verbosity"] >= 1:
                    style = self.style.SUCCESS if result.changed and not result.dry_run else str
                    self.stdout.write(style(str(result)))
