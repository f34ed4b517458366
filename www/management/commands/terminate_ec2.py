from django.core.management.base import BaseCommand, CommandError

from www import aws, project
from www.ops import command_errors, ec2, landscape


class Command(BaseCommand):
    help = (
        "Terminate instances of an environment, by id; asks first unless --no-input. An "
        "instance of an Auto Scaling group is replaced by the group: to run fewer, lower the "
        "group's count with launch_ec2 --count N."
    )
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
            ec2_client = aws.client("ec2")
            members = ec2.group_members(ec2=ec2_client, landscape=land, ids=ids)
            states = ec2.terminate(ec2=ec2_client, landscape=land, ids=ids)
        for instance_id, state in states.items():
            if options["verbosity"] >= 1:
                self.stdout.write(self.style.SUCCESS(f"Terminated {instance_id} ({state})"))
            if instance_id in members:
                self.stdout.write(
                    self.style.WARNING(
                        f"{instance_id} belongs to Auto Scaling group {members[instance_id]}, "
                        "which launches a replacement to keep its count; to run fewer, "
                        f"./manage.py launch_ec2 --env {land.env.name} --count N"
                    )
                )

    def confirm(self, question):
        try:
            answer = input(question)
        except EOFError:
            raise CommandError(
                "no answer on stdin; pass --no-input to terminate without asking"
            ) from None
        if answer.strip() != "yes":
            raise CommandError("Terminate cancelled; nothing changed.")
