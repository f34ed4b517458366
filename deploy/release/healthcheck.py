"""The release image's HEALTHCHECK: GET /health where gunicorn listens, on GUNICORN_SOCKET
(a Unix socket) when set, else on $PORT."""

import http.client
import os
import socket
import sys


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over the Unix socket at `path`."""

    def __init__(self, path, timeout):
        super().__init__("127.0.0.1", timeout=timeout)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


def connection(environ, timeout=4):
    if environ.get("GUNICORN_SOCKET"):
        return environ["GUNICORN_SOCKET"], UnixHTTPConnection(environ["GUNICORN_SOCKET"], timeout)
    port = int(environ.get("PORT", "8000"))
    return f"port {port}", http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)


def main():
    where, conn = connection(os.environ)
    try:
        conn.request("GET", "/health")
        status = conn.getresponse().status
    except (OSError, http.client.HTTPException) as exc:
        sys.exit(f"/health on {where}: {exc}")
    finally:
        conn.close()
    sys.exit(0 if status == 200 else f"/health on {where}: {status}")


if __name__ == "__main__":
    main()
