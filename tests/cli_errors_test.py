"""Bad input to every command: one line on stderr, the right exit code, nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import Cli, MakeRepo, Result, all_refs, git, snapshot_ids

# Every command, with the arguments that make it act on a snapshot named ID.
BY_ID = [
    ["show", "ID"],
    ["diff", "ID"],
    ["verify", "ID"],
    ["rollback", "ID", "--yes"],
    ["rehearse", "ID"],
    ["pin", "ID"],
    ["unpin", "ID"],
    ["prune", "--id", "ID", "--yes"],
]
READING = [["list"], ["stats"], ["audit"], ["audit", "verify"], ["doctor"], ["trust", "show"]]


def one_error_line(result: Result, code: int) -> None:
    assert result.code == code, (result.code, result.err)
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("govsnap: error: "), result.err
    assert "Traceback" not in result.err


def with_id(args: list[str], ident: str) -> list[str]:
    return [ident if a == "ID" else a for a in args]


@pytest.mark.parametrize("args", BY_ID + READING + [["create"], ["push"], ["fetch"]])
def test_not_a_repository(cli: Cli, tmp_path: Path, args: list[str]) -> None:
    one_error_line(cli(tmp_path, *with_id(args, "abcd")), 3)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args", BY_ID)
def test_unknown_id(cli: Cli, repo: Path, args: list[str]) -> None:
    assert cli(repo, "create").code == 0
    before = all_refs(repo)
    one_error_line(cli(repo, *with_id(args, "0000ffff")), 2)
    assert all_refs(repo) == before


@pytest.mark.parametrize("args", BY_ID)
def test_ambiguous_id(cli: Cli, repo: Path, args: list[str]) -> None:
    result = cli(repo, "create", "--json")
    assert result.code == 0
    ident = git(repo, "for-each-ref", "--format=%(refname:lstrip=3)", "refs/govsnap/").split()[0]
    tag = git(repo, "rev-parse", f"refs/govsnap/snapshots/{ident}").strip()
    git(repo, "update-ref", f"refs/govsnap/snapshots/{ident[:6]}0000000000", tag)
    before = all_refs(repo)
    result = cli(repo, *with_id(args, ident[:6]))
    one_error_line(result, 2)
    assert "ambiguous" in result.err
    assert all_refs(repo) == before


@pytest.mark.parametrize("args", BY_ID)
def test_no_snapshots_yet_in_an_empty_repository(
    cli: Cli, make_repo: MakeRepo, args: list[str]
) -> None:
    repo = make_repo(commit=False)
    one_error_line(cli(repo, *with_id(args, "latest")), 2)
    assert all_refs(repo) == ""


@pytest.mark.parametrize("args", READING)
def test_reading_commands_work_in_an_empty_repository(
    cli: Cli, make_repo: MakeRepo, args: list[str]
) -> None:
    repo = make_repo(commit=False)
    result = cli(repo, *args)
    assert result.code in (0, 2), result.err
    if result.code:
        one_error_line(result, 2)
    assert all_refs(repo) == ""


# rehearse is not here: it rolls back in a clone of its own, so it works on a server too.
@pytest.mark.parametrize("args", [["create"], ["rollback", "latest", "--yes"], ["diff", "latest"]])
def test_working_tree_commands_in_a_bare_repository(
    cli: Cli, repo: Path, tmp_path: Path, args: list[str]
) -> None:
    assert cli(repo, "create").code == 0
    bare = tmp_path / "bare.git"
    git(tmp_path, "clone", "-q", "--mirror", str(repo), str(bare))
    before = all_refs(bare)
    one_error_line(cli(bare, *args), 3)
    assert all_refs(bare) == before


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["create", "--unsigned", "-m", "\udcff\udcfe"], "the message is not valid UTF-8"),
        (["trust", "show", "--ref", "refs/heads/\udcff"], "is not a valid ref name (not UTF-8)"),
    ],
)
def test_command_line_bytes_that_are_not_utf8(
    cli: Cli, repo: Path, args: list[str], said: str
) -> None:
    """Bytes that are not UTF-8 reach Python as lone surrogates (os.fsdecode): one line
    and exit 2, never an internal error (the torture suite's hostile names found it)."""
    before = snapshot_ids(repo)
    result = cli(repo, *args)
    assert result.code == 2, result.err
    assert said in result.err and "internal error" not in result.err
    assert len(result.err.splitlines()) == 1
    assert snapshot_ids(repo) == before
