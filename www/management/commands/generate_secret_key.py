from django.core.management.base import BaseCommand
from django.core.management.utils import get_random_secret_key


class Command(BaseCommand):
    help = "Print a new random SECRET_KEY for a config file (deploy/aws/config/*.local.py)."
    requires_system_checks = []

    def handle(self, *args, **options):
        self.stdout.write(get_random_secret_key())
