"""The prod fleet's names and the commands the fleet tests run against moto's server.

The fixtures built on them (zone, prod_fleet) are conftest's.
"""

import io

import boto3
from django.core.management import call_command

from tests.helpers import MOTO_PUBLIC_AMI, PROJECT
from www.ops import loadbalancer, scaling
from www.ops.landscape import Landscape

PROD = Landscape.of(PROJECT, "prod")
DOMAINS = PROD.env.domains
ZONE = DOMAINS[0].split(".", 1)[1] + "."  # webapp.example.com -> example.com.


def setup_aws(*args, env="prod"):
    out = io.StringIO()
    call_command("setup_aws", "--env", env, "--ami-parameter", MOTO_PUBLIC_AMI, *args, stdout=out)
    return out.getvalue()


def setup_and_wait():
    return setup_aws("--wait", "--wait-delay", "1")


def command(name, *args):
    out = io.StringIO()
    call_command(name, "--env", "prod", *args, stdout=out)
    return out.getvalue()


def create_zone():
    zone = boto3.client("route53").create_hosted_zone(Name=ZONE, CallerReference="test")
    return zone["HostedZone"]["Id"]


def find_load_balancer():
    return loadbalancer.find_load_balancer(boto3.client("elbv2"), PROD)


def find_group():
    return scaling.find_group(boto3.client("autoscaling"), PROD)
