"""The secret key of the default (unconfigured) mode: generated once, kept locally."""

import os
import tempfile
from pathlib import Path

from django.core.management.utils import get_random_secret_key


def local_secret_key(data_dir):
    path = Path(data_dir) / "secret_key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent)  # 0600
        with os.fdopen(fd, "w") as f:
            f.write(get_random_secret_key())
        try:
            os.link(tmp, path)  # atomic, and never replaces a key another process kept
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
    return path.read_text().strip()
