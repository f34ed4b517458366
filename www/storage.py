"""The deployed settings' static-file storage (www/deployed.py's s3_storages)."""

import os
import re
import threading

from storages.backends.s3 import S3ManifestStaticStorage
from storages.utils import clean_name, is_seekable

from www import start_steps

# HashedFilesMixin.hashed_name's form: <root>.<first 12 hex digits of the content's MD5><ext>
HASHED_NAME = re.compile(r"^(?P<root>.+)\.(?P<hash>[0-9a-f]{12})(?P<ext>\.[^./]*)?$")


class StaticS3Storage(S3ManifestStaticStorage):
    """django-storages' S3 storage with Django's ManifestFilesMixin: collectstatic stores
    each file also under a content-hashed name (admin/css/base.css as
    admin/css/base.<md5:12>.css), {% static %} names that copy, and so a name's content never
    changes. Those copies carry HASHED_CACHE_CONTROL, which CloudFront's CachingOptimized
    policy (www/ops/cdn.py) and browsers honour: cached for a year, never revalidated. A
    release with changed files gets new names, not stale copies. Media files (the default
    storage) are not touched.

    The manifest (name -> hashed name) is one per set of static files, named after their
    fingerprint (www/start_steps.py), not Django's one staticfiles.json: instances of two
    releases share the bucket during a rolling deploy, and a rollback starts an older release
    again, so each must keep reading its own names. The manifest object says no-cache.

    With querystring_auth off (public static files: no signature, no expiry) a file's URL
    depends on its name only, yet S3Storage builds each one through botocore's endpoint
    resolution and request signer, and a boto3 client per thread first: about an eighth of
    the CPU of a logged-in admin page, which has seven {% static %} tags (docs/benchmarks.md).
    The release's files, and so their URLs, are fixed for the life of the process: each URL
    is worked out once.
    """

    HASHED_CACHE_CONTROL = "public, max-age=31536000, immutable"
    MANIFEST_CACHE_CONTROL = "no-cache"
    # Names remembered at most; a page that builds static names from input gets no more.
    MAX_REMEMBERED = 10_000

    def __init__(self, **settings):
        # Before ManifestFilesMixin's __init__, which names the manifest to read.
        self.manifest_name = start_steps.static_manifest(start_steps.static_fingerprint())
        super().__init__(**settings)
        self._urls = {}
        self._urls_lock = threading.Lock()

    def load_manifest(self):
        """Nothing yet: ManifestFilesMixin.__init__ reads the manifest when the storage is
        made, and that can be before the start-up steps have collected the files (gunicorn's
        master imports the app meanwhile, and WhiteNoise asks the storage for URLs as it
        starts), in a process whose workers inherit it. hashed_files reads it instead."""
        return None, ""

    @property
    def hashed_files(self):
        """The manifest's paths, read when first needed. A manifest is named after its files'
        fingerprint, so once read it holds for the life of the process; one that does not
        exist yet is looked for again next time (collectstatic may be running elsewhere)."""
        if self._hashed_files is None:
            paths, manifest_hash = super().load_manifest()
            if not manifest_hash:  # no manifest: ({}, ""); save_manifest always writes a hash
                return paths
            self._hashed_files, self.manifest_hash = paths, manifest_hash
        return self._hashed_files

    @hashed_files.setter
    def hashed_files(self, paths):  # collectstatic's post-processing sets it
        self._hashed_files = paths

    def url(self, name, force=False):
        if force or self.querystring_auth:  # signed URLs expire: never handed out again
            return super().url(name, force)
        url = self._urls.get(name)
        if url is None:
            url = super().url(name)
            with self._urls_lock:
                if len(self._urls) < self.MAX_REMEMBERED:
                    self._urls[name] = url
        return url

    def _get_write_parameters(self, name, content=None):
        """S3Storage's upload parameters (name is the object key), with the Cache-Control of
        a hashed copy or of the manifest. The one place that sees an upload's key and content
        together (get_object_parameters gets the name only)."""
        params = super()._get_write_parameters(name, content)
        if name == self._normalize_name(clean_name(self.manifest_name)):
            params["CacheControl"] = self.MANIFEST_CACHE_CONTROL
        elif self.is_hashed_copy(name, content):
            params["CacheControl"] = self.HASHED_CACHE_CONTROL
        return params

    def is_hashed_copy(self, name, content):
        """Whether name has the form of a hashed copy and its hash is content's own: a file
        that merely looks hashed (vendor.0123456789ab.js) gets no year-long cache."""
        match = HASHED_NAME.match(os.path.basename(name))
        if not match or content is None or not is_seekable(content):
            return False  # (S3Storage seeks back to the start of content after this)
        original = f"{match['root']}{match['ext'] or ''}"
        return self.file_hash(original, content) == match["hash"]
