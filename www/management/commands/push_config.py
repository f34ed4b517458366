from www import aws, project
from www.management.base import AWSCommand
from www.ops import config_push


class Command(AWSCommand):
    help = (
        "Check an environment's config file and upload it to s3://<bucket>/config/<env>.py, "
        "with the stage-2 boot script at s3://<bucket>/deploy/<env>/webserver.sh (encrypted, "
        "private), after Django's checks (deploy checks: only stage may warn). Shows which "
        "settings change (names only); uploads nothing when nothing changed."
    )
    dry_run_help = "check and compare only"

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument(
            "config_file",
            nargs="?",
            help="filled-in settings file (default: deploy/aws/config/<env>.py)",
        )

    def handle(self, *args, env, config_file, dry_run, **options):
        self.report_all(
            config_push.push_config(
                s3=aws.client("s3"),
                project=self.project,
                env=env,
                config_file=config_file or config_push.default_config_file(env),
                region=project.aws_region(),
                dry_run=dry_run,
            )
        )
