"""A repository govsnap cannot write (a read-only mount, a mirror owned by someone else):
every command that only reads works, saying in one line what it did not record; every
command that writes fails in one line and changes nothing. `verify --no-record` leaves
no trace on purpose (for a daily cron that must not grow the audit trail)."""

from __future__ import annotations

import functools
import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from govsnap.errors import EXIT_ENVIRONMENT
from tests.helpers import (
    Cli,
    Keys,
    MakeRepo,
    all_refs,
    create_snapshot,
    git,
    govsnap_bin,
    refs,
    run_ok,
    trust_policy,
    write_files,
)
from tests.helpers.schemas import check_json_output


@functools.cache
def mount_namespaces() -> bool:
    """Return True when this machine lets a process mount in a user namespace of its own."""
    try:
        probe = subprocess.run(
            ["unshare", "-rm", "sh", "-c", 'mount --bind -o ro "$1" "$1"', "sh", str(Path.cwd())],
            capture_output=True,
            check=False,
        )
    except FileNotFoundError:
        return False
    return probe.returncode == 0


def read_only(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the installed govsnap on `repo` with its .git not writable, as the kernel judges
    it: bind-mounted read-only in a mount namespace of its own (root included: a root
    process passes permission bits, and govsnap asks os.access, as the write will), else
    for a user other than root with every write permission removed."""
    gitdir = str(repo / ".git")
    command = [govsnap_bin(), "-C", str(repo), *args]
    if mount_namespaces():
        script = 'mount --bind -o ro "$1" "$1" && shift && exec "$@"'
        done = subprocess.run(
            ["unshare", "-rm", "sh", "-c", script, "sh", gitdir, *command],
            capture_output=True,
            text=True,
            check=False,
        )
    elif os.geteuid() != 0:
        subprocess.run(["chmod", "-R", "a-w", gitdir], check=True)
        try:
            done = subprocess.run(command, capture_output=True, text=True, check=False)
        finally:
            subprocess.run(["chmod", "-R", "u+w", gitdir], check=True)
    else:
        pytest.skip("running as root without user namespaces: nothing can refuse a write")
    check_json_output(args, done.returncode, done.stdout, done.stderr)
    return done


@pytest.fixture
def trusted(make_repo: MakeRepo, keys: Keys, cli: Cli) -> tuple[Path, str, str]:
    """A repository with a committed trust policy and two signed snapshots."""
    # The policy names the ref it governs: no warning that it could be read elsewhere.
    policy = 'ref = "refs/heads/main"\n' + trust_policy(keys)
    repo = make_repo({"README.md": "v1\n", ".govsnap/trust.toml": policy})
    first = create_snapshot(cli, repo)
    write_files(repo, {"README.md": "v2\n"})
    second = create_snapshot(cli, repo)
    return repo, first, second


def state(repo: Path) -> tuple[str, str, str]:
    """What a write would change: every ref (those recording what was verified too), the
    notes and the files under .git/govsnap."""
    every = git(repo, "for-each-ref", "--format=%(refname) %(objectname)")
    kept = sorted(str(p.relative_to(repo)) for p in (repo / ".git/govsnap").rglob("*"))
    return every, git(repo, "notes", "--ref=govsnap", "list"), "\n".join(kept)


def test_every_read_command_works_and_says_what_it_did_not_record(
    trusted: tuple[Path, str, str],
) -> None:
    repo, first, second = trusted
    before = state(repo)
    for args in (
        ["list"],
        ["list", "--json"],
        ["show", first],
        ["show", first, "--json"],
        ["diff", first, second],
        ["audit"],
        ["audit", "verify"],
        ["trust", "show"],
        ["trust", "check"],
        ["stats"],
        ["hooks", "status"],
    ):
        done = read_only(repo, *args)
        assert done.returncode == 0, (args, done.stderr)
        assert done.stderr == "", (args, done.stderr)
    # Against the working tree: git add -A writes its blobs into a temporary store.
    compared = read_only(repo, "diff", first, "--json")
    assert compared.returncode == 0, compared.stderr
    assert json.loads(compared.stdout)["modified"] == ["README.md"]
    verified = read_only(repo, "verify", "--all", "--json")
    assert verified.returncode == 0, verified.stderr
    assert json.loads(verified.stdout)["recorded"] is False
    assert verified.stderr == f"govsnap: note: verdicts not recorded: {repo}/.git is not writable\n"
    doctor = read_only(repo, "doctor")
    assert doctor.returncode == 0, doctor.stderr
    assert doctor.stderr.startswith("govsnap: note: the trial capture was skipped")
    rehearsed = read_only(repo, "rehearse", second)
    assert rehearsed.returncode == 0, rehearsed.stderr
    assert "not recorded in the note and the audit trail" in rehearsed.stderr
    assert len(rehearsed.stderr.splitlines()) == 1
    assert state(repo) == before


@pytest.mark.parametrize(
    "args",
    [
        ["create"],
        ["pin", "latest"],
        ["verify", "--all", "--record"],
        ["rollback", "latest~1", "--yes"],
        ["prune", "--keep-last", "1", "--yes"],
    ],
)
def test_a_command_that_writes_fails_in_one_line_and_changes_nothing(
    trusted: tuple[Path, str, str], args: list[str]
) -> None:
    repo, _, _ = trusted
    write_files(repo, {"README.md": "v3\n"})
    before = (state(repo), (repo / "README.md").read_text(), git(repo, "status", "--short"))
    done = read_only(repo, *args)
    assert done.returncode == EXIT_ENVIRONMENT, (done.stdout, done.stderr)
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("govsnap: error: "), done.stderr
    assert "not writable" in lines[0] or "Read-only file system" in lines[0], lines[0]
    assert "internal error" not in done.stderr
    assert before == (state(repo), (repo / "README.md").read_text(), git(repo, "status", "--short"))


def test_verify_no_record_leaves_no_trace(cli: Cli, trusted: tuple[Path, str, str]) -> None:
    repo, first, _ = trusted
    before = all_refs(repo)
    quiet = cli(repo, "verify", "--all", "--no-record", "--json")
    assert quiet.code == 0 and quiet.err == ""  # asked for: no note about it
    assert json.loads(quiet.out)["recorded"] is False
    assert all_refs(repo) == before
    recorded = json.loads(run_ok(cli, repo, "verify", first, "--json"))
    assert recorded["recorded"] is True
    audit = "refs/govsnap/audit"
    assert refs(repo, audit)[audit] != refs_of(before)[audit]
    ref = f"refs/govsnap/snapshots/{first}"
    note = json.loads(git(repo, "notes", "--ref=govsnap", "show", ref))
    assert note["verification"]["verdict"] == "pass"


def refs_of(listing: str) -> dict[str, str]:
    """Return ref -> object of a listing as all_refs prints it."""
    return dict(line.split() for line in listing.splitlines())


def test_a_git_dir_without_write_permission_counts_as_read_only(
    trusted: tuple[Path, str, str],
) -> None:
    # os.access is what decides: for root, permission bits do not refuse a write, so a
    # root process still records (as its write would succeed).
    repo, _, _ = trusted
    mode = (repo / ".git").stat().st_mode
    (repo / ".git").chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        expected = os.geteuid() == 0
        from govsnap.repo import open_repo

        assert open_repo(repo).writable is expected
    finally:
        (repo / ".git").chmod(mode)
