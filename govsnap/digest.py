"""The canonical manifest of a tree, its SHA-256 content digest, and the digest caches."""

from __future__ import annotations

import hashlib
import marshal
import os
import re
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pygit2
from pygit2.enums import FileMode, ObjectType

from govsnap.errors import CorruptObject
from govsnap.repo import Repo

CACHE_NAME = "digest-cache.sqlite"

# Manifest formats (the payload's Govsnap-Format). Format 1 wrote `<mode> <hash> <path>\n`
# per file, which a path holding a newline makes ambiguous; format 2 ends every record
# with a NUL (which no path can hold) and adds a record per directory (`040000 - <path>/`),
# so that no two different trees, empty directories included, share a manifest.
FORMATS = (1, 2)
CURRENT_FORMAT = 2

# A manifest block holds its records with paths relative to its tree, each path preceded
# by _MARK and each record ended by _END (a file) or _DIR_END (a directory). Prefixing a
# directory is then one bytes.replace; tree names cannot hold NUL, so the markers are
# unambiguous. Paths sorted by bytes keep every directory's entries contiguous, in git's
# tree order (a directory sorts as "name/"), so a tree's block is the concatenation of its
# entries' records and its subtrees' records. The marked records serve both formats.
_MARK = b"\0\x01"
_END = b"\0\x02"
_DIR_END = b"\0\x03"
_DIR_RECORD = re.compile(rb"[0-7]{6} - \0\x01[^\0]*\0\x03")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS blobs (oid BLOB PRIMARY KEY, sha256 BLOB NOT NULL, size INTEGER NOT NULL)
    WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS trees2 (oid BLOB PRIMARY KEY, summary BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS parsed (oid BLOB PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
"""

# What a tree contributes by itself: runs of its own manifest records interleaved with
# (name, subtree oid) references, in order; its own files, bytes and kinds. (Table
# `trees2`: format-1 caches kept blocks of another shape in `trees`.)
Template = list[bytes | tuple[bytes, bytes]]


@dataclass
class TreeSummary:
    """A tree's own manifest template and figures, not counting its subtrees."""

    template: Template
    files: int
    size: int
    kinds: dict[str, tuple[int, int]]

    def dump(self) -> bytes:
        """Return the summary serialised for the cache."""
        return marshal.dumps((self.template, self.files, self.size, self.kinds))

    @classmethod
    def load(cls, raw: bytes) -> TreeSummary:
        """Return a summary read back from the cache."""
        template, files, size, kinds = marshal.loads(raw)
        return cls(template, files, size, kinds)


class DigestCache:
    """Persistent caches under `.git/govsnap/`: blob oid -> (SHA-256, size), tree oid ->
    TreeSummary, and object oid -> its parsed form (snapshot tags and notes, so listing
    10,000 snapshots does not re-parse them). All are keyed by content-addressed git ids,
    so an entry never goes stale;
    an SQLite database keeps them consistent across crashes and concurrent processes.
    Anything unreadable is treated as absent: the cache only saves work.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._broken = False
        self._blobs: list[tuple[bytes, bytes, int]] = []
        self._trees: list[tuple[bytes, bytes]] = []
        self._parsed: list[tuple[bytes, bytes]] = []

    @classmethod
    def for_repo(cls, repo: Repo) -> DigestCache:
        """Return the cache kept under `.git/govsnap/`."""
        return cls(repo.state_dir / CACHE_NAME)

    def _conn(self) -> sqlite3.Connection | None:
        if self._db is None and not self._broken:
            try:
                db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                db.executescript(_SCHEMA)
                self._db = db
            except sqlite3.Error:
                self._broken = True
        return self._db

    def _select(self, query: str, oids: list[bytes]) -> list[tuple[Any, ...]]:
        """Return the rows of `query` (which ends before its WHERE) for `oids`, in batches."""
        db = self._conn()
        rows: list[tuple[Any, ...]] = []
        if db is None:
            return rows
        try:
            for start in range(0, len(oids), 500):
                chunk = oids[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows.extend(db.execute(f"{query} WHERE oid IN ({marks})", chunk))
        except sqlite3.Error:
            self._broken = True
        return rows

    def blobs(self, oids: list[bytes]) -> dict[bytes, tuple[bytes, int]]:
        """Return raw oid -> (sha256, size) for the blobs of `oids` the cache knows."""
        rows = self._select("SELECT oid, sha256, size FROM blobs", oids)
        return {bytes(oid): (bytes(sha), int(size)) for oid, sha, size in rows}

    def trees(self, oids: list[bytes]) -> dict[bytes, TreeSummary]:
        """Return raw oid -> summary for the trees of `oids` the cache knows."""
        found: dict[bytes, TreeSummary] = {}
        for oid, raw in self._select("SELECT oid, summary FROM trees2", oids):
            try:
                found[bytes(oid)] = TreeSummary.load(bytes(raw))
            except (ValueError, EOFError, TypeError):
                continue
        return found

    def parsed(self, oids: list[bytes]) -> dict[bytes, Any]:
        """Return raw oid -> parsed value for the objects of `oids` the cache knows."""
        found: dict[bytes, Any] = {}
        for oid, raw in self._select("SELECT oid, value FROM parsed", oids):
            try:
                found[bytes(oid)] = marshal.loads(bytes(raw))
            except (ValueError, EOFError, TypeError):
                continue
        return found

    def put_parsed(self, oid: bytes, value: Any) -> None:
        """Remember the parsed form (marshal-able values only) of an immutable object."""
        self._parsed.append((oid, marshal.dumps(value)))

    def put_blob(self, oid: bytes, sha: bytes, size: int) -> None:
        """Remember a blob's digest; `flush` makes it persistent."""
        self._blobs.append((oid, sha, size))

    def put_tree(self, oid: bytes, summary: TreeSummary) -> None:
        """Remember a tree's summary; `flush` makes it persistent."""
        self._trees.append((oid, summary.dump()))

    def flush(self) -> None:
        """Write what was learnt since the last flush in one transaction, then close the
        database (the next lookup reopens it)."""
        pending = self._blobs or self._trees or self._parsed
        db = self._conn() if pending else self._db
        if db is None:
            return
        try:
            if pending:
                db.execute("BEGIN IMMEDIATE")
                db.executemany("INSERT OR IGNORE INTO blobs VALUES (?, ?, ?)", self._blobs)
                db.executemany("INSERT OR IGNORE INTO trees2 VALUES (?, ?)", self._trees)
                db.executemany("INSERT OR IGNORE INTO parsed VALUES (?, ?)", self._parsed)
                db.execute("COMMIT")
        except sqlite3.Error:
            self._broken = True
        finally:
            # Close at once: a connection left to the garbage collector can checkpoint a
            # stale WAL over a file another handle wrote meanwhile.
            db.close()
            self._db = None
        self._blobs.clear()
        self._trees.clear()
        self._parsed.clear()

    def problem(self) -> str | None:
        """Return why the cache file is unusable, or None when it is sound (or absent)."""
        if not self.path.exists():
            return None
        # A WAL database in a directory that cannot be written (a read-only mount) opens
        # only as immutable: nobody can be writing it there.
        writable = os.access(self.path.parent, os.W_OK)
        target = str(self.path) if writable else self.path.absolute().as_uri() + "?immutable=1"
        try:
            db = sqlite3.connect(target, timeout=30, uri=not writable)
            try:
                result = db.execute("PRAGMA integrity_check").fetchone()
            finally:
                db.close()
        except sqlite3.Error as exc:
            return f"digest cache {self.path} is unreadable: {exc}"
        if result is None or result[0] != "ok":
            return f"digest cache {self.path} is corrupt: {result[0] if result else '?'}"
        return None

    def reset(self) -> None:
        """Delete the cache files; the next digest rebuilds them."""
        if self._db is not None:
            self._db.close()
            self._db = None
        for suffix in ("", "-wal", "-shm"):
            Path(str(self.path) + suffix).unlink(missing_ok=True)
        self._broken = False


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
    format: int = CURRENT_FORMAT
    newline_in_path: bool = False  # format 1 cannot tell such a tree from another one


def _lookup_tree(repo: Repo, oid: pygit2.Oid | str, where: bytes) -> pygit2.Tree:
    try:
        tree = repo.git[oid]
    except (KeyError, ValueError) as exc:
        raise CorruptObject(
            f"tree {oid} ({where.decode(errors='replace') or '/'}) is missing"
        ) from exc
    except pygit2.GitError as exc:
        # libgit2 refuses to parse a tree with an unknown file mode, say; git fsck too.
        raise CorruptObject(
            f"tree {oid} ({where.decode(errors='replace') or '/'}) is malformed: {exc}"
        ) from exc
    if not isinstance(tree, pygit2.Tree):
        raise CorruptObject(f"object {oid} is not a tree")
    return tree


def kind_of(name: bytes, mode: int) -> str:
    """Return the artifact kind of a file: its lower-cased extension, or a type name."""
    if mode == FileMode.LINK:
        return "symlink"
    if mode == FileMode.COMMIT:
        return "submodule"
    stem, dot, ext = name.rpartition(b".")
    if not dot or not stem or not ext:
        return "(none)"
    return "." + ext.decode(errors="replace").lower()


class _Digester:
    """Computes tree summaries, from the cache where it has them."""

    def __init__(self, repo: Repo, cache: DigestCache | None, deep: bool) -> None:
        self.repo = repo
        self.cache = None if deep else cache
        self.odb = repo.git.odb
        self.hashed = 0
        self.summaries: dict[bytes, TreeSummary] = {}
        self.figures: dict[bytes, tuple[int, int, dict[str, tuple[int, int]]]] = {}

    def blob_digest(self, oid: pygit2.Oid, path: bytes) -> tuple[bytes, int]:
        try:
            kind, data = self.odb.read(oid)
        except (KeyError, ValueError) as exc:
            name = path.decode(errors="replace")
            raise CorruptObject(f"blob {oid} ({name}) is missing") from exc
        except pygit2.GitError as exc:  # a damaged pack or loose object
            name = path.decode(errors="replace")
            raise CorruptObject(f"blob {oid} ({name}) is unreadable: {exc}") from exc
        if kind != ObjectType.BLOB:
            raise CorruptObject(f"object {oid} is not a blob")
        sha = hashlib.sha256(data).digest()
        self.hashed += 1
        if self.cache is not None:
            self.cache.put_blob(oid.raw, sha, len(data))
        return sha, len(data)

    def entries(self, oid: pygit2.Oid, where: bytes) -> list[tuple[bytes, int, pygit2.Oid]]:
        """Return (name, mode, oid) of a tree's entries, checking git's canonical order."""
        found = []
        previous = b""
        for entry in _lookup_tree(self.repo, oid, where):
            name = entry.raw_name
            assert name is not None
            mode = int(entry.filemode)
            # Concatenating blocks yields the byte-sorted manifest only for trees in
            # git's canonical order; git fsck rejects any other tree too.
            order_key = name + b"/" if mode == FileMode.TREE else name
            if order_key <= previous:
                raise CorruptObject(
                    f"tree {oid} ({where.decode(errors='replace') or '/'}) "
                    "is not sorted or has duplicate names"
                )
            previous = order_key
            found.append((name, mode, entry.id))
        return found

    def load_summaries(self, root: pygit2.Oid) -> None:
        """Fill `summaries` for every tree below `root`: one cache query per tree depth,
        computing the trees the cache does not know."""
        frontier = [(root.raw, b"")]
        while frontier:
            wanted = [key for key, _ in frontier if key not in self.summaries]
            found = self.cache.trees(wanted) if self.cache is not None else {}
            deeper: list[tuple[bytes, bytes]] = []
            for key, where in frontier:
                if key in self.summaries:
                    continue
                summary = found.get(key) or self.summary(pygit2.Oid(raw=key), where)
                self.summaries[key] = summary
                deeper.extend(
                    (item[1], where + item[0] + b"/")
                    for item in summary.template
                    if isinstance(item, tuple)
                )
            frontier = deeper

    def summary(self, oid: pygit2.Oid, where: bytes) -> TreeSummary:
        """Return a tree's summary computed from the object store (blobs from the cache)."""
        entries = self.entries(oid, where)
        known: dict[bytes, tuple[bytes, int]] = {}
        if self.cache is not None:
            blob_modes = (FileMode.BLOB, FileMode.BLOB_EXECUTABLE, FileMode.LINK)
            known = self.cache.blobs([e.raw for _, mode, e in entries if mode in blob_modes])
        template: Template = []
        run: list[bytes] = []
        files = total = 0
        kinds: dict[str, tuple[int, int]] = {}
        for name, mode, entry_oid in entries:
            if mode == FileMode.TREE:
                run.append(f"{mode:06o} - ".encode() + _MARK + name + b"/" + _DIR_END)
                template.append(b"".join(run))
                run = []
                template.append((name, entry_oid.raw))
                continue
            if mode == FileMode.COMMIT:
                content_hash, size = str(entry_oid), 0
            else:
                cached_blob = known.get(entry_oid.raw)
                sha, size = cached_blob or self.blob_digest(entry_oid, where + name)
                content_hash = sha.hex()
            run.append(f"{mode:06o} {content_hash} ".encode() + _MARK + name + _END)
            kind = kind_of(name, mode)
            count, kind_bytes = kinds.get(kind, (0, 0))
            kinds[kind] = (count + 1, kind_bytes + size)
            files += 1
            total += size
        if run:
            template.append(b"".join(run))
        summary = TreeSummary(template, files, total, kinds)
        if self.cache is not None:
            self.cache.put_tree(oid.raw, summary)
        return summary

    def figures_of(self, root: bytes) -> tuple[int, int, dict[str, tuple[int, int]]]:
        """Return the files, bytes and kinds below a loaded tree, subtrees first from an
        explicit stack: a tree nested 10,000 deep must not exhaust Python's recursion
        limit."""
        stack = [root]
        while stack:
            key = stack[-1]
            if key in self.figures:
                stack.pop()
                continue
            subtrees = [item[1] for item in self.summaries[key].template if isinstance(item, tuple)]
            pending = [sub for sub in subtrees if sub not in self.figures]
            if pending:
                stack.extend(pending)
                continue
            summary = self.summaries[key]
            files, total = summary.files, summary.size
            kinds = dict(summary.kinds)
            for sub in subtrees:
                sub_files, sub_bytes, sub_kinds = self.figures[sub]
                files += sub_files
                total += sub_bytes
                for kind, (count, size) in sub_kinds.items():
                    old_count, old_size = kinds.get(kind, (0, 0))
                    kinds[kind] = (old_count + count, old_size + size)
            self.figures[key] = (files, total, kinds)
            stack.pop()
        return self.figures[root]

    def feed(self, root: bytes, fmt: int, sink: Callable[[bytes], object]) -> bool:
        """Feed the manifest (format `fmt`) of a loaded tree to `sink` in order; return
        whether a path holds a newline.

        Each record is written once, with its full path: prefixing whole subtree blocks
        level by level would cost the depth times the manifest (a tree 10,000 deep)."""
        newline = False
        prefix = b""
        names: list[bytes] = []
        stack = [iter(self.summaries[root].template)]
        while stack:
            item = next(stack[-1], None)
            if item is None:
                stack.pop()
                if names:
                    prefix = prefix[: -len(names.pop()) - 1]
                continue
            if isinstance(item, bytes):
                records = item.replace(_MARK, _MARK + prefix) if prefix else item
                # Only paths hold newlines: the records' modes, hashes and markers never do.
                newline = newline or b"\n" in records
                sink(manifest(records, fmt))
                continue
            name, sub = item
            names.append(name)
            prefix += name + b"/"
            stack.append(iter(self.summaries[sub].template))
        return newline


def manifest(block: bytes, fmt: int) -> bytes:
    """Return the manifest records of format `fmt` from marked records."""
    if fmt == 1:
        files_only = _DIR_RECORD.sub(b"", block)
        return files_only.replace(_MARK, b"").replace(_END, b"\n")
    return block.replace(_MARK, b"").replace(_END, b"\0").replace(_DIR_END, b"\0")


def digest_tree(
    repo: Repo,
    tree_oid: pygit2.Oid | str,
    cache: DigestCache | None = None,
    *,
    deep: bool = False,
    fmt: int = CURRENT_FORMAT,
) -> TreeDigest:
    """Return the content digest (manifest format `fmt`) of a tree, reading only what the
    cache does not know.

    With `deep`, every blob is re-read and the cache is neither consulted nor written.
    Note that a cached tree is not re-read, so a missing object below it is not noticed
    here: check object presence separately when that matters.
    """
    if fmt not in FORMATS:
        raise CorruptObject(f"unknown manifest format {fmt}")
    oid = tree_oid if isinstance(tree_oid, pygit2.Oid) else pygit2.Oid(hex=tree_oid)
    digester = _Digester(repo, cache, deep)
    digester.load_summaries(oid)
    hasher = hashlib.sha256()
    newline_in_path = digester.feed(oid.raw, fmt, hasher.update)
    if cache is not None and not deep:
        cache.flush()
    files, total, kinds = digester.figures_of(oid.raw)
    return TreeDigest(
        digest="sha256:" + hasher.hexdigest(),
        files=files,
        bytes=total,
        kinds={k: KindSummary(c, b) for k, (c, b) in sorted(kinds.items())},
        hashed_blobs=digester.hashed,
        format=fmt,
        newline_in_path=newline_in_path,
    )
