"""What the torture tests share: running govsnap as a separate process and killing it with
SIGKILL after a seeded random delay, the consistency checks run after every trial, and
the state of a working tree as a comparable value."""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import shutil
import signal
import stat
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pygit2
from pygit2.enums import FileMode

from govsnap.cli import run
from tests.helpers import Keys, git, openpgp_signer
from tests.helpers.schemas import check_json_output

TORTURE_TRIALS = "GOVSNAP_TORTURE_TRIALS"
TORTURE_SEED = "GOVSNAP_TORTURE_SEED"
TORTURE_REPLAY = "GOVSNAP_TORTURE_REPLAY"
DEFAULT_TRIALS = 200  # in total, over the crash operations

# The command runs in its own interpreter with govsnap and its dependencies imported
# first; "R" on stdout says the imports are done, and the random delay counts from there,
# so that kills land in the command's work rather than in Python's start-up.
DRIVER = """
import sys
import gnupg, rich.console, typer
import govsnap.cli
from govsnap import audit, doctor, notes, prune, remote, rollback, store, verify
sys.stdout.buffer.write(b"R")
sys.stdout.flush()
sys.exit(govsnap.cli.run(sys.argv[1:]))
"""


def trials_per_operation(operations: int) -> int:
    """Return how many crash trials each operation gets: GOVSNAP_TORTURE_TRIALS (the
    total, default 200) shared evenly, at least one each."""
    total = int(os.environ.get(TORTURE_TRIALS, DEFAULT_TRIALS))
    return max(1, -(-total // operations))


def base_seed() -> int:
    """Return GOVSNAP_TORTURE_SEED, or a fresh random seed (printed by the caller)."""
    given = os.environ.get(TORTURE_SEED)
    return int(given) if given else random.SystemRandom().randrange(2**32)


def trial_seed(base: int, operation: str, index: int) -> int:
    """Return the seed of one trial: a pure function of the run's seed, the operation
    and the trial's number, so one trial can be replayed alone."""
    return zlib.crc32(f"{base}:{operation}:{index}".encode())


def replay_seed(operation: str) -> int | None:
    """Return the trial seed GOVSNAP_TORTURE_REPLAY=<operation>:<seed> asks to replay."""
    wanted = os.environ.get(TORTURE_REPLAY, "")
    name, _, seed = wanted.partition(":")
    return int(seed) if name == operation and seed else None


# --- running govsnap ----------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """How one killed (or not) govsnap run ended."""

    killed: bool
    code: int | None  # exit code when it finished before the kill
    out: str
    err: str
    seconds: float  # from "ready" to the end


def _group_alive(pgid: int) -> bool:
    """Return True while a process of group `pgid` runs (zombies do not count)."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                data = fh.read()
        except OSError:
            continue
        # Fields after the command name (which may hold spaces): state ppid pgrp ...
        fields = data[data.rfind(b")") + 2 :].split()
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] != b"Z":
            return True
    return False


def run_and_kill(
    repo: Path, args: list[str], delay: float | None, mode: str = "process"
) -> Outcome:
    """Run `govsnap -C repo args...` and SIGKILL it `delay` seconds after its imports.

    mode "process" kills govsnap alone (its git and gpg children run on, as after the OOM
    killer or `kill -9`), then waits for them to end; "group" kills the whole process
    group at once (a CI timeout, a stopped container). delay None: never kill.
    """
    proc = subprocess.Popen(
        [sys.executable, "-c", DRIVER, "-C", str(repo), *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    assert proc.stdout is not None
    ready = proc.stdout.read(1)
    started = time.monotonic()
    if ready != b"R":
        out, err = proc.communicate()
        raise AssertionError(f"govsnap did not start: {(ready + out + err).decode()}")
    if delay is not None:
        time.sleep(delay)
        if proc.poll() is None:
            if mode == "group":
                os.killpg(proc.pid, signal.SIGKILL)
            else:
                os.kill(proc.pid, signal.SIGKILL)
    out, err = proc.communicate(timeout=300)
    seconds = time.monotonic() - started
    deadline = time.monotonic() + 120
    while _group_alive(proc.pid):
        assert time.monotonic() < deadline, "children of the killed govsnap did not end"
        time.sleep(0.01)
    killed = proc.returncode == -signal.SIGKILL
    return Outcome(killed, None if killed else proc.returncode, out.decode(), err.decode(), seconds)


@dataclass(frozen=True)
class Result:
    """What one in-process govsnap run printed and returned."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        """Return stdout parsed as JSON."""
        return json.loads(self.out)


def govsnap(repo: Path, *args: str) -> Result:
    """Run `govsnap -C repo args...` in this process (faster than a process each), with
    standard streams like a real process's: stdout strict UTF-8, stderr with backslash
    escapes, stdin empty."""
    out_bytes, err_bytes = io.BytesIO(), io.BytesIO()
    out = io.TextIOWrapper(out_bytes, encoding="utf-8", write_through=True)
    err = io.TextIOWrapper(
        err_bytes, encoding="utf-8", errors="backslashreplace", write_through=True
    )
    saved_stdin = sys.stdin
    sys.stdin = io.TextIOWrapper(io.BytesIO(b""), encoding="utf-8")
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = run(["-C", str(repo), *args])
    finally:
        sys.stdin = saved_stdin
    result = Result(code, out_bytes.getvalue().decode(), err_bytes.getvalue().decode())
    check_json_output(args, result.code, result.out, result.err)
    return result


def ok(repo: Path, *args: str) -> Result:
    """Run govsnap in process and fail unless it exits 0."""
    result = govsnap(repo, *args)
    assert result.code == 0, f"govsnap {' '.join(args)} exited {result.code}: {result.err}"
    return result


# --- repositories --------------------------------------------------------------------------


def trust_policy(keys: Keys) -> str:
    """Return a trust policy letting the test key do everything everywhere."""
    return "version = 1\n" + openpgp_signer("releaser", keys.trusted)


def init_repo(path: Path, keys: Keys, files: dict[str, bytes]) -> Path:
    """Create a repository at `path` holding `files` and a trust policy, committed,
    signing with the trusted key. Locks count as stale at once: after a kill no govsnap
    runs, which is when an operator would run `doctor --fix` (see docs/reliability.md)."""
    git(path.parent, "init", "-q", "-b", "main", str(path))
    git(path, "config", "govsnap.signingKey", keys.trusted)
    git(path, "config", "govsnap.staleLockSeconds", "0")
    git(path, "config", "gc.auto", "0")
    write_tree(path, {**files, ".govsnap/trust.toml": trust_policy(keys).encode()})
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "initial")
    return path


def copy_repo(template: Path, dest: Path) -> Path:
    """Copy a repository directory (symlinks kept as symlinks)."""
    shutil.copytree(template, dest, symlinks=True)
    return dest


def snapshot_refs(repo: Path) -> dict[str, str]:
    """Return snapshot id -> tag oid, as stock git lists them."""
    out = git(
        repo,
        "for-each-ref",
        "--format=%(refname:lstrip=3) %(objectname)",
        "refs/govsnap/snapshots/",
    )
    return dict(line.split() for line in out.splitlines())


def audit_entries(repo: Path) -> list[dict[str, Any]]:
    """Return the audit trail's JSON bodies, newest first, as stock git shows them."""
    proc = subprocess.run(
        ["git", "log", "--format=%H%x00%B%x01", "refs/govsnap/audit"],
        cwd=repo,
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0:
        return []
    entries = []
    for record in proc.stdout.decode().split("\x01"):
        if not record.strip():
            continue
        _, _, message = record.strip().partition("\0")
        _, _, body = message.partition("\n\n")
        entries.append(json.loads(body))
    return entries


# --- working-tree state ------------------------------------------------------------------

State = dict[str, tuple[str, bytes]]


def write_tree(root: Path, files: dict[str, bytes]) -> None:
    """Write files below `root`; a value starting with b"->" makes a symlink to the rest."""
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if content.startswith(b"->"):
            os.symlink(content[2:].decode(), path)
        else:
            path.write_bytes(content)


def worktree_state(root: Path) -> State:
    """Return path -> (kind, content) for every file and symlink below `root` but .git;
    kind is "f" (file), "x" (executable) or "l" (symlink, content = target)."""
    state: State = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root)
        if rel_dir == Path("."):
            dirnames[:] = [d for d in dirnames if d != ".git"]
        for name in [*filenames, *(d for d in dirnames if os.path.islink(Path(dirpath, d)))]:
            full = Path(dirpath, name)
            rel = (rel_dir / name).as_posix()
            mode = os.lstat(full).st_mode
            if stat.S_ISLNK(mode):
                state[rel] = ("l", os.readlink(full).encode())
            else:
                kind = "x" if mode & stat.S_IXUSR else "f"
                state[rel] = (kind, full.read_bytes())
        dirnames[:] = [d for d in dirnames if not os.path.islink(Path(dirpath, d))]
    return state


def tree_state(repo: Path, tree_oid: str) -> State:
    """Return the State a git tree describes (submodules left out)."""
    git_repo = pygit2.Repository(str(repo))
    state: State = {}

    def walk(tree: pygit2.Tree, prefix: str) -> None:
        for entry in tree:
            name = prefix + (entry.name or "")
            if entry.filemode == FileMode.TREE:
                sub = git_repo[entry.id]
                assert isinstance(sub, pygit2.Tree)
                walk(sub, name + "/")
            elif entry.filemode != FileMode.COMMIT:
                data = git_repo[entry.id].read_raw()
                kind = {FileMode.LINK: "l", FileMode.BLOB_EXECUTABLE: "x"}.get(entry.filemode, "f")
                state[name] = (kind, data)

    root = git_repo[tree_oid]
    assert isinstance(root, pygit2.Tree)
    walk(root, "")
    return state


def state_diff(have: State, want: State) -> str:
    """Return a short description of how two states differ ('' when equal)."""
    missing = sorted(set(want) - set(have))
    extra = sorted(set(have) - set(want))
    changed = sorted(p for p in set(have) & set(want) if have[p] != want[p])
    parts = []
    for label, paths in (("missing", missing), ("extra", extra), ("changed", changed)):
        if paths:
            parts.append(f"{label} {len(paths)}: {', '.join(paths[:5])}")
    return "; ".join(parts)


# --- the checks after every trial ------------------------------------------------------


@dataclass
class Trial:
    """One crash trial: how it was run and what the checks found wrong."""

    operation: str
    seed: int
    delay: float = 0.0
    mode: str = "process"
    killed: bool = False
    problems: list[str] = field(default_factory=list)
    repairs: list[str] = field(default_factory=list)  # doctor's finding kinds

    def check(self, condition: bool, problem: str) -> None:
        """Record `problem` unless `condition` holds."""
        if not condition:
            self.problems.append(problem)

    def describe(self) -> str:
        """Return how to replay this trial and what went wrong."""
        return (
            f"{self.operation} trial seed {self.seed} (delay {self.delay * 1000:.1f} ms, "
            f"kill {self.mode}, {'killed' if self.killed else 'finished first'}); replay with "
            f"{TORTURE_REPLAY}={self.operation}:{self.seed}: " + " | ".join(self.problems)
        )


def fsck_problems(repo: Path) -> str | None:
    """Return what `git fsck --full --strict` reports beyond dangling objects, or None."""
    proc = subprocess.run(
        ["git", "fsck", "--full", "--strict", "--no-dangling", "--no-progress"],
        cwd=repo,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode == 0 and not proc.stdout.strip():
        return None
    return (proc.stdout + proc.stderr).strip()[:500]


def check_consistent(repo: Path, trial: Trial) -> None:
    """Check a repository after a trial: fsck clean; every snapshot ref verifies or
    doctor reports it (or the lock that stops verify); doctor --fix leaves doctor clean;
    then everything verifies and the audit chain is sound."""
    problem = fsck_problems(repo)
    trial.check(problem is None, f"git fsck: {problem}")
    found = govsnap(repo, "doctor", "--json")
    trial.check(found.code in (0, 1), f"doctor exited {found.code}: {found.err.strip()}")
    findings = found.json()["findings"] if found.out else []
    trial.repairs.extend(f["kind"] for f in findings)
    subjects = " ".join(f["subject"] for f in findings)
    report = govsnap(repo, "verify", "--all", "--jobs", "1", "--json")
    if report.code in (0, 1) and report.out:
        failing = {s["id"] for s in report.json()["snapshots"] if s["verdict"] != "pass"}
        unreported = sorted(i for i in failing if i not in subjects)
        trial.check(not unreported, f"snapshots fail verify, doctor is silent: {unreported}")
    else:
        # verify records its verdicts: a lock left by the kill stops it, and doctor must
        # have reported that lock.
        locked = "is locked" in report.err and "stale-lock" in trial.repairs
        trial.check(locked, f"verify --all exited {report.code}: {report.err.strip()}")
    if found.code == 1:
        fixed = govsnap(repo, "doctor", "--fix", "--json")
        trial.check(fixed.code == 0, f"doctor --fix exited {fixed.code}: {fixed.out.strip()}")
    again = govsnap(repo, "doctor", "--json")
    trial.check(again.code == 0, f"doctor not clean after --fix: {again.out.strip()[:300]}")
    after = govsnap(repo, "verify", "--all", "--jobs", "1")
    trial.check(after.code == 0, f"verify --all after doctor --fix: {after.out.strip()[-300:]}")
    chain = govsnap(repo, "audit", "verify")
    trial.check(chain.code == 0, f"audit verify: {chain.out.strip()[-300:]} {chain.err.strip()}")
    trial.check(fsck_problems(repo) is None, f"git fsck after repair: {fsck_problems(repo)}")


@contextlib.contextmanager
def timed(figures: dict[str, Any], key: str) -> Iterator[None]:
    """Add the seconds the block takes to figures[key]."""
    started = time.monotonic()
    try:
        yield
    finally:
        figures[key] = figures.get(key, 0.0) + time.monotonic() - started
