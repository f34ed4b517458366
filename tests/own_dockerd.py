"""A Docker daemon of the rig's own, for containers whose logging driver needs AWS credentials.

Docker's awslogs driver runs inside the daemon and takes its credentials from the DAEMON's
environment (on EC2: the instance role). The machine's shared daemon must not be given the
emulator's keys or be restarted, so the rig starts a second dockerd for itself: its own data
root, exec root (and the containerd it starts there), pidfile, config file and unix socket,
all in one temporary directory; no bridge and no iptables rules (its containers use the host
network, like every test container); AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY=testing in its
environment. stop() ends that daemon by its pid and removes the directory: the machine's
configuration is as it was.

    with OwnDockerDaemon() as daemon:
        daemon.load_image(docker_client, "webapp-release:tag")
        daemon.client.containers.run(...)
"""

import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import docker

from tests.servers import AWS_TEST_ENV, stop_process, wait_until


class OwnDockerDaemon:
    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="rig-dockerd-"))
        self.socket = self.dir / "docker.sock"
        self.url = f"unix://{self.socket}"
        self.log_path = self.dir / "dockerd.log"
        self.proc = None
        self.client = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def start(self):
        config = self.dir / "daemon.json"
        config.write_text("{}\n")  # never the machine's /etc/docker/daemon.json
        env = {
            "PATH": os.environ["PATH"],
            **AWS_TEST_ENV,
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        namespace = f"rig-dockerd-{uuid.uuid4().hex[:12]}"  # containerd's: letters, digits, -
        # A bridge of its own: dockerd started with --bridge=none deletes the host's docker0,
        # which every later container on the machine's daemon's default network needs.
        self.bridge = f"rigbr{uuid.uuid4().hex[:8]}"
        subprocess.run(["ip", "link", "add", "name", self.bridge, "type", "bridge"], check=True)
        subprocess.run(["ip", "addr", "add", "169.254.253.1/30", "dev", self.bridge], check=True)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [
                    "dockerd",
                    f"--config-file={config}",
                    f"--data-root={self.dir / 'data'}",
                    f"--exec-root={self.dir / 'exec'}",
                    f"--pidfile={self.dir / 'dockerd.pid'}",
                    f"--host={self.url}",
                    f"--containerd-namespace={namespace}",
                    f"--containerd-plugins-namespace={namespace}-plugins",
                    f"--bridge={self.bridge}",
                    "--iptables=false",
                    "--ip-masq=false",
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

        def up():
            if self.proc.poll() is not None:
                raise AssertionError(f"dockerd exited:\n{self.logs()}")
            try:  # the client asks the daemon its API version: only once it answers
                self.client = docker.DockerClient(base_url=self.url, timeout=300)
            except docker.errors.DockerException:
                return False
            return self.client.ping()

        try:
            wait_until(up, timeout=60, what="the rig's own dockerd")
        except BaseException:
            self.stop()
            raise
        return self

    def load_image(self, source_client, name):
        """Copy image name from the machine's daemon into this one (docker save | load)."""
        image = source_client.images.get(name)
        self.client.images.load(b"".join(image.save(named=True)))

    def logs(self):
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self):
        """Remove this daemon's containers, stop it by its pid, remove its directory."""
        if self.client is not None:
            try:
                for container in self.client.containers.list(all=True):
                    container.remove(force=True)
            except docker.errors.DockerException:
                pass
            self.client.close()
        if self.proc is not None and self.proc.poll() is None:
            stop_process(self.proc, grace=30)
        for mount_point in self._mounts():  # dockerd leaves exec/netns/default mounted
            subprocess.run(["umount", "--lazy", mount_point], check=False)
        shutil.rmtree(self.dir, ignore_errors=True)
        if getattr(self, "bridge", None):
            subprocess.run(["ip", "link", "delete", self.bridge], check=False)

    def _mounts(self):
        """Mount points under this daemon's directory, deepest first."""
        with open("/proc/self/mountinfo") as mountinfo:
            points = [line.split()[4] for line in mountinfo]
        inside = [p for p in points if p == str(self.dir) or p.startswith(f"{self.dir}/")]
        return sorted(inside, key=len, reverse=True)
