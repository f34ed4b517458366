from django.core.management.base import CommandError

from www import aws
from www.management.base import AWSCommand
from www.ops import teardown


class Command(AWSCommand):
    help = (
        "Remove a load-balanced environment's fleet: its Route 53 alias records, Auto Scaling "
        "group and instances, launch template, listeners, load balancer, target group and the "
        "load balancer's security group. The bucket (config, releases, files), the database, "
        "the instance role and the certificate stay. Asks first unless --no-input."
    )
    dry_run_help = "print what would go only"
    no_input_help = "do not ask for confirmation"

    def handle(self, *args, dry_run, interactive, **options):
        land = self.landscape(options)
        if interactive and not dry_run:
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
            self.report(result)
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
