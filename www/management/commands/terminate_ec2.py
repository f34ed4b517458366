from django.core.management.base import CommandError

from www import aws
from www.management.base import AWSCommand
from www.ops import ec2


class Command(AWSCommand):
    help = "Terminate instances of an environment, by id; asks first unless --no-input."
    no_input_help = "do not ask for confirmation"

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument("instance_ids", nargs="+", metavar="ID", help="instance ids")

    def handle(self, *args, instance_ids, interactive, **options):
        land = self.landscape(options)
        if interactive:
            self.confirm(f"Terminate {', '.join(instance_ids)} of {land.prefix}? Type 'yes': ")
        states = ec2.terminate(ec2=aws.client("ec2"), landscape=land, ids=instance_ids)
        for instance_id, state in states.items():
            if self.verbosity >= 1:
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
