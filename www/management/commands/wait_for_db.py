import os

from django.core.management.base import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS, connections

from www import project, start_steps


class Command(BaseCommand):
    help = "Wait until the database answers a query (SELECT 1), for at most --timeout seconds."
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument(
            "--timeout",
            type=float,
            default=os.environ.get("DB_WAIT_TIMEOUT") or project.load().db_wait_timeout,
            help="Seconds to wait (default: $DB_WAIT_TIMEOUT, else project.env's).",
        )
        parser.add_argument(
            "--database", default=DEFAULT_DB_ALIAS, help="Database alias (default: default)."
        )

    def handle(self, *args, timeout, database, verbosity, **options):
        connection = connections[database]
        try:
            waited = start_steps.wait_for_database(connection, timeout=timeout)
        except start_steps.DatabaseUnavailable as exc:
            raise CommandError(f"{exc} (DB_WAIT_TIMEOUT or --timeout sets the wait)") from None
        if verbosity >= 1:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Database {start_steps.describe(connection)} answered after {waited:.1f}s."
                )
            )
