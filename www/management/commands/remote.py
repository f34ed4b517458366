from django.core.management.base import CommandError

from www import aws
from www.management.base import AWSCommand
from www.ops import remote


class Command(AWSCommand):
    help = (
        "Run a manage.py command in the serving release container of an environment's "
        "instance(s), through Systems Manager Run Command (no SSH), and print each instance's "
        "output and exit status: ./manage.py remote --env stage -- migrate. migrate runs as "
        "migrate_with_lock (start-up's advisory lock) and on one instance only."
    )

    def add_arguments(self, parser):
        super().add_arguments(parser)
        which = parser.add_mutually_exclusive_group()
        which.add_argument("--instance", metavar="ID", help="the instance (default: the only one)")
        which.add_argument("--all", action="store_true", help="every running instance")
        parser.add_argument(
            "-e",
            dest="variables",
            action="append",
            default=[],
            metavar="NAME=VALUE",
            help="a variable for the command (no secrets: Run Command keeps its parameters)",
        )
        parser.add_argument(
            "--timeout", type=int, default=600, help="seconds the command may run (default 600)"
        )
        parser.add_argument(
            "--wait-delay", type=int, default=3, help="seconds between checks of its progress"
        )
        parser.add_argument(
            "arguments", nargs="+", metavar="COMMAND", help="the manage.py command, after --"
        )

    def handle(self, *args, arguments, variables, **options):
        land = self.landscape(options)
        remote.check_variables(variables)
        ids = remote.choose_instances(
            ec2=aws.client("ec2"),
            landscape=land,
            instance_id=options["instance"],
            everyone=options["all"],
        )
        manage_args = remote.manage_arguments(arguments, instance_count=len(ids))
        failed = []
        for invocation in remote.run(
            ssm=aws.client("ssm"),
            landscape=land,
            instance_ids=ids,
            command_line=remote.shell_command(
                landscape=land, arguments=manage_args, variables=variables
            ),
            comment=f"{land.prefix}: manage.py {manage_args[0]}",
            timeout=options["timeout"],
            delay=options["wait_delay"],
        ):
            self.show(invocation)
            if not invocation.succeeded:
                failed.append(invocation)
        if failed:
            raise CommandError(
                "failed on "
                + ", ".join(f"{i.instance_id} ({self.outcome(i)})" for i in failed)
                + f"; Run Command {failed[0].command_id} keeps the full record"
            )

    @staticmethod
    def outcome(invocation):
        if invocation.status in remote.RUNNING_STATUSES:
            return f"{invocation.status}, still running"
        return f"{invocation.status}, exit status {invocation.exit_status}"

    def show(self, invocation):
        style = self.style.SUCCESS if invocation.succeeded else self.style.ERROR
        self.stdout.write(style(f"== {invocation.instance_id}: {self.outcome(invocation)}"))
        if invocation.stdout:
            self.stdout.write(invocation.stdout.rstrip("\n"))
        if invocation.stderr:
            self.stderr.write(invocation.stderr.rstrip("\n"))
