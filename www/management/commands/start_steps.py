from functools import partial
from pathlib import Path

from django.core.management import call_command
from django.core.management.base import BaseCommand

from www.management.base import add_no_input_argument


class Command(BaseCommand):
    help = (
        "The release start-up steps in one process: wait_for_db, then migrate_with_lock, "
        "then collectstatic_once. One process pays for the interpreter, Django's set-up and "
        "the config fetch once instead of once per step."
    )
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument(
            "--no-migrate",
            action="store_false",
            dest="migrate",
            help="Do not migrate (instances that must not change the schema).",
        )
        parser.add_argument(
            "--no-collectstatic",
            action="store_false",
            dest="collectstatic",
            help="Do not collect static files.",
        )
        parser.add_argument(
            "--ready-file",
            type=Path,
            help="Create this file once every step has succeeded (start.sh's gate for gunicorn: "
            "it opens before this process's own exit, which takes a while).",
        )
        add_no_input_argument(parser)

    def handle(self, *args, migrate, collectstatic, ready_file, interactive, verbosity, **options):
        step = partial(call_command, verbosity=verbosity, stdout=self.stdout, stderr=self.stderr)
        step("wait_for_db")
        if migrate:
            step("migrate_with_lock", interactive=interactive)
        elif verbosity >= 1:
            self.stdout.write("Not migrating (--no-migrate).")
        if collectstatic:
            step("collectstatic_once", interactive=interactive)
        elif verbosity >= 1:
            self.stdout.write("Not collecting static files (--no-collectstatic).")
        if ready_file:
            ready_file.touch()
