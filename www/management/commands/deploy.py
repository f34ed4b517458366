import time

from django.core.management.base import CommandError

from www import aws
from www.management.base import AWSCommand
from www.ops import ec2, images, releases


def progress(report, digest):
    """One instance's state as the deploy sees it: (line, done)."""
    if report is None:
        return "no report yet", False
    on_target = releases.digest_of(report.get("image", "")) == digest
    health = "healthy" if report.get("healthy") else "not healthy"
    line = f"runs {report.get('release') or '-'}, {health}"
    if report.get("reason"):
        line += f": {report['reason']}"
    return line, on_target and bool(report.get("healthy"))


class Command(AWSCommand):
    help = (
        "Publish <project>-release:TAG if needed (like publish_image), then wait until every "
        "running instance of the environment reports it healthy (its status object in S3), "
        "printing each instance's progress. Exits 1 with the reason if the release is marked "
        "failed (an instance could not make it healthy and the record went back)."
    )
    dry_run_help = "print the plan only: publish nothing, wait for nothing"

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument("tag", help="release tag, as built by ./build_docker_image.sh")
        parser.add_argument(
            "--registry", help="registry to use instead of IMAGE_REGISTRY (as publish_image)"
        )
        parser.add_argument(
            "--timeout",
            type=int,
            default=900,
            help="seconds to wait for every instance (default 900)",
        )
        parser.add_argument(
            "--interval", type=float, default=5, help="seconds between checks (default 5)"
        )

    def handle(self, *args, tag, registry, timeout, interval, dry_run, **options):
        land = self.landscape(options)
        env = land.env
        s3 = aws.client("s3")
        registry = registry or self.project.registry
        self.report_all(
            images.publish(
                s3=s3,
                ecr=aws.client("ecr") if registry == "ecr" else None,
                landscape=land,
                registry=registry,
                tag=tag,
                dry_run=dry_run,
                sts=aws.client("sts"),
            )
        )
        if dry_run:
            self.stdout.write(
                f"Would wait until every running instance of {land.prefix} reports {tag} healthy"
            )
            return
        entries, _ = releases.read_history(s3, env)
        digest = next(e["digest"] for e in reversed(entries) if e["tag"] == tag)
        self.wait(
            s3=s3,
            ec2_client=aws.client("ec2"),
            land=land,
            tag=tag,
            digest=digest,
            timeout=timeout,
            interval=interval,
        )

    def wait(self, *, s3, ec2_client, land, tag, digest, timeout, interval):
        env = land.env
        deadline = time.monotonic() + timeout
        shown = {}
        while True:
            failed = releases.failed_release(s3, env, digest)
            if failed:
                current, _ = releases.read_record(s3, env)
                raise CommandError(
                    f"release {tag} failed on {failed.get('instance', '?')}: "
                    f"{failed.get('reason', '?')} (the environment runs "
                    f"{current.get('TAG', 'nothing')}: see ./manage.py releases --env {env.name})"
                )
            running = ec2.environment_instances(ec2=ec2_client, landscape=land, states=["running"])
            reports = releases.instance_statuses(s3, env)
            pending = []
            for instance in running:
                instance_id = instance["InstanceId"]
                line, done = progress(reports.get(instance_id), digest)
                if shown.get(instance_id) != line:
                    self.stdout.write(f"{instance_id}: {line}")
                    shown[instance_id] = line
                if not done:
                    pending.append(instance_id)
            if not pending:
                self.stdout.write(
                    self.style.SUCCESS(
                        f"{tag} runs healthy on {len(running)} instance(s) of {land.prefix}"
                    )
                )
                return
            if time.monotonic() >= deadline:
                raise CommandError(
                    f"{len(pending)} instance(s) did not report {tag} healthy within {timeout}s "
                    f"(--timeout): {', '.join(pending)}"
                )
            time.sleep(interval)
