from www import aws
from www.management.base import AWSCommand
from www.ops import ec2, releases


def with_reports(rows, reports):
    """Each row with the release its instance reports running and its health."""
    for row in rows:
        report = reports.get(row["id"])
        health = "-"
        if report:
            row["release"] = report.get("release") or row["release"]
            health = "healthy" if report.get("healthy") else "unhealthy"
            if report.get("reason"):
                health += f": {report['reason']}"
        yield {**row, "health": health}


class Command(AWSCommand):
    help = (
        "List an environment's instances: id, state, address, the release each reports running "
        "(its status object; the tag from launch until its first report) and whether it is "
        "healthy, launch time. "
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
        reports = releases.instance_statuses(aws.client("s3"), land.env)
        columns = ("id", "state", "address", "release", "health", "launched")
        rows = [
            columns,
            *(
                tuple(r[c] for c in columns)
                for r in with_reports(ec2.status_rows(instances), reports)
            ),
        ]
        widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
        for row in rows:
            self.stdout.write(
                "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()
            )
