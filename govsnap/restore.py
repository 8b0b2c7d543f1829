"""Restore: write a snapshot's files into another directory, as git's checkout writes
them, without touching the repository (its HEAD, index, working tree and refs).

git does the writing (worktree.checkout_into): the snapshot's tree is read into a
temporary index and `git checkout-index` writes the selected entries into the target, so
smudge filters (LFS), eol conversion, symlinks and executable bits come out as a
checkout of the same tree in a clone with the same configuration. Into a new or empty
directory, the files are written into a fresh directory beside it that is then renamed
into place: a restore that fails half-way leaves nothing behind.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from govsnap import safepaths, worktree
from govsnap.errors import CheckFailed, EnvironmentProblem, UsageError
from govsnap.repo import Repo
from govsnap.schemas import schema_name
from govsnap.store import Snapshot, list_snapshots, resolve, snapshot_tree


@dataclass(frozen=True)
class RestoreOptions:
    """What `restore` was asked to do."""

    target: Path
    includes: tuple[str, ...] = ()  # git glob pathspecs; none: every file
    force: bool = False  # write into a non-empty target, overwriting what the snapshot holds
    dry_run: bool = False
    verify: bool = True


@dataclass(frozen=True)
class RestoredFile:
    """One file a restore writes (or would write)."""

    path: bytes
    mode: int
    oid: str
    overwrites: bool  # something stood at this path in the target already

    def as_json(self) -> dict[str, Any]:
        """Return the file as JSON-ready data."""
        return {
            "path": os.fsdecode(self.path),
            "mode": f"{self.mode:06o}",
            "oid": self.oid,
            "overwrites": self.overwrites,
        }


@dataclass(frozen=True)
class RestoreResult:
    """What a restore wrote, or with --dry-run would write."""

    snapshot: Snapshot
    target: Path
    includes: tuple[str, ...]
    files: tuple[RestoredFile, ...]
    dry_run: bool
    verified: bool
    seconds: float

    @property
    def overwritten(self) -> list[RestoredFile]:
        """Return the files that replace something in the target."""
        return [f for f in self.files if f.overwrites]

    def as_json(self) -> dict[str, Any]:
        """Return the restore as JSON-ready data."""
        return {
            "schema": schema_name("restore"),
            "snapshot": self.snapshot.id,
            "target": str(self.target),
            "includes": list(self.includes),
            "dry_run": self.dry_run,
            "verified": self.verified,
            "count": len(self.files),
            "overwritten": len(self.overwritten),
            "files": [f.as_json() for f in self.files],
            "seconds": round(self.seconds, 6),
        }


def pathspecs(patterns: Sequence[str], what: str = "--include") -> list[str]:
    """Return patterns as git glob pathspecs (`*` stays within a directory, `**` crosses
    them, a matching directory takes everything below it); raise UsageError, naming the pattern
    as `what`, for one that is empty, absolute, climbs out with `..`, or carries pathspec
    magic."""
    specs = []
    for pattern in patterns:
        text = pattern.strip()
        if not text or "\0" in text:
            raise UsageError(f"{what} {pattern!r}: an empty pattern")
        if text.startswith(":"):
            raise UsageError(f"{what} {pattern!r}: pathspec magic is not accepted")
        if text.startswith("/") or PurePosixPath(text).is_absolute():
            raise UsageError(
                f"{what} {pattern!r}: patterns are relative to the top of the snapshot"
            )
        if ".." in PurePosixPath(text).parts:
            raise UsageError(f"{what} {pattern!r}: a pattern cannot climb out with '..'")
        text = text.rstrip("/")
        # A matching directory takes everything below it, wildcards or not (git matches
        # leading directories of literal pathspecs only).
        specs += [":(glob)" + text, ":(glob)" + text + "/**"]
    return specs


def _inside(path: Path, folder: Path) -> bool:
    """Return True when `path` is `folder` or lies below it."""
    return path == folder or folder in path.parents


def check_target(repo: Repo, target: Path, force: bool) -> Path:
    """Return the target directory, absolute; raise UsageError when it lies in the
    repository (its git directory or working tree: rollback restores there), holds the
    working tree, is not a directory, or is not empty (unless `force`)."""
    absolute = Path(os.path.abspath(target))
    real = absolute.resolve()
    mine = [repo.gitdir.resolve(), repo.commondir.resolve()]
    if repo.git.workdir is not None:
        mine.append(repo.workdir.resolve())
    for folder in mine:
        if _inside(real, folder) or _inside(folder, real):
            raise UsageError(
                f"--target {target} overlaps the repository ({folder}): restore writes "
                "outside it (rollback restores into the working tree)"
            )
    if os.path.lexists(absolute) and not real.is_dir():
        raise UsageError(f"--target {target} exists and is not a directory")
    if real.is_dir() and not force and any(real.iterdir()):
        raise UsageError(
            f"--target {target} is not empty: restore into a new or empty directory, or "
            "pass --force to overwrite the files the snapshot holds there"
        )
    return absolute


def _verify(repo: Repo, snap: Snapshot) -> None:
    """Raise CheckFailed unless the snapshot passes verification (signature, trust for
    its environment, digest, objects), as rollback requires."""
    from govsnap.verify import verify_snapshot

    report = verify_snapshot(repo, snap)
    if not report.ok:
        failures = "; ".join(report.failures()[:3])
        raise CheckFailed(
            f"snapshot {snap.id} failed verification ({failures}); refusing to restore it "
            "(--no-verify overrides)"
        )


def _umask() -> int:
    """Return the process umask (reading it means setting it: put it straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _write_fresh(repo: Repo, target: Path, index: Path, paths: Sequence[bytes]) -> None:
    """Write `paths` into a new directory beside `target` (a real path), then rename it
    into place (an empty `target` is replaced, its permissions kept): a failure leaves
    the target as it was."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=f".{target.name}.govsnap-", dir=target.parent))
    except OSError as exc:
        raise EnvironmentProblem(f"cannot restore into {target}: {_reason(exc)}") from exc
    try:
        existing = target.is_dir()
        stage.chmod(stat.S_IMODE(target.stat().st_mode) if existing else 0o777 & ~_umask())
        worktree.checkout_into(repo, stage, index, paths)
        if existing:
            target.rmdir()
        stage.rename(target)
    except BaseException as exc:
        shutil.rmtree(stage, ignore_errors=True)
        if isinstance(exc, OSError):
            raise EnvironmentProblem(f"cannot restore into {target}: {_reason(exc)}") from exc
        raise


def _reason(exc: OSError) -> str:
    """Return what an OSError says, and about which file."""
    return f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")


def restore(repo: Repo, name: str, options: RestoreOptions) -> RestoreResult:
    """Write snapshot `name`'s files (those `options.includes` match) into
    `options.target`, or with `dry_run` say which it would write. Writes nothing in the
    repository: no ref, note, audit entry, index or working-tree file."""
    started = time.monotonic()
    snap = resolve(repo, name, list_snapshots(repo))
    tree = snapshot_tree(repo, snap)
    specs = pathspecs(options.includes)
    target = check_target(repo, options.target, options.force)
    # A partial clone fetches the blobs verification and the checkout read, as git would.
    worktree.fetch_missing(repo, [str(tree.id)])
    if options.verify:
        _verify(repo, snap)
    safepaths.check_tree(repo, tree.id, f"snapshot {snap.id}")
    # The temporary index lives in a directory of its own, outside the repository.
    with tempfile.TemporaryDirectory(prefix="govsnap-restore-") as scratch:
        index = Path(scratch) / "index"
        entries = worktree.select_entries(repo, Path(scratch), index, str(tree.id), specs)
        if specs and not entries:
            raise UsageError(
                f"--include {' '.join(options.includes)} matches no file of snapshot {snap.id}"
            )
        root = os.fsencode(target)
        files = tuple(
            RestoredFile(e.path, e.mode, e.oid, os.path.lexists(os.path.join(root, e.path)))
            for e in entries
        )
        if not options.dry_run:
            paths = [e.path for e in entries]
            # Written where a symlinked target points: the link itself stays.
            real = Path(os.path.realpath(target))
            if options.force and real.is_dir() and any(real.iterdir()):
                worktree.checkout_into(repo, real, index, paths)
            else:
                _write_fresh(repo, real, index, paths)
    seconds = time.monotonic() - started
    return RestoreResult(
        snap, target, options.includes, files, options.dry_run, options.verify, seconds
    )
