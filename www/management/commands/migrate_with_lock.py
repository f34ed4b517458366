from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS, connections

from www import start_steps
from www.management.base import add_no_input_argument


class Command(BaseCommand):
    help = (
        "Run migrate while holding a PostgreSQL advisory lock, so that containers starting "
        "together on one database migrate it once and none fails. Other databases migrate "
        "without a lock."
    )
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument(
            "--lock-timeout",
            type=float,
            default=600,
            help="Seconds to wait for another process's migration to finish (default 600).",
        )
        parser.add_argument(
            "--database", default=DEFAULT_DB_ALIAS, help="Database alias (default: default)."
        )
        add_no_input_argument(parser)

    def handle(self, *args, lock_timeout, database, interactive, verbosity, **options):
        def migrate():
            call_command(
                "migrate",
                database=database,
                interactive=interactive,
                verbosity=verbosity,
                stdout=self.stdout,
                stderr=self.stderr,
            )

        if connections[database].vendor != "postgresql":
            migrate()
            return
        name = f"{settings.PROJECT.name}:migrate"
        try:
            with start_steps.advisory_lock(database, name, timeout=lock_timeout):
                if verbosity >= 2:
                    self.stdout.write(f"Holding advisory lock {name!r}.")
                migrate()
        except start_steps.LockTimeout as exc:
            raise CommandError(f"{exc}; is another container's migration stuck?") from None
