"""Stage 1 run on the host as cloud-init would run it, against moto and the IMDSv2 test server."""

import os
import shutil
import subprocess

from tests.imds import IMDSServer


def run_stage1(tmp_path, metadata, environ=None):
    """Run the user-data EC2 holds for the instance, as cloud-init would, in environ (this
    process's environment by default)."""
    assert shutil.which("aws"), "the AWS CLI must be on PATH (stage 1 would install it)"
    script = tmp_path / "user-data.sh"
    script.write_bytes(metadata.paths["/latest/user-data"])
    server = IMDSServer(metadata).start()
    try:
        return subprocess.run(
            ["bash", str(script)],
            env={
                **(os.environ if environ is None else environ),
                "IMDS_ENDPOINT": server.url,
                "BOOTSTRAP_LOG": str(tmp_path / "bootstrap.log"),
                "BOOTSTRAP_DIR": str(tmp_path / "bootstrap"),
                "STATE_DIR": str(tmp_path / "state"),  # stage 2's
                "REDEPLOY_EVERY": "off",  # never a timer on the machine running the tests
            },
            capture_output=True,
            text=True,
            timeout=180,
        )
    finally:
        server.stop()
