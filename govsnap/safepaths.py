"""Tree entries that are unsafe to check out: git's verify_path rules, applied before
anything is written, plus the symlink-then-path-through-symlink shapes."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pygit2
from pygit2.enums import FileMode, ObjectType

from govsnap.errors import CheckFailed, CorruptObject
from govsnap.repo import Repo

CHECKOUT_MODES = frozenset(
    {FileMode.BLOB, FileMode.BLOB_EXECUTABLE, FileMode.LINK, FileMode.TREE, FileMode.COMMIT}
)

# Code points HFS+ ignores when comparing names, so ".g\u200cit" is ".git" on a Mac
# (git's is_hfs_dotgit skips the same ones).
_HFS_IGNORABLE = re.compile("[\u200c-\u200f\u202a-\u202e\u206a-\u206f\ufeff]")
_DRIVE = re.compile(rb"^[A-Za-z]:")
# NTFS 8.3 short names git refuses: GIT~1 for .git; GITMOD~N and GI7EBA~N for .gitmodules.
_NTFS_SHORT_GIT = re.compile(r"^git~1$")
_NTFS_SHORT_GITMODULES = re.compile(r"^(gitmod~[1-4]|gi7eba~[1-9])$")
# Names that cannot match any rule below (ASCII, no '.' or 'g' first, no ':' or '\\'):
# the common case, answered without decoding.
_PLAIN = re.compile(rb"[A-FH-Za-fh-z0-9_+@=,%-][A-Za-z0-9_+@=,%.~ -]*\Z")


_SHOWN = 120  # characters of a path shown in a message


class UnsafeTree(CheckFailed):
    """A snapshot tree holds an entry that could write outside the working tree."""


@dataclass(frozen=True)
class UnsafeEntry:
    """One refused tree entry: where it is and why."""

    path: bytes
    reason: str

    def describe(self) -> str:
        """Return `'path': reason`, with the path shown safely (and shortened: a path
        thousands of directories deep would fill the screen)."""
        shown = self.path.decode(errors="backslashreplace")
        if len(shown) > _SHOWN:
            shown = f"{shown[: _SHOWN // 2]}…{shown[-_SHOWN // 4 :]}"
        return f"{shown!r}: {self.reason}"


def _ntfs_strip(name: str) -> str:
    """Return what NTFS makes of a name: alternate data streams cut, trailing dots and
    spaces dropped, case folded."""
    return name.split(":", 1)[0].rstrip(". ").lower()


def _hfs_fold(name: str) -> str:
    """Return what HFS+ makes of a name: ignorable code points removed, case folded."""
    return _HFS_IGNORABLE.sub("", name).lower()


def _is_dotgit(component: str) -> bool:
    return (
        _hfs_fold(component) == ".git"
        or _ntfs_strip(component) == ".git"
        or bool(_NTFS_SHORT_GIT.match(_ntfs_strip(component)))
    )


def _is_dotgitmodules(component: str) -> bool:
    ntfs = _ntfs_strip(component)
    return (
        _hfs_fold(component) == ".gitmodules"
        or ntfs == ".gitmodules"
        or bool(_NTFS_SHORT_GITMODULES.match(ntfs))
    )


def unsafe_name(name: bytes, mode: int) -> str | None:
    """Return why a tree entry name must not be checked out, or None when it is safe.

    These are git's verify_path rules with core.protectNTFS and core.protectHFS both on,
    whatever the platform: a snapshot fetched on Linux may be restored on a Mac.
    """
    if mode in CHECKOUT_MODES and _PLAIN.match(name):
        return None
    if not name:
        return "empty name"
    if b"\0" in name:
        return "name contains NUL"
    if b"/" in name:
        return "name contains '/'"
    if name in (b".", b".."):
        return f"name is {name.decode()!r}"
    if name.startswith(b"\\") or _DRIVE.match(name):
        return "absolute-looking name"
    if mode not in CHECKOUT_MODES:
        return f"unsupported mode {mode:06o}"
    text = name.decode(errors="replace")
    # Windows also splits names at backslashes: "..\\x" climbs out there.
    for component in text.split("\\"):
        if component in (".", ".."):
            return f"name has a {component!r} component"
        if _is_dotgit(component):
            return "name is a variant of .git"
        if mode == FileMode.LINK and _is_dotgitmodules(component):
            return "symlinked .gitmodules"
    return None


def _fold(name: bytes) -> str:
    """Return the name as the most forgiving filesystem (NTFS, HFS+, case-insensitive)
    sees it, for collision checks."""
    return _ntfs_strip(_hfs_fold(name.decode(errors="replace")))


def tree_problems(entries: Iterable[tuple[bytes, int]]) -> list[tuple[bytes, str]]:
    """Return (name, reason) for each unsafe entry of one tree, siblings compared."""
    problems: list[tuple[bytes, str]] = []
    seen: dict[bytes, int] = {}
    links: list[bytes] = []
    items = list(entries)
    for name, mode in items:
        reason = unsafe_name(name, mode)
        if reason is not None:
            problems.append((name, reason))
        if name in seen:
            problems.append((name, "the name appears twice in one tree"))
        seen[name] = mode
        if mode == FileMode.LINK:
            links.append(name)
    if links:
        # A symlink and a directory whose names a filesystem may treat as one: the
        # directory's files would be written through the symlink.
        folded: dict[str, list[bytes]] = {}
        for name, _mode in items:
            folded.setdefault(_fold(name), []).append(name)
        for link in links:
            if len(folded[_fold(link)]) > 1:
                problems.append((link, "symlink collides with another entry of the same name"))
    return problems


# One raw tree entry: octal mode, space, name (anything but NUL, possibly empty), NUL,
# 20-byte id. Parsing the raw object ourselves sees every entry as stored (libgit2
# refuses some names outright), and costs a fraction of building pygit2 entry objects.
_RAW_ENTRY = re.compile(rb"([0-7]{5,6}) ([^\0]*)\0(.{20})", re.DOTALL)
_MODES = {
    b"100644": FileMode.BLOB,
    b"100755": FileMode.BLOB_EXECUTABLE,
    b"120000": FileMode.LINK,
    b"40000": FileMode.TREE,
    b"160000": FileMode.COMMIT,
}
SAFE_TREES = "safe-trees"


def _raw_entries(repo: Repo, oid: bytes) -> list[tuple[bytes, int, bytes]]:
    """Return (name, mode, raw id) of each entry of a tree object, as stored."""
    kind, data = repo.git.odb.read(pygit2.Oid(raw=oid))
    if kind != ObjectType.TREE:
        raise CorruptObject(f"object {pygit2.Oid(raw=oid)} is not a tree")
    raw = bytes(data)
    entries: list[tuple[bytes, int, bytes]] = []
    pos = 0
    for match in _RAW_ENTRY.finditer(raw):
        if match.start() != pos:
            break
        mode = match.group(1)
        entries.append((match.group(2), _MODES.get(mode) or int(mode, 8), match.group(3)))
        pos = match.end()
    if pos != len(raw):
        raise CorruptObject(f"tree {pygit2.Oid(raw=oid)} does not parse at byte {pos}")
    return entries


# A checkout writes each path relative to the top of the work tree (git works from
# there): a path longer than PATH_MAX, or a name longer than NAME_MAX, cannot be written,
# and a tree nested thousands deep would otherwise fail half-way through the checkout.
PATH_LIMIT = 4095
NAME_LIMIT = 255


class SafeTrees:
    """Tree ids already found safe, with the length of the longest path inside each, kept
    in `.git/govsnap/safe-trees` (a hex id and a length a line).

    A tree id names its whole content, so a tree found safe once is safe forever (where
    its longest path still fits below its place) and a rollback to a snapshot sharing
    most directories with earlier ones checks only the new ones. Lines are appended
    whole; a torn last line (or one without a length, as older versions wrote) is ignored.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.known: dict[bytes, int] = {}
        self.new: list[tuple[bytes, int]] = []
        if path is not None:
            try:
                lines = path.read_bytes().split(b"\n")
            except FileNotFoundError:
                lines = []
            for line in lines:
                oid, _, longest = line.partition(b" ")
                if len(oid) == 40 and longest.isdigit():
                    self.known[bytes.fromhex(oid.decode())] = int(longest)

    def fits(self, oid: bytes, prefix: bytes) -> bool:
        """Return True for a tree known safe whose paths fit below `prefix`."""
        longest = self.known.get(oid)
        return longest is not None and len(prefix) + longest <= PATH_LIMIT

    def add(self, oid: bytes, longest: int) -> None:
        """Remember a tree found safe and the length of the longest path in it."""
        self.known[oid] = longest
        self.new.append((oid, longest))

    def flush(self) -> None:
        """Append the trees found safe since loading."""
        if self.path is None or not self.new:
            return
        data = b"".join(oid.hex().encode() + b" %d\n" % longest for oid, longest in self.new)
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
        except OSError:
            pass  # the cache only saves work
        self.new.clear()


@dataclass
class _Frame:
    """A tree being checked: its subtrees still to visit, whether all is safe so far,
    and the longest path below it found so far."""

    oid: bytes
    subtrees: list[tuple[bytes, bytes]]  # (name, raw id)
    ok: bool
    longest: int
    next: int = 0


def find_unsafe(
    repo: Repo, tree_oid: pygit2.Oid | str, limit: int = 20, *, cache: bool = True
) -> list[UnsafeEntry]:
    """Return up to `limit` unsafe entries below a tree (an unreadable tree is one).

    The walk keeps its own stack: a tree nested 10,000 deep must not exhaust Python's
    recursion limit (it stops at the first path too long to check out)."""
    found: list[UnsafeEntry] = []
    safe = SafeTrees(repo.state_dir / SAFE_TREES if cache else None)

    def enter(oid: bytes, prefix: bytes) -> _Frame | None:
        try:
            entries = _raw_entries(repo, oid)
        except (KeyError, ValueError, pygit2.GitError, CorruptObject) as exc:
            found.append(UnsafeEntry(prefix.rstrip(b"/") or b".", f"unreadable tree: {exc}"))
            return None
        problems = tree_problems((name, mode) for name, mode, _ in entries)
        for name, _mode, _child in entries:
            if len(name) > NAME_LIMIT:
                problems.append((name, f"name is {len(name)} bytes, more than {NAME_LIMIT}"))
            elif len(prefix) + len(name) > PATH_LIMIT:
                problems.append(
                    (name, f"path is longer than a checkout can write ({PATH_LIMIT} bytes)")
                )
        for name, reason in problems:
            found.append(UnsafeEntry(prefix + name, reason))
        bad = {name for name, _ in problems}
        longest = max((len(name) for name, _, _ in entries), default=0)
        subtrees = [(name, child) for name, mode, child in entries if mode == FileMode.TREE]
        return _Frame(oid, [t for t in subtrees if t[0] not in bad], not problems, longest)

    root = pygit2.Oid(hex=str(tree_oid)).raw
    stack: list[tuple[_Frame, bytes]] = []
    if not safe.fits(root, b""):
        first = enter(root, b"")
        if first is not None:
            stack.append((first, b""))
    while stack:
        frame, prefix = stack[-1]
        if frame.next < len(frame.subtrees) and len(found) < limit:
            name, child = frame.subtrees[frame.next]
            frame.next += 1
            where = prefix + name + b"/"
            if safe.fits(child, where):
                frame.longest = max(frame.longest, len(name) + 1 + safe.known[child])
                continue
            sub = enter(child, where)
            if sub is None:
                frame.ok = False
            else:
                stack.append((sub, where))
            continue
        stack.pop()
        complete = frame.next >= len(frame.subtrees)
        if frame.ok and complete:
            safe.add(frame.oid, frame.longest)
        if stack:
            parent, _ = stack[-1]
            parent.ok = parent.ok and frame.ok and complete
            name = parent.subtrees[parent.next - 1][0]
            parent.longest = max(parent.longest, len(name) + 1 + frame.longest)
    safe.flush()
    return found[:limit]


def check_tree(repo: Repo, tree_oid: pygit2.Oid | str, what: str) -> None:
    """Raise UnsafeTree naming the first unsafe entries below a tree, if there are any."""
    found = find_unsafe(repo, tree_oid)
    if found:
        shown = "; ".join(e.describe() for e in found[:3])
        more = f" (and {len(found) - 3} more)" if len(found) > 3 else ""
        raise UnsafeTree(f"refusing to check out {what}: unsafe tree entry {shown}{more}")
