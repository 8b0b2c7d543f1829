"""The audit trail: one commit per operation on `refs/govsnap/audit`, on the empty tree.

Entries are signed like `git commit -S` (a `gpgsig` header) when a signing key is
configured, so `git log --show-signature refs/govsnap/audit` and `git verify-commit`
check them with stock git. Reading filters the chain; `verify` checks that it is linear
(but for the two-parent entries of a fetch that joins a remote's copy, see remote.py), on
the empty tree, that time does not run backwards beyond a skew, and that every signature
present is good.
"""

from __future__ import annotations

import json
import math
import re
import socket
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, cast

import pygit2
from pygit2.enums import SortMode

from govsnap import sla, untrusted
from govsnap.errors import (
    CheckFailed,
    CorruptObject,
    Declined,
    GovsnapError,
    NotAttempted,
    UsageError,
)
from govsnap.notes import Mutation, commit_on
from govsnap.objects import (
    ISO_UTC,
    RefValues,
    SignatureKind,
    SnapshotPayload,
    configured_skew,
    read_tag,
    ref_target,
    signature_kind,
    update_ref,
    update_refs,
    utc,
)
from govsnap.refs import (
    AUDIT_REF,
    LOCAL_FAILURES_REF,
    NOTES_REF,
    SNAPSHOT_REF_PREFIX,
    VERIFIED_AUDIT_REF,
)
from govsnap.repo import Identity, Repo
from govsnap.schemas import schema_name

if TYPE_CHECKING:
    from govsnap.signing import SignatureCheck, SignatureVerifier
    from govsnap.trust import TrustPolicy

EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
# Where a clone keeps the copies of its remotes' refs (remote.py): the snapshot tags
# fetched there are held, too, when judging what an entry decides about them.
TRACKED_PREFIX = "refs/govsnap-remote/"


@dataclass(frozen=True)
class Entry:
    """What one audit entry records: the operation, a one-line summary and a JSON body."""

    operation: str
    summary: str
    identity: Identity  # who acted, and when (the committer of the entry)
    snapshots: Sequence[str] = ()
    arguments: Mapping[str, Any] = field(default_factory=dict)
    result: str = "ok"
    duration: float = 0.0
    extra: Mapping[str, Any] = field(default_factory=dict)
    environments: Sequence[str] = ()  # the environments the operation acted in
    sla: float | None = None  # the seconds it was held to (None: no SLA)
    # Where it failed, when it can tell (a verification of several environments);
    # None: wherever it acted, as the result says.
    failed_in: Sequence[str] | None = None

    def outcome(self) -> dict[str, Any]:
        """Return what a monitor counts of this entry (docs/format.md, "The audit entry")."""
        outcome: dict[str, Any] = {
            "status": sla.outcome_of(self.result),
            "environments": sorted(set(self.environments)),
            "sla_seconds": self.sla,
            "sla_breached": self.sla is not None and self.duration > self.sla,
        }
        if self.failed_in is not None:
            outcome["failed_in"] = sorted(set(self.failed_in))
        return outcome

    def message(self, signing_error: str | None = None) -> str:
        """Return the commit message: the summary line, then the JSON body."""
        body = {
            "operation": self.operation,
            "snapshots": list(self.snapshots),
            "actor": {"name": self.identity.name, "email": self.identity.email},
            "host": socket.gethostname(),
            "time": self.identity.time,
            "arguments": dict(self.arguments),
            "result": self.result,
            "duration_seconds": round(self.duration, 6),
            "outcome": self.outcome(),
            **self.extra,
        }
        if signing_error:
            body["signing_error"] = signing_error
        first = " ".join(f"{self.operation}: {self.summary}".split())
        return f"{first}\n\n{json.dumps(body, sort_keys=True, indent=2)}\n"


class EntryWriter:
    """Writes the commit of one audit entry on top of the chain's head, whatever that is
    when the ref is moved (see `append`, or a transaction that moves other refs too).

    The entry is signed when `sign` is set and a signing key is configured. If signing
    fails the operation has already happened, so the entry is still written, unsigned,
    with the reason in its body (`signing_error`), where `audit` and `audit verify` show it.

    `join` (remote.py) is the head of another copy of the chain, fetched from a remote:
    unless the chain already holds it, it becomes a parent of the entry too, so that both
    histories are kept (see joined_parents).
    """

    def __init__(
        self, repo: Repo, entry: Entry, *, sign: bool = True, join: pygit2.Oid | None = None
    ) -> None:
        from govsnap.signing import Signer, signer_for

        self.repo = repo
        self.entry = entry
        self.join = join
        self.signer: Signer | None = None
        self.signing_error: str | None = None
        try:
            self.signer = signer_for(repo) if sign else None
        except GovsnapError as exc:
            self.signing_error = exc.message
        self.empty_tree = repo.git.TreeBuilder().write()
        self.written: pygit2.Oid | None = None  # the commit last written, if any

    def commit_on(self, current: pygit2.Oid | None) -> pygit2.Oid:
        """Write the entry's commit with the chain head `current` as parent; return it."""
        self.written = self._commit_on(current)
        return self.written

    def _commit_on(self, current: pygit2.Oid | None) -> pygit2.Oid:
        git = self.repo.git
        if current is not None and not git.odb.exists(current):
            raise dangling(current)
        sig = self.entry.identity.signature()
        parents: list[str | pygit2.Oid] = list(joined_parents(self.repo, current, self.join))
        if self.signer is not None:
            message = self.entry.message(self.signing_error)
            # pygit2's stubs say Oid; create_commit_string returns the commit's text.
            content = cast(
                str, git.create_commit_string(sig, sig, message, self.empty_tree, parents)
            )
            try:
                signature = self.signer.sign(content.encode())
            except GovsnapError as exc:
                self.signer, self.signing_error = None, exc.message
            else:
                return git.create_commit_with_signature(content, signature.block.decode(), "gpgsig")
        message = self.entry.message(self.signing_error)
        return git.create_commit(None, sig, sig, message, self.empty_tree, parents)


def dangling(tip: pygit2.Oid) -> CheckFailed:
    """Return the error for an audit ref that points at a missing commit."""
    return CheckFailed(
        f"{AUDIT_REF} points at {tip}, which is not in the object store (git gc removed "
        "it?): run govsnap doctor --fix, which reattaches the chain to its newest entry "
        "still present and records the gap"
    )


def append(repo: Repo, entry: Entry, *, sign: bool = True) -> pygit2.Oid:
    """Append `entry` (see EntryWriter) to the audit chain by compare-and-swap; return its
    commit oid."""
    writer = EntryWriter(repo, entry, sign=sign)
    written = update_ref(repo, AUDIT_REF, writer.commit_on, message=f"govsnap: {entry.operation}")
    assert written is not None
    return written


class _Unshareable(Exception):
    """An entry that cannot be signed while a trust policy is in force (append_failure)."""


def append_failure(repo: Repo, entry: Entry) -> bool:
    """Append `entry` of an operation that did not complete, signed when a key is usable;
    return whether it went to the shared chain.

    Under a trust policy every remote and peer refuses an unsigned entry, so one written
    because signing failed would stop this clone's pushes for good. Such an entry goes to
    this clone's LOCAL_FAILURES_REF instead (never pushed), where `audit` and `stats`
    show it all the same. Without a policy it joins the chain unsigned, as any entry
    whose signing failed does (with `signing_error`)."""
    writer = EntryWriter(repo, entry)

    def shared(current: pygit2.Oid | None) -> pygit2.Oid:
        written = writer.commit_on(current)
        if writer.signer is None and _policy_in_force(repo):
            raise _Unshareable
        return written

    message = f"govsnap: {entry.operation} failed"
    try:
        update_ref(repo, AUDIT_REF, shared, message=message)
    except _Unshareable:
        update_ref(repo, LOCAL_FAILURES_REF, writer.commit_on, message=message)
        return False
    return True


def _policy_in_force(repo: Repo) -> bool:
    """Return whether a trust policy governs the repository (one that does not load
    counts: its remotes judge by the policy they hold)."""
    from govsnap.trust import load_policy

    try:
        return load_policy(repo) is not None
    except GovsnapError:
        return True


def append_with_notes(
    repo: Repo,
    writer: EntryWriter,
    mutations: Mapping[str, Mutation],
    message: str,
    *,
    only_if_changed: bool = False,
) -> bool:
    """Apply notes mutations (see notes.commit_on) and append the entry of `writer` in one
    ref transaction, so that a killed process leaves both or neither; return whether the
    notes changed. With `only_if_changed`, nothing is appended when they did not."""
    changed = False

    def compute(current: RefValues) -> RefValues:
        nonlocal changed
        old_notes = current[NOTES_REF]
        new_notes = commit_on(repo, old_notes, mutations, writer.entry.identity, message)
        changed = new_notes != old_notes
        if only_if_changed and not changed:
            return {}
        return {NOTES_REF: new_notes, AUDIT_REF: writer.commit_on(current[AUDIT_REF])}

    operation = writer.entry.operation
    update_refs(repo, [AUDIT_REF, NOTES_REF], compute, message=f"govsnap: {operation}")
    return changed


# --- operations: each one that changes state leaves its entry ---------------------------


@dataclass
class _Declared:
    """The entry an operation declared, appended when it finishes."""

    entry: Entry
    notes: Mapping[str, Mutation]
    notes_message: str


class Operation:
    """One operation that changes state, under way (see `operation`): who acts (asked of
    git once, when first needed), since when, and the audit entry it leaves."""

    def __init__(self, repo: Repo, name: str, arguments: Mapping[str, Any]) -> None:
        self.repo = repo
        self.name = name
        self.arguments = dict(arguments)
        # Read first: a threshold that does not parse refuses the operation before it acts.
        self.sla = sla.threshold(repo, name)
        self.started = time.monotonic()
        self.environments: list[str] = []
        self._identity: Identity | None = None
        self._declared: _Declared | None = None
        self._writers: list[EntryWriter] = []
        self._failed = False

    def place(self, *environments: str) -> None:
        """Say which environments the operation acts in (its entries, a failure's too,
        record them for the counters of `stats --prometheus`)."""
        self.environments = sorted(set(self.environments) | set(environments))

    @property
    def identity(self) -> Identity:
        """Return who acts and when, as git config and GIT_COMMITTER_* say (taken once)."""
        if self._identity is None:
            self._identity = self.repo.committer()
        return self._identity

    @property
    def seconds(self) -> float:
        """Return how long the operation has run."""
        return time.monotonic() - self.started

    def entry(
        self,
        summary: str,
        *,
        snapshots: Sequence[str] = (),
        arguments: Mapping[str, Any] | None = None,
        result: str = "ok",
        extra: Mapping[str, Any] | None = None,
        failed_in: Sequence[str] | None = None,
    ) -> Entry:
        """Return the entry of this operation as it stands now (`arguments` add to the
        operation's own; `failed_in`: the environments it failed in, when it can tell)."""
        return Entry(
            self.name,
            summary,
            self.identity,
            tuple(snapshots),
            {**self.arguments, **(arguments or {})},
            result,
            self.seconds,
            dict(extra or {}),
            tuple(self.environments),
            self.sla,
            None if failed_in is None else tuple(failed_in),
        )

    def writer(self, entry: Entry, *, join: pygit2.Oid | None = None) -> EntryWriter:
        """Return the writer of `entry` for a ref transaction that appends it together
        with the refs the operation changes (create, prune, fetch)."""
        writer = EntryWriter(self.repo, entry, join=join)
        self._writers.append(writer)
        return writer

    def record(
        self,
        entry: Entry,
        *,
        notes: Mapping[str, Mutation] | None = None,
        notes_message: str = "Notes added by 'govsnap'",
    ) -> None:
        """Declare `entry` appended when the operation finishes (with `notes` mutations,
        in the same ref transaction); its duration is measured then."""
        self._declared = _Declared(entry, dict(notes or {}), notes_message)

    def fail(self, entry: Entry) -> str | None:
        """Append now `entry` of an operation that did not complete (its result "refused:
        ...", "failed: ...", "blocked"); return None, or why it could not be appended: the
        caller reports its own outcome either way, never the audit trail's instead."""
        self._declared = None
        self._failed = True
        try:
            append_failure(self.repo, entry)
        except (GovsnapError, OSError, pygit2.GitError) as exc:
            return exc.message if isinstance(exc, GovsnapError) else str(exc)
        return None

    def stopped(self, exc: BaseException) -> None:
        """Append the failure of an operation that `exc` stopped, unless its outcome is
        already in the chain (Operation.fail, or a transaction that landed) or `exc` is a
        request refused before anything was tried (bad input, a declined confirmation, a
        repository it cannot run in) or a check that said no (a verdict the operation
        records itself, or a refusal). Never raises: the caller re-raises `exc`, whose
        message is what the user sees."""
        refused = isinstance(exc, UsageError | Declined | NotAttempted | CheckFailed)
        # Whoever interrupts wants it to stop now, not to wait for a signer (a hung gpg,
        # say); and an unsigned entry would be refused by a remote with a trust policy.
        interrupted = not isinstance(exc, Exception)
        if self._failed or refused or interrupted or self._landed():
            return
        detail = exc.message if isinstance(exc, GovsnapError) else f"{type(exc).__name__}: {exc}"
        shown = detail if len(detail) <= 200 else detail[:197] + "..."
        try:
            entry = self.entry(f"failed: {shown}", result=f"failed: {detail}")
        except (GovsnapError, OSError, pygit2.GitError):
            return  # no identity to record it under (what stopped it, perhaps)
        self.fail(entry)

    def _landed(self) -> bool:
        """Return whether an entry this operation's own transaction wrote is in the chain."""
        written = [w.written for w in self._writers if w.written is not None]
        if not written:
            return False
        try:
            tip = ref_target(self.repo, AUDIT_REF)
            return tip is not None and any(
                tip == oid or self.repo.git.descendant_of(tip, oid) for oid in written
            )
        except (GovsnapError, pygit2.GitError):
            return False

    def finish(self) -> None:
        """Append the declared entry, if any, its duration measured now."""
        declared, self._declared = self._declared, None
        if declared is None:
            return
        entry = replace(declared.entry, duration=self.seconds)
        if declared.notes:
            writer = EntryWriter(self.repo, entry)
            append_with_notes(self.repo, writer, declared.notes, declared.notes_message)
        else:
            append(self.repo, entry)


@contextmanager
def operation(
    repo: Repo, name: str, arguments: Mapping[str, Any] | None = None
) -> Iterator[Operation]:
    """Carry out operation `name` (create, rollback, prune, ...) and leave its audit entry:
    the one it declared (Operation.record) is appended when the block ends normally, the
    one a transaction of its own wrote (Operation.writer) with the refs it changed, and
    that of an outcome short of success (Operation.fail) at once; Operation.entry says
    what each records. An operation that declares nothing (nothing changed) leaves no
    entry; one that an exception stops leaves a failed entry (see Operation.stopped)."""
    op = Operation(repo, name, arguments or {})
    try:
        yield op
    except BaseException as exc:
        if not isinstance(exc, GeneratorExit):
            op.stopped(exc)
        raise
    op.finish()


def joined_parents(
    repo: Repo, current: pygit2.Oid | None, other: pygit2.Oid | None
) -> list[pygit2.Oid]:
    """Return the parents of a new entry on `current` that also joins the chain `other`:
    [current] when it already holds `other`, [other] when `other` extends it (or there is
    no chain here), else both: a merge commit, current first."""
    git = repo.git
    if current is None:
        return [] if other is None else [other]
    if other is None or other == current or git.descendant_of(current, other):
        return [current]
    if git.descendant_of(other, current):
        return [other]
    return [current, other]


# --- reading -----------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditEntry:
    """One audit commit, parsed."""

    oid: str
    parents: tuple[str, ...]
    tree: str
    time: int  # committer time, seconds since the epoch
    offset: int  # committer's minutes east of UTC
    committer: str  # "Name <email>"
    operation: str
    summary: str
    body: Mapping[str, Any]
    signature_kind: SignatureKind
    error: str | None = None  # why the message does not parse, if it does not
    shared: bool = True  # False: a failure kept in this clone only (append_failure)

    @property
    def snapshots(self) -> list[str]:
        """Return the snapshot ids the entry names."""
        found = self.body.get("snapshots")
        return [str(s) for s in found] if isinstance(found, list) else []

    @property
    def result(self) -> str:
        """Return the recorded result ('?' when absent)."""
        return str(self.body.get("result", "?"))

    @property
    def actor(self) -> str:
        """Return who the body says acted (an e-mail address), else the committer."""
        actor = self.body.get("actor")
        email = actor.get("email") if isinstance(actor, dict) else None
        return str(email or self.committer)

    @property
    def _outcome(self) -> Mapping[str, Any]:
        found = self.body.get("outcome")
        return found if isinstance(found, dict) else {}

    @property
    def outcome(self) -> sla.Outcome:
        """Return success or failure: as recorded, or (entries before the outcome was
        recorded) as the result reads."""
        status = self._outcome.get("status")
        if status in ("success", "failure"):
            return cast(sla.Outcome, status)
        return sla.outcome_of(self.result)

    @property
    def environments(self) -> list[str]:
        """Return the environments the operation acted in: as recorded, or (older
        entries) the `environment` argument it was given, if any."""
        found = self._outcome.get("environments")
        if isinstance(found, list):
            return [str(e) for e in found if isinstance(e, str)]
        arguments = self.body.get("arguments")
        given = arguments.get("environment") if isinstance(arguments, dict) else None
        return [given] if isinstance(given, str) else []

    def outcome_in(self, environment: str) -> sla.Outcome:
        """Return the outcome in one of the entry's environments: a failure where the
        entry says it failed (when it names where), else the entry's outcome."""
        failed_in = self._outcome.get("failed_in")
        if isinstance(failed_in, list):
            return "failure" if environment in failed_in else "success"
        return self.outcome

    @property
    def duration(self) -> float | None:
        """Return the recorded duration in seconds, if any."""
        found = _seconds(self.body.get("duration_seconds"))
        return found if found is not None and found >= 0 else None

    @property
    def sla_seconds(self) -> float | None:
        """Return the SLA the operation was held to when it ran (None: none, or older)."""
        found = _seconds(self._outcome.get("sla_seconds"))
        return found if found is not None and found > 0 else None

    @property
    def sla_breached(self) -> bool:
        """Return whether the operation took longer than its SLA, as recorded."""
        return self._outcome.get("sla_breached") is True

    def as_json(self) -> dict[str, Any]:
        """Return the entry as JSON-ready data."""
        return {
            "commit": self.oid,
            "parents": list(self.parents),
            "time": utc(self.time, ISO_UTC),
            "epoch": self.time,
            "committer": self.committer,
            "operation": self.operation,
            "summary": self.summary,
            "snapshots": self.snapshots,
            "result": self.result,
            "signature_kind": self.signature_kind,
            "shared": self.shared,
            "outcome": self.outcome,
            "environments": self.environments,
            "duration_seconds": self.duration,
            "sla_seconds": self.sla_seconds,
            "sla_breached": self.sla_breached,
            "body": dict(self.body),
            "error": self.error,
        }


def _seconds(value: Any) -> float | None:
    """Return a number of seconds read from an entry's body, None if it is not one."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def parse_entry(commit: pygit2.Commit, *, shared: bool = True) -> AuditEntry:
    """Return an audit commit as an AuditEntry; a message that does not parse sets `error`;
    `shared`: False for an entry of LOCAL_FAILURES_REF."""
    message = commit.message
    first, _, rest = message.partition("\n")
    operation, sep, summary = first.partition(": ")
    error = None
    body: dict[str, Any] = {}
    try:
        parsed = untrusted.load_json(rest)
    except untrusted.Unreadable as exc:
        error = f"the message has no readable JSON body ({exc})"
    else:
        if isinstance(parsed, dict):
            body = parsed
        else:
            error = "the JSON body is not an object"
    if error is None and (not sep or body.get("operation") != operation):
        error = "the summary line does not name the body's operation"
    if error is None and body.get("time") != commit.committer.time:
        error = "the body's time differs from the committer time"
    block, _ = commit.gpg_signature
    committer = commit.committer
    return AuditEntry(
        oid=str(commit.id),
        parents=tuple(str(p) for p in commit.parent_ids),
        tree=str(commit.tree_id),
        time=committer.time,
        offset=committer.offset,
        committer=f"{committer.name} <{committer.email}>",
        operation=operation if sep else "?",
        summary=summary if sep else first,
        body=body,
        signature_kind=signature_kind(block),
        error=error,
        shared=shared,
    )


def read_chain(repo: Repo, ref: str = AUDIT_REF) -> list[AuditEntry]:
    """Return every entry of the chain, newest first, following all parents (a fetch
    joins a remote copy of the chain with a two-parent entry, see remote.py); raise
    CheckFailed when the ref points at a missing commit."""
    head = ref_target(repo, ref)
    if head is not None and not repo.git.odb.exists(head):
        raise dangling(head)
    entries = [parse_entry(commit) for commit in _walk(repo, ref)]
    entries.sort(key=lambda e: e.time, reverse=True)
    return entries


def local_failures(repo: Repo) -> list[AuditEntry]:
    """Return the failures this clone kept to itself (append_failure), newest first."""
    entries = [parse_entry(c, shared=False) for c in _walk(repo, LOCAL_FAILURES_REF)]
    entries.sort(key=lambda e: e.time, reverse=True)
    return entries


def outcomes(repo: Repo) -> list[AuditEntry]:
    """Return every entry that records an operation's outcome, newest first: the chain's
    and the failures this clone kept to itself."""
    entries = read_chain(repo) + local_failures(repo)
    entries.sort(key=lambda e: e.time, reverse=True)
    return entries


def _walk(repo: Repo, ref: str) -> list[pygit2.Commit]:
    """Return the commits reachable from `ref`, each once, stopping at missing ones."""
    found: list[pygit2.Commit] = []
    head = ref_target(repo, ref)
    seen: set[pygit2.Oid] = set()
    stack = [] if head is None else [head]
    while stack:
        oid = stack.pop()
        if oid in seen:
            continue
        seen.add(oid)
        commit = repo.git.get(oid)
        if isinstance(commit, pygit2.Commit):
            found.append(commit)
            stack.extend(commit.parent_ids)
    return found


def entries_of(
    repo: Repo, *operations: str, ref: str = AUDIT_REF, tip: pygit2.Oid | None = None
) -> list[AuditEntry]:
    """Return every entry of these operations in the chain at `ref` (or at commit `tip`),
    newest first, following all parents: entries of the copies of the chain that a fetch
    joined (remote.py) included."""
    head = tip if tip is not None else ref_target(repo, ref)
    if head is None:
        return []
    first_lines = tuple(f"{operation}: " for operation in operations)
    # Children before parents, so that entries of one second keep the chain's order.
    return [
        parse_entry(commit)
        for commit in repo.git.walk(head, SortMode.TOPOLOGICAL | SortMode.TIME)
        if commit.message.startswith(first_lines)
    ]


@dataclass(frozen=True)
class AuditListing:
    """The entries `govsnap audit` shows, newest first."""

    entries: tuple[AuditEntry, ...]

    def as_json(self) -> dict[str, Any]:
        """Return the entries as JSON-ready data, newest first."""
        return {"schema": schema_name("audit"), "entries": [e.as_json() for e in self.entries]}


@dataclass(frozen=True)
class AuditFilter:
    """Which entries `govsnap audit` shows; None means no restriction."""

    since: int | None = None
    until: int | None = None
    operation: str | None = None
    snapshot: str | None = None


def listing(repo: Repo, wanted: AuditFilter) -> AuditListing:
    """Return the entries of the chain `wanted` selects, newest first."""
    return AuditListing(tuple(select(outcomes(repo), wanted)))


def filter_of(
    since: str | None, until: str | None, operation: str | None, snapshot: str | None
) -> AuditFilter:
    """Return the filter of `govsnap audit`'s options (times as parse_time reads them)."""
    now = datetime.now().astimezone()
    return AuditFilter(
        since=None if since is None else parse_time(since, now),
        until=None if until is None else parse_time(until, now),
        operation=operation,
        snapshot=snapshot,
    )


def select(entries: Sequence[AuditEntry], wanted: AuditFilter) -> list[AuditEntry]:
    """Return the entries matching every restriction of `wanted`, in their order."""
    snapshot = wanted.snapshot.lower() if wanted.snapshot else None
    return [
        e
        for e in entries
        if (wanted.since is None or e.time >= wanted.since)
        and (wanted.until is None or e.time <= wanted.until)
        and (wanted.operation is None or e.operation == wanted.operation)
        and (snapshot is None or any(s.startswith(snapshot) for s in e.snapshots))
    ]


_AGO = re.compile(r"^(\d+)\s*(second|minute|hour|day|week)s?\s+ago$")
_UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400, "week": 7 * 86400}


def parse_time(text: str, now: datetime) -> int:
    """Return epoch seconds for `2026-01-31`, an ISO 8601 time, `@<epoch>`, `now`,
    `today`, `yesterday` or `<N> <unit>s ago`; raise UsageError for anything else.

    Times without a zone are read in `now`'s zone, as git reads them in local time.
    """
    value = text.strip().lower()
    if value.startswith("@") and value[1:].isdigit():
        return int(value[1:])
    if value == "now":
        return int(now.timestamp())
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if value == "today":
        return int(midnight.timestamp())
    if value == "yesterday":
        return int((midnight - timedelta(days=1)).timestamp())
    ago = _AGO.match(value)
    if ago:
        return int(now.timestamp()) - int(ago.group(1)) * _UNITS[ago.group(2)]
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(
            f"cannot read the time {text!r}: use 2026-01-31, 2026-01-31T12:00:00Z, "
            "@<epoch seconds>, today, yesterday or '<N> days ago'"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=now.tzinfo)
    return int(when.timestamp())


# --- verification ------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditProblem:
    """One thing wrong with the chain, at one entry."""

    commit: str
    kind: Literal[
        "merge",
        "tree",
        "message",
        "time",
        "signature",
        "missing",
        "unknown-key",
        "rewritten",
        "unauthorised",
    ]
    message: str


@dataclass(frozen=True)
class AuditReport:
    """The result of `audit verify`."""

    entries: int
    signed: int
    skew: int
    problems: tuple[AuditProblem, ...]
    signers: tuple[str, ...] = ()
    # Decisions that count for nothing here without being wrong: a prune of a snapshot
    # pinned then (by a race between clones), an entry about a snapshot whose tag this
    # clone does not hold (its environment, and so the right, cannot be judged here).
    undecided: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """Return True when no problem was found."""
        return not self.problems

    def as_json(self) -> dict[str, Any]:
        """Return the report as JSON-ready data."""
        return {
            "schema": schema_name("audit-verify"),
            "ok": self.ok,
            "entries": self.entries,
            "signed": self.signed,
            "unsigned": self.entries - self.signed,
            "skew_seconds": self.skew,
            "signers": list(self.signers),
            "problems": [
                {"commit": p.commit, "kind": p.kind, "message": p.message} for p in self.problems
            ],
            "undecided": list(self.undecided),
        }

    def check(self) -> None:
        """Raise CheckFailed when a problem was found."""
        if not self.ok:
            raise CheckFailed(f"the audit trail has {len(self.problems)} problem(s)")


def time_problems(repo: Repo, commit: pygit2.Commit, skew: int, now: int) -> list[tuple[str, str]]:
    """Return (kind, message) for each way an entry's time does not hold: dated in the
    future, or older than a parent (beyond the skew). The signer's clock writes it: an
    entry may not be back-dated below the chain it extends."""
    short = str(commit.id)[:12]
    found: list[tuple[str, str]] = []
    when = commit.committer.time
    if when > now + skew:
        found.append(("time", f"{short} is dated {utc(when)}, in the future"))
    for parent_id in commit.parent_ids:
        parent = repo.git.get(parent_id)
        if isinstance(parent, pygit2.Commit) and when < parent.committer.time - skew:
            found.append(
                (
                    "time",
                    f"{short} is {parent.committer.time - when}s older than its parent "
                    f"{str(parent_id)[:12]} (allowed skew {skew}s)",
                )
            )
    return found


def back_dated(entry: AuditEntry, check: SignatureCheck, skew: int) -> str | None:
    """Return why an entry's signature, made before the entry's own time (beyond the
    skew), is refused, or None: a retired key signing today with a date from before it
    expired (gpg --faked-system-time)."""
    if check.signed_at is None:
        return None
    early = entry.time - check.signed_at
    if early <= skew:
        return None
    return (
        f"{entry.oid[:12]} ({entry.operation}) was signed {utc(check.signed_at)}, {early}s "
        f"before its own time {utc(entry.time)} (more than govsnap.auditSkew, {skew}s): a "
        "back-dated signature"
    )


def verify(repo: Repo, skew: int | None = None, ref: str = AUDIT_REF) -> AuditReport:
    """Check the whole chain and return what was found (an empty chain is good): its
    shape, times, that it still holds what this clone recorded of it, signatures (against
    the trust policy's keys when there is one, and not made before the entry they sign),
    and that every prune, purge and unpin was made by a signer allowed to."""
    import time

    from govsnap.signing import SignatureVerifier
    from govsnap.trust import load_policy

    skew = configured_skew(repo) if skew is None else skew
    if skew < 0:
        raise UsageError(f"the skew must be 0 or more seconds, not {skew}")
    now = int(time.time())
    problems: list[AuditProblem] = []
    signers: dict[str, None] = {}
    head = ref_target(repo, ref)
    if head is not None and not repo.git.odb.exists(head):
        error = dangling(head)
        return AuditReport(0, 0, skew, (AuditProblem(str(head), "missing", error.message),))
    if ref == AUDIT_REF:
        problems += _continuity_problems(repo, head)
    policy = load_policy(repo)
    commits = _walk(repo, ref)
    by_oid = {commit.id: commit for commit in commits}
    signed_items: list[tuple[AuditEntry, bytes, bytes]] = []
    entries: list[AuditEntry] = []
    for commit in commits:
        entry = parse_entry(commit)
        entries.append(entry)
        short = entry.oid[:12]
        # The one legitimate merge: a fetch joining the remote's copy of the chain.
        joins = len(entry.parents) == 2 and entry.operation == "fetch"
        if len(entry.parents) > 1 and not joins:
            problems.append(
                AuditProblem(
                    entry.oid,
                    "merge",
                    f"{short} has {len(entry.parents)} parents: the chain must be linear "
                    "(only a fetch joins two copies of it)",
                )
            )
        if entry.tree != EMPTY_TREE:
            problems.append(AuditProblem(entry.oid, "tree", f"{short} is not on the empty tree"))
        if entry.error:
            problems.append(AuditProblem(entry.oid, "message", f"{short}: {entry.error}"))
        for parent_oid in commit.parent_ids:
            if by_oid.get(parent_oid) is None:
                problems.append(
                    AuditProblem(
                        str(parent_oid),
                        "missing",
                        f"{parent_oid} (parent of {short}) is missing or not a commit",
                    )
                )
        problems += [
            AuditProblem(entry.oid, "time", m) for _, m in time_problems(repo, commit, skew, now)
        ]
        block, payload = commit.gpg_signature
        if block:
            signed_items.append((entry, bytes(payload), bytes(block)))
    verifier = (
        policy.verifier(repo, with_retired=True) if policy is not None else SignatureVerifier(repo)
    )
    try:
        checks = verifier.verify_many([(payload, block) for _, payload, block in signed_items])
    finally:
        verifier.close()
    for (entry, _, _), check in zip(signed_items, checks, strict=True):
        short = entry.oid[:12]
        if check.valid:
            signers[check.signer or "?"] = None
            early = back_dated(entry, check, skew)
            if early is not None:
                problems.append(AuditProblem(entry.oid, "signature", early))
        elif check.unknown_key is not None:
            # Not tampering: a key this clone cannot check (the policy should carry it).
            problems.append(AuditProblem(entry.oid, "unknown-key", f"{short}: {check.reason}"))
        else:
            problems.append(
                AuditProblem(entry.oid, "signature", f"{short}: bad signature: {check.reason}")
            )
    undecided: list[str] = []
    if policy is not None:
        found = decisions(repo, policy, ref=ref)
        for judged in found.ignored:
            if judged.unauthorised:
                problems.append(
                    AuditProblem(
                        judged.entry.oid,
                        "unauthorised",
                        f"{judged.entry.operation} entry {judged.reason}: it decides nothing",
                    )
                )
            else:
                undecided.append(f"{judged.entry.operation} entry {judged.reason}")
    return AuditReport(
        len(commits),
        len(signed_items),
        skew,
        tuple(problems),
        tuple(signers),
        tuple(undecided),
    )


def _continuity_problems(repo: Repo, head: pygit2.Oid | None) -> list[AuditProblem]:
    """Return a problem when the chain no longer holds what this clone recorded of it."""
    recorded = ref_target(repo, VERIFIED_AUDIT_REF)
    if recorded is None or recorded == head:
        return []
    odb = repo.git.odb
    holds = head is not None and odb.exists(recorded) and repo.git.descendant_of(head, recorded)
    if holds:
        return []
    return [
        AuditProblem(
            str(recorded),
            "rewritten",
            f"{AUDIT_REF} no longer holds {recorded}, which this clone recorded (rewritten, "
            f"truncated or deleted): govsnap doctor --fix restores a truncated chain, or "
            f"git update-ref {AUDIT_REF} {recorded}",
        )
    ]


# --- decisions: what signed, authorised entries say ------------------------------------

# Entries that decide something, and the right (trust policy operation) each needs.
DECISION_RIGHTS = {"prune": "prune", "purge": "prune", "pin": "pin", "unpin": "pin"}


class HeldTags:
    """The snapshot tags a judge holds, by id: where it reads the environment of each
    snapshot a decision names. An id is the SHA-256 of its tag's payload, so every tag
    held under it names the same environment; the environments an entry itself records
    are its signer's claim, and decide nothing."""

    def __init__(self, repo: Repo, candidates: Mapping[str, Sequence[str]]) -> None:
        self.repo = repo
        self.candidates = candidates
        self._found: dict[str, str | None] = {}

    def environment(self, ident: str) -> str | None:
        """Return the environment of snapshot `ident` as its tag says, or None when no
        tag held here hashes to that id."""
        if ident not in self._found:
            self._found[ident] = self._read(ident)
        return self._found[ident]

    def _read(self, ident: str) -> str | None:
        for oid in self.candidates.get(ident, ()):
            try:
                payload = SnapshotPayload.parse(read_tag(self.repo, oid).payload)
            except CorruptObject:
                continue
            if payload.id == ident:
                return payload.environment
        return None


def held_tags(repo: Repo, extra: Mapping[str, str] | None = None) -> HeldTags:
    """Return the snapshot tags `repo` holds: its snapshot refs, the copies fetched from
    its remotes (refs/govsnap-remote/<remote>/snapshots/), and `extra` (id -> tag)."""
    candidates: dict[str, list[str]] = {}
    for ref in repo.git.references.iterator():
        name = ref.name
        if name.startswith(SNAPSHOT_REF_PREFIX):
            ident = name[len(SNAPSHOT_REF_PREFIX) :]
        elif name.startswith(TRACKED_PREFIX) and "/snapshots/" in name:
            ident = name.rsplit("/", 1)[1]
        else:
            continue
        target = ref.target
        if isinstance(target, pygit2.Oid):
            candidates.setdefault(ident, []).append(str(target))
    for ident, oid in (extra or {}).items():
        candidates.setdefault(ident, []).append(str(oid))
    return HeldTags(repo, candidates)


@dataclass(frozen=True)
class JudgedEntry:
    """A decision entry and whether it counts: its signature good, its times holding, and
    its signer allowed the right in the environment of every snapshot it names whose tag
    the judge holds. `decides` are the ids it is judged to decide about."""

    entry: AuditEntry
    signer: str | None  # the verified signer, if the signature holds
    allowed: bool
    reason: str
    decides: frozenset[str] = frozenset()
    # Why it counts for nothing is a wrong (unsigned, unauthorised, back-dated), not
    # only a limit of this judge (a snapshot it does not hold, a pin in the way).
    unauthorised: bool = True


@dataclass(frozen=True)
class AuditDecisions:
    """What the audit trail decides: only entries signed by a signer the trust policy
    allows count (with no policy, every entry). Notes never decide."""

    pruned: frozenset[str]  # ids an authorised prune or purge removed
    purged: frozenset[str]  # ids an authorised purge erased: never to be created again
    pinned: frozenset[str]  # ids pinned and not unpinned by an authorised unpin
    ignored: tuple[JudgedEntry, ...]  # decision entries (or parts) that count for nothing


def judge(
    repo: Repo,
    entries: Sequence[AuditEntry],
    policy: TrustPolicy | None,
    tags: HeldTags,
    *,
    skew: int,
    now: int,
    arrival: bool = False,
) -> list[JudgedEntry]:
    """Return, per decision entry, whether it counts: the signature checked against the
    policy's keys (with `arrival`, a server receiving it now: the key valid now), not
    made before the entry's time, the entry not older than its parent nor in the future,
    and the signer's right in the environment of every snapshot it names, read from the
    snapshot's tag (`tags`; a snapshot whose tag the judge does not hold is not decided
    about). With no trust policy there is no authority to ask: every entry counts as
    recorded (as anyone with push access could delete refs on such a remote anyway)."""
    if policy is None:
        return [
            JudgedEntry(
                e, None, True, "no trust policy: counted as recorded", frozenset(e.snapshots)
            )
            for e in entries
        ]
    commits: list[pygit2.Commit] = []
    signed: list[tuple[bytes, bytes]] = []
    for entry in entries:
        found = repo.git[entry.oid]
        assert isinstance(found, pygit2.Commit)
        commits.append(found)
        block, payload = found.gpg_signature
        signed.append((bytes(payload or b""), bytes(block or b"")))
    verifier = policy.verifier(repo)
    try:
        checks = verifier.verify_many([item for item in signed if item[1]])
        verdicts = iter(checks)
        judged = []
        for entry, commit, (payload, block) in zip(entries, commits, signed, strict=True):
            short = entry.oid[:12]
            if not block:
                judged.append(JudgedEntry(entry, None, False, f"{short} is not signed"))
                continue
            check = next(verdicts)
            if not check.valid:
                judged.append(
                    JudgedEntry(entry, None, False, f"{short}: signature not good: {check.reason}")
                )
                continue
            wrong = back_dated(entry, check, skew)
            times = time_problems(repo, commit, skew, now)
            if wrong is not None or times:
                reason = wrong if wrong is not None else times[0][1]
                judged.append(JudgedEntry(entry, check.signer, False, reason))
                continue
            if arrival:
                check = verifier.at_arrival(payload, block, check, now)
                if not check.valid:
                    reason = f"{short}: {check.reason}"
                    judged.append(JudgedEntry(entry, check.signer, False, reason))
                    continue
            judged.append(_rights(entry, check.signer, policy, tags))
    finally:
        verifier.close()
    return judged


def _rights(
    entry: AuditEntry, signer: str | None, policy: TrustPolicy, tags: HeldTags
) -> JudgedEntry:
    """Return whether the verified `signer` may make `entry`'s decision about each
    snapshot it names, in the environment the snapshot's own tag says."""
    short = entry.oid[:12]
    right = DECISION_RIGHTS[entry.operation]
    decides: set[str] = set()
    unheld: list[str] = []
    for ident in entry.snapshots:
        environment = tags.environment(ident)
        if environment is None:
            unheld.append(ident)
            continue
        decision = policy.decide(signer, environment, right)
        if not decision.allowed:
            return JudgedEntry(entry, signer, False, f"{short} about {ident}: {decision.reason}")
        decides.add(ident)
    if unheld and not decides:
        return JudgedEntry(
            entry,
            signer,
            False,
            f"{short} names {_ids(unheld)}, whose tag this repository does not hold: its "
            "environment, and so the right, cannot be judged here",
            unauthorised=False,
        )
    reason = f"{short}: {signer} may {right} there" + (
        f" ({_ids(unheld)}: no tag held here, nothing decided)" if unheld else ""
    )
    return JudgedEntry(entry, signer, True, reason, frozenset(decides))


def _ids(ids: Sequence[str]) -> str:
    return ", ".join(ids[:3]) + (f" and {len(ids) - 3} more" if len(ids) > 3 else "")


def decisions(
    repo: Repo,
    policy: TrustPolicy | None,
    ref: str = AUDIT_REF,
    tip: pygit2.Oid | None = None,
    tags: HeldTags | None = None,
) -> AuditDecisions:
    """Return what the authorised entries of the chain at `ref` (or at commit `tip`; every
    copy a fetch joined included) decide about pruning, purging and pinning, replayed in
    the chain's order (parents first).

    A pin counts from anyone (it only keeps a snapshot); an unpin, a prune and a purge
    count only from a signer allowed to make them in the snapshot's environment (see
    judge), so that an edited note or a forged entry can neither expose a pinned
    snapshot to prune nor delete one anywhere; and a prune or purge of a snapshot pinned
    at that point counts for nothing: an authorised unpin must come first."""
    import time

    entries = entries_of(repo, *DECISION_RIGHTS, ref=ref, tip=tip)
    tags = tags if tags is not None else held_tags(repo)
    now = int(time.time())
    judged = judge(repo, entries, policy, tags, skew=configured_skew(repo), now=now)
    pruned: set[str] = set()
    purged: set[str] = set()
    pinned: set[str] = set()
    ignored: list[JudgedEntry] = []
    # Who pinned and who unpinned each snapshot, as the replay meets them: a decision also
    # counts for nothing when a pin stands in its own past (its signer's chain), whatever
    # order entries of one second on two joined copies of the chain replay in.
    pins: dict[str, list[str]] = {}
    unpins: dict[str, list[str]] = {}

    def before(later: str, earlier: str) -> bool:
        return later != earlier and bool(
            repo.git.descendant_of(pygit2.Oid(hex=later), pygit2.Oid(hex=earlier))
        )

    def pinned_in_its_past(ident: str, entry: str) -> bool:
        return any(
            before(entry, pin)
            and not any(
                before(unpin, pin) and before(entry, unpin) for unpin in unpins.get(ident, [])
            )
            for pin in pins.get(ident, [])
        )

    for item in reversed(judged):
        operation = item.entry.operation
        if operation == "pin":
            pinned.update(item.entry.snapshots)
            for ident in item.entry.snapshots:
                pins.setdefault(ident, []).append(item.entry.oid)
        elif not item.allowed:
            ignored.append(item)
        elif operation == "unpin":
            pinned.difference_update(item.decides)
            for ident in item.decides:
                unpins.setdefault(ident, []).append(item.entry.oid)
        else:
            kept = sorted(
                i for i in item.decides if i in pinned or pinned_in_its_past(i, item.entry.oid)
            )
            if kept:
                ignored.append(
                    replace(
                        item,
                        allowed=False,
                        unauthorised=False,
                        reason=f"{item.entry.oid[:12]} about {_ids(kept)}: pinned then (no "
                        "authorised unpin came first), so it counts for nothing",
                    )
                )
            counted = item.decides - set(kept)
            pruned |= counted
            if operation == "purge":
                purged |= counted
    return AuditDecisions(frozenset(pruned), frozenset(purged), frozenset(pinned), tuple(ignored))


def first_problems(problems: Sequence[str], shown: int = 3) -> str:
    """Return the first few problems as one phrase, saying how many more there are."""
    more = len(problems) - shown
    return "; ".join(problems[:shown]) + (f" and {more} more" if more > 0 else "")


def new_entry_problems(
    repo: Repo,
    tip: pygit2.Oid,
    known: Sequence[pygit2.Oid | None],
    policy: TrustPolicy | None,
    *,
    skew: int,
    now: int,
    retired_known: bool = True,
    tags: HeldTags | None = None,
    arrival: bool = False,
) -> list[str]:
    """Return what is wrong with the entries reachable from `tip` and from none of
    `known` (a remote's new entries, or a push's): a shape the chain never has, a time in
    the future or before its parent's, a missing parent; once a policy exists, an entry
    that is unsigned, signed by a key the policy does not know (with `retired_known`, nor
    an earlier version of it: a clone joining a history), signed before its own time, by
    a key not valid when a server receives it (`arrival`), or a decision its signer may
    not make about a snapshot whose tag the judge holds (`tags`)."""
    from govsnap.signing import add_signer_hint

    walker = repo.git.walk(tip, SortMode.TOPOLOGICAL)
    for oid in known:
        if oid is not None and repo.git.odb.exists(oid):
            walker.hide(oid)
    try:
        commits = list(walker)
    except (KeyError, ValueError, pygit2.GitError) as exc:
        return [f"an entry of {str(tip)[:12]}'s history is missing: {exc}"]
    problems: list[str] = []
    entries = [parse_entry(commit) for commit in commits]
    faulty: set[str] = set()  # entries already refused: judged no further
    for commit, entry in zip(commits, entries, strict=True):
        short = entry.oid[:12]
        found: list[str] = []
        joins = len(entry.parents) == 2 and entry.operation == "fetch"
        if len(entry.parents) > 1 and not joins:
            found.append(f"{short} has {len(entry.parents)} parents")
        if entry.tree != EMPTY_TREE:
            found.append(f"{short} is not on the empty tree")
        if entry.error:
            found.append(f"{short}: {entry.error}")
        found += [message for _, message in time_problems(repo, commit, skew, now)]
        for parent in commit.parent_ids:
            if not repo.git.odb.exists(parent):
                found.append(f"{short}'s parent {parent} is missing")
        if found:
            faulty.add(entry.oid)
        problems += found
    if policy is None:
        return problems
    signed = []
    for commit, entry in zip(commits, entries, strict=True):
        block, payload = commit.gpg_signature
        if not block:
            problems.append(f"{entry.oid[:12]} ({entry.operation}) is not signed")
        else:
            signed.append((entry, bytes(payload), bytes(block)))
    # A signer the policy retired since still signed its entries while listed: known.
    verifier: SignatureVerifier = policy.verifier(repo, with_retired=retired_known)
    hinted: set[str] = set()
    try:
        checks = verifier.verify_many([(payload, block) for _, payload, block in signed])
        for (entry, payload, block), check in zip(signed, checks, strict=True):
            short = f"{entry.oid[:12]} ({entry.operation})"
            if check.unknown_key is not None:
                # The fix, once per key: adding the key is what a new signer's entries need.
                key = check.unknown_key
                hint = "" if key in hinted else f" (to trust it: {add_signer_hint(key)})"
                hinted.add(key)
                problem: str | None = (
                    f"{short} is signed by {key}, a key the trust policy does not know{hint}"
                )
            elif not check.valid:
                problem = f"{short}: {check.reason}"
            else:
                # The signer's own times first (a back-dated signature), then the
                # server's clock (a key that had expired when the entry arrived).
                problem = back_dated(entry, check, skew)
                if problem is None and arrival:
                    received = verifier.at_arrival(payload, block, check, now)
                    problem = None if received.valid else f"{short}: {received.reason}"
            if problem is not None:
                problems.append(problem)
                faulty.add(entry.oid)
    finally:
        verifier.close()
    decisions_ = [
        e
        for e, _, _ in signed
        if e.operation in DECISION_RIGHTS and e.operation != "pin" and e.oid not in faulty
    ]
    tags = tags if tags is not None else held_tags(repo)
    for judged in judge(repo, decisions_, policy, tags, skew=skew, now=now, arrival=arrival):
        if not judged.allowed and judged.unauthorised:
            problems.append(f"{judged.entry.operation} entry {judged.reason}")
    return problems
