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
        self.stderr.write(self.style.WARNING(orphan_warning(old_name, changes)))


def orphan_warning(old_name, changes):
    """What AWS resources the old name may have left, without asking AWS (no credentials
    needed): nothing renames them, and the commands only ever look for the new names."""
    buckets = [c.old for c in changes if c.key.endswith("_BUCKET")]
    return (
        f"warning: AWS resources made under {old_name} keep that name and no command finds "
        f"them after the rename: buckets {', '.join(buckets) or '(chosen by hand)'}, "
        f"security groups and IAM roles {old_name}-<env>-*, ECR repository "
        f"{old_name}-release, instances tagged Project={old_name}. If setup_aws ran under "
        f"{old_name}, terminate those instances and delete those resources (or keep the name)."
    )
