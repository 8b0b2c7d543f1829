"""What the server's pre-receive hook decides about a push: the server keeps the evidence.

Refused, whoever pushes:
- any ref under `refs/govsnap/` outside the layout (`refs/govsnap/audit`,
  `refs/govsnap/snapshots/<16 hex>`), and the clone-local namespaces
  (`refs/govsnap-remote/`, `refs/govsnap-verified/`) and `refs/notes/govsnap*` but
  `refs/notes/govsnap` itself;
- deleting, or moving other than forward, `refs/govsnap/audit` and `refs/notes/govsnap`;
- new audit entries of the wrong shape, dated in the future or before their parent,
  unsigned, signed by a key the trust policy does not know, signed before their own
  time, or making a decision (prune, purge, unpin) their signer may not make in the
  environment of the snapshot's tag as the server holds it;
- a snapshot that fails verification (id, tag, signature, trust, digest, objects) when
  the server first sees it; a snapshot id a signed purge erased (its tombstone); a
  rewrite of a snapshot ref; a deletion of one that no authorised prune entry of the
  audit trail (as it stands after the push, replayed in order) names;
- a change of the policy ref that the policy's own rules refuse (an unapproved change, a
  version that does not grow on every parent, a rewrite of what the server accepted, a
  version below the highest it accepted) or its deletion;
- every govsnap ref update while the server has no verified policy: no policy ref named
  (git config govsnap.trustRef: never the branch HEAD names), no anchor pinned (git
  config govsnap.trustAnchor), no policy, or a history that does not hold.

The server's clock is its own: every key (of a snapshot, an audit entry, an approval)
is judged valid or not at the time the push arrives, whatever time its signature claims.
The server's policy is the one on its own policy ref before the push: a push cannot bring
the policy that would admit it. What it accepted is remembered in
.git/govsnap/policy-record.json; refs/govsnap-verified/ (which a mirror clone of a forge
can bring) is ignored.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pygit2

from govsnap import audit, objects
from govsnap.errors import CorruptObject, GovsnapError, UsageError
from govsnap.objects import SignatureKind, SnapshotPayload, read_tag
from govsnap.refs import (
    AUDIT_REF,
    LOCAL_NAMESPACES,
    NOTES_REF,
    SNAPSHOT_REF,
    SNAPSHOT_REF_PREFIX,
    is_govsnap_ref,
)
from govsnap.repo import Repo
from govsnap.store import Snapshot
from govsnap.trust import (
    Arrival,
    TrustPolicy,
    load_policy,
    policy_at,
    policy_ref,
    record_server_policy,
)
from govsnap.verify import Check, record_received, verify_snapshots

ZERO_OID = "0" * 40
# Notes are not signed and the server does not see them with the tag: every other check
# of `govsnap verify` must pass for a snapshot to be accepted.
_RECEIVE_CHECKS = tuple(c for c in Check if c is not Check.NOTE)


@dataclass(frozen=True)
class RefUpdate:
    """One line of pre-receive input: `<old oid> <new oid> <ref>`."""

    old: str
    new: str
    ref: str

    @property
    def kind(self) -> str:
        """Return "create", "delete", "update" or "unchanged"."""
        if self.old == self.new:
            return "unchanged"
        if self.old == ZERO_OID:
            return "create"
        if self.new == ZERO_OID:
            return "delete"
        return "update"


def describe(repo: Repo, update: RefUpdate) -> str:
    """Return what an update does, for the pusher: a "fast-forward" (the new commit
    descends from the old), a "rewrite" (any other change of the ref: a snapshot ref
    moved to another tag), or its kind (create, delete)."""
    if update.kind != "update":
        return update.kind
    old, new = repo.git.get(update.old), repo.git.get(update.new)
    commits = isinstance(old, pygit2.Commit) and isinstance(new, pygit2.Commit)
    if commits and repo.git.descendant_of(update.new, update.old):
        return "fast-forward"
    return "rewrite"


def parse_receive_lines(data: bytes) -> list[RefUpdate]:
    """Parse git's pre-receive input."""
    updates = []
    for line in data.decode(errors="surrogateescape").splitlines():
        if not line.strip():
            continue
        parts = line.split(" ", 2)
        if len(parts) != 3:
            raise UsageError(f"pre-receive: cannot read input line {line!r}")
        updates.append(RefUpdate(*parts))
    return updates


@dataclass(frozen=True)
class ReceiveVerdict:
    """Whether one ref update is accepted, and why."""

    update: RefUpdate
    accepted: bool
    reason: str


def _layout(update: RefUpdate) -> str | None:
    """Return why a govsnap ref is outside the documented layout, or None."""
    ref = update.ref
    if ref.startswith(LOCAL_NAMESPACES):
        return f"{ref.split('/')[1]}/ is a clone's own namespace: it is never pushed"
    if ref in (AUDIT_REF, NOTES_REF) or SNAPSHOT_REF.match(ref):
        return None
    return (
        "not in govsnap's layout (refs/govsnap/audit, refs/govsnap/snapshots/<16 hex>, "
        "refs/notes/govsnap)"
    )


def _forward_only(repo: Repo, update: RefUpdate) -> str | None:
    """Return why an update of the audit or notes ref is refused (deleting or rewriting
    evidence), or None when it only adds history."""
    if update.kind == "delete":
        return f"{update.ref} holds evidence: it is never deleted"
    if update.kind != "update":
        return None
    new = repo.git.get(update.new)
    if not isinstance(new, pygit2.Commit):
        return f"{update.ref} must point at a commit"
    if not repo.git.descendant_of(new.id, pygit2.Oid(hex=update.old)):
        return (
            f"{update.ref} holds evidence: it only moves forward (this push drops entries; "
            "fetch and merge first: govsnap push does)"
        )
    return None


class _Push:
    """One push being judged: the server's policy and the audit trail after the push."""

    def __init__(self, repo: Repo, updates: Sequence[RefUpdate], policy: TrustPolicy) -> None:
        self.repo = repo
        self.updates = updates
        self.policy = policy
        self.now = int(time.time())
        self.skew = objects.configured_skew(repo)
        self.verdicts: dict[int, ReceiveVerdict] = {}
        self.audit_tip: str | None = audit_tip(repo)
        self._decisions: audit.AuditDecisions | None = None
        # What the server holds, and the snapshot tags this push brings: a decision about
        # a snapshot (a purge's tombstone too) is judged in the environment of its tag
        # (whose payload must hash to the id), never an entry's claim.
        pushed = {
            u.ref.removeprefix(SNAPSHOT_REF_PREFIX): u.new
            for u in updates
            if SNAPSHOT_REF.match(u.ref) and u.kind == "create"
        }
        self.tags = audit.held_tags(repo, pushed)

    def decide(self, index: int, accepted: bool, reason: str) -> None:
        self.verdicts[index] = ReceiveVerdict(self.updates[index], accepted, reason)

    def decisions(self) -> audit.AuditDecisions:
        """Return what the authorised entries of the audit trail after the push decide."""
        if self._decisions is None:
            if self.audit_tip is None:
                self._decisions = audit.AuditDecisions(frozenset(), frozenset(), frozenset(), ())
            else:
                tip = pygit2.Oid(hex=self.audit_tip)
                self._decisions = audit.decisions(self.repo, self.policy, tip=tip, tags=self.tags)
        return self._decisions


def audit_tip(repo: Repo) -> str | None:
    """Return the server's audit tip before the push."""
    ref = repo.git.references.get(AUDIT_REF)
    return None if ref is None else str(ref.target)


def server_policy_ref(repo: Repo) -> str | None:
    """Return the policy ref a server names (`govsnap.trustRef`, in full), or None: a
    server never falls back to the branch HEAD names, which may be a branch nobody has
    created yet, so that the first pusher of it would choose the policy."""
    if repo.config_str("govsnap.trustRef") is None:
        return None
    return policy_ref(repo)


def decide_receive(repo: Repo, updates: Sequence[RefUpdate]) -> list[ReceiveVerdict]:
    """Return a verdict per ref update of a push (see the module docstring); updates of
    other refs are accepted as they are, but for the policy ref."""
    verdicts = {i: ReceiveVerdict(u, True, "not govsnap's") for i, u in enumerate(updates)}
    try:
        name = server_policy_ref(repo)
    except GovsnapError as exc:
        name, unnamed = None, exc.message
    else:
        unnamed = (
            "this server names no policy ref: git config govsnap.trustRef refs/heads/<branch> "
            "(govsnap hooks install --server --trust-ref ...); until then it refuses every "
            "govsnap ref"
        )
    judged = [i for i, u in enumerate(updates) if is_govsnap_ref(u.ref) or u.ref == name]
    if not judged:
        return [verdicts[i] for i in range(len(updates))]
    if name is None:
        for i in judged:
            verdicts[i] = ReceiveVerdict(updates[i], False, unnamed)
        return [verdicts[i] for i in range(len(updates))]
    try:
        policy = load_policy(repo, name, require_anchor=True, server=True)
        if policy is not None:
            # Remembered (outside the refs, which a mirror clone could bring): a later
            # push can never bring the policy back below this version.
            record_server_policy(repo, policy)
    except GovsnapError as exc:
        for i in judged:
            verdicts[i] = ReceiveVerdict(
                updates[i], False, f"the server's trust policy: {exc.message}"
            )
        return [verdicts[i] for i in range(len(updates))]
    if policy is None:
        reason = (
            f"this server has no trust policy ({name}:.govsnap/trust.toml does not exist): "
            "it refuses every snapshot until one is pushed there (write it in a clone with "
            "`govsnap init` or `govsnap trust init`, commit and push it)"
        )
        for i in judged:
            if updates[i].ref == name:
                verdicts[i] = _judge_policy_ref(repo, name, updates[i])
            else:
                verdicts[i] = ReceiveVerdict(updates[i], False, reason)
        return [verdicts[i] for i in range(len(updates))]
    push = _Push(repo, updates, policy)
    for i in judged:
        update = updates[i]
        if update.ref == name:
            push.verdicts[i] = _judge_policy_ref(repo, name, update)
            continue
        problem = _layout(update)
        if problem is None and update.ref in (AUDIT_REF, NOTES_REF):
            problem = _forward_only(repo, update)
        if problem is not None:
            push.decide(i, False, problem)
        elif update.ref == AUDIT_REF:
            _judge_audit(push, i)
        elif update.ref == NOTES_REF:
            push.decide(i, True, "notes only grow (they are a display cache, never trusted)")
    # Snapshot updates are judged against the audit trail as it will be after the push
    # (its new entries accepted above): a deletion's authorising prune travels with it.
    snapshots = [i for i in judged if i not in push.verdicts]
    _judge_snapshots(push, snapshots)
    verdicts.update(push.verdicts)
    return [verdicts[i] for i in range(len(updates))]


def _judge_policy_ref(repo: Repo, name: str, update: RefUpdate) -> ReceiveVerdict:
    """Judge a push to the policy ref: the policy at its new tip must hold, by the rules
    of the policy the server verified (see trust.load_policy), what the push brings
    judged at its arrival (an approval by a key expired by now does not count)."""
    if update.kind == "delete":
        return ReceiveVerdict(update, False, f"{name} holds the trust policy: it is never deleted")
    tip = repo.git.get(update.new)
    if not isinstance(tip, pygit2.Commit):
        return ReceiveVerdict(update, False, f"{name} must point at a commit")
    known = None if update.kind == "create" else pygit2.Oid(hex=update.old)
    arrival = Arrival(int(time.time()), known)
    try:
        policy = policy_at(
            repo, name, tip, remember=False, require_anchor=True, server=True, arrival=arrival
        )
    except GovsnapError as exc:
        return ReceiveVerdict(update, False, f"the trust policy it brings: {exc.message}")
    if policy is None:
        return ReceiveVerdict(update, True, "no trust policy on it yet")
    return ReceiveVerdict(update, True, f"trust policy version {policy.version} holds")


def _judge_audit(push: _Push, index: int) -> None:
    update = push.updates[index]
    new = pygit2.Oid(hex=update.new)
    known = [] if update.kind == "create" else [pygit2.Oid(hex=update.old)]
    # Strict: a new entry on the server must be signed by a signer listed now, with a
    # key valid now (the server's clock, not the signer's, says when it arrived).
    problems = audit.new_entry_problems(
        push.repo,
        new,
        known,
        push.policy,
        skew=push.skew,
        now=push.now,
        retired_known=False,
        tags=push.tags,
        arrival=True,
    )
    if problems:
        shown = audit.first_problems(problems)
        push.decide(index, False, f"new audit entries refused: {shown}")
        return
    push.audit_tip = update.new
    push.decide(index, True, "new entries signed by signers the trust policy knows")


def _pushed_snapshot(repo: Repo, ref: str, oid: str) -> Snapshot:
    """Return the Snapshot a ref update names (unreadable tags give payload None)."""
    ident = ref.removeprefix(SNAPSHOT_REF_PREFIX)
    try:
        tag = read_tag(repo, oid)
        payload = SnapshotPayload.parse(tag.payload)
    except CorruptObject as exc:
        return Snapshot(ident, oid, None, SignatureKind.NONE, None, exc.message)
    return Snapshot(ident, oid, payload, tag.signature_kind, None)


def _judge_snapshots(push: _Push, indexes: Sequence[int]) -> None:
    creations: list[int] = []
    for i in indexes:
        update = push.updates[i]
        ident = update.ref.removeprefix(SNAPSHOT_REF_PREFIX)
        if update.kind == "update":
            push.decide(i, False, "snapshot refs are never rewritten: this one already exists")
        elif update.kind == "unchanged":
            push.decide(i, True, "unchanged")
        elif update.kind == "delete":
            found = push.decisions()
            if ident in found.pruned:
                push.decide(i, True, "an authorised prune entry of the audit trail names it")
            else:
                why = next(
                    (
                        f" ({j.reason})"
                        for j in reversed(found.ignored)
                        if ident in j.entry.snapshots
                    ),
                    "",
                )
                push.decide(
                    i,
                    False,
                    "deleting a snapshot needs a signed prune entry by a signer the trust "
                    "policy allows to prune in its environment, made while it was not pinned, "
                    f"in the audit trail (govsnap prune, then govsnap push --prune){why}",
                )
        elif ident in push.decisions().purged:
            push.decide(
                i, False, f"snapshot {ident} was purged (a signed purge entry): never again"
            )
        else:
            creations.append(i)
    if not creations:
        return
    snaps = [
        _pushed_snapshot(push.repo, push.updates[i].ref, push.updates[i].new) for i in creations
    ]
    results = verify_snapshots(push.repo, snaps, policy=push.policy, at=push.now)
    received: list[str] = []
    for i, snap, result in zip(creations, snaps, results, strict=True):
        failed = [
            f"{c.name}: {c.message}"
            for c in result.checks
            if c.name in _RECEIVE_CHECKS and not c.ok
        ]
        if failed:
            push.decide(i, False, "; ".join(failed))
        else:
            push.decide(i, True, f"verified, {result.check(Check.TRUST).message}")
            received.append(snap.id)
    record_received(push.repo, received, push.now)


def add_quarantine(repo: Repo, env: Mapping[str, str]) -> None:
    """Let libgit2 read the pushed objects, which wait in a quarantine directory until the
    hook accepts them."""
    for variable in ("GIT_QUARANTINE_PATH", "GIT_OBJECT_DIRECTORY"):
        path = env.get(variable)
        if path and Path(path).is_dir():
            repo.git.odb.add_disk_alternate(str(Path(path).resolve()))
