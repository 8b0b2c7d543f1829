"""Opening the repository, reading `git config govsnap.*`, and the git-binary wrapper."""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pygit2

from govsnap.errors import BareRepository, EnvironmentProblem, NotARepository, UsageError

# Variables git sets for hooks (GIT_DIR, GIT_INDEX_FILE, GIT_WORK_TREE, ...) would
# redirect every git call we make; only these are allowed through, as pre-commit does.
_GIT_ENV_KEPT = frozenset(
    {
        "GIT_AUTHOR_NAME",
        "GIT_AUTHOR_EMAIL",
        "GIT_AUTHOR_DATE",
        "GIT_COMMITTER_NAME",
        "GIT_COMMITTER_EMAIL",
        "GIT_COMMITTER_DATE",
        "GIT_EXEC_PATH",
        "GIT_SSH",
        "GIT_SSH_COMMAND",
        "GIT_SSL_CAINFO",
        "GIT_SSL_NO_VERIFY",
        "GIT_ASKPASS",
        "GIT_TERMINAL_PROMPT",
        "GIT_CONFIG_NOSYSTEM",
        "GIT_CONFIG_GLOBAL",
        "GIT_CONFIG_SYSTEM",
        "GIT_TRACE",
        "GIT_PROTOCOL_FROM_USER",
    }
)


# Set (by worktree.IndexLock) while govsnap holds the index lock; every process started
# meanwhile inherits it, so a takeover of a killed govsnap's lock can tell whether one of
# them still runs.
LOCK_TOKEN_VARIABLE = "GOVSNAP_INDEX_LOCK"
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _die_with_parent() -> Callable[[], None] | None:
    """Return a function for `preexec_fn` that makes a child be killed when govsnap dies
    (Linux PR_SET_PDEATHSIG): a git writing the working tree must not go on after
    govsnap was killed, or it overwrites what the undo restores. Only while the index lock
    is held (the cost is a fork without vfork, some milliseconds per call); None where
    the kernel has no such call."""
    if LOCK_TOKEN_VARIABLE not in os.environ:
        return None
    prctl = _prctl()
    if prctl is None:
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # govsnap died before the call: die now
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec


@functools.cache
def _prctl() -> Callable[..., int] | None:
    """Return libc's prctl (loaded in the parent: a child between fork and exec must not
    load libraries), None off Linux."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        function: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return function


def scrubbed_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Return os.environ without the GIT_* variables that redirect git, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_") or k in _GIT_ENV_KEPT}
    if extra:
        env.update(extra)
    return env


def run_git(
    args: Sequence[str],
    cwd: Path,
    *,
    input: bytes | None = None,
    env: Mapping[str, str] | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[bytes]:
    """Run the git binary with a scrubbed environment; raise EnvironmentProblem on failure."""
    try:
        proc = subprocess.run(
            ["git", *args],
            cwd=cwd,
            input=input,
            capture_output=True,
            env=scrubbed_env(env),
            preexec_fn=_die_with_parent(),
            check=False,
        )
    except FileNotFoundError as exc:
        raise EnvironmentProblem("git is not installed or not on PATH") from exc
    if check and proc.returncode != 0:
        detail = proc.stderr.decode(errors="replace").strip().splitlines()
        reason = detail[-1] if detail else f"exit code {proc.returncode}"
        raise EnvironmentProblem(f"git {_subcommand(args)} failed: {reason}")
    return proc


def _subcommand(args: Sequence[str]) -> str:
    """Return the git command in `args`, after global options such as `-c k=v`."""
    rest = list(args)
    while rest and rest[0].startswith("-") and rest[0] not in ("--version",):
        rest = rest[2:] if rest[0] in ("-c", "-C") else rest[1:]
    return rest[0] if rest else (args[0] if args else "")


@dataclass(frozen=True)
class Identity:
    """Who did something and when, as git records it in tagger and committer lines."""

    name: str
    email: str
    time: int
    offset: int  # minutes east of UTC

    def signature(self) -> pygit2.Signature:
        """Return the identity as a pygit2 signature."""
        return pygit2.Signature(self.name, self.email, self.time, self.offset)

    def line(self) -> str:
        """Return the identity as git writes it after `tagger ` or `committer `."""
        sign = "-" if self.offset < 0 else "+"
        hours, minutes = divmod(abs(self.offset), 60)
        return f"{self.name} <{self.email}> {self.time} {sign}{hours:02d}{minutes:02d}"


def parse_ident_line(line: str) -> Identity:
    """Parse `Name <email> 1700000000 +0100` into an Identity."""
    try:
        name, rest = line.split(" <", 1)
        email, rest = rest.split("> ", 1)
        stamp, tz = rest.split()
        sign = -1 if tz.startswith("-") else 1
        offset = sign * (int(tz[1:3]) * 60 + int(tz[3:5]))
        return Identity(name, email, int(stamp), offset)
    except ValueError as exc:
        raise UsageError(f"cannot parse identity line {line!r}") from exc


class Repo:
    """A non-bare or bare git repository, with govsnap's view of its configuration."""

    def __init__(self, git: pygit2.Repository) -> None:
        self.git = git
        # Results derived from immutable objects (keyed by their ids and the settings they
        # depend on), computed once per process: the trust policy's verified history.
        self.memo: dict[tuple[object, ...], object] = {}

    @property
    def gitdir(self) -> Path:
        """Return the repository's git directory (a worktree's own one for worktrees)."""
        return Path(self.git.path)

    @property
    def commondir(self) -> Path:
        """Return the directory shared by all worktrees (where refs and objects live)."""
        pointer = self.gitdir / "commondir"
        if pointer.is_file():
            return (self.gitdir / pointer.read_text().strip()).resolve()
        return self.gitdir

    @property
    def is_bare(self) -> bool:
        """Return True for a repository with no working tree."""
        return bool(self.git.is_bare)

    @property
    def workdir(self) -> Path:
        """Return the working tree; raise BareRepository when there is none."""
        if self.git.workdir is None:
            raise BareRepository(f"{self.gitdir} is a bare repository: it has no working tree")
        return Path(self.git.workdir)

    @property
    def cwd(self) -> Path:
        """Return the directory to run git in."""
        return Path(self.git.workdir) if self.git.workdir else self.gitdir

    @property
    def state_dir(self) -> Path:
        """Return `.git/govsnap`, created on first use."""
        path = self.commondir / "govsnap"
        path.mkdir(exist_ok=True)
        return path

    def git_args(self) -> list[str]:
        """Return the options that point the git binary at this repository (and its work
        tree): scrubbed_env drops GIT_DIR and GIT_WORK_TREE, and the repository may not
        be the one git would discover from the directory it runs in."""
        args = [f"--git-dir={self.gitdir}"]
        if self.git.workdir is not None:
            args.append(f"--work-tree={self.workdir}")
        return args

    def git_cmd(
        self,
        *args: str,
        input: bytes | None = None,
        env: Mapping[str, str] | None = None,
        check: bool = True,
    ) -> subprocess.CompletedProcess[bytes]:
        """Run `git args...` in this repository."""
        return run_git([*self.git_args(), *args], self.cwd, input=input, env=env, check=check)

    # --- configuration -------------------------------------------------------------

    def config_str(self, key: str, default: str | None = None) -> str | None:
        """Return a config value, or `default` when it is unset."""
        try:
            return str(self.git.config[key])
        except KeyError:
            return default

    def config_bool(self, key: str, default: bool) -> bool:
        """Return a boolean config value, or `default` when it is unset."""
        try:
            return bool(self.git.config.get_bool(key))
        except KeyError:
            return default
        except pygit2.GitError as exc:
            raise UsageError(f"git config {key} is not a boolean") from exc

    def config_int(self, key: str, default: int | None) -> int | None:
        """Return an integer config value, or `default` when it is unset."""
        try:
            return int(self.git.config.get_int(key))
        except KeyError:
            return default
        except (pygit2.GitError, ValueError) as exc:
            raise UsageError(f"git config {key} is not an integer") from exc

    def config_list(self, key: str) -> list[str]:
        """Return every value of a multi-valued key, split on whitespace."""
        try:
            values = list(self.git.config.get_multivar(key))
        except KeyError:
            return []
        return [word for value in values for word in str(value).split()]

    def set_config(self, key: str, value: str) -> None:
        """Write `key = value` to the repository's own config file."""
        self.git.config[key] = value

    # --- identity ------------------------------------------------------------------

    def committer(self) -> Identity:
        """Return who is acting now and when, honouring GIT_COMMITTER_* as `git tag` does."""
        if "GIT_COMMITTER_DATE" in os.environ:
            # git's date parser accepts many formats libgit2 does not know; ask git.
            out = self.git_cmd("var", "GIT_COMMITTER_IDENT").stdout.decode().strip()
            return parse_ident_line(out)
        name = os.environ.get("GIT_COMMITTER_NAME") or self.config_str("user.name")
        email = os.environ.get("GIT_COMMITTER_EMAIL") or self.config_str("user.email")
        if not name or not email:
            raise EnvironmentProblem(
                "no identity: set git config user.name and user.email "
                "(or GIT_COMMITTER_NAME and GIT_COMMITTER_EMAIL)"
            )
        now = time.time()
        offset = time.localtime(now).tm_gmtoff // 60
        return Identity(name, email, int(now), offset)


# Variables that change which repository git discovers (git help environment). When one
# is set, git itself is asked; otherwise libgit2's discovery finds the same repository.
_DISCOVERY_ENV = (
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_COMMON_DIR",
    "GIT_CEILING_DIRECTORIES",
    "GIT_DISCOVERY_ACROSS_FILESYSTEM",
)


def _rev_parse(start: Path, env: Mapping[str, str], *args: str) -> str | None:
    """Return what `git rev-parse args...` prints in `start` with `env` (GIT_* kept), or
    None when git says it is not in a repository (or work tree)."""
    try:
        proc = subprocess.run(
            ["git", "rev-parse", *args], cwd=start, env=dict(env), capture_output=True, check=False
        )
    except FileNotFoundError as exc:
        raise EnvironmentProblem("git is not installed or not on PATH") from exc
    if proc.returncode != 0:
        return None
    return os.fsdecode(proc.stdout).rstrip("\n")


def _discover_with_git(start: Path, env: Mapping[str, str]) -> tuple[str, str | None]:
    """Return (git dir, work tree or None) of the repository git selects from `start`
    under `env` (GIT_DIR, GIT_WORK_TREE, ...)."""
    found = _rev_parse(start, env, "--absolute-git-dir", "--is-bare-repository")
    if found is None:
        where = env.get("GIT_DIR") or str(start)
        raise NotARepository(f"not a git repository: {where}")
    gitdir, _, bare = found.rpartition("\n")
    if bare == "true":
        return gitdir, None
    return gitdir, _rev_parse(start, env, "--show-toplevel")


def open_repo(path: Path | None = None, env: Mapping[str, str] | None = None) -> Repo:
    """Return the repository git would work on when started in `path` (default: the
    current directory; `govsnap -C` is `git -C`), honouring GIT_DIR, GIT_WORK_TREE and
    the other discovery variables of `env` (default: os.environ), as `git --git-dir`
    and hooks set them."""
    env = os.environ if env is None else env
    start = (path or Path.cwd()).resolve()
    if not start.exists():
        raise NotARepository(f"{start} does not exist")
    workdir: str | None = None
    if any(env.get(name) for name in _DISCOVERY_ENV):
        found, workdir = _discover_with_git(start, env)
    else:
        discovered = pygit2.discover_repository(str(start))
        if discovered is None:
            raise NotARepository(f"not a git repository: {start}")
        found = discovered
    try:
        git = pygit2.Repository(found)
    except pygit2.GitError as exc:
        raise NotARepository(f"cannot open repository at {found}: {exc}") from exc
    if workdir is not None and Path(workdir) != Path(git.workdir or "/nonexistent"):
        # GIT_WORK_TREE, or GIT_DIR alone (then git takes the current directory as the
        # top of the work tree): libgit2 would assume the directory above the git dir.
        git.workdir = workdir
    return Repo(git)
