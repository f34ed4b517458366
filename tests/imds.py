"""A small IMDSv2 server for the tests: the instance-metadata service of one EC2 instance.

It answers only with a session token (PUT /latest/api/token first, then the token in
X-aws-ec2-metadata-token), like an instance launched with HttpTokens=required, and serves
the instance's id, region, tags (InstanceMetadataTags=enabled) and user-data as read back
from the AWS emulator.
"""

import base64
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class InstanceMetadata:
    def __init__(self, *, instance_id, region, tags, user_data=b""):
        self.paths = {
            "/latest/meta-data/instance-id": instance_id,
            "/latest/meta-data/placement/region": region,
            "/latest/meta-data/tags/instance": "\n".join(sorted(tags)),
            "/latest/user-data": user_data,
            **{f"/latest/meta-data/tags/instance/{k}": v for k, v in tags.items()},
        }

    @classmethod
    def from_ec2(cls, ec2, instance_id):
        """Read what the emulator recorded for the instance."""
        instance = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0][
            "Instances"
        ][0]
        attr = ec2.describe_instance_attribute(InstanceId=instance_id, Attribute="userData")
        user_data = base64.b64decode(attr.get("UserData", {}).get("Value", ""))
        return cls(
            instance_id=instance_id,
            region=instance["Placement"]["AvailabilityZone"][:-1],
            tags={t["Key"]: t["Value"] for t in instance.get("Tags", [])},
            user_data=user_data,
        )


class IMDSServer:
    """Serve InstanceMetadata on 127.0.0.1:<free port> in a thread; stop() ends it."""

    def __init__(self, metadata, port=0):
        self.metadata = metadata
        self.tokens = set()
        self.server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _handler(self):
        imds = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def reply(self, status, body=b""):
                body = body.encode() if isinstance(body, str) else body
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_PUT(self):
                if self.path != "/latest/api/token":
                    return self.reply(404)
                if not self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
                    return self.reply(400)
                token = secrets.token_urlsafe(32)
                imds.tokens.add(token)
                return self.reply(200, token)

            def do_GET(self):
                if self.headers.get("X-aws-ec2-metadata-token") not in imds.tokens:
                    return self.reply(401)  # IMDSv1 is off: no token, no answer
                value = imds.metadata.paths.get(self.path.rstrip("/"))
                if value is None:
                    return self.reply(404)
                return self.reply(200, value)

        return Handler

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
