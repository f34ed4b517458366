from django.core.management.base import BaseCommand

from www import aws, project
from www.ops import command_errors, config_push, environment


class Command(BaseCommand):
    help = (
        "Check an environment's config file and upload it to s3://<bucket>/config/<env>.py, "
        "with the stage-2 boot script at s3://<bucket>/deploy/webserver.sh (encrypted, private). "
        "Shows which settings change (names only); uploads nothing when nothing changed."
    )
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("--env", required=True, help="environment from project.env")
        parser.add_argument(
            "config_file",
            nargs="?",
            help="filled-in settings file (default: deploy/aws/config/<env>.py)",
        )
        parser.add_argument("--dry-run", action="store_true", help="check and compare only")

    def handle(self, *args, **options):
        proj = project.load()
        with command_errors():
            env = environment(proj, options["env"])
            results = config_push.push_config(
                s3=aws.client("s3"),
                project=proj,
                env=env,
                config_file=options["config_file"] or config_push.default_config_file(env),
                region=project.aws_region(),
                dry_run=options["dry_run"],
            )
            for result in results:
                if options["verbosity"] >= 1:
                    style = self.style.SUCCESS if result.changed and not result.dry_run else str
                    self.stdout.write(style(str(result)))
