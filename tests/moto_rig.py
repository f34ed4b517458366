"""moto's server with two of its gaps closed, run by tests/servers.py's MotoServer.

    python -m tests.moto_rig -H 127.0.0.1 -p PORT      (moto.server's own arguments)

moto 5.2.5, the pinned emulator, differs from AWS in two places the product depends on; the
product keeps its protections and the emulator is brought in line here, in the rig:

1. Bucket-policy conditions. moto evaluates a bucket policy's conditions with no request
   context, and a statement whose condition does not match makes it DENY (whatever its Effect),
   so the bucket's TLS-only Deny ({"Bool": {"aws:SecureTransport": "false"}}) denied every
   request. Here, as in AWS, a statement whose condition does not match does not apply, and
   the request context carries aws:SecureTransport "true": the emulator's loopback endpoint
   stands in for AWS's HTTPS endpoints (the product's clients use HTTPS; so does boto3 by
   default). No other context key is known, so a statement conditioned on one (the
   CloudFront-only read, AWS:SourceArn) never applies to the rig's requests, as in AWS it
   applies only to requests CloudFront makes.
2. CloudFront origins. moto drops an origin's OriginAccessControlId; here it is kept and read
   back, so setup_aws's rerun compares what it set.
"""

import fnmatch
import json
import sys

from moto.cloudfront import models as cloudfront
from moto.iam.access_control import IAMPolicyStatement, PermissionResult
from moto.s3 import models as s3

# What every request to the emulator says about itself (see 1. above).
REQUEST_CONTEXT = {"aws:SecureTransport": "true"}


def _values(value):
    return [str(v) for v in (value if isinstance(value, list) else [value])]


# The condition operators the product's policies use, as AWS evaluates them: a key the request
# does not carry matches nothing; condition keys are case-insensitive.
OPERATORS = {
    "Bool": lambda actual, expected: actual.lower() == expected.lower(),
    "StringEquals": lambda actual, expected: actual == expected,
    "StringLike": lambda actual, expected: fnmatch.fnmatchcase(actual, expected),
    "ArnEquals": lambda actual, expected: actual == expected,
    "ArnLike": lambda actual, expected: fnmatch.fnmatchcase(actual, expected),
}


def condition_matches(condition, context):
    """Every operator's every key must match one of its values (AWS's AND of ORs). An
    operator the rig does not know matches nothing, so its statement never applies here."""
    context = {key.lower(): value for key, value in context.items()}
    for operator, keys in condition.items():
        compare = OPERATORS.get(operator)
        if compare is None:
            return False
        for key, expected in keys.items():
            actual = context.get(key.lower())
            if actual is None or not any(compare(actual, e) for e in _values(expected)):
                return False
    return True


def evaluate_bucket_policy(policy_json, action, resource, context):
    """AWS's order for one bucket policy: an explicit Deny wins, else an Allow, else neither.
    A statement applies only when its condition matches the request's context."""
    allowed = False
    for statement in json.loads(policy_json)["Statement"]:
        if statement.get("Condition") and not condition_matches(statement["Condition"], context):
            continue
        unconditional = {k: v for k, v in statement.items() if k != "Condition"}
        result = IAMPolicyStatement(unconditional).is_action_permitted(action, resource)
        if result == PermissionResult.DENIED:
            return PermissionResult.DENIED
        allowed = allowed or result == PermissionResult.PERMITTED
    return PermissionResult.PERMITTED if allowed else PermissionResult.NEUTRAL


def get_permission(self, action, resource):
    if self.policy is None:
        return PermissionResult.NEUTRAL
    return evaluate_bucket_policy(self.policy.decode(), action, resource, REQUEST_CONTEXT)


_origin_init = cloudfront.Origin.__init__


def origin_init(self, origin):
    _origin_init(self, origin)
    self.origin_access_control_id = origin.get("OriginAccessControlId", "")


def main():
    s3.FakeBucket.get_permission = get_permission
    cloudfront.Origin.__init__ = origin_init
    from moto.server import main as moto_main

    moto_main(sys.argv[1:])


if __name__ == "__main__":
    main()
