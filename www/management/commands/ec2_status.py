from www import aws
from www.management.base import AWSCommand
from www.ops import ec2


class Command(AWSCommand):
    help = (
        "List an environment's instances: id, state, address, release, launch time. "
        "A stopped instance is listed, and serves nothing until it is started."
    )

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument(
            "--all", action="store_true", help="include terminated and shutting-down instances"
        )

    def handle(self, *args, **options):
        states = ec2.EXISTING_STATES + (["shutting-down", "terminated"] if options["all"] else [])
        land = self.landscape(options)
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
