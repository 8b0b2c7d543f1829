"""States in which a rollback must refuse, before writing anything: where git's own
checkout refuses (judged on a twin copy with `git read-tree -m -u`), and where git's
checkout would delete what no snapshot can hold (a repository, a submodule's uncommitted
work), which govsnap's playbook promises never to lose. Each refusal is one line naming
the path, exit 2, the same from `--dry-run`; the working tree, the index, the snapshot
refs and the index lock are as before."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conformance.judge import BASE, commit, copy_repo, create, rollback, run, sh, state
from tests.helpers import Cli, MakeRepo, git, snapshot_ids, write_files


@pytest.fixture
def repo(make_repo: MakeRepo) -> Path:
    repo = make_repo(BASE)
    git(repo, "config", "govsnap.requireTrust", "false")
    return repo


def refused(cli: Cli, repo: Path, ident: str, path: str) -> str:
    """Run the dry run and the rollback; assert both refuse in one line naming `path`
    and that nothing changed; return the rollback's line."""
    before = state(repo)
    snapshots = snapshot_ids(repo)
    audit = git(repo, "rev-parse", "refs/govsnap/audit").strip()
    dry = cli(repo, "rollback", ident, "--dry-run")
    assert dry.code == 2, dry.err
    real = cli(repo, "rollback", ident, "--yes")
    assert real.code == 2, real.err
    for result in (dry, real):
        errors = [line for line in result.err.splitlines() if "error:" in line]
        assert len(errors) == 1 and path in errors[0], result.err
        assert "internal error" not in result.err
    assert state(repo) == before, state(repo).differences(before)
    assert snapshot_ids(repo) == snapshots  # no safety snapshot taken
    assert git(repo, "rev-parse", "refs/govsnap/audit").strip() == audit  # no failed attempt
    assert not (repo / ".git" / "index.lock").exists()
    return real.err


def git_refuses(repo: Path, tmp_path: Path, tree: str) -> str:
    """Return what git's own checkout of `tree` says on a twin copy, asserting it refuses
    and writes nothing."""
    twin = copy_repo(repo, tmp_path / "twin")
    before = state(twin)
    current = run(twin, "write-tree").decode().strip()
    proc = subprocess.run(
        ["git", "read-tree", "-m", "-u", current, tree], cwd=twin, capture_output=True
    )
    assert proc.returncode != 0, "git's checkout did not refuse"
    assert state(twin) == before
    return proc.stderr.decode()


def nested_repository(where: Path, *, uncommitted: str = "precious uncommitted work\n") -> None:
    git(where.parent, "init", "-q", "-b", "main", str(where))
    write_files(where, {"n.txt": "committed in the nested repository\n"})
    sh(where, commit("nested history"))
    write_files(where, {"work.txt": uncommitted})


@pytest.mark.parametrize("kind", ["file", "symlink"])
def test_an_untracked_nested_repository_where_the_snapshot_has_a_file(
    kind: str, cli: Cli, repo: Path, tmp_path: Path
) -> None:
    """git refuses: "Updating 'nested' would lose untracked files in it". So does the
    rollback (it would have deleted the repository with its history)."""
    sh(repo, "echo 'a file' > nested" if kind == "file" else "ln -s README.md nested")
    ident, tree = create(cli, repo)
    (repo / "nested").unlink()
    nested_repository(repo / "nested")
    assert "would lose untracked files" in git_refuses(repo, tmp_path, tree)
    err = refused(cli, repo, ident, "nested/.git")
    assert "would lose untracked files" in err
    assert git(repo / "nested", "log", "--format=%s") == "nested history\n"


def test_a_dot_git_directory_git_never_captures(cli: Cli, repo: Path, tmp_path: Path) -> None:
    """A directory named .git that is no repository (a broken clone, a backup) is never
    captured by `git add -A`; git refuses to replace its untracked parent by a file, and
    the rollback refuses too, even once the parent's other files are tracked (where git's
    checkout would delete the .git directory with its parent)."""
    write_files(repo, {"sub": "sub is a file\n"})
    ident, tree = create(cli, repo)
    (repo / "sub").unlink()
    write_files(repo, {"sub/.git/notes.txt": "kept in sub/.git\n", "sub/x": "x\n"})
    assert "would lose untracked files" in git_refuses(repo, tmp_path, tree)
    refused(cli, repo, ident, "sub/.git")
    git(repo, "add", "sub/x")
    refused(cli, repo, ident, "sub/.git")
    assert (repo / "sub/.git/notes.txt").read_text() == "kept in sub/.git\n"


def test_files_below_an_untracked_nested_repository(cli: Cli, repo: Path, tmp_path: Path) -> None:
    """Where the snapshot has files inside an untracked nested repository, git refuses
    when one exists there ("would be overwritten") and otherwise writes into the other
    repository's work tree; the rollback refuses both: its undo could not tell the
    nested repository's files from its own."""
    write_files(repo, {"vendor/lib/x.txt": "x in the snapshot\n"})
    ident, tree = create(cli, repo)
    (repo / "vendor/lib/x.txt").unlink()
    nested_repository(repo / "vendor" / "lib")
    refused(cli, repo, ident, "vendor/lib/.git")
    write_files(repo, {"vendor/lib/x.txt": "the nested repository's own x\n"})
    assert "would be overwritten" in git_refuses(repo, tmp_path, tree)
    refused(cli, repo, ident, "vendor/lib")


def test_an_ignored_directory_holding_a_repository(cli: Cli, repo: Path, tmp_path: Path) -> None:
    """git's checkout deletes an ignored directory where the snapshot has a file, a
    repository inside included (its history is gone). The rollback refuses instead: no
    snapshot can hold a repository."""
    write_files(repo, {"vendor": "a file\n"})
    ident, tree = create(cli, repo)
    (repo / "vendor").unlink()
    write_files(repo, {".gitignore": "vendor/\n"})
    nested_repository(repo / "vendor")
    twin = copy_repo(repo, tmp_path / "twin")
    run(twin, "read-tree", "-m", "-u", run(twin, "write-tree").decode().strip(), tree)
    assert not (twin / "vendor" / ".git").exists()  # what git does
    refused(cli, repo, ident, "vendor/.git")
    assert git(repo / "vendor", "log", "--format=%s") == "nested history\n"


def submodule_source(repo: Path) -> str:
    """Return the path of a repository to add as a submodule, next to `repo`."""
    source = repo.parent / f"{repo.name}-subsrc"
    git(repo.parent, "init", "-q", "-b", "main", str(source))
    write_files(source, {"s.txt": "s\n"})
    sh(source, commit("s"))
    return str(source)


def test_a_submodule_with_uncommitted_work(cli: Cli, repo: Path, tmp_path: Path) -> None:
    """git's checkout replaces a registered submodule by the snapshot's file, deleting
    the submodule's uncommitted work. The playbook promises a submodule's uncommitted
    work is never lost: the rollback refuses. A submodule whose work is all committed is
    replaced as git replaces it, and the undo brings the gitlink back."""
    source = submodule_source(repo)
    write_files(repo, {"sub": "sub was a file\n"})
    sh(repo, commit("sub is a file"))
    ident, tree = create(cli, repo)
    sh(repo, f"git rm -q sub && git -c protocol.file.allow=always submodule add -q {source} sub")
    sh(repo, commit("sub is a submodule"))
    write_files(repo, {"sub/work.txt": "uncommitted in sub\n"})
    twin = copy_repo(repo, tmp_path / "twin")
    run(twin, "read-tree", "-m", "-u", "HEAD", tree)
    assert (twin / "sub").is_file()  # git deletes the submodule's work
    refused(cli, repo, ident, "sub")
    assert (repo / "sub" / "work.txt").read_text() == "uncommitted in sub\n"

    (repo / "sub" / "work.txt").unlink()
    before = state(repo)
    done = rollback(cli, repo, ident)
    assert (repo / "sub").is_file()
    rollback(cli, repo, str(done["safety_snapshot"]))
    assert state(repo).index == before.index  # the gitlink is back, the checkout empty
    sh(repo, "git -c protocol.file.allow=always submodule update -q")
    assert state(repo) == before, state(repo).differences(before)


def test_a_skip_worktree_file_with_local_changes(cli: Cli, repo: Path, tmp_path: Path) -> None:
    """git refuses to overwrite a skip-worktree file that holds local changes ("Your local
    changes ... would be overwritten"); so does the rollback, saying what the flag is and
    what to do, without a safety snapshot or a failed attempt in the audit trail on each
    try."""
    write_files(repo, {"config.ini": "db=v1\n"})
    sh(repo, commit("v1"))
    ident, tree = create(cli, repo)
    write_files(repo, {"config.ini": "db=v2\n"})
    sh(repo, commit("v2"))
    git(repo, "update-index", "--skip-worktree", "config.ini")
    write_files(repo, {"config.ini": "db=localhost\n"})
    assert "not uptodate" in git_refuses(repo, tmp_path, tree)
    for _attempt in range(2):
        err = refused(cli, repo, ident, "config.ini")
        assert "skip-worktree" in err and "--no-skip-worktree config.ini" in err


def test_an_untracked_hook_the_snapshot_would_overwrite(cli: Cli, repo: Path) -> None:
    """Untracked files below an in-tree core.hooksPath (`govsnap hooks install` writes
    there) are left alone by a rollback; one the snapshot would overwrite is refused,
    rather than silently replaced (switching snapshot-on-push off)."""
    write_files(repo, {".husky/pre-push": "#!/bin/sh\necho tracked hook\n"})
    ident, _tree = create(cli, repo)
    (repo / ".husky" / "pre-push").unlink()
    git(repo, "config", "core.hooksPath", ".husky")
    from govsnap.cli import run as govsnap

    assert govsnap(["-C", str(repo), "hooks", "install"]) == 0
    installed = (repo / ".husky" / "pre-push").read_bytes()
    refused(cli, repo, ident, ".husky/pre-push")
    assert (repo / ".husky" / "pre-push").read_bytes() == installed
