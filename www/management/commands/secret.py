import getpass
import sys

from django.core.management.base import CommandError

from www import aws
from www.management.base import AWSCommand
from www.ops import secrets


class Command(AWSCommand):
    help = (
        "Manage an environment's secrets: SSM SecureStrings /<project>/<env>/<name> that its "
        'config reads with secret("name"). set reads the value from stdin or a hidden prompt '
        "(never the command line); list shows names, versions and dates, never values."
    )
    dry_run_help = "say what would change, change nothing"
    stealth_options = ("stdin",)  # call_command(..., stdin=...) in place of sys.stdin

    def add_arguments(self, parser):
        super().add_arguments(parser)
        actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        set_ = actions.add_parser("set", help="store a value read from stdin or a hidden prompt")
        set_.add_argument("name", help="e.g. database-password")
        actions.add_parser("list", help="names, versions and dates; never values")
        rm = actions.add_parser("rm", help="delete a secret")
        rm.add_argument("name")
        generate = actions.add_parser("generate", help="store a new random value, never shown")
        generate.add_argument("name", help="e.g. secret-key")
        generate.add_argument(
            "--replace", action="store_true", help="replace an existing value (rotate it)"
        )

    def handle(self, *args, action, dry_run, **options):
        land = self.landscape(options)
        ssm = aws.client("ssm")
        if action == "list":
            for name, version, modified in secrets.list_secrets(ssm=ssm, landscape=land):
                self.stdout.write(f"{name}\tversion {version}\t{modified:%Y-%m-%d %H:%M:%S %Z}")
            return
        name = options["name"]
        if action == "set":
            value = self.read_value(name, options.get("stdin") or sys.stdin)
            result = secrets.put_secret(
                ssm=ssm, landscape=land, name=name, value=value, dry_run=dry_run
            )
        elif action == "generate":
            result = secrets.generate_secret(
                ssm=ssm, landscape=land, name=name, replace=options["replace"], dry_run=dry_run
            )
        else:
            result = secrets.remove_secret(ssm=ssm, landscape=land, name=name, dry_run=dry_run)
        self.report(result)

    def read_value(self, name, stdin):
        """The value from a hidden prompt on a terminal, else all of stdin (one trailing
        newline dropped, as `echo` and here-strings add one)."""
        if stdin.isatty():
            value = getpass.getpass(f"Value of {name} (not shown): ")
            if getpass.getpass("Again: ") != value:
                raise CommandError("the two values differ: nothing stored")
            return value
        value = stdin.read()
        return value[:-1] if value.endswith("\n") else value
