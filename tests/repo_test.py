"""Repository discovery is git's: GIT_DIR, GIT_WORK_TREE, `git --git-dir`, `git -C` and
`govsnap -C` select the repository (and work tree) git would, and every git command
govsnap runs is then pointed at it, whatever directory it was started in."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import Cli, MakeRepo, git, govsnap_bin, write_files
from tests.helpers.schemas import check_json_output


def run(args: list[str], cwd: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    """Run a command with the installed govsnap first on PATH (so `git govsnap` finds it)."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env.update(extra)
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, check=False)


@pytest.fixture
def two_repos(make_repo: MakeRepo, cli: Cli) -> tuple[Path, Path, str, str]:
    """A holds an unsigned snapshot (verify fails), B a signed one (verify passes)."""
    a, b = make_repo(name="A"), make_repo(name="B")
    for path in (a, b):
        git(path, "config", "govsnap.requireTrust", "false")
    bad = cli(a, "create", "--unsigned", "--json")
    good = cli(b, "create", "--json")
    assert bad.code == 0 and good.code == 0, bad.err + good.err
    return a, b, json.loads(bad.out)["snapshot"]["id"], json.loads(good.out)["snapshot"]["id"]


@pytest.mark.parametrize(
    "how", ["git --git-dir", "GIT_DIR", "git -C", "govsnap -C", "GIT_DIR and GIT_WORK_TREE"]
)
def test_verify_checks_the_repository_git_selects(
    two_repos: tuple[Path, Path, str, str], how: str
) -> None:
    a, b, bad, good = two_repos
    inside_b = b / "sub"
    inside_b.mkdir()
    verify = ["verify", "--all"]
    if how == "git --git-dir":
        done = run(["git", f"--git-dir={a}/.git", "govsnap", *verify], inside_b)
    elif how == "GIT_DIR":
        done = run([govsnap_bin(), *verify], inside_b, GIT_DIR=str(a / ".git"))
    elif how == "git -C":
        done = run(["git", "-C", str(a), "govsnap", *verify], inside_b)
    elif how == "govsnap -C":
        done = run([govsnap_bin(), "-C", str(a), *verify], inside_b)
    else:
        done = run(
            [govsnap_bin(), *verify], inside_b, GIT_DIR=str(a / ".git"), GIT_WORK_TREE=str(a)
        )
    # A's unsigned snapshot fails; B's good one is never looked at.
    assert done.returncode == 1, done.stdout + done.stderr
    assert bad in done.stdout and good not in done.stdout
    # The verdict was recorded in A's audit trail, not B's.
    assert "verify:" in git(a, "log", "-1", "--format=%s", "refs/govsnap/audit")
    assert "create:" in git(b, "log", "-1", "--format=%s", "refs/govsnap/audit")


def test_a_missing_git_dir_is_a_clear_error(tmp_path: Path) -> None:
    done = run([govsnap_bin(), "list"], tmp_path, GIT_DIR=str(tmp_path / "nowhere"))
    assert done.returncode == 3
    assert done.stderr == f"govsnap: error: not a git repository: {tmp_path / 'nowhere'}\n"


def test_a_work_tree_given_by_git_work_tree_is_captured_as_git_add_would(
    make_repo: MakeRepo, tmp_path: Path
) -> None:
    """GIT_WORK_TREE points A's repository at another directory: the snapshot holds what
    `git add -A` on a copy of A's index would stage there, judged by git itself."""
    a = make_repo({"README.md": "a\n", "kept.txt": "a\n"}, name="A")
    work = tmp_path / "elsewhere"
    write_files(work, {"README.md": "from W\n", "new/file.txt": "w\n", ".gitignore": "*.log\n"})
    write_files(work, {"skip.log": "ignored\n"})
    env = {"GIT_DIR": str(a / ".git"), "GIT_WORK_TREE": str(work)}
    done = run([govsnap_bin(), "create", "--unsigned", "--json"], tmp_path, **env)
    assert done.returncode == 0, done.stderr
    check_json_output(done.args, done.returncode, done.stdout, done.stderr)
    tree = json.loads(done.stdout)["snapshot"]["payload"]["tree"]
    index = tmp_path / "twin-index"
    index.write_bytes((a / ".git" / "index").read_bytes())
    twin = {**env, "GIT_INDEX_FILE": str(index)}
    assert run(["git", "add", "-A"], tmp_path, **twin).returncode == 0
    expected = run(["git", "write-tree"], tmp_path, **twin).stdout.strip()
    assert tree == expected
    # A's own work tree and index are untouched.
    assert git(a, "status", "--porcelain") == ""
