"""Release images: push <project>-release:TAG to the registry, record which one an env runs.

The record is s3://<bucket>/deploy/<env>/release.env (Environment.release_key), KEY=value lines that
stage 2 (deploy/aws/webserver.sh) reads:

    IMAGE=<registry>/<project>-release@sha256:...   what to pull, by digest: never a moving tag
    TAG=<tag>                                        what a person calls it

The registry is IMAGE_REGISTRY from project.env: "ecr" for the account's ECR in the region
(the repository is created on first push and docker logs in with an ECR token), or any
registry address such as registry.example.com:5000/team (reached without credentials).
"""

import base64
import contextlib
import dataclasses
import ipaddress
import re

from www.ops import releases
from www.ops.errors import OpsError, value_or_none
from www.ops.objects import read_object, sync_object
from www.ops.results import Result, converge_exists

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
    body = read_object(s3, env.bucket, env.release_key, env_name=env.name)
    if body is None:
        return None
    return parse_release(body.decode())


def record_release(*, s3, env, image, tag, dry_run=False):
    """Write release.env unless it already names this image."""
    result = sync_object(
        s3,
        env=env,
        key=env.release_key,
        body=release_record(image, tag).encode(),
        content_type="text/plain",
        dry_run=dry_run,
    )
    return dataclasses.replace(result, detail=image)


# --- registries -------------------------------------------------------------------------------


def ensure_ecr_repository(*, ecr, name, dry_run=False):
    """The ECR repository, scanned on push and encrypted; returns (Result, repository URI)."""
    repo = value_or_none(
        lambda: ecr.describe_repositories(repositoryNames=[name]),
        ("RepositoryNotFoundException",),
        lambda r: r["repositories"][0],
    )
    exists = repo is not None

    def create():
        nonlocal repo
        repo = ecr.create_repository(
            repositoryName=name,
            imageScanningConfiguration={"scanOnPush": True},
            encryptionConfiguration={"encryptionType": "AES256"},
        )["repository"]

    result = converge_exists(f"ECR repository {name}", exists, create, dry_run=dry_run)
    return result, repo and repo["repositoryUri"]


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


CHECK_REGISTRY = (
    "check IMAGE_REGISTRY in project.env (or --registry) and that this machine reaches it"
)


def push_image(*, docker_client, image, repository, tag, auth_config=None):
    """Tag the local image as repository:tag, push it, and return its digest.

    A failed push removes the repository:tag reference it made, so no tag of an image that
    is not in the registry stays behind.
    """
    import docker.errors

    reference = f"{repository}:{tag}"
    try:
        docker_client.images.get(reference)
        tagged_here = False
    except docker.errors.ImageNotFound:
        tagged_here = True
    image.tag(repository, tag)
    try:
        digest = _push(docker_client, repository, tag, auth_config)
    except OpsError:
        if tagged_here:
            with contextlib.suppress(docker.errors.APIError):
                docker_client.images.remove(reference, noprune=True)
        raise
    return digest


def _push(docker_client, repository, tag, auth_config):
    import docker.errors

    digest = None
    failed = f"push of {repository}:{tag} failed"
    try:
        stream = docker_client.api.push(
            repository, tag=tag, stream=True, decode=True, auth_config=auth_config
        )
        for event in stream:
            if "error" in event:
                raise OpsError(f"{failed}: {event['error'].strip()}; {CHECK_REGISTRY}")
            aux = event.get("aux") or {}
            if DIGEST.match(aux.get("Digest", "")):
                digest = aux["Digest"]
    except docker.errors.APIError as exc:
        raise OpsError(f"{failed}: {exc.explanation or exc}; {CHECK_REGISTRY}") from None
    if digest is None:
        raise OpsError(f"push of {repository}:{tag} reported no digest; {CHECK_REGISTRY}")
    return digest


def registry_warning(registry, docker_info=None):
    """Why instances may not pull from registry (one line), or "" when nothing stands out.

    A registry on this machine's loopback is out of the instances' reach; one that Docker
    reaches over plain HTTP (an insecure registry here) is refused by the instances' Docker
    unless they list it too. docker_info is the engine's `docker info`, if at hand.
    """
    host = registry.split("/", 1)[0]
    hostname = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    hostname = hostname.strip("[]")
    try:
        address = ipaddress.ip_address(hostname)
    except ValueError:
        address = None
    if hostname == "localhost" or (address is not None and address.is_loopback):
        return (
            f"registry {host} is this machine's loopback: instances cannot pull from it; "
            "set IMAGE_REGISTRY in project.env to an address they reach, then rerun setup_aws"
        )
    config = ((docker_info or {}).get("RegistryConfig") or {}).get("IndexConfigs") or {}
    if config.get(host, {}).get("Secure") is False:
        return (
            f"registry {host} is reached over plain HTTP (an insecure registry): instances' "
            "Docker refuses it unless it is in their insecure-registries; prefer HTTPS or ecr"
        )
    return ""


# --- publishing: push, then record --------------------------------------------------------------


def docker_sdk():
    """The docker SDK, imported only when used: the release image ships this module without it."""
    try:
        import docker
        import docker.errors
    except ImportError:
        raise OpsError(
            "publish_image needs the docker SDK (requirements/dev.txt): run it where the "
            "release image is built, not inside it"
        ) from None
    return docker


@contextlib.contextmanager
def docker_errors():
    """A Docker engine failure as one line."""
    docker = docker_sdk()
    try:
        yield
    except docker.errors.DockerException as exc:
        raise OpsError(f"Docker: {exc}") from None


def publish(*, s3, ecr, landscape, registry, tag, dry_run=False, docker_client=None, sts=None):
    """Push <project>-release:tag to registry and record it as the env's release; yield Results.

    registry is "ecr" (ecr is then the ECR client) or a registry address. The bucket is checked
    before anything is pushed, and a rerun pushes nothing when the registry has this image.
    The release is appended to the env's history (www.ops.releases) with its git revision and
    who published it (sts: the caller's ARN).
    """
    env = landscape.env
    docker = docker_sdk()  # a local prerequisite, checked before any AWS call
    read_release(s3=s3, env=env)  # the bucket must exist before any push
    with docker_errors():
        if docker_client is None:
            docker_client = docker.from_env()
        image = local_image(docker_client, landscape.project.image("release", tag))
        auth_config = None
        if registry == "ecr":
            result, _ = ensure_ecr_repository(
                ecr=ecr, name=landscape.release_repository, dry_run=dry_run
            )
            yield result
            if dry_run:
                where = f"ECR repository {landscape.release_repository}"
                yield Result("push", f"{image.tags[0]} to {where}", True)
                return
            host, auth_config = ecr_credentials(ecr=ecr)
            repository = f"{host}/{landscape.release_repository}"
        else:
            repository = f"{registry.rstrip('/')}/{landscape.release_repository}"
            warning = registry_warning(registry, docker_client.info())
            if warning:
                yield Result("attention", "warning:", detail=warning)
        target = dict(
            docker_client=docker_client,
            image=image,
            repository=repository,
            tag=tag,
            auth_config=auth_config,
        )
        digest = pushed_digest(**target)
        if digest:
            yield Result("unchanged", f"image {repository}:{tag}", detail=digest)
        elif dry_run:
            yield Result("push", f"{image.tags[0]} to {repository}:{tag}", True)
            return
        else:
            digest = push_image(**target)
            yield Result("create", f"image {repository}:{tag}", detail=digest)
    yield from releases.record(
        s3=s3,
        sts=sts,
        env=env,
        image=f"{repository}@{digest}",
        tag=tag,
        revision=releases.image_revision(image),
        dry_run=dry_run,
    )
