"""How the conformance suite judges govsnap: only with git.

- A capture is compared with the tree git itself writes from the same state
  (`cp .git/index T; GIT_INDEX_FILE=T git add -A --sparse; git write-tree`).
- A rollback is compared with a twin copy of the repository in which git checked the
  same tree out (`git read-tree -u --reset <tree>`, then `git clean` of the untracked
  files govsnap promises to remove), by `git status --porcelain=v2 --ignored`,
  `git ls-files -s -t -v --debug` (flags, not stat data) and the SHA-256 of every file.
- An undo is compared, by the same three, with the state before the rollback.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

# The index flags that carry meaning (assume-unchanged, intent-to-add, skip-worktree);
# `ls-files --debug` prints in-memory ones too.
INDEX_FLAGS = 0x8000 | (1 << 29) | (1 << 30)


def run(
    cwd: Path,
    *args: str,
    env: dict[str, str] | None = None,
    ok: tuple[int, ...] = (0,),
    input_data: bytes | None = None,
) -> bytes:
    """Run git in `cwd` and return stdout; fail the test on an unexpected exit code."""
    proc = subprocess.run(
        ["git", *args],
        cwd=cwd,
        capture_output=True,
        input=input_data,
        env={**os.environ, **(env or {})},
        check=False,
    )
    if proc.returncode not in ok:
        raise AssertionError(f"git {' '.join(args)} exited {proc.returncode}: {proc.stderr!r}")
    return proc.stdout


def git_capture(repo: Path, *, safety: bool = False) -> str:
    """Return the tree git writes from the working tree on a copy of the index:
    `git add -A --sparse` (`--ignore-errors` and assume-unchanged entries read too for a
    safety snapshot, which must leave nothing out that a checkout could overwrite)."""
    gitdir = Path(run(repo, "rev-parse", "--absolute-git-dir").decode().strip())
    copy = gitdir / "conformance-index"
    index = gitdir / "index"
    if index.exists():
        shutil.copy2(index, copy)
    env = {"GIT_INDEX_FILE": str(copy)}
    try:
        if safety and copy.exists():
            listed = run(repo, "ls-files", "-v", "-z", env=env).split(b"\0")
            assume = [r[2:] for r in listed if r[:1].islower()]
            if assume:
                run(
                    repo,
                    "update-index",
                    "-z",
                    "--no-assume-unchanged",
                    "--stdin",
                    env=env,
                    input_data=b"".join(p + b"\0" for p in assume),
                )
        args = ["add", "-A", "--sparse"] + (["--ignore-errors"] if safety else [])
        run(repo, *args, env=env, ok=(0, 1) if safety else (0,))
        return run(repo, "write-tree", env=env).decode().strip()
    finally:
        copy.unlink(missing_ok=True)


@dataclass(frozen=True)
class State:
    """What git says about a working tree and index, and every file's bytes."""

    status: bytes
    index: tuple[bytes, ...]
    files: tuple[tuple[bytes, str, str], ...]  # path, kind, sha256 (or link target)

    def differences(self, other: State) -> str:
        """Return a readable account of how two states differ ('' when equal)."""
        lines: list[str] = []
        if self.status != other.status:
            lines.append(f"git status differs:\n  {self.status!r}\n  {other.status!r}")
        if self.index != other.index:
            mine, theirs = set(self.index), set(other.index)
            lines.append(f"index differs: {sorted(mine - theirs)} vs {sorted(theirs - mine)}")
        if self.files != other.files:
            mine_f, theirs_f = set(self.files), set(other.files)
            lines.append(
                f"files differ: {sorted(mine_f - theirs_f)} vs {sorted(theirs_f - mine_f)}"
            )
        return "\n".join(lines)


def index_listing(repo: Path) -> tuple[bytes, ...]:
    """Return `git ls-files -s -t -v --debug`, one record per entry, stat data left out
    (it changes whenever a file is rewritten) but the flags kept."""
    out = run(repo, "ls-files", "-s", "-t", "-v", "--debug", "-z")
    records: list[bytes] = []
    chunks = out.split(b"\0")
    header = chunks[0]
    for chunk in chunks[1:]:
        if not header:
            break
        at = chunk.index(b"flags: ") + len(b"flags: ")
        end = chunk.index(b"\n", at)
        flags = int(chunk[at:end], 16) & INDEX_FLAGS
        records.append(header + b" flags=%x" % flags)
        header = chunk[end + 1 :]
    return tuple(records)


def files_of(root: Path) -> tuple[tuple[bytes, str, str], ...]:
    """Return (path, kind, sha256) of every file, symlink and directory below `root`,
    `.git` directories and files excluded; kind is f, x (executable), l or d."""
    found: list[tuple[bytes, str, str]] = []
    top = os.fsencode(root)
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = [d for d in dirnames if d != b".git"]
        rel_dir = os.path.relpath(dirpath, top)
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            if name == b".git":
                continue
            full = os.path.join(dirpath, name)
            rel = os.path.normpath(os.path.join(rel_dir, name))
            info = os.lstat(full)
            if stat.S_ISLNK(info.st_mode):
                found.append((rel, "l", os.fsdecode(os.readlink(full))))
            else:
                with open(full, "rb") as fh:
                    digest = hashlib.sha256(fh.read()).hexdigest()
                found.append((rel, "x" if info.st_mode & stat.S_IXUSR else "f", digest))
        if rel_dir != b".":
            found.append((os.path.normpath(rel_dir), "d", ""))
        dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))]
    return tuple(sorted(found))


def state(repo: Path) -> State:
    """Return what git (and the filesystem) say about the repository now."""
    status = run(repo, "status", "--porcelain=v2", "--ignored", "--untracked-files=all", "-z")
    return State(status, index_listing(repo), files_of(repo))


def copy_repo(repo: Path, where: Path) -> Path:
    """Return a byte-for-byte copy of a repository with its working tree (its twin), its
    index refreshed: a copied file has another inode and ctime, which would make git take
    every file for modified."""
    shutil.copytree(repo, where, symlinks=True)
    if (where / ".git").exists():
        # Files older than the index: no entry is "racily clean", which would make git's
        # checkout rewrite files whose content it cannot tell from the index's by stat.
        old = time.time() - 10
        for dirpath, dirnames, filenames in os.walk(where):
            dirnames[:] = [d for d in dirnames if d != ".git"]
            for name in filenames + dirnames:
                os.utime(os.path.join(dirpath, name), (old, old), follow_symlinks=False)
        index = Path(run(where, "rev-parse", "--git-path", "index").decode().strip())
        if not index.is_absolute():
            index = where / index
        if index.exists():
            os.utime(index, (old + 5, old + 5))
        run(where, "update-index", "-q", "--refresh", ok=(0, 1))
    return where


def _still_there(root: Path, path: bytes) -> bool:
    """Return True when `path` is still a file below real directories (read-tree may have
    replaced a directory holding it by a file or a symlink)."""
    current = os.fsencode(root)
    parts = path.split(b"/")
    for part in parts[:-1]:
        current += b"/" + part
        if not os.path.isdir(current) or os.path.islink(current):
            return False
    return os.path.lexists(current + b"/" + parts[-1])


def twin_rollback(twin: Path, tree: str, keep: tuple[bytes, ...] = ()) -> None:
    """Do in `twin` with git's own commands what govsnap promises a rollback does: check
    the tree out into the working tree and index (`git read-tree -u --reset`), then
    remove (`git clean`) the untracked files the tree lacks, except files ignored before
    or after (git's own rules), anything below `keep` (the hooks directory) and nested
    repositories; directories left empty go too, as git's checkout removes them."""
    before = run(twin, "ls-files", "-z", "--others", "--exclude-standard").split(b"\0")
    untracked = [p for p in before if p and not p.endswith(b"/")]
    run(twin, "read-tree", "-u", "--reset", tree)
    in_tree = set(run(twin, "ls-tree", "-r", "-z", "--name-only", tree).split(b"\0"))
    candidates = [
        p
        for p in untracked
        if p not in in_tree
        and not any(p == k or p.startswith(k + b"/") for k in keep)
        and _still_there(twin, p)
    ]
    if not candidates:
        return
    ignored = set(
        run(
            twin,
            "check-ignore",
            "--no-index",
            "-z",
            "--stdin",
            ok=(0, 1),
            input_data=b"".join(c + b"\0" for c in candidates),
        ).split(b"\0")
    )
    doomed = [c for c in candidates if c not in ignored]
    if not doomed:
        return
    run(
        twin,
        "--literal-pathspecs",
        "clean",
        "-f",
        "-q",
        "--",
        *(os.fsdecode(p) for p in doomed),
    )
    for path in doomed:
        parent = os.path.dirname(os.fsencode(twin) + b"/" + path)
        while parent != os.fsencode(twin):
            try:
                os.rmdir(parent)
            except OSError:
                break
            parent = os.path.dirname(parent)


def python_script(path: Path, body: str) -> str:
    """Write a Python script and return the command line that runs it."""
    path.write_text(body)
    return f"{sys.executable} {path}"


LFS_FILTER = """
import hashlib, os, sys
mode, store = sys.argv[1], sys.argv[2]
data = sys.stdin.buffer.read()
head = b"version https://git-lfs.github.com/spec/v1\\n"
if mode == "clean":
    if data.startswith(head):
        sys.stdout.buffer.write(data)
    else:
        oid = hashlib.sha256(data).hexdigest()
        os.makedirs(store, exist_ok=True)
        with open(os.path.join(store, oid), "wb") as fh:
            fh.write(data)
        sys.stdout.buffer.write(head + b"oid sha256:%s\\nsize %d\\n" % (oid.encode(), len(data)))
else:
    oid = data.split(b"oid sha256:")[1].split(b"\\n")[0].decode() if data.startswith(head) else None
    path = os.path.join(store, oid) if oid else None
    if path and os.path.exists(path):
        with open(path, "rb") as fh:
            sys.stdout.buffer.write(fh.read())
    else:
        sys.stdout.buffer.write(data)
"""

# A long-running filter (filter.<driver>.process), speaking git's pkt-line protocol
# version 2; it stores content reversed byte for byte.
PROCESS_FILTER = """
import sys
import time
inp, out = sys.stdin.buffer, sys.stdout.buffer

def read_pkt():
    size = inp.read(4)
    if not size:
        sys.exit(0)
    n = int(size, 16)
    return None if n == 0 else inp.read(n - 4)

def write_pkt(data):
    out.write(b"%04x" % (len(data) + 4) + data)

def flush():
    out.write(b"0000")
    out.flush()

def read_list():
    items = []
    while (pkt := read_pkt()) is not None:
        items.append(pkt)
    return items

read_list()
write_pkt(b"git-filter-server\\n"); write_pkt(b"version=2\\n"); flush()
read_list()
write_pkt(b"capability=clean\\n"); write_pkt(b"capability=smudge\\n"); flush()
while True:
    read_list()
    content = b"".join(read_list())
    write_pkt(b"status=success\\n"); flush()
    result = content[::-1]
    for i in range(0, len(result), 65516):
        write_pkt(result[i : i + 65516])
    flush(); flush()
"""
