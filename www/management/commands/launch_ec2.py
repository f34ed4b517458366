import json

from django.core.management.base import CommandError

from www import aws
from www.management.base import AWSCommand
from www.ops import ec2


class Command(AWSCommand):
    help = (
        "Launch an environment's web servers: a current Ubuntu LTS AMI (from SSM public "
        "parameters; only Debian or Ubuntu AMIs are accepted, as stage 1 uses apt), its "
        "security group and instance profile, deploy/aws/user-data.sh as "
        "user-data, IMDSv2 only. Launches until the environment has --count instances, so a "
        "rerun launches nothing; a stopped one counts, and the rerun says to start or "
        "terminate it. --dry-run prints the full request."
    )
    dry_run_help = "print the request only"

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument("--count", type=int, default=1, help="instances wanted (default 1)")
        parser.add_argument(
            "--ami", help="AMI id to use instead of looking one up (Debian or Ubuntu only)"
        )
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

    def handle(self, *args, count, dry_run, **options):
        if count < 1:
            raise CommandError("--count must be 1 or more")
        land = self.landscape(options)
        ec2_client = aws.client("ec2")
        group_id, release = ec2.check_prerequisites(
            s3=aws.client("s3"), ec2=ec2_client, iam=aws.client("iam"), landscape=land
        )
        existing = ec2.environment_instances(ec2=ec2_client, landscape=land)
        if len(existing) >= count:  # a rerun: nothing to launch, so no AMI to look up
            self.report_all(ec2.existing_results(existing[:count], land))
            return
        ami = options["ami"] or ec2.lookup_ami(
            ssm=aws.client("ssm"), parameter=options["ami_parameter"]
        )
        ec2.check_ami(ec2=ec2_client, ami=ami)
        request = ec2.launch_request(
            landscape=land,
            ami=ami,
            instance_type=options["instance_type"] or land.env.instance_type,
            count=count,
            group_id=group_id,
            release=release,
            client_token=ec2.new_client_token(),
        )
        if dry_run:
            self.stdout.write(json.dumps(request, indent=2))
        self.report_all(
            ec2.ensure_instances(
                ec2=ec2_client,
                landscape=land,
                request=request,
                dry_run=dry_run,
                wait=options["wait"],
                wait_delay=options["wait_delay"],
            )
        )
