"""static/ and media/ through CloudFront: an origin access control and one distribution.

The bucket stays private (all four Block Public Access settings on); CloudFront reads it with
Origin Access Control (SigV4-signed requests), and the bucket policy lets exactly this
distribution read exactly those two prefixes (AWS:SourceArn, deploy/aws/bucket-policy.json).
Viewers get HTTPS only (HTTP is redirected), compressed answers, and the AWS-managed
CachingOptimized cache policy: cached up to a year when the object says so (Cache-Control),
a day otherwise, no cookies or query strings in the key. That is the long cache for hashed
static names: collectstatic's content-hashed copies say `public, max-age=31536000, immutable`
(www/storage.py), so the origin decides, and a policy of our own would add nothing.

A distribution has no name; the landscape's static_distribution is its Comment and the origin
access control's name. CloudFront is global: its client's region does not matter.
"""

from www.ops.results import Result, converge

# AWS's managed cache policy "Managed-CachingOptimized" (the same id in every account).
CACHING_OPTIMIZED = "658327ea-f89d-4fab-a63d-7e88639e58f6"
ORIGIN_ID = "bucket"
GET_HEAD = {"Quantity": 2, "Items": ["GET", "HEAD"]}


def find_access_control(cloudfront, name):
    controls = cloudfront.list_origin_access_controls()["OriginAccessControlList"]
    return next((c for c in controls.get("Items", []) if c["Name"] == name), None)


def find_distribution(cloudfront, landscape):
    """The environment's distribution summary (Id, ARN, DomainName, ...), or None."""
    for page in cloudfront.get_paginator("list_distributions").paginate():
        for item in page["DistributionList"].get("Items", []):
            if item["Comment"] == landscape.static_distribution:
                return item
    return None


def origin_domain(landscape, region):
    return f"{landscape.bucket}.s3.{region}.amazonaws.com"


def desired_settings(landscape, region, access_control_id):
    """What setup_aws keeps and compares: the parts of the distribution that protect."""
    return {
        "Enabled": True,
        "Origins": [
            {
                "Id": ORIGIN_ID,
                "DomainName": origin_domain(landscape, region),
                "OriginAccessControlId": access_control_id,
            }
        ],
        "ViewerProtocolPolicy": "redirect-to-https",
        "Compress": True,
        "CachePolicyId": CACHING_OPTIMIZED,
        "AllowedMethods": ["GET", "HEAD"],
    }


def settings_of(config):
    behavior = config["DefaultCacheBehavior"]
    return {
        "Enabled": config["Enabled"],
        "Origins": [
            {
                "Id": o["Id"],
                "DomainName": o["DomainName"],
                "OriginAccessControlId": o.get("OriginAccessControlId", ""),
            }
            for o in config["Origins"].get("Items", [])
        ],
        "ViewerProtocolPolicy": behavior["ViewerProtocolPolicy"],
        "Compress": behavior.get("Compress", False),
        "CachePolicyId": behavior.get("CachePolicyId", ""),
        "AllowedMethods": behavior.get("AllowedMethods", {}).get("Items", []),
    }


def _apply_settings(config, landscape, region, access_control_id):
    """config with the desired settings written in (the rest of it as CloudFront keeps it)."""
    config["Enabled"] = True
    config["Comment"] = landscape.static_distribution
    config["Origins"] = {
        "Quantity": 1,
        "Items": [
            {
                "Id": ORIGIN_ID,
                "DomainName": origin_domain(landscape, region),
                "S3OriginConfig": {"OriginAccessIdentity": ""},
                "OriginAccessControlId": access_control_id,
            }
        ],
    }
    behavior = config.setdefault("DefaultCacheBehavior", {})
    for legacy in ("ForwardedValues", "MinTTL", "DefaultTTL", "MaxTTL"):
        behavior.pop(legacy, None)  # a cache policy replaces them
    behavior.update(
        TargetOriginId=ORIGIN_ID,
        ViewerProtocolPolicy="redirect-to-https",
        Compress=True,
        CachePolicyId=CACHING_OPTIMIZED,
        AllowedMethods={**GET_HEAD, "CachedMethods": GET_HEAD},
    )
    return config


def ensure_static_distribution(*, cloudfront, landscape, region, dry_run=False):
    """The origin access control and the distribution, converged; Results."""
    name = landscape.static_distribution
    control = find_access_control(cloudfront, name)
    created = {}

    def create_control():
        created["control"] = cloudfront.create_origin_access_control(
            OriginAccessControlConfig={
                "Name": name,
                "Description": f"CloudFront reads {landscape.bucket} static/ and media/",
                "SigningProtocol": "sigv4",
                "SigningBehavior": "always",
                "OriginAccessControlOriginType": "s3",
            }
        )["OriginAccessControl"]

    yield converge(
        f"CloudFront origin access control {name}",
        control and True,
        True,
        create_control,
        dry_run=dry_run,
        detail="SigV4, always",
    )
    control = control or created.get("control")
    control_id = control["Id"] if control else f"<{name}>"  # a dry run's, not created yet

    summary = find_distribution(cloudfront, landscape)
    desired = desired_settings(landscape, region, control_id)
    if summary is None:
        current, etag = None, None
    else:
        answer = cloudfront.get_distribution_config(Id=summary["Id"])
        current, etag = answer["DistributionConfig"], answer["ETag"]

    def apply():
        if current is None:
            config = _apply_settings(
                {"CallerReference": name, "PriceClass": "PriceClass_100"},
                landscape,
                region,
                control_id,
            )
            created["distribution"] = cloudfront.create_distribution(DistributionConfig=config)[
                "Distribution"
            ]
        else:
            cloudfront.update_distribution(
                Id=summary["Id"],
                IfMatch=etag,
                DistributionConfig=_apply_settings(current, landscape, region, control_id),
            )

    result = converge(
        f"CloudFront distribution {name}",
        None if current is None else settings_of(current),
        desired,
        apply,
        dry_run=dry_run,
        detail="HTTPS only, compressed, CachingOptimized, read through origin access control",
    )
    summary = summary or created.get("distribution")
    domain = summary["DomainName"] if summary else None
    if domain:  # what the config's CDN_DOMAIN is
        detail = f"{result.detail}; {domain}" if result.detail else domain
        result = Result(result.verb, result.what, result.dry_run, detail)
    yield result
