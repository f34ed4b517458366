"""Releases: the record an environment runs, its history, failed marks and instance reports.

All of it lives in the environment's bucket under its deploy prefix (Environment owns the keys),
so the operator's commands and the instances' stage 2 read and write one set of facts:

    release.env                    what to run (IMAGE=, TAG=) and what ran before it (PREVIOUS_*),
                                   the fallback stage 2 points the record back to
    releases/history.json          every release published_image recorded, oldest first
    releases/failed/<digest>.json  the first instance's reason a release could not be made
                                   healthy (written with If-None-Match: the first reason wins)
    status/<instance-id>.json      what each instance runs, and whether it is healthy, after
                                   every stage-2 run

Writes to the record and the history are conditional (If-Match on the ETag read, If-None-Match
for a first write): two publishers, or a publisher and an instance pointing the record back,
never lose each other's write. S3 answers a lost race with 412 (or 409 for writes in flight).
"""

import datetime
import json

from botocore.exceptions import ClientError

from www.ops.errors import OpsError, error_code
from www.ops.results import Result

REVISION_LABEL = "org.opencontainers.image.revision"
LOST_RACE = ("PreconditionFailed", "ConditionalRequestConflict", "412", "409")
HISTORY_ATTEMPTS = 5


def now():
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def digest_of(image):
    """The sha256:... part of repository@sha256:..."""
    return image.rpartition("@")[2]


def image_revision(image):
    """The git revision build_docker_image.sh labelled the image with (OCI label)."""
    return (image.labels or {}).get(REVISION_LABEL) or "unknown"


# --- objects with their ETags -------------------------------------------------------------------


def read_versioned(s3, env, key):
    """(bytes, ETag) of the object, or (None, None) when there is none."""
    try:
        response = s3.get_object(Bucket=env.bucket, Key=key)
    except ClientError as exc:
        if error_code(exc) == "NoSuchKey":
            return None, None
        if error_code(exc) == "NoSuchBucket":
            raise OpsError(
                f"bucket {env.bucket} does not exist: "
                f"run ./manage.py setup_aws --env {env.name} first"
            ) from None
        raise
    return response["Body"].read(), response["ETag"]


def put_if(s3, env, key, body, *, etag, content_type="application/json"):
    """Write only if the object is still the one read (etag), or still absent (etag None).

    Returns False when another writer came first.
    """
    condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
    try:
        s3.put_object(
            Bucket=env.bucket,
            Key=key,
            Body=body,
            ContentType=content_type,
            ServerSideEncryption="AES256",
            **condition,
        )
    except ClientError as exc:
        if error_code(exc) in LOST_RACE:
            return False
        raise
    return True


def read_json(s3, env, key):
    body, _ = read_versioned(s3, env, key)
    return None if body is None else json.loads(body)


# --- the record ----------------------------------------------------------------------------------


def record_text(image, tag, previous=None, rolled_back_from=""):
    lines = [f"IMAGE={image}", f"TAG={tag}"]
    if previous and previous.get("IMAGE"):
        lines += [f"PREVIOUS_IMAGE={previous['IMAGE']}", f"PREVIOUS_TAG={previous['TAG']}"]
    if rolled_back_from:
        lines.append(f"ROLLED_BACK_FROM={rolled_back_from}")
    return "".join(f"{line}\n" for line in lines)


def parse_record(text):
    values = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and key.isupper():
            values[key] = value
    return values


def read_record(s3, env):
    """({"IMAGE":..., "TAG":..., ...}, ETag), or ({}, None) before the first publish."""
    body, etag = read_versioned(s3, env, env.release_key)
    return (parse_record(body.decode()) if body else {}), etag


def write_record(s3, env, text, etag):
    if not put_if(s3, env, env.release_key, text.encode(), etag=etag, content_type="text/plain"):
        raise OpsError(
            f"s3://{env.bucket}/{env.release_key} changed while this ran "
            "(another publish, or an instance pointing it back): run the command again"
        )


# --- history -------------------------------------------------------------------------------------


def read_history(s3, env):
    """(entries oldest first, ETag)."""
    body, etag = read_versioned(s3, env, env.release_history_key)
    entries = json.loads(body)["releases"] if body else []
    return entries, etag


def append_history(s3, env, entry):
    """Add entry at the end; a concurrent append makes this read again and retry."""
    for _ in range(HISTORY_ATTEMPTS):
        entries, etag = read_history(s3, env)
        body = json.dumps({"releases": [*entries, entry]}, indent=1).encode()
        if put_if(s3, env, env.release_history_key, body, etag=etag):
            return
    raise OpsError(
        f"s3://{env.bucket}/{env.release_history_key} kept changing: run the command again"
    )


def record(*, s3, sts, env, image, tag, revision, dry_run=False):
    """Make image (repository@digest) the env's release and append it to the history.

    Yields a Result for the record and one for the history. A rerun with the same image and
    tag changes neither (and adds a missing history entry, e.g. for a record from before the
    history existed).
    """
    where = f"s3://{env.bucket}/{env.release_key}"
    current, etag = read_record(s3, env)
    entries, _ = read_history(s3, env)
    digest = digest_of(image)
    failed = failed_release(s3, env, digest)
    if failed:
        raise OpsError(
            f"release {tag} failed on {failed.get('instance', '?')}: {failed.get('reason', '?')} "
            "(it is not recorded again: build and publish a fixed release)"
        )
    if current.get("IMAGE") == image and current.get("TAG") == tag:
        yield Result("unchanged", where, detail=image)
    else:
        verb = "update" if current else "create"
        if not dry_run:
            write_record(s3, env, record_text(image, tag, previous=current), etag)
        yield Result(verb, where, dry_run, detail=image)
    if any(e["digest"] == digest and e["tag"] == tag for e in entries[-1:]):
        return
    if not dry_run:
        caller = sts.get_caller_identity()["Arn"] if sts else "unknown"
        entry = {
            "tag": tag,
            "image": image,
            "digest": digest,
            "revision": revision,
            "by": caller,
            "at": now(),
        }
        append_history(s3, env, entry)
    yield Result(
        "update",
        f"release history s3://{env.bucket}/{env.release_history_key}",
        dry_run,
        detail=f"{tag} {digest}",
    )


# --- failed releases and instance reports ---------------------------------------------------


def failed_release(s3, env, digest):
    """The failed mark of a release ({"reason", "instance", "tag", "at"}), or None."""
    return read_json(s3, env, env.failed_release_key(digest))


def instance_statuses(s3, env):
    """{instance id: its last report} from the env's status objects."""
    statuses = {}
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=env.bucket, Prefix=env.status_prefix):
        for item in page.get("Contents", []):
            report = read_json(s3, env, item["Key"])
            if report is not None:
                instance = item["Key"].removeprefix(env.status_prefix).removesuffix(".json")
                statuses[instance] = report
    return statuses


def history_view(s3, env):
    """The history newest first, each entry with "current" and "failed" (its mark or None)."""
    entries, _ = read_history(s3, env)
    current, _ = read_record(s3, env)
    current_digest = digest_of(current.get("IMAGE", ""))
    view = []
    for entry in reversed(entries):
        view.append(
            {
                **entry,
                "current": entry["digest"] == current_digest and entry["tag"] == current["TAG"],
                "failed": failed_release(s3, env, entry["digest"]),
            }
        )
    return view


# --- rollback ------------------------------------------------------------------------------------


def rollback_target(view, current, to):
    """The history entry to go back to: the named tag's newest, or the previous good one."""
    if to:
        target = next((e for e in view if e["tag"] == to), None)
        if target is None:
            known = ", ".join(dict.fromkeys(e["tag"] for e in view)) or "none"
            raise OpsError(f"no release {to!r} in the history (published: {known})")
        return target
    current_digest = digest_of(current.get("IMAGE", ""))
    seen_current = not any(e["current"] for e in view)
    for entry in view:
        if entry["current"]:
            seen_current = True
            continue
        if seen_current and not entry["failed"] and entry["digest"] != current_digest:
            return entry
    raise OpsError("no earlier good release in the history: name one with --to TAG")


def rollback(*, s3, env, to=None, dry_run=False):
    """Point the env's record at an earlier release from its history; one Result."""
    where = f"s3://{env.bucket}/{env.release_key}"
    current, etag = read_record(s3, env)
    if not current:
        raise OpsError(
            f"{where} does not exist: nothing to roll back (run ./manage.py publish_image)"
        )
    if not to and current.get("ROLLED_BACK_FROM"):
        return Result(
            "unchanged",
            where,
            detail=f"already rolled back from {current['ROLLED_BACK_FROM']} to "
            f"{current['TAG']}; name another release with --to TAG",
        )
    target = rollback_target(history_view(s3, env), current, to)
    if target["image"] == current.get("IMAGE"):
        return Result("unchanged", where, detail=f"{target['tag']} is the current release")
    if target["failed"]:
        raise OpsError(
            f"release {target['tag']} is marked failed ({target['failed'].get('reason')}): "
            "choose another with --to TAG"
        )
    if not dry_run:
        text = record_text(target["image"], target["tag"], current, current.get("TAG", ""))
        write_record(s3, env, text, etag)
    return Result("update", where, dry_run, detail=f"{current.get('TAG')} -> {target['tag']}")
