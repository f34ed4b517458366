"""A stand-in for the environment's CloudFront distribution, on loopback, for the tests that
load static files the way a browser does.

CloudFront reads the private bucket with Origin Access Control, i.e. SigV4-signed requests;
here a small HTTPS server does the same with boto3 against the emulator (signed GetObject of the
stage bucket) and answers GET /<key> with the object. Its certificate is self-signed for
127.0.0.1 (openssl), so the storages' https://<cdn_domain>/static/... URLs work unchanged:
cdn_domain is "127.0.0.1:<port>", and clients trust `ca_file`.

    with CdnStandIn(bucket) as cdn:      # cdn.domain, cdn.ca_file
        ...
"""

import http.server
import shutil
import ssl
import subprocess
import tempfile
import threading
from pathlib import Path

from tests.servers import free_port
from www import aws


class CdnStandIn:
    def __init__(self, bucket):
        self.bucket = bucket
        self.port = free_port()
        self.domain = f"127.0.0.1:{self.port}"
        self.dir = Path(tempfile.mkdtemp(prefix="cdn-stand-in-"))
        self.ca_file = str(self.dir / "cert.pem")
        self.server = None

    def _certificate(self):
        subprocess.run(
            [
                "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                "-keyout", str(self.dir / "key.pem"), "-out", self.ca_file,
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )  # fmt: skip

    def __enter__(self):
        self._certificate()
        s3 = aws.client("s3")
        bucket = self.bucket

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 -- http.server's naming
                key = self.path.split("?", 1)[0].lstrip("/")
                try:
                    obj = s3.get_object(Bucket=bucket, Key=key)
                except s3.exceptions.NoSuchKey:
                    self.send_error(404)
                    return
                body = obj["Body"].read()
                self.send_response(200)
                self.send_header("Content-Type", obj.get("ContentType", "binary/octet-stream"))
                self.send_header("Content-Length", str(len(body)))
                if "CacheControl" in obj:  # CloudFront passes the object's on to viewers
                    self.send_header("Cache-Control", obj["CacheControl"])
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.ca_file, str(self.dir / "key.pem"))
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        if self.server:
            self.server.shutdown()
            self.server.server_close()
        shutil.rmtree(self.dir, ignore_errors=True)
