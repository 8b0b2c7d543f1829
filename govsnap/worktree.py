"""Capture and checkout of the working tree through the git binary (DESIGN.md section 8).

A capture is what `git add -A` does on a temporary copy of the index, followed by
`git write-tree`; a checkout is what `git read-tree -m -u` does from the captured state
to the target, so that filter drivers, `text`/`eol` attributes and `core.autocrlf`,
sparse checkout, submodules, nested repositories and intent-to-add entries behave
exactly as git makes them behave. The user's `.git/index` is only ever replaced whole,
under git's own `index.lock`, by an index git wrote.

Paths are bytes here, as git prints them with -z: a name need not be UTF-8.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import socket
import stat
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pygit2

from govsnap.errors import EnvironmentProblem
from govsnap.repo import LOCK_TOKEN_VARIABLE, Repo, run_git

CAPTURE_ATTEMPTS = 3  # captures of a working tree that changes while it is read
ZERO_OID = "0" * 40
GITLINK = 0o160000
SYMLINK = 0o120000
TREE = 0o040000
REGULAR = (0o100644, 0o100755)

# The index flags that carry meaning on disk (git's CE_VALID, CE_INTENT_TO_ADD and
# CE_SKIP_WORKTREE); `ls-files --debug` prints them among in-memory ones.
ASSUME_UNCHANGED = 0x8000
INTENT_TO_ADD = 1 << 29
SKIP_WORKTREE = 1 << 30
INDEX_FLAGS = ASSUME_UNCHANGED | INTENT_TO_ADD | SKIP_WORKTREE

# Attributes under which git's checkout may write other bytes than the blob holds.
CONVERSION_ATTRIBUTES = ("text", "eol", "crlf", "filter", "ident", "working-tree-encoding")

# Advice git would print on every capture: the embedded-repository hint repeats its
# warning in six lines, the sparse hint concerns `git add` typed by a user.
_QUIET = ["-c", "advice.addEmbeddedRepo=false", "-c", "advice.updateSparsePath=false"]
_LOCK_MARK = b"govsnap "
# One record of `git ls-files --stage --debug -z`: "<mode> <oid> <stage>\t<path>\0", then
# five lines of stat data, the last "  size: N\tflags: <hex>\n".
_LS_FILES_DEBUG = re.compile(
    rb"([0-7]+) ([0-9a-f]+) ([0-3])\t([^\0]*)\0[^\0]*?flags: ([0-9a-f]+)\n"
)
# More paths than this are filtered from a full listing instead of passed to git as
# pathspecs (the command line has a size limit, and git matches pathspecs one by one).
_MAX_PATHSPECS = 64


# --- running git on an index file ----------------------------------------------------------


def git(
    repo: Repo,
    *args: str,
    index: Path | None = None,
    input: bytes | None = None,
    check: bool = True,
    env: Mapping[str, str] | None = None,
) -> bytes:
    """Run git at the top of the work tree (in a bare repository, its git directory) on
    index file `index` and return its stdout.

    Without `index`, git is pointed at an index that does not exist (an empty one): the
    commands that only read objects then work however damaged the user's index is.
    """
    extra = dict(env or {})
    extra["GIT_INDEX_FILE"] = str(index if index is not None else no_index(repo))
    proc = repo.git_cmd(*args, input=input, env=extra, check=False)
    if check and proc.returncode != 0:
        raise EnvironmentProblem(f"git {_command(args)} failed: {git_error(proc.stderr)}")
    return proc.stdout


def user_index(repo: Repo) -> Path:
    """Return the repository's own index file (`.git/index`, a linked worktree's own)."""
    return repo.gitdir / "index"


def no_index(repo: Repo) -> Path:
    """Return the path of an index file that never exists."""
    return repo.state_dir / "no-index"


def _command(args: Sequence[str]) -> str:
    """Return the git subcommand of an argument list (after any -c options)."""
    words = list(args)
    while len(words) > 1 and words[0] in ("-c", "--literal-pathspecs"):
        words = words[2:] if words[0] == "-c" else words[1:]
    return words[0] if words else "?"


def git_error(stderr: bytes) -> str:
    """Return the most specific line git printed about a failure: its first error, else
    its last line."""
    lines = [line.strip() for line in stderr.decode(errors="replace").splitlines()]
    lines = [line for line in lines if line and not line.startswith("hint:")]
    for prefix in ("error: ", "fatal: "):
        for line in lines:
            if line.startswith(prefix):
                return line.removeprefix(prefix)
    return lines[-1] if lines else "no message"


def fs_path(path: bytes) -> str:
    """Return a git path as the str that subprocess and os turn back into the same bytes."""
    return os.fsdecode(path)


def _below_any(path: bytes, paths: set[bytes]) -> bool:
    """Return True when `path` or a directory above it is in `paths` (a set: one lookup
    per level, however many paths there are)."""
    while True:
        if path in paths:
            return True
        if b"/" not in path:
            return False
        path = path.rsplit(b"/", 1)[0]


def covered(path: bytes, paths: Sequence[bytes]) -> bool:
    """Return True when `path` is one of `paths` or lies below one (always, without paths)."""
    return not paths or any(path == p or path.startswith(p + b"/") for p in paths)


# --- the index lock ------------------------------------------------------------------------


class IndexLock:
    """`index.lock` held as git's own commands hold it while they change the index, so no
    `git add` or `git commit` interleaves with a rollback; the new index replaces the old
    one by a rename, as git's does.

    The lock file names the process, its session and a token its git children inherit
    in their environment, so a lock left by a killed govsnap is recognised and taken
    over rather than blocking the undo, but only once no process of the killed rollback
    runs any more (its git children die with it: `repo.run_git`). The file appears with
    its content in one step (a hard link to a file written first), so a full disk never
    leaves an empty lock behind."""

    def __init__(self, repo: Repo) -> None:
        self.index = user_index(repo)
        self.path = self.index.with_name("index.lock")
        # Not scratch_dir(): creating it may fail (a full disk), which _create reports.
        self.scratch = repo.commondir / "govsnap" / "tmp"
        self.token = uuid.uuid4().hex
        self.mark = _LOCK_MARK + (
            f"{os.getpid()} {socket.gethostname()} {os.getsid(0)} {self.token}\n".encode()
        )
        self.inode: int | None = None
        self.took_over = False
        self._saved_token: str | None = None

    def __enter__(self) -> IndexLock:
        for _attempt in range(2):
            if self._create():
                self._saved_token = os.environ.get(LOCK_TOKEN_VARIABLE)
                # Every process started while the lock is held carries the token, so a
                # takeover can tell whether one of them still runs.
                os.environ[LOCK_TOKEN_VARIABLE] = self.token
                return self
            stale = _inode(self.path)
            owner = lock_owner(self.path)
            if owner is not None and owner.dead():
                wait_for_survivors(self.path, owner)
                # Only the lock that was judged stale: another undo may have taken it
                # over meanwhile and made its own.
                if _inode(self.path) == stale:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(self.path)
                self.took_over = True
                continue
            raise EnvironmentProblem(busy_lock_message(self.path))
        raise EnvironmentProblem(f"cannot lock {self.index}: the lock keeps reappearing")

    def _create(self) -> bool:
        """Create the lock file with its content; return False when it exists already."""
        staged = self.scratch / f"index.lock.{self.token}"
        try:
            try:
                self.scratch.mkdir(parents=True, exist_ok=True)
                staged.write_bytes(self.mark)
                os.link(staged, self.path)
            except FileExistsError:
                return False
            except OSError as exc:
                if exc.errno not in _NO_HARD_LINKS:
                    raise
                self._create_in_place()
            self.inode = os.lstat(self.path).st_ino
            return True
        except FileExistsError:
            return False
        except OSError as exc:
            raise EnvironmentProblem(
                f"cannot lock {self.index}: {exc.strerror or exc}; nothing was changed"
            ) from exc
        finally:
            with contextlib.suppress(OSError):
                staged.unlink()

    def _create_in_place(self) -> None:
        """Create the lock where the filesystem has no hard links: exclusively, then
        written, and removed again if the write fails."""
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, self.mark)
        except OSError:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(self.path)
            raise
        os.close(fd)

    def replace_index(self, new: Path | None) -> None:
        """Make `new` the repository's index (None: no index, as in a fresh repository)."""
        if new is None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.index)
        else:
            os.replace(new, self.index)

    def __exit__(self, *_exc: object) -> None:
        if self.inode is None:
            return
        if self._saved_token is None:
            os.environ.pop(LOCK_TOKEN_VARIABLE, None)
        else:
            os.environ[LOCK_TOKEN_VARIABLE] = self._saved_token
        # The lock is ours while it is the file we made (by inode: reading it back could
        # fail on the very disk problem that ended the rollback).
        with contextlib.suppress(OSError):
            if os.lstat(self.path).st_ino == self.inode:
                os.unlink(self.path)
        self.inode = None


def _inode(path: Path) -> int | None:
    """Return the inode number of a file, None when it does not exist."""
    try:
        return os.lstat(path).st_ino
    except OSError:
        return None


# errnos of link(2) on a filesystem (or mount) without hard links.
_NO_HARD_LINKS = {
    errno.EPERM,
    errno.ENOTSUP,
    errno.EOPNOTSUPP,
    errno.EXDEV,
    errno.EMLINK,
    errno.ENOSYS,
}
# How long a takeover waits for the processes of a killed rollback to end.
TAKEOVER_WAIT = 10.0


@dataclass(frozen=True)
class LockOwner:
    """The govsnap process an index lock file names."""

    pid: int
    host: str
    session: int | None  # its session id (absent in locks of govsnap 0.1)
    token: str | None  # the token its children carry (absent in locks of govsnap 0.1)

    def dead(self) -> bool:
        """Return True when the process ran on this machine and is gone."""
        if self.host != socket.gethostname():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    def survivors(self) -> list[int]:
        """Return the processes it started that still run (its git children and theirs,
        which carry its token in their environment, in its session: a daemon that
        detached from the session is none of its work). Only Linux lists them."""
        if self.token is None or self.session is None:
            return []
        wanted = f"{LOCK_TOKEN_VARIABLE}={self.token}".encode()
        found: list[int] = []
        with contextlib.suppress(OSError):
            for name in os.listdir("/proc"):
                if not name.isdigit() or int(name) == os.getpid():
                    continue
                try:
                    if os.getsid(int(name)) != self.session:
                        continue
                    with open(f"/proc/{name}/environ", "rb") as fh:
                        environ = fh.read().split(b"\0")
                except OSError:
                    continue
                if wanted in environ:
                    found.append(int(name))
        return found


def lock_owner(lock: Path) -> LockOwner | None:
    """Return the govsnap process a lock file names, None when govsnap did not write it."""
    try:
        content = lock.read_bytes()
    except OSError:
        return None
    words = content.split()
    if not content.startswith(_LOCK_MARK) or len(words) not in (3, 5) or not words[1].isdigit():
        return None
    host = words[2].decode(errors="replace")
    if len(words) == 3:
        return LockOwner(int(words[1]), host, None, None)
    if not words[3].isdigit():
        return None
    return LockOwner(int(words[1]), host, int(words[3]), words[4].decode(errors="replace"))


def left_by_dead_govsnap(lock: Path) -> bool:
    """Return True when an index lock file was written by a govsnap process of this
    machine that no longer runs (killed mid-rollback)."""
    owner = lock_owner(lock)
    return owner is not None and owner.dead()


def wait_for_survivors(lock: Path, owner: LockOwner, patience: float = TAKEOVER_WAIT) -> None:
    """Return once no process of the killed govsnap that left `lock` runs; raise
    EnvironmentProblem naming one when some still run after `patience` seconds: taking
    the lock over while one writes would let it overwrite what the undo restores."""
    deadline = time.monotonic() + patience
    while True:
        running = owner.survivors()
        if not running:
            return
        if time.monotonic() >= deadline:
            raise EnvironmentProblem(
                f"{lock} was left by a killed govsnap (pid {owner.pid}), but process "
                f"{running[0]} ({_command_line(running[0])}) it started still runs: wait for "
                f"it to end or kill it, then try again"
            )
        time.sleep(0.1)


def _command_line(pid: int) -> str:
    """Return a process's command line for a message (its first two words)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            words = [w for w in fh.read().split(b"\0") if w]
    except OSError:
        return "?"
    return shown(b" ".join(words[:2])) or "?"


def lock_holders(lock: Path) -> list[int] | None:
    """Return the processes that have `lock` open (as /proc lists them), None when that
    cannot be told (no /proc, or processes whose open files we may not read)."""
    try:
        target = os.stat(lock)
        names = os.listdir("/proc")
    except OSError:
        return None
    holders: list[int] = []
    complete = True
    for name in names:
        if not name.isdigit():
            continue
        try:
            fds = os.listdir(f"/proc/{name}/fd")
        except FileNotFoundError:
            continue
        except OSError:
            complete = False
            continue
        for fd in fds:
            with contextlib.suppress(OSError):
                info = os.stat(f"/proc/{name}/fd/{fd}")
                if (info.st_dev, info.st_ino) == (target.st_dev, target.st_ino):
                    holders.append(int(name))
                    break
    return holders if holders or complete else None


def abandoned_empty_lock(lock: Path) -> bool:
    """Return True for an empty lock file no process has open: a write that failed (a
    full disk) or a process killed between creating and writing it left it behind; git
    itself keeps its lock open while it is empty."""
    try:
        if os.lstat(lock).st_size != 0:
            return False
    except OSError:
        return False
    return lock_holders(lock) == []


def busy_lock_message(lock: Path) -> str:
    """Return why a lock file that exists blocks us, and what to do about it."""
    if abandoned_empty_lock(lock):
        return (
            f"{lock} exists, empty, and no process has it open: a write that failed (a full "
            "disk?) left it behind; remove it (`govsnap doctor --fix` does) and try again"
        )
    return (
        f"{lock} exists: another git process is changing the index; if none is running, "
        "remove that file and try again"
    )


# --- a dry run's object store ---------------------------------------------------------------


class _Quarantined(Repo):
    """A repository whose git commands write new objects and temporary files to a
    directory of their own, reading the real object store as an alternate."""

    def __init__(self, git: pygit2.Repository, env: Mapping[str, str], scratch: Path) -> None:
        super().__init__(git)
        self._env = dict(env)
        self._scratch = scratch

    @property
    def state_dir(self) -> Path:
        """Return the temporary directory that stands in for `.git/govsnap`."""
        return self._scratch

    def git_cmd(
        self,
        *args: str,
        input: bytes | None = None,
        env: Mapping[str, str] | None = None,
        check: bool = True,
    ) -> subprocess.CompletedProcess[bytes]:
        """Run `git args...` in the repository with the temporary object directory."""
        return super().git_cmd(*args, input=input, env={**self._env, **(env or {})}, check=check)


@contextlib.contextmanager
def quarantined(repo: Repo) -> Iterator[Repo]:
    """Yield the repository as a dry run sees it: the objects a capture writes go to a
    temporary directory (`GIT_OBJECT_DIRECTORY`, with the real store as
    `GIT_ALTERNATE_OBJECT_DIRECTORIES`, as git quarantines a push), temporary index files
    too, so nothing is written into `.git`; removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="govsnap-dry-run-") as tmp:
        scratch = Path(tmp)
        objects = scratch / "objects"
        objects.mkdir()
        env = {
            "GIT_OBJECT_DIRECTORY": str(objects),
            "GIT_ALTERNATE_OBJECT_DIRECTORIES": str(repo.commondir / "objects"),
        }
        git_repo = pygit2.Repository(str(repo.gitdir))
        if repo.git.workdir is not None and git_repo.workdir != repo.git.workdir:
            git_repo.workdir = repo.git.workdir
        git_repo.odb.add_disk_alternate(str(objects))
        yield _Quarantined(git_repo, env, scratch)


# --- temporary index files -----------------------------------------------------------------


def scratch_dir(repo: Repo) -> Path:
    """Return `.git/govsnap/tmp`, where temporary index files live (a killed govsnap may
    leave some behind: doctor removes them)."""
    return repo.state_dir / "tmp"


@contextlib.contextmanager
def scratch_index(repo: Repo, content: bytes | None = None) -> Iterator[Path]:
    """Yield the path of a temporary index file next to the repository's index (so it can
    replace it by a rename), holding `content` or absent; remove it afterwards."""
    folder = scratch_dir(repo)
    folder.mkdir(exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="index-", dir=folder)
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as fh:
            if content is not None:
                fh.write(content)
        if content is None:
            path.unlink()
        yield path
    finally:
        for leftover in (path, path.with_name(path.name + ".lock")):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()


@dataclass(frozen=True)
class IndexFile:
    """The bytes of an index file and its modification time."""

    data: bytes
    mtime_ns: int

    def copy_to(self, path: Path) -> None:
        """Write the copy with the original's modification time: git takes an entry whose
        file changed in the same second as the index was written for "racily clean" by
        comparing the file's time with the index file's, and a copy stamped now would hide
        such a change."""
        path.write_bytes(self.data)
        os.utime(path, ns=(self.mtime_ns, self.mtime_ns))


def read_index_file(repo: Repo) -> IndexFile | None:
    """Return the repository's index file as read now, None when it has none."""
    index = user_index(repo)
    try:
        with open(index, "rb") as fh:
            mtime = os.fstat(fh.fileno()).st_mtime_ns
            return IndexFile(fh.read(), mtime)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise EnvironmentProblem(f"cannot read {index}: {exc.strerror}") from exc


def index_readable(repo: Repo, index: Path) -> bool:
    """Return True when git can read the index file (absent counts as readable)."""
    if not index.exists():
        return True
    proc = repo.git_cmd("ls-files", "--stage", env={"GIT_INDEX_FILE": str(index)}, check=False)
    return proc.returncode == 0


# --- capture -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Capture:
    """The working tree as `git add -A` stores it: the tree, the temporary index that
    holds it (stat data fresh, so it matches the work tree for read-tree), and what was
    found on the way."""

    tree: str
    index: Path
    original: IndexFile | None  # the user's index as read; None when there was none
    index_readable: bool
    warnings: tuple[str, ...] = ()


def _add_args(tracked_only: bool, safety: bool) -> list[str]:
    # --sparse: a file present outside the sparse-checkout definition is captured like
    # any other (plain `git add -A` leaves it out and exits 1); skip-worktree entries
    # whose files are absent stay in the index as they are.
    args = [*_QUIET, "add", "-u" if tracked_only else "-A", "--sparse"]
    if safety:
        args.append("--ignore-errors")
    return args


def _warnings(stderr: bytes) -> list[str]:
    """Return the lines of git's output worth passing on: embedded repositories, files
    git could not add."""
    found: list[str] = []
    for line in stderr.decode(errors="replace").splitlines():
        line = line.strip()
        if line.startswith("warning: adding embedded git repository"):
            found.append(line.removeprefix("warning: "))
        elif line.startswith("error: "):
            found.append("not captured: " + line.removeprefix("error: "))
    return list(dict.fromkeys(found))


def flagged_paths(repo: Repo, index: Path) -> tuple[list[bytes], list[bytes]]:
    """Return the skip-worktree and the assume-unchanged paths of an index file."""
    skip: list[bytes] = []
    assume: list[bytes] = []
    for record in git(repo, "ls-files", "-t", "-v", "-z", index=index).split(b"\0"):
        tag, path = record[:1], record[2:]
        if tag in (b"S", b"s"):
            skip.append(path)
        if tag.islower():
            assume.append(path)
    return skip, assume


def set_flag(repo: Repo, index: Path, flag: str, paths: Sequence[bytes]) -> None:
    """Run `git update-index <flag>` (--skip-worktree, --no-assume-unchanged...) on paths."""
    if paths:
        data = b"".join(p + b"\0" for p in paths)
        git(repo, "update-index", "-z", flag, "--stdin", index=index, input=data)


@contextlib.contextmanager
def captured(repo: Repo, *, tracked_only: bool = False, safety: bool = False) -> Iterator[Capture]:
    """Capture the working tree into a temporary index and yield it; the temporary index
    is removed afterwards and `.git/index` is never written.

    With `safety` (the capture a rollback is undone from), git reads what the index only
    assumes unchanged too, so nothing a checkout may overwrite escapes the capture; what
    git cannot add (a nested repository with no commit) is left out with a warning
    instead of failing, since read-tree then refuses to overwrite it. The index keeps
    the user's skip-worktree and assume-unchanged flags, so that the checkout treats
    those entries as git would.
    """
    repo.workdir  # noqa: B018 - raises BareRepository in a bare repository
    original = read_index_file(repo)
    with scratch_index(repo) as index:
        readable = True
        problems: list[str] = []
        unsteady = False
        attempts = 0
        while attempts < CAPTURE_ATTEMPTS:
            # Start from the user's index each time: a git killed by a file truncated
            # under it (SIGBUS) leaves its lock file and a half-updated index behind.
            index.with_name(index.name + ".lock").unlink(missing_ok=True)
            index.unlink(missing_ok=True)
            if original is not None and readable:
                original.copy_to(index)
            skip: list[bytes] = []
            assume: list[bytes] = []
            if safety and index.exists():
                try:
                    skip, assume = flagged_paths(repo, index)
                except EnvironmentProblem:
                    readable = False  # git cannot read it: capture without it
                    continue
                set_flag(repo, index, "--no-assume-unchanged", assume)
            proc = repo.git_cmd(
                *_add_args(tracked_only, safety),
                env={"GIT_INDEX_FILE": str(index), "LC_ALL": "C"},
                check=False,
            )
            # git add exits 1 when --ignore-errors skipped something, 128 when it failed.
            if proc.returncode == 0 or (safety and proc.returncode == 1):
                tree = write_tree(repo, index)
                if skip or assume:
                    present = tracked_paths(repo, index)
                    set_flag(repo, index, "--skip-worktree", [p for p in skip if p in present])
                    set_flag(repo, index, "--assume-unchanged", [p for p in assume if p in present])
                yield Capture(tree, index, original, readable, tuple(_warnings(proc.stderr)))
                return
            # Only now, as it costs a git run: was it the index git could not read?
            damaged = proc.returncode > 0 and readable and index.exists()
            if damaged and not index_readable(repo, index):
                readable = False
                continue
            attempts += 1
            # A file written, truncated or removed while git reads it (a build running,
            # another hook) kills git or changes its complaint from one attempt to the next.
            unsteady = unsteady or proc.returncode < 0
            problems.append(
                git_error(proc.stderr)
                if proc.returncode > 0
                else f"git add died ({proc.returncode})"
            )
    unsteady = unsteady or len(set(problems)) > 1
    hint = f"{CAPTURE_ATTEMPTS} attempts; is something writing to it?" if unsteady else "git add -A"
    raise EnvironmentProblem(f"cannot capture the working tree: {problems[-1]} ({hint})")


def capture_tree(repo: Repo, tracked_only: bool = False) -> str:
    """Return the tree `git add -A` (or -u) would store from the working tree now."""
    with captured(repo, tracked_only=tracked_only) as capture:
        return capture.tree


def write_tree(repo: Repo, index: Path) -> str:
    """Return the tree of an index file, as `git write-tree` writes it (intent-to-add
    entries left out); raise EnvironmentProblem naming unresolved conflicts."""
    return git(repo, "write-tree", index=index).decode().strip()


# --- trees ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """One path that differs between two trees, as `git diff-tree -r` reports it."""

    status: str  # A, D, M or T
    path: bytes
    old_mode: int
    new_mode: int
    old_oid: str
    new_oid: str


# Every file-level change between two trees, as git names them. --ignore-submodules=none:
# git need not read .gitmodules (a damaged one is fatal).
_DIFF_TREE = ("diff-tree", "-r", "-z", "--no-renames", "--full-index", "--ignore-submodules=none")


def _raw_change(meta: bytes, path: bytes) -> Change:
    """Return the change of one raw record (":modes oids status") and its path."""
    old_mode, new_mode, old_oid, new_oid, status = meta[1:].decode().split(" ")
    return Change(status[0], path, int(old_mode, 8), int(new_mode, 8), old_oid, new_oid)


def diff_trees(repo: Repo, old: str, new: str) -> list[Change]:
    """Return every file-level change from tree `old` to tree `new`, by path."""
    fields = git(repo, *_DIFF_TREE, old, new).split(b"\0")
    return [
        _raw_change(meta, path)
        for meta, path in zip(fields[0::2], fields[1::2], strict=False)
        if meta.startswith(b":")
    ]


@dataclass(frozen=True)
class ChangeStat:
    """A change and its lines added and removed (None for a binary file), as
    `git diff-tree --numstat` counts them."""

    change: Change
    lines: tuple[int, int] | None


def diff_stats(repo: Repo, old: str, new: str) -> list[ChangeStat]:
    """Return every file-level change from tree `old` to tree `new` with its line counts,
    by path: one `git diff-tree` run, whose line diff is git's own (`git diff --stat`)."""
    fields = git(repo, *_DIFF_TREE, "--raw", "--numstat", old, new).split(b"\0")
    changes: list[Change] = []
    index = 0
    # First a raw record per change (":modes oids status", then its path), then a numstat
    # record per change ("added\tremoved\tpath"), in the same order.
    while index + 1 < len(fields) and fields[index].startswith(b":"):
        changes.append(_raw_change(fields[index], fields[index + 1]))
        index += 2
    stats: list[ChangeStat] = []
    for change, record in zip(changes, fields[index:], strict=False):
        added, removed, _path = record.split(b"\t", 2)
        lines = None if added == b"-" else (int(added), int(removed))
        stats.append(ChangeStat(change, lines))
    if len(stats) != len(changes):
        raise EnvironmentProblem(f"git diff-tree {old} {new}: unexpected output")
    return stats


@dataclass(frozen=True)
class TreeEntry:
    """One non-tree entry below a tree."""

    path: bytes
    mode: int
    oid: str


def tree_entries(repo: Repo, tree: str, paths: Sequence[bytes] = ()) -> list[TreeEntry]:
    """Return the non-tree entries below `tree` (at or below `paths`, when given)."""
    args = ["--literal-pathspecs", "ls-tree", "-r", "-z", "--full-tree", tree]
    if paths and len(paths) <= _MAX_PATHSPECS:
        args += ["--", *(fs_path(p) for p in paths)]
    found: list[TreeEntry] = []
    for record in git(repo, *args).split(b"\0"):
        if not record:
            continue
        meta, _, path = record.partition(b"\t")
        mode, _kind, oid = meta.decode().split(" ")
        found.append(TreeEntry(path, int(mode, 8), oid))
    if paths and len(paths) > _MAX_PATHSPECS:
        found = [e for e in found if _below_any(e.path, set(paths))]
    return found


def _index_info(entries: Iterable[tuple[int, str, int, bytes]]) -> bytes:
    """Return `update-index --index-info -z` input: mode, oid, stage, path (mode 0
    removes the path)."""
    return b"".join(
        f"{mode:o} {oid} {stage}\t".encode() + path + b"\0" for mode, oid, stage, path in entries
    )


def add_entries(repo: Repo, index: Path, entries: Iterable[TreeEntry]) -> None:
    """Add (or replace) `entries` in an index file (no stat data)."""
    _replace_entries(repo, index, [], ((e.mode, e.oid, 0, e.path) for e in entries))


def build_index(repo: Repo, index: Path, entries: Iterable[TreeEntry]) -> None:
    """Make index file `index` hold exactly `entries` (no stat data)."""
    git(repo, "read-tree", "--empty", index=index)
    data = _index_info((e.mode, e.oid, 0, e.path) for e in entries)
    if data:
        git(repo, "update-index", "--add", "-z", "--index-info", index=index, input=data)


def build_tree(repo: Repo, entries: Iterable[TreeEntry]) -> str:
    """Return a tree holding `entries` (paths with directories), written by git."""
    with scratch_index(repo) as index:
        build_index(repo, index, entries)
        return write_tree(repo, index)


def hash_files(repo: Repo, paths: Sequence[bytes], *, filters: bool = False) -> dict[bytes, str]:
    """Return path -> the blob id of each file's bytes as they are on disk (no filters),
    as `git hash-object --no-filters` computes it; with `filters`, of the blob `git add`
    would store (clean filter and eol conversion applied)."""
    found: dict[bytes, str] = {}
    option = [] if filters else ["--no-filters"]
    plain = [p for p in paths if b"\n" not in p]
    if plain:
        out = git(
            repo,
            "hash-object",
            *option,
            "--stdin-paths",
            input=b"".join(p + b"\n" for p in plain),
        )
        found.update(zip(plain, out.decode().split(), strict=True))
    for path in paths:
        if b"\n" in path:  # --stdin-paths cannot name it
            found[path] = git(repo, "hash-object", *option, "--", fs_path(path)).decode().strip()
    return found


def graft(repo: Repo, base: str | None, source: str, paths: Sequence[bytes]) -> str:
    """Return tree `base` with what lies at and below `paths` replaced by `source`'s
    entries there (removed where `source` has none)."""
    with scratch_index(repo) as index:
        if base is None:
            git(repo, "read-tree", "--empty", index=index)
        else:
            git(repo, "read-tree", base, index=index)
        _replace_entries(
            repo,
            index,
            [e.path for e in index_entries(repo, index, paths)],
            ((e.mode, e.oid, 0, e.path) for e in tree_entries(repo, source, paths)),
        )
        return write_tree(repo, index)


def _replace_entries(
    repo: Repo,
    index: Path,
    drop: Iterable[bytes],
    add: Iterable[tuple[int, str, int, bytes]],
) -> None:
    """Remove the `drop` paths from an index file, then add the `add` entries."""
    removal = _index_info((0, ZERO_OID, 0, path) for path in drop)
    addition = _index_info(add)
    if removal or addition:
        git(
            repo,
            "update-index",
            "--add",
            "--replace",
            "-z",
            "--index-info",
            index=index,
            input=removal + addition,
        )


# --- the index as git lists it -------------------------------------------------------------


@dataclass(frozen=True)
class IndexEntry:
    """One index entry with the flags that carry meaning (not stat data)."""

    path: bytes
    mode: int
    oid: str
    stage: int
    flags: int  # INDEX_FLAGS bits

    @property
    def skip_worktree(self) -> bool:
        """Return True for an entry outside the sparse checkout (or marked by hand)."""
        return bool(self.flags & SKIP_WORKTREE)

    @property
    def assume_unchanged(self) -> bool:
        """Return True for an entry `git update-index --assume-unchanged` marked."""
        return bool(self.flags & ASSUME_UNCHANGED)

    @property
    def intent_to_add(self) -> bool:
        """Return True for an entry `git add -N` made."""
        return bool(self.flags & INTENT_TO_ADD)


def index_entries(repo: Repo, index: Path, paths: Sequence[bytes] = ()) -> list[IndexEntry]:
    """Return the entries of an index file (at or below `paths`, when given), as
    `git ls-files --stage --debug` reads them."""
    if not index.exists():
        return []
    args = ["--literal-pathspecs", "ls-files", "--stage", "--debug", "-z"]
    if paths and len(paths) <= _MAX_PATHSPECS:
        args += ["--", *(fs_path(p) for p in paths)]
    out = git(repo, *args, index=index)
    entries = [
        IndexEntry(path, int(mode, 8), oid.decode(), int(stage), int(flags, 16) & INDEX_FLAGS)
        for mode, oid, stage, path, flags in _LS_FILES_DEBUG.findall(out)
    ]
    if paths and len(paths) > _MAX_PATHSPECS:
        entries = [e for e in entries if _below_any(e.path, set(paths))]
    return entries


def splice_index(repo: Repo, dest: Path, source: Path | None, paths: Sequence[bytes]) -> None:
    """Make index file `dest` hold, at and below `paths`, exactly the entries (and the
    skip-worktree, assume-unchanged and intent-to-add flags) of index file `source`
    (none when `source` is None), keeping its own entries elsewhere. Stat data of the
    spliced entries is left for a refresh to fill."""
    wanted = [] if source is None else index_entries(repo, source, paths)
    _replace_entries(
        repo,
        dest,
        [e.path for e in index_entries(repo, dest, paths)],
        ((e.mode, e.oid, e.stage, e.path) for e in wanted if not e.intent_to_add),
    )
    intents = [e.path for e in wanted if e.intent_to_add]
    if intents:
        git(repo, "--literal-pathspecs", "add", "-N", "--", *map(fs_path, intents), index=dest)
    for flag, entries in (
        ("--skip-worktree", [e.path for e in wanted if e.skip_worktree]),
        ("--assume-unchanged", [e.path for e in wanted if e.assume_unchanged]),
    ):
        if entries:
            data = b"".join(p + b"\0" for p in entries)
            git(repo, "update-index", "-z", flag, "--stdin", index=dest, input=data)


def refresh(repo: Repo, index: Path) -> None:
    """Update the stat data of an index file's entries whose files match (git's
    `update-index --refresh`); entries that differ stay as they are."""
    # Exit 1 only says some entries need an update: unstaged changes, which are kept.
    proc = repo.git_cmd(
        "update-index",
        "-q",
        "--refresh",
        env={"GIT_INDEX_FILE": str(index)},
        check=False,
    )
    if proc.returncode not in (0, 1):
        raise EnvironmentProblem(f"git update-index --refresh failed: {git_error(proc.stderr)}")


def tracked_paths(repo: Repo, index: Path) -> set[bytes]:
    """Return the paths an index file holds."""
    if not index.exists():
        return set()
    return {p for p in git(repo, "ls-files", "-z", index=index).split(b"\0") if p}


# --- checkout ------------------------------------------------------------------------------


def transition(
    repo: Repo, index: Path, current: str, target: str, *, recurse_submodules: bool = False
) -> list[str]:
    """Turn the working tree from tree `current` (which `index` holds, stat data fresh)
    into tree `target` with `git read-tree -m -u`, and return git's warnings.

    git checks every path first and writes nothing when one changed since the capture
    ("not uptodate") or when something not captured stands in the way; it removes what
    `current` has and `target` lacks, writes what differs (smudge filters, eol
    conversion, sparse checkout, file/symlink/directory changes) and updates `index`.
    """
    args = ["read-tree", "-m", "-u"]
    if recurse_submodules:
        args.append("--recurse-submodules")
    proc = repo.git_cmd(*args, current, target, env={"GIT_INDEX_FILE": str(index)}, check=False)
    warnings = [
        line.strip().removeprefix("warning: ")
        for line in proc.stderr.decode(errors="replace").splitlines()
        if line.startswith("warning: ")
    ]
    if proc.returncode != 0:
        raise CheckoutFailed(git_error(proc.stderr))
    return warnings


@dataclass(frozen=True)
class Refusal:
    """Why git's checkout refuses a transition, as it says it."""

    message: str  # one line, paths escaped
    kind: str  # "not uptodate", "would be overwritten", "would lose untracked files", ...
    path: bytes | None


_REFUSAL = re.compile(rb"^error: (?:Entry|Untracked working tree file|Updating) '(.*)' (.*)$")


def transition_refusal(
    repo: Repo, index: Path, current: str, target: str, *, recurse_submodules: bool = False
) -> Refusal | None:
    """Return why `transition` would be refused (None: git would go ahead), as `git
    read-tree -m -u -n` finds it: every path checked as the checkout checks it, nothing
    written."""
    args = ["read-tree", "-m", "-u", "-n"]
    if recurse_submodules:
        args.append("--recurse-submodules")
    proc = repo.git_cmd(*args, current, target, env={"GIT_INDEX_FILE": str(index)}, check=False)
    if proc.returncode == 0:
        return None
    for line in proc.stderr.splitlines():
        found = _REFUSAL.match(line)
        if found:
            path, rest = found.group(1), found.group(2).decode(errors="replace")
            kind = rest.split(".")[0].removesuffix(" in it").strip()
            where = shown(path)
            return Refusal(f"{where}: {kind}; nothing was changed", kind, path)
    return Refusal(f"{shown(git_error(proc.stderr).encode())}; nothing was changed", "", None)


# --- writing a tree into another directory (restore) --------------------------------------


def _elsewhere(
    repo: Repo, work_tree: Path, index: Path, *args: str, input: bytes | None = None
) -> bytes:
    """Run git with `work_tree` (a directory outside the repository) as its work tree, on
    index file `index`, and return its stdout; raise CheckoutFailed when it fails.

    The repository's configuration applies (filter drivers, `core.autocrlf`, `core.eol`,
    `$GIT_DIR/info/attributes`) as it does to its own checkout; sparse checkout does not
    (a plain `read-tree` sets no skip-worktree bit): a restore writes every file."""
    proc = run_git(
        [f"--git-dir={repo.gitdir}", f"--work-tree={work_tree}", *args],
        work_tree,
        input=input,
        env={"GIT_INDEX_FILE": str(index)},
        check=False,
    )
    if proc.returncode != 0:
        raise CheckoutFailed(f"git {_command(args)} failed: {git_error(proc.stderr)}")
    return proc.stdout


def select_entries(
    repo: Repo, work_tree: Path, index: Path, tree: str, pathspecs: Sequence[str]
) -> list[TreeEntry]:
    """Read `tree` into index file `index` (no file written) and return its entries that
    match `pathspecs` (all without), as `git ls-files` matches them."""
    _elsewhere(repo, work_tree, index, "read-tree", tree)
    args = ["ls-files", "-s", "-z", "--full-name"]
    if pathspecs:
        args += ["--", *pathspecs]
    found: list[TreeEntry] = []
    for record in _elsewhere(repo, work_tree, index, *args).split(b"\0"):
        if not record:
            continue
        meta, _, path = record.partition(b"\t")
        mode, oid, _stage = meta.decode().split(" ")
        found.append(TreeEntry(path, int(mode, 8), oid))
    return found


# git's name for the empty blob: index entries that exist only to be matched point at it.
_EMPTY_BLOB = "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"


def tree_paths(repo: Repo, tree: str) -> list[bytes]:
    """Return the path of every non-tree entry below `tree` (`git ls-tree -r`)."""
    out = git(repo, "ls-tree", "-r", "-z", "--name-only", "--full-tree", tree)
    return [p for p in out.split(b"\0") if p]


def _batches(paths: Iterable[bytes]) -> list[list[bytes]]:
    """Return `paths` in groups an index can hold: none a file where another of its group
    needs a directory ("a" in one tree, "a/b" in another)."""
    left = sorted(set(paths))
    batches = []
    while left:
        present = set(left)
        fits: list[bytes] = []
        rest: list[bytes] = []
        for path in left:
            parts = path.split(b"/")
            above = (b"/".join(parts[:i]) for i in range(1, len(parts)))
            (rest if any(d in present for d in above) else fits).append(path)
        batches.append(fits)
        left = rest
    return batches


def matching_paths(
    repo: Repo, scratch: Path, paths: Iterable[bytes], pathspecs: Sequence[str]
) -> set[bytes]:
    """Return those of `paths` that `pathspecs` match, as `git ls-files` matches them:
    each path is put once in a temporary index in `scratch` (a path git would refuse to
    check out is left out, so it never matches) and git is asked once per index."""
    found: set[bytes] = set()
    for n, batch in enumerate(_batches(paths)):
        index = scratch / f"match-{n}"
        entries = ((0o100644, _EMPTY_BLOB, 0, p) for p in batch)
        _elsewhere(
            repo, scratch, index, "update-index", "-z", "--index-info", input=_index_info(entries)
        )
        listed = _elsewhere(repo, scratch, index, "ls-files", "-z", "--full-name", "--", *pathspecs)
        found.update(p for p in listed.split(b"\0") if p)
    return found


def checkout_into(repo: Repo, work_tree: Path, index: Path, paths: Sequence[bytes]) -> None:
    """Write `paths` of index file `index` into `work_tree` with `git checkout-index -f`:
    git applies smudge filters and eol conversion (attributes read from the index, which
    holds the whole tree, so a .gitattributes left out still applies), makes symlinks,
    executable bits and the empty directory of a submodule, and never writes through a
    symlink standing in the target (it replaces the link)."""
    if not paths:
        return
    _elsewhere(
        repo,
        work_tree,
        index,
        "checkout-index",
        "-f",
        "-z",
        "--stdin",
        input=b"".join(p + b"\0" for p in paths),
    )


class CheckoutFailed(EnvironmentProblem):
    """git's checkout stopped: before writing (a path changed, something in the way) or
    part-way (disk full, permissions)."""


def would_write(repo: Repo, index: Path, paths: Sequence[bytes]) -> dict[bytes, bytes]:
    """Return path -> the bytes git's checkout writes for each of `paths` from `index`
    (filters and eol conversion applied), written into a scratch directory, not the
    work tree. Paths git does not write (skip-worktree, gitlinks) are absent."""
    if not paths:
        return {}
    scratch = Path(tempfile.mkdtemp(prefix="govsnap-checkout-"))
    try:
        data = b"".join(p + b"\0" for p in paths)
        git(
            repo,
            "checkout-index",
            "--force",
            # Into the scratch directory, skip-worktree entries are written like others.
            "--ignore-skip-worktree-bits",
            f"--prefix={scratch}/",
            "-z",
            "--stdin",
            index=index,
            input=data,
        )
        found: dict[bytes, bytes] = {}
        base = os.fsencode(scratch) + b"/"
        for path in paths:
            try:
                info = os.lstat(base + path)
                if stat.S_ISLNK(info.st_mode):
                    found[path] = os.readlink(base + path)
                elif stat.S_ISREG(info.st_mode):
                    with open(base + path, "rb") as fh:
                        found[path] = fh.read()
            except (FileNotFoundError, NotADirectoryError):
                continue
        return found
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def converted_paths(repo: Repo, index: Path, paths: Sequence[bytes]) -> list[bytes]:
    """Return the paths for which git's checkout may write other bytes than the working
    tree held when git stored the blob: every path under `core.autocrlf` true or input
    (input converts only when adding), else those with a conversion attribute."""
    if not paths:
        return []
    if (repo.config_str("core.autocrlf") or "").lower() in ("true", "input"):
        return list(paths)
    data = b"".join(p + b"\0" for p in paths)
    out = git(repo, "check-attr", "-z", "--stdin", *CONVERSION_ATTRIBUTES, index=index, input=data)
    fields = out.split(b"\0")
    converted: set[bytes] = set()
    for path, _attr, value in zip(fields[0::3], fields[1::3], fields[2::3], strict=False):
        if value != b"unspecified":
            converted.add(path)
    return [p for p in paths if p in converted]


def lstat_mode(path: Path | bytes) -> int:
    """Return the file type and mode bits of a path without following it (0: absent)."""
    try:
        return os.lstat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return 0


def write_raw(workdir: Path, path: bytes, data: bytes, mode: int) -> None:
    """Write `data` at `path` below the work tree byte for byte (no filter, no eol
    conversion) as a file (mode 100644 or 100755) or a symlink (120000, `data` its
    target), replacing what is there; never through a symlink."""
    root = os.fsencode(workdir)
    parts = path.split(b"/")
    current = root
    for part in parts[:-1]:
        current = current + b"/" + part
        existing = lstat_mode(current)
        if existing == 0:
            os.mkdir(current)
        elif not stat.S_ISDIR(existing):
            raise EnvironmentProblem(
                f"cannot restore {fs_path(path)}: {fs_path(current[len(root) + 1 :])} is not "
                "a directory"
            )
    full = root + b"/" + path
    fd, tmp = tempfile.mkstemp(prefix=b".govsnap-", dir=current)
    try:
        if mode == SYMLINK:
            os.close(fd)
            os.unlink(tmp)
            os.symlink(data, tmp)
        else:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, (0o777 if mode == 0o100755 else 0o666) & ~umask)
        if stat.S_ISDIR(lstat_mode(full)):
            shutil.rmtree(full)
        os.replace(tmp, full)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


class PathModes:
    """lstat with memory, as git's checkout sees the work tree (its has_symlinks_or_noent
    rule): a path below a symlink or a file is absent, never read through the link.
    Paths share their directories, so each directory is asked once (100,000 paths, a
    handful of directories)."""

    def __init__(self, workdir: Path) -> None:
        self.root = os.fsencode(workdir)
        self.modes: dict[bytes, int] = {}

    def __call__(self, path: bytes) -> int:
        mode = self.modes.get(path)
        if mode is not None:
            return mode
        chain = [path]
        while b"/" in chain[-1] and chain[-1].rsplit(b"/", 1)[0] not in self.modes:
            chain.append(chain[-1].rsplit(b"/", 1)[0])
        top = chain[-1]
        above = self.modes[top.rsplit(b"/", 1)[0]] if b"/" in top else stat.S_IFDIR
        for part in reversed(chain):
            above = lstat_mode(self.root + b"/" + part) if stat.S_ISDIR(above) else 0
            self.modes[part] = above
        return above

    def parents(self, path: bytes) -> Iterator[bytes]:
        """Yield the directories above `path`, nearest first."""
        while b"/" in path:
            path = path.rsplit(b"/", 1)[0]
            yield path


def shown(path: bytes) -> str:
    """Return a path for a one-line message: not UTF-8 bytes as \\xNN, and the control
    characters a name may hold (a newline) escaped, as git quotes names."""
    text = path.decode(errors="backslashreplace")
    return "".join(
        c if c.isprintable() or c == " " else c.encode("unicode_escape").decode() for c in text
    )


@dataclass(frozen=True)
class Obstacles:
    """What stands on disk where a checkout writes, beyond what the capture holds: git's
    checkout overwrites or deletes all of it (it treats ignored files as expendable, and
    removes a directory it replaces with everything below)."""

    keep: tuple[bytes, ...]  # uncaptured files and symlinks: the safety snapshot keeps them
    empty: tuple[bytes, ...]  # empty directories inside a directory the checkout replaces
    absent: tuple[TreeEntry, ...]  # what the checkout writes where nothing stood
    lost: tuple[bytes, ...]  # FIFOs, sockets, devices: nothing can keep them
    repositories: tuple[bytes, ...]  # directories holding `.git` the checkout would remove


def survey(workdir: Path, writes: Sequence[Change], captured: set[bytes]) -> Obstacles:
    """Return what stands in the way of a checkout writing the new side of `writes`
    (changes that are not deletions) that the capture does not hold.

    `captured` holds the paths the capture has but the target lacks (the checkout
    removes them, or leaves them alone): with the paths a change's old side names, they
    are everything the capture holds where the checkout writes. Nothing is read through
    a symlink. A directory holding `.git` (a nested repository, a submodule, or a `.git`
    directory git never captures) is reported, not entered.
    """
    modes = PathModes(workdir)
    keep: list[bytes] = []
    empty: list[bytes] = []
    absent: list[TreeEntry] = []
    lost: list[bytes] = []
    repositories: set[bytes] = set()
    plain: set[bytes] = set()  # directories whose whole chain of parents is known plain

    def holds_git(directory: bytes) -> bool:
        return lstat_mode(modes.root + b"/" + directory + b"/.git") != 0

    def uncaptured(path: bytes, mode: int) -> None:
        if stat.S_ISREG(mode) or stat.S_ISLNK(mode):
            keep.append(path)
        else:
            lost.append(path)

    def reachable(path: bytes) -> bool:
        """Check the directories above `path` top-down; return True when they are all
        plain directories, so that the checkout writes at `path` itself."""
        parent = path.rsplit(b"/", 1)[0] if b"/" in path else b""
        if not parent or parent in plain:
            return True
        chain = [parent, *modes.parents(parent)]
        for directory in reversed(chain):
            if directory in plain:
                continue
            mode = modes(directory)
            if stat.S_ISDIR(mode):
                if holds_git(directory):
                    repositories.add(directory)
                    return False
                plain.add(directory)
                continue
            if mode != 0 and directory not in captured:
                uncaptured(directory, mode)  # the checkout removes it to make a directory
            return False
        return True

    def walk(top: bytes) -> None:
        stack = [top]
        while stack:
            directory = stack.pop()
            if holds_git(directory):
                repositories.add(directory)
                continue
            with os.scandir(modes.root + b"/" + directory) as entries:
                found = list(entries)
            if not found:
                empty.append(directory)
            for entry in found:
                path = directory + b"/" + entry.name
                mode = entry.stat(follow_symlinks=False).st_mode
                if stat.S_ISDIR(mode):
                    stack.append(path)
                elif path not in captured:
                    uncaptured(path, mode)

    for change in writes:
        path = change.path
        new = TreeEntry(path, change.new_mode, change.new_oid)
        try:
            if not reachable(path):
                if change.new_mode != GITLINK:
                    absent.append(new)
                continue
            mode = modes(path)
            if mode == 0:
                if change.new_mode != GITLINK:
                    absent.append(new)
            elif stat.S_ISDIR(mode):
                if change.new_mode == GITLINK:
                    continue  # git keeps the directory of a gitlink
                if holds_git(path):
                    repositories.add(path)
                else:
                    walk(path)
            elif change.status == "A" and path not in captured:
                uncaptured(path, mode)
        except OSError as exc:
            where = os.fsencode(exc.filename)[len(modes.root) + 1 :] if exc.filename else path
            raise EnvironmentProblem(
                f"cannot read {shown(where)}, where the rollback writes {shown(path)}: "
                f"{exc.strerror or exc}; nothing was changed"
            ) from exc
    return Obstacles(
        tuple(sorted(set(keep))),
        tuple(sorted(set(empty))),
        tuple(absent),
        tuple(sorted(set(lost))),
        tuple(sorted(repositories)),
    )


def empty_directories(workdir: Path, paths: Iterable[bytes]) -> list[bytes]:
    """Return the directories above `paths` that exist and are empty: git does not track
    them, and its checkout removes a directory it empties, so an undo must recreate them."""
    lstat = PathModes(workdir)
    found: set[bytes] = set()
    seen: set[bytes] = set()
    for path in paths:
        for parent in lstat.parents(path):
            if parent in seen:
                break
            seen.add(parent)
            if stat.S_ISDIR(lstat(parent)) and not os.listdir(lstat.root + b"/" + parent):
                found.add(parent)
    return sorted(found)


def make_directories(workdir: Path, paths: Iterable[bytes]) -> None:
    """Create the directories `paths` below the work tree where they are missing, never
    through a symlink or a file."""
    root = os.fsencode(workdir)
    for path in paths:
        current = root
        for part in path.split(b"/"):
            current += b"/" + part
            mode = lstat_mode(current)
            if mode == 0:
                os.mkdir(current)
            elif not stat.S_ISDIR(mode):
                break


# --- where a rollback must not remove anything ---------------------------------------------


def hooks_prefix(repo: Repo) -> bytes | None:
    """Return the hooks directory (`core.hooksPath`, else the git directory's `hooks`) as a
    path relative to the top of the work tree, when it lies inside it."""
    out = git(repo, "rev-parse", "--git-path", "hooks").rstrip(b"\n")
    root = os.fsencode(repo.workdir.resolve())
    full = os.path.normpath(out if os.path.isabs(out) else os.path.join(root, out))
    with contextlib.suppress(OSError):
        full = os.path.realpath(full)
    if full == root or not full.startswith(root + b"/"):
        return None
    relative = full[len(root) + 1 :]
    return None if relative.split(b"/")[0] == b".git" else relative


def ignored_by_tree(repo: Repo, tree: str, candidates: Sequence[bytes]) -> set[bytes]:
    """Return the candidates that tree's own `.gitignore` files (with the repository's
    info/exclude and core.excludesFile) ignore, as `git check-ignore` decides."""
    if not candidates:
        return set()
    dirs = {b""}
    for path in candidates:
        while b"/" in path:
            path = path.rsplit(b"/", 1)[0]
            dirs.add(path)
    wanted = [d + b"/.gitignore" if d else b".gitignore" for d in sorted(dirs)]
    present = {e.path: e.oid for e in tree_entries(repo, tree, wanted) if e.mode in REGULAR}
    with tempfile.TemporaryDirectory(prefix="govsnap-ignore-") as tmp:
        root = Path(tmp)
        run_git(["init", "-q", str(root)], root)
        for path, oid in present.items():
            blob = repo.git[oid]
            assert isinstance(blob, pygit2.Blob)
            target = os.fsencode(root) + b"/" + path
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "wb") as fh:
                fh.write(blob.data)
        exclude = repo.commondir / "info" / "exclude"
        if exclude.is_file():
            (root / ".git" / "info").mkdir(exist_ok=True)
            shutil.copyfile(exclude, root / ".git" / "info" / "exclude")
        excludes_file = repo.config_str("core.excludesFile")
        extra = ["-c", f"core.excludesFile={excludes_file}"] if excludes_file else []
        proc = run_git(
            [*extra, "check-ignore", "--no-index", "-z", "--stdin"],
            root,
            input=b"".join(c + b"\0" for c in candidates),
            check=False,
        )
        if proc.returncode not in (0, 1):
            raise EnvironmentProblem(f"git check-ignore failed: {git_error(proc.stderr)}")
    return {p for p in proc.stdout.split(b"\0") if p}


def ignored_files(repo: Repo, paths: Sequence[bytes] = ()) -> list[bytes]:
    """Return the ignored files and directories of the work tree (at or below `paths`),
    as `git ls-files --others --ignored --directory` lists them."""
    args = [
        "--literal-pathspecs",
        "ls-files",
        "-z",
        "--others",
        "--ignored",
        "--exclude-standard",
        "--directory",
        "--no-empty-directory",
    ]
    if paths:
        args += ["--", *(fs_path(p) for p in paths)]
    index = user_index(repo)
    if not index_readable(repo, index):
        index = no_index(repo)
    return sorted(p for p in git(repo, *args, index=index).split(b"\0") if p)


# --- partial clones ------------------------------------------------------------------------


def promisor_remote(repo: Repo) -> str | None:
    """Return the remote a partial clone fetches missing objects from (extensions.
    partialClone, else the first remote with `promisor = true`), or None."""
    named = repo.config_str("extensions.partialClone")
    if named:
        return named
    for entry in repo.git.config:
        name = entry.name.lower()
        promised = (entry.value or "").lower() in ("true", "yes", "on", "1")
        if name.startswith("remote.") and name.endswith(".promisor") and promised:
            return entry.name[len("remote.") : -len(".promisor")]
    return None


def missing_blobs(repo: Repo, tree: str) -> list[str]:
    """Return the blobs below `tree` absent from the object store (a partial clone's),
    without fetching them."""
    out = git(repo, "rev-list", "--objects", "--missing=print", "--no-object-names", tree)
    return [line[1:] for line in out.decode().split() if line.startswith("?")]


def fetch_missing(repo: Repo, trees: Iterable[str]) -> int:
    """Fetch the blobs below `trees` a partial clone lacks, in one batch the way git
    fetches them on demand; return how many were missing. Outside a partial clone, do
    nothing. Raise EnvironmentProblem naming the partial clone when the fetch fails."""
    remote = promisor_remote(repo)
    if remote is None:
        return 0
    wanted: list[str] = []
    for tree in dict.fromkeys(trees):
        wanted.extend(missing_blobs(repo, tree))
    wanted = list(dict.fromkeys(wanted))
    if not wanted:
        return 0
    # The command git itself runs to fetch promised objects (promisor-remote.c).
    proc = repo.git_cmd(
        "-c",
        "fetch.negotiationAlgorithm=noop",
        "fetch",
        remote,
        "--no-tags",
        "--no-write-fetch-head",
        "--recurse-submodules=no",
        "--filter=blob:none",
        "--stdin",
        input="".join(oid + "\n" for oid in wanted).encode(),
        check=False,
    )
    if proc.returncode != 0:
        raise EnvironmentProblem(
            f"{len(wanted)} blob(s) are missing (first {wanted[0]}): this is a partial clone "
            f"of remote {remote!r}, and fetching them failed ({git_error(proc.stderr)}); "
            f"reconnect and retry, or make the clone complete with `git fetch --refetch "
            f"{remote}` after `git config --unset remote.{remote}.partialclonefilter`"
        )
    return len(wanted)


def partial_clone_hint(repo: Repo) -> str:
    """Return a sentence naming the partial clone a missing object belongs to, or ''."""
    remote = promisor_remote(repo)
    if remote is None:
        return ""
    return f" (this is a partial clone of remote {remote!r}: `git fetch {remote}` it)"


def check_blobs(repo: Repo, oids: Iterable[tuple[bytes, str]]) -> None:
    """Raise EnvironmentProblem naming the first blob of (path, oid) absent from the
    object store (the fix is to fetch it, not to distrust the snapshot)."""
    odb = repo.git.odb
    for path, oid in oids:
        if not odb.exists(oid):
            raise EnvironmentProblem(
                f"blob {oid} ({fs_path(path)}) is missing from the object store"
                f"{partial_clone_hint(repo)}; nothing was written"
            )
