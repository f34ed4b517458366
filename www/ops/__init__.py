"""The AWS steps behind the management commands, as plain functions, one module per area.

Each function takes the boto3 clients it needs as keyword arguments (the commands make them
with www.aws.client), so the same code runs against AWS and against a local emulator reached
through AWS_ENDPOINT_URL. Functions that converge a resource on its desired state yield one
Result per item (www.ops.results), so a command can print each as it happens. Problems the
operator can fix are raised as www.ops.errors.OpsError; only the commands
(www.management.base) turn them into CommandError, so nothing here imports the command layer.

    results      Result, converge, converge_exists
    errors       OpsError, error_code, value_or_none, describe_aws_failure
    templates    render / json_template of the files in deploy/aws/
    landscape    Landscape: every AWS name of an environment
    objects      S3 objects: read_object, object_exists, put_private, sync_object
    bucket       the environment's bucket
    network      default VPC and security groups
    iam          the web servers' role and instance profile
    rds          the optional database
    config_push  checking and uploading config/<env>.py and stage 2
    images       release images: push, record, publish
    ec2          web-server instances: launch, status, terminate
    loadbalancer a load-balanced env's front door: ALB, target group, certificate, DNS
    scaling      its instances: launch template and Auto Scaling group
    fleet        both, as setup_aws converges them
    teardown     removing them again
"""
