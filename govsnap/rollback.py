"""Rollback: check a snapshot's tree out into the working tree and the index, HEAD
unmoved, after a safety snapshot of the current state that is the way back."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, NoReturn

import pygit2
from pygit2.enums import CheckoutStrategy, DeltaStatus, DiffOption, FileMode, RepositoryState

from govsnap import audit, safepaths
from govsnap.errors import (
    BareRepository,
    CheckFailed,
    CorruptObject,
    EnvironmentProblem,
    GovsnapError,
    UsageError,
)
from govsnap.objects import write_commit
from govsnap.repo import Identity, Repo, run_git
from govsnap.store import (
    CreateOptions,
    Snapshot,
    capture_worktree,
    create,
    head_source,
    list_snapshots,
    resolve,
    snapshot_tree,
)
from govsnap.trust import decide_local, load_policy

SAFETY_TRIGGER = "pre-rollback"

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

# FORCE makes the files the target has match it whatever the work tree holds; paths are
# literal (a file named "*.txt" is not a pattern). Untracked files are removed by
# `_remove`, not by libgit2's REMOVE_UNTRACKED, which would decide what is ignored by
# one set of rules only (see plan_changes).
_STRATEGY = CheckoutStrategy.FORCE | CheckoutStrategy.DISABLE_PATHSPEC_MATCH


@dataclass(frozen=True)
class RollbackOptions:
    """What `rollback` was asked to do."""

    paths: tuple[str, ...] = ()
    dry_run: bool = False
    commit: bool = False
    verify: bool = True


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
    index_source: str  # "snapshot tree" or "Govsnap-Index <commit>"
    safety: Snapshot | None = None
    commit: str | None = None
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        """Return the result as JSON-ready data."""
        return {
            "snapshot": self.snapshot.id,
            "dry_run": self.dry_run,
            "verified": self.verified,
            "paths": list(self.paths),
            "index_source": self.index_source,
            "safety_snapshot": None if self.safety is None else self.safety.id,
            "undo": None if self.safety is None else f"govsnap rollback {self.safety.id}",
            "commit": self.commit,
            "plan": self.plan.as_json(),
            "seconds": round(self.seconds, 6),
            "timings": {k: round(v, 6) for k, v in self.timings.items()},
            "warnings": list(self.warnings),
        }


Confirm = Callable[[Snapshot], bool]


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


def _covered(path: str, paths: tuple[str, ...]) -> bool:
    """Return True when `path` is one of `paths` or lies below one (always, without paths)."""
    return not paths or any(path == p or path.startswith(p + "/") for p in paths)


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


def _verify(repo: Repo, snap: Snapshot) -> None:
    """Raise CheckFailed unless the snapshot passes verification for `rollback` and, with
    a trust policy, the key this clone signs with may roll back in its environment."""
    from govsnap.verify import verify_snapshot

    policy = load_policy(repo)
    report = verify_snapshot(repo, snap, operation="rollback", policy=policy)
    if not report.ok:
        failures = "; ".join(report.failures()[:3])
        _refuse(
            repo,
            snap,
            "verification failed",
            failures,
            f"snapshot {snap.id} failed verification ({failures}); "
            "refusing to roll back to it (--no-verify overrides)",
        )
    if policy is not None:
        environment = snap.payload.environment if snap.payload else "*"
        decision = decide_local(repo, policy, [environment], "rollback")
        if not decision.allowed:
            _refuse(
                repo,
                snap,
                "not allowed",
                decision.reason,
                f"refusing to roll back to {snap.id}: {decision.reason}",
            )


def _refuse(repo: Repo, snap: Snapshot, why: str, detail: str, message: str) -> NoReturn:
    """Record a refused rollback in the audit trail (it is a security event), then raise."""
    audit.append(
        repo,
        "rollback",
        f"rollback to {snap.id} refused: {why}",
        snapshots=[snap.id],
        identity=repo.committer(),
        arguments={"verify": True},
        result=f"refused: {detail}",
    )
    raise CheckFailed(message)


def _index_tree(repo: Repo, snap: Snapshot) -> pygit2.Tree | None:
    """Return the index state a pre-rollback snapshot recorded (Govsnap-Index), if any."""
    if snap.payload is None or snap.payload.index_commit is None:
        return None
    try:
        commit = repo.git[snap.payload.index_commit]
    except (KeyError, ValueError) as exc:
        raise CorruptObject(
            f"snapshot {snap.id}: index commit {snap.payload.index_commit} is missing"
        ) from exc
    if not isinstance(commit, pygit2.Commit):
        raise CorruptObject(f"snapshot {snap.id}: Govsnap-Index does not name a commit")
    return commit.tree


# --- the plan -------------------------------------------------------------------------


def plan_changes(
    repo: Repo, current: pygit2.Tree, target: pygit2.Tree, paths: tuple[str, ...]
) -> RollbackPlan:
    """Return what turns `current` (the work tree as captured) into `target`, below `paths`.

    A file the snapshot's own ignore rules ignore is left, like one ignored now (which
    `current` does not hold): so rolling back to a safety snapshot keeps a file that was
    ignored when it was taken even if the rollback being undone removed the rule. A
    submodule's directory is left too: it is not ours to delete.
    """
    diff = current.diff_to_tree(target, flags=DiffOption.INCLUDE_TYPECHANGE)
    write: list[str] = []
    remove: list[str] = []
    leave: list[str] = []
    for delta in diff.deltas:
        if delta.status == DeltaStatus.DELETED:
            path = delta.old_file.path
            if _covered(path, paths):
                (leave if delta.old_file.mode == FileMode.COMMIT else remove).append(path)
        elif delta.status in (DeltaStatus.ADDED, DeltaStatus.MODIFIED, DeltaStatus.TYPECHANGE):
            path = delta.new_file.path
            if _covered(path, paths):
                write.append(path)
    kept = _ignored_by_target(repo, target, remove)
    leave.extend(kept)
    return RollbackPlan(
        tuple(sorted(write)),
        tuple(sorted(p for p in remove if p not in kept)),
        tuple(sorted(leave)),
    )


def _ignored_by_target(repo: Repo, target: pygit2.Tree, candidates: list[str]) -> set[str]:
    """Return the candidates that the target tree's .gitignore files (with the repository's
    info/exclude and core.excludesFile) ignore, as `git check-ignore` decides."""
    if not candidates:
        return set()
    with tempfile.TemporaryDirectory(prefix="govsnap-ignore-") as tmp:
        root = Path(tmp)
        run_git(["init", "-q", str(root)], root)
        dirs = {""} | {p.rsplit("/", 1)[0] for p in candidates if "/" in p}
        for d in list(dirs):
            while "/" in d:
                d = d.rsplit("/", 1)[0]
                dirs.add(d)
        for d in dirs:
            name = f"{d}/.gitignore" if d else ".gitignore"
            entry = _entry(target, name)
            if isinstance(entry, pygit2.Blob):
                (root / name).parent.mkdir(parents=True, exist_ok=True)
                (root / name).write_bytes(entry.data)
        exclude = repo.commondir / "info" / "exclude"
        if exclude.is_file():
            (root / ".git" / "info").mkdir(exist_ok=True)
            shutil.copyfile(exclude, root / ".git" / "info" / "exclude")
        excludes_file = repo.config_str("core.excludesFile")
        extra = ["-c", f"core.excludesFile={excludes_file}"] if excludes_file else []
        proc = run_git(
            [*extra, "check-ignore", "--no-index", "-z", "--stdin"],
            root,
            input=b"".join(os.fsencode(c) + b"\0" for c in candidates),
            check=False,
        )
        if proc.returncode not in (0, 1):
            raise EnvironmentProblem(
                f"git check-ignore failed: {proc.stderr.decode(errors='replace').strip()}"
            )
    return {os.fsdecode(p) for p in proc.stdout.split(b"\0") if p}


def _ignored(repo: Repo, paths: tuple[str, ...]) -> list[str]:
    """Return the ignored files and directories a rollback leaves alone, as git shows them."""
    workdir = repo.workdir
    found = [
        path
        for path, flags in repo.git.status(untracked_files="normal", ignored=True).items()
        if flags & pygit2.enums.FileStatus.IGNORED
        and _covered(path.rstrip("/"), paths)
        # libgit2 reports empty directories as ignored; git does not show them at all.
        and (not path.endswith("/") or _holds_files(workdir / path))
    ]
    return sorted(found)


def _holds_files(directory: Path) -> bool:
    return any(files for _, _, files in os.walk(directory))


def _index_only(
    repo: Repo, target: pygit2.Tree, paths: tuple[str, ...], written: Iterable[str]
) -> list[str]:
    """Return paths whose index entry changes though their file does not."""
    skip = set(written)
    try:
        diff = repo.git.index.diff_to_tree(target)
    except pygit2.GitError:
        return []
    out = set()
    for delta in diff.deltas:
        for path in (delta.old_file.path, delta.new_file.path):
            if path not in skip and _covered(path, paths):
                out.add(path)
    return sorted(out)


# --- the safety snapshot -------------------------------------------------------------


def _index_commit(repo: Repo, identity: Identity, target: Snapshot) -> str:
    """Write the index as a tree wrapped in a commit (parent HEAD), as `git stash` does."""
    try:
        tree = repo.git.index.write_tree()
    except pygit2.GitError as exc:
        raise EnvironmentProblem(
            f"cannot record the index (unresolved conflicts?): {exc}; nothing was changed"
        ) from exc
    _, head = head_source(repo)
    parents = [str(head.id)] if head is not None else []
    message = f"govsnap: index state before rollback to snapshot {target.id}\n"
    return str(write_commit(repo, str(tree), parents, identity, message))


def _take_safety_snapshot(repo: Repo, target: Snapshot, index_ok: bool) -> Snapshot:
    """Snapshot the working tree (tracked and untracked) and the index; raise on failure."""
    identity = repo.committer()
    options = CreateOptions(
        trigger=SAFETY_TRIGGER,
        message=f"Safety snapshot taken before rolling back to snapshot {target.id}.",
        index_commit=_index_commit(repo, identity, target) if index_ok else None,
    )
    try:
        return create(repo, options).snapshot
    except GovsnapError as exc:
        raise type(exc)(
            f"cannot take the safety snapshot, so nothing was changed: {exc.message}"
        ) from exc


# --- writing --------------------------------------------------------------------------


def _clear_symlinks_in_the_way(workdir: Path, write: Iterable[str]) -> None:
    """Unlink symlinks at or above the paths about to be written.

    libgit2 follows a symlink standing where the target has a directory (or a file) and
    writes through it, outside the work tree; git replaces it instead, and so do we.
    Anything unlinked here is in the safety snapshot (ignored symlinks excepted: git
    treats ignored files as expendable when the snapshot wants the path).
    """
    checked: set[str] = set()
    for path in write:
        parts = path.split("/")
        for depth in range(1, len(parts) + 1):
            prefix = "/".join(parts[:depth])
            if prefix in checked:
                continue
            checked.add(prefix)
            full = workdir / prefix
            try:
                info = os.lstat(full)
            except (FileNotFoundError, NotADirectoryError):
                break
            if stat.S_ISLNK(info.st_mode):
                os.unlink(full)
                break


def _remove(workdir: Path, remove: Iterable[str]) -> None:
    """Delete files the snapshot does not have, then the directories left empty.

    A path whose parent is no longer a real directory (the checkout put a file or a
    symlink there) is already gone; unlinking it would follow the symlink.
    """
    emptied: set[Path] = set()
    for path in remove:
        parts = path.split("/")
        parent = workdir
        for part in parts[:-1]:
            parent = parent / part
            if not stat.S_ISDIR(_lstat_mode(parent)):
                break
        else:
            full = parent / parts[-1]
            mode = _lstat_mode(full)
            if mode and not stat.S_ISDIR(mode):
                os.unlink(full)
                emptied.add(parent)
    for directory in sorted(emptied, key=lambda d: len(d.parts), reverse=True):
        while directory != workdir:
            try:
                directory.rmdir()
            except OSError:
                break
            directory = directory.parent


def _lstat_mode(path: Path) -> int:
    try:
        return os.lstat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return 0


def _check_blobs_present(repo: Repo, target: pygit2.Tree, write: Iterable[str]) -> None:
    """Raise CorruptObject before writing anything if a blob to be written is missing."""
    odb = repo.git.odb
    for path in write:
        entry = target[path]
        if entry.filemode != FileMode.COMMIT and not odb.exists(entry.id):
            raise CorruptObject(
                f"blob {entry.id} ({path}) is missing from the object store; nothing was written"
            )


def _align_index(repo: Repo, want: pygit2.Tree, paths: tuple[str, ...]) -> None:
    """Make the index (below `paths`) hold tree `want`, keeping the stat data of entries
    that already match: the checkout set the paths it wrote; this catches staged changes
    whose file already matched, and sets a recorded index state (Govsnap-Index)."""
    index = repo.git.index
    index.read(False)
    changed = False
    for delta in want.diff_to_index(index).deltas:
        have, wanted = delta.new_file, delta.old_file  # old: the tree, new: the index
        if not _covered(have.path, paths) and not _covered(wanted.path, paths):
            continue
        if delta.status in (DeltaStatus.ADDED, DeltaStatus.TYPECHANGE):
            index.remove(have.path)
        if delta.status != DeltaStatus.ADDED:
            index.add(pygit2.IndexEntry(wanted.path, wanted.id, wanted.mode))
        changed = True
    if changed:
        index.write()


def _graft(
    repo: Repo, base: pygit2.Tree | None, source: pygit2.Tree, paths: tuple[str, ...]
) -> str:
    """Return the tree `base` with `paths` replaced by what `source` has there."""
    index = pygit2.Index()
    if base is not None:
        index.read_tree(base)
    for path in paths:
        index.remove_all([path, path + "/*"])
        entry = _entry(source, path)
        if isinstance(entry, pygit2.Tree):
            for item in _walk(repo, entry, path + "/"):
                index.add(item)
        elif entry is not None:
            index.add(pygit2.IndexEntry(path, entry.id, source[path].filemode))
    return str(index.write_tree(repo.git))


def _walk(repo: Repo, tree: pygit2.Tree, prefix: str) -> Iterable[pygit2.IndexEntry]:
    for entry in tree:
        name = prefix + (entry.name or "")
        if entry.filemode == FileMode.TREE:
            sub = repo.git[entry.id]
            assert isinstance(sub, pygit2.Tree)
            yield from _walk(repo, sub, name + "/")
        else:
            yield pygit2.IndexEntry(name, entry.id, entry.filemode)


def _commit(repo: Repo, snap: Snapshot, tree: str, safety: Snapshot) -> str:
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


class _RawPath:
    """A path handed to libgit2 as its bytes: pygit2 encodes a str path as strict UTF-8,
    which a file name that is not UTF-8 (read back with lone surrogates) cannot be."""

    def __init__(self, path: str) -> None:
        self.raw = path.encode("utf-8", "surrogateescape")

    def __fspath__(self) -> bytes:
        return self.raw


# --- the operation ---------------------------------------------------------------------


def _index_readable(repo: Repo) -> bool:
    try:
        repo.git.index  # noqa: B018 - loads and parses .git/index
    except pygit2.GitError:
        return False
    return True


def rollback(
    repo: Repo,
    name: str,
    options: RollbackOptions,
    confirm: Confirm | None = None,
) -> RollbackResult:
    """Restore snapshot `name` into the working tree and index, HEAD unmoved.

    Order: refuse in a bare repository or mid-merge; resolve; verify; refuse unsafe trees;
    ask `confirm`; take the safety snapshot; only then write. With `dry_run`, stop after
    the plan and change nothing.
    """
    started = time.monotonic()
    timings: dict[str, float] = {}
    check_repository_state(repo)
    workdir = repo.workdir
    snaps = list_snapshots(repo)
    snap = resolve(repo, name, snaps)
    target = snapshot_tree(repo, snap)
    paths = normalize_paths(workdir, options.paths)
    check_paths_exist(workdir, target, paths, snap)
    index_tree = _index_tree(repo, snap)
    if options.commit and index_tree is not None:
        raise UsageError(
            f"snapshot {snap.id} records a staged index state (it is a safety snapshot): "
            "restore it without --commit"
        )

    mark = time.monotonic()
    if options.verify:
        _verify(repo, snap)
    timings["verify"] = time.monotonic() - mark

    mark = time.monotonic()
    safepaths.check_tree(repo, target.id, f"snapshot {snap.id}")
    if index_tree is not None:
        safepaths.check_tree(repo, index_tree.id, f"the index recorded by snapshot {snap.id}")
    timings["check_tree"] = time.monotonic() - mark

    warnings: list[str] = []
    index_source = "snapshot tree" if index_tree is None else f"Govsnap-Index {index_tree.id}"
    if options.dry_run:
        return _dry_run(repo, snap, target, paths, options, index_tree, started, timings)

    if confirm is not None and not confirm(snap):
        raise UsageError("rollback cancelled; nothing was changed")

    identity = repo.committer()
    arguments = {
        "paths": list(paths),
        "commit": options.commit,
        "verify": options.verify,
    }
    # An unreadable index cannot be recorded; keep its bytes and roll back without it.
    index_file = repo.gitdir / "index"
    index_ok = _index_readable(repo)
    aside: Path | None = None
    if not index_ok:
        aside = repo.state_dir / f"index.unreadable.{time.time_ns()}"
        os.replace(index_file, aside)
    mark = time.monotonic()
    try:
        safety = _take_safety_snapshot(repo, snap, index_ok)
    except BaseException:
        if aside is not None:
            os.replace(aside, index_file)
        raise
    timings["safety_snapshot"] = time.monotonic() - mark
    if aside is not None:
        warnings.append(
            f"the index was unreadable: it was kept as {aside} and rebuilt from the snapshot"
        )

    current = repo.git[safety.payload.tree if safety.payload else ""]
    assert isinstance(current, pygit2.Tree)
    mark = time.monotonic()
    commit = None
    try:
        plan = plan_changes(repo, current, target, paths)
        _check_blobs_present(repo, target, plan.write)
        # Removing first also clears a file standing where the snapshot has a directory.
        _remove(workdir, plan.remove)
        _clear_symlinks_in_the_way(workdir, plan.write)
        if plan.write or plan.remove:
            # Only the paths that differ: libgit2 then skips comparing the other files.
            changed = [_RawPath(p) for p in (*plan.write, *plan.remove)]
            repo.git.checkout_tree(target, strategy=_STRATEGY, paths=changed)  # type: ignore[no-untyped-call]
        _align_index(repo, index_tree if index_tree is not None else target, paths)
        timings["checkout"] = time.monotonic() - mark
        if options.commit:
            mark = time.monotonic()
            _, head = head_source(repo)
            tree = str(target.id) if not paths else _graft(repo, head and head.tree, target, paths)
            commit = _commit(repo, snap, tree, safety)
            timings["commit"] = time.monotonic() - mark
    except Exception as exc:
        # Whatever stops the writing half-way, the way back is the safety snapshot: say
        # so and record it, rather than leave a half-written tree behind an internal error.
        if isinstance(exc, GovsnapError):
            detail = exc.message
        elif isinstance(exc, pygit2.GitError | OSError):
            detail = str(exc)
        else:
            detail = f"{type(exc).__name__}: {exc}"
        audit.append(
            repo,
            "rollback",
            f"rollback to {snap.id} failed",
            snapshots=[snap.id, safety.id],
            identity=identity,
            arguments=arguments,
            result=f"failed: {detail}",
            duration=time.monotonic() - started,
        )
        raise EnvironmentProblem(
            f"rollback to {snap.id} failed: {detail}; the previous state is safety snapshot "
            f"{safety.id} (govsnap rollback {safety.id})"
        ) from exc
    seconds = time.monotonic() - started
    where = f" ({', '.join(paths)})" if paths else ""
    audit.append(
        repo,
        "rollback",
        f"rolled back to {snap.id}{where}; safety snapshot {safety.id}",
        snapshots=[snap.id, safety.id],
        identity=identity,
        arguments={**arguments, "commit_oid": commit},
        duration=seconds,
    )
    return RollbackResult(
        snapshot=snap,
        plan=plan,
        dry_run=False,
        verified=options.verify,
        paths=paths,
        index_source=index_source,
        safety=safety,
        commit=commit,
        seconds=seconds,
        timings=timings,
        warnings=tuple(warnings),
    )


def _dry_run(
    repo: Repo,
    snap: Snapshot,
    target: pygit2.Tree,
    paths: tuple[str, ...],
    options: RollbackOptions,
    index_tree: pygit2.Tree | None,
    started: float,
    timings: dict[str, float],
) -> RollbackResult:
    """Return the plan of a rollback; writes no file, index or ref."""
    index_source = "snapshot tree" if index_tree is None else f"Govsnap-Index {index_tree.id}"
    warnings: list[str] = []
    if _index_readable(repo):
        current = repo.git[capture_worktree(repo)]
    else:
        warnings.append("the index is unreadable: a rollback would keep it aside and rebuild it")
        current = None
    if isinstance(current, pygit2.Tree):
        changes = plan_changes(repo, current, target, paths)
        index_only = _index_only(
            repo, index_tree or target, paths, [*changes.write, *changes.remove]
        )
    else:
        changes, index_only = RollbackPlan((), ()), []
    plan = RollbackPlan(
        changes.write,
        changes.remove,
        tuple(sorted({*changes.leave, *_ignored(repo, paths)} - set(changes.write))),
        tuple(index_only),
    )
    return RollbackResult(
        snapshot=snap,
        plan=plan,
        dry_run=True,
        verified=options.verify,
        paths=paths,
        index_source=index_source,
        seconds=time.monotonic() - started,
        timings=timings,
        warnings=tuple(warnings),
    )
