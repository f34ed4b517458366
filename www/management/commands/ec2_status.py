from www import aws
from www.management.base import AWSCommand
from www.ops import ec2, loadbalancer, releases, scaling


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
        "healthy, launch time, and on a load-balanced environment each one's health in the "
        "target group and the site's address. "
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
        site = health = None
        if land.env.load_balanced:
            elbv2 = aws.client("elbv2")
            target_group = loadbalancer.find_target_group(elbv2, land)
            health = (
                scaling.target_health(elbv2, target_group["TargetGroupArn"]) if target_group else {}
            )
            load_balancer = loadbalancer.find_load_balancer(elbv2, land)
            if load_balancer is not None:  # no fleet yet: no address to show
                site = loadbalancer.site_address(land, load_balancer)
        if not instances:
            self.stdout.write(f"No instances of {land.prefix}.")
        else:
            reports = releases.instance_statuses(aws.client("s3"), land.env)
            self.table(with_reports(ec2.status_rows(instances), reports), health)
        if site is not None:
            self.stdout.write(f"Site: {site}")

    def table(self, rows_in, health):
        columns = ("id", "state", "address", "release", "health", "launched")
        if health is not None:
            columns += ("target",)
        rows = [columns]
        for row in rows_in:
            if health is not None:
                row["target"] = health.get(row["id"], "not registered")
            rows.append(tuple(row[c] for c in columns))
        widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
        for row in rows:
            self.stdout.write(
                "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()
            )
