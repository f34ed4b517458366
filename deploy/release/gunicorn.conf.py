"""gunicorn's settings in the release image, from the environment start.sh checked.

PORT               port to bind on all interfaces (default 8000)
GUNICORN_WORKERS   worker processes (default 2 x CPUs available + 1)
GUNICORN_TIMEOUT   seconds a request may take before its worker is restarted (default 30)
"""

import os

bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("GUNICORN_WORKERS") or 2 * len(os.sched_getaffinity(0)) + 1)
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
