import json

from django.core.management.base import BaseCommand, CommandError

from www import aws, project
from www.ops import command_errors, ec2, landscape, loadbalancer, scaling


class Command(BaseCommand):
    help = (
        "Launch an environment's web servers: a current Debian AMI (from SSM public "
        "parameters), its security group and instance profile, deploy/aws/user-data.sh as "
        "user-data, IMDSv2 only. Launches until the environment has --count instances, so a "
        "rerun launches nothing; a stopped one counts, and the rerun says to start or "
        "terminate it. --dry-run prints the full request. On a load-balanced environment "
        "(<ENV>_LOAD_BALANCER=yes) it sets the Auto Scaling group's desired capacity instead, "
        "within <ENV>_MIN_INSTANCES..<ENV>_MAX_INSTANCES; --wait then waits until that many "
        "targets are healthy and prints the site's address."
    )
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("--env", required=True, help="environment from project.env")
        parser.add_argument(
            "--count",
            type=int,
            help="instances wanted (default 1; a load-balanced env: <ENV>_MIN_INSTANCES)",
        )
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
            "--wait",
            action="store_true",
            help="wait until running (load-balanced: healthy in the target group); print addresses",
        )
        parser.add_argument(
            "--wait-delay", type=int, default=5, help="seconds between state checks (--wait)"
        )
        parser.add_argument("--dry-run", action="store_true", help="print the request only")

    def handle(self, *args, **options):
        if options["count"] is not None and options["count"] < 1:
            raise CommandError("--count must be 1 or more")
        proj = project.load()
        with command_errors():
            land = landscape.Landscape.of(proj, options["env"])
            if land.env.load_balanced:
                return self.scale(land, options)
            options["count"] = options["count"] or 1
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

    def scale(self, land, options):
        """A load-balanced environment: the group launches; this sets how many."""
        name = land.env.name
        if options["ami"] or options["instance_type"]:
            raise CommandError(
                f"{name} is load-balanced: its launch template holds the AMI and instance type; "
                f"set {name.upper()}_INSTANCE_TYPE in project.env or pass --ami to "
                f"./manage.py setup_aws --env {name}"
            )
        count = options["count"] or land.env.min_instances
        scaling.check_count(land, count)
        elbv2 = aws.client("elbv2")
        ec2.check_prerequisites(
            s3=aws.client("s3"), ec2=aws.client("ec2"), iam=aws.client("iam"), landscape=land
        )
        target_group = loadbalancer.find_target_group(elbv2, land)
        load_balancer = loadbalancer.find_load_balancer(elbv2, land)
        if target_group is None or load_balancer is None:
            raise CommandError(f"no load balancer {land.load_balancer}: run setup_aws --env {name}")
        result = scaling.set_capacity(
            autoscaling=aws.client("autoscaling"),
            landscape=land,
            count=count,
            dry_run=options["dry_run"],
        )
        if options["verbosity"] >= 1:
            style = self.style.SUCCESS if result.changed and not result.dry_run else str
            self.stdout.write(style(str(result)))
        if options["wait"] and not options["dry_run"]:
            health = scaling.wait_healthy(
                elbv2=elbv2,
                target_group_arn=target_group["TargetGroupArn"],
                count=count,
                delay=options["wait_delay"],
            )
            healthy = sorted(i for i, state in health.items() if state == "healthy")
            self.stdout.write(f"{len(healthy)} healthy target(s): {', '.join(healthy)}")
        self.stdout.write(f"Site: {loadbalancer.site_address(land, load_balancer)}")
