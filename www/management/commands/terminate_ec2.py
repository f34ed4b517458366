from django.core.management.base import CommandError

from www import aws
from www.management.base import AWSCommand, instance_status_alarms
from www.ops import ec2


class Command(AWSCommand):
    help = (
        "Terminate instances of an environment, by id; asks first unless --no-input. An id "
        "already terminated is reported unchanged; --dry-run says what would be terminated. An "
        "instance of an Auto Scaling group is replaced by the group: to run fewer, lower the "
        "group's count with launch_ec2 --count N."
    )
    no_input_help = "do not ask for confirmation"
    dry_run_help = "say what would be terminated; terminate nothing"

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument("instance_ids", nargs="+", metavar="ID", help="instance ids")

    def handle(self, *args, instance_ids, interactive, dry_run, **options):
        land = self.landscape(options)
        if interactive and not dry_run:
            self.confirm(f"Terminate {', '.join(instance_ids)} of {land.prefix}? Type 'yes': ")
        ec2_client = aws.client("ec2")
        members = ec2.group_members(ec2=ec2_client, landscape=land, ids=instance_ids)
        self.report_all(
            ec2.terminate(ec2=ec2_client, landscape=land, ids=instance_ids, dry_run=dry_run)
        )
        if set(instance_ids) - set(members):  # a group's members share the group's alarm
            self.report_all(
                instance_status_alarms(land, ec2_client, dry_run=dry_run, leaving=instance_ids)
            )
        for instance_id in instance_ids:
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
