"""The canonical manifest of a tree, its SHA-256 content digest, and the blob-digest cache."""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pygit2
from pygit2.enums import FileMode, ObjectType

from govsnap.errors import CorruptObject
from govsnap.repo import Repo

CACHE_NAME = "digest-cache"
# One record per blob: git oid (20 bytes), SHA-256 of the content (32), size (8, LE).
_RECORD = struct.Struct("<20s32sQ")


class DigestCache:
    """A persistent map from blob oid to (SHA-256, size), appended to as blobs are hashed.

    The file is a sequence of fixed-size records; a record cut short by a crash is
    ignored on load and overwritten by `repair`. Writers append whole records in one
    write, so concurrent processes never interleave within a record.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._known: dict[bytes, tuple[bytes, int]] = {}
        self._pending: list[bytes] = []
        self.torn_bytes = 0
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return
        whole = len(data) - len(data) % _RECORD.size
        self.torn_bytes = len(data) - whole
        for oid, sha, size in _RECORD.iter_unpack(memoryview(data)[:whole]):
            self._known[oid] = (sha, size)

    @classmethod
    def for_repo(cls, repo: Repo) -> DigestCache:
        """Return the cache kept under `.git/govsnap/`."""
        return cls(repo.state_dir / CACHE_NAME)

    def __len__(self) -> int:
        return len(self._known)

    def get(self, oid: bytes) -> tuple[bytes, int] | None:
        """Return (sha256, size) for a raw blob oid, or None."""
        return self._known.get(oid)

    def put(self, oid: bytes, sha: bytes, size: int) -> None:
        """Remember a blob's digest; `flush` makes it persistent."""
        if oid not in self._known:
            self._known[oid] = (sha, size)
            self._pending.append(_RECORD.pack(oid, sha, size))

    def flush(self) -> None:
        """Append the records learnt since the last flush."""
        if not self._pending:
            return
        if self.torn_bytes:
            self.repair()
        data = b"".join(self._pending)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        self._pending.clear()

    def repair(self) -> int:
        """Cut a torn trailing record off the file; return the bytes removed."""
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return 0
        torn = size % _RECORD.size
        if torn:
            with self.path.open("r+b") as fh:
                fh.truncate(size - torn)
        self.torn_bytes = 0
        return torn


@dataclass
class KindSummary:
    """How many files of one kind a snapshot holds and how many bytes they take."""

    count: int = 0
    bytes: int = 0


@dataclass
class TreeDigest:
    """The content digest of a tree and the figures gathered while computing it."""

    digest: str
    files: int
    bytes: int
    kinds: dict[str, KindSummary] = field(default_factory=dict)
    hashed_blobs: int = 0


@dataclass(frozen=True)
class ManifestEntry:
    """One line of the canonical manifest."""

    mode: int
    path: bytes
    oid: pygit2.Oid

    @property
    def is_gitlink(self) -> bool:
        """Return True for a submodule entry (mode 160000)."""
        return self.mode == FileMode.COMMIT


def walk_tree(
    repo: Repo, tree_oid: pygit2.Oid | str, prefix: bytes = b""
) -> Iterator[ManifestEntry]:
    """Yield every non-tree entry below a tree, depth first in git's tree order."""
    try:
        tree = repo.git[tree_oid]
    except (KeyError, ValueError) as exc:
        where = prefix.decode(errors="replace") or "/"
        raise CorruptObject(f"tree {tree_oid} ({where}) is missing") from exc
    if not isinstance(tree, pygit2.Tree):
        raise CorruptObject(f"object {tree_oid} is not a tree")
    for entry in tree:
        assert entry.raw_name is not None  # tree entries always have names
        path = prefix + entry.raw_name
        if entry.filemode == FileMode.TREE:
            yield from walk_tree(repo, entry.id, path + b"/")
        else:
            yield ManifestEntry(entry.filemode, path, entry.id)


def kind_of(entry: ManifestEntry) -> str:
    """Return the artifact kind of an entry: its lower-cased extension, or a type name."""
    if entry.mode == FileMode.LINK:
        return "symlink"
    if entry.is_gitlink:
        return "submodule"
    name = entry.path.rsplit(b"/", 1)[-1]
    stem, dot, ext = name.rpartition(b".")
    if not dot or not stem or not ext:
        return "(none)"
    return "." + ext.decode(errors="replace").lower()


def manifest_line(mode: int, content_hash: str, path: bytes) -> bytes:
    """Return one canonical manifest line."""
    return f"{mode:06o} {content_hash} ".encode() + path + b"\n"


def digest_tree(
    repo: Repo, tree_oid: pygit2.Oid | str, cache: DigestCache | None = None, *, deep: bool = False
) -> TreeDigest:
    """Return the content digest of a tree, reading only blobs the cache does not know.

    With `deep`, every blob is re-read and the cache is neither consulted nor trusted.
    """
    entries = sorted(walk_tree(repo, tree_oid), key=lambda e: e.path)
    odb = repo.git.odb
    outer = hashlib.sha256()
    kinds: dict[str, KindSummary] = {}
    total = hashed = 0
    lines: list[bytes] = []
    for entry in entries:
        if entry.is_gitlink:
            content_hash, size = str(entry.oid), 0
        else:
            raw = entry.oid.raw
            cached = None if deep or cache is None else cache.get(raw)
            if cached is None:
                try:
                    kind, data = odb.read(entry.oid)
                except (KeyError, ValueError) as exc:
                    raise CorruptObject(
                        f"blob {entry.oid} ({entry.path.decode(errors='replace')}) is missing"
                    ) from exc
                if kind != ObjectType.BLOB:
                    raise CorruptObject(f"object {entry.oid} is not a blob")
                sha = hashlib.sha256(data).digest()
                size = len(data)
                hashed += 1
                if cache is not None:
                    cache.put(raw, sha, size)
            else:
                sha, size = cached
            content_hash = sha.hex()
        lines.append(manifest_line(entry.mode, content_hash, entry.path))
        summary = kinds.setdefault(kind_of(entry), KindSummary())
        summary.count += 1
        summary.bytes += size
        total += size
    outer.update(b"".join(lines))
    if cache is not None:
        cache.flush()
    return TreeDigest(
        digest="sha256:" + outer.hexdigest(),
        files=len(entries),
        bytes=total,
        kinds=dict(sorted(kinds.items())),
        hashed_blobs=hashed,
    )
