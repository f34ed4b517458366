"""A load-balanced environment's front door: ALB, target group, certificate, listeners, DNS.

    internet -> ALB <project>-<env> (443 with an ACM certificate, 80 -> 443)
             -> target group <project>-<env>-web (HTTP 80, GET /health)
             -> the Auto Scaling group's instances (www/ops/scaling.py)

The health check. An instance is healthy after 2 answers of 200 from GET /health 15 s apart
(30 s) and unhealthy after 3 misses (45 s); each answer may take 5 s. /health checks the
database too, so an instance that lost it leaves the rotation instead of serving errors.
Deregistration delay 30 s: gunicorn's graceful timeout is 20 s, so every request in flight
on a leaving instance finishes, and a rolling release does not wait AWS's default 300 s per
instance.

The certificate is requested with DNS validation for <ENV>_DOMAINS. Where the account has a
public Route 53 hosted zone for a domain, its validation record and an alias record to the
load balancer are written there (UPSERT, so reruns change nothing); otherwise the records
to create are printed. The 443 listener needs an issued certificate: until ACM issues it,
the rerun (or --wait) adds it. TLS policy: TLS 1.2 and 1.3 only, forward secrecy.
"""

import hashlib
import time

from botocore.exceptions import ClientError, WaiterError

from www.ops.errors import OpsError, error_code
from www.ops.results import Result, converge

HEALTH_CHECK = {
    "HealthCheckProtocol": "HTTP",
    "HealthCheckPort": "traffic-port",
    "HealthCheckPath": "/health",
    "HealthCheckIntervalSeconds": 15,
    "HealthCheckTimeoutSeconds": 5,
    "HealthyThresholdCount": 2,
    "UnhealthyThresholdCount": 3,
    "Matcher": {"HttpCode": "200"},
}
DEREGISTRATION_DELAY = "30"  # seconds; AWS's default is 300
TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"
REDIRECT_TO_HTTPS = {
    "Protocol": "HTTPS",
    "Port": "443",
    "Host": "#{host}",
    "Path": "/#{path}",
    "Query": "#{query}",
    "StatusCode": "HTTP_301",
}
CERTIFICATE_LIVE = ["PENDING_VALIDATION", "ISSUED"]


def project_onto(current, desired):
    """current, keeping only what desired names (dict keys, recursively): the part we own."""
    if isinstance(desired, dict) and isinstance(current, dict):
        return {k: project_onto(current.get(k), v) for k, v in desired.items()}
    if isinstance(desired, list) and isinstance(current, list) and len(current) == len(desired):
        return [project_onto(c, d) for c, d in zip(current, desired, strict=True)]
    return current


# --- subnets ----------------------------------------------------------------------------------


def fleet_subnets(*, ec2, landscape, vpc_id):
    """The subnets of the load balancer and the group: <ENV>_SUBNETS, else the default VPC's
    default subnets (one per zone). At least two zones, as an ALB requires."""
    named = list(landscape.env.subnets)
    setting = f"{landscape.env.name.upper()}_SUBNETS"
    if named:
        try:
            subnets = ec2.describe_subnets(SubnetIds=named)["Subnets"]
        except ClientError as exc:
            if error_code(exc) == "InvalidSubnetID.NotFound":
                raise OpsError(
                    f"{setting} names a subnet this region lacks: fix project.env"
                ) from None
            raise
    else:
        filters = [
            {"Name": "vpc-id", "Values": [vpc_id]},
            {"Name": "default-for-az", "Values": ["true"]},
        ]
        subnets = []
        for page in ec2.get_paginator("describe_subnets").paginate(Filters=filters):
            subnets.extend(page["Subnets"])
    zones = {s["AvailabilityZone"] for s in subnets}
    if len(zones) < 2:
        raise OpsError(
            f"a load balancer needs subnets in two or more availability zones, found {len(zones)}: "
            f"name them in {setting} in project.env"
        )
    return sorted(s["SubnetId"] for s in subnets)


# --- load balancer and target group -----------------------------------------------------------


def find_load_balancer(elbv2, landscape):
    try:
        return elbv2.describe_load_balancers(Names=[landscape.load_balancer])["LoadBalancers"][0]
    except ClientError as exc:
        if error_code(exc) == "LoadBalancerNotFound":
            return None
        raise


def find_target_group(elbv2, landscape):
    try:
        return elbv2.describe_target_groups(Names=[landscape.target_group])["TargetGroups"][0]
    except ClientError as exc:
        if error_code(exc) == "TargetGroupNotFound":
            return None
        raise


def site_address(landscape, load_balancer):
    """What the operator opens: https://<first domain>, or the load balancer's own name."""
    if landscape.env.domains:
        return f"https://{landscape.env.domains[0]}"
    if load_balancer is None:
        return "-"
    return f"http://{load_balancer['DNSName']}"


def _security_group_id(ec2, name, vpc_id):
    groups = ec2.describe_security_groups(
        Filters=[{"Name": "group-name", "Values": [name]}, {"Name": "vpc-id", "Values": [vpc_id]}]
    )["SecurityGroups"]
    return groups[0]["GroupId"] if groups else None


class Front:
    """Converges the front door of one environment; run() yields Results as it goes.

    After run(), load_balancer and target_group hold what AWS has (None in a dry run that
    would create them), for the Auto Scaling group and the address.
    """

    def __init__(self, *, ec2, elbv2, acm, route53, landscape, vpc_id, subnets, dry_run=False):
        self.ec2, self.elbv2, self.acm, self.route53 = ec2, elbv2, acm, route53
        self.landscape, self.vpc_id, self.subnets = landscape, vpc_id, subnets
        self.dry_run = dry_run
        self.load_balancer = self.target_group = self.certificate = None

    def run(self, *, wait=False, wait_delay=15, wait_attempts=120):
        yield from self.ensure_load_balancer()
        yield from self.ensure_target_group()
        if self.landscape.env.domains:
            yield from self.ensure_certificate()
            if wait and self.certificate and self.certificate["Status"] != "ISSUED":
                yield self.wait_for_certificate(wait_delay, wait_attempts)
        yield from self.ensure_listeners()
        yield from self.ensure_alias_records()

    # -- the load balancer

    def ensure_load_balancer(self):
        land = self.landscape
        name = f"load balancer {land.load_balancer}"
        group_id = _security_group_id(self.ec2, land.load_balancer_group, self.vpc_id)
        current = find_load_balancer(self.elbv2, land)
        if current is None:
            if not self.dry_run:
                self.elbv2.create_load_balancer(
                    Name=land.load_balancer,
                    Subnets=self.subnets,
                    SecurityGroups=[group_id],
                    Scheme="internet-facing",
                    Type="application",
                    IpAddressType="ipv4",
                    Tags=land.tags,
                )
                self.load_balancer = find_load_balancer(self.elbv2, land)
            yield Result(
                "create", name, self.dry_run, f"internet-facing, {len(self.subnets)} subnets"
            )
            return
        self.load_balancer = current
        if current["Scheme"] != "internet-facing":
            yield Result(
                "attention",
                name,
                detail=(
                    f"is {current['Scheme']}, not internet-facing: a scheme cannot change; "
                    f"./manage.py teardown --env {land.env.name}, then setup_aws again"
                ),
            )
        subnets = sorted(z["SubnetId"] for z in current["AvailabilityZones"])
        yield converge(
            f"{name} subnets",
            subnets,
            sorted(self.subnets),
            lambda: self.elbv2.set_subnets(
                LoadBalancerArn=current["LoadBalancerArn"], Subnets=self.subnets
            ),
            dry_run=self.dry_run,
        )
        yield converge(
            f"{name} security groups",
            sorted(current.get("SecurityGroups", [])),
            [group_id],
            lambda: self.elbv2.set_security_groups(
                LoadBalancerArn=current["LoadBalancerArn"], SecurityGroups=[group_id]
            ),
            dry_run=self.dry_run,
            detail=self.landscape.load_balancer_group,
        )

    # -- the target group

    def ensure_target_group(self):
        land = self.landscape
        name = f"target group {land.target_group}"
        current = find_target_group(self.elbv2, land)
        detail = f"HTTP 80, GET /health, deregistration delay {DEREGISTRATION_DELAY}s"
        if current is None:
            if not self.dry_run:
                self.target_group = self.elbv2.create_target_group(
                    Name=land.target_group,
                    Protocol="HTTP",
                    Port=80,
                    VpcId=self.vpc_id,
                    TargetType="instance",
                    Tags=land.tags,
                    **HEALTH_CHECK,
                )["TargetGroups"][0]
                self._set_deregistration_delay()
            yield Result("create", name, self.dry_run, detail)
            return
        self.target_group = current
        arn = current["TargetGroupArn"]
        if (current["Protocol"], current["Port"]) != ("HTTP", 80):
            yield Result(
                "attention",
                name,
                detail=(
                    f"serves {current['Protocol']} {current['Port']}, not HTTP 80, which cannot "
                    f"change: ./manage.py teardown --env {land.env.name}, then setup_aws"
                ),
            )
        yield converge(
            f"{name} health check",
            project_onto(current, HEALTH_CHECK),
            HEALTH_CHECK,
            lambda: self.elbv2.modify_target_group(TargetGroupArn=arn, **HEALTH_CHECK),
            dry_run=self.dry_run,
            detail="GET /health",
        )
        attributes = {
            a["Key"]: a["Value"]
            for a in self.elbv2.describe_target_group_attributes(TargetGroupArn=arn)["Attributes"]
        }
        yield converge(
            f"{name} deregistration delay",
            attributes.get("deregistration_delay.timeout_seconds"),
            DEREGISTRATION_DELAY,
            self._set_deregistration_delay,
            dry_run=self.dry_run,
            detail=f"{DEREGISTRATION_DELAY}s",
        )

    def _set_deregistration_delay(self):
        self.elbv2.modify_target_group_attributes(
            TargetGroupArn=self.target_group["TargetGroupArn"],
            Attributes=[
                {"Key": "deregistration_delay.timeout_seconds", "Value": DEREGISTRATION_DELAY}
            ],
        )

    # -- the certificate and its validation records

    def find_certificate(self):
        """The newest live certificate naming exactly the environment's domains."""
        domains = set(self.landscape.env.domains)
        found = []
        paginator = self.acm.get_paginator("list_certificates")
        for page in paginator.paginate(CertificateStatuses=CERTIFICATE_LIVE):
            for summary in page["CertificateSummaryList"]:
                if summary["DomainName"] != self.landscape.env.domains[0]:
                    continue
                cert = self.acm.describe_certificate(CertificateArn=summary["CertificateArn"])
                cert = cert["Certificate"]
                if set(cert.get("SubjectAlternativeNames", [])) | {cert["DomainName"]} == domains:
                    found.append(cert)
        found.sort(key=lambda c: (c["Status"] == "ISSUED", c.get("CreatedAt", 0)))
        return found[-1] if found else None

    def ensure_certificate(self):
        land = self.landscape
        domains = list(land.env.domains)
        name = f"certificate for {' '.join(domains)}"
        self.certificate = self.find_certificate()
        if self.certificate is None:
            if self.dry_run:
                yield Result("create", name, True, "ACM, DNS validation")
                return
            token = hashlib.sha256(" ".join([land.prefix, *domains]).encode()).hexdigest()[:32]
            arn = self.acm.request_certificate(
                DomainName=domains[0],
                SubjectAlternativeNames=domains,
                ValidationMethod="DNS",
                IdempotencyToken=token,
                Tags=land.tags,
            )["CertificateArn"]
            self.certificate = self._with_validation_records(arn)
            yield Result("create", name, detail="ACM, DNS validation")
        else:
            yield Result("unchanged", name, detail=self.certificate["Status"].lower())
        yield from self.ensure_validation_records()

    def _with_validation_records(self, arn, delay=2, attempts=15):
        """ACM adds the validation records to a new certificate a few seconds after the
        request (no waiter covers that); poll for them, bounded, to write or print them."""
        for _ in range(attempts):
            cert = self.acm.describe_certificate(CertificateArn=arn)["Certificate"]
            options = cert.get("DomainValidationOptions", [])
            if options and all("ResourceRecord" in o for o in options):
                return cert
            time.sleep(delay)
        raise OpsError(
            f"ACM gave certificate {arn} no DNS validation records in {delay * attempts}s: "
            "rerun setup_aws"
        )

    def validation_records(self):
        records = {}
        for option in self.certificate.get("DomainValidationOptions", []):
            record = option.get("ResourceRecord")
            if record:
                records[record["Name"]] = record
        return list(records.values())

    def ensure_validation_records(self):
        if self.certificate is None:
            return
        for record in self.validation_records():
            zone = hosted_zone_for(self.route53, record["Name"].rstrip("."))
            what = f"DNS record {record['Name']} CNAME"
            if zone is None:
                yield Result(
                    "attention",
                    what,
                    detail=(
                        f"(certificate validation) has no Route 53 hosted zone here: create it at "
                        f"your DNS provider: {record['Name']} CNAME {record['Value']}"
                    ),
                )
                continue
            desired = {
                "Name": record["Name"],
                "Type": "CNAME",
                "TTL": 300,
                "ResourceRecords": [{"Value": record["Value"]}],
            }
            yield self._converge_record(zone, desired, f"{what} in zone {zone['Name']}")

    def wait_for_certificate(self, delay, attempts):
        arn = self.certificate["CertificateArn"]
        try:
            self.acm.get_waiter("certificate_validated").wait(
                CertificateArn=arn, WaiterConfig={"Delay": delay, "MaxAttempts": attempts}
            )
        except WaiterError:
            raise OpsError(
                f"certificate {arn} is not issued after {delay * attempts}s: check its "
                "validation records in DNS, then rerun setup_aws --wait"
            ) from None
        self.certificate = self.acm.describe_certificate(CertificateArn=arn)["Certificate"]
        return Result(
            "update", f"certificate for {' '.join(self.landscape.env.domains)}", detail="issued"
        )

    # -- DNS

    def _converge_record(self, zone, desired, what):
        current = find_record(self.route53, zone["Id"], desired["Name"], desired["Type"])
        return converge(
            what,
            project_onto(current, desired) if current else None,
            desired,
            lambda: self.route53.change_resource_record_sets(
                HostedZoneId=zone["Id"],
                ChangeBatch={
                    "Comment": f"{self.landscape.prefix}: setup_aws",
                    "Changes": [{"Action": "UPSERT", "ResourceRecordSet": desired}],
                },
            ),
            dry_run=self.dry_run,
        )

    def ensure_alias_records(self):
        for domain in self.landscape.env.domains:
            zone = hosted_zone_for(self.route53, domain)
            if zone is None:
                target = (
                    self.load_balancer["DNSName"] if self.load_balancer else "the load balancer"
                )
                yield Result(
                    "attention",
                    f"DNS record {domain}",
                    detail=(
                        f"has no Route 53 hosted zone here: point it at {target} at your DNS "
                        "provider (CNAME, or ALIAS/ANAME at a zone apex)"
                    ),
                )
                continue
            if self.load_balancer is None:  # dry run of a new load balancer
                yield Result("create", f"DNS record {domain}. A (alias)", True)
                continue
            desired = {
                "Name": f"{domain}.",
                "Type": "A",
                "AliasTarget": {
                    "HostedZoneId": self.load_balancer["CanonicalHostedZoneId"],
                    "DNSName": f"{self.load_balancer['DNSName']}.".lower(),
                    "EvaluateTargetHealth": True,
                },
            }
            yield self._converge_record(
                zone, desired, f"DNS record {domain}. A (alias) in zone {zone['Name']}"
            )

    # -- listeners

    def ensure_listeners(self):
        land = self.landscape
        tg = self.target_group
        forward = {"Type": "forward", "TargetGroupArn": tg["TargetGroupArn"] if tg else None}
        if not land.env.domains:
            yield from self._listener(
                80, {"Protocol": "HTTP", "DefaultActions": [forward]}, "forward"
            )
            return
        redirect = {"Type": "redirect", "RedirectConfig": REDIRECT_TO_HTTPS}
        yield from self._listener(
            80, {"Protocol": "HTTP", "DefaultActions": [redirect]}, "redirect to HTTPS"
        )
        cert = self.certificate
        if cert is None or cert["Status"] != "ISSUED":
            if not (self.dry_run and cert is None):
                yield Result(
                    "attention",
                    f"listener {land.load_balancer}:443",
                    detail=(
                        "waits for the certificate: ACM issues it once the validation records "
                        f"resolve; then rerun ./manage.py setup_aws --env {land.env.name} "
                        "(--wait waits for it)"
                    ),
                )
            else:
                yield Result("create", f"listener {land.load_balancer}:443", True, TLS_POLICY)
            return
        https = {
            "Protocol": "HTTPS",
            "SslPolicy": TLS_POLICY,
            "Certificates": [{"CertificateArn": cert["CertificateArn"]}],
            "DefaultActions": [forward],
        }
        yield from self._listener(443, https, f"certificate, {TLS_POLICY}")

    def _listener(self, port, desired, detail):
        what = f"listener {self.landscape.load_balancer}:{port}"
        if self.load_balancer is None or self.target_group is None:  # dry run, nothing yet
            yield Result("create", what, True, detail)
            return
        arn = self.load_balancer["LoadBalancerArn"]
        listeners = self.elbv2.get_paginator("describe_listeners").paginate(LoadBalancerArn=arn)
        current = next(
            (lis for page in listeners for lis in page["Listeners"] if lis["Port"] == port), None
        )
        if current is None:
            yield converge(
                what,
                None,
                desired,
                lambda: self.elbv2.create_listener(LoadBalancerArn=arn, Port=port, **desired),
                dry_run=self.dry_run,
                detail=detail,
            )
            return
        yield converge(
            what,
            project_onto(current, desired),
            desired,
            lambda: self.elbv2.modify_listener(
                ListenerArn=current["ListenerArn"], Port=port, **desired
            ),
            dry_run=self.dry_run,
            detail=detail,
        )


def hosted_zone_for(route53, name):
    """The account's public hosted zone holding name (the longest match), or None."""
    name = name.rstrip(".").lower() + "."
    best = None
    for page in route53.get_paginator("list_hosted_zones").paginate():
        for zone in page["HostedZones"]:
            if zone.get("Config", {}).get("PrivateZone"):
                continue
            zone_name = zone["Name"].lower()
            if (name == zone_name or name.endswith("." + zone_name)) and (
                best is None or len(zone_name) > len(best["Name"])
            ):
                best = zone
    return best


def find_record(route53, zone_id, name, record_type):
    answer = route53.list_resource_record_sets(
        HostedZoneId=zone_id, StartRecordName=name, StartRecordType=record_type, MaxItems="1"
    )
    for record in answer["ResourceRecordSets"]:
        if record["Name"].lower() == name.lower() and record["Type"] == record_type:
            return record
    return None
