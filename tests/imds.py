"""A small IMDSv2 server for the tests: the instance-metadata service of one EC2 instance.

It answers only with a session token (PUT /latest/api/token first, then the token in
X-aws-ec2-metadata-token), like an instance launched with HttpTokens=required, and serves
the instance's id, region, tags (InstanceMetadataTags=enabled), user-data, MAC address and
its VPC's address ranges as read back from the AWS emulator, and, when the instance has a
role, that role's credentials the way EC2 hands them out (iam/security-credentials/<role>):
the AWS SDKs' default chain finds them there, so nothing on the "instance" is ever given a
key. The credentials are the test ones the emulator accepts.
"""

import base64
import datetime
import json
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.servers import AWS_TEST_ENV

CREDENTIALS_PATH = "/latest/meta-data/iam/security-credentials"


def role_credentials():
    """A credentials document as IMDS serves it for an instance role."""
    now = datetime.datetime.now(datetime.UTC)
    return json.dumps(
        {
            "Code": "Success",
            "LastUpdated": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "Type": "AWS-HMAC",
            "AccessKeyId": AWS_TEST_ENV["AWS_ACCESS_KEY_ID"],
            "SecretAccessKey": AWS_TEST_ENV["AWS_SECRET_ACCESS_KEY"],
            "Token": "test-session-token",
            "Expiration": (now + datetime.timedelta(hours=6)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
    )


class InstanceMetadata:
    def __init__(
        self, *, instance_id, region, tags, user_data=b"", role=None, mac=None, vpc_ranges=()
    ):
        self.paths = {
            "/latest/meta-data/instance-id": instance_id,
            "/latest/meta-data/placement/region": region,
            "/latest/meta-data/tags/instance": "\n".join(sorted(tags)),
            "/latest/user-data": user_data,
            **{f"/latest/meta-data/tags/instance/{k}": v for k, v in tags.items()},
        }
        if mac:
            self.paths["/latest/meta-data/mac"] = mac
            interface = f"/latest/meta-data/network/interfaces/macs/{mac}"
            self.paths[f"{interface}/vpc-ipv4-cidr-blocks"] = "\n".join(vpc_ranges)
        if role:
            self.paths[CREDENTIALS_PATH] = role
            self.paths[f"{CREDENTIALS_PATH}/{role}"] = role_credentials()

    @classmethod
    def from_ec2(cls, ec2, instance_id, *, iam=None, profile=None):
        """Read what the emulator recorded for the instance (its role too, given iam; from
        instance profile `profile` if the emulator recorded none for it)."""
        instance = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0][
            "Instances"
        ][0]
        attr = ec2.describe_instance_attribute(InstanceId=instance_id, Attribute="userData")
        user_data = base64.b64decode(attr.get("UserData", {}).get("Value", ""))
        role = None
        profile_arn = instance.get("IamInstanceProfile", {}).get("Arn")
        profile = profile_arn.split("/")[-1] if profile_arn else profile
        if iam is not None and profile:
            found = iam.get_instance_profile(InstanceProfileName=profile)
            role = found["InstanceProfile"]["Roles"][0]["RoleName"]
        interfaces = instance.get("NetworkInterfaces") or [{}]
        mac, vpc_ranges = interfaces[0].get("MacAddress"), ()
        if instance.get("VpcId"):
            vpc = ec2.describe_vpcs(VpcIds=[instance["VpcId"]])["Vpcs"][0]
            vpc_ranges = tuple(a["CidrBlock"] for a in vpc.get("CidrBlockAssociationSet", [])) or (
                vpc["CidrBlock"],
            )
        return cls(
            instance_id=instance_id,
            mac=mac,
            vpc_ranges=vpc_ranges,
            region=instance["Placement"]["AvailabilityZone"][:-1],
            tags={t["Key"]: t["Value"] for t in instance.get("Tags", [])},
            user_data=user_data,
            role=role,
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
