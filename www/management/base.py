"""The base of the AWS commands: the options they share, their report, their one-line errors.

AWSCommand owns --env (the environments listed in project.env), --dry-run and --no-input
(for the commands that set dry_run_help / no_input_help), prints the Results the ops functions
yield at the chosen verbosity, and turns whatever ops, AWS or boto3 raised into one
CommandError line, never a traceback.
"""

import argparse
import contextlib

from django.core.management.base import BaseCommand, CommandError

from www import aws, project
from www.ops import alarms, ec2
from www.ops.errors import AWS_ERRORS, OpsError, describe_aws_failure
from www.ops.landscape import Landscape


@contextlib.contextmanager
def command_errors():
    """Let a command fail with one line, never a traceback, whatever ops, AWS or boto3 raised.

    The AWS line is "<service> <Operation>: <error code or class> — <what to do>". It carries
    no message text from AWS or botocore, which may echo a request's values; the chained
    exception keeps them for ./manage.py ... --traceback.
    """
    try:
        yield
    except OpsError as exc:
        raise CommandError(str(exc)) from None
    except AWS_ERRORS as exc:
        raise CommandError(describe_aws_failure(exc)) from exc


def add_no_input_argument(parser, help="Do not prompt the user for input of any kind."):
    """Django's --no-input/--noinput, into options["interactive"]."""
    parser.add_argument(
        "--no-input", "--noinput", action="store_false", dest="interactive", help=help
    )


def add_ami_arguments(parser, *, scope=""):
    """--ami and --ami-parameter (help prefixed by scope): what ami_of reads."""
    parser.add_argument(
        "--ami", help=f"{scope}AMI id to use instead of looking one up (Debian or Ubuntu only)"
    )
    parser.add_argument(
        "--ami-parameter",
        default=ec2.DEFAULT_AMI_PARAMETER,
        help=f"{scope}SSM parameter naming the AMI (default {ec2.DEFAULT_AMI_PARAMETER})",
    )


def ami_of(options):
    """The AMI of --ami, else the one --ami-parameter names in SSM."""
    return ec2.choose_ami(
        ssm=aws.client("ssm"), ami=options["ami"], parameter=options["ami_parameter"]
    )


def instance_status_alarms(land, ec2_client, *, dry_run, leaving=()):
    """The single instances' status-check alarms kept in step by launch_ec2 and terminate_ec2
    (alarms.instance_status_alarms), with the clients it needs."""
    return alarms.instance_status_alarms(
        cloudwatch=aws.client("cloudwatch"),
        sns=aws.client("sns"),
        sts=aws.client("sts"),
        ec2=ec2_client,
        landscape=land,
        leaving=leaving,
        dry_run=dry_run,
    )


def environment_argument(proj):
    """argparse type of --env: the named Environment of proj, or one line naming the choices."""

    def environment(name):
        try:
            return proj.environment(name)
        except project.UnknownEnvironment as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return environment


class AWSCommand(BaseCommand):
    requires_system_checks = []
    dry_run_help = None  # the --dry-run option's help; None: the command has no --dry-run
    no_input_help = None  # the --no-input option's help; None: the command never asks

    def add_arguments(self, parser):
        proj = project.load()
        parser.add_argument(
            "--env",
            required=True,
            type=environment_argument(proj),
            metavar="{" + ",".join(proj.environments) + "}",
            help="environment from project.env",
        )
        if self.dry_run_help:
            parser.add_argument("--dry-run", action="store_true", help=self.dry_run_help)
        if self.no_input_help:
            add_no_input_argument(parser, self.no_input_help)

    def execute(self, *args, **options):
        self.verbosity = options.get("verbosity", 1)
        with command_errors():
            return super().execute(*args, **options)

    @property
    def project(self):
        return project.load()

    def landscape(self, options):
        """The names of the --env environment's AWS resources."""
        return Landscape(self.project, options["env"])

    def report(self, result):
        """One Result: a warning when it needs attention, else a line at verbosity 1 and up."""
        if result.verb in ("attention", "drift"):
            self.stdout.write(self.style.WARNING(str(result)))
        elif self.verbosity >= 1:
            style = self.style.SUCCESS if result.changed and not result.dry_run else str
            self.stdout.write(style(str(result)))

    def report_all(self, *steps):
        for step in steps:
            for result in step:
                self.report(result)
