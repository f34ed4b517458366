from django.contrib.staticfiles.storage import staticfiles_storage
from django.core.files.base import ContentFile
from django.core.management import call_command
from django.core.management.base import BaseCommand

from www import start_steps
from www.management.base import add_no_input_argument


class Command(BaseCommand):
    help = (
        "Run collectstatic unless this release's static files are already in the static "
        "storage: a marker named after a fingerprint of the files (.collected/<hash>) says so. "
        "A second start of the same release uploads nothing."
    )
    requires_system_checks = []

    def add_arguments(self, parser):
        add_no_input_argument(parser)
        parser.add_argument(
            "--dry-run", action="store_true", help="Say what would be done; change nothing."
        )

    def handle(self, *args, interactive, dry_run, verbosity, **options):
        fingerprint = start_steps.static_fingerprint()
        marker = start_steps.collected_marker(fingerprint)
        if start_steps.is_collected(staticfiles_storage, fingerprint):
            if verbosity >= 1:
                self.stdout.write(
                    f"Static files {fingerprint} already collected ({marker} exists), unchanged."
                )
            return
        if dry_run:
            self.stdout.write(f"Would collect static files {fingerprint} and create {marker}.")
            return
        call_command(
            "collectstatic",
            interactive=interactive,
            verbosity=verbosity,
            stdout=self.stdout,
            stderr=self.stderr,
        )
        staticfiles_storage.save(marker, ContentFile(f"{fingerprint}\n".encode()))
        if verbosity >= 1:
            self.stdout.write(self.style.SUCCESS(f"Collected static files {fingerprint}."))
