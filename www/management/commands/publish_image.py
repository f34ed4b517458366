import contextlib

from django.core.management.base import BaseCommand, CommandError

from www import aws, project
from www.ops import Result, command_errors, images, landscape


@contextlib.contextmanager
def docker_errors(docker):
    try:
        yield
    except docker.errors.DockerException as exc:
        raise CommandError(f"Docker: {exc}") from None


class Command(BaseCommand):
    help = (
        "Push <project>-release:TAG to the registry in project.env (IMAGE_REGISTRY: ecr or a "
        "registry address) and record it, by digest, as the image the environment runs "
        "(s3://<bucket>/deploy/release.env, read by the boot script)."
    )
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("--env", required=True, help="environment from project.env")
        parser.add_argument(
            "tag", help="release tag, as built by ./build_docker_image.sh release TAG"
        )
        parser.add_argument(
            "--registry",
            help="registry to use instead of IMAGE_REGISTRY (ecr, or e.g. 127.0.0.1:5000/team)",
        )
        parser.add_argument("--dry-run", action="store_true", help="print the plan only")

    def handle(self, *args, **options):
        import docker

        proj = project.load()
        tag, dry_run = options["tag"], options["dry_run"]
        registry = options["registry"] or proj.registry
        with command_errors(), docker_errors(docker):
            land = landscape.Landscape.of(proj, options["env"])
            s3 = aws.client("s3")
            images.read_release(s3=s3, env=land.env)  # the bucket must exist before any push
            docker_client = docker.from_env()
            image = images.local_image(docker_client, proj.image("release", tag))
            auth_config = None
            if registry == "ecr":
                ecr = aws.client("ecr")
                result, repository = images.ensure_ecr_repository(
                    ecr=ecr, name=land.release_repository, dry_run=dry_run
                )
                self.report(result, options)
                if dry_run:
                    return self.report(
                        Result("create", f"push of {image.tags[0]} to ECR", True), options
                    )
                host, auth_config = images.ecr_credentials(ecr=ecr)
                repository = f"{host}/{land.release_repository}"
            else:
                repository = f"{registry.rstrip('/')}/{land.release_repository}"
            digest = images.pushed_digest(
                docker_client=docker_client,
                image=image,
                repository=repository,
                tag=tag,
                auth_config=auth_config,
            )
            if digest:
                self.report(
                    Result("unchanged", f"image {repository}:{tag}", detail=digest), options
                )
            elif dry_run:
                self.report(Result("create", f"image {repository}:{tag}", True), options)
                return
            else:
                digest = images.push_image(
                    docker_client=docker_client,
                    image=image,
                    repository=repository,
                    tag=tag,
                    auth_config=auth_config,
                )
                self.report(Result("create", f"image {repository}:{tag}", detail=digest), options)
            self.report(
                images.record_release(
                    s3=s3, env=land.env, image=f"{repository}@{digest}", tag=tag, dry_run=dry_run
                ),
                options,
            )

    def report(self, result, options):
        if options["verbosity"] >= 1:
            style = self.style.SUCCESS if result.changed and not result.dry_run else str
            self.stdout.write(style(str(result)))
