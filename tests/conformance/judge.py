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
import json
import os
import shlex
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.helpers import Cli, git, write_files

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


# --- a case, and how it is judged (shared by states_test and edges_test) ---------------


BASE: dict[str, str | bytes] = {
    "README.md": "hello\n",
    "src/app.py": "print('v1')\n",
    "src/lib/util.py": "def f():\n    return 1\n",
    "docs/guide.md": "# Guide\n",
    "bin/tool.sh": "#!/bin/sh\necho tool\n",
}


Step = Callable[[Path], None]


def nothing(_repo: Path) -> None:
    """Leave the state as it is."""


@dataclass(frozen=True)
class Case:
    """One working-tree state: how A and B are made, and what git does with them."""

    id: str
    git_does: str
    target: Step  # base -> state A (snapshotted)
    current: Step  # A -> state B (rolled back from, and restored by the undo)
    setup: Step = nothing  # configuration and commits before A
    keep: tuple[bytes, ...] = ()  # paths a rollback leaves alone (the hooks directory)
    rehearse: bool = True
    rehearse_safety: bool = True  # rehearse the safety snapshot too
    twin_prepare: str = ""  # what a user runs before git's checkout where git refuses


def sh(repo: Path, command: str) -> None:
    """Run a shell command line (git and coreutils) in the repository."""
    import subprocess

    proc = subprocess.run(command, shell=True, cwd=repo, capture_output=True, check=False)
    assert proc.returncode == 0, f"{command}: {proc.stderr.decode()}"


def write(spec: dict[str, str | bytes]) -> Step:
    """Return a step that writes the files of `spec` (creating directories)."""

    def step(repo: Path) -> None:
        write_files(repo, spec)

    return step


def steps(*parts: Step | str) -> Step:
    """Return a step running `parts` in order: steps, or shell command lines."""

    def step(repo: Path) -> None:
        for part in parts:
            if isinstance(part, str):
                sh(repo, part)
            else:
                part(repo)

    return step


def commit(message: str) -> str:
    return f"git add -A && git commit -q -m {shlex.quote(message)}"


def lfs_setup(repo: Path) -> None:
    store = repo.parent / f"{repo.name}-lfs-store"
    command = python_script(repo.parent / f"{repo.name}-lfs.py", LFS_FILTER)
    git(repo, "config", "filter.lfs.clean", f"{command} clean {store}")
    git(repo, "config", "filter.lfs.smudge", f"{command} smudge {store}")
    git(repo, "config", "filter.lfs.required", "true")
    write_files(repo, {".gitattributes": "*.bin filter=lfs -text\n", "data.bin": b"\0v1" * 5000})
    sh(repo, commit("large file"))


def pointer_on_disk(repo: Path) -> None:
    """Replace data.bin by the pointer git stores for it, as a clone made with
    GIT_LFS_SKIP_SMUDGE=1 has it."""
    blob = git(repo, "rev-parse", "HEAD:data.bin").strip()
    (repo / "data.bin").write_bytes(run(repo, "cat-file", "blob", blob))


def create(cli: Cli, repo: Path, *args: str) -> tuple[str, str]:
    """Create a snapshot; return its id and tree."""
    result = cli(repo, "create", "--json", *args)
    assert result.code == 0, result.err
    ident = json.loads(result.out)["snapshot"]["id"]
    tree = git(repo, "rev-parse", f"refs/govsnap/snapshots/{ident}^{{tree}}").strip()
    return ident, tree


def rollback(cli: Cli, repo: Path, *args: str) -> dict[str, object]:
    result = cli(repo, "rollback", "--yes", "--json", *args)
    assert result.code == 0, result.err
    data: dict[str, object] = json.loads(result.out)
    return data


def rehearse_passes(cli: Cli, repo: Path, ident: str) -> None:
    result = cli(repo, "rehearse", ident, "--json")
    assert result.out, result.err
    report = json.loads(result.out)
    failed = {g["name"]: g["detail"] for g in report["gates"] if not g["passed"]}
    assert result.code == 0 and not failed, failed


def judge_case(cli: Cli, repo: Path, case: Case, tmp_path: Path) -> None:
    """Run create, rollback, undo and rehearse on a case and judge each with git."""
    case.target(repo)
    index = repo / ".git" / "index"
    index_before = index.read_bytes() if index.exists() else None
    want = git_capture(repo)
    a, tree = create(cli, repo)
    assert tree == want, "create captured another tree than git add -A + write-tree"
    assert (index.read_bytes() if index.exists() else None) == index_before

    case.current(repo)
    before = state(repo)
    want_safety = git_capture(repo, safety=True)
    twin = copy_repo(repo, tmp_path / "twin")
    if case.twin_prepare:
        sh(twin, case.twin_prepare)

    done = rollback(cli, repo, a)
    safety = str(done["safety_snapshot"])
    safety_tree = git(repo, "rev-parse", f"refs/govsnap/snapshots/{safety}^{{tree}}").strip()
    assert safety_tree == want_safety, "the safety snapshot is not what git add -A captures"
    twin_rollback(twin, tree, case.keep)
    after, by_git = state(repo), state(twin)
    assert after == by_git, "rollback differs from git's checkout:\n" + after.differences(by_git)

    undo = shlex.split(str(done["undo"]))
    assert undo[:3] == ["govsnap", "rollback", safety]
    rollback(cli, repo, *undo[2:])
    restored = state(repo)
    assert restored == before, "the undo did not restore the state:\n" + restored.differences(
        before
    )
    if case.rehearse:
        rehearse_passes(cli, repo, a)
    if case.rehearse and case.rehearse_safety:
        rehearse_passes(cli, repo, safety)
