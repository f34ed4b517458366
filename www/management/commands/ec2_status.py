from www import aws
from www.management.base import AWSCommand
from www.ops import ec2, loadbalancer, scaling


class Command(AWSCommand):
    help = (
        "List an environment's instances: id, state, address, release, launch time, and on a "
        "load-balanced environment each one's health in the target group and the site's "
        "address. A stopped instance is listed, and serves nothing until it is started."
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
            self.table(instances, health)
        if site is not None:
            self.stdout.write(f"Site: {site}")

    def table(self, instances, health):
        columns = ("id", "state", "address", "release", "launched")
        if health is not None:
            columns += ("target",)
        rows = [columns]
        for row in ec2.status_rows(instances):
            if health is not None:
                row["target"] = health.get(row["id"], "not registered")
            rows.append(tuple(row[c] for c in columns))
        widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
        for row in rows:
            self.stdout.write(
                "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()
            )
