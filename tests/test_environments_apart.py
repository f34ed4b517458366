"""Environments apart: a bucket each, deploy keys each, and a role that reads only its own."""

import fnmatch
import io

import boto3
import pytest
from django.core.management import call_command

from tests.helpers import MOTO_PUBLIC_AMI, filled_config
from www import project
from www.ops.landscape import Landscape

PROJECT = project.load()
STAGE = Landscape.of(PROJECT, "stage")
PROD = Landscape.of(PROJECT, "prod")


def test_a_bucket_shared_by_two_environments_is_refused_at_load(tmp_path):
    text = project.PROJECT_FILE.read_text().replace(
        "STAGE_BUCKET=webapp-stage", "STAGE_BUCKET=webapp"
    )
    assert "STAGE_BUCKET=webapp\n" in text
    path = tmp_path / "project.env"
    path.write_text(text)
    with pytest.raises(ValueError) as raised:
        project.load(path)
    assert str(raised.value) == (
        "project.env: STAGE_BUCKET and PROD_BUCKET are both 'webapp': "
        "give each environment a bucket of its own"
    )


def test_each_environment_has_its_own_deploy_keys():
    stage, prod = STAGE.env, PROD.env
    assert stage.stage2_key == "deploy/stage/webserver.sh"
    assert stage.release_key == "deploy/stage/release.env"
    assert prod.stage2_key == "deploy/prod/webserver.sh"
    assert {stage.stage2_key, stage.release_key}.isdisjoint({prod.stage2_key, prod.release_key})


def readable(landscape):
    """Object ARNs the environment's role may GetObject, from what setup_aws put in IAM."""
    document = boto3.client("iam").get_role_policy(
        RoleName=landscape.role, PolicyName="s3-config-and-files"
    )["PolicyDocument"]
    return [
        r for s in document["Statement"] if "s3:GetObject" in s["Action"] for r in s["Resource"]
    ]


def test_stage_role_cannot_read_prods_config_or_stage2_even_by_key(aws, tmp_path):
    for env in ("stage", "prod"):
        call_command(
            "setup_aws", "--env", env, "--ami-parameter", MOTO_PUBLIC_AMI, stdout=io.StringIO()
        )
        call_command(
            "push_config",
            "--env",
            env,
            str(filled_config(tmp_path, env)),
            stdout=io.StringIO(),
        )
    s3 = boto3.client("s3")
    stage_patterns = readable(STAGE)
    for landscape in (STAGE, PROD):
        keys = {o["Key"] for o in s3.list_objects_v2(Bucket=landscape.bucket)["Contents"]}
        assert keys == {landscape.env.config_key, landscape.env.stage2_key}
        for key in keys:
            # The same key in stage's bucket: stage's role reads it only if it is stage's own.
            arn = f"arn:aws:s3:::{STAGE.bucket}/{key}"
            allowed = any(fnmatch.fnmatchcase(arn, p) for p in stage_patterns)
            assert allowed == (landscape is STAGE), key
