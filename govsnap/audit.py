"""The audit trail: one commit per operation on `refs/govsnap/audit`, on the empty tree."""

from __future__ import annotations

import json
import socket
from collections.abc import Mapping, Sequence
from typing import Any

import pygit2

from govsnap.objects import update_ref
from govsnap.repo import Identity, Repo

AUDIT_REF = "refs/govsnap/audit"


def entry_message(
    operation: str,
    summary: str,
    snapshots: Sequence[str],
    identity: Identity,
    arguments: Mapping[str, Any],
    result: str,
    duration: float,
) -> str:
    """Return an audit commit message: a one-line summary, then a JSON body."""
    body = {
        "operation": operation,
        "snapshots": list(snapshots),
        "actor": {"name": identity.name, "email": identity.email},
        "host": socket.gethostname(),
        "time": identity.time,
        "arguments": dict(arguments),
        "result": result,
        "duration_seconds": round(duration, 6),
    }
    return f"{operation}: {summary}\n\n{json.dumps(body, sort_keys=True, indent=2)}\n"


def append(
    repo: Repo,
    operation: str,
    summary: str,
    *,
    snapshots: Sequence[str] = (),
    identity: Identity,
    arguments: Mapping[str, Any] | None = None,
    result: str = "ok",
    duration: float = 0.0,
) -> pygit2.Oid:
    """Append one entry to the audit chain by compare-and-swap; return its commit oid."""
    message = entry_message(
        operation, summary, snapshots, identity, arguments or {}, result, duration
    )
    sig = identity.signature()
    empty_tree = repo.git.TreeBuilder().write()

    def compute(current: pygit2.Oid | None) -> pygit2.Oid:
        parents = [] if current is None else [current]
        return repo.git.create_commit(None, sig, sig, message, empty_tree, parents)

    written = update_ref(repo, AUDIT_REF, compute, message=f"govsnap: {operation}")
    assert written is not None
    return written
