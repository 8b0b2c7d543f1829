"""States at the edges: scale, depth, files changing under the capture, writes failing
half-way, locks, damaged object stores, rehearsal verdicts. Each test says what git does
there and asserts govsnap does the same, or fails with one line and loses nothing."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shlex
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pygit2
import pytest

from govsnap import worktree
from govsnap.errors import EnvironmentProblem
from govsnap.rehearsal import shared_clone, validate
from govsnap.repo import open_repo
from govsnap.store import resolve, snapshot_tree
from tests.conformance.judge import (
    BASE,
    Case,
    commit,
    copy_repo,
    create,
    judge_case,
    lfs_setup,
    pointer_on_disk,
    python_script,
    rollback,
    run,
    sh,
    state,
    write,
)
from tests.helpers import Cli, MakeRepo, git, govsnap_bin, snapshot_ids, write_files


@pytest.fixture
def repo(make_repo: MakeRepo) -> Path:
    repo = make_repo(BASE)
    git(repo, "config", "govsnap.requireTrust", "false")
    return repo


def test_a_hundred_thousand_entries(cli: Cli, repo: Path, tmp_path: Path) -> None:
    """git keeps 100,000 index entries outside a sparse cone as skip-worktree entries and
    writes none of them; capture, rollback, undo and rehearsal do the same. The entries
    are made with `git update-index --index-info`, not 100,000 files."""
    blob = git(repo, "hash-object", "-w", "--stdin", input_text="bulk\n").strip()
    lines = "".join(f"100644 {blob}\tbulk/d{i // 1000:03d}/f{i:05d}\n" for i in range(100_000))
    git(repo, "update-index", "--add", "--index-info", input_text=lines)
    git(repo, "commit", "-q", "-m", "100,000 entries")
    git(repo, "sparse-checkout", "set", "--cone", "src", "docs")
    assert len(git(repo, "ls-files").splitlines()) > 100_000
    case = Case(
        "100k",
        "",
        write({"src/app.py": "print('A')\n"}),
        write({"src/app.py": "B\n", "src/new.py": "n\n"}),
        rehearse_safety=False,  # like the target's, at 100,000 entries: 8 s saved
    )
    judge_case(cli, repo, case, tmp_path)


def deep_commit(repo: Path, depth: int) -> str:
    """Return a commit whose tree nests a file `depth` directories deep (written with
    pygit2's object writer: git itself would take minutes)."""
    git_repo = pygit2.Repository(str(repo))
    tree = git_repo.TreeBuilder()
    tree.insert("f", git_repo.create_blob(b"deep\n"), pygit2.enums.FileMode.BLOB)
    oid = tree.write()
    for _ in range(depth):
        level = git_repo.TreeBuilder()
        level.insert("d", oid, pygit2.enums.FileMode.TREE)
        oid = level.write()
    top = git_repo.TreeBuilder(git_repo.head.peel(pygit2.Commit).tree)
    top.insert("deep", oid, pygit2.enums.FileMode.TREE)
    sig = pygit2.Signature("Deep", "deep@example.com", 1_700_000_000, 0)
    return str(
        git_repo.create_commit(None, sig, sig, "deep\n", top.write(), [git_repo.head.target])
    )


def test_a_tree_nested_ten_thousand_deep(cli: Cli, repo: Path, tmp_path: Path) -> None:
    """git can store a tree nested 10,000 deep, but no checkout can write its 20,000-byte
    path (git 2.39's read-tree even crashes on it). govsnap snapshots and verifies it,
    and refuses to roll back to it or rehearse it with one line, writing nothing."""
    deep = deep_commit(repo, 10_000)
    twin = copy_repo(repo, tmp_path / "twin")
    by_git = subprocess.run(
        ["git", "read-tree", "-u", "--reset", deep], cwd=twin, capture_output=True, check=False
    )
    assert by_git.returncode != 0  # git cannot check it out either

    ident, tree = create(cli, repo, "--from", deep)
    assert tree == git(repo, "rev-parse", f"{deep}^{{tree}}").strip()
    verified = cli(repo, "verify", ident)
    assert verified.code == 0, verified.out + verified.err
    before = state(repo)
    for args in (["--yes"], ["--dry-run"]):
        refused = cli(repo, "rollback", ident, *args)
        assert refused.code == 1, refused.err
        assert "path is longer than a checkout can write" in refused.err
        assert len(refused.err.splitlines()) == 1 and len(refused.err) < 400
    assert state(repo) == before
    assert not (repo / ".git" / "index.lock").exists()
    rehearsed = cli(repo, "rehearse", ident, "--json")
    assert rehearsed.code == 1
    gates = {g["name"]: g["passed"] for g in json.loads(rehearsed.out)["gates"]}
    assert gates["safe-tree"] is False
    assert "internal error" not in rehearsed.err


APPEND_CAP = 4 << 20


def test_a_file_appended_to_during_capture(repo: Path) -> None:
    """git add hashes the bytes it read: a file being appended to is captured as a prefix
    of what it ends up holding. Each create either succeeds with such a prefix or fails
    with one line (exit 3)."""
    growing = repo / "growing.log"
    growing.write_bytes(b"start\n")
    stop = threading.Event()

    def append() -> None:
        # Throttled and capped: an unbounded appender fills a disk in seconds.
        written = 0
        with growing.open("ab") as fh:
            while not stop.is_set() and written < APPEND_CAP:
                chunk = b"another line of output\n" * 40
                fh.write(chunk)
                fh.flush()
                written += len(chunk)
                time.sleep(0.002)

    thread = threading.Thread(target=append)
    thread.start()
    try:
        runs = [
            subprocess.run(
                [govsnap_bin(), "-C", str(repo), "create", "--unsigned", "--json"],
                capture_output=True,
                text=True,
                check=False,
            )
            for _ in range(4)
        ]
    finally:
        stop.set()
        thread.join()
    final = growing.read_bytes()
    succeeded = 0
    for done in runs:
        if done.returncode != 0:
            assert done.returncode == 3 and len(done.stderr.splitlines()) == 1, done.stderr
            continue
        succeeded += 1
        ident = json.loads(done.stdout)["snapshot"]["id"]
        captured = run(repo, "cat-file", "blob", f"refs/govsnap/snapshots/{ident}:growing.log")
        assert final.startswith(captured) and captured.startswith(b"start\n")
    assert succeeded
    assert git(repo, "fsck", "--full", stderr_too=True) == ""


@contextlib.contextmanager
def small_filesystem(where: Path, size: str) -> Iterator[bool]:
    """Mount a tmpfs of `size` at `where` when the machine allows it; yield whether it did."""
    where.mkdir()
    mounted = (
        os.geteuid() == 0
        and subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
            capture_output=True,
            check=False,
        ).returncode
        == 0
    )
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(where)], capture_output=True, check=False)


FILL_LIMIT = 8 << 20  # never fill more than a small test filesystem


def fill(directory: Path, leave: int) -> Path:
    """Fill the (small, mounted for the test) filesystem of `directory` with an ignored
    file, leaving `leave` bytes."""
    info = os.statvfs(directory)
    assert info.f_blocks * info.f_frsize <= FILL_LIMIT, "not the small test filesystem"
    filler = directory / "filler.ignored"
    free = info.f_bavail * info.f_frsize
    with filler.open("wb") as fh, contextlib.suppress(OSError):
        fh.write(b"\0" * max(0, min(free - leave, FILL_LIMIT)))
    return filler


def failing_write_repo(make_repo: MakeRepo, parent: Path) -> Path:
    """A repository (below `parent`) whose snapshot holds a 1.5 MiB data/big.bin."""
    repo = parent / "work"
    git(parent, "init", "-q", "-b", "main", str(repo))
    template = make_repo(BASE, commit=False, name=f"template-{uuid.uuid4().hex[:6]}")
    git(repo, "config", "govsnap.signingKey", git(template, "config", "govsnap.signingKey").strip())
    git(repo, "config", "govsnap.requireTrust", "false")
    write_files(repo, {**BASE, ".gitignore": "*.ignored\n", "data/big.bin": os.urandom(1_500_000)})
    sh(repo, commit("with a big file"))
    return repo


@contextlib.contextmanager
def immutable(directory: Path) -> Iterator[bool]:
    """Make a directory immutable (chattr +i: not even root may create files in it) when
    the filesystem allows it; yield whether it did."""
    directory.mkdir(exist_ok=True)
    done = (
        subprocess.run(
            ["chattr", "+i", str(directory)], capture_output=True, check=False
        ).returncode
        == 0
    )
    try:
        yield done
    finally:
        if done:
            subprocess.run(["chattr", "-i", str(directory)], capture_output=True, check=False)


@pytest.mark.parametrize(
    "where", ["directory-full", "everything-full", "file-size-limit", "permission-denied"]
)
def test_a_write_failing_half_way(
    where: str, cli: Cli, make_repo: MakeRepo, tmp_path: Path
) -> None:
    """When a checkout cannot write (disk full, a file size limit), git stops with an
    error and leaves what it wrote. govsnap then says in one line (exit 3) that the
    rollback failed and how to undo it; the printed undo restores the state before, byte
    for byte, once there is room again. When the audit trail cannot be written either,
    the line says so. (A small tmpfs where the machine allows mounting one: mounted on
    the directory the big file goes to, or holding the whole repository; else a file
    size limit, RLIMIT_FSIZE.)"""
    if where == "everything-full":
        mount = tmp_path / "mnt"
        context = small_filesystem(mount, "4m")
    else:
        mount = tmp_path / "plain"
        mount.mkdir()
        context = contextlib.nullcontext(True)
    with context as mounted:
        if not mounted:
            pytest.skip("cannot mount a tmpfs here: the file-size-limit variant covers it")
        repo = failing_write_repo(make_repo, mount)
        ident, _tree = create(cli, repo)
        shutil.rmtree(repo / "data")
        write_files(repo, {"src/app.py": "B\n", "untracked.txt": "mine\n"})
        with contextlib.ExitStack() as stack:
            if where == "directory-full":
                stack.enter_context(small_filesystem(repo / "data", "1m"))
                if not (repo / "data").is_mount():
                    pytest.skip("cannot mount a tmpfs here: the file-size-limit variant covers it")
            if where == "permission-denied" and not stack.enter_context(immutable(repo / "data")):
                pytest.skip("chattr +i is not available here")
            before = state(repo)
            filler = fill(repo, leave=150_000) if where == "everything-full" else None
            done = subprocess.run(
                [govsnap_bin(), "-C", str(repo), "rollback", ident, "--yes"],
                capture_output=True,
                text=True,
                preexec_fn=_file_size_limit if where == "file-size-limit" else None,
                check=False,
            )
            errors = [line for line in done.stderr.splitlines() if "error:" in line]
            assert done.returncode == 3, done.stderr
            assert len(errors) == 1 and "internal error" not in done.stderr, done.stderr
            assert f"rollback to {ident} failed" in errors[0], errors[0]
            assert "undo with govsnap rollback" in errors[0]
            audited = "not in the audit trail" not in errors[0]
            assert audited or where == "everything-full"
            undo = shlex.split(errors[0].split("undo with ", 1)[1].split(" (the failure")[0])
            if filler is not None:
                # The undo run at once, on the disk still full, fails in one line and
                # leaves no index.lock behind to block itself and git once there is room.
                early = cli(repo, *undo[1:], "--yes")
                assert early.code == 3 and len(early.err.splitlines()) == 1, early.err
                assert "internal error" not in early.err
                assert not (repo / ".git" / "index.lock").exists()
                filler.unlink()
            if where == "permission-denied":
                subprocess.run(["chattr", "-i", str(repo / "data")], check=True)
            if audited:
                last = git(repo, "log", "-1", "--format=%s", "refs/govsnap/audit")
                assert last.startswith(f"rollback: rollback to {ident} failed"), last
            undone = cli(repo, *undo[1:], "--yes")
            assert undone.code == 0, undone.err
            assert "warning" not in undone.err  # nothing left behind, nothing to warn of
            restored = state(repo)
            assert restored == before, restored.differences(before)
            assert not (repo / ".git" / "index.lock").exists()


def _file_size_limit() -> None:
    """Let no process write a file over 1 MB (failing with EFBIG, not killed)."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1_000_000, 1_000_000))


def test_index_lock_held_by_another_process(cli: Cli, repo: Path) -> None:
    """git refuses to change an index another process has locked ("index.lock: File
    exists"); so does a rollback, before writing anything and without a safety snapshot.
    A lock a killed govsnap left (its pid gone) is taken over instead."""
    ident, tree = create(cli, repo)
    write_files(repo, {"src/app.py": "B\n"})
    lock = repo / ".git" / "index.lock"
    lock.write_bytes(b"")
    refused = run(repo, "add", "src/app.py", ok=(128,))
    assert refused == b""
    before = state(repo)
    result = cli(repo, "rollback", ident, "--yes")
    assert result.code == 3 and "index.lock exists" in result.err
    assert len(result.err.splitlines()) == 1
    assert state(repo) == before and snapshot_ids(repo) == [ident]
    gone = subprocess.Popen(["true"])
    gone.wait()
    lock.write_bytes(f"govsnap {gone.pid} {socket.gethostname()}\n".encode())
    done = rollback(cli, repo, ident)
    assert any("took over the index lock" in w for w in done["warnings"])  # type: ignore[union-attr]
    assert not lock.exists()
    assert git(repo, "write-tree").strip() == tree


def test_doctor_reports_what_blocks_a_capture(cli: Cli, repo: Path) -> None:
    """`git add -A` refuses a nested repository that has no commit; create says so in one
    line and doctor reports it; a rollback (and its dry run) leaves it out and alone."""
    ident, _tree = create(cli, repo)
    git(repo, "init", "-q", str(repo / "vendor" / "empty"))
    created = cli(repo, "create")
    assert created.code == 3 and "does not have a commit checked out" in created.err
    assert len(created.err.splitlines()) == 1
    report = json.loads(cli(repo, "doctor", "--json").out)
    assert "capture-blocked" in [f["kind"] for f in report["findings"]]
    assert cli(repo, "rollback", ident, "--dry-run").code == 0
    done = rollback(cli, repo, ident)
    assert any("does not have a commit" in w for w in done["warnings"])  # type: ignore[union-attr]
    assert (repo / "vendor" / "empty" / ".git").is_dir()


def test_a_corrupt_pack_is_one_line_never_an_internal_error(cli: Cli, repo: Path) -> None:
    """git reports a damaged pack ("incorrect data check") and git fsck names it; govsnap
    lists what it can read, fails verification of what it cannot, and otherwise stops
    with one line naming git fsck."""
    for n in range(2):
        write_files(repo, {"src/app.py": f"print({n})\n" * 400})
        create(cli, repo)
    git(repo, "gc", "-q")
    pack = next((repo / ".git" / "objects" / "pack").glob("*.pack"))
    data = bytearray(pack.read_bytes())
    for offset in range(600, len(data) - 100, 301):
        data[offset] ^= 0xFF
    pack.chmod(0o644)
    pack.write_bytes(bytes(data))
    assert subprocess.run(["git", "fsck", "--full"], cwd=repo, capture_output=True).returncode
    for args in (
        ["list"],
        ["verify", "--all"],
        ["rollback", "latest", "--yes"],
        ["show", "latest"],
    ):
        result = cli(repo, *args)
        assert "internal error" not in result.err, (args, result.err)
        assert result.code in (0, 1, 2, 3) and len(result.err.splitlines()) <= 2, (args, result)


def test_a_partial_clone_that_cannot_fetch_says_so(
    cli: Cli, make_repo: MakeRepo, tmp_path: Path
) -> None:
    """A partial clone fetches missing blobs from its promisor remote on demand; when the
    remote is gone, git fails ("could not fetch ... from promisor remote") and so does
    create, in one line naming the partial clone and the fix."""
    source = make_repo(BASE, name="source")
    write_files(source, {"src/app.py": "print(2)\n"})
    sh(source, commit("two"))
    git(source, "config", "uploadpack.allowFilter", "true")
    clone = tmp_path / "partial"
    git(tmp_path, "clone", "-q", "--filter=blob:none", f"file://{source}", str(clone))
    git(clone, "config", "govsnap.allowUnsigned", "true")
    source.rename(tmp_path / "gone")
    assert subprocess.run(["git", "archive", "HEAD~1"], cwd=clone, capture_output=True).returncode
    result = cli(clone, "create", "--from", "HEAD~1", "--unsigned")
    assert result.code == 3 and len(result.err.splitlines()) == 1
    assert "partial clone of remote 'origin'" in result.err and "git fetch" in result.err


def test_rehearsal_verdicts_are_judged_by_git(cli: Cli, repo: Path, tmp_path: Path) -> None:
    """Rehearsal judges the restored files against what git's checkout writes: a pointer
    where the smudge filter writes content, one changed byte, or an eol=crlf file left
    with LF fails the files gate; the CRLF git's checkout writes passes (its blob holds
    LF)."""
    lfs_setup(repo)
    write_files(
        repo,
        {".gitattributes": "*.bin filter=lfs -text\n*.bat eol=crlf\n", "run.bat": "echo hi\n"},
    )
    sh(repo, commit("crlf"))
    ident, _tree = create(cli, repo)
    r = open_repo(repo)
    snap = resolve(r, ident)
    tree = snapshot_tree(r, snap)

    def verdicts(damage: str) -> dict[str, bool]:
        clone = shared_clone(r, tmp_path / f"clone-{damage}")
        run(clone.workdir, "read-tree", "-u", "--reset", str(tree.id))
        assert (clone.workdir / "run.bat").read_bytes() == b"echo hi\r\n"
        if damage == "pointer":
            pointer_on_disk(clone.workdir)
        elif damage == "byte":
            data = bytearray((clone.workdir / "README.md").read_bytes())
            data[0] ^= 1
            (clone.workdir / "README.md").write_bytes(bytes(data))
        elif damage == "lf":
            (clone.workdir / "run.bat").write_bytes(b"echo hi\n")
        return {g.name: g.passed for g in validate(clone, snap, tree)}

    assert all(verdicts("none").values())
    for damage in ("pointer", "byte", "lf"):
        assert verdicts(damage)["files"] is False, damage
    rehearsed = cli(repo, "rehearse", ident)
    assert rehearsed.code == 0, rehearsed.out


FAILING_SMUDGE = """
import os, sys
data = sys.stdin.buffer.read()
if b"fail" in data and os.path.exists(sys.argv[1]):
    sys.exit(1)
sys.stdout.buffer.write(data)
"""


def test_the_undo_of_a_failed_rollback_removes_what_it_wrote(repo: Path, cli: Cli) -> None:
    """A rollback that stops half-way (here a smudge filter fails on z.bin, as a kill or a
    full disk stops one) leaves the files git wrote before it stopped, at paths where
    nothing stood, ignored ones included. The printed undo removes them and restores the
    state byte for byte; a file changed since it was written is left, with a warning."""
    flag = repo.parent / "fail-now"
    command = python_script(repo.parent / "smudge.py", FAILING_SMUDGE)
    git(repo, "config", "filter.f.clean", "cat")
    git(repo, "config", "filter.f.smudge", f"{command} {flag}")
    git(repo, "config", "filter.f.required", "true")
    write_files(repo, {".gitattributes": "*.bin filter=f\n", "a.gen": "generated in A\n"})
    write_files(repo, {"b/new.txt": "new in A\n", "z.bin": "fail in A\n"})
    sh(repo, commit("A"))
    ident, _tree = create(cli, repo)
    sh(repo, "git rm -q --cached a.gen && rm -r a.gen b && echo '*.gen' > .gitignore")
    write_files(repo, {"z.bin": "B\n"})
    sh(repo, commit("B"))
    before = state(repo)
    flag.touch()
    for changed_since in (False, True):
        failed = cli(repo, "rollback", ident, "--yes")
        assert failed.code == 3 and "failed" in failed.err, failed.err
        assert (repo / "a.gen").exists()  # written before git stopped at z.bin
        if changed_since:
            write_files(repo, {"a.gen": "edited after the failed rollback\n"})
        undo = shlex.split(failed.err.split("undo with ")[-1].split(" (the failure")[0])
        undone = cli(repo, *undo[1:], "--yes")
        assert undone.code == 0, undone.err
        if not changed_since:
            assert state(repo) == before, state(repo).differences(before)
    assert "left a.gen" in undone.err
    assert (repo / "a.gen").read_text() == "edited after the failed rollback\n"


SLOW_SMUDGE = """
import sys, time
data = sys.stdin.buffer.read()
if data.startswith(b"slow"):
    time.sleep(float(sys.argv[1]))
sys.stdout.buffer.write(data)
"""


def test_a_killed_rollback_leaves_nothing_writing(repo: Path, cli: Cli) -> None:
    """When govsnap is killed (SIGKILL, the OOM killer) during the checkout, the git
    writing the working tree dies with it (PR_SET_PDEATHSIG), and the undo takes the lock
    over only once no process of the killed rollback runs (here a smudge filter still
    sleeping): after the undo, nothing goes on overwriting what it restored."""
    pause = 2.0
    command = python_script(repo.parent / "slow.py", SLOW_SMUDGE)
    git(repo, "config", "filter.slow.clean", "cat")
    git(repo, "config", "filter.slow.smudge", f"{command} {pause}")
    files: dict[str, str | bytes] = {f"{n}.txt": f"A {n}\n" for n in ("a1", "a2", "z1", "z2")}
    write_files(repo, {".gitattributes": "*.txt filter=slow\n", "m.txt": "slow A\n", **files})
    sh(repo, commit("A"))
    ident, _tree = create(cli, repo)
    sh(repo, "git rm -q m.txt")
    write_files(repo, {name: f"B {name}\n" for name in files})
    sh(repo, commit("B"))
    write_files(repo, {name: f"uncommitted {name}\n" for name in files})
    before = state(repo)
    proc = subprocess.Popen(
        [govsnap_bin(), "-C", str(repo), "rollback", ident, "--yes"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    announced = proc.stderr.readline()
    assert "undo with: " in announced, announced
    time.sleep(0.5)  # git is in the checkout (in m.txt's smudge, or before it)
    proc.kill()
    proc.wait()
    lock = repo / ".git" / "index.lock"
    owner = worktree.lock_owner(lock)
    assert owner is not None and owner.dead()
    deadline = time.monotonic() + 2
    while any(_command(pid).startswith(b"git") for pid in owner.survivors()):
        assert time.monotonic() < deadline, "git went on after govsnap was killed"
        time.sleep(0.05)
    undo = shlex.split(announced.split("undo with: ")[1])
    undone = cli(repo, *undo[1:], "--yes")
    assert undone.code == 0, undone.err
    assert "took over the index lock" in undone.err
    assert state(repo) == before, state(repo).differences(before)
    time.sleep(pause)  # longer than anything the killed rollback started could still run
    assert state(repo) == before, state(repo).differences(before)


def _command(pid: int) -> bytes:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes()
    except OSError:
        return b""


def test_a_lock_takeover_waits_for_the_killed_rollbacks_processes(repo: Path) -> None:
    """A lock left by a killed govsnap is taken over only once no process it started
    (they carry its token, in its session) runs any more; a process that detached from
    the session (a daemon such as gpg-agent) is none of its work."""
    lock = repo / ".git" / "index.lock"
    gone = subprocess.Popen(["true"])
    gone.wait()
    token = uuid.uuid4().hex
    session = os.getsid(0)
    lock.write_bytes(f"govsnap {gone.pid} {socket.gethostname()} {session} {token}\n".encode())
    owner = worktree.lock_owner(lock)
    assert owner is not None and owner.dead()
    env = {**os.environ, "GOVSNAP_INDEX_LOCK": token}
    daemon = subprocess.Popen(["sleep", "30"], env=env, start_new_session=True)
    survivor = subprocess.Popen(["sleep", "30"], env=env)
    try:
        assert owner.survivors() == [survivor.pid]
        with pytest.raises(EnvironmentProblem, match=f"process {survivor.pid} "):
            worktree.wait_for_survivors(lock, owner, patience=0.3)
        survivor.kill()
        survivor.wait()
        worktree.wait_for_survivors(lock, owner, patience=0.3)
    finally:
        for process in (daemon, survivor):
            process.kill()
            process.wait()
