import argparse
import datetime

from django.core.management.base import CommandError

from www import aws
from www.management.base import AWSCommand
from www.ops import logs


def duration(text):
    """argparse type of --since: a timedelta, or one line saying what to give."""
    try:
        return logs.parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


class Command(AWSCommand):
    help = (
        "Print an environment's log lines from CloudWatch Logs (group /<project>/<env>): every "
        "instance's containers and boot log, in time order, each with its time and "
        "<instance-id>/<source>. --follow keeps printing new lines until Ctrl-C."
    )

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument(
            "--since",
            type=duration,
            default=datetime.timedelta(hours=1),
            metavar="DURATION",
            help="how far back to start, e.g. 30m, 2h, 7d (default 1h)",
        )
        parser.add_argument(
            "--follow", action="store_true", help="keep printing new lines until Ctrl-C"
        )
        parser.add_argument("--instance", metavar="ID", help="only this instance's lines")
        parser.add_argument(
            "--grep", metavar="TEXT", help="only lines containing TEXT (case-sensitive)"
        )
        parser.add_argument(
            "--poll-seconds",
            type=float,
            default=2.0,
            help="with --follow: seconds between two reads (default 2)",
        )

    def handle(self, *args, since, follow, instance, grep, poll_seconds, **options):
        if poll_seconds <= 0:
            raise CommandError("--poll-seconds must be more than 0")
        query = {
            "logs": aws.client("logs"),
            "landscape": self.landscape(options),
            "since": datetime.datetime.now(datetime.UTC) - since,
            "instance": instance,
            "grep": grep,
        }
        try:
            if follow:
                for event in logs.follow_events(**query, poll_seconds=poll_seconds):
                    self.stdout.write(logs.format_event(event))
                    self.stdout.flush()
            else:
                for event in logs.read_events(**query):
                    self.stdout.write(logs.format_event(event))
        except KeyboardInterrupt:  # Ctrl-C ends --follow: a clean stop, not a traceback
            return
