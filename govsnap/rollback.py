"""Rollback: check a snapshot's tree out into the working tree and the index, HEAD
unmoved, after a safety snapshot of the current state that is the way back.

git does the checkout (worktree.py): the current state is captured into a temporary
index, and `git read-tree -m -u` turns it into the snapshot's tree, so filters, eol
conversion, sparse checkout and submodules behave as git makes them behave, and git
refuses to overwrite anything that changed since the capture. The safety snapshot
records, besides its tree, the index byte for byte and the bytes of every file git's
checkout would not reproduce (docs/format.md, "safety snapshots"), so the undo is exact.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal, NoReturn

import pygit2
from pygit2.enums import FileMode, RepositoryState

from govsnap import audit, safepaths, worktree
from govsnap.errors import (
    BareRepository,
    CheckFailed,
    CorruptObject,
    EnvironmentProblem,
    GovsnapError,
    UsageError,
)
from govsnap.objects import Trigger, validate_name, write_commit
from govsnap.repo import Identity, Repo
from govsnap.schemas import schema_name
from govsnap.store import (
    CreateOptions,
    Snapshot,
    create,
    default_environment,
    head_source,
    list_snapshots,
    resolve,
    snapshot_tree,
)
from govsnap.trust import (
    POLICY_PATH,
    TrustPolicy,
    decide_local,
    load_policy,
    parse_policy,
    policy_ref,
    require_trust,
)
from govsnap.worktree import Capture, Change, TreeEntry, fs_path

RESTORE_TRAILER = "Govsnap-Restore"
# How a rollback changes .govsnap/trust.toml, which it does only when told to.
PolicyChange = Literal["remove", "add", "change"]
_POLICY = POLICY_PATH.encode()

_IN_PROGRESS = {
    RepositoryState.MERGE: ("a merge", "git merge --abort"),
    RepositoryState.REVERT: ("a revert", "git revert --abort"),
    RepositoryState.REVERT_SEQUENCE: ("a revert", "git revert --abort"),
    RepositoryState.CHERRYPICK: ("a cherry-pick", "git cherry-pick --abort"),
    RepositoryState.CHERRYPICK_SEQUENCE: ("a cherry-pick", "git cherry-pick --abort"),
    RepositoryState.BISECT: ("a bisect", "git bisect reset"),
    RepositoryState.REBASE: ("a rebase", "git rebase --abort"),
    RepositoryState.REBASE_INTERACTIVE: ("a rebase", "git rebase --abort"),
    RepositoryState.REBASE_MERGE: ("a rebase", "git rebase --abort"),
    RepositoryState.APPLY_MAILBOX: ("git am", "git am --abort"),
    RepositoryState.APPLY_MAILBOX_OR_REBASE: ("git am or a rebase", "git am --abort"),
}


@dataclass(frozen=True)
class RollbackOptions:
    """What `rollback` was asked to do."""

    paths: tuple[str, ...] = ()
    dry_run: bool = False
    commit: bool = False
    verify: bool = True
    allow_policy_change: bool = False
    recurse_submodules: bool = False


@dataclass(frozen=True)
class RollbackPlan:
    """What a rollback writes, removes and leaves, by path relative to the work tree."""

    write: tuple[str, ...]
    remove: tuple[str, ...]
    leave: tuple[str, ...] = ()
    index_only: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        """Return the plan as JSON-ready data."""
        return {
            "write": list(self.write),
            "remove": list(self.remove),
            "leave": list(self.leave),
            "index_only": list(self.index_only),
        }


@dataclass(frozen=True)
class RollbackResult:
    """What a rollback did (or, with --dry-run, would do)."""

    snapshot: Snapshot
    plan: RollbackPlan
    dry_run: bool
    verified: bool
    paths: tuple[str, ...]
    index_source: str  # "snapshot tree" or "Govsnap-Index <commit>" (the recorded index)
    safety: Snapshot | None = None
    undo: str | None = None
    commit: str | None = None
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    blocked: str | None = None  # with --dry-run: why the rollback itself would refuse

    def as_json(self) -> dict[str, Any]:
        """Return the result as JSON-ready data."""
        return {
            "schema": schema_name("rollback"),
            "snapshot": self.snapshot.id,
            "dry_run": self.dry_run,
            "verified": self.verified,
            "paths": list(self.paths),
            "index_source": self.index_source,
            "safety_snapshot": None if self.safety is None else self.safety.id,
            "undo": self.undo,
            "commit": self.commit,
            "plan": self.plan.as_json(),
            "seconds": round(self.seconds, 6),
            "timings": {k: round(v, 6) for k, v in self.timings.items()},
            "warnings": list(self.warnings),
            "blocked": self.blocked,
        }

    def check(self) -> None:
        """Raise UsageError when the rollback a dry run planned would be refused."""
        if self.blocked is not None:
            raise UsageError(self.blocked)


Confirm = Callable[[Snapshot], bool]
# Told the safety snapshot and the undo command as soon as they exist, before the
# working tree is touched, so that a rollback killed half-way has printed its way back.
Announce = Callable[[Snapshot, str], None]


# --- checks that come before anything is written ---------------------------------------


def check_repository_state(repo: Repo) -> None:
    """Raise unless the repository has a working tree and no operation in progress."""
    if repo.is_bare:
        raise BareRepository(
            f"{repo.gitdir} is a bare repository: there is no working tree to roll back"
        )
    state = RepositoryState(repo.git.state())
    if state in _IN_PROGRESS:
        what, abort = _IN_PROGRESS[state]
        raise EnvironmentProblem(
            f"{what} is in progress: finish it or abort it ({abort}) before rolling back"
        )


def normalize_paths(workdir: Path, paths: Iterable[str]) -> tuple[str, ...]:
    """Return `paths` as sorted, distinct POSIX paths relative to the top of the work tree.

    Absolute paths must lie inside the work tree; relative ones are taken from its top.
    A path that covers another makes the inner one redundant, and "." means everything.
    """
    root = workdir.resolve()
    cleaned: set[str] = set()
    for raw in paths:
        if not raw.strip() or "\0" in raw:
            raise UsageError(f"invalid path {raw!r}")
        given = Path(raw)
        if given.is_absolute():
            absolute = Path(os.path.normpath(given))
            try:
                rel = absolute.relative_to(root)
            except ValueError:
                try:
                    rel = absolute.relative_to(workdir)
                except ValueError as exc:
                    raise UsageError(f"{raw} is outside the working tree {root}") from exc
            text = rel.as_posix()
        else:
            text = os.path.normpath(raw).replace(os.sep, "/")
        if text == ".":
            return ()
        parts = PurePosixPath(text).parts
        if not parts or parts[0] == ".." or ".git" in (p.lower() for p in parts):
            raise UsageError(f"{raw} is not a path inside the working tree")
        cleaned.add(text)
    ordered = sorted(cleaned)
    return tuple(p for p in ordered if not any(p.startswith(q + "/") for q in ordered))


def _entry(tree: pygit2.Tree, path: str) -> pygit2.Object | None:
    try:
        return tree[path]
    except KeyError:
        return None


def check_paths_exist(
    workdir: Path, target: pygit2.Tree, paths: tuple[str, ...], snapshot: Snapshot
) -> None:
    """Raise UsageError for a --paths entry found neither in the snapshot nor on disk."""
    for path in paths:
        if _entry(target, path) is None and not os.path.lexists(workdir / path):
            raise UsageError(f"{path} is neither in snapshot {snapshot.id} nor in the working tree")


def _verify(repo: Repo, snap: Snapshot, op: audit.Operation) -> TrustPolicy | None:
    """Raise CheckFailed unless the snapshot passes verification for `rollback` and, with
    a trust policy, the key this clone signs with may roll back in its environment;
    return the policy."""
    from govsnap.verify import verify_snapshot

    policy = load_policy(repo)
    report = verify_snapshot(repo, snap, operation="rollback", policy=policy)
    if not report.ok:
        failures = "; ".join(report.failures()[:3])
        _refuse(
            op,
            snap,
            "verification failed",
            failures,
            f"snapshot {snap.id} failed verification ({failures}); "
            "refusing to roll back to it (--no-verify overrides)",
        )
    if policy is not None:
        decision = decide_local(repo, policy, [_environment(repo, snap)], "rollback")
        if not decision.allowed:
            _refuse(
                op,
                snap,
                "not allowed",
                decision.reason,
                f"refusing to roll back to {snap.id}: {decision.reason}",
            )
    return policy


def _refuse(op: audit.Operation, snap: Snapshot, why: str, detail: str, message: str) -> NoReturn:
    """Record a refused rollback in the audit trail (it is a security event), then raise."""
    entry = op.entry(
        f"rollback to {snap.id} refused: {why}",
        snapshots=[snap.id],
        arguments={"verify": True},
        result=f"refused: {detail}",
    )
    problem = op.fail(entry)
    unrecorded = "" if problem is None else f" (the refusal is not in the audit trail: {problem})"
    raise CheckFailed(message + unrecorded)


def _environment(repo: Repo, snap: Snapshot) -> str:
    """Return the environment a rollback to `snap` acts in, which its safety snapshot
    belongs to as well (so the policy judges the undo as it judged the rollback)."""
    wanted = snap.payload.environment if snap.payload else ""
    try:
        return validate_name("environment", wanted)
    except UsageError:
        return default_environment(repo)


# --- what a safety snapshot records beyond its tree -------------------------------------


@dataclass(frozen=True)
class RecordedState:
    """The exact state a safety snapshot recorded besides its tree: the index and the
    files git's checkout would not write byte for byte."""

    index_commit: str
    index_tree: str  # the index as `git write-tree` wrote it (the Govsnap-Index commit's)
    index: worktree.IndexFile | None  # the index file; None: there was none (or legacy)
    legacy: bool  # made before govsnap recorded the index bytes: rebuild it from the tree
    raw_files: tuple[TreeEntry, ...] = ()
    restore_tree: str | None = None
    empty_directories: tuple[bytes, ...] = ()


def read_recorded_state(repo: Repo, snap: Snapshot) -> RecordedState | None:
    """Return what a pre-rollback snapshot recorded (Govsnap-Index and, since format 1
    with restore data, its Govsnap-Restore commit); None for any other snapshot."""
    if snap.payload is None or snap.payload.index_commit is None:
        return None
    index_commit = _commit(repo, snap.payload.index_commit, snap, "index commit")
    restore = None
    for line in index_commit.message.splitlines():
        key, _, value = line.partition(": ")
        if key == RESTORE_TRAILER:
            restore = value.strip()
    if restore is None:
        return RecordedState(str(index_commit.id), str(index_commit.tree_id), None, True)
    if restore not in {str(p) for p in index_commit.parent_ids}:
        raise CorruptObject(f"snapshot {snap.id}: {RESTORE_TRAILER} is not a parent of its index")
    tree = _commit(repo, restore, snap, "restore commit").tree
    data: bytes | None = None
    mtime = 0
    raw: list[TreeEntry] = []
    empty: tuple[bytes, ...] = ()
    for entry in tree:
        if entry.name == "index" and isinstance(entry, pygit2.Blob):
            data = entry.data
        elif entry.name == "index-mtime" and isinstance(entry, pygit2.Blob):
            with contextlib.suppress(ValueError):
                mtime = int(entry.data.decode(errors="replace").strip())
        elif entry.name == "empty-directories" and isinstance(entry, pygit2.Blob):
            empty = tuple(p for p in entry.data.split(b"\0") if p)
        elif entry.name == "worktree" and entry.type_str == "tree":
            raw = [
                TreeEntry(e.path.removeprefix(b"worktree/"), e.mode, e.oid)
                for e in worktree.tree_entries(repo, str(tree.id), [b"worktree"])
            ]
    return RecordedState(
        str(index_commit.id),
        str(index_commit.tree_id),
        None if data is None else worktree.IndexFile(data, mtime),
        False,
        tuple(raw),
        str(tree.id),
        empty,
    )


def _commit(repo: Repo, oid: str, snap: Snapshot, what: str) -> pygit2.Commit:
    try:
        obj = repo.git[oid]
    except (KeyError, ValueError, pygit2.GitError) as exc:
        raise CorruptObject(f"snapshot {snap.id}: {what} {oid} is missing") from exc
    if not isinstance(obj, pygit2.Commit):
        raise CorruptObject(f"snapshot {snap.id}: {what} {oid} is not a commit")
    return obj


def _check_recorded_index(repo: Repo, index: Path, snap: Snapshot) -> None:
    """Raise UnsafeTree when a recorded index names a path git would refuse: the bytes
    come from a snapshot, which may be hostile when --no-verify let it through."""
    _check_paths(worktree.tracked_paths(repo, index), snap, "index")


def _check_paths(paths: Iterable[bytes], snap: Snapshot, what: str) -> None:
    """Raise UnsafeTree naming the first of `paths` (recorded by a snapshot) that holds
    a component git's checkout would refuse (each distinct name is judged once)."""
    judged: dict[bytes, str | None] = {}
    for path in sorted(paths):
        for part in path.split(b"/"):
            if part not in judged:
                judged[part] = safepaths.unsafe_name(part, FileMode.TREE)
            reason = judged[part]
            if reason is not None:
                shown = path.decode(errors="backslashreplace")
                raise safepaths.UnsafeTree(
                    f"refusing to restore the {what} recorded by snapshot {snap.id}: "
                    f"{shown!r}: {reason}"
                )


def _record(
    repo: Repo,
    identity: Identity,
    target: Snapshot,
    capture: Capture,
    raw: Sequence[TreeEntry],
    empty: Sequence[bytes],
) -> str:
    """Write the Govsnap-Index commit of a safety snapshot and return it: its tree is the
    index as `git write-tree` writes it, its parents HEAD (as `git stash` does) and the
    restore commit, whose tree holds `index` (the index file's bytes), `index-mtime`,
    `worktree/<path>` (the bytes and mode of each file git's checkout would not
    reproduce) and `empty-directories` (the empty directories the rollback fills, which
    git's checkout of the undo would remove)."""
    if capture.original is None:
        index_tree = worktree.build_tree(repo, [])
    else:
        with worktree.scratch_index(repo, capture.original.data) as copy:
            try:
                index_tree = worktree.write_tree(repo, copy)
            except EnvironmentProblem as exc:
                raise EnvironmentProblem(
                    f"cannot record the index ({exc.message}); resolve its conflicts first "
                    "(git status); nothing was changed"
                ) from exc
    entries = [TreeEntry(b"worktree/" + e.path, e.mode, e.oid) for e in raw]
    if capture.original is not None:
        blob = repo.git.create_blob(capture.original.data)
        entries.append(TreeEntry(b"index", 0o100644, str(blob)))
        # git judges an entry "racily clean" by comparing its file's time with the index
        # file's: the restored index gets its old time back (see worktree.IndexFile).
        stamp = repo.git.create_blob(f"{capture.original.mtime_ns}\n".encode())
        entries.append(TreeEntry(b"index-mtime", 0o100644, str(stamp)))
    if empty:
        listing = repo.git.create_blob(b"".join(p + b"\0" for p in empty))
        entries.append(TreeEntry(b"empty-directories", 0o100644, str(listing)))
    restore_tree = worktree.build_tree(repo, entries)
    restore = write_commit(
        repo,
        restore_tree,
        [],
        identity,
        f"govsnap: exact restore data before rollback to snapshot {target.id}\n",
    )
    _, head = head_source(repo)
    parents = [str(head.id)] if head is not None else []
    message = (
        f"govsnap: index state before rollback to snapshot {target.id}\n\n"
        f"{RESTORE_TRAILER}: {restore}\n"
    )
    return str(write_commit(repo, index_tree, [*parents, str(restore)], identity, message))


# --- the plan -------------------------------------------------------------------------


@dataclass(frozen=True)
class Prepared:
    """A rollback worked out against a capture: from which tree to which, what changes,
    what is left alone, and what the safety snapshot must record besides its tree."""

    current: str  # the captured tree, less what the rollback must leave alone
    goal: str  # the tree the working tree becomes
    changes: tuple[Change, ...]
    protected: tuple[bytes, ...]
    policy_change: PolicyChange | None

    def plan(self, leave: Iterable[bytes] = (), index_only: Iterable[bytes] = ()) -> RollbackPlan:
        """Return the plan as paths for people."""
        write = sorted(fs_path(c.path) for c in self.changes if c.status != "D")
        remove = sorted(fs_path(c.path) for c in self.changes if c.status == "D")
        return RollbackPlan(
            tuple(write),
            tuple(remove),
            tuple(sorted({fs_path(p) for p in (*self.protected, *leave)} - set(write))),
            tuple(sorted(fs_path(p) for p in index_only)),
        )


def _prepare(repo: Repo, capture: Capture, target: str, paths: Sequence[bytes]) -> Prepared:
    """Work out the transition from the captured state to `target` (below `paths`).

    Untracked files are removed where the target has none, except what git's own
    commands would keep: files the target's ignore rules ignore (so rolling back to a
    safety snapshot keeps a file that was ignored when it was taken even if the rollback
    being undone removed the rule), anything under the hooks directory (`govsnap hooks
    install` puts its scripts there), and nested repositories. Those are dropped from
    the temporary index, so read-tree leaves them alone.
    """
    goal = target if not paths else worktree.graft(repo, capture.tree, target, paths)
    changes = worktree.diff_trees(repo, capture.tree, goal)
    removed = [c for c in changes if c.status == "D"]
    protected: list[bytes] = []
    if removed:
        tracked: set[bytes] = set()
        if capture.index_readable:
            tracked = worktree.tracked_paths(repo, worktree.user_index(repo))
        untracked = [c for c in removed if c.path not in tracked]
        hooks = worktree.hooks_prefix(repo)
        ignored = worktree.ignored_by_tree(repo, goal, [c.path for c in untracked])
        protected = [
            c.path
            for c in untracked
            if c.old_mode == worktree.GITLINK
            or c.path in ignored
            or (hooks is not None and worktree.covered(c.path, [hooks]))
        ]
    current = capture.tree
    if protected:
        worktree.splice_index(repo, capture.index, None, protected)
        current = worktree.write_tree(repo, capture.index)
        changes = [c for c in changes if c.path not in set(protected)]
    policy = next((c for c in changes if c.path == _POLICY), None)
    change: PolicyChange | None = None
    if policy is not None:
        change = "remove" if policy.status == "D" else "add" if policy.status == "A" else "change"
    return Prepared(current, goal, tuple(changes), tuple(protected), change)


def _committed_tree(repo: Repo, target: str, paths: Sequence[bytes]) -> str:
    """Return the tree `--commit` commits: the snapshot's, or HEAD's with `paths` from it."""
    _, head = head_source(repo)
    if not paths:
        return target
    return worktree.graft(repo, str(head.tree_id) if head else None, target, paths)


def _policy_change(
    repo: Repo, prepared: Prepared, options: RollbackOptions, committed: str | None
) -> PolicyChange | None:
    """Return how the rollback would change `.govsnap/trust.toml` (in the working tree, or
    in the commit --commit makes), or None."""
    if prepared.policy_change is not None:
        return prepared.policy_change
    if committed is None:
        return None
    _, head = head_source(repo)
    before = _blob_at(repo, str(head.tree_id)) if head else None
    after = _blob_at(repo, committed)
    if before == after:
        return None
    return "remove" if after is None else "add" if before is None else "change"


def _blob_at(repo: Repo, tree: str) -> str | None:
    found = worktree.tree_entries(repo, tree, [_POLICY])
    return found[0].oid if found else None


def _policy_refusal(change: PolicyChange) -> str:
    return (
        f"this rollback would {change} the trust policy {POLICY_PATH}: refusing without "
        "--allow-policy-change (nothing was changed)"
    )


def _undo_command(
    safety_id: str, options: RollbackOptions, policy_change: PolicyChange | None
) -> str:
    """Return the command that undoes the rollback, with the options it needs."""
    words = ["govsnap", "rollback", safety_id]
    if policy_change is not None:
        words.append("--allow-policy-change")
    if not options.verify:
        # The rollback itself was not verified; its undo, a snapshot of the state the
        # user had, is restored under the same explicit choice.
        words.append("--no-verify")
    return " ".join(words)


def _check_undo(
    repo: Repo,
    snap: Snapshot,
    options: RollbackOptions,
    policy: TrustPolicy | None,
    committed: str | None,
    policy_change: PolicyChange | None,
) -> None:
    """Raise UsageError before anything is written when the undo this rollback would
    print could not be honoured: its safety snapshot, signed by whoever rolls back, must
    pass the verification a rollback to it will run.

    The rule grants nothing: the undo is judged by the same policy, with the same
    signer, as any rollback. Only a `--no-verify` rollback prints a `--no-verify` undo,
    which needs no right the user did not just use.
    """
    if not options.verify:
        return
    after = policy
    if committed is not None and policy_change is not None and _reads_policy_at_head(repo):
        # --commit changes the policy HEAD carries: the undo is judged by the new one.
        blob = _blob_at(repo, committed)
        after = None if blob is None else _parse(repo, blob)
    environment = _environment(repo, snap)
    if after is None:
        if require_trust(repo) and policy is not None:
            raise UsageError(
                f"refusing to roll back to {snap.id}: its undo could not be honoured: the "
                f"commit would leave no trust policy to verify the safety snapshot with"
            )
        return
    # The rollback's own check covered the right to roll back under an unchanged policy.
    operations = ("create",) if after is policy else ("create", "rollback")
    for operation in operations:
        decision = decide_local(repo, after, [environment], operation)
        if not decision.allowed:
            raise UsageError(
                f"refusing to roll back to {snap.id}: its undo could not be honoured: the "
                f"safety snapshot would be signed by the key you sign with, and the trust "
                f"policy {after.source} refuses it ({decision.reason})"
            )


def _reads_policy_at_head(repo: Repo) -> bool:
    """Return True when the trust policy is read from the commit `--commit` replaces:
    HEAD, or the branch HEAD names."""
    ref = policy_ref(repo)
    head = repo.git.references.get("HEAD")
    return ref == "HEAD" or (head is not None and head.target == ref)


def _parse(repo: Repo, blob: str) -> TrustPolicy:
    obj = repo.git[blob]
    assert isinstance(obj, pygit2.Blob)
    return parse_policy(obj.data, f"the committed rollback:{POLICY_PATH}")


# --- the safety snapshot -------------------------------------------------------------


def _unreproduced(repo: Repo, capture: Capture, changes: Sequence[Change]) -> list[TreeEntry]:
    """Return (path, disk mode, blob of the disk bytes) for each file the rollback
    changes or removes whose bytes or mode git's checkout of the captured blob would not
    reproduce: eol conversion (an LF file under core.autocrlf=true), filters that do not
    round-trip, an exec bit core.fileMode=false does not record, and, in a sparse
    checkout, any (git would not write back those outside the cone)."""
    root = os.fsencode(repo.workdir)
    # Only files on disk have bytes to keep (skip-worktree entries have none).
    candidates = [
        c
        for c in changes
        if c.old_mode in worktree.REGULAR
        and stat.S_ISREG(worktree.lstat_mode(root + b"/" + c.path))
    ]
    if not candidates:
        return []
    paths = [c.path for c in candidates]
    converted = set(worktree.converted_paths(repo, capture.index, paths))
    expected = worktree.would_write(repo, capture.index, [p for p in paths if p in converted])
    file_mode = repo.config_bool("core.fileMode", True)
    # In a sparse checkout git's checkout of the undo writes nothing outside the cone,
    # and which paths lie outside it is git's to decide: every file there is kept.
    sparse = set(paths) if repo.config_bool("core.sparseCheckout", False) else set()
    found: list[TreeEntry] = []
    for change in candidates:
        full = root + b"/" + change.path
        mode = worktree.lstat_mode(full)
        if not stat.S_ISREG(mode):
            continue
        executable = bool(mode & stat.S_IXUSR)
        data: bytes | None = None
        differs = change.path in sparse
        if not file_mode and executable != (change.old_mode == 0o100755):
            differs = True
        if not differs and change.path in converted:
            with open(full, "rb") as fh:
                data = fh.read()
            differs = expected.get(change.path) != data
        if differs:
            if data is None:
                with open(full, "rb") as fh:
                    data = fh.read()
            blob = repo.git.create_blob(data)
            found.append(TreeEntry(change.path, 0o100755 if executable else 0o100644, str(blob)))
    return found


def _in_the_way(repo: Repo, changes: Sequence[Change]) -> list[TreeEntry]:
    """Return (path, mode, blob) of what the capture left out (ignored files) but git's
    checkout will overwrite or remove to write the target: git treats ignored files as
    expendable, the undo does not."""
    gone = {c.path for c in changes if c.status == "D"}
    added = [c.path for c in changes if c.status == "A"]
    root = os.fsencode(repo.workdir)
    found: list[TreeEntry] = []
    for path in worktree.uncaptured_in_the_way(repo.workdir, added, gone):
        full = root + b"/" + path
        mode = worktree.lstat_mode(full)
        if stat.S_ISLNK(mode):
            found.append(
                TreeEntry(path, worktree.SYMLINK, str(repo.git.create_blob(os.readlink(full))))
            )
        elif stat.S_ISREG(mode):
            with open(full, "rb") as fh:
                blob = repo.git.create_blob(fh.read())
            found.append(TreeEntry(path, 0o100755 if mode & stat.S_IXUSR else 0o100644, str(blob)))
    return found


def _take_safety_snapshot(
    repo: Repo,
    op: audit.Operation,
    target: Snapshot,
    capture: Capture,
    raw: Sequence[TreeEntry],
    empty: Sequence[bytes],
) -> Snapshot:
    """Snapshot the captured working tree, the index, `raw` and `empty`; raise on failure."""
    try:
        index_commit = (
            _record(repo, op.identity, target, capture, raw, empty)
            if capture.index_readable
            else None
        )
        options = CreateOptions(
            trigger=Trigger.PRE_ROLLBACK,
            environment=_environment(repo, target),
            message=f"Safety snapshot taken before rolling back to snapshot {target.id}.",
            index_commit=index_commit,
            tree=capture.tree,
            audit_context={"rollback_to": target.id},
        )
        return create(repo, options).snapshot
    except GovsnapError as exc:
        raise type(exc)(
            f"cannot take the safety snapshot, so nothing was changed: {exc.message}"
        ) from exc


# --- writing --------------------------------------------------------------------------


def _write_raw(repo: Repo, files: Iterable[TreeEntry]) -> None:
    """Write recorded files byte for byte over what the checkout wrote."""
    for entry in files:
        blob = repo.git[entry.oid]
        assert isinstance(blob, pygit2.Blob)
        worktree.write_raw(repo.workdir, entry.path, blob.data, entry.mode)


def _final_index(
    repo: Repo,
    capture: Capture,
    recorded: RecordedState | None,
    recorded_index: Path | None,
    paths: Sequence[bytes],
    scratch: Path,
) -> Path | None:
    """Return the index file to install (None: no index at all), built in `scratch` where
    the capture's own does not serve."""
    if not paths and recorded is None:
        return capture.index  # read-tree made it: the target's entries, stat data fresh
    if not paths:
        if recorded_index is None:
            return None
        shutil.copy2(recorded_index, scratch)
    else:
        if capture.original is not None and capture.index_readable:
            capture.original.copy_to(scratch)
        else:
            worktree.git(repo, "read-tree", "--empty", index=scratch)
        worktree.splice_index(
            repo, scratch, capture.index if recorded is None else recorded_index, paths
        )
    worktree.refresh(repo, scratch)
    return scratch


def _commit_rollback(repo: Repo, snap: Snapshot, tree: str, safety: Snapshot) -> str:
    """Commit `tree` on the current branch (or detached HEAD) by compare-and-swap."""
    _, head = head_source(repo)
    message = (
        f"Roll back to snapshot {snap.id}\n\n"
        f"Restores the state recorded by govsnap snapshot {snap.id}"
        f"{f' ({snap.payload.summary})' if snap.payload else ''}.\n"
        f"The state before this rollback is safety snapshot {safety.id}.\n"
    )
    args = ["commit-tree", tree, "-F", "-"]
    if head is not None:
        args[2:2] = ["-p", str(head.id)]
    new = repo.git_cmd(*args, input=message.encode()).stdout.decode().strip()
    old = str(head.id) if head is not None else "0" * 40
    # update-ref follows HEAD to the branch and refuses if it moved meanwhile.
    repo.git_cmd("update-ref", "-m", f"govsnap rollback to {snap.id}", "HEAD", new, old)
    return new


# --- the operation: a plan, then its application ----------------------------------------


@dataclass(frozen=True)
class Plan:
    """A rollback decided before the working tree is read for it: the snapshot, verified
    and its trees found safe to check out, and what it restores."""

    snapshot: Snapshot
    tree: str  # the snapshot's tree
    paths: tuple[str, ...]  # --paths, relative to the top of the work tree
    recorded: RecordedState | None  # what a safety snapshot recorded besides its tree
    policy: TrustPolicy | None  # the trust policy the rollback was verified against
    timings: dict[str, float]

    @property
    def raw_paths(self) -> list[bytes]:
        """Return `paths` as git names them."""
        return [os.fsencode(p) for p in self.paths]

    @property
    def index_source(self) -> str:
        """Return where the restored index comes from, for people."""
        if self.recorded is None:
            return "snapshot tree"
        return f"Govsnap-Index {self.recorded.index_commit}"


def rollback(
    repo: Repo,
    name: str,
    options: RollbackOptions,
    confirm: Confirm | None = None,
    announce: Announce | None = None,
) -> RollbackResult:
    """Restore snapshot `name` into the working tree and index, HEAD unmoved.

    Order: plan (refuse in a bare repository or mid-merge; resolve; verify; refuse unsafe
    trees); with `dry_run`, say what the plan would do and change nothing; else ask
    `confirm` and apply it (lock the index; capture; refuse a policy change or an undo
    that could not be honoured; take the safety snapshot and `announce` it; only then
    write).
    """
    with audit.operation(repo, "rollback") as op:
        plan = make_plan(repo, name, options, op)
        if options.dry_run:
            return _dry_run(repo, plan, options, op)
        if confirm is not None and not confirm(plan.snapshot):
            raise UsageError("rollback cancelled; nothing was changed")
        return apply(repo, plan, options, op, announce)


def make_plan(repo: Repo, name: str, options: RollbackOptions, op: audit.Operation) -> Plan:
    """Return the plan of a rollback to snapshot `name`; raise (recording a refusal in the
    audit trail) when it must not happen. Writes no file, index or ref."""
    timings: dict[str, float] = {}
    check_repository_state(repo)
    workdir = repo.workdir
    snap = resolve(repo, name, list_snapshots(repo))
    target = snapshot_tree(repo, snap)
    paths = normalize_paths(workdir, options.paths)
    check_paths_exist(workdir, target, paths, snap)
    recorded = read_recorded_state(repo, snap)
    if options.commit and recorded is not None:
        raise UsageError(
            f"snapshot {snap.id} records a staged index state (it is a safety snapshot): "
            "restore it without --commit"
        )
    # A partial clone fetches the blobs verification and the checkout read, as git would.
    worktree.fetch_missing(repo, [str(target.id)])

    mark = time.monotonic()
    policy = _verify(repo, snap, op) if options.verify else None
    timings["verify"] = time.monotonic() - mark

    mark = time.monotonic()
    safepaths.check_tree(repo, target.id, f"snapshot {snap.id}")
    if recorded is not None:
        safepaths.check_tree(repo, recorded.index_tree, f"the index recorded by snapshot {snap.id}")
        if recorded.restore_tree is not None:
            safepaths.check_tree(
                repo, recorded.restore_tree, f"the files recorded by snapshot {snap.id}"
            )
    timings["check_tree"] = time.monotonic() - mark
    return Plan(snap, str(target.id), paths, recorded, policy, timings)


def _result(
    plan: Plan, changes: RollbackPlan, options: RollbackOptions, op: audit.Operation, **done: Any
) -> RollbackResult:
    """Return what a rollback did (`done`: its safety snapshot, undo, commit, warnings,
    blocked), or with --dry-run would do."""
    return RollbackResult(
        snapshot=plan.snapshot,
        plan=changes,
        dry_run=options.dry_run,
        verified=options.verify,
        paths=plan.paths,
        index_source=plan.index_source,
        seconds=op.seconds,
        timings=plan.timings,
        **done,
    )


@dataclass(frozen=True)
class _Transition:
    """What applying a plan to the captured state does, worked out before anything is
    written: the transition, the tree --commit commits, how the policy file changes."""

    prepared: Prepared
    committed: str | None
    policy_change: PolicyChange | None
    refusal: str | None  # why the rollback must not happen: it changes the trust policy
    # unasked, or its undo could not be honoured


def _transition(repo: Repo, plan: Plan, options: RollbackOptions, capture: Capture) -> _Transition:
    """Return the transition from the captured state to the plan's."""
    paths = plan.raw_paths
    prepared = _prepare(repo, capture, plan.tree, paths)
    committed = _committed_tree(repo, plan.tree, paths) if options.commit else None
    change = _policy_change(repo, prepared, options, committed)
    refusal = None
    if change is not None and not options.allow_policy_change:
        refusal = _policy_refusal(change)
    else:
        try:
            _check_undo(repo, plan.snapshot, options, plan.policy, committed, change)
        except UsageError as exc:
            refusal = exc.message
    return _Transition(prepared, committed, change, refusal)


def apply(
    repo: Repo,
    plan: Plan,
    options: RollbackOptions,
    op: audit.Operation,
    announce: Announce | None = None,
) -> RollbackResult:
    """Carry out `plan`: capture the working tree under the index lock, take the safety
    snapshot (and `announce` it), then let git check the target out, write what the
    snapshot recorded byte for byte, install the index, and commit with --commit."""
    snap, paths, recorded = plan.snapshot, plan.raw_paths, plan.recorded
    timings = plan.timings
    workdir = repo.workdir
    with (
        worktree.IndexLock(repo) as lock,
        worktree.captured(repo, safety=True) as capture,
        worktree.scratch_index(repo) as scratch,
        worktree.scratch_index(repo) as recorded_index,
    ):
        warnings = list(capture.warnings)
        if lock.took_over:
            warnings.append("took over the index lock a killed govsnap left behind")
        mark = time.monotonic()
        step = _transition(repo, plan, options, capture)
        if step.refusal is not None:
            raise UsageError(step.refusal)
        prepared = step.prepared
        worktree.check_blobs(
            repo,
            (
                (c.path, c.new_oid)
                for c in prepared.changes
                if c.status != "D" and c.new_mode != worktree.GITLINK
            ),
        )
        if recorded is not None:
            _install_recorded_index(repo, recorded, recorded_index, snap)
        raw = _unreproduced(repo, capture, prepared.changes)
        recorded_paths = {e.path for e in raw}
        raw += [e for e in _in_the_way(repo, prepared.changes) if e.path not in recorded_paths]
        empty = worktree.empty_directories(
            workdir, (c.path for c in prepared.changes if c.status != "D")
        )
        timings["plan"] = time.monotonic() - mark
        if not capture.index_readable and capture.original is not None:
            aside = repo.state_dir / f"index.unreadable.{time.time_ns()}"
            aside.write_bytes(capture.original.data)
            warnings.append(
                f"the index was unreadable: it was kept as {aside} and rebuilt from the snapshot"
            )

        mark = time.monotonic()
        safety = _take_safety_snapshot(repo, op, snap, capture, raw, empty)
        undo = _undo_command(safety.id, options, step.policy_change)
        if announce is not None:
            announce(safety, undo)
        timings["safety_snapshot"] = time.monotonic() - mark

        arguments = {
            "paths": list(plan.paths),
            "commit": options.commit,
            "verify": options.verify,
            "safety_snapshot": safety.id,
        }
        mark = time.monotonic()
        commit = None
        try:
            warnings += worktree.transition(
                repo,
                capture.index,
                prepared.current,
                prepared.goal,
                recurse_submodules=options.recurse_submodules,
            )
            if recorded is not None:
                _write_raw(repo, (f for f in recorded.raw_files if worktree.covered(f.path, paths)))
                worktree.make_directories(
                    workdir,
                    (p for p in recorded.empty_directories if worktree.covered(p, paths)),
                )
            final = _final_index(
                repo,
                capture,
                recorded,
                None if recorded is not None and not recorded_index.exists() else recorded_index,
                paths,
                scratch,
            )
            lock.replace_index(final)
            timings["checkout"] = time.monotonic() - mark
            if step.committed is not None:
                mark = time.monotonic()
                commit = _commit_rollback(repo, snap, step.committed, safety)
                timings["commit"] = time.monotonic() - mark
        except Exception as exc:
            _failed(op, snap, safety, undo, arguments, exc)
    where = f" ({', '.join(plan.paths)})" if plan.paths else ""
    entry = op.entry(
        f"rolled back to {snap.id}{where}; safety snapshot {safety.id}",
        snapshots=[snap.id, safety.id],
        arguments={**arguments, "commit_oid": commit},
    )
    op.record(entry)
    return _result(
        plan,
        prepared.plan(),
        options,
        op,
        safety=safety,
        undo=undo,
        commit=commit,
        warnings=tuple(warnings),
    )


def _install_recorded_index(
    repo: Repo, recorded: RecordedState, into: Path, snap: Snapshot
) -> None:
    """Put the index a safety snapshot recorded into file `into` (left absent when there
    was no index), after checking it holds no path git would refuse."""
    if recorded.legacy:
        worktree.git(repo, "read-tree", recorded.index_tree, index=into)
    elif recorded.index is not None:
        recorded.index.copy_to(into)
        if not worktree.index_readable(repo, into):
            raise CorruptObject(f"snapshot {snap.id}: the recorded index does not parse")
    if into.exists():
        _check_recorded_index(repo, into, snap)
    _check_paths(recorded.empty_directories, snap, "directories")


def _failed(
    op: audit.Operation,
    snap: Snapshot,
    safety: Snapshot,
    undo: str,
    arguments: dict[str, Any],
    exc: Exception,
) -> NoReturn:
    """Report a rollback that stopped after the safety snapshot: whatever stopped it, the
    way back is the safety snapshot, so say so and record it (if the disk still takes an
    audit entry), rather than leave a half-written tree behind an internal error."""
    if isinstance(exc, GovsnapError):
        detail = exc.message
    elif isinstance(exc, OSError):
        detail = f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
    else:
        detail = f"{type(exc).__name__}: {exc}"
    entry = op.entry(
        f"rollback to {snap.id} failed",
        snapshots=[snap.id, safety.id],
        arguments=arguments,
        result=f"failed: {detail}",
    )
    problem = op.fail(entry)
    unrecorded = "" if problem is None else f" (the failure is not in the audit trail: {problem})"
    raise EnvironmentProblem(
        f"rollback to {snap.id} failed: {detail}; the previous state is safety snapshot "
        f"{safety.id}: undo with {undo}{unrecorded}"
    ) from exc


def _dry_run(
    repo: Repo, plan: Plan, options: RollbackOptions, op: audit.Operation
) -> RollbackResult:
    """Return what applying `plan` would do; writes no file, index or ref."""
    paths, recorded = plan.raw_paths, plan.recorded
    warnings: list[str] = []
    with worktree.captured(repo, safety=True) as capture:
        warnings += capture.warnings
        if not capture.index_readable:
            warnings.append(
                "the index is unreadable: a rollback would keep it aside and rebuild it"
            )
        step = _transition(repo, plan, options, capture)
    prepared = step.prepared
    blocked = None if step.refusal is None else step.refusal.replace(" (nothing was changed)", "")
    index_only: list[bytes] = []
    if capture.index_readable and worktree.user_index(repo).exists():
        reference = recorded.index_tree if recorded is not None else plan.tree
        args = ["--literal-pathspecs", "diff-index", "--cached", "--name-only", "-z", reference]
        if paths:
            args += ["--", *(fs_path(p) for p in paths)]
        touched = {c.path for c in prepared.changes}
        listed = worktree.git(repo, *args, index=worktree.user_index(repo))
        index_only = [p for p in listed.split(b"\0") if p and p not in touched]
    changes = prepared.plan(worktree.ignored_files(repo, paths), index_only)
    return _result(plan, changes, options, op, warnings=tuple(warnings), blocked=blocked)
