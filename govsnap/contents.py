"""What snapshots hold: `ls` lists a snapshot's tree as `git ls-tree` does, `find` names
the snapshots holding paths that match a pattern, matched by git itself (glob
pathspecs, as `restore --include` matches them). Reads objects only."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from govsnap import worktree
from govsnap.errors import CorruptObject, UsageError
from govsnap.repo import Repo
from govsnap.restore import pathspecs
from govsnap.schemas import schema_name
from govsnap.store import (
    Snapshot,
    filter_snapshots,
    list_snapshots,
    resolve,
    snapshot_tree,
    tree_path,
)


@dataclass(frozen=True)
class LsEntry:
    """One entry of a snapshot's tree, as `git ls-tree -l` shows it."""

    mode: int
    type: str  # blob, tree or commit (a submodule)
    oid: str
    size: int | None  # bytes of a blob; None for trees and submodules
    path: bytes

    def as_json(self) -> dict[str, Any]:
        """Return the entry as JSON-ready data."""
        return {
            "mode": f"{self.mode:06o}",
            "type": self.type,
            "oid": self.oid,
            "size": self.size,
            "path": os.fsdecode(self.path),
        }


@dataclass(frozen=True)
class Listing:
    """The entries `ls` found in one snapshot."""

    snapshot: Snapshot
    path: str  # what was asked for ("" for the top)
    recursive: bool
    entries: tuple[LsEntry, ...]

    def as_json(self) -> dict[str, Any]:
        """Return the listing as JSON-ready data."""
        return {
            "schema": schema_name("ls"),
            "snapshot": self.snapshot.id,
            "path": self.path,
            "recursive": self.recursive,
            "entries": [e.as_json() for e in self.entries],
        }


def _ls_tree(repo: Repo, tree: str, recursive: bool, spec: str | None) -> list[LsEntry]:
    """Return what `git ls-tree -l [-r] tree [-- spec]` lists."""
    args = ["--literal-pathspecs", "ls-tree", "-l", "-z", "--full-tree"]
    if recursive:
        args.append("-r")
    args.append(tree)
    if spec is not None:
        args += ["--", spec]
    found = []
    for record in worktree.git(repo, *args).split(b"\0"):
        if not record:
            continue
        meta, _, path = record.partition(b"\t")
        mode, kind, oid, size = meta.decode().split()
        found.append(LsEntry(int(mode, 8), kind, oid, None if size == "-" else int(size), path))
    return found


def ls(repo: Repo, name: str, path: str = "", recursive: bool = False) -> Listing:
    """Return the entries of snapshot `name` at `path`: a directory's entries (all below
    it with `recursive`), or the one entry a file is; raise UsageError when the snapshot
    holds nothing at `path`."""
    snap = resolve(repo, name, list_snapshots(repo))
    tree = str(snapshot_tree(repo, snap).id)
    where = tree_path(path)
    if not where:
        return Listing(snap, where, recursive, tuple(_ls_tree(repo, tree, recursive, None)))
    found = _ls_tree(repo, tree, False, where)
    if not found:
        raise UsageError(f"{where}: no such path in snapshot {snap.id}")
    if found[0].type == "tree":
        found = _ls_tree(repo, tree, recursive, where + "/")
    return Listing(snap, where, recursive, tuple(found))


@dataclass(frozen=True)
class Found:
    """The paths of one snapshot that matched."""

    snapshot: Snapshot
    paths: tuple[bytes, ...]

    def as_json(self) -> dict[str, Any]:
        """Return the matches as JSON-ready data."""
        return {
            "snapshot": self.snapshot.id,
            "created": self.snapshot.created_iso,
            "environment": self.snapshot.environment,
            "paths": [os.fsdecode(p) for p in self.paths],
        }


@dataclass(frozen=True)
class FindResult:
    """Which snapshots hold paths matching a pattern, newest first."""

    patterns: tuple[str, ...]
    searched: int  # snapshots searched
    found: tuple[Found, ...]
    unreadable: tuple[str, ...] = ()  # snapshots whose tag or tree could not be read

    def as_json(self) -> dict[str, Any]:
        """Return the search as JSON-ready data."""
        return {
            "schema": schema_name("find"),
            "patterns": list(self.patterns),
            "searched": self.searched,
            "snapshots": [f.as_json() for f in self.found],
            "unreadable": list(self.unreadable),
        }


def find_pathspecs(patterns: tuple[str, ...]) -> list[str]:
    """Return `find` patterns as git glob pathspecs: one without `/` matches a name in
    any directory (as `find -name` and restic find do), one with `/` a path from the top
    of the snapshot."""
    pathspecs(patterns, "pattern")  # each is checked as given, before it is widened
    wide = [p if "/" in p.strip().rstrip("/") else f"**/{p.strip()}" for p in patterns]
    return pathspecs(wide, "pattern")


def find(repo: Repo, patterns: tuple[str, ...], environment: str | None = None) -> FindResult:
    """Return the snapshots (of `environment`) holding files matching any of `patterns`,
    newest first. git matches (`ls-files` with the pathspecs), once over the distinct
    paths of every distinct tree; each tree is listed with `git ls-tree -r`."""
    if not patterns:
        raise UsageError("find needs a pattern")
    specs = find_pathspecs(patterns)
    snaps = filter_snapshots(list_snapshots(repo), environment)
    trees: dict[str, str] = {}  # snapshot id -> tree
    unreadable = []
    for snap in snaps:
        try:
            trees[snap.id] = str(snapshot_tree(repo, snap).id)
        except CorruptObject:
            # One damaged snapshot must not hide the others' matches: it is named.
            unreadable.append(snap.id)
    listed = {tree: worktree.tree_paths(repo, tree) for tree in dict.fromkeys(trees.values())}
    with tempfile.TemporaryDirectory(prefix="govsnap-find-") as scratch:
        everything = (p for paths in listed.values() for p in paths)
        matched = worktree.matching_paths(repo, Path(scratch), everything, specs)
    found = []
    for snap in snaps:
        if snap.id in trees:
            paths = tuple(p for p in listed[trees[snap.id]] if p in matched)
            if paths:
                found.append(Found(snap, paths))
    return FindResult(patterns, len(trees), tuple(found), tuple(unreadable))
