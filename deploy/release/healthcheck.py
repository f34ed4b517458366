"""The release image's HEALTHCHECK: GET /health on the port gunicorn binds ($PORT)."""

import os
import sys
import urllib.request

URL = f"http://127.0.0.1:{os.environ['PORT']}/health"  # the image sets PORT

try:
    with urllib.request.urlopen(URL, timeout=4) as response:  # noqa: S310 -- fixed http URL
        sys.exit(0 if response.status == 200 else 1)
except OSError as exc:  # HTTPError (503 from /health) and URLError are OSErrors
    sys.exit(f"{URL}: {exc}")
