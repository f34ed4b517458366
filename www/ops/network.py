"""An environment's network: the default VPC and its security groups.

<prefix>-web-sg takes HTTP and HTTPS from anywhere (and SSH from one given CIDR only);
<prefix>-backend-sg takes Postgres from the web group only. Any other ingress rule on those
groups (added by hand, or by an older run with another --ssh-cidr) is reported as drift, and
removed with --prune: the groups hold exactly the rules this code wants.
"""

import ipaddress

from www.ops.errors import OpsError
from www.ops.results import Result, converge

OPEN_TO_ALL = ("0.0.0.0/0", "::/0")
WEB_PORTS = (80, 443)
DATABASE_PORT = 5432
# The widest network SSH may come from: an office or VPN range, never a slice of the internet.
SSH_WIDEST_PREFIX = {4: 16, 6: 48}


def default_vpc(ec2):
    vpcs = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"]
    if not vpcs:
        raise OpsError("this region has no default VPC: create one (aws ec2 create-default-vpc)")
    return vpcs[0]["VpcId"]


def find_group(ec2, name, vpc_id):
    groups = ec2.describe_security_groups(
        Filters=[
            {"Name": "group-name", "Values": [name]},
            {"Name": "vpc-id", "Values": [vpc_id]},
        ]
    )["SecurityGroups"]
    return groups[0] if groups else None


def _rules_of(group):
    """Ingress rules as comparable (protocol, from, to, source) tuples."""
    rules = set()
    for perm in group.get("IpPermissions", []) if group else []:
        key = (perm.get("IpProtocol"), perm.get("FromPort"), perm.get("ToPort"))
        rules.update((*key, r["CidrIp"]) for r in perm.get("IpRanges", []))
        rules.update((*key, r["CidrIpv6"]) for r in perm.get("Ipv6Ranges", []))
        rules.update((*key, r["GroupId"]) for r in perm.get("UserIdGroupPairs", []))
    return rules


def _permission(rule):
    protocol, from_port, to_port, source = rule
    perm = {"IpProtocol": protocol, "FromPort": from_port, "ToPort": to_port}
    if source.startswith("sg-"):
        perm["UserIdGroupPairs"] = [{"GroupId": source}]
    elif ":" in source:
        perm["Ipv6Ranges"] = [{"CidrIpv6": source}]
    else:
        perm["IpRanges"] = [{"CidrIp": source}]
    return perm


def _described(rules):
    return ", ".join(f"{r[1]} from {r[3]}" for r in sorted(rules))


def _ensure_group(ec2, *, name, description, vpc_id, wanted, landscape, dry_run):
    """One group with at least the wanted ingress rules; returns (Result, group id)."""
    group = find_group(ec2, name, vpc_id)
    group_id = group["GroupId"] if group else None
    present = _rules_of(group)
    missing = wanted - present

    def apply():
        nonlocal group_id
        if group is None:
            group_id = ec2.create_security_group(
                GroupName=name,
                Description=description,
                VpcId=vpc_id,
                TagSpecifications=[{"ResourceType": "security-group", "Tags": landscape.tags}],
            )["GroupId"]
        if missing:
            ec2.authorize_security_group_ingress(
                GroupId=group_id, IpPermissions=[_permission(r) for r in sorted(missing)]
            )

    result = converge(
        f"security group {name}",
        None if group is None else wanted & present,
        wanted,
        apply,
        dry_run=dry_run,
        detail=_described(wanted) if group is None else f"add {_described(missing)}",
    )
    return result, group_id


def _close_to_world(ec2, name, group_id, *, dry_run):
    """Remove rules opening the web ports to the world (a load-balanced env's web group);
    a Result if there were any."""
    group = ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"][0]
    open_rules = sorted(
        r
        for r in _rules_of(group)
        if r[1] in WEB_PORTS and r[2] in WEB_PORTS and r[3] in OPEN_TO_ALL
    )
    if not open_rules:
        return None
    if not dry_run:
        ec2.revoke_security_group_ingress(
            GroupId=group_id, IpPermissions=[_permission(r) for r in open_rules]
        )
    return Result(
        "update",
        f"security group {name}",
        dry_run,
        f"remove {_described(open_rules)}: behind the load balancer",
    )


def check_ssh_cidr(ssh_cidr):
    """A CIDR SSH may come from: a real network, and never the whole internet."""
    try:
        network = ipaddress.ip_network(ssh_cidr)
    except ValueError:
        raise OpsError(f"--ssh-cidr {ssh_cidr}: not a CIDR such as 203.0.113.7/32") from None
    if network.prefixlen == 0:
        raise OpsError(f"--ssh-cidr {ssh_cidr} opens SSH to the world: give your own address/32")
    widest = SSH_WIDEST_PREFIX[network.version]
    if network.prefixlen < widest:
        raise OpsError(
            f"--ssh-cidr {ssh_cidr} is wider than /{widest}: give your own address/32 "
            "(or your office's or VPN's range)"
        )
    return str(network)


def group_drift(ec2, *, name, group_id, wanted, prune, dry_run):
    """Results for the group's ingress rules that are not in wanted: drift, or with prune
    their removal. Generic: whatever the caller wants is the whole desired set."""
    if group_id is None:  # a dry run's group, not created yet
        return
    (group,) = ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"]
    extra = sorted(_rules_of(group) - wanted)
    if not extra:
        return
    what = f"security group {name} ingress {_described(extra)}"
    if not prune:
        yield Result("drift", what, detail="not set by setup_aws; --prune removes it")
        return
    if not dry_run:
        ec2.revoke_security_group_ingress(
            GroupId=group_id, IpPermissions=[_permission(r) for r in extra]
        )
    yield Result("delete", what, dry_run)


def ensure_security_groups(*, ec2, landscape, ssh_cidr=None, prune=False, dry_run=False):
    """<prefix>-web-sg open on 80/443 (and SSH from ssh_cidr only); backend from web only.

    A load-balanced environment gets <prefix>-lb-sg open on 80/443 instead, and its web group
    admits port 80 from that group only: rules opening 80 or 443 to the world are removed.
    Any other rule on these groups is drift (removed when prune).
    """
    ssh_cidr = ssh_cidr and check_ssh_cidr(ssh_cidr)
    vpc_id = default_vpc(ec2)

    def ensure_group(name, description, wanted):
        return _ensure_group(
            ec2,
            name=name,
            description=f"{landscape.prefix} {description}",
            vpc_id=vpc_id,
            wanted=wanted,
            landscape=landscape,
            dry_run=dry_run,
        )

    world = {("tcp", port, port, cidr) for port in WEB_PORTS for cidr in OPEN_TO_ALL}
    if landscape.env.load_balanced:
        result, load_balancer_id = ensure_group(
            landscape.load_balancer_group, "load balancer: HTTP and HTTPS from anywhere", world
        )
        yield result
        # a dry run names the group not created yet
        web_rules = {("tcp", 80, 80, load_balancer_id or landscape.load_balancer_group)}
    else:
        web_rules = set(world)
    if ssh_cidr:
        web_rules.add(("tcp", 22, 22, ssh_cidr))
    result, web_id = ensure_group(landscape.web_group, "web servers: HTTP and HTTPS", web_rules)
    yield result
    closed = (
        web_id
        and landscape.env.load_balanced
        and _close_to_world(ec2, landscape.web_group, web_id, dry_run=dry_run)
    )
    if closed:
        yield closed

    web_source = web_id or landscape.web_group  # a dry run names the group not created yet
    backend_rules = {("tcp", DATABASE_PORT, DATABASE_PORT, web_source)}
    result, backend_id = ensure_group(
        landscape.backend_group, "backends: reachable from the web servers only", backend_rules
    )
    yield result
    groups = [
        (landscape.web_group, web_id, web_rules),
        (landscape.backend_group, backend_id, backend_rules),
    ]
    if landscape.env.load_balanced:
        groups.insert(0, (landscape.load_balancer_group, load_balancer_id, world))
    for name, group_id, wanted in groups:
        yield from group_drift(
            ec2, name=name, group_id=group_id, wanted=wanted, prune=prune, dry_run=dry_run
        )
