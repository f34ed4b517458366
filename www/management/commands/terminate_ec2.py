from django.core.management.base import BaseCommand, CommandError

from www import aws, project
from www.ops import command_errors, ec2, landscape


class Command(BaseCommand):
    help = "Terminate instances of an environment, by id; asks first unless --no-input."
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("--env", required=True, help="environment from project.env")
        parser.add_argument("instance_ids", nargs="+", metavar="ID", help="instance ids")
        parser.add_argument(
            "--no-input",
            "--noinput",
            action="store_false",
            dest="interactive",
            help="do not ask for confirmation",
        )

    def handle(self, *args, **options):
        ids = options["instance_ids"]
        with command_errors():
            land = landscape.Landscape.of(project.load(), options["env"])
            if options["interactive"]:
                self.confirm(f"Terminate {', '.join(ids)} of {land.prefix}? Type 'yes': ")
            states = ec2.terminate(ec2=aws.client("ec2"), landscape=land, ids=ids)
        for instance_id, state in states.items():
            if options["verbosity"] >= 1:
                self.stdout.write(self.style.SUCCESS(f"Terminated {instance_id} ({state})"))

    def confirm(self, question):
        try:
            answer = input(question)
        except EOFError:
            raise CommandError(
                "no answer on stdin; pass --no-input to terminate without asking"
            ) from None
        if answer.strip() != "yes":
            raise CommandError("Terminate cancelled; nothing changed.")
