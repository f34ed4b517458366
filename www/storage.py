"""The deployed settings' static-file storage (www/deployed.py's s3_storages)."""

import threading

from storages.backends.s3 import S3Storage


class StaticS3Storage(S3Storage):
    """django-storages' S3Storage whose URL for a static file is worked out once per process.

    With querystring_auth off (public static files: no signature, no expiry) a file's URL
    depends on its name only, yet S3Storage builds each one through botocore's endpoint
    resolution and request signer, and a boto3 client per thread first: about an eighth of
    the CPU of a logged-in admin page, which has seven {% static %} tags (docs/benchmarks.md).
    The release's files, and so their URLs, are fixed for the life of the process.
    """

    # Names remembered at most; a page that builds static names from input gets no more.
    MAX_REMEMBERED = 10_000

    def __init__(self, **settings):
        super().__init__(**settings)
        self._urls = {}
        self._urls_lock = threading.Lock()

    def url(self, name, parameters=None, expire=None, http_method=None):
        if parameters or expire is not None or http_method or self.querystring_auth:
            return super().url(name, parameters, expire, http_method)
        url = self._urls.get(name)
        if url is None:
            url = super().url(name)
            with self._urls_lock:
                if len(self._urls) < self.MAX_REMEMBERED:
                    self._urls[name] = url
        return url
