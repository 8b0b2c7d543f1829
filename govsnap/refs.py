"""Every ref and refspec govsnap reads or writes, named in one place (docs/format.md).

Shared with every clone and server: snapshots, the audit trail and the notes. Kept by one
clone only, never pushed: what it fetched from each remote (`refs/govsnap-remote/`) and
what it verified (`refs/govsnap-verified/`: the audit tip it wrote or checked last, the
audit tip it saw on each remote, the trust policy commit it verified per policy ref).
"""

from __future__ import annotations

import re

GOVSNAP_ROOT = "refs/govsnap/"
SNAPSHOT_REF_PREFIX = "refs/govsnap/snapshots/"
AUDIT_REF = "refs/govsnap/audit"
NOTES_REF = "refs/notes/govsnap"
# A snapshot ref as the server accepts it: the id is 16 hex digits.
SNAPSHOT_REF = re.compile(r"^refs/govsnap/snapshots/[0-9a-f]{16}$")

TRACKING_ROOT = "refs/govsnap-remote/"
VERIFIED_ROOT = "refs/govsnap-verified/"
LOCAL_NAMESPACES = (TRACKING_ROOT, VERIFIED_ROOT)
# What this clone last wrote or verified of the audit chain. Every govsnap update of
# AUDIT_REF moves it in the same transaction, and none extends a chain that no longer
# holds it: a rewrite, truncation or deletion of the chain is found, never built on.
VERIFIED_AUDIT_REF = VERIFIED_ROOT + "audit"
_VERIFIED_POLICY = VERIFIED_ROOT + "policy/"
_VERIFIED_REMOTES = VERIFIED_ROOT + "remotes/"

# What `govsnap push` sends. No `+`: a snapshot ref is never forced on the remote, and the
# notes and audit refs only move forward (they are merged with the remote's first).
SNAPSHOT_PUSH_REFSPEC = f"{SNAPSHOT_REF_PREFIX}*:{SNAPSHOT_REF_PREFIX}*"
# `remote setup` writes globs: git fails a plain push or fetch whose configured refspec
# names an exact ref that does not exist (no notes yet), and a glob may match nothing.
# `refs/notes/govsnap*` is exact in practice; `refs/govsnap/*` holds snapshots and audit.
CONFIG_PUSH_REFSPECS = (f"{GOVSNAP_ROOT}*:{GOVSNAP_ROOT}*", f"{NOTES_REF}*:{NOTES_REF}*")


def snapshot_ref(ident: str) -> str:
    """Return the ref of snapshot `ident`."""
    return SNAPSHOT_REF_PREFIX + ident


def tracking_root(remote: str) -> str:
    """Return the namespace that mirrors what `remote` holds (forced on every fetch)."""
    return f"{TRACKING_ROOT}{remote}/"


def tracking_ref(remote: str, what: str) -> str:
    """Return the ref under which the remote's `what` (notes, audit, snapshots/) is kept."""
    return tracking_root(remote) + what


def fetch_refspecs(remote: str) -> tuple[str, ...]:
    """Return the refspecs that copy a remote's govsnap refs into its tracking namespace
    (forced, because that namespace mirrors the remote, whatever it holds)."""
    base = tracking_root(remote)
    return (f"+{GOVSNAP_ROOT}*:{base}*", f"+{NOTES_REF}*:{base}notes*")


def seen_remote_audit_ref(remote: str) -> str:
    """Return the ref under which this clone records the remote's audit tip it last saw
    there and verified (fetched or pushed)."""
    return f"{_VERIFIED_REMOTES}{remote}/audit"


def seen_remote_notes_ref(remote: str) -> str:
    """Return the ref under which this clone records the remote's notes commit it last
    saw there (the remote's notes history must go on holding it)."""
    return f"{_VERIFIED_REMOTES}{remote}/notes"


def seen_remote_snapshots_ref(remote: str) -> str:
    """Return the ref under which this clone records the snapshots it saw on the remote:
    a commit whose tree holds one file, `snapshots`, a line `<id> <tag>` each."""
    return f"{_VERIFIED_REMOTES}{remote}/snapshots"


def verified_policy_ref(name: str) -> str:
    """Return the ref under which a clone remembers the policy commit of `name` it verified."""
    return _VERIFIED_POLICY + name


def is_snapshot_ref(name: str) -> bool:
    """Return True for a snapshot ref, local or fetched into a remote's namespace."""
    if name.startswith(SNAPSHOT_REF_PREFIX):
        return True
    rest = name.removeprefix(TRACKING_ROOT)
    return rest != name and rest.partition("/")[2].startswith("snapshots/")


def is_tracked_notes_ref(name: str) -> bool:
    """Return True for a remote's notes as a fetch last copied them."""
    rest = name.removeprefix(TRACKING_ROOT)
    return rest != name and rest.count("/") == 1 and rest.endswith("/notes")


def is_audit_copy(name: str) -> bool:
    """Return True for a copy of the audit trail this clone keeps (what it verified, what
    it saw on a remote, what a fetch brought)."""
    return name.startswith(LOCAL_NAMESPACES) and name.endswith("/audit")


def is_govsnap_ref(name: str) -> bool:
    """Return True for a ref in any of govsnap's namespaces, whatever the name."""
    return name.startswith((GOVSNAP_ROOT, "refs/notes/govsnap", *LOCAL_NAMESPACES))
