"""Wake supervisord's main loop: start.sh runs this as supervisord starts.

supervisord starts its programs only after its main loop's first poll, which waits up to 1 s
for activity on its sockets: a connection to its control socket (argv[1]) ends that wait, and
gunicorn is spawned ~1 s sooner. Bounded (5 s); exits 0 whether or not it connected.
"""

import socket
import sys
import time

TIMEOUT = 5  # seconds


def wake(path, timeout=TIMEOUT):
    """Connect to the Unix socket at path once it accepts; whether it did within timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.socket(socket.AF_UNIX) as sock:
                sock.connect(path)
            return True
        except OSError:
            time.sleep(0.01)
    return False


if __name__ == "__main__":
    wake(sys.argv[1])
