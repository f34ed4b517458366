"""Release images: push <project>-release:TAG to the registry, record which one an env runs.

The record is s3://<bucket>/deploy/release.env (Environment.release_key), KEY=value lines that
stage 2 (deploy/aws/bootstrap.webserver.sh) reads:

    IMAGE=<registry>/<project>-release@sha256:...   what to pull, by digest: never a moving tag
    TAG=<tag>                                        what a person calls it

The registry is IMAGE_REGISTRY from project.env: "ecr" for the account's ECR in the region
(the repository is created on first push and docker logs in with an ECR token), or any
registry address such as registry.example.com:5000/team (reached without credentials).
"""

import base64
import re

from botocore.exceptions import ClientError

from www.ops import OpsError, Result, error_code
from www.ops.config_push import current_object, upload_private

DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
RELEASE_LINE = re.compile(r"^([A-Z_]+)=(.*)$")


# --- the record stage 2 reads -----------------------------------------------------------------


def release_record(image, tag):
    return f"IMAGE={image}\nTAG={tag}\n"


def parse_release(text):
    values = {}
    for line in text.splitlines():
        match = RELEASE_LINE.match(line.strip())
        if match:
            values[match.group(1)] = match.group(2)
    return values


def read_release(*, s3, env):
    """The release env runs ({"IMAGE": ..., "TAG": ...}), or None if none was published."""
    body = current_object(s3, env.bucket, env.release_key, env_name=env.name)
    if body is None:
        return None
    return parse_release(body.decode())


def record_release(*, s3, env, image, tag, dry_run=False):
    """Write release.env unless it already names this image."""
    body = release_record(image, tag).encode()
    current = current_object(s3, env.bucket, env.release_key, env_name=env.name)
    what = f"s3://{env.bucket}/{env.release_key}"
    if current == body:
        return Result("unchanged", what, detail=image)
    if not dry_run:
        upload_private(s3, env.bucket, env.release_key, body, "text/plain")
    return Result("create" if current is None else "update", what, dry_run, image)


# --- registries -------------------------------------------------------------------------------


def ensure_ecr_repository(*, ecr, name, dry_run=False):
    """The ECR repository, scanned on push and encrypted; returns (Result, repository URI)."""
    try:
        repo = ecr.describe_repositories(repositoryNames=[name])["repositories"][0]
        return Result("unchanged", f"ECR repository {name}"), repo["repositoryUri"]
    except ClientError as exc:
        if error_code(exc) != "RepositoryNotFoundException":
            raise
    if dry_run:
        return Result("create", f"ECR repository {name}", True), None
    repo = ecr.create_repository(
        repositoryName=name,
        imageScanningConfiguration={"scanOnPush": True},
        encryptionConfiguration={"encryptionType": "AES256"},
    )["repository"]
    return Result("create", f"ECR repository {name}"), repo["repositoryUri"]


def ecr_credentials(*, ecr):
    """(registry host, docker auth config) from an ECR authorization token."""
    data = ecr.get_authorization_token()["authorizationData"][0]
    username, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
    registry = data["proxyEndpoint"].removeprefix("https://").removeprefix("http://")
    return registry, {"username": username, "password": password}


# --- pushing ----------------------------------------------------------------------------------


def local_image(docker_client, source):
    import docker.errors

    try:
        return docker_client.images.get(source)
    except docker.errors.ImageNotFound:
        raise OpsError(
            f"no local image {source}: build it first (./build_docker_image.sh release TAG)"
        ) from None


def pushed_digest(*, docker_client, image, repository, tag, auth_config=None):
    """The digest repository:tag has in the registry if it is this very image, else None."""
    import docker.errors

    local = {
        d.partition("@")[2]
        for d in image.attrs.get("RepoDigests", [])
        if d.startswith(f"{repository}@")
    }
    if not local:
        return None
    try:
        remote = docker_client.images.get_registry_data(
            f"{repository}:{tag}", auth_config=auth_config
        )
    except docker.errors.APIError:  # NotFound included: not pushed yet
        return None
    return remote.id if remote.id in local else None


def push_image(*, docker_client, image, repository, tag, auth_config=None):
    """Tag the local image as repository:tag, push it, and return its digest."""
    import docker.errors

    image.tag(repository, tag)
    digest = None
    try:
        stream = docker_client.api.push(
            repository, tag=tag, stream=True, decode=True, auth_config=auth_config
        )
        for event in stream:
            if "error" in event:
                raise OpsError(f"push of {repository}:{tag} failed: {event['error'].strip()}")
            aux = event.get("aux") or {}
            if DIGEST.match(aux.get("Digest", "")):
                digest = aux["Digest"]
    except docker.errors.APIError as exc:
        raise OpsError(f"push of {repository}:{tag} failed: {exc.explanation or exc}") from None
    if digest is None:
        raise OpsError(f"push of {repository}:{tag} reported no digest")
    return digest
