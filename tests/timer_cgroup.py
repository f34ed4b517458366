"""The redeploy timer's CPU weight on the rig's host, as bootstrap-redeploy.service's
CPUWeight= gives it on an instance (user-data.sh's REDEPLOY_CPU_WEIGHT).

On an instance the timer's runs are a systemd service beside the Docker containers, at about a
quarter of a serving container's weight. In the rig they run inside the instance container,
at that container's full weight. So the rig moves the timer's loop, and with it every process
of its runs, into a cgroup of its own beside the instance container's, with the unit's
weight. cgroup v2 takes the weight as it is; cgroup v1 takes shares, converted back from the
weight the way Docker converts shares to a v2 weight (1,024 shares: 39). On v1 only the cpu
hierarchy changes; on v2 the loop also leaves the container's memory and pids limits, which
the rig does not rely on.

It needs what the rig has anyway: root, and dockerd's PID namespace (the Docker API's exec
pids are host pids). On a host whose cgroups systemd manages, the directory it makes beside
a container's would be one systemd does not know of; the rig's hosts run dockerd without it.
"""

import atexit
import re
import time
from pathlib import Path

from www.ops.ec2 import USER_DATA_FILE

UNIFIED = Path("/sys/fs/cgroup")


def redeploy_cpu_weight():
    """The timer unit's CPUWeight=: user-data.sh's REDEPLOY_CPU_WEIGHT."""
    text = USER_DATA_FILE.read_text()
    (weight,) = re.findall(r"^REDEPLOY_CPU_WEIGHT=(\d+)$", text, re.MULTILINE)
    return int(weight)


def shares_of(weight):
    """cgroup v1 cpu.shares for a v2 weight: Docker's weight = 1 + (shares - 2) * 9999 / 262142,
    inverted."""
    return 2 + round((weight - 1) * 262142 / 9999)


def v1_mount(controller):
    """Where this host mounts the cgroup v1 hierarchy of controller, or None."""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        mount, _, filesystem = line.partition(" - ")
        fstype, _source, options = filesystem.split()[:3]
        if fstype == "cgroup" and controller in options.split(","):
            return Path(mount.split()[4])
    return None


def cpu_cgroup(pid):
    """(directory, weight file, value for REDEPLOY_CPU_WEIGHT) of pid's CPU cgroup."""
    weight = redeploy_cpu_weight()
    # hierarchy-id:controllers:path, one line per v1 hierarchy, or one "0::path" on v2
    lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    hierarchies = [line.split(":", 2) for line in lines]
    for _, controllers, path in hierarchies:
        if "cpu" in controllers.split(","):
            return v1_mount("cpu") / path.lstrip("/"), "cpu.shares", shares_of(weight)
    unified = (UNIFIED / "cgroup.controllers").read_text().split()
    if "cpu" not in unified:
        raise RuntimeError("this host's cgroups have no cpu controller for the timer's weight")
    ((_, _, path),) = hierarchies
    return UNIFIED / path.lstrip("/"), "cpu.weight", weight


class TimerCgroup:
    """A cgroup named `name` beside a process's own, at the timer unit's weight; removed by
    remove(), or at exit should a test stop before that (its containers gone by then)."""

    def __init__(self, name):
        self.name = name
        self.path = None

    def enter(self, pid):
        """Move pid (a host pid), and the processes it starts from now on, into the cgroup."""
        own, weight_file, weight = cpu_cgroup(pid)
        self.path = own.parent / self.name
        self.path.mkdir()
        LEFT.add(self.path)
        (self.path / weight_file).write_text(str(weight))
        (self.path / "cgroup.procs").write_text(str(pid))
        return self

    def remove(self):
        """Remove the cgroup once its processes have gone: the kernel may refuse (EBUSY) for
        a moment after the last one exits, so try for up to 5 s."""
        if self.path is None:
            return
        if not remove(self.path, attempts=50):
            raise RuntimeError(f"processes are still in {self.path}")
        LEFT.discard(self.path)


def remove(path, attempts=1):
    """rmdir the cgroup path; False if a process was still in it at every attempt."""
    for attempt in range(attempts):
        try:
            path.rmdir()
            return True
        except FileNotFoundError:
            return True
        except OSError:  # EBUSY
            if attempt + 1 < attempts:
                time.sleep(0.1)
    return False


LEFT = set()  # cgroups made and not yet removed


@atexit.register
def remove_left():
    for path in LEFT:
        remove(path, attempts=50)
