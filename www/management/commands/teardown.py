from django.core.management.base import BaseCommand, CommandError

from www import aws, project
from www.ops import command_errors, landscape, teardown


class Command(BaseCommand):
    help = (
        "Remove a load-balanced environment's fleet: its Route 53 alias records, Auto Scaling "
        "group and instances, launch template, listeners, load balancer, target group and the "
        "load balancer's security group. The bucket (config, releases, files), the database, "
        "the instance role and the certificate stay. Asks first unless --no-input."
    )
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("--env", required=True, help="environment from project.env")
        parser.add_argument(
            "--no-input",
            "--noinput",
            action="store_false",
            dest="interactive",
            help="do not ask for confirmation",
        )
        parser.add_argument("--dry-run", action="store_true", help="print what would go only")

    def handle(self, *args, **options):
        dry_run = options["dry_run"]
        with command_errors():
            land = landscape.Landscape.of(project.load(), options["env"])
            if options["interactive"] and not dry_run:
                self.confirm(
                    f"Remove the fleet of {land.prefix} (load balancer, group and its instances, "
                    "DNS records)? Type 'yes': "
                )
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
                if options["verbosity"] >= 1:
                    style = str if dry_run else self.style.SUCCESS
                    self.stdout.write(style(str(result)))
        if not removed:
            self.stdout.write(f"No fleet of {land.prefix}: nothing to remove.")

    def confirm(self, question):
        try:
            answer = input(question)
        except EOFError:
            raise CommandError(
                "no answer on stdin; pass --no-input to remove the fleet without asking"
            ) from None
        if answer.strip() != "yes":
            raise CommandError("Teardown cancelled; nothing changed.")
