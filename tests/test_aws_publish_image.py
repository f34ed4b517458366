"""publish_image: a real push to Debian's docker-registry on loopback, recorded in moto's S3.

The image pushed is a tiny one imported here from a tarball (not the release image, which
other tests build), tagged <project>-release:<unique tag>, and removed by its id afterwards.
"""

import io
import json
import tarfile
import uuid

import boto3
import pytest
import requests
from django.core.management import CommandError, call_command

from tests.servers import free_port
from www import project
from www.ops import images, releases
from www.ops.landscape import Landscape

PROJECT = project.load()
STAGE = Landscape.of(PROJECT, "stage")


@pytest.fixture
def tiny_release(docker_client):
    """A tiny image tagged <project>-release:<tag>; every tag of it removed afterwards."""
    tag = f"test-{uuid.uuid4().hex[:10]}"
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        payload = f"release {tag}\n".encode()
        info = tarfile.TarInfo("release.txt")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    repository = PROJECT.image("release")
    docker_client.api.import_image_from_data(
        data.getvalue(),
        repository=repository,
        tag=tag,
        changes=[f"LABEL org.opencontainers.image.revision=rev-{tag}"],
    )
    image = docker_client.images.get(f"{repository}:{tag}")
    yield tag, image
    docker_client.images.remove(image.id, force=True)


def publish(*args):
    out = io.StringIO()
    call_command("publish_image", "--env", "stage", *args, stdout=out)
    return out.getvalue()


def release_env():
    body = boto3.client("s3").get_object(Bucket=STAGE.bucket, Key=STAGE.env.release_key)
    return body


def test_push_records_the_digest_and_the_image_pulls_back(
    landscape, registry, docker_client, tiny_release
):
    tag, image = tiny_release
    target = f"{registry.address}/team"
    out = publish(tag, "--registry", target)
    repository = f"{target}/{PROJECT.name}-release"
    obj = release_env()
    assert obj["ServerSideEncryption"] == "AES256"
    record = images.parse_release(obj["Body"].read().decode())
    assert record["TAG"] == tag
    name, _, digest = record["IMAGE"].partition("@")
    assert name == repository and digest.startswith("sha256:")
    assert f"Created image {repository}:{tag} ({digest})" in out

    manifest = requests.get(
        f"http://{registry.address}/v2/team/{PROJECT.name}-release/manifests/{digest}",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
        timeout=10,
    )
    assert manifest.status_code == 200

    docker_client.images.remove(image.id, force=True)  # every local tag: the pull must fetch
    pulled = docker_client.images.pull(record["IMAGE"])
    assert pulled.id == image.id
    pulled.tag(PROJECT.image("release"), tag)  # so the fixture's cleanup finds it by id


def test_second_publish_changes_nothing(landscape, registry, tiny_release):
    tag, _ = tiny_release
    target = f"{registry.address}/team"
    publish(tag, "--registry", target)
    versions = boto3.client("s3").list_object_versions(Bucket=STAGE.bucket)["Versions"]
    out = publish(tag, "--registry", target)
    lines = [line for line in out.strip().splitlines() if not line.startswith("warning:")]
    assert len(lines) == 2 and all("exists, unchanged" in line for line in lines), out
    assert boto3.client("s3").list_object_versions(Bucket=STAGE.bucket)["Versions"] == versions


def test_dry_run_pushes_and_records_nothing(landscape, registry, tiny_release):
    tag, _ = tiny_release
    out = publish(tag, "--registry", f"{registry.address}/team", "--dry-run")
    assert f"Would push {PROJECT.image('release', tag)} to {registry.address}/team/" in out
    tags = requests.get(
        f"http://{registry.address}/v2/team/{PROJECT.name}-release/tags/list", timeout=10
    )
    assert tags.status_code == 404 or tag not in (tags.json().get("tags") or [])
    assert "Contents" not in boto3.client("s3").list_objects_v2(Bucket=STAGE.bucket)


def test_missing_local_image_is_a_clear_error(landscape, registry):
    with pytest.raises(CommandError, match=r"no local image .*-release:no-such-tag: build it"):
        publish("no-such-tag", "--registry", f"{registry.address}/team")


def test_missing_bucket_says_run_setup_aws(aws, registry, tiny_release):
    tag, _ = tiny_release
    with pytest.raises(CommandError, match="run ./manage.py setup_aws --env stage first"):
        publish(tag, "--registry", f"{registry.address}/team")


def test_ecr_repository_is_created_once_and_token_gives_the_registry(aws):
    ecr = boto3.client("ecr")
    result, uri = images.ensure_ecr_repository(ecr=ecr, name=STAGE.release_repository)
    assert str(result) == f"Created ECR repository {STAGE.release_repository}"
    repo = ecr.describe_repositories(repositoryNames=[STAGE.release_repository])["repositories"][0]
    assert repo["imageScanningConfiguration"] == {"scanOnPush": True}
    again, same_uri = images.ensure_ecr_repository(ecr=ecr, name=STAGE.release_repository)
    assert not again.changed and same_uri == uri
    host, auth = images.ecr_credentials(ecr=ecr)
    assert uri == f"{host}/{STAGE.release_repository}"
    assert host.endswith(".amazonaws.com") and auth["username"] == "AWS" and auth["password"]


def test_a_loopback_registry_is_recorded_with_a_warning(landscape, registry, tiny_release):
    tag, _ = tiny_release
    out = publish(tag, "--registry", f"{registry.address}/team")
    host = registry.address
    assert (
        f"warning: registry {host} is this machine's loopback: instances cannot pull from it; "
        "set IMAGE_REGISTRY in project.env to an address they reach, then rerun setup_aws"
    ) in out


def test_registry_warning_reads_dockers_insecure_registries():
    info = {"RegistryConfig": {"IndexConfigs": {"reg.example.com:5000": {"Secure": False}}}}
    assert "plain HTTP" in images.registry_warning("reg.example.com:5000/team", info)
    assert images.registry_warning("reg.example.com/team", info) == ""
    assert "loopback" in images.registry_warning("localhost:5000")
    assert images.registry_warning("ecr.example.com/x") == ""


def test_a_failed_push_leaves_no_registry_tag_and_names_the_setting(
    landscape, docker_client, tiny_release
):
    tag, image = tiny_release
    target = f"127.0.0.1:{free_port()}/team"  # nothing listens there
    with pytest.raises(CommandError, match=r"push of .* failed: .*check IMAGE_REGISTRY"):
        publish(tag, "--registry", target)
    image.reload()
    assert image.tags == [PROJECT.image("release", tag)]
    assert "Contents" not in boto3.client("s3").list_objects_v2(Bucket=STAGE.bucket)


def test_ecr_dry_run_says_would_push(landscape, tiny_release):
    tag, _ = tiny_release
    out = publish(tag, "--registry", "ecr", "--dry-run")
    assert f"Would create ECR repository {STAGE.release_repository}" in out
    assert (
        f"Would push {PROJECT.image('release', tag)} to ECR repository {STAGE.release_repository}"
        in out
    )
    assert boto3.client("ecr").describe_repositories()["repositories"] == []


def test_publish_appends_tag_digest_revision_who_and_when_to_the_history(
    landscape, registry, tiny_release
):
    tag, _ = tiny_release
    publish(tag, "--registry", f"{registry.address}/team")
    entries, _ = releases.read_history(boto3.client("s3"), STAGE.env)
    (entry,) = entries
    record = images.parse_release(release_env()["Body"].read().decode())
    assert entry["tag"] == tag and entry["image"] == record["IMAGE"]
    assert entry["digest"] == record["IMAGE"].partition("@")[2]
    assert entry["revision"] == f"rev-{tag}"  # the image's OCI label
    assert entry["by"] == boto3.client("sts").get_caller_identity()["Arn"]
    assert entry["at"].endswith("Z")


def deploy(*args):
    out = io.StringIO()
    call_command("deploy", "--env", "stage", *args, "--interval", "0.2", stdout=out)
    return out.getvalue()


def report(instance_id, record, *, healthy=True, reason=""):
    body = {"release": record["TAG"], "image": record["IMAGE"], "healthy": healthy}
    boto3.client("s3").put_object(
        Bucket=STAGE.bucket,
        Key=f"{STAGE.env.status_prefix}{instance_id}.json",
        Body=json.dumps({**body, "reason": reason}).encode(),
    )


def running_instance():
    ec2 = boto3.client("ec2")
    ami = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    tags = [{"ResourceType": "instance", "Tags": STAGE.tags}]
    (instance,) = ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1, TagSpecifications=tags)[
        "Instances"
    ]
    return instance["InstanceId"]


def test_deploy_waits_for_every_instance_to_report_the_release_healthy(
    landscape, registry, tiny_release
):
    tag, _ = tiny_release
    target = f"{registry.address}/team"
    instance_id = running_instance()
    with pytest.raises(CommandError, match=rf"1 instance\(s\) did not report {tag} healthy"):
        deploy(tag, "--registry", target, "--timeout", "1")
    record = images.parse_release(release_env()["Body"].read().decode())
    report(instance_id, record)
    out = deploy(tag, "--registry", target, "--timeout", "30")
    assert f"{instance_id}: runs {tag}, healthy" in out
    assert f"{tag} runs healthy on 1 instance(s)" in out


def test_deploy_exits_1_when_the_release_is_marked_failed(landscape, registry, tiny_release):
    tag, _ = tiny_release
    target = f"{registry.address}/team"
    assert "Would wait until every running instance" in deploy(
        tag, "--registry", target, "--dry-run"
    )
    publish(tag, "--registry", target)
    digest = images.parse_release(release_env()["Body"].read().decode())["IMAGE"].partition("@")[2]
    boto3.client("s3").put_object(
        Bucket=STAGE.bucket,
        Key=STAGE.env.failed_release_key(digest),
        Body=json.dumps({"instance": "i-0abc", "reason": "/health did not answer"}).encode(),
    )
    with pytest.raises(CommandError, match=rf"release {tag} failed on i-0abc: /health did not"):
        deploy(tag, "--registry", target, "--timeout", "30")
