from django.core.management.base import BaseCommand, CommandError

from www import rename
from www.project import BASE_DIR


class Command(BaseCommand):
    help = (
        "Rename a fork: set PROJECT_NAME in project.env, and the bucket names and "
        "pyproject.toml name that still follow the old name."
    )
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("name", help="the new project name, e.g. acme-shop")
        parser.add_argument(
            "--dry-run", action="store_true", help="show what would change; change nothing"
        )

    def handle(self, *args, name, dry_run, verbosity, **options):
        try:
            old_name, changes = rename.rename(BASE_DIR, name, dry_run=dry_run)
        except rename.InvalidName as exc:
            raise CommandError(str(exc)) from None
        if verbosity < 1:
            return
        if not changes:
            self.stdout.write(f"Project {name} exists, unchanged.")
            return
        verb = "Would rewrite" if dry_run else "Rewrote"
        for change in changes:
            self.stdout.write(f"{verb} {change}")
        if not dry_run:
            self.stdout.write(self.style.SUCCESS(f"Renamed project {old_name} -> {name}."))
