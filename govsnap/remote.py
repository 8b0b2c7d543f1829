"""Sharing snapshots through a git remote: `push`, `fetch` (verify new snapshots, merge the
notes, join the audit trail) and `remote setup` (refspecs for plain `git push`/`git fetch`).

The transfer itself is done by the git binary (repo.git_cmd), not by libgit2's remote
support: git's transports (ssh with the user's ssh config and agent, git://, http with
credential helpers, `url.*.insteadOf`, proxies) are what users have configured and tested
with `git push`, and a server's pre-receive hook answers through them the same way.

A remote's refs are fetched into `refs/govsnap-remote/<remote>/` (forced: that namespace
mirrors whatever the remote has, tampered or not); only then are they judged and merged
into the local refs, which a fetch never rewrites.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

import pygit2
from pygit2.enums import SortMode

from govsnap import audit, notes, objects
from govsnap.errors import (
    CheckFailed,
    ConcurrentUpdate,
    CorruptObject,
    Declined,
    EnvironmentProblem,
    SnapshotConflict,
    UsageError,
)
from govsnap.objects import (
    RefValues,
    contains,
    read_tag,
    ref_target,
    update_ref,
    update_refs,
)
from govsnap.refs import (
    AUDIT_REF,
    CONFIG_PUSH_REFSPECS,
    GOVSNAP_ROOT,
    NOTES_REF,
    SNAPSHOT_PUSH_REFSPEC,
    SNAPSHOT_REF_PREFIX,
    fetch_refspecs,
    seen_remote_audit_ref,
    seen_remote_notes_ref,
    seen_remote_snapshots_ref,
    tracking_ref,
)
from govsnap.repo import Repo
from govsnap.store import Snapshot, load_snapshot, snapshot_refs
from govsnap.trust import load_policy

# Times a push is tried again when the remote's notes or audit moved between our look and
# our push (another clone pushed): each try fetches and merges first.
_PUSH_ATTEMPTS = 3

_REMOTE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_USERINFO = re.compile(r"//[^/@]*@")
_REFUSAL = re.compile(r"refus|reject|denied|error|fail", re.IGNORECASE)


@dataclass(frozen=True)
class Remote:
    """A configured git remote."""

    name: str
    url: str

    @property
    def shown_url(self) -> str:
        """Return the URL without any user:password part, fit for output and the audit."""
        return _USERINFO.sub("//", self.url)

    def tracking(self, what: str) -> str:
        """Return the ref under which the remote's `what` (notes, audit, snapshots/) is kept."""
        return tracking_ref(self.name, what)


def resolve_remote(repo: Repo, name: str | None) -> Remote:
    """Return the remote `name` (default: govsnap.remote, else origin); raise if unknown."""
    chosen = name or repo.config_str("govsnap.remote") or "origin"
    known = sorted(str(n) for n in repo.git.remotes.names())
    if chosen not in known:
        hint = (
            f"known remotes: {', '.join(known)}"
            if known
            else "this repository has no remote (git remote add NAME URL)"
        )
        raise UsageError(f"unknown remote {chosen!r}; {hint}")
    if not _REMOTE_NAME.match(chosen) or chosen.endswith(".lock") or ".." in chosen:
        raise UsageError(
            f"remote name {chosen!r} is not supported by govsnap: use letters, digits, "
            "'.', '_' and '-' (git remote rename)"
        )
    return Remote(chosen, repo.config_str(f"remote.{chosen}.url") or "")


def _network(repo: Repo, remote: Remote, action: str, *args: str) -> str:
    """Run `git args...`, which talks to `remote`; raise EnvironmentProblem naming the
    remote and `action` ("list", "fetch from") if it fails."""
    proc = repo.git_cmd(*args, check=False)
    if proc.returncode != 0:
        raise EnvironmentProblem(
            f"cannot {action} remote {remote.name!r} ({remote.shown_url}): {_reason(proc.stderr)}"
        )
    return proc.stdout.decode(errors="replace")


def _reason(stderr: bytes) -> str:
    lines = [line.strip() for line in stderr.decode(errors="replace").splitlines()]
    fatal = [line for line in lines if line.startswith(("fatal:", "error:"))]
    chosen = (fatal or [line for line in lines if line] or ["git gave no reason"])[0]
    return chosen.removeprefix("fatal: ").removeprefix("error: ")


# --- what the remote has ------------------------------------------------------------------


@dataclass(frozen=True)
class RemoteRefs:
    """The remote's snapshot refs (id -> tag oid), notes and audit heads."""

    snapshots: Mapping[str, str]
    notes: str | None
    audit: str | None


def ls_remote(repo: Repo, remote: Remote) -> RemoteRefs:
    """Return what the remote's govsnap refs point at, without fetching objects."""
    out = _network(
        repo, remote, "list", "ls-remote", "--refs", remote.name, f"{GOVSNAP_ROOT}*", NOTES_REF
    )
    snapshots: dict[str, str] = {}
    heads: dict[str, str] = {}
    for line in out.splitlines():
        oid, _, name = line.partition("\t")
        if name.startswith(SNAPSHOT_REF_PREFIX):
            snapshots[name[len(SNAPSHOT_REF_PREFIX) :]] = oid
        elif name in (NOTES_REF, AUDIT_REF):
            heads[name] = oid
    return RemoteRefs(snapshots, heads.get(NOTES_REF), heads.get(AUDIT_REF))


def same_payload(repo: Repo, ours: pygit2.Oid, theirs: pygit2.Oid | str) -> bool:
    """Return True when two snapshot tags hold the same payload and only their signatures
    differ (a re-signed copy; the same key signs one payload identically)."""
    try:
        return read_tag(repo, ours).payload == read_tag(repo, theirs).payload
    except CorruptObject:
        return False


def pruned_ids(repo: Repo) -> frozenset[str]:
    """Return the ids of snapshots that an authorised prune or purge recorded in the audit
    trail (every copy of it this clone has joined) deleted: signed by a signer the trust
    policy allows to prune there. An unsigned or unauthorised entry deletes nothing."""
    return audit.decisions(repo, load_policy(repo)).pruned


_SEEN_LINE = re.compile(r"^([0-9a-f]{16}) ([0-9a-f]{40}|[0-9a-f]{64})$")


def remembered_snapshots(repo: Repo, remote: str) -> dict[str, str]:
    """Return snapshot id -> tag of the snapshots this clone saw on `remote` (empty when
    it never looked; a line that does not parse is skipped: a record only ever adds
    something to miss)."""
    oid = ref_target(repo, seen_remote_snapshots_ref(remote))
    commit = None if oid is None else repo.git.get(oid)
    if not isinstance(commit, pygit2.Commit):
        return {}
    try:
        blob = repo.git[commit.tree["snapshots"].id]
    except KeyError:
        return {}
    if not isinstance(blob, pygit2.Blob):
        return {}
    found = {}
    for line in blob.data.decode(errors="replace").splitlines():
        match = _SEEN_LINE.match(line)
        if match:
            found[match.group(1)] = match.group(2)
    return found


def remember_snapshots(repo: Repo, remote: str, seen: Mapping[str, str]) -> None:
    """Record `seen` (id -> tag) as the snapshots this clone saw on `remote`."""
    git = repo.git
    text = "".join(f"{i} {seen[i]}\n" for i in sorted(seen))
    builder = git.TreeBuilder()
    builder.insert("snapshots", git.create_blob(text.encode()), pygit2.GIT_FILEMODE_BLOB)
    sig = repo.committer().signature()
    message = f"govsnap: the snapshots this clone saw on {remote}\n"
    commit = git.create_commit(None, sig, sig, message, builder.write(), [])
    _record(repo, seen_remote_snapshots_ref(remote), commit, "remote snapshots seen", forward=False)


def _record(repo: Repo, ref: str, tip: pygit2.Oid, message: str, *, forward: bool = True) -> None:
    """Set one of this clone's records of a remote (with `forward`, a history's tip: it
    only moves forward)."""

    def compute(current: pygit2.Oid | None) -> pygit2.Oid | None:
        if not forward or current is None or current == tip:
            return tip
        return tip if repo.git.descendant_of(tip, current) else current

    update_ref(repo, ref, compute, message=f"govsnap: {message}")


# --- fetch --------------------------------------------------------------------------------


@dataclass(frozen=True)
class FetchedSnapshot:
    """One remote snapshot that was not already here, and what fetch did with it.

    status: "added"; "unverified" (failed verification: left under refs/govsnap-remote/,
    its note kept for the fetch that adds it); "conflict" (this clone has another tag
    under the same id: the remote's was replaced or signed again; the local one is kept);
    "pruned" (a prune recorded in the audit trail deleted it: not added again); "invalid"
    (the ref name is not the id of a readable snapshot tag).

    note, for an added snapshot: where the note it was added with came from (NoteSource).
    """

    id: str
    tag: str
    status: FetchStatus
    detail: str = ""
    note: NoteSource | Literal[""] = ""

    def as_json(self) -> dict[str, str]:
        """Return the outcome as JSON-ready data."""
        data = {"id": self.id, "tag": self.tag, "status": self.status, "detail": self.detail}
        if self.status == "added":
            data["note"] = self.note
        return data


# What fetch did with a remote snapshot that was not already here (see FetchedSnapshot).
FetchStatus = Literal["added", "unverified", "conflict", "pruned", "invalid"]
# How the remote's audit trail relates to this clone's; the last three fail the fetch.
AuditJoin = Literal[
    "absent", "unchanged", "fast-forward", "joined", "invalid", "rewritten", "refused"
]
# What push does with the notes or audit ref.
RefPush = Literal["none", "up to date", "sent"]
PROBLEMS: tuple[FetchStatus, ...] = ("unverified", "conflict", "invalid")
# The state of a remote's notes or audit ref that does not point at a commit.
INVALID: Literal["invalid"] = "invalid"
# Where the note of a snapshot a fetch adds comes from: the remote's notes; this clone's
# notes, which kept it since an earlier fetch refused the snapshot; or, when neither has
# one, the signed payload (as `doctor --fix` rebuilds it); "none" only for an unreadable
# tag added with --no-verify.
NoteSource = Literal["remote", "kept", "rebuilt", "none"]
# The states of a remote's audit trail that must fail a fetch: it no longer holds what
# this clone saw there ("rewritten": truncated, rewritten or deleted), or its new entries
# are unsigned, by keys the policy does not know, or not authorised ("refused").
AUDIT_PROBLEMS: tuple[AuditJoin, ...] = (INVALID, "rewritten", "refused")


@dataclass(frozen=True)
class FetchReport:
    """What `govsnap fetch` found and did."""

    remote: str
    url: str
    verified: bool
    snapshots: tuple[FetchedSnapshot, ...]
    unchanged: int  # remote snapshots identical to local ones
    notes: notes.NotesMerge
    audit: AuditJoin
    seconds: float
    notes_kept_aside: int = 0  # refused snapshots whose note is kept for a later fetch
    audit_detail: str = ""  # what is wrong with the remote's audit trail, and the remedy
    # Snapshots this clone saw on the remote before that are gone from it, with no
    # authorised prune or purge entry naming them (and which of them are pinned).
    lost: tuple[str, ...] = ()
    lost_pinned: tuple[str, ...] = ()
    # Set when the remote's notes history no longer holds what this clone saw there.
    notes_lost: str = ""

    def with_status(self, *statuses: str) -> list[FetchedSnapshot]:
        """Return the snapshots whose status is one of `statuses`."""
        return [s for s in self.snapshots if s.status in statuses]

    @property
    def ok(self) -> bool:
        """Return True when nothing was tampered with, invalid or failed verification."""
        return (
            not self.with_status(*PROBLEMS)
            and self.notes != INVALID
            and self.audit not in AUDIT_PROBLEMS
            and not self.lost
            and not self.notes_lost
        )

    def loss(self) -> list[str]:
        """Return one sentence per piece of evidence the remote lost since this clone
        looked, with how to restore it from this clone."""
        remedy = (
            f"restore it from this clone: govsnap push {self.remote} (or govsnap doctor "
            f"--restore-remote {self.remote})"
        )
        found = []
        if self.lost:
            pinned = set(self.lost_pinned)
            shown = ", ".join(f"{i} (pinned)" if i in pinned else i for i in self.lost[:5])
            more = f" and {len(self.lost) - 5} more" if len(self.lost) > 5 else ""
            found.append(
                f"{len(self.lost)} snapshot(s) this clone saw on {self.remote} are gone from "
                f"it, and no authorised prune or purge entry names them: {shown}{more}; "
                f"{remedy}; if the deletion was intended, git update-ref -d "
                f"{seen_remote_snapshots_ref(self.remote)}"
            )
        if self.notes_lost:
            found.append(f"{self.notes_lost}; {remedy}")
        return found

    def check(self) -> None:
        """Raise CheckFailed when snapshots were left out (tampered, unverified, invalid),
        the remote's notes or audit ref is not a commit, or its audit trail was rewritten
        or holds entries nobody authorised."""
        problems = self.with_status(*PROBLEMS)
        reasons = []
        if self.audit in ("rewritten", "refused"):
            reasons.append(self.audit_detail)
        reasons += self.loss()
        if problems:
            kinds = ", ".join(sorted({p.status for p in problems}))
            reasons.append(f"{len(problems)} snapshot(s) from {self.remote} not added: {kinds}")
        for what, state in (("notes", self.notes), ("audit", self.audit)):
            if state == INVALID:
                reasons.append(f"the {what} ref of {self.remote} is not a commit: ignored")
        if reasons:
            raise CheckFailed("; ".join(reasons))

    def as_json(self) -> dict[str, Any]:
        """Return the report as JSON-ready data."""
        return {
            "remote": self.remote,
            "url": self.url,
            "ok": self.ok,
            "verified": self.verified,
            "added": [s.id for s in self.with_status("added")],
            "unchanged": self.unchanged,
            "snapshots": [s.as_json() for s in self.snapshots],
            "notes": self.notes,
            "notes_kept_aside": self.notes_kept_aside,
            "audit": self.audit,
            "audit_detail": self.audit_detail,
            "lost": list(self.lost),
            "lost_pinned": list(self.lost_pinned),
            "notes_lost": self.notes_lost,
            "seconds": round(self.seconds, 6),
        }


@dataclass(frozen=True)
class _Accepted:
    """A remote snapshot that passed the judgement, and the note blob to add it with."""

    snapshot: Snapshot
    note: pygit2.Oid | None
    source: NoteSource

    @property
    def ref(self) -> str:
        return self.snapshot.ref


@dataclass(frozen=True)
class _Examined:
    """What fetch decided about the remote's snapshots before writing anything."""

    outcomes: list[FetchedSnapshot]  # everything but the accepted ones
    accepted: list[_Accepted]
    refused: set[str]  # tags of the snapshots refused (unverified, invalid)
    unchanged: int


def fetch(repo: Repo, name: str | None = None, *, verify: bool = True) -> FetchReport:
    """Fetch a remote's snapshots, notes and audit trail and merge them into this clone.

    New snapshots are verified (unless `verify` is False) and added create-only, each
    with its note (NoteSource); a local snapshot ref is never changed. Notes are merged
    field by field (merge_note), keeping the notes of refused snapshots (see
    notes.merge_commits), and the audit trail joined by a merge commit. Everything this clone's
    refs gain is written in one ref transaction: a killed fetch adds every snapshot with
    its note and audit entry, or nothing. Returns the report; the caller turns problems
    into the exit code.
    """
    with audit.operation(repo, "fetch") as op:
        return _fetch(repo, op, resolve_remote(repo, name), verify)


def _fetch(repo: Repo, op: audit.Operation, remote: Remote, verify: bool) -> FetchReport:
    identity = op.identity  # before anything is fetched: without one nothing can be merged
    # What this clone saw on the remote before: evidence the remote must still hold.
    seen_snapshots = remembered_snapshots(repo, remote.name)
    seen_notes = ref_target(repo, seen_remote_notes_ref(remote.name))
    _network(
        repo,
        remote,
        "fetch from",
        "fetch",
        "--no-tags",
        "--no-write-fetch-head",
        "--recurse-submodules=no",
        "--prune",
        "--quiet",
        remote.name,
        *fetch_refspecs(remote.name),
    )
    remote_notes, notes_ok = _tracked_commit(repo, remote.tracking("notes"))
    remote_audit, audit_ok = _tracked_commit(repo, remote.tracking("audit"))
    examined = _examine(repo, remote, remote_notes, verify)
    judged, audit_detail = (
        _judge_remote_audit(repo, remote, remote_audit) if audit_ok else (INVALID, "")
    )
    by_ref = {acc.ref: acc for acc in examined.accepted}
    found: dict[str, Any] = {}

    def compute(current: RefValues) -> RefValues:
        changes: RefValues = {}
        added: list[_Accepted] = []
        late: list[FetchedSnapshot] = []
        for ref, acc in by_ref.items():
            have = current[ref]
            if have is None:
                changes[ref] = pygit2.Oid(hex=acc.snapshot.tag_oid)
            if have is None or str(have) == acc.snapshot.tag_oid:
                added.append(acc)
            else:
                detail = "another tag was created here under the same id meanwhile; kept it"
                snap = acc.snapshot
                late.append(FetchedSnapshot(snap.id, snap.tag_oid, "conflict", detail))
        local_tags = {str(oid) for oid in snapshot_refs(repo).values()}
        local_tags |= {acc.snapshot.tag_oid for acc in added}
        adopt = {acc.snapshot.tag_oid: acc.note for acc in added if acc.note is not None}
        changes[NOTES_REF], notes_state = notes.merge_commits(
            repo,
            current[NOTES_REF],
            remote_notes,
            local_tags | examined.refused,
            adopt,
            identity,
        )
        if not notes_ok:
            notes_state = INVALID
        audit_state = (
            judged
            if judged in AUDIT_PROBLEMS
            else _audit_state(repo, current[AUDIT_REF], remote_audit)
        )
        # A remote chain that fails is never joined: this clone keeps its own copy, which
        # is what restores the remote (govsnap doctor --restore-remote).
        join = remote_audit if audit_state in ("fast-forward", "joined") else None
        outcomes = list(examined.outcomes) + late
        outcomes += [
            FetchedSnapshot(
                acc.snapshot.id,
                acc.snapshot.tag_oid,
                "added",
                "" if verify else "not verified (--no-verify)",
                acc.source,
            )
            for acc in added
        ]
        problems = [s for s in outcomes if s.status in PROBLEMS]
        if added or problems or notes_state == "merged" or audit_state == "joined":
            summary = f"from {remote.name}: {len(added)} snapshot(s) added" + (
                f", {len(problems)} problem(s)" if problems else ""
            )
            entry = op.entry(
                summary,
                snapshots=[acc.snapshot.id for acc in added] + [s.id for s in problems],
                arguments={"remote": remote.name, "verify": verify},
                result="ok" if not problems else "problems: " + _problem_summary(problems),
            )
            writer = op.writer(entry, join=join)
            changes[AUDIT_REF] = writer.commit_on(current[AUDIT_REF])
        elif audit_state == "fast-forward":
            changes[AUDIT_REF] = remote_audit
        found.update(outcomes=outcomes, notes=notes_state, audit=audit_state)
        return changes

    # The audit ref first: should git itself be killed while it commits, nothing lands
    # without its entry (see update_refs).
    update_refs(
        repo, [AUDIT_REF, NOTES_REF, *by_ref], compute, message=f"govsnap: fetch from {remote.name}"
    )
    if found["audit"] in ("unchanged", "fast-forward", "joined") and remote_audit is not None:
        record_remote_audit(repo, remote.name, remote_audit)
    lost, lost_pinned = _lost_snapshots(repo, remote, seen_snapshots, found["outcomes"])
    notes_lost = ""
    if seen_notes is not None and not contains(repo, remote_notes, seen_notes):
        what = "deleted" if remote_notes is None else "rewritten"
        notes_lost = (
            f"the notes history of {remote.name} was {what}: it no longer holds "
            f"{str(seen_notes)[:12]}, which this clone saw there"
        )
    elif notes_ok and remote_notes is not None:
        _record(repo, seen_remote_notes_ref(remote.name), remote_notes, "remote notes seen")
    kept = notes.note_blobs(repo) if examined.refused else {}
    return FetchReport(
        remote.name,
        remote.shown_url,
        verify,
        tuple(sorted(found["outcomes"], key=lambda s: (s.id, s.status))),
        examined.unchanged,
        found["notes"],
        found["audit"],
        op.seconds,
        sum(1 for tag in examined.refused if tag in kept),
        audit_detail,
        lost,
        lost_pinned,
        notes_lost,
    )


def _lost_snapshots(
    repo: Repo,
    remote: Remote,
    seen: Mapping[str, str],
    outcomes: Iterable[FetchedSnapshot],
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Return the snapshots this clone saw on the remote that are gone from it with no
    authorised prune or purge entry naming them (judged in the environment of the tag
    seen), and which of them are pinned; record what the remote holds now, keeping the
    lost ones remembered (so that every fetch says so until they are back)."""
    theirs = snapshot_refs(repo, remote.tracking("snapshots/"))
    gone = sorted(i for i in seen if i not in theirs)
    lost: list[str] = []
    pinned: frozenset[str] = frozenset()
    if gone:
        decided = audit.decisions(
            repo, load_policy(repo), tags=audit.held_tags(repo, {i: seen[i] for i in gone})
        )
        lost = [i for i in gone if i not in decided.pruned]
        pinned = decided.pinned
    refused = {s.id for s in outcomes if s.status in PROBLEMS}
    now = {i: str(oid) for i, oid in theirs.items() if i not in refused}
    now.update((i, seen[i]) for i in lost)
    if now != dict(seen):
        remember_snapshots(repo, remote.name, now)
    return tuple(lost), tuple(i for i in lost if i in pinned)


def _judge_remote_audit(
    repo: Repo, remote: Remote, theirs: pygit2.Oid | None
) -> tuple[AuditJoin, str]:
    """Return the state of the remote's audit trail (see FetchReport.audit) and, for a
    problem, what is wrong and how to restore it from this clone."""
    seen = ref_target(repo, seen_remote_audit_ref(remote.name))
    restore = f"restore it from this clone: govsnap doctor --restore-remote {remote.name}"
    if seen is not None and theirs != seen:
        holds = (
            theirs is not None
            and repo.git.odb.exists(theirs)
            and repo.git.descendant_of(theirs, seen)
        )
        if not holds:
            lost = _entries_missing(repo, seen, theirs)
            what = "deleted" if theirs is None else "rewritten"
            return "rewritten", (
                f"the audit trail of {remote.name} was {what}: {lost} entr"
                f"{'y' if lost == 1 else 'ies'} this clone saw there (up to {str(seen)[:12]}) "
                f"{'is' if lost == 1 else 'are'} gone from it; {restore}"
            )
    state = _audit_state(repo, ref_target(repo, AUDIT_REF), theirs)
    if state in ("fast-forward", "joined") and theirs is not None:
        policy = load_policy(repo)
        problems = audit.new_entry_problems(
            repo,
            theirs,
            [ref_target(repo, AUDIT_REF)],
            policy,
            skew=objects.configured_skew(repo),
            now=int(time.time()),
        )
        if problems:
            shown = audit.first_problems(problems)
            return "refused", (
                f"the audit trail of {remote.name} holds entries this clone refuses to join "
                f"({shown}); they were not joined; if they should not be there, {restore}"
            )
    return state, ""


def _entries_missing(repo: Repo, seen: pygit2.Oid, theirs: pygit2.Oid | None) -> int:
    """Return how many entries reachable from `seen` are not reachable from `theirs`."""
    walker = repo.git.walk(seen, SortMode.NONE)
    if theirs is not None and repo.git.odb.exists(theirs):
        walker.hide(theirs)
    return sum(1 for _ in walker)


def record_remote_audit(repo: Repo, remote: str, tip: pygit2.Oid) -> None:
    """Record `tip` as the remote's audit trail this clone saw there, moving forward only."""

    def compute(current: pygit2.Oid | None) -> pygit2.Oid | None:
        if current is None or current == tip or repo.git.descendant_of(tip, current):
            return tip
        return current

    update_ref(repo, seen_remote_audit_ref(remote), compute, message="govsnap: remote audit seen")


def _problem_summary(problems: Iterable[FetchedSnapshot]) -> str:
    return ", ".join(f"{s.id} {s.status}" for s in problems)


def _examine(
    repo: Repo, remote: Remote, remote_notes: pygit2.Oid | None, verify: bool
) -> _Examined:
    """Judge the remote's snapshots that are not here yet (verified, with their notes,
    unless told not to); write nothing."""
    fetched = snapshot_refs(repo, remote.tracking("snapshots/"))
    local = snapshot_refs(repo)
    # Reading the audit trail and the notes is only worth it for new snapshots.
    new = any(ident not in local for ident in fetched)
    pruned = pruned_ids(repo) if new else set()
    remote_blobs = notes.note_blobs_at(repo, remote_notes) if new else {}
    local_blobs = notes.note_blobs(repo) if new else {}
    outcomes: list[FetchedSnapshot] = []
    candidates: list[tuple[Snapshot, pygit2.Oid | None, NoteSource]] = []
    unchanged = 0
    for ident, oid in sorted(fetched.items()):
        have = local.get(ident)
        if have == oid:
            unchanged += 1
        elif have is not None:
            how = "signed again" if same_payload(repo, have, oid) else "replaced"
            outcomes.append(
                FetchedSnapshot(
                    ident,
                    str(oid),
                    "conflict",
                    f"the remote's {ident} is tag {oid} but this clone's is {have}: the "
                    f"remote's snapshot was {how}; the local one is kept",
                )
            )
        elif ident in pruned:
            outcomes.append(
                FetchedSnapshot(
                    ident,
                    str(oid),
                    "pruned",
                    "a prune deleted it here: not added again (govsnap push --prune deletes "
                    "it on the remote)",
                )
            )
        else:
            blob, source = _note_for(repo, ident, str(oid), remote_blobs, local_blobs)
            note = None if blob is None else notes.decode(bytes(repo.git.odb.read(blob)[1]))
            candidates.append((load_snapshot(repo, ident, oid, note), blob, source))
    snaps = [snap for snap, _, _ in candidates]
    accepted: list[_Accepted] = []
    refused: set[str] = set()
    for (snap, blob, source), failure in zip(candidates, _judge(repo, snaps, verify), strict=True):
        if failure is None:
            accepted.append(_Accepted(snap, blob, source))
            continue
        status, detail = failure
        outcomes.append(FetchedSnapshot(snap.id, snap.tag_oid, status, detail))
        refused.add(snap.tag_oid)
    return _Examined(outcomes, accepted, refused, unchanged)


def _note_for(
    repo: Repo,
    ident: str,
    tag: str,
    remote_blobs: Mapping[str, pygit2.Oid],
    local_blobs: Mapping[str, pygit2.Oid],
) -> tuple[pygit2.Oid | None, NoteSource]:
    """Return the note blob a new snapshot is judged and added with, and its source
    (NoteSource): the remote's, else the one this clone kept, else one rebuilt from
    the signed payload, so that no snapshot is ever added without a note."""
    if tag in remote_blobs:
        return remote_blobs[tag], "remote"
    if tag in local_blobs:
        return local_blobs[tag], "kept"
    data = notes.rebuilt_note(repo, ident, tag, "govsnap fetch")
    if data is None:
        return None, "none"
    return repo.git.create_blob(notes.encode(data)), "rebuilt"


def _judge(repo: Repo, snaps: list[Snapshot], verify: bool) -> list[tuple[FetchStatus, str] | None]:
    """Return, per snapshot, None when it may be added, else (status, reason)."""
    if not snaps:
        return []
    if verify:
        from govsnap.verify import verify_snapshots

        results = verify_snapshots(repo, snaps, jobs=os.cpu_count() or 1)
        return [None if r.ok else ("unverified", "; ".join(r.failures())) for r in results]
    # Without verification the ref name must still be the tag's id: every other part of
    # govsnap relies on an id naming its payload.
    judged: list[tuple[FetchStatus, str] | None] = []
    for snap in snaps:
        if snap.error is not None:
            judged.append(("invalid", f"unreadable snapshot tag: {snap.error}"))
        elif snap.payload is not None and snap.payload.id != snap.id:
            judged.append(("invalid", f"the tag's id is {snap.payload.id}, not {snap.id}"))
        else:
            judged.append(None)
    return judged


def _tracked_commit(repo: Repo, ref: str) -> tuple[pygit2.Oid | None, bool]:
    """Return the commit a fetched notes or audit ref points at (None when there is no
    such ref) and False when it points at something else: a remote can hold anything."""
    oid = ref_target(repo, ref)
    if oid is None:
        return None, True
    return (oid, True) if isinstance(repo.git.get(oid), pygit2.Commit) else (None, False)


def _audit_state(repo: Repo, ours: pygit2.Oid | None, theirs: pygit2.Oid | None) -> AuditJoin:
    """Return how the remote's audit head relates to ours: absent, unchanged (we hold it),
    fast-forward (it extends ours) or joined (the two diverged)."""
    if theirs is None:
        return "absent"
    if contains(repo, ours, theirs):
        return "unchanged"
    if ours is None or repo.git.descendant_of(theirs, ours):
        return "fast-forward"
    return "joined"


# --- push ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PushReport:
    """What `govsnap push` sent (or, with dry_run, would send)."""

    remote: str
    url: str
    dry_run: bool
    sent: tuple[str, ...]  # snapshot ids the remote did not have
    held_back: tuple[str, ...]  # ids the remote lacks that a prune elsewhere deleted
    notes: RefPush  # "none": no notes here
    audit: RefPush
    deleted: tuple[str, ...]  # --prune: snapshot refs deleted on the remote
    fetch_first: bool  # the remote had notes or audit entries this clone lacked
    fetched: FetchReport | None  # the fetch and merge that came first, if one did
    seconds: float
    # Safety snapshots the remote lacks, not sent: they capture untracked files, so they
    # stay in this clone unless push --include-safety.
    kept_local: tuple[str, ...] = ()

    def check(self) -> None:
        """Raise CheckFailed for what the fetch before the push found wrong, but for the
        evidence the push itself put back (lost snapshots sent again, notes merged and
        sent)."""
        if self.fetched is None:
            return
        fetched = self.fetched
        if not self.dry_run:
            lost = tuple(i for i in fetched.lost if i not in self.sent)
            pinned = tuple(i for i in fetched.lost_pinned if i in lost)
            notes_lost = fetched.notes_lost if self.notes not in ("sent", "up to date") else ""
            fetched = replace(fetched, lost=lost, lost_pinned=pinned, notes_lost=notes_lost)
        fetched.check()

    def as_json(self) -> dict[str, Any]:
        """Return the report as JSON-ready data."""
        return {
            "remote": self.remote,
            "url": self.url,
            "dry_run": self.dry_run,
            "sent": list(self.sent),
            "held_back": list(self.held_back),
            "kept_local": list(self.kept_local),
            "notes": self.notes,
            "audit": self.audit,
            "deleted": list(self.deleted),
            "fetch_first": self.fetch_first,
            "fetched": None if self.fetched is None else self.fetched.as_json(),
            "seconds": round(self.seconds, 6),
        }


@dataclass(frozen=True)
class _PushedRef:
    flag: str  # git push --porcelain: ' ' '+' '-' '*' '=' '!'
    ref: str
    summary: str


def _parse_porcelain(out: str) -> list[_PushedRef]:
    """Return the ref lines of `git push --porcelain` output."""
    found = []
    for line in out.splitlines():
        parts = line.split("\t")
        if len(parts) >= 3 and len(parts[0]) == 1:
            found.append(_PushedRef(parts[0], parts[1].rpartition(":")[2], parts[2]))
    return found


def _ref_plan(repo: Repo, ref: str, theirs: str | None) -> RefPush:
    ours = ref_target(repo, ref)
    if ours is None:
        return "none"
    return "up to date" if theirs is not None and str(ours) == theirs else "sent"


def _conflict_message(remote: Remote, ids: list[str], why: str) -> str:
    shown = ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
    return f"remote {remote.name!r} has a different object under snapshot id {shown}: {why}"


def _look(repo: Repo, remote: Remote) -> tuple[RemoteRefs, dict[str, pygit2.Oid]]:
    """Return the remote's refs and ours; raise if the remote has another object under
    one of our snapshot ids."""
    theirs = ls_remote(repo, remote)
    local = snapshot_refs(repo)
    conflicts = sorted(
        i for i, oid in theirs.snapshots.items() if i in local and str(local[i]) != oid
    )
    if conflicts:
        raise SnapshotConflict(
            _conflict_message(remote, conflicts, "refusing to push (govsnap fetch shows it)")
        )
    return theirs, local


def _safety_ids(repo: Repo, snaps: Mapping[str, pygit2.Oid]) -> set[str]:
    """Return which of these snapshots (id -> tag) are safety snapshots, by their signed
    trigger (an unreadable tag is not one: verification deals with it)."""
    return {i for i, oid in snaps.items() if load_snapshot(repo, i, oid, None).safety}


def push(
    repo: Repo,
    name: str | None = None,
    *,
    prune: bool = False,
    dry_run: bool = False,
    include_safety: bool = False,
    confirm: Callable[[str, list[str]], bool] | None = None,
) -> PushReport:
    """Send this clone's snapshots, notes and audit trail to a remote, never forcing.

    A remote snapshot ref with another object under one of our ids is an error, raised
    before anything is sent. When the remote's notes or audit trail hold something ours
    do not, they are fetched and merged first (a full `fetch`), so the push is a
    fast-forward. Snapshots the audit trail records as pruned (by a prune elsewhere whose
    entry a fetch brought) are held back. With `prune`, snapshot refs recorded as pruned
    that this clone no longer has and the remote still has are deleted there, each only
    if it still points at the object seen (--force-with-lease), after `confirm(remote,
    ids)` said yes (asked again only if a retry would delete more). Safety snapshots stay
    here unless `include_safety`.
    """
    with audit.operation(repo, "push") as op:
        remote = resolve_remote(repo, name)
        return _push(repo, op, remote, prune, dry_run, include_safety, confirm)


def _push(
    repo: Repo,
    op: audit.Operation,
    remote: Remote,
    prune: bool,
    dry_run: bool,
    include_safety: bool,
    confirm: Callable[[str, list[str]], bool] | None,
) -> PushReport:
    fetched: FetchReport | None = None
    confirmed: set[str] = set()
    for _attempt in range(_PUSH_ATTEMPTS):
        theirs, local = _look(repo, remote)
        fetch_first = not (
            contains(repo, ref_target(repo, NOTES_REF), theirs.notes)
            and contains(repo, ref_target(repo, AUDIT_REF), theirs.audit)
        )
        if fetch_first and not dry_run:
            fetched = fetch(repo, remote.name)
            if fetched.audit in ("rewritten", "refused"):
                # Pushing on top would build on, or fail against, a trail this clone
                # refuses: say why and stop (doctor --restore-remote puts ours back).
                raise CheckFailed(fetched.audit_detail)
            theirs, local = _look(repo, remote)
        if prune and not dry_run:
            _fetch_tags(repo, remote, theirs)
        # A prune entry decides about a remote snapshot in the environment of the tag the
        # remote has under its id (never the one the entry claims).
        pruned = audit.decisions(
            repo, load_policy(repo), tags=audit.held_tags(repo, theirs.snapshots)
        ).pruned
        missing = set(local) - set(theirs.snapshots)
        safety = set() if include_safety else _safety_ids(repo, {i: local[i] for i in missing})
        deletions = sorted((pruned & set(theirs.snapshots)) - set(local)) if prune else []
        report = PushReport(
            remote.name,
            remote.shown_url,
            dry_run,
            tuple(sorted(missing - pruned - safety)),
            tuple(sorted(missing & pruned)),
            _ref_plan(repo, NOTES_REF, theirs.notes),
            _ref_plan(repo, AUDIT_REF, theirs.audit),
            tuple(deletions),
            fetch_first,
            fetched,
            0.0,
            kept_local=tuple(sorted(safety - pruned)),
        )
        if dry_run:
            return _timed(report, op)
        if deletions and confirm is not None and not set(deletions) <= confirmed:
            if not confirm(remote.name, deletions):
                raise Declined("push cancelled: nothing was sent or deleted")
            confirmed.update(deletions)
        # The glob sends every local snapshot the remote lacks; held-back and safety
        # snapshots need a list.
        if report.held_back or report.kept_local:
            specs = [f"{SNAPSHOT_REF_PREFIX}{i}:{SNAPSHOT_REF_PREFIX}{i}" for i in report.sent]
        else:
            specs = [SNAPSHOT_PUSH_REFSPEC] if report.sent else []
        # The audit tip is named by its id: what this clone then records as the remote's
        # is exactly what it sent, whatever is appended here meanwhile.
        audit_tip = ref_target(repo, AUDIT_REF)
        if report.notes == "sent":
            specs.append(f"{NOTES_REF}:{NOTES_REF}")
        if report.audit == "sent" and audit_tip is not None:
            specs.append(f"{audit_tip}:{AUDIT_REF}")
        leases = [
            f"--force-with-lease={SNAPSHOT_REF_PREFIX}{i}:{theirs.snapshots[i]}" for i in deletions
        ]
        specs += [f":{SNAPSHOT_REF_PREFIX}{i}" for i in deletions]
        if not specs:
            return _timed(report, op)
        notes_tip = ref_target(repo, NOTES_REF)
        if _send(repo, remote, leases, specs):
            if report.audit == "sent" and audit_tip is not None:
                record_remote_audit(repo, remote.name, audit_tip)
            elif report.audit == "up to date" and theirs.audit is not None:
                record_remote_audit(repo, remote.name, pygit2.Oid(hex=theirs.audit))
            _remember_pushed(repo, remote, report, local, notes_tip)
            if deletions:
                deleted = f"to {remote.name}: deleted {len(deletions)} pruned snapshot(s)"
                arguments = {"remote": remote.name, "prune": True}
                op.record(op.entry(deleted, snapshots=deletions, arguments=arguments))
            return _timed(report, op)
    raise ConcurrentUpdate(
        f"the notes or audit trail of remote {remote.name!r} kept changing while we "
        f"pushed; gave up after {_PUSH_ATTEMPTS} attempts"
    )


def _fetch_tags(repo: Repo, remote: Remote, theirs: RemoteRefs) -> None:
    """Fetch the remote's snapshot tags this clone lacks (into refs/govsnap-remote/), so
    that a deletion is judged in the environment of the remote's own tag."""
    odb = repo.git.odb
    if all(odb.exists(oid) for oid in theirs.snapshots.values()):
        return
    spec = f"+{SNAPSHOT_REF_PREFIX}*:{remote.tracking('snapshots/')}*"
    args = ["fetch", "--no-tags", "--no-write-fetch-head", "--recurse-submodules=no"]
    _network(repo, remote, "fetch from", *args, "--quiet", remote.name, spec)


def _remember_pushed(
    repo: Repo,
    remote: Remote,
    report: PushReport,
    local: Mapping[str, pygit2.Oid],
    notes_tip: pygit2.Oid | None,
) -> None:
    """Record what the remote holds from this clone after a push: the snapshots sent (the
    ones deleted no longer), and the notes sent."""
    seen = remembered_snapshots(repo, remote.name)
    now = {**seen, **{i: str(local[i]) for i in report.sent}}
    for ident in report.deleted:
        now.pop(ident, None)
    if now != seen:
        remember_snapshots(repo, remote.name, now)
    if report.notes == "sent" and notes_tip is not None:
        _record(repo, seen_remote_notes_ref(remote.name), notes_tip, "remote notes seen")


def _timed(report: PushReport, op: audit.Operation) -> PushReport:
    return replace(report, seconds=op.seconds)


def _send(repo: Repo, remote: Remote, leases: list[str], specs: list[str]) -> bool:
    """Run `git push`; return False when only the notes or audit ref lost a race (try
    again), raise for anything else the remote refused.

    A deletion is sent together with the audit trail holding the signed prune entry that
    authorises it: that entry, not the push, is what govsnap's pre-receive hook checks.
    """
    proc = repo.git_cmd("push", "--porcelain", *leases, remote.name, *specs, check=False)
    pushed = _parse_porcelain(proc.stdout.decode(errors="replace"))
    if proc.returncode != 0 and not pushed:
        raise EnvironmentProblem(
            f"cannot push to remote {remote.name!r} ({remote.shown_url}): {_reason(proc.stderr)}"
        )
    rejected = [p for p in pushed if p.flag == "!"]
    if not rejected:
        return True
    raced = {NOTES_REF, AUDIT_REF}
    if all(p.ref in raced and "remote rejected" not in p.summary for p in rejected):
        return False
    snapshot_refs_rejected = [
        p
        for p in rejected
        if p.ref.startswith(SNAPSHOT_REF_PREFIX) and "remote rejected" not in p.summary
    ]
    if snapshot_refs_rejected:
        ids = sorted(p.ref[len(SNAPSHOT_REF_PREFIX) :] for p in snapshot_refs_rejected)
        raise SnapshotConflict(
            _conflict_message(
                remote, ids, f"the remote answered {snapshot_refs_rejected[0].summary}"
            )
        )
    first = next((p for p in rejected if p.ref.startswith(SNAPSHOT_REF_PREFIX)), rejected[0])
    remote_lines = [
        line.removeprefix("remote:").strip()
        for line in proc.stderr.decode(errors="replace").splitlines()
        if line.startswith("remote:") and line.removeprefix("remote:").strip()
    ]
    # A hook may say what it accepted before what it refused: quote the refusal.
    refusals = [line for line in remote_lines if _REFUSAL.search(line)]
    why = f": {(refusals or remote_lines)[0]}" if remote_lines else ""
    raise CheckFailed(
        f"remote {remote.name!r} refused {first.ref} {first.summary}{why}"
        + (f" (and {len(rejected) - 1} more ref(s))" if len(rejected) > 1 else "")
    )


# --- remote setup -------------------------------------------------------------------------

HEAD_MARKER = "govsnapPushHead"


@dataclass(frozen=True)
class SetupReport:
    """What `remote setup` changed (or, with dry_run, would change) in the remote's config."""

    remote: str
    undo: bool
    dry_run: bool
    added: tuple[tuple[str, str], ...]
    removed: tuple[tuple[str, str], ...]
    present: tuple[tuple[str, str], ...]  # wanted and already there (setup) / absent (undo)

    def as_json(self) -> dict[str, Any]:
        """Return the report as JSON-ready data."""

        def pairs(items: tuple[tuple[str, str], ...]) -> list[dict[str, str]]:
            return [{"key": k, "value": v} for k, v in items]

        return {
            "remote": self.remote,
            "undo": self.undo,
            "dry_run": self.dry_run,
            "added": pairs(self.added),
            "removed": pairs(self.removed),
            "unchanged": pairs(self.present),
        }


def _values(repo: Repo, key: str) -> list[str]:
    try:
        return [str(v) for v in repo.git.config.get_multivar(key)]
    except KeyError:
        return []


def setup(repo: Repo, name: str, *, undo: bool = False, dry_run: bool = False) -> SetupReport:
    """Add (or with `undo` remove) govsnap's refspecs in remote.<name>.fetch/push, so that
    plain `git fetch` copies the remote's govsnap refs into refs/govsnap-remote/<name>/
    and plain `git push` sends this clone's. Idempotent.

    Once remote.<name>.push is set, `git push <name>` pushes only what it lists, no longer
    the current branch (push.default); so when it had no value, `HEAD` is added too (and
    removed by undo, which the marker remote.<name>.govsnapPushHead records).
    """
    remote = resolve_remote(repo, name)
    fetch_key, push_key = f"remote.{remote.name}.fetch", f"remote.{remote.name}.push"
    marker = f"remote.{remote.name}.{HEAD_MARKER}"
    fetch_now, push_now = _values(repo, fetch_key), _values(repo, push_key)
    wanted = [(fetch_key, spec) for spec in fetch_refspecs(remote.name)]
    wanted += [(push_key, spec) for spec in CONFIG_PUSH_REFSPECS]
    current = {fetch_key: fetch_now, push_key: push_now}
    added: list[tuple[str, str]] = []
    removed: list[tuple[str, str]] = []
    present: list[tuple[str, str]] = []
    if undo:
        for key, value in wanted:
            (removed if value in current[key] else present).append((key, value))
        if repo.config_bool(marker, False) and "HEAD" in push_now:
            removed.append((push_key, "HEAD"))
    else:
        if not push_now:
            added.append((push_key, "HEAD"))
        for key, value in wanted:
            (present if value in current[key] else added).append((key, value))
    if not dry_run:
        for key, value in removed:
            repo.git_cmd("config", "--local", "--fixed-value", "--unset", key, value)
        if undo and repo.config_str(marker) is not None:
            repo.git_cmd("config", "--local", "--unset", marker)
        for key, value in added:
            repo.git_cmd("config", "--local", "--add", key, value)
        if any(value == "HEAD" for _, value in added):
            repo.git_cmd("config", "--local", marker, "true")
    return SetupReport(remote.name, undo, dry_run, tuple(added), tuple(removed), tuple(present))


# --- restoring a remote's evidence from this clone ----------------------------------------


@dataclass(frozen=True)
class RestoreReport:
    """What `doctor --restore-remote` did (or, with dry_run, would do) to a remote."""

    remote: str
    url: str
    dry_run: bool
    audit: Literal["up to date", "extended", "replaced"]  # extended: a fast-forward
    dropped: int  # entries of the remote's rewritten chain this clone does not hold
    pushed: PushReport | None

    def as_json(self) -> dict[str, Any]:
        """Return the report as JSON-ready data."""
        return {
            "remote": self.remote,
            "url": self.url,
            "dry_run": self.dry_run,
            "audit": self.audit,
            "dropped_entries": self.dropped,
            "push": None if self.pushed is None else self.pushed.as_json(),
        }


def restore(repo: Repo, name: str | None = None, *, dry_run: bool = False) -> RestoreReport:
    """Put this clone's copy of the audit trail (and its snapshots and notes) back on a
    remote whose trail was truncated, deleted or rewritten: a truncated or deleted trail
    is extended again (a plain push); a rewritten one is replaced, with a lease on what
    the remote holds now, its entries this clone lacks staying in
    refs/govsnap-remote/<remote>/audit for inspection."""
    with audit.operation(repo, "restore") as op:
        return _restore(repo, op, resolve_remote(repo, name), dry_run)


def _restore(repo: Repo, op: audit.Operation, remote: Remote, dry_run: bool) -> RestoreReport:
    ours = ref_target(repo, AUDIT_REF)
    if ours is None:
        raise UsageError("this clone has no audit trail to restore a remote from")
    seen = ref_target(repo, seen_remote_audit_ref(remote.name))
    if seen is not None and ours != seen and not repo.git.descendant_of(ours, seen):
        raise CheckFailed(
            f"this clone's audit trail does not hold what it saw on {remote.name} either "
            f"({str(seen)[:12]}): restore it from a clone that does"
        )
    theirs = ls_remote(repo, remote).audit
    their_oid = None if theirs is None else pygit2.Oid(hex=theirs)
    dropped = 0
    state: Literal["up to date", "extended", "replaced"]
    if their_oid == ours:
        state = "up to date"
    elif their_oid is None or (
        repo.git.odb.exists(their_oid) and repo.git.descendant_of(ours, their_oid)
    ):
        state = "extended"
    else:
        state = "replaced"
        if not repo.git.odb.exists(their_oid):
            fetch(repo, remote.name, verify=False)
        dropped = _entries_missing(repo, their_oid, ours) if repo.git.odb.exists(their_oid) else 0
        if not dry_run:
            lease = f"--force-with-lease={AUDIT_REF}:{theirs}"
            _send(repo, remote, [lease], [f"+{ours}:{AUDIT_REF}"])
            record_remote_audit(repo, remote.name, ours)
    pushed = (
        push(repo, remote.name, dry_run=dry_run) if state != "replaced" or not dry_run else None
    )
    if not dry_run:
        entry = op.entry(
            f"restored the audit trail of {remote.name} ({state}"
            + (f", {dropped} entries of its rewritten chain dropped" if dropped else "")
            + ")",
            arguments={"remote": remote.name},
            extra={"remote_was": theirs, "restored_to": str(ours), "dropped": dropped},
        )
        op.record(entry)
    return RestoreReport(remote.name, remote.shown_url, dry_run, state, dropped, pushed)
