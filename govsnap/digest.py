"""The canonical manifest of a tree, its SHA-256 content digest, and the digest caches."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import marshal
import os
import re
import secrets
import sqlite3
import stat
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pygit2
from pygit2.enums import FileMode

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

# Every row carries a MAC under the user's cache key (below): whoever can write the cache
# file (a restored CI cache, a copied repository, another user of a shared one) cannot
# make it claim a digest, a tag's payload or a note's content (which verify compares).
_SCHEMA = """
DROP TABLE IF EXISTS blobs;
DROP TABLE IF EXISTS trees2;
DROP TABLE IF EXISTS parsed;
CREATE TABLE IF NOT EXISTS blobs3 (oid BLOB PRIMARY KEY, sha256 BLOB NOT NULL,
    size INTEGER NOT NULL, mac BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS trees3 (oid BLOB PRIMARY KEY, summary BLOB NOT NULL,
    mac BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS roots3 (oid BLOB NOT NULL, format INTEGER NOT NULL,
    value BLOB NOT NULL, mac BLOB NOT NULL, PRIMARY KEY (oid, format)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS parsed3 (oid BLOB PRIMARY KEY, value BLOB NOT NULL,
    mac BLOB NOT NULL) WITHOUT ROWID;
"""
KEY_NAME = "cache.key"
_KEY_BYTES = 32
_MAC_BYTES = 16


def _blob_message(oid: bytes, sha: bytes, size: int) -> bytes:
    """Return what a blob row's MAC covers: its parts have fixed lengths (an object id of
    20 or 32 bytes, a SHA-256, 8 bytes of size), so the total length tells them apart."""
    return b"blob" + oid + sha + size.to_bytes(8, "big")


def _parsed_message(oid: bytes, raw: bytes) -> bytes:
    """Return what a parsed-object row's MAC covers: the object id, length first."""
    return b"parsed" + bytes([len(oid)]) + oid + raw


def key_path() -> Path:
    """Return where the user's cache key lives: outside every repository, so that copying
    or restoring a repository's `.git` never carries the key that vouches for its cache."""
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "govsnap" / KEY_NAME


def load_key(path: Path) -> bytes | str:
    """Return the cache key at `path` (made on first use, readable by its owner only), or
    why it cannot be used: then the digest caches are not used at all."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not path.exists():
            # Written aside, then linked into place: a process killed half-way leaves no
            # empty key behind, and of two first runs one key wins whole.
            staged = path.with_name(f"{path.name}.{secrets.token_hex(8)}.tmp")
            fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(secrets.token_bytes(_KEY_BYTES))
                with contextlib.suppress(FileExistsError):
                    os.link(staged, path)
            finally:
                staged.unlink(missing_ok=True)
        info = path.stat()
        key = path.read_bytes()
    except OSError as exc:
        return f"cache key {path} is unusable: {exc.strerror or exc}"
    if info.st_uid != os.getuid() or stat.S_IMODE(info.st_mode) & 0o077:
        return f"cache key {path} is not private to its owner (chmod 600 it, or delete it)"
    if len(key) != _KEY_BYTES:
        return f"cache key {path} is damaged (delete it: the next run makes a new one)"
    return key


# What a tree contributes by itself: runs of its own manifest records interleaved with
# (name, subtree oid) references, in order; its own files, bytes and kinds.
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
    TreeSummary, (root tree oid, format) -> its TreeDigest, and object oid -> its parsed
    form (snapshot tags and notes, so listing 10,000 snapshots does not re-parse them).
    All are keyed by content-addressed git ids, so an entry never goes stale; an SQLite
    database keeps them consistent across crashes and concurrent processes. A row whose
    MAC does not hold under the user's key, and anything unreadable, is treated as
    absent: the cache only saves work, and no edit of it can change what is read.
    """

    def __init__(self, path: Path, key: bytes | str | None = None) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._broken = False
        self._key = key if key is not None else load_key(key_path())
        self._blobs: list[tuple[bytes, bytes, int, bytes]] = []
        self._trees: list[tuple[bytes, bytes, bytes]] = []
        self._roots: list[tuple[bytes, int, bytes, bytes]] = []
        self._parsed: list[tuple[bytes, bytes, bytes]] = []

    @classmethod
    def for_repo(cls, repo: Repo) -> DigestCache:
        """Return the cache kept under `.git/govsnap/`."""
        return cls(repo.state_dir / CACHE_NAME)

    def _mac(self, table: bytes, *parts: bytes) -> bytes | None:
        """Return the MAC binding a row's table, key and value (keyed BLAKE2b, which is a
        MAC: a quarter of HMAC-SHA-256's cost per row, and a rollback checks ~100,000
        blob rows), or None without a usable key."""
        if not isinstance(self._key, bytes):
            return None
        message = table + b"".join([len(p).to_bytes(8, "big") + p for p in parts])
        return hashlib.blake2b(message, key=self._key, digest_size=_MAC_BYTES).digest()

    def _vouched(self, mac: bytes, table: bytes, *parts: bytes) -> bool:
        expected = self._mac(table, *parts)
        return expected is not None and hmac.compare_digest(expected, bytes(mac))

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
        db = self._conn() if oids else None
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
        """Return raw oid -> (sha256, size) for the blobs of `oids` the cache vouches for."""
        key = self._key
        if not isinstance(key, bytes):
            return {}
        found: dict[bytes, tuple[bytes, int]] = {}
        # The MAC inline: a rollback that changed a file in each of 1,000 directories
        # checks ~100,000 rows here, and a function call per row doubled the cost.
        mac_of, equal = hashlib.blake2b, hmac.compare_digest
        for oid, sha, size, mac in self._select("SELECT oid, sha256, size, mac FROM blobs3", oids):
            oid, sha = bytes(oid), bytes(sha)
            if not isinstance(size, int) or not 0 <= size < 1 << 63:
                continue
            message = _blob_message(oid, sha, size)
            if equal(mac_of(message, key=key, digest_size=_MAC_BYTES).digest(), bytes(mac)):
                found[oid] = (sha, size)
        return found

    def trees(self, oids: list[bytes]) -> dict[bytes, TreeSummary]:
        """Return raw oid -> summary for the trees of `oids` the cache vouches for."""
        if not isinstance(self._key, bytes):
            return {}
        found: dict[bytes, TreeSummary] = {}
        for oid, raw, mac in self._select("SELECT oid, summary, mac FROM trees3", oids):
            oid, raw = bytes(oid), bytes(raw)
            if not self._vouched(mac, b"tree", oid, raw):
                continue
            try:
                found[oid] = TreeSummary.load(raw)
            except (ValueError, EOFError, TypeError):
                continue
        return found

    def roots(self, keys: list[tuple[bytes, int]]) -> dict[tuple[bytes, int], TreeDigest]:
        """Return (root tree oid, format) -> digest for the `keys` the cache vouches for."""
        if not isinstance(self._key, bytes):
            return {}
        wanted = set(keys)
        found: dict[tuple[bytes, int], TreeDigest] = {}
        query = "SELECT oid, format, value, mac FROM roots3"
        for oid, fmt, raw, mac in self._select(query, sorted({oid for oid, _ in keys})):
            oid, raw = bytes(oid), bytes(raw)
            if (oid, fmt) not in wanted or not self._vouched(mac, b"root", oid, b"%d" % fmt, raw):
                continue
            try:
                found[(oid, fmt)] = load_digest(raw, fmt)
            except (ValueError, EOFError, TypeError):
                continue
        return found

    def parsed(self, oids: list[bytes]) -> dict[bytes, Any]:
        """Return raw oid -> parsed value for the objects of `oids` the cache vouches for."""
        if not isinstance(self._key, bytes):
            return {}
        found: dict[bytes, Any] = {}
        key = self._key
        mac_of, equal = hashlib.blake2b, hmac.compare_digest  # inline: 20,000 rows a list
        for oid, raw, mac in self._select("SELECT oid, value, mac FROM parsed3", oids):
            oid, raw = bytes(oid), bytes(raw)
            expected = mac_of(_parsed_message(oid, raw), key=key, digest_size=_MAC_BYTES)
            if not equal(expected.digest(), bytes(mac)):
                continue
            try:
                found[oid] = marshal.loads(raw)
            except (ValueError, EOFError, TypeError):
                continue
        return found

    def put_parsed(self, oid: bytes, value: Any) -> None:
        """Remember the parsed form (marshal-able values only) of an immutable object."""
        if isinstance(self._key, bytes):
            raw = marshal.dumps(value)
            message = _parsed_message(oid, raw)
            mac = hashlib.blake2b(message, key=self._key, digest_size=_MAC_BYTES).digest()
            self._parsed.append((oid, raw, mac))

    def put_blob(self, oid: bytes, sha: bytes, size: int) -> None:
        """Remember a blob's digest; `flush` makes it persistent."""
        if isinstance(self._key, bytes):
            message = _blob_message(oid, sha, size)
            mac = hashlib.blake2b(message, key=self._key, digest_size=_MAC_BYTES).digest()
            self._blobs.append((oid, sha, size, mac))

    def put_tree(self, oid: bytes, summary: TreeSummary) -> None:
        """Remember a tree's summary; `flush` makes it persistent."""
        raw = summary.dump()
        mac = self._mac(b"tree", oid, raw)
        if mac is not None:
            self._trees.append((oid, raw, mac))

    def put_root(self, oid: bytes, digest: TreeDigest) -> None:
        """Remember a root tree's digest in its format; `flush` makes it persistent."""
        raw = dump_digest(digest)
        mac = self._mac(b"root", oid, b"%d" % digest.format, raw)
        if mac is not None:
            self._roots.append((oid, digest.format, raw, mac))

    def flush(self) -> None:
        """Write what was learnt since the last flush in one transaction, then close the
        database (the next lookup reopens it)."""
        pending = self._blobs or self._trees or self._roots or self._parsed
        db = self._conn() if pending else self._db
        if db is None:
            return
        try:
            if pending:
                # REPLACE: a row that failed its MAC was recomputed, and the honest one wins.
                db.execute("BEGIN IMMEDIATE")
                db.executemany("INSERT OR REPLACE INTO blobs3 VALUES (?, ?, ?, ?)", self._blobs)
                db.executemany("INSERT OR REPLACE INTO trees3 VALUES (?, ?, ?)", self._trees)
                db.executemany("INSERT OR REPLACE INTO roots3 VALUES (?, ?, ?, ?)", self._roots)
                db.executemany("INSERT OR REPLACE INTO parsed3 VALUES (?, ?, ?)", self._parsed)
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
        self._roots.clear()
        self._parsed.clear()

    def key_problem(self) -> str | None:
        """Return why the user's cache key cannot vouch for rows (the cache is then not
        used), or None."""
        return self._key if isinstance(self._key, str) else None

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


def dump_digest(digest: TreeDigest) -> bytes:
    """Return a digest and its figures serialised for the cache."""
    kinds = {k: (v.count, v.bytes) for k, v in digest.kinds.items()}
    return marshal.dumps((digest.digest, digest.files, digest.bytes, kinds, digest.newline_in_path))


def load_digest(raw: bytes, fmt: int) -> TreeDigest:
    """Return a digest read back from the cache (nothing hashed to get it)."""
    digest, files, total, kinds, newline = marshal.loads(raw)
    if not isinstance(digest, str) or not isinstance(kinds, dict):
        raise TypeError("not a cached digest")
    summaries = {str(k): KindSummary(int(c), int(b)) for k, (c, b) in kinds.items()}
    return TreeDigest(digest, int(files), int(total), summaries, 0, fmt, bool(newline))


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


# Files are read in at most this many bytes at a time.
_CHUNK = 1 << 20


def file_digest(path: bytes, oid: bytes) -> tuple[bytes, int] | None:
    """Return (SHA-256, size) of the regular file at `path` when it holds exactly the bytes
    of blob `oid` (git's object id of them is `oid`), else None; read once, in chunks."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return None
        git_id = hashlib.new("sha1" if len(oid) == 20 else "sha256", usedforsecurity=False)
        git_id.update(b"blob %d\0" % info.st_size)
        content = hashlib.sha256()
        # Reads sized to what is left: a fixed 1 MiB read allocates 1 MiB per small file.
        left = info.st_size
        while left > 0:
            chunk = os.read(fd, min(left, _CHUNK))
            if not chunk:
                return None  # it shrank while read
            git_id.update(chunk)
            content.update(chunk)
            left -= len(chunk)
        if os.read(fd, 1):
            return None  # it grew while read
    except OSError:
        return None
    finally:
        os.close(fd)
    if git_id.digest() != oid:
        return None
    return content.digest(), info.st_size


class Digester:
    """Computes the digests of trees, each tree and blob once however many roots share
    it, from the cache where it vouches for them (never with `deep`).

    With `workdir` (the tree was just captured from there), a blob is hashed from its
    working-tree file when git's id of the file's bytes is the blob's: no inflating of
    what git just stored, and a large file is read in chunks, never held whole.
    """

    def __init__(
        self,
        repo: Repo,
        cache: DigestCache | None,
        deep: bool = False,
        workdir: Path | None = None,
    ) -> None:
        self.repo = repo
        self.workdir = workdir
        self.cache = None if deep else cache
        self.odb = repo.git.odb
        self.hashed = 0
        self.summaries: dict[bytes, TreeSummary] = {}
        self.figures: dict[bytes, tuple[int, int, dict[str, tuple[int, int]]]] = {}
        self.roots: dict[tuple[bytes, int], TreeDigest] = {}

    def prefetch(self, keys: list[tuple[pygit2.Oid, int]]) -> None:
        """Read the cached digests of many (root tree, format) in one query."""
        if self.cache is not None:
            wanted = [(oid.raw, fmt) for oid, fmt in keys if (oid.raw, fmt) not in self.roots]
            self.roots.update(self.cache.roots(wanted))

    def digest(self, oid: pygit2.Oid, fmt: int) -> TreeDigest:
        """Return the content digest of tree `oid` in manifest format `fmt` (remembered in
        the cache; `flush` it to keep it)."""
        if fmt not in FORMATS:
            raise CorruptObject(f"unknown manifest format {fmt}")
        known = self.roots.get((oid.raw, fmt))
        if known is None and self.cache is not None:
            known = self.cache.roots([(oid.raw, fmt)]).get((oid.raw, fmt))
        if known is not None:
            return known
        before = self.hashed
        self.load_summaries(oid)
        hasher = hashlib.sha256()
        newline_in_path = self.feed(oid.raw, fmt, hasher.update)
        files, total, kinds = self.figures_of(oid.raw)
        result = TreeDigest(
            digest="sha256:" + hasher.hexdigest(),
            files=files,
            bytes=total,
            kinds={k: KindSummary(c, b) for k, (c, b) in sorted(kinds.items())},
            hashed_blobs=self.hashed - before,
            format=fmt,
            newline_in_path=newline_in_path,
        )
        self.roots[(oid.raw, fmt)] = replace(result, hashed_blobs=0)
        if self.cache is not None:
            self.cache.put_root(oid.raw, result)
        return result

    def flush(self) -> None:
        """Keep what the cache learnt."""
        if self.cache is not None:
            self.cache.flush()

    def blob_digest(self, oid: pygit2.Oid, path: bytes) -> tuple[bytes, int]:
        try:
            blob = self.repo.git[oid]
        except (KeyError, ValueError) as exc:
            name = path.decode(errors="replace")
            raise CorruptObject(f"blob {oid} ({name}) is missing") from exc
        except pygit2.GitError as exc:  # a damaged pack or loose object
            name = path.decode(errors="replace")
            raise CorruptObject(f"blob {oid} ({name}) is unreadable: {exc}") from exc
        if not isinstance(blob, pygit2.Blob):
            raise CorruptObject(f"object {oid} is not a blob")
        # Hashed in place through the buffer libgit2 read it into: odb.read's bytes were a
        # second copy (a 300 MB file took 600 MB).
        with memoryview(blob) as content:
            sha = hashlib.sha256(content).digest()
            size = content.nbytes
        self.hashed += 1
        if self.cache is not None:
            self.cache.put_blob(oid.raw, sha, size)
        return sha, size

    def blob_digests(
        self, wanted: list[tuple[pygit2.Oid, bytes]]
    ) -> dict[bytes, tuple[bytes, int]]:
        """Return raw oid -> (SHA-256, size) of blobs (oid, path): from the working-tree
        file where it holds the blob, else from the object store."""
        found: dict[bytes, tuple[bytes, int]] = {}
        if self.workdir is not None and wanted:
            top = os.fsencode(self.workdir) + b"/"
            # One file after another: reading them in threads measured slower (10,000
            # files of ~10 KB, 2 busy cores: 2.6-3.9 s against 1.3 s), the GIL held
            # between small reads.
            for oid, path in wanted:
                result = file_digest(top + path, oid.raw)
                if result is not None:
                    found[oid.raw] = result
                    self.hashed += 1
                    if self.cache is not None:
                        self.cache.put_blob(oid.raw, *result)
        for oid, path in wanted:
            if oid.raw not in found:
                found[oid.raw] = self.blob_digest(oid, path)
        return found

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
        blob_modes = (FileMode.BLOB, FileMode.BLOB_EXECUTABLE, FileMode.LINK)
        if self.cache is not None:
            known = self.cache.blobs([e.raw for _, mode, e in entries if mode in blob_modes])
        # A symbolic link's blob is its target, which reading the file would follow.
        regular = (FileMode.BLOB, FileMode.BLOB_EXECUTABLE)
        wanted = [(e, where + name) for name, mode, e in entries if mode in regular]
        known.update(self.blob_digests([(e, p) for e, p in wanted if e.raw not in known]))
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
    workdir: Path | None = None,
) -> TreeDigest:
    """Return the content digest (manifest format `fmt`) of a tree, reading only what the
    cache does not know (and, with `workdir`, what the working tree does not hold).

    With `deep`, every blob is re-read and the cache is neither consulted nor written.
    Note that a cached tree is not re-read, so a missing object below it is not noticed
    here: check object presence separately when that matters.
    """
    oid = tree_oid if isinstance(tree_oid, pygit2.Oid) else pygit2.Oid(hex=tree_oid)
    digester = Digester(repo, cache, deep, None if deep else workdir)
    digest = digester.digest(oid, fmt)
    digester.flush()
    return digest
