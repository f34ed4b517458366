"""Result, what a converging step reports, and converge, the one way a step converges.

A converging function compares what AWS holds with what it should hold, changes it only when
they differ (never in a dry run), and yields one Result per item so a command can print each
as it happens (www.management.base.AWSCommand.report).
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class Result:
    """What happened to one item: created, updated or unchanged (or would be, in a dry run)."""

    # "create" | "update" | "delete" | "push" | "terminate" | "unchanged" | "attention" (detail
    # says what to do) | "skip" (detail says why nothing was done) | "drift" (found, not made
    # by us: what/detail say what; --prune removes it)
    verb: str
    what: str
    dry_run: bool = False
    detail: str = ""

    @property
    def changed(self):
        return self.verb in ("create", "update", "delete", "push", "terminate")

    def __str__(self):
        if self.verb in ("attention", "skip"):
            return f"{self.what} {self.detail}"
        if self.verb == "drift":
            return f"Drift: {self.what} ({self.detail})"
        if not self.changed:
            text = f"{self.what} exists, unchanged"
        elif self.dry_run:
            text = f"Would {self.verb} {self.what}"
        else:
            text = f"{self.verb.capitalize().removesuffix('e')}ed {self.what}"
        return f"{text} ({self.detail})" if self.detail else text


def converge(what, current, desired, apply, *, dry_run, detail=""):
    """Apply the desired state unless it is already there; say which it was.

    current is None when the item does not exist yet (a "create"), else it is compared with
    desired (an "update" when they differ). apply() makes the change; a dry run skips it.
    """
    if current == desired:
        return Result("unchanged", what)
    if not dry_run:
        apply()
    return Result("create" if current is None else "update", what, dry_run, detail)


def converge_exists(what, exists, create, *, dry_run, detail=""):
    """converge for an item that only has to exist: create() it unless it does."""
    return converge(what, True if exists else None, True, create, dry_run=dry_run, detail=detail)
