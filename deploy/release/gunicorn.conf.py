"""gunicorn's settings in the release image, from the environment start.sh checked.

PORT               port to bind on all interfaces (default 8000)
GUNICORN_WORKERS   worker processes (default 2 x CPUs available + 1)
GUNICORN_TIMEOUT   seconds a request may take before its worker is restarted (default 30)
"""

import math
import os
from pathlib import Path

# The container's CPU quota (docker run --cpus), cgroup v2 then v1: "QUOTA PERIOD" in
# microseconds, or "max" / -1 for no quota.
CGROUP_V2_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")
CGROUP_V1_CPU = Path("/sys/fs/cgroup/cpu")


def cpu_quota():
    """CPUs the cgroup quota allows (rounded up), or None without a quota."""
    try:
        if CGROUP_V2_CPU_MAX.exists():
            quota, period = CGROUP_V2_CPU_MAX.read_text().split()
        else:
            quota = (CGROUP_V1_CPU / "cpu.cfs_quota_us").read_text().strip()
            period = (CGROUP_V1_CPU / "cpu.cfs_period_us").read_text().strip()
    except (OSError, ValueError):
        return None
    if quota in ("max", "-1"):
        return None
    return max(1, math.ceil(int(quota) / int(period)))


def available_cpus():
    """The CPUs this container may use: its affinity, capped by its cgroup quota."""
    cpus = len(os.sched_getaffinity(0))
    quota = cpu_quota()
    return min(cpus, quota) if quota else cpus


bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("GUNICORN_WORKERS") or 2 * available_cpus() + 1)
timeout = int(os.environ.get("GUNICORN_TIMEOUT") or 30)
# SIGTERM lets running requests finish this long; supervisord's stopwaitsecs is longer.
graceful_timeout = 20
# Heartbeat files on the container's own tmpfs, not the overlay filesystem.
worker_tmp_dir = "/dev/shm"
# gunicornc's socket; the default under $HOME (/var/www) is not writable by the app user.
control_socket = "/tmp/gunicorn.ctl"
accesslog = "-"
errorlog = "-"
# The proxy or load balancer in front sets X-Forwarded-Proto (SECURE_PROXY_SSL_HEADER).
forwarded_allow_ips = "*"
