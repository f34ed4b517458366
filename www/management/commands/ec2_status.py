from django.core.management.base import BaseCommand, CommandError

from www import aws, project
from www.ops import OpsError, ec2, landscape


class Command(BaseCommand):
    help = "List an environment's instances: id, state, address, release, launch time."
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("--env", required=True, help="environment from project.env")
        parser.add_argument(
            "--all", action="store_true", help="include terminated and shutting-down instances"
        )

    def handle(self, *args, **options):
        try:
            land = landscape.Landscape.of(project.load(), options["env"])
        except OpsError as exc:
            raise CommandError(str(exc)) from None
        states = ec2.LIVE_STATES + (["shutting-down", "terminated"] if options["all"] else [])
        instances = ec2.environment_instances(ec2=aws.client("ec2"), landscape=land, states=states)
        if not instances:
            self.stdout.write(f"No instances of {land.prefix}.")
            return
        columns = ("id", "state", "address", "release", "launched")
        rows = [columns, *(tuple(r[c] for c in columns) for r in ec2.status_rows(instances))]
        widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
        for row in rows:
            self.stdout.write(
                "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()
            )
