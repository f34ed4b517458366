from www import aws
from www.management.base import AWSCommand
from www.ops import releases


class Command(AWSCommand):
    help = (
        "Point an environment's release record back at an earlier release from its history "
        "(the previous good one, or --to TAG); the instances' redeploy timers roll it out "
        "like any other release (./manage.py deploy --env ENV TAG waits for them)."
    )
    dry_run_help = "say which release it would go back to; change nothing"

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument("--to", metavar="TAG", help="the release to go back to")

    def handle(self, *args, to, dry_run, **options):
        env = self.landscape(options).env
        self.report(releases.rollback(s3=aws.client("s3"), env=env, to=to, dry_run=dry_run))
