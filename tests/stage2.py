"""Stage 2's docker-run logging options, as the rendered script computes them."""

import os
import subprocess
from pathlib import Path

from www.ops.config_push import render_stage2


def log_options(landscape, *, region, instance, container, directory, driver="awslogs"):
    """(driver, {option: value}) from the rendered stage 2's log_options for this container."""
    script = Path(directory) / "webserver.sh"
    script.write_text(render_stage2(project=landscape.project, env=landscape.env, region=region))
    result = subprocess.run(
        [
            "bash",
            "-c",
            'set -Eeuo pipefail; source "$0"; AWS_REGION=$1 CONTAINER_LOG_DRIVER=$2 '
            'INSTANCE_ID=$3; log_options "$4"',
            str(script),
            region,
            driver,
            instance,
            container,
        ],
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    words = result.stdout.splitlines()
    pairs = list(zip(words[::2], words[1::2], strict=True))
    (used,) = [value for flag, value in pairs if flag == "--log-driver"]
    options = dict(value.split("=", 1) for flag, value in pairs if flag == "--log-opt")
    return used, options
