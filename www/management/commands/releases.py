from www import aws
from www.management.base import AWSCommand
from www.ops import releases


class Command(AWSCommand):
    help = (
        "List an environment's release history, newest first: tag, git revision, who published "
        "it and when; the current release is marked '*', a failed one with its reason."
    )

    def handle(self, *args, **options):
        env = self.landscape(options).env
        view = releases.history_view(aws.client("s3"), env)
        if not view:
            self.stdout.write(f"No releases of {env.name}: run ./manage.py publish_image.")
            return
        for entry in view:
            mark = "*" if entry["current"] else " "
            line = (
                f"{mark} {entry['tag']}  {entry['digest'][:19]}  {entry['revision'][:12]}  "
                f"{entry['at']}  {entry['by']}"
            )
            if entry["failed"]:
                failed = entry["failed"]
                line += f"  FAILED on {failed.get('instance', '?')}: {failed.get('reason', '?')}"
            self.stdout.write(line)
