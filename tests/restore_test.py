"""restore: a snapshot's files written into another directory, judged against git's own
checkout of the same tree in a twin clone with the same configuration, and the
repository left exactly as it was."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pygit2
import pytest

from tests.conformance.judge import LFS_FILTER, PROCESS_FILTER, python_script
from tests.helpers import (
    BINARY,
    Cli,
    Keys,
    MakeRepo,
    all_refs,
    create_snapshot,
    files_state,
    git,
    git_bytes,
    trust_policy,
    write_files,
)
from tests.rollback_test import hostile_tree

# A filter driver standing in for LFS: what is stored differs from what is checked out.
ROT13 = "tr a-zA-Z n-za-mN-ZA-M"
FILTER_CONFIG = {
    "filter.rot.clean": ROT13,
    "filter.rot.smudge": ROT13,
    "filter.rot.required": "true",
    "core.autocrlf": "true",
}


@pytest.fixture
def repo(make_repo: MakeRepo, keys: Keys) -> Path:
    """A repository whose checkout converts: eol attributes, core.autocrlf, a smudge
    filter, a symlink, an executable, binary bytes, nested directories."""
    path = make_repo(
        {
            ".govsnap/trust.toml": trust_policy(keys),
            ".gitattributes": "*.crlf text eol=crlf\n*.rot filter=rot\n*.bin binary\n",
            "a.crlf": "one\ntwo\n",
            "notes.txt": "autocrlf\nmakes this crlf\n",
            "deep/down/secret.rot": "Hello, World\n",
            "deep/other.txt": "plain\n",
            "data.bin": BINARY,
            "run.sh": "#!/bin/sh\necho hi\n",
        },
        commit=False,
    )
    for key, value in FILTER_CONFIG.items():
        git(path, "config", key, value)
    os.chmod(path / "run.sh", 0o755)
    os.symlink("deep/other.txt", path / "link")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "initial")
    return path


def repo_state(repo: Path) -> tuple[str, str, bytes, str, dict[str, tuple[str, bytes]]]:
    """Everything a restore must leave alone: refs, HEAD, the index, git status, files."""
    return (
        all_refs(repo),
        git(repo, "rev-parse", "HEAD"),
        (repo / ".git" / "index").read_bytes(),
        git(repo, "status", "--porcelain=v2", "--ignored"),
        files_state(repo),
    )


def twin_checkout(
    repo: Path, ident: str, dest: Path, config: dict[str, str] = FILTER_CONFIG
) -> dict[str, tuple[str, bytes]]:
    """Return the files git's own checkout of the snapshot's commit writes in a clone of
    the repository with the same configuration."""
    git(repo.parent, "clone", "-q", "--no-checkout", str(repo), str(dest))
    for key, value in config.items():
        git(dest, "config", key, value)
    git(dest, "fetch", "-q", "origin", "+refs/govsnap/*:refs/govsnap/*")
    git(dest, "checkout", "-q", "--detach", f"refs/govsnap/snapshots/{ident}^{{commit}}")
    return files_state(dest)


def test_restore_writes_what_gits_checkout_writes_and_touches_nothing(
    cli: Cli, repo: Path, tmp_path: Path
) -> None:
    ident = create_snapshot(cli, repo)
    (repo / "notes.txt").write_text("changed since\n")
    before = repo_state(repo)
    target = tmp_path / "out" / "restored"

    result = cli(repo, "restore", ident, "--target", str(target), "--json")

    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert data["snapshot"] == ident and data["verified"] is True and data["count"] == 9
    expected = twin_checkout(repo, ident, tmp_path / "twin")
    assert files_state(target) == expected
    # The conversions happened: the judge is not comparing two raw copies.
    assert expected["deep/down/secret.rot"] == ("f", b"Hello, World\r\n")
    assert expected["a.crlf"] == ("f", b"one\r\ntwo\r\n")
    assert expected["run.sh"][0] == "x" and expected["link"] == ("link", b"deep/other.txt")
    assert repo_state(repo) == before
    assert sorted(p.name for p in target.parent.iterdir()) == ["restored"]
    assert oct(target.stat().st_mode & 0o777) == oct(0o777 & ~current_umask())


@pytest.mark.parametrize("driver", ["process", "lfs"])
def test_filter_drivers_run_as_in_gits_checkout(
    cli: Cli, make_repo: MakeRepo, tmp_path: Path, driver: str
) -> None:
    repo = make_repo(commit=False)
    if driver == "process":
        # A long-running filter (filter.<driver>.process, git's pkt-line protocol, as
        # git-lfs speaks it) that stores content reversed.
        command = python_script(tmp_path / "rev.py", PROCESS_FILTER)
        config = {"filter.x.process": command, "filter.x.required": "true"}
    else:
        # LFS's shape: git stores a pointer, the content lives in a store beside it.
        command = python_script(tmp_path / "lfs.py", LFS_FILTER)
        store = tmp_path / "lfs-store"
        config = {
            "filter.x.clean": f"{command} clean {store}",
            "filter.x.smudge": f"{command} smudge {store}",
            "filter.x.required": "true",
        }
    for key, value in config.items():
        git(repo, "config", key, value)
    write_files(repo, {".gitattributes": "*.dat filter=x -text\n", "big.dat": b"\0v1" * 5000})
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "filtered")
    ident = create_snapshot(cli, repo, "--unsigned")
    target = tmp_path / "t"

    result = cli(repo, "restore", ident, "-t", str(target), "--no-verify")

    assert result.code == 0, result.err
    expected = twin_checkout(repo, ident, tmp_path / "twin", config)
    assert files_state(target) == expected
    stored = git_bytes(repo, "cat-file", "blob", f"refs/govsnap/snapshots/{ident}:big.dat")
    assert expected["big.dat"] == ("f", b"\0v1" * 5000) != ("f", stored)


def current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_include_selects_files_converted_as_in_a_full_checkout(
    cli: Cli, repo: Path, tmp_path: Path
) -> None:
    ident = create_snapshot(cli, repo)
    target = tmp_path / "some"

    result = cli(repo, "restore", ident, "-t", str(target), "--include", "**/*.rot", "-i", "a.crlf")

    assert result.code == 0, result.err
    assert "restored 2 file(s)" in result.out
    full = twin_checkout(repo, ident, tmp_path / "twin")
    got = files_state(target)
    # .gitattributes was left out, yet the filter and eol attributes it sets applied.
    assert got == {path: full[path] for path in ("deep/down/secret.rot", "a.crlf")}


def test_directory_and_single_star_patterns(cli: Cli, repo: Path, tmp_path: Path) -> None:
    ident = create_snapshot(cli, repo)

    result = cli(repo, "restore", ident, "-t", str(tmp_path / "t"), "-n", "--json", "-i", "deep")
    nested = cli(repo, "restore", ident, "-t", str(tmp_path / "t"), "-n", "--json", "-i", "*.txt")
    wild = cli(repo, "restore", ident, "-t", str(tmp_path / "t"), "-n", "--json", "-i", "d*/d*")

    assert result.code == 0 and nested.code == 0, result.err + nested.err
    assert [f["path"] for f in json.loads(result.out)["files"]] == [
        "deep/down/secret.rot",
        "deep/other.txt",
    ]
    # As in git's glob pathspecs, * does not cross a directory.
    assert [f["path"] for f in json.loads(nested.out)["files"]] == ["notes.txt"]
    # A directory a wildcard matches takes everything below it too.
    assert [f["path"] for f in json.loads(wild.out)["files"]] == ["deep/down/secret.rot"]
    assert not (tmp_path / "t").exists()


def test_dry_run_lists_and_writes_nothing(cli: Cli, repo: Path, tmp_path: Path) -> None:
    ident = create_snapshot(cli, repo)
    target = tmp_path / "t"
    target.mkdir()
    (target / "notes.txt").write_text("mine\n")

    result = cli(repo, "restore", ident, "-t", str(target), "--force", "--dry-run")

    assert result.code == 0, result.err
    assert "would write 9 file(s)" in result.out and "overwriting 1" in result.out
    assert "replace notes.txt" in result.out and "write   run.sh" in result.out
    assert files_state(target) == {"notes.txt": ("f", b"mine\n")}


def test_force_overwrites_what_the_snapshot_holds_and_keeps_the_rest(
    cli: Cli, repo: Path, tmp_path: Path
) -> None:
    ident = create_snapshot(cli, repo)
    target = tmp_path / "t"
    target.mkdir()
    (target / "notes.txt").write_text("mine\n")
    (target / "extra").write_text("kept\n")

    refused = cli(repo, "restore", ident, "-t", str(target))
    forced = cli(repo, "restore", ident, "-t", str(target), "--force")

    assert refused.code == 2 and "not empty" in refused.err and "--force" in refused.err
    assert forced.code == 0, forced.err
    assert "overwriting 1" in forced.out
    got = files_state(target)
    assert got.pop("extra") == ("f", b"kept\n")
    assert got == twin_checkout(repo, ident, tmp_path / "twin")


def test_force_never_writes_through_a_symlink_in_the_target(
    cli: Cli, repo: Path, tmp_path: Path
) -> None:
    ident = create_snapshot(cli, repo)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_text("keep\n")
    target = tmp_path / "t"
    target.mkdir()
    os.symlink(outside, target / "deep")
    os.symlink(outside / "victim", target / "notes.txt")

    result = cli(repo, "restore", ident, "-t", str(target), "--force")

    assert result.code == 0, result.err
    assert files_state(outside) == {"victim": ("f", b"keep\n")}
    assert (target / "deep").is_dir() and not (target / "deep").is_symlink()
    assert (target / "notes.txt").read_bytes() == b"autocrlf\r\nmakes this crlf\r\n"


def test_a_failing_filter_leaves_no_half_written_target(
    cli: Cli, repo: Path, tmp_path: Path
) -> None:
    ident = create_snapshot(cli, repo)
    git(repo, "config", "filter.rot.smudge", "false")
    target = tmp_path / "t"

    result = cli(repo, "restore", ident, "-t", str(target))

    assert result.code == 3, result.err
    assert len(result.err.splitlines()) == 1 and "checkout-index" in result.err
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".t.govsnap-")]
    assert not target.exists()


def test_an_unverified_snapshot_is_refused_unless_told(
    cli: Cli, repo: Path, tmp_path: Path
) -> None:
    ident = create_snapshot(cli, repo, "--unsigned")
    target = tmp_path / "t"

    refused = cli(repo, "restore", ident, "-t", str(target))
    allowed = cli(repo, "restore", ident, "-t", str(target), "--no-verify")

    assert refused.code == 1 and "failed verification" in refused.err
    assert "--no-verify" in refused.err and len(refused.err.splitlines()) == 1
    assert allowed.code == 0, allowed.err
    assert "NOT verified" in allowed.err and (target / "run.sh").exists()


@pytest.mark.parametrize("shape", ["dotdot", "dotgit", "slash", "symlink-then-dir", "nested"])
def test_a_hostile_tree_is_refused_before_anything_is_written(
    cli: Cli, make_repo: MakeRepo, tmp_path: Path, shape: str
) -> None:
    repo = make_repo({"README.md": "hello\n"})
    git_repo = pygit2.Repository(str(repo))
    sig = pygit2.Signature("Mallory", "mallory@example.com", 1700000000, 0)
    commit = git_repo.create_commit(None, sig, sig, "x\n", hostile_tree(git_repo, shape), [])
    ident = create_snapshot(cli, repo, "--from", str(commit), "--unsigned")
    target = tmp_path / "t"

    result = cli(repo, "restore", ident, "-t", str(target), "--no-verify")

    assert result.code == 1 and "unsafe tree entry" in result.err, result.err
    assert not target.exists() and not (tmp_path / "evil").exists()


BAD_RESTORES = [
    (["latest", "-t", "{repo}/sub"], "overlaps the repository"),
    (["latest", "-t", "{repo}"], "overlaps the repository"),
    (["latest", "-t", "{repo}/.git/x"], "overlaps the repository"),
    (["latest", "-t", "{tmp}"], "overlaps the repository"),
    (["latest", "-t", "{tmp}/file"], "is not a directory"),
    (["latest", "-t", "{tmp}/t", "-i", "../x"], "cannot climb out"),
    (["latest", "-t", "{tmp}/t", "-i", "/etc/passwd"], "relative to the top"),
    (["latest", "-t", "{tmp}/t", "-i", ":(top)x"], "pathspec magic"),
    (["latest", "-t", "{tmp}/t", "-i", " "], "empty pattern"),
    (["latest", "-t", "{tmp}/t", "-i", "nothing*"], "matches no file"),
    (["ffff", "-t", "{tmp}/t"], "no snapshot matches"),
    (["latest"], "Missing option '--target'"),
    (["latest", "-t", "{tmp}/file/below"], "cannot restore into"),
]


def test_bad_input_is_one_line_and_changes_nothing(cli: Cli, repo: Path, tmp_path: Path) -> None:
    # One repository for every case (each must leave it as it was): tests stay lean.
    create_snapshot(cli, repo)
    (tmp_path / "file").write_text("a file\n")
    before = repo_state(repo)
    outside = sorted(p.name for p in tmp_path.iterdir())
    for args, expected in BAD_RESTORES:
        argv = [a.format(repo=repo, tmp=tmp_path) for a in args]

        result = cli(repo, "restore", *argv)

        assert result.code in (1, 2, 3), (args, result.err)
        assert expected in result.err and len(result.err.splitlines()) == 1, (args, result.err)
        assert repo_state(repo) == before, args
        assert sorted(p.name for p in tmp_path.iterdir()) == outside, args


def test_an_empty_target_keeps_its_permissions_and_a_symlinked_one_its_link(
    cli: Cli, repo: Path, tmp_path: Path
) -> None:
    ident = create_snapshot(cli, repo)
    empty = tmp_path / "empty"
    empty.mkdir(mode=0o750)
    empty.chmod(0o750)
    os.symlink(empty, tmp_path / "link")

    result = cli(repo, "restore", ident, "-t", str(tmp_path / "link"))

    assert result.code == 0, result.err
    assert (tmp_path / "link").is_symlink() and (empty / "run.sh").is_file()
    assert oct(empty.stat().st_mode & 0o777) == oct(0o750)


def test_restore_from_a_bare_repository(cli: Cli, repo: Path, tmp_path: Path) -> None:
    ident = create_snapshot(cli, repo)
    bare = tmp_path / "bare.git"
    git(tmp_path, "clone", "-q", "--bare", str(repo), str(bare))
    git(bare, "fetch", "-q", str(repo), "+refs/govsnap/*:refs/govsnap/*")
    for key, value in FILTER_CONFIG.items():
        git(bare, "config", key, value)

    result = cli(bare, "restore", ident, "-t", str(tmp_path / "t"), "--no-verify")

    assert result.code == 0, result.err
    assert files_state(tmp_path / "t") == twin_checkout(repo, ident, tmp_path / "twin")


def test_a_sparse_checkout_still_restores_every_file(cli: Cli, repo: Path, tmp_path: Path) -> None:
    ident = create_snapshot(cli, repo)
    git(repo, "sparse-checkout", "set", "--no-cone", "/deep/")
    assert not (repo / "run.sh").exists()

    result = cli(repo, "restore", ident, "-t", str(tmp_path / "t"))

    assert result.code == 0, result.err
    assert files_state(tmp_path / "t") == twin_checkout(repo, ident, tmp_path / "twin")


def test_names_that_are_not_utf8_restore_byte_for_byte(
    cli: Cli, make_repo: MakeRepo, tmp_path: Path
) -> None:
    repo = make_repo({"README.md": "hello\n"}, commit=False)
    name = b"caf\xe9 \x1b[31m.txt"
    (repo / os.fsdecode(name)).write_bytes(b"x\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "odd name")
    ident = create_snapshot(cli, repo, "--unsigned")
    target = tmp_path / "t"

    shown = cli(repo, "restore", ident, "-t", str(target), "--no-verify", "-n")
    result = cli(repo, "restore", ident, "-t", str(target), "--no-verify", "--json")

    assert result.code == 0 and shown.code == 0, result.err + shown.err
    assert "\x1b" not in shown.out and "\\x1b[31m" in shown.out
    assert json.loads(result.out)["count"] == 2
    assert sorted(os.listdir(os.fsencode(target))) == [b"README.md", name]
