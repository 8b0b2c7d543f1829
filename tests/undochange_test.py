"""rollback A..B: the changes between two snapshots undone, as snapper's undochange does,
judged against `git restore --source=A --staged --worktree` of the same paths on a twin
copy; the safety snapshot undoes it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.helpers import (
    Cli,
    Keys,
    MakeRepo,
    all_refs,
    create_snapshot,
    files_state,
    git,
    trust_policy,
    write_files,
)


@pytest.fixture
def repo(make_repo: MakeRepo, keys: Keys) -> Path:
    return make_repo(
        {
            ".govsnap/trust.toml": trust_policy(keys),
            "changed.txt": "v1\n",
            "removed.txt": "gone later\n",
            "other.txt": "untouched between\n",
            "deploy/app.yaml": "replicas: 2\n",
        }
    )


def commit_of(repo: Path, ident: str) -> str:
    return git(repo, "rev-parse", f"refs/govsnap/snapshots/{ident}^{{commit}}").strip()


def two_snapshots(cli: Cli, repo: Path) -> tuple[str, str]:
    """Snapshot A, commit changes, snapshot B, then change more after B."""
    a = create_snapshot(cli, repo)
    write_files(repo, {"changed.txt": "v2\n", "added.txt": "new\n", "deploy/app.yaml": "r: 3\n"})
    (repo / "removed.txt").unlink()
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "changes between A and B")
    b = create_snapshot(cli, repo)
    write_files(repo, {"other.txt": "edited after B\n", "changed.txt": "v3 after B\n"})
    return a, b


def state(repo: Path) -> tuple[dict[str, tuple[str, bytes]], str]:
    return files_state(repo), git(repo, "ls-files", "-s")


def test_undo_matches_git_restore_of_the_changed_paths(
    cli: Cli, repo: Path, tmp_path: Path
) -> None:
    a, b = two_snapshots(cli, repo)
    before = state(repo)
    twin = tmp_path / "twin"
    shutil.copytree(repo, twin, symlinks=True)
    changed = git(twin, "diff", "--name-only", commit_of(twin, a), commit_of(twin, b)).split()
    git(twin, "restore", f"--source={commit_of(twin, a)}", "--staged", "--worktree", *changed)

    result = cli(repo, "rollback", f"{a}..{b}", "--yes", "--json")

    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert data["undone"] == f"{a}..{b}" and data["snapshot"] == a
    assert sorted(data["paths"]) == sorted(changed)
    assert state(repo) == state(twin)
    assert (repo / "other.txt").read_text() == "edited after B\n"
    assert (repo / "changed.txt").read_text() == "v1\n" and not (repo / "added.txt").exists()

    undo = cli(repo, "rollback", data["safety_snapshot"], "--yes")

    assert undo.code == 0, undo.err
    assert state(repo) == before


def test_paths_limit_the_undo_and_dry_run_changes_nothing(cli: Cli, repo: Path) -> None:
    a, b = two_snapshots(cli, repo)
    before, refs = state(repo), all_refs(repo)

    dry = cli(repo, "rollback", f"{a}..{b}", "--paths", "deploy", "--dry-run")

    assert dry.code == 0, dry.err
    assert f"undoing the changes {a}..{b}: 1 path(s)" in dry.out
    assert "write  deploy/app.yaml" in dry.out and "changed.txt" not in dry.out
    assert (state(repo), all_refs(repo)) == (before, refs)

    done = cli(repo, "rollback", f"{a[:6]}..latest", "--paths", "deploy", "--yes")

    assert done.code == 0, done.err
    assert (repo / "deploy/app.yaml").read_text() == "replicas: 2\n"
    assert (repo / "changed.txt").read_text() == "v3 after B\n"


def test_an_unverified_end_is_refused(cli: Cli, repo: Path) -> None:
    a = create_snapshot(cli, repo)
    write_files(repo, {"changed.txt": "forged\n"})
    b = create_snapshot(cli, repo, "--unsigned")
    before, refs = state(repo), all_refs(repo)

    result = cli(repo, "rollback", f"{a}..{b}", "--yes")

    assert result.code == 1 and f"snapshot {b} failed verification" in result.err
    assert len(result.err.splitlines()) == 1
    assert state(repo) == before
    # Refused, and the refusal recorded, as a refused rollback is: nothing else moved.
    after = {line.split()[0]: line for line in all_refs(repo).splitlines()}
    assert {k: v for k, v in after.items() if k != "refs/govsnap/audit"} == {
        line.split()[0]: line
        for line in refs.splitlines()
        if not line.startswith("refs/govsnap/audit ")
    }
    entry = git(repo, "log", "-1", "--format=%B", "refs/govsnap/audit")
    assert f"undo of the changes {a}..{b} refused" in entry


BAD_SPANS = [
    ("{a}..", "name two snapshots as A..B"),
    ("..{a}", "name two snapshots as A..B"),
    ("{a}..{a}..{a}", "name two snapshots as A..B"),
    ("{a}..{a}", "names snapshot"),
    ("{a}..{same}", "nothing to undo"),
    ("{a}..ffff", "no snapshot matches"),
]


def test_bad_spans_are_one_line_and_change_nothing(cli: Cli, repo: Path) -> None:
    a = create_snapshot(cli, repo)
    same = create_snapshot(cli, repo)
    before, refs = state(repo), all_refs(repo)
    for span, expected in BAD_SPANS:
        result = cli(repo, "rollback", span.format(a=a, same=same), "--yes")

        assert result.code == 2, (span, result.err)
        assert expected in result.err and len(result.err.splitlines()) == 1, (span, result.err)
        assert (state(repo), all_refs(repo)) == (before, refs), span
