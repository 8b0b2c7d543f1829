"""Prune: plan with the retention policy, delete snapshot refs and notes by compare-and-swap,
record an audit entry, reclaim space with `git gc`; purge one snapshot; pin and unpin.

The policy decides on a list read once (`plan`); `execute` deletes each planned ref only
if it still points at the tag the plan saw, in one `git update-ref --stdin` transaction
that also removes their notes and appends the audit entry, so a snapshot created or
changed meanwhile is never removed by a stale plan, and none is removed unrecorded.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import pygit2
from pygit2.enums import FileMode, SortMode

from govsnap import audit, notes, progress
from govsnap.errors import CheckFailed, Declined, EnvironmentProblem, UsageError
from govsnap.objects import RefValues, collecting, update_refs
from govsnap.refs import AUDIT_REF, NOTES_REF, SNAPSHOT_REF_PREFIX
from govsnap.repo import Repo, scrubbed_env
from govsnap.retention import (
    Candidate,
    Duration,
    RetentionPolicy,
    apply_policy,
    group_snapshots,
    parse_policy_text,
    policy_from_values,
)
from govsnap.schemas import schema_name
from govsnap.store import Snapshot, filter_snapshots, list_snapshots, resolve
from govsnap.trust import decide_local, load_policy

DEFAULT_POLICY = RetentionPolicy(last=20)
# Where a plan's policy came from: prune's --keep-* options, git config govsnap.keep*,
# the default; or no policy: snapshots named with --id.
PolicySource = Literal["flags", "config", "default", "ids"]
# Safety snapshots (taken before each rollback) are kept by a policy of their own, so that
# rollbacks never push release snapshots out of a release policy's counts.
DEFAULT_SAFETY_POLICY = RetentionPolicy(last=10, within=Duration(days=30))
SAFETY_CONFIG_KEY = "govsnap.safetyRetention"
DEFAULT_PRUNE_EXPIRE = "2.weeks.ago"
REASON_UNREADABLE = "unreadable tag: never removed by a policy"
REASON_NAMED = "named with --id"
UNREADABLE_GROUP = "unreadable"
# Not a valid environment name (it holds a space), so it never merges with one.
SAFETY_GROUP = "safety (pre-rollback)"

# git config keys of the policy, in the `govsnap` section (DESIGN.md section 7).
_CONFIG_KEYS = {
    "last": "govsnap.keepLast",
    "hourly": "govsnap.keepHourly",
    "daily": "govsnap.keepDaily",
    "weekly": "govsnap.keepWeekly",
    "monthly": "govsnap.keepMonthly",
    "yearly": "govsnap.keepYearly",
    "within": "govsnap.keepWithin",
    "within_hourly": "govsnap.keepWithinHourly",
    "within_daily": "govsnap.keepWithinDaily",
    "within_weekly": "govsnap.keepWithinWeekly",
    "within_monthly": "govsnap.keepWithinMonthly",
    "within_yearly": "govsnap.keepWithinYearly",
}
LABEL_CONFIG_KEY = "govsnap.keepLabel"


def configured_policy(repo: Repo) -> tuple[RetentionPolicy, PolicySource]:
    """Return the policy in `git config govsnap.keep*` and where it came from ("config"),
    or keep-last 20 ("default") when none of those keys is set."""
    values = {
        rule: value
        for rule, key in _CONFIG_KEYS.items()
        if (value := repo.config_str(key)) is not None
    }
    labels = repo.config_list(LABEL_CONFIG_KEY)
    if not values and not labels:
        return DEFAULT_POLICY, "default"
    option_of = {rule: f"git config {key}" for rule, key in _CONFIG_KEYS.items()}
    policy = policy_from_values(values, labels, option_of, f"git config {LABEL_CONFIG_KEY}")
    return policy, "config"


def configured_safety_policy(repo: Repo) -> tuple[RetentionPolicy, PolicySource]:
    """Return the policy of safety snapshots in `git config govsnap.safetyRetention`
    (prune's --keep-* options as text) and where it came from ("config"), or keep-within
    30d and keep-last 10 ("default")."""
    text = repo.config_str(SAFETY_CONFIG_KEY)
    if text is None:
        return DEFAULT_SAFETY_POLICY, "default"
    return parse_policy_text(text, f"git config {SAFETY_CONFIG_KEY}"), "config"


# --- planning ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PruneOptions:
    """What `prune` was asked to do."""

    policy: RetentionPolicy | None = None  # None: from git config
    environment: str | None = None
    group_by: str = "environment"
    ids: tuple[str, ...] = ()
    dry_run: bool = False
    now: bool = False
    gc: bool = True

    @property
    def purge(self) -> bool:
        """Return True for `--id ... --now`: erase the snapshots from the notes history too."""
        return bool(self.ids) and self.now


@dataclass(frozen=True)
class Decision:
    """What the plan does with one snapshot, and why."""

    snapshot: Snapshot
    group: str
    remove: bool
    reasons: tuple[str, ...]

    @property
    def action(self) -> Literal["keep", "remove"]:
        """Return what the plan does with the snapshot."""
        return "remove" if self.remove else "keep"

    def as_json(self) -> dict[str, Any]:
        """Return the decision as JSON-ready data."""
        snap = self.snapshot
        return {
            "id": snap.id,
            "time": snap.created_iso if snap.payload else None,
            "environment": snap.environment if snap.payload else None,
            "labels": list(snap.labels),
            "safety": snap.safety,
            "group": self.group,
            "action": self.action,
            "reasons": list(self.reasons),
        }


@dataclass(frozen=True)
class PrunePlan:
    """Every decision of one prune, grouped, and the policy that made them."""

    options: PruneOptions
    policy: RetentionPolicy | None  # None when snapshots were named with --id
    source: PolicySource
    decisions: tuple[Decision, ...]
    # The policy of the safety snapshots' group (None with --id), and where it came from
    # ("config" or "default").
    safety_policy: RetentionPolicy | None = None
    safety_source: PolicySource | Literal[""] = ""
    # With --dry-run: the bytes the removed snapshots alone hold (see reclaimable_bytes).
    reclaimable: int | None = None

    @property
    def has_safety(self) -> bool:
        """Return True when the plan decides about safety snapshots by their policy."""
        return self.safety_policy is not None and any(
            d.group == SAFETY_GROUP for d in self.decisions
        )

    @property
    def removed(self) -> list[Decision]:
        """Return the decisions that remove a snapshot."""
        return [d for d in self.decisions if d.remove]

    @property
    def kept(self) -> list[Decision]:
        """Return the decisions that keep a snapshot."""
        return [d for d in self.decisions if not d.remove]

    @property
    def groups(self) -> dict[str, tuple[int, int]]:
        """Return group name -> (kept, removed), in plan order."""
        counts: dict[str, tuple[int, int]] = {}
        for d in self.decisions:
            kept, removed = counts.get(d.group, (0, 0))
            counts[d.group] = (kept, removed + 1) if d.remove else (kept + 1, removed)
        return counts

    @property
    def why_nothing(self) -> str | None:
        """Return why nothing is removed when the policy is empty (else None)."""
        if self.policy is not None and self.policy.empty:
            return "the retention policy is empty (every keep rule is 0): nothing is removed"
        return None

    def describe(self) -> str:
        """Return the policy in words, or what --id named."""
        if self.policy is None:
            return f"remove the snapshot(s) named with --id: {', '.join(self.options.ids)}"
        return self.policy.describe()

    def as_json(self) -> dict[str, Any]:
        """Return the plan as JSON-ready data."""
        return {
            "schema": schema_name("prune"),
            "dry_run": True,
            "policy": self.policy.as_json() if self.policy else None,
            "policy_text": self.describe(),
            "policy_source": self.source,
            "safety_policy": self.safety_policy.as_json() if self.safety_policy else None,
            "safety_policy_text": self.safety_policy.describe() if self.safety_policy else None,
            "safety_policy_source": self.safety_source or None,
            "group_by": self.options.group_by,
            "environment": self.options.environment,
            "message": self.why_nothing,
            "groups": [{"group": g, "kept": k, "removed": r} for g, (k, r) in self.groups.items()],
            "snapshots": [d.as_json() for d in self.decisions],
            "kept": len(self.kept),
            "removed": len(self.removed),
            "reclaimable_bytes": self.reclaimable,
        }


def _candidate(snap: Snapshot, pinned: frozenset[str]) -> Candidate:
    return Candidate(
        id=snap.id,
        time=datetime.fromtimestamp(snap.created, UTC),
        labels=snap.labels,
        pinned=snap.id in pinned,
        environment=snap.environment,
    )


def pinned_ids(repo: Repo) -> frozenset[str]:
    """Return the ids of the pinned snapshots, as the audit trail's authorised entries
    say: the note's `pinned` is a display copy anyone can edit, and decides nothing."""
    return audit.decisions(repo, load_policy(repo)).pinned


def run(
    repo: Repo,
    options: PruneOptions,
    confirm: Callable[[PrunePlan], bool] | None = None,
    announce: Callable[[PrunePlan], None] | None = None,
) -> PrunePlan | PruneResult:
    """Prune as `options` say: with `dry_run`, return the plan and the space it would
    reclaim; else check the trust policy allows it, ask `confirm` when it removes
    anything (a no raises Declined), tell `announce`, and carry it out."""
    the_plan = plan(repo, options)
    if options.dry_run:
        return replace(the_plan, reclaimable=reclaimable_bytes(repo, the_plan))
    authorize(repo, the_plan)
    if the_plan.removed and confirm is not None and not confirm(the_plan):
        raise Declined("prune cancelled: nothing was removed")
    if announce is not None:
        announce(the_plan)
    return execute(repo, the_plan, authorized=True)


def plan(repo: Repo, options: PruneOptions) -> PrunePlan:
    """Return what a prune with `options` would do, reading refs and notes once."""
    if options.ids and options.policy is not None:
        raise UsageError("--id removes the named snapshots: it cannot be combined with --keep-*")
    if options.now and not options.gc:
        raise UsageError("--now reclaims space with git gc: it cannot be combined with --no-gc")
    snaps = filter_snapshots(list_snapshots(repo), options.environment)
    if options.ids:
        return _plan_ids(repo, options, snaps)
    source: PolicySource
    if options.policy is not None:
        policy, source = options.policy, "flags"
    else:
        policy, source = configured_policy(repo)
    safety_policy, safety_source = configured_safety_policy(repo)
    readable = [s for s in snaps if s.payload is not None]
    by_id = {s.id: s for s in readable}
    now = datetime.now(UTC)
    pinned = pinned_ids(repo)
    groups = group_snapshots(
        (_candidate(s, pinned) for s in readable if not s.safety), options.group_by
    )
    decisions: list[Decision] = []
    for group, members in groups.items():
        decisions += _decide(group, members, policy, now, by_id)
    safety = [_candidate(s, pinned) for s in readable if s.safety]
    if safety:
        decisions += _decide(SAFETY_GROUP, safety, safety_policy, now, by_id)
    decisions += [
        Decision(s, UNREADABLE_GROUP, False, (REASON_UNREADABLE,))
        for s in snaps
        if s.payload is None
    ]
    return PrunePlan(options, policy, source, tuple(decisions), safety_policy, safety_source)


def _decide(
    group: str,
    members: list[Candidate],
    policy: RetentionPolicy,
    now: datetime,
    by_id: dict[str, Snapshot],
) -> list[Decision]:
    """Return the decisions of `policy` about one group, in the members' order."""
    keep, remove, reasons = apply_policy(members, policy, now)
    why = {r.snapshot.id: r.matches for r in reasons}
    # list_snapshots orders snapshots of the same second by their recorded nanoseconds;
    # the engine's stable sort keeps that order.
    order = {c.id: n for n, c in enumerate(members)}
    return [
        Decision(by_id[c.id], group, c.id not in why, why.get(c.id, ()))
        for c in sorted(keep + remove, key=lambda c: order[c.id])
    ]


def _plan_ids(repo: Repo, options: PruneOptions, snaps: list[Snapshot]) -> PrunePlan:
    named: dict[str, Snapshot] = {}
    pinned = pinned_ids(repo)
    for name in options.ids:
        snap = resolve(repo, name, snaps)
        if snap.id in pinned:
            raise UsageError(f"snapshot {snap.id} is pinned: run `govsnap unpin {snap.id}` first")
        named[snap.id] = snap
    decisions = tuple(
        Decision(s, s.environment, True, (REASON_NAMED,)) for s in snaps if s.id in named
    )
    return PrunePlan(options, None, "ids", decisions)


# --- space ---------------------------------------------------------------------------------


def objects_size(repo: Repo) -> int:
    """Return the bytes the object store takes on disk (loose objects and packs)."""
    total = 0
    stack = [repo.commondir / "objects"]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                else:
                    total += entry.stat(follow_symlinks=False).st_size
            except OSError:
                continue
    return total


def _ref_tips(repo: Repo, leave_out: set[str]) -> list[str]:
    tips = []
    for ref in repo.git.references.iterator():
        target = ref.target
        if isinstance(target, pygit2.Oid) and ref.name not in leave_out:
            tips.append(str(target))
    return tips


def reclaimable_bytes(repo: Repo, the_plan: PrunePlan) -> int:
    """Return the on-disk bytes of the objects only the removed snapshots reach: what
    `git gc --prune=now` frees once they are gone, when no reflog holds them.

    `rev-list --objects A --not B` would count objects B's older trees share with A, so
    this is du(every ref, the index) minus du(the same without the removed snapshots),
    the two walks run side by side.
    """
    removed = the_plan.removed
    if not removed:
        return 0
    refs = {d.snapshot.ref for d in removed}
    others = _ref_tips(repo, refs)
    with_removed = others + [d.snapshot.tag_oid for d in removed]
    args = ["git", *repo.git_args(), "rev-list", "--objects", "--disk-usage"]
    args += ["--indexed-objects", "--stdin"]
    if repo.git.head_is_unborn or repo.is_bare:
        args.remove("--indexed-objects")
    env = scrubbed_env()
    procs = [
        subprocess.Popen(
            args,
            cwd=repo.cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(2)
    ]
    sizes = []
    for proc, tips in zip(procs, (with_removed, others), strict=True):
        out, err = proc.communicate("".join(t + "\n" for t in tips).encode())
        if proc.returncode != 0:
            detail = err.decode(errors="replace").strip().splitlines()
            raise EnvironmentProblem(f"git rev-list failed: {detail[-1] if detail else '?'}")
        sizes.append(int(out.strip() or b"0"))
    return max(0, sizes[0] - sizes[1])


# --- deleting ------------------------------------------------------------------------------


def _drop_reflogs(repo: Repo, refs: Iterable[str]) -> None:
    """Remove reflogs left behind for deleted refs (core.logAllRefUpdates=always), which
    would otherwise keep the objects reachable for `git gc`."""
    logs = repo.commondir / "logs"
    if not (logs / SNAPSHOT_REF_PREFIX).is_dir():
        return
    for ref in refs:
        (logs / ref).unlink(missing_ok=True)


def _strip_notes(
    repo: Repo, tree: pygit2.Tree, objects: frozenset[str], prefix: str, memo: dict[str, pygit2.Oid]
) -> pygit2.Oid:
    """Return `tree` without the notes on `objects`, in flat or fan-out layout."""
    key = f"{prefix}:{tree.id}"
    if key in memo:
        return memo[key]
    builder: pygit2.TreeBuilder | None = None
    for entry in tree:
        part = entry.name or ""
        name = prefix + part
        if entry.filemode == FileMode.TREE:
            if len(part) == 2 and any(o.startswith(name) for o in objects):
                sub = repo.git[entry.id]
                assert isinstance(sub, pygit2.Tree)
                new = _strip_notes(repo, sub, objects, name, memo)
                if new != entry.id:
                    builder = builder or repo.git.TreeBuilder(tree)
                    emptied = repo.git[new]
                    assert isinstance(emptied, pygit2.Tree)
                    if len(emptied) == 0:
                        builder.remove(part)
                    else:
                        builder.insert(part, new, FileMode.TREE)
        elif name in objects:
            builder = builder or repo.git.TreeBuilder(tree)
            builder.remove(part)
    result = tree.id if builder is None else builder.write()
    memo[key] = result
    return result


def erased_notes(
    repo: Repo, current: pygit2.Oid | None, objects: frozenset[str], memo: dict[str, pygit2.Oid]
) -> pygit2.Oid | None:
    """Return the notes history `current` rewritten so that no commit of it holds a note
    on `objects` (writes objects only; `memo` carries rewritten trees between tries).

    Commits are rewritten with their own authors, dates and messages; history before the
    first such note is reused as it is.
    """
    if current is None:
        return None
    mapped: dict[pygit2.Oid, pygit2.Oid] = {}
    walker = repo.git.walk(current, SortMode.TOPOLOGICAL | SortMode.REVERSE)
    for commit in walker:
        tree = _strip_notes(repo, commit.tree, objects, "", memo)
        parents = [mapped.get(p, p) for p in commit.parent_ids]
        if tree == commit.tree_id and parents == list(commit.parent_ids):
            mapped[commit.id] = commit.id
            continue
        mapped[commit.id] = repo.git.create_commit(
            None, commit.author, commit.committer, commit.raw_message, tree, parents
        )
    return mapped[current]


# --- executing -----------------------------------------------------------------------------


@dataclass(frozen=True)
class PruneResult:
    """What a real prune did."""

    plan: PrunePlan
    removed: tuple[str, ...]  # snapshot ids deleted
    vanished: tuple[str, ...]  # planned, but gone or changed before we got to them
    bytes_before: int
    bytes_after: int
    gc: Literal["grace", "now", "skipped"]  # grace: with git's own prune grace period
    prune_expire: str | None  # git's grace period when gc ran with it
    seconds: float

    def as_json(self) -> dict[str, Any]:
        """Return the plan and what was done as JSON-ready data."""
        data = self.plan.as_json()
        data.update(
            dry_run=False,
            removed=len(self.removed),
            vanished=list(self.vanished),
            bytes_before=self.bytes_before,
            bytes_after=self.bytes_after,
            gc=self.gc,
            gc_prune_expire=self.prune_expire,
            seconds=round(self.seconds, 6),
        )
        return data


def _remove(repo: Repo, the_plan: PrunePlan, op: audit.Operation) -> list[str]:
    """Delete the planned snapshot refs that still point at the tags the plan saw, their
    notes (for a purge: from the whole notes history) and append the audit entry naming
    them, all in one ref transaction; return the refs deleted.

    A snapshot created or changed meanwhile is never removed by a stale plan; a killed
    prune leaves every change or none (no snapshot gone without its audit entry).
    """
    planned = {d.snapshot.ref: pygit2.Oid(hex=d.snapshot.tag_oid) for d in the_plan.removed}
    purge = the_plan.options.purge
    memo: dict[str, pygit2.Oid] = {}
    deleted: list[str] = []

    def compute(current: RefValues) -> RefValues:
        nonlocal deleted
        deleted = sorted(ref for ref, tag in planned.items() if current[ref] == tag)
        if not deleted:
            return {}
        tags = [str(planned[ref]) for ref in deleted]
        old_notes = current[NOTES_REF]
        if purge:
            new_notes = erased_notes(repo, old_notes, frozenset(tags), memo)
        else:
            new_notes = notes.commit_on(
                repo,
                old_notes,
                dict.fromkeys(tags, _dropped),
                op.identity,
                "Notes removed by 'govsnap'",
            )
        ids = [ref[len(SNAPSHOT_REF_PREFIX) :] for ref in deleted]
        entry = _audit_entry(op, the_plan, ids)
        return {
            **dict.fromkeys(deleted, None),
            NOTES_REF: new_notes,
            AUDIT_REF: entry.commit_on(current[AUDIT_REF]),
        }

    names = [AUDIT_REF, NOTES_REF, *planned]
    update_refs(repo, names, compute, message="govsnap: purge" if purge else "govsnap: prune")
    return deleted


def _dropped(_current: notes.JSONObject | None) -> None:
    """A notes mutation removing the note."""
    return None


def authorize(repo: Repo, the_plan: PrunePlan) -> None:
    """Raise CheckFailed unless the trust policy, when one is committed, lets this clone's
    signing key prune every snapshot the plan removes."""
    removed = [d.snapshot for d in the_plan.removed]
    if removed:
        _require_right(repo, removed, "prune", "nothing removed")


def execute(repo: Repo, the_plan: PrunePlan, *, authorized: bool = False) -> PruneResult:
    """Carry out a plan: check the trust policy allows it (unless `authorized` says the
    caller did), delete refs, notes and append the audit entry (one transaction), then
    run `git gc`."""
    name = "purge" if the_plan.options.purge else "prune"
    removing = f"{name}: removing {len(the_plan.removed)} snapshot(s)"
    with audit.operation(repo, name) as op, progress.task(removing) as step:
        return _execute(repo, the_plan, op, authorized, step)


def _execute(
    repo: Repo, the_plan: PrunePlan, op: audit.Operation, authorized: bool, step: progress.Task
) -> PruneResult:
    options = the_plan.options
    bytes_before = objects_size(repo)
    planned = {d.snapshot.ref for d in the_plan.removed}
    op.place(*(d.snapshot.environment for d in the_plan.removed))
    if planned and not authorized:
        authorize(repo, the_plan)
    deleted = _remove(repo, the_plan, op) if planned else []
    vanished = sorted(planned - set(deleted))
    removed_ids = tuple(ref[len(SNAPSHOT_REF_PREFIX) :] for ref in deleted)
    if deleted:
        _drop_reflogs(repo, deleted)
        if options.purge:
            from govsnap.digest import DigestCache

            # The cache records the SHA-256 of every blob it hashed: a digest of purged
            # content must not outlive it.
            DigestCache.for_repo(repo).reset()
    gc_mode: Literal["grace", "now", "skipped"] = "skipped"
    prune_expire = None
    if options.gc:
        step.phase("reclaiming space (git gc)")
    try:
        if options.gc and options.now:
            # --prune=now expires every unreachable object at once, including those a
            # concurrent govsnap wrote but has not put on a ref yet: they hold the shared
            # side of this lock until they have (objects.writing).
            with collecting(repo):
                if options.purge:
                    # The rewritten notes commits stay reachable from the notes reflog.
                    repo.git_cmd("reflog", "expire", "--expire-unreachable=now", NOTES_REF)
                repo.git_cmd("gc", "--quiet", "--prune=now")
            gc_mode = "now"
        elif options.gc:
            repo.git_cmd("gc", "--quiet")
            gc_mode = "grace"
            prune_expire = repo.config_str("gc.pruneExpire", DEFAULT_PRUNE_EXPIRE)
    except EnvironmentProblem as exc:
        raise EnvironmentProblem(
            f"removed {len(removed_ids)} snapshot(s), then {exc.message}; "
            "run git gc yourself to reclaim the space"
        ) from exc
    return PruneResult(
        plan=the_plan,
        removed=removed_ids,
        vanished=tuple(ref[len(SNAPSHOT_REF_PREFIX) :] for ref in vanished),
        bytes_before=bytes_before,
        bytes_after=objects_size(repo),
        gc=gc_mode,
        prune_expire=prune_expire,
        seconds=op.seconds,
    )


def _audit_entry(
    op: audit.Operation, the_plan: PrunePlan, removed: Sequence[str]
) -> audit.EntryWriter:
    """Return the writer of the audit entry of a prune (or purge) that removed `removed`."""
    options = the_plan.options
    total = len(the_plan.decisions)
    if options.purge:
        summary = f"purged {len(removed)} snapshot(s) from refs, notes history and objects"
    else:
        summary = f"removed {len(removed)} of {total} snapshot(s): {the_plan.describe()}"
    places = {d.snapshot.id: d.snapshot.environment for d in the_plan.removed}
    arguments: dict[str, Any] = {
        "policy": the_plan.policy.arguments() if the_plan.policy else None,
        "policy_source": the_plan.source,
        "safety_policy": (
            the_plan.safety_policy.arguments()
            if the_plan.safety_policy and the_plan.has_safety
            else None
        ),
        "ids": list(options.ids),
        "environment": options.environment,
        "group_by": options.group_by,
        "now": options.now,
        "gc": options.gc,
        "purge": options.purge,
    }
    # Signed with the entry: where each snapshot was, so that whoever acts on the entry
    # (push --prune, a server) checks the signer's right there.
    extra = {"environments": {ident: places.get(ident, "*") for ident in removed}}
    return op.writer(op.entry(summary, snapshots=removed, arguments=arguments, extra=extra))


def _require_right(repo: Repo, snaps: Sequence[Snapshot], operation: str, refusal: str) -> None:
    """Raise CheckFailed unless the trust policy, when one is committed, lets the key this
    clone signs with perform `operation` in the environment of each of `snaps` (one whose
    tag cannot be read needs the right in every environment, "*")."""
    policy = load_policy(repo)
    if policy is None:
        return
    environments = [s.payload.environment if s.payload else "*" for s in snaps]
    decision = decide_local(repo, policy, environments, operation)
    if not decision.allowed:
        raise CheckFailed(f"{refusal}: {decision.reason}")


# --- pinning -------------------------------------------------------------------------------


@dataclass(frozen=True)
class PinResult:
    """What pin / unpin did."""

    snapshot: str
    pinned: bool
    changed: bool  # with dry_run: would change
    dry_run: bool = False

    def as_json(self) -> dict[str, Any]:
        """Return what pin / unpin did as JSON-ready data."""
        return {
            "schema": schema_name("pin"),
            "id": self.snapshot,
            "pinned": self.pinned,
            "changed": self.changed,
            "dry_run": self.dry_run,
        }


def set_pinned(repo: Repo, name: str, pinned: bool, *, dry_run: bool = False) -> PinResult:
    """Record `pinned` in the note of the snapshot `name` designates, and audit it; a
    snapshot already in that state is left alone. With `dry_run`, check everything the
    change needs (the snapshot, the right to pin) and change nothing."""
    operation = "pin" if pinned else "unpin"
    with audit.operation(repo, operation, {"snapshot": name}) as op:
        snap = resolve(repo, name)
        if (snap.id in pinned_ids(repo)) == pinned:
            return PinResult(snap.id, pinned, False, dry_run)
        # Unpinning lets prune delete the snapshot, so it needs the same right as pinning.
        _require_right(repo, [snap], "pin", f"cannot {operation} {snap.id}")
        if dry_run:
            return PinResult(snap.id, pinned, True, dry_run)

        def mark(note: notes.JSONObject | None) -> notes.JSONObject:
            return {**(note or {}), "pinned": pinned}

        # The entry decides; the note's copy is for display. Both change together.
        entry = op.entry(
            f"{operation}ned snapshot {snap.id}",
            snapshots=[snap.id],
            extra={"environments": {snap.id: snap.environment}},
        )
        op.record(entry, notes={snap.tag_oid: mark})
        return PinResult(snap.id, pinned, True)
