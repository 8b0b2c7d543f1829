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
from collections.abc import Callable, Iterable, Iterator, Sequence
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
from govsnap.repo import Identity, Repo, run_git
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
            rel = _inside(Path(os.path.normpath(given)), workdir, root)
            if rel is None:
                raise UsageError(f"{raw} is outside the working tree {root}")
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


def _inside(absolute: Path, workdir: Path, root: Path) -> Path | None:
    """Return an absolute path relative to the top of the work tree, None when it lies
    outside. The path may reach the work tree through symlinks (a symlinked checkout
    directory): as git does (abspath_part_inside_repo), the leading part whose real path
    is the work tree's is cut off, and what lies below it is never resolved (a symlink
    inside the work tree names itself)."""
    for base in (root, workdir):
        with contextlib.suppress(ValueError):
            return absolute.relative_to(base)
    for ancestor in [*reversed(absolute.parents), absolute]:
        if os.path.realpath(ancestor) == str(root):
            return absolute.relative_to(ancestor)
    return None


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
    # What the rollback wrote where nothing stood (the undo removes it again), and the
    # branch each submodule a recursive rollback moved was on.
    absent: tuple[TreeEntry, ...] = ()
    submodule_heads: tuple[SubmoduleHead, ...] = ()


@dataclass(frozen=True)
class SubmoduleHead:
    """Where a submodule's HEAD was before a recursive rollback detached it."""

    path: bytes
    ref: bytes  # the branch HEAD named (refs/heads/...), empty when it was detached
    commit: str

    def record(self) -> bytes:
        """Return the NUL-terminated fields stored in `submodule-heads`."""
        return self.path + b"\0" + self.ref + b"\0" + self.commit.encode() + b"\0"


def _parse_heads(data: bytes) -> tuple[SubmoduleHead, ...]:
    fields = data.split(b"\0")
    return tuple(
        SubmoduleHead(path, ref, commit.decode(errors="replace"))
        for path, ref, commit in zip(fields[0::3], fields[1::3], fields[2::3], strict=False)
        if path
    )


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
    absent: list[TreeEntry] = []
    empty: tuple[bytes, ...] = ()
    heads: tuple[SubmoduleHead, ...] = ()
    for entry in tree:
        if entry.name == "index" and isinstance(entry, pygit2.Blob):
            data = entry.data
        elif entry.name == "index-mtime" and isinstance(entry, pygit2.Blob):
            with contextlib.suppress(ValueError):
                mtime = int(entry.data.decode(errors="replace").strip())
        elif entry.name == "empty-directories" and isinstance(entry, pygit2.Blob):
            empty = tuple(p for p in entry.data.split(b"\0") if p)
        elif entry.name == "submodule-heads" and isinstance(entry, pygit2.Blob):
            heads = _parse_heads(entry.data)
        elif entry.name in ("worktree", "absent") and entry.type_str == "tree":
            prefix = entry.name.encode() + b"/"
            found = [
                TreeEntry(e.path.removeprefix(prefix), e.mode, e.oid)
                for e in worktree.tree_entries(repo, str(tree.id), [prefix[:-1]])
            ]
            (raw if entry.name == "worktree" else absent).extend(found)
    return RecordedState(
        str(index_commit.id),
        str(index_commit.tree_id),
        None if data is None else worktree.IndexFile(data, mtime),
        False,
        tuple(raw),
        str(tree.id),
        empty,
        tuple(absent),
        heads,
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
    absent: Sequence[TreeEntry] = (),
    heads: Sequence[SubmoduleHead] = (),
) -> str:
    """Write the Govsnap-Index commit of a safety snapshot and return it: its tree is the
    index as `git write-tree` writes it, its parents HEAD (as `git stash` does) and the
    restore commit, whose tree holds `index` (the index file's bytes), `index-mtime`,
    `worktree/<path>` (the bytes and mode of each file git's checkout would not
    reproduce), `empty-directories` (the empty directories the rollback fills or
    replaces, which git's checkout of the undo would not recreate), `absent/<path>` (what
    the rollback writes where nothing stood, for the undo to remove) and
    `submodule-heads` (the branch of each submodule a recursive rollback moves)."""
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
    entries += [TreeEntry(b"absent/" + e.path, e.mode, e.oid) for e in absent]
    if heads:
        listing = repo.git.create_blob(b"".join(h.record() for h in heads))
        entries.append(TreeEntry(b"submodule-heads", 0o100644, str(listing)))
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
    if options.recurse_submodules:
        # The submodules the rollback checked out go back only with the same flag.
        words.append("--recurse-submodules")
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
    round-trip, an exec bit core.fileMode=false does not record, a symlink under
    core.symlinks=false (git writes a file holding its target), and, in a sparse
    checkout, any (git would not write back those outside the cone)."""
    modes = worktree.PathModes(repo.workdir)
    if not repo.config_bool("core.symlinks", True):
        links = [
            c for c in changes if c.old_mode == worktree.SYMLINK and stat.S_ISLNK(modes(c.path))
        ]
    else:
        links = []
    found = [
        TreeEntry(
            c.path,
            worktree.SYMLINK,
            str(repo.git.create_blob(os.readlink(modes.root + b"/" + c.path))),
        )
        for c in links
    ]
    # Only files on disk have bytes to keep (skip-worktree entries have none).
    candidates = [
        c for c in changes if c.old_mode in worktree.REGULAR and stat.S_ISREG(modes(c.path))
    ]
    if not candidates:
        return found
    paths = [c.path for c in candidates]
    converted = set(worktree.converted_paths(repo, capture.index, paths))
    expected = worktree.would_write(repo, capture.index, [p for p in paths if p in converted])
    file_mode = repo.config_bool("core.fileMode", True)
    # In a sparse checkout git's checkout of the undo writes nothing outside the cone,
    # and which paths lie outside it is git's to decide: every file there is kept.
    sparse = set(paths) if repo.config_bool("core.sparseCheckout", False) else set()
    for change in candidates:
        mode = modes(change.path)
        executable = bool(mode & stat.S_IXUSR)
        data: bytes | None = None
        differs = change.path in sparse
        if not file_mode and executable != (change.old_mode == 0o100755):
            differs = True
        if not differs and change.path in converted:
            data = _read(modes.root, change.path)
            differs = expected.get(change.path) != data
        if differs:
            if data is None:
                data = _read(modes.root, change.path)
            blob = repo.git.create_blob(data)
            found.append(TreeEntry(change.path, 0o100755 if executable else 0o100644, str(blob)))
    return found


def _read(root: bytes, path: bytes) -> bytes:
    """Return the bytes of a file below the work tree, not through a symlink; raise
    EnvironmentProblem, before anything is written, when it cannot be read."""
    try:
        fd = os.open(root + b"/" + path, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise EnvironmentProblem(
            f"cannot read {worktree.shown(path)}, which the rollback would overwrite or "
            f"remove: {exc.strerror or exc}; nothing was changed"
        ) from exc


def _survey(
    repo: Repo,
    capture: Capture,
    prepared: Prepared,
    recorded: RecordedState | None,
    paths: Sequence[bytes],
) -> worktree.Obstacles:
    """Return what stands where the rollback writes beyond what the capture holds; raise
    UsageError, before anything is written, where writing would delete what no snapshot
    can hold: a nested repository or a `.git` directory git never captures (git's
    checkout refuses: "would lose untracked files"), a submodule with uncommitted work
    (the playbook promises it is never lost), an untracked hook script."""
    writes = [c for c in prepared.changes if c.status != "D"]
    if recorded is not None:
        # An undo writes the recorded files over what the checkout leaves there.
        written = {c.path for c in writes}
        writes += [
            Change("A", e.path, 0, e.mode, worktree.ZERO_OID, e.oid)
            for e in recorded.raw_files
            if worktree.covered(e.path, paths) and e.path not in written
        ]
    captured = {c.path for c in prepared.changes if c.status == "D"} | set(prepared.protected)
    found = worktree.survey(repo.workdir, writes, captured)
    for directory in found.repositories:
        reason = _repository_in_the_way(repo, capture, directory)
        if reason is not None:
            raise UsageError(reason)
    _check_hooks(repo, prepared)
    return found


def _repository_in_the_way(repo: Repo, capture: Capture, directory: bytes) -> str | None:
    """Return why the checkout must not delete or write into `directory`, which holds
    `.git`; None for a registered submodule whose work is all committed (its history
    stays in .git/modules, as after git's own checkout)."""
    where = worktree.shown(directory)
    tracked = capture.index_readable and any(
        e.path == directory and e.mode == worktree.GITLINK
        for e in worktree.index_entries(repo, worktree.user_index(repo), [directory])
    )
    if not tracked:
        return (
            f"refusing to roll back: {where}/.git stands where the snapshot writes (a nested "
            "repository, or a .git directory git never captures), and the rollback would "
            "delete it, which no snapshot can restore (git checkout refuses an untracked one: "
            f'"would lose untracked files"): move {where} out of the way, then roll back; '
            "nothing was changed"
        )
    full = repo.workdir / worktree.fs_path(directory)
    if (full / ".git").is_dir():
        return (
            f"refusing to roll back: the snapshot replaces submodule {where}, which keeps its "
            f"history in {where}/.git: run `git submodule absorbgitdirs {where}` first; "
            "nothing was changed"
        )
    # --no-optional-locks: status would otherwise refresh the submodule's index (a write).
    status = ["--no-optional-locks", "status", "--porcelain", "--ignored", "-uall", "-z"]
    proc = run_git(status, full, check=False)
    if proc.returncode != 0 or proc.stdout:
        return (
            f"refusing to roll back: the snapshot replaces submodule {where}, which holds "
            f"uncommitted work (`git -C {where} status --ignored`) the rollback would "
            "delete: commit it or move it away, then roll back; nothing was changed"
        )
    return None


def _check_hooks(repo: Repo, prepared: Prepared) -> None:
    """Raise UsageError when the rollback would overwrite an untracked file below the
    hooks directory (`govsnap hooks install` puts its scripts there): like untracked files
    git cannot capture, it is refused rather than silently switched."""
    candidates = [c.path for c in prepared.changes if c.status in ("M", "T")]
    hooks = worktree.hooks_prefix(repo) if candidates else None
    if hooks is None:
        return
    inside = [p for p in candidates if worktree.covered(p, [hooks])]
    if not inside:
        return
    tracked = {e.path for e in worktree.index_entries(repo, worktree.user_index(repo), inside)}
    for path in inside:
        if path not in tracked:
            raise UsageError(
                f"refusing to roll back: the snapshot has {worktree.shown(path)}, where an "
                f"untracked file of the hooks directory {worktree.shown(hooks)} stands "
                "(`govsnap hooks install` writes there): move it away or commit it, then "
                "roll back; nothing was changed"
            )


def _check_checkout(repo: Repo, capture: Capture, prepared: Prepared, recurse: bool) -> None:
    """Raise UsageError when git's checkout of the transition would refuse: `git
    read-tree -n` checks every path as the real checkout will, and writes nothing."""
    refusal = worktree.transition_refusal(
        repo, capture.index, prepared.current, prepared.goal, recurse_submodules=recurse
    )
    if refusal is None:
        return
    path = refusal.path
    if path is not None and refusal.kind == "not uptodate":
        skip, _assume = worktree.flagged_paths(repo, capture.index)
        if path in skip:
            where = worktree.shown(path)
            raise UsageError(
                f"refusing to roll back: {where} is marked skip-worktree and holds local "
                f'changes the snapshot would overwrite (git checkout refuses too: "your '
                f'local changes would be overwritten"): keep a copy, run `git update-index '
                f"--no-skip-worktree {where}`, commit or stash it, then roll back; nothing "
                "was changed"
            )
    raise UsageError(f"refusing to roll back: git's checkout refuses: {refusal.message}")


def _in_the_way(repo: Repo, keep: Sequence[bytes]) -> list[TreeEntry]:
    """Return (path, mode, blob) of what the capture left out (ignored files) but git's
    checkout will overwrite or remove to write the target: git treats ignored files as
    expendable, the undo does not. Raise EnvironmentProblem, before anything is written,
    for one that cannot be read."""
    root = os.fsencode(repo.workdir)
    found: list[TreeEntry] = []
    for path in keep:
        full = root + b"/" + path
        try:
            mode = os.lstat(full).st_mode
            if stat.S_ISLNK(mode):
                blob = repo.git.create_blob(os.readlink(full))
                found.append(TreeEntry(path, worktree.SYMLINK, str(blob)))
            elif stat.S_ISREG(mode):
                blob = repo.git.create_blob(_read(root, path))
                executable = 0o100755 if mode & stat.S_IXUSR else 0o100644
                found.append(TreeEntry(path, executable, str(blob)))
        except OSError as exc:
            raise EnvironmentProblem(
                f"cannot read {worktree.shown(path)}, which the rollback would overwrite or "
                f"remove: {exc.strerror or exc}; nothing was changed"
            ) from exc
    return found


def _removable(
    repo: Repo, recorded: RecordedState, paths: Sequence[bytes]
) -> tuple[list[bytes], list[bytes]]:
    """Return the paths the rollback being undone wrote where nothing stood that still
    hold what it wrote (the undo removes them), and those that changed since (the undo
    leaves them: it never removes a file the user changed)."""
    entries = [e for e in recorded.absent if worktree.covered(e.path, paths)]
    modes = worktree.PathModes(repo.workdir)
    present = [e for e in entries if stat.S_ISREG(modes(e.path)) or stat.S_ISLNK(modes(e.path))]
    if not present:
        return [], []
    files = [e.path for e in present if stat.S_ISREG(modes(e.path))]
    # As git add stores it (the checkout ran the smudge filter), or byte for byte.
    as_stored = worktree.hash_files(repo, files, filters=True)
    as_is = worktree.hash_files(repo, files)
    removable: list[bytes] = []
    changed: list[bytes] = []
    for entry in present:
        if stat.S_ISLNK(modes(entry.path)):
            target = os.readlink(modes.root + b"/" + entry.path)
            found = {str(pygit2.hash(target))}
        else:
            found = {as_stored[entry.path], as_is[entry.path]}
        (removable if entry.oid in found else changed).append(entry.path)
    return removable, changed


def _submodule_heads(repo: Repo, prepared: Prepared) -> list[SubmoduleHead]:
    """Return the branch and commit of each populated submodule a recursive checkout
    moves (it leaves them detached, as git does)."""
    heads: list[SubmoduleHead] = []
    for change in prepared.changes:
        if change.old_mode != worktree.GITLINK:
            continue
        full = repo.workdir / worktree.fs_path(change.path)
        if not (full / ".git").exists():
            continue
        commit = run_git(["rev-parse", "-q", "--verify", "HEAD"], full, check=False)
        ref = run_git(["symbolic-ref", "-q", "HEAD"], full, check=False)
        if commit.returncode == 0:
            heads.append(
                SubmoduleHead(change.path, ref.stdout.strip(), commit.stdout.decode().strip())
            )
    return heads


def _restore_submodule_heads(
    repo: Repo, heads: Iterable[SubmoduleHead], paths: Sequence[bytes]
) -> list[str]:
    """Put each submodule back on the branch it was on where the recursive checkout left
    it detached at that branch's commit; return a warning for each left detached."""
    warnings: list[str] = []
    for head in heads:
        if not head.ref or not worktree.covered(head.path, paths):
            continue
        full = repo.workdir / worktree.fs_path(head.path)
        ref = head.ref.decode(errors="replace")
        valid = (
            ref.startswith("refs/heads/")
            and run_git(["check-ref-format", ref], full, check=False).returncode == 0
        )
        now = run_git(["rev-parse", "-q", "--verify", "HEAD"], full, check=False)
        tip = run_git(["rev-parse", "-q", "--verify", f"{ref}^{{commit}}"], full, check=False)
        at = now.stdout.decode().strip()
        if valid and at == head.commit and tip.stdout.decode().strip() == head.commit:
            run_git(["symbolic-ref", "HEAD", ref], full, check=False)
        else:
            warnings.append(
                f"submodule {worktree.shown(head.path)} stays detached at {at[:12] or '?'}: "
                f"it was on {worktree.shown(head.ref)} at {head.commit[:12]}"
            )
    return warnings


def _remove_written(workdir: Path, paths: Iterable[bytes]) -> None:
    """Remove files and symlinks a rollback wrote where nothing stood, then the
    directories that leaves empty (as git's checkout removes what it empties)."""
    modes = worktree.PathModes(workdir)
    for path in paths:
        mode = modes(path)
        if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
            continue
        os.unlink(modes.root + b"/" + path)
        for parent in modes.parents(path):
            try:
                os.rmdir(modes.root + b"/" + parent)
            except OSError:
                break


def _take_safety_snapshot(
    repo: Repo, op: audit.Operation, target: Snapshot, capture: Capture, guard: Guard
) -> Snapshot:
    """Snapshot the captured working tree, the index and what `guard` keeps; raise on
    failure."""
    try:
        index_commit = (
            _record(
                repo,
                op.identity,
                target,
                capture,
                guard.raw,
                guard.empty,
                guard.absent,
                guard.heads,
            )
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
    except (OSError, pygit2.GitError) as exc:
        problem = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise EnvironmentProblem(
            f"cannot take the safety snapshot, so nothing was changed: {problem}"
        ) from exc


@dataclass(frozen=True)
class Guard:
    """What a rollback keeps, beyond the capture, so that its undo restores everything
    (worked out, and refused where it cannot be kept, before anything is written)."""

    raw: tuple[TreeEntry, ...]  # bytes git's checkout would not give back, or overwrites
    empty: tuple[bytes, ...]  # empty directories the checkout fills or replaces
    absent: tuple[TreeEntry, ...]  # what the checkout writes where nothing stood
    heads: tuple[SubmoduleHead, ...]  # branches of submodules a recursive checkout moves
    removable: tuple[bytes, ...]  # an undo: what the rollback wrote where nothing stood
    warnings: tuple[str, ...]


def _guard(
    repo: Repo,
    capture: Capture,
    prepared: Prepared,
    recorded: RecordedState | None,
    paths: Sequence[bytes],
    recurse: bool,
) -> Guard:
    """Return what the safety snapshot must keep besides the capture; raise UsageError
    where git's checkout would refuse or would delete what nothing can keep, and
    EnvironmentProblem for a file in the way that cannot be read."""
    found = _survey(repo, capture, prepared, recorded, paths)
    # Read first: git's checkout refuses what it cannot tell from untracked files, and
    # an unreadable one is better named as such.
    in_the_way = _in_the_way(repo, found.keep)
    _check_checkout(repo, capture, prepared, recurse)
    raw = _unreproduced(repo, capture, prepared.changes)
    kept = {e.path for e in raw}
    raw += [e for e in in_the_way if e.path not in kept]
    above = worktree.empty_directories(
        repo.workdir, (c.path for c in prepared.changes if c.status != "D")
    )
    warnings = [
        f"{worktree.shown(p)} is not a file, symlink or directory: the rollback removes it "
        "and its undo cannot recreate it"
        for p in found.lost
    ]
    removable: list[bytes] = []
    if recorded is not None:
        removable, changed = _removable(repo, recorded, paths)
        # What the capture holds and the checkout removes is in this undo's own safety
        # snapshot: only what stays is worth a word.
        removed = {c.path for c in prepared.changes if c.status == "D"}
        changed = [p for p in changed if p not in removed]
        warnings += [
            f"left {worktree.shown(p)}: the rollback being undone wrote it where nothing "
            "stood, and it changed since"
            for p in changed
        ]
    return Guard(
        tuple(raw),
        tuple(sorted({*above, *found.empty})),
        found.absent,
        tuple(_submodule_heads(repo, prepared)) if recurse else (),
        tuple(removable),
        tuple(warnings),
    )


def _restore_recorded(
    repo: Repo, recorded: RecordedState, guard: Guard, paths: Sequence[bytes], recurse: bool
) -> list[str]:
    """After the checkout of a safety snapshot: remove what the rollback being undone
    wrote where nothing stood, write the recorded files byte for byte, recreate the
    recorded empty directories and put submodules back on their branches; return
    warnings."""
    _remove_written(repo.workdir, guard.removable)
    _write_raw(repo, (f for f in recorded.raw_files if worktree.covered(f.path, paths)))
    worktree.make_directories(
        repo.workdir, (p for p in recorded.empty_directories if worktree.covered(p, paths))
    )
    if not recurse:
        return []
    return _restore_submodule_heads(repo, recorded.submodule_heads, paths)


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
    `confirm` and apply it (lock the index; capture; refuse a policy change, a checkout
    git refuses or an undo that could not be honoured; take the safety snapshot and
    `announce` it; only then write).
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


def apply(
    repo: Repo,
    plan: Plan,
    options: RollbackOptions,
    op: audit.Operation,
    announce: Announce | None = None,
) -> RollbackResult:
    """Carry out `plan`: capture the working tree under the index lock, refuse what git's
    checkout refuses or an undo could not restore, take the safety snapshot (and
    `announce` it), then let git check the target out, write what the snapshot recorded
    byte for byte, install the index, and commit with --commit."""
    snap, raw_paths, recorded = plan.snapshot, plan.raw_paths, plan.recorded
    target, timings = plan.tree, plan.timings
    recurse = options.recurse_submodules or repo.config_bool("submodule.recurse", False)
    with (
        _before_writing(),
        worktree.IndexLock(repo) as lock,
        worktree.captured(repo, safety=True) as capture,
        worktree.scratch_index(repo) as scratch,
        worktree.scratch_index(repo) as recorded_index,
    ):
        warnings = list(capture.warnings)
        if lock.took_over:
            warnings.append("took over the index lock a killed govsnap left behind")
        mark = time.monotonic()
        prepared = _prepare(repo, capture, target, raw_paths)
        committed = _committed_tree(repo, target, raw_paths) if options.commit else None
        change = _policy_change(repo, prepared, options, committed)
        if change is not None and not options.allow_policy_change:
            raise UsageError(_policy_refusal(change))
        _check_undo(repo, snap, options, plan.policy, committed, change)
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
        guard = _guard(repo, capture, prepared, recorded, raw_paths, recurse)
        warnings += guard.warnings
        timings["plan"] = time.monotonic() - mark
        if not capture.index_readable and capture.original is not None:
            aside = repo.state_dir / f"index.unreadable.{time.time_ns()}"
            aside.write_bytes(capture.original.data)
            warnings.append(
                f"the index was unreadable: it was kept as {aside} and rebuilt from the snapshot"
            )

        mark = time.monotonic()
        safety = _take_safety_snapshot(repo, op, snap, capture, guard)
        undo = _undo_command(safety.id, options, change)
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
                warnings += _restore_recorded(repo, recorded, guard, raw_paths, recurse)
            final = _final_index(
                repo,
                capture,
                recorded,
                None if recorded is not None and not recorded_index.exists() else recorded_index,
                raw_paths,
                scratch,
            )
            lock.replace_index(final)
            timings["checkout"] = time.monotonic() - mark
            if committed is not None:
                mark = time.monotonic()
                commit = _commit_rollback(repo, snap, committed, safety)
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


@contextlib.contextmanager
def _before_writing() -> Iterator[None]:
    """Turn an OSError raised before the checkout writes anything (a full disk while the
    lock, the capture or the safety snapshot is written) into one line; after that,
    `_failed` reports failures with the undo."""
    try:
        yield
    except OSError as exc:
        where = f": {exc.filename!s}" if exc.filename else ""
        raise EnvironmentProblem(
            f"cannot roll back: {exc.strerror or exc}{where}; nothing was changed"
        ) from exc


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
    """Return the plan of a rollback; writes no file, index or ref, and nothing into the
    object store (the capture's objects go to a temporary directory)."""
    snap, target, paths, recorded = plan.snapshot, plan.tree, plan.raw_paths, plan.recorded
    warnings: list[str] = []
    refusal: str | None = None
    recurse = options.recurse_submodules or repo.config_bool("submodule.recurse", False)
    with (
        worktree.quarantined(repo) as quarantine,
        worktree.captured(quarantine, safety=True) as capture,
    ):
        warnings += capture.warnings
        if not capture.index_readable:
            warnings.append(
                "the index is unreadable: a rollback would keep it aside and rebuild it"
            )
        prepared = _prepare(quarantine, capture, target, paths)
        committed = _committed_tree(quarantine, target, paths) if options.commit else None
        change = _policy_change(quarantine, prepared, options, committed)
        try:
            found = _survey(quarantine, capture, prepared, recorded, paths)
            _check_checkout(quarantine, capture, prepared, recurse)
        except UsageError as exc:
            refusal = exc.message.replace("; nothing was changed", "")
        else:
            root = os.fsencode(repo.workdir)
            warnings += [
                f"cannot read {worktree.shown(p)}, which the rollback would overwrite or "
                "remove: the rollback would stop there"
                for p in found.keep
                if not os.access(root + b"/" + p, os.R_OK, follow_symlinks=False)
            ]
            warnings += [
                f"{worktree.shown(p)} is not a file, symlink or directory: the rollback would "
                "remove it and its undo could not recreate it"
                for p in found.lost
            ]
    blocked = None
    if change is not None and not options.allow_policy_change:
        blocked = _policy_refusal(change).replace(" (nothing was changed)", "")
    elif refusal is not None:
        blocked = refusal
    else:
        try:
            _check_undo(repo, snap, options, plan.policy, committed, change)
        except UsageError as exc:
            blocked = exc.message
    index_only: list[bytes] = []
    if capture.index_readable and worktree.user_index(repo).exists():
        reference = recorded.index_tree if recorded is not None else target
        args = ["--literal-pathspecs", "diff-index", "--cached", "--name-only", "-z", reference]
        if paths:
            args += ["--", *(fs_path(p) for p in paths)]
        touched = {c.path for c in prepared.changes}
        listed = worktree.git(repo, *args, index=worktree.user_index(repo))
        index_only = [p for p in listed.split(b"\0") if p and p not in touched]
    changes = prepared.plan(worktree.ignored_files(repo, paths), index_only)
    return _result(plan, changes, options, op, warnings=tuple(warnings), blocked=blocked)
