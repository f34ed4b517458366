from www import aws
from www.management.base import AWSCommand
from www.ops import images


class Command(AWSCommand):
    help = (
        "Push <project>-release:TAG to the registry in project.env (IMAGE_REGISTRY: ecr or a "
        "registry address) and record it, by digest, as the image the environment runs "
        "(s3://<bucket>/deploy/<env>/release.env, read by the boot script)."
    )
    dry_run_help = "print the plan only"

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument(
            "tag", help="release tag, as built by ./build_docker_image.sh release TAG"
        )
        parser.add_argument(
            "--registry",
            help="registry to use instead of IMAGE_REGISTRY (ecr, or e.g. 127.0.0.1:5000/team)",
        )

    def handle(self, *args, tag, registry, dry_run, **options):
        registry = registry or self.project.registry
        self.report_all(
            images.publish(
                s3=aws.client("s3"),
                ecr=aws.client("ecr") if registry == "ecr" else None,
                landscape=self.landscape(options),
                registry=registry,
                tag=tag,
                dry_run=dry_run,
                sts=aws.client("sts"),
            )
        )
