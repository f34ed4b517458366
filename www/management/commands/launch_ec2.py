import json

from django.core.management.base import CommandError

from www import aws
from www.management.base import AWSCommand, add_ami_arguments, ami_of, instance_status_alarms
from www.ops import ec2, loadbalancer, scaling


class Command(AWSCommand):
    help = (
        "Launch an environment's web servers: a current Ubuntu LTS AMI (from SSM public "
        "parameters; only Debian or Ubuntu AMIs are accepted, as stage 1 uses apt), its "
        "security group and instance profile, deploy/aws/user-data.sh as "
        "user-data, IMDSv2 only. Launches until the environment has --count instances, so a "
        "rerun launches nothing; a stopped one counts, and the rerun says to start or "
        "terminate it. --dry-run prints the full request. On a load-balanced environment "
        "(<ENV>_LOAD_BALANCER=yes) it sets the Auto Scaling group's desired capacity instead, "
        "within <ENV>_MIN_INSTANCES..<ENV>_MAX_INSTANCES; --wait then waits until that many "
        "targets are healthy and prints the site's address."
    )
    dry_run_help = "print the request only"

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument(
            "--count",
            type=int,
            help="instances wanted (default 1; a load-balanced env: its current count within "
            "<ENV>_MIN_INSTANCES..<ENV>_MAX_INSTANCES)",
        )
        add_ami_arguments(parser)
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

    def handle(self, *args, count, dry_run, **options):
        if count is not None and count < 1:
            raise CommandError("--count must be 1 or more")
        land = self.landscape(options)
        if land.env.load_balanced:
            return self.scale(land, count, dry_run, options)
        count = count or 1
        ec2_client = aws.client("ec2")
        group_id, release = ec2.check_prerequisites(
            s3=aws.client("s3"), ec2=ec2_client, iam=aws.client("iam"), landscape=land
        )
        existing = ec2.environment_instances(ec2=ec2_client, landscape=land)
        if len(existing) >= count:  # a rerun: nothing to launch, so no AMI to look up
            self.report_all(ec2.existing_results(existing[:count], land))
            self.report_all(instance_status_alarms(land, ec2_client, dry_run=dry_run))
            return
        ami = ami_of(options)
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
            ),
            instance_status_alarms(land, ec2_client, dry_run=dry_run),
        )

    def scale(self, land, count, dry_run, options):
        """A load-balanced environment: the group launches; this sets how many."""
        name = land.env.name
        if options["ami"] or options["instance_type"]:
            raise CommandError(
                f"{name} is load-balanced: its launch template holds the AMI and instance type; "
                f"set {name.upper()}_INSTANCE_TYPE in project.env or pass --ami to "
                f"./manage.py setup_aws --env {name}"
            )
        if count is None:
            count = scaling.default_count(autoscaling=aws.client("autoscaling"), landscape=land)
        scaling.check_count(land, count)
        ec2.check_prerequisites(
            s3=aws.client("s3"), ec2=aws.client("ec2"), iam=aws.client("iam"), landscape=land
        )
        elbv2 = aws.client("elbv2")
        target_group = loadbalancer.find_target_group(elbv2, land)
        load_balancer = loadbalancer.find_load_balancer(elbv2, land)
        if target_group is None or load_balancer is None:
            raise CommandError(
                f"no load balancer {land.load_balancer}: run ./manage.py setup_aws --env {name} "
                "first"
            )
        self.report(
            scaling.set_capacity(
                autoscaling=aws.client("autoscaling"), landscape=land, count=count, dry_run=dry_run
            )
        )
        if options["wait"] and not dry_run:
            health = scaling.wait_healthy(
                elbv2=elbv2,
                target_group_arn=target_group["TargetGroupArn"],
                count=count,
                delay=options["wait_delay"],
            )
            healthy = sorted(i for i, state in health.items() if state == "healthy")
            self.stdout.write(f"{len(healthy)} healthy target(s): {', '.join(healthy)}")
        self.stdout.write(f"Site: {loadbalancer.site_address(land, load_balancer)}")
