from www import aws
from www.management.base import AWSCommand
from www.ops import rds


class Command(AWSCommand):
    help = (
        "Take a manual snapshot of an environment's RDS database (<project>-<env>-<UTC time>; "
        "RDS keeps it until it is deleted by hand), then list the database's snapshots."
    )
    dry_run_help = "list the snapshots and say which one would be taken"

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument(
            "--list-only", action="store_true", help="only list the snapshots, take none"
        )

    def handle(self, *args, dry_run, list_only, **options):
        land = self.landscape(options)
        client = aws.client("rds")
        if not list_only:
            self.report(rds.create_snapshot(rds=client, landscape=land, dry_run=dry_run))
        found = rds.snapshots(rds=client, landscape=land)
        if not found:
            self.stdout.write(f"no snapshots of {land.database}")
        for snapshot in found:
            created = snapshot.get("SnapshotCreateTime")
            when = created.strftime("%Y-%m-%d %H:%M:%SZ") if created else "(being taken)"
            self.stdout.write(
                f"{snapshot['DBSnapshotIdentifier']}  {snapshot['SnapshotType']}  "
                f"{snapshot['Status']}  {when}  {snapshot.get('AllocatedStorage', '?')} GiB"
            )
