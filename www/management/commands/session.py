import os
import sys

from www import aws, project
from www.management.base import AWSCommand
from www.ops import remote


class Command(AWSCommand):
    help = (
        "Open a shell on an environment's instance through Systems Manager Session Manager "
        "(no SSH, no open port): runs aws ssm start-session, which needs the AWS CLI and "
        "Session Manager's plugin."
    )

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument("--instance", metavar="ID", help="the instance (default: the only one)")

    def handle(self, *args, **options):
        land = self.landscape(options)
        remote.check_session_tools()
        (instance_id,) = remote.choose_instances(
            ec2=aws.client("ec2"), landscape=land, instance_id=options["instance"]
        )
        argv = remote.session_command(instance_id=instance_id, region=project.aws_region())
        if self.verbosity >= 1:
            self.stdout.write(" ".join(argv))
        self.stdout.flush()
        sys.stdout.flush()
        os.execvp(argv[0], argv)  # noqa: S606 (the AWS CLI takes over the terminal)
