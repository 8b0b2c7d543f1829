"""ls and find: a snapshot's tree listed as `git ls-tree -l` lists it, and the snapshots
holding matching paths, with names from the tree escaped for the terminal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import Cli, MakeRepo, all_refs, create_snapshot, git, write_files


@pytest.fixture
def repo(make_repo: MakeRepo) -> Path:
    return make_repo(
        {
            "README.md": "hello\n",
            "deploy/app.yaml": "replicas: 2\n",
            "deploy/prod/app.yaml": "replicas: 9\n",
            "src/app.py": "print('v1')\n",
        }
    )


def tree_of(repo: Path, ident: str) -> str:
    return git(repo, "rev-parse", f"refs/govsnap/snapshots/{ident}^{{tree}}").strip()


@pytest.mark.parametrize(
    ("args", "git_args"),
    [
        ([], []),
        (["-r"], ["-r"]),
        (["deploy"], ["deploy/"]),
        (["deploy/", "--recursive"], ["-r", "deploy/"]),
        (["./deploy/prod/app.yaml"], ["deploy/prod/app.yaml"]),
    ],
)
def test_ls_prints_what_git_ls_tree_prints(
    cli: Cli, repo: Path, args: list[str], git_args: list[str]
) -> None:
    ident = create_snapshot(cli, repo, "--unsigned")
    (repo / "README.md").write_text("changed after the snapshot\n")

    result = cli(repo, "ls", ident, *args)

    assert result.code == 0, result.err
    assert result.out == git(repo, "ls-tree", "-l", tree_of(repo, ident), *git_args)


def test_ls_json_and_name_only(cli: Cli, repo: Path) -> None:
    ident = create_snapshot(cli, repo, "--unsigned")

    names = cli(repo, "ls", ident, "deploy", "-r", "--name-only")
    data = json.loads(cli(repo, "ls", ident, "deploy", "--json").out)

    assert names.out == "deploy/app.yaml\ndeploy/prod/app.yaml\n"
    assert data["snapshot"] == ident and data["path"] == "deploy"
    assert [(e["path"], e["type"], e["size"]) for e in data["entries"]] == [
        ("deploy/app.yaml", "blob", 12),
        ("deploy/prod", "tree", None),
    ]


def test_names_from_the_tree_are_escaped(cli: Cli, repo: Path) -> None:
    write_files(repo, {"evil\x1b[2Jname\u202e.txt": "x\n"})
    ident = create_snapshot(cli, repo, "--unsigned")

    listed = cli(repo, "ls", ident, "--name-only")
    found = cli(repo, "find", "evil*")

    for out in (listed.out, found.out):
        assert "\x1b" not in out and "\u202e" not in out
        assert "evil\\x1b[2Jname\\u202e.txt" in out
    assert json.loads(cli(repo, "find", "evil*", "--json").out)["snapshots"][0]["paths"] == [
        "evil\x1b[2Jname\u202e.txt"
    ]


def test_find_names_the_snapshots_holding_a_match(cli: Cli, repo: Path) -> None:
    first = create_snapshot(cli, repo, "--unsigned", "-e", "staging")
    write_files(repo, {"deploy/prod/secrets.yaml": "k: v\n"})
    git(repo, "rm", "-q", "deploy/app.yaml")
    second = create_snapshot(cli, repo, "--unsigned", "-e", "production")
    refs = all_refs(repo)

    by_name = json.loads(cli(repo, "find", "*.yaml", "--json").out)
    by_path = json.loads(cli(repo, "find", "deploy/*.yaml", "--json").out)
    secrets = cli(repo, "find", "secrets.yaml")
    staging = json.loads(cli(repo, "find", "*.yaml", "-e", "staging", "--json").out)

    # A name matches in every directory, newest snapshot first.
    assert [(s["snapshot"], s["paths"]) for s in by_name["snapshots"]] == [
        (second, ["deploy/prod/app.yaml", "deploy/prod/secrets.yaml"]),
        (first, ["deploy/app.yaml", "deploy/prod/app.yaml"]),
    ]
    # With a /, the pattern is a path from the top, and * stays within a directory.
    assert [(s["snapshot"], s["paths"]) for s in by_path["snapshots"]] == [
        (first, ["deploy/app.yaml"])
    ]
    assert secrets.out.startswith(f"snapshot {second} (") and secrets.out.count("snapshot ") == 1
    assert "1 of 2 snapshot(s) hold a path matching secrets.yaml" in secrets.out
    assert [s["snapshot"] for s in staging["snapshots"]] == [first]
    assert staging["searched"] == 1
    assert all_refs(repo) == refs


BAD_INPUT = [
    (["ls", "latest", "nope"], "no such path"),
    (["ls", "latest", "../x"], "cannot climb out"),
    (["ls", "latest", "/etc"], "relative to the top"),
    (["ls", "ffff"], "no snapshot matches"),
    (["ls", "not-a-name"], "not a snapshot name"),
    (["find", " "], "an empty pattern"),
    (["find", "../*"], "cannot climb out"),
    (["find", ":(top)x"], "pathspec magic"),
    (["find", "/etc/*"], "relative to the top"),
    (["find"], "Missing argument"),
]


def test_bad_input_is_one_line(cli: Cli, repo: Path) -> None:
    create_snapshot(cli, repo, "--unsigned")
    for args, expected in BAD_INPUT:
        result = cli(repo, *args)

        assert result.code == 2, (args, result.err)
        assert expected in result.err and len(result.err.splitlines()) == 1, (args, result.err)


def test_find_names_an_unreadable_snapshot_and_searches_the_rest(cli: Cli, repo: Path) -> None:
    ident = create_snapshot(cli, repo, "--unsigned")
    git(repo, "update-ref", "refs/govsnap/snapshots/deadbeefdeadbeef", "HEAD")

    result = cli(repo, "find", "*.py")
    data = json.loads(cli(repo, "find", "*.py", "--json").out)

    assert result.code == 0, result.err
    assert f"snapshot {ident} (" in result.out and "1 of 1 snapshot(s)" in result.out
    assert "unreadable, not searched: deadbeefdeadbeef" in result.err
    assert data["unreadable"] == ["deadbeefdeadbeef"] and data["searched"] == 1


def test_a_matching_directory_takes_the_files_below_it(cli: Cli, repo: Path) -> None:
    first = create_snapshot(cli, repo, "--unsigned")
    git(repo, "rm", "-q", "-r", "deploy")
    write_files(repo, {"deploy": "now a file\n"})
    second = create_snapshot(cli, repo, "--unsigned")

    by_name = json.loads(cli(repo, "find", "deploy", "--json").out)
    by_glob = json.loads(cli(repo, "find", "dep*/prod", "--json").out)

    # "deploy" is a file in one snapshot and a directory in the other: both are found.
    assert [(s["snapshot"], s["paths"]) for s in by_name["snapshots"]] == [
        (second, ["deploy"]),
        (first, ["deploy/app.yaml", "deploy/prod/app.yaml"]),
    ]
    assert [(s["snapshot"], s["paths"]) for s in by_glob["snapshots"]] == [
        (first, ["deploy/prod/app.yaml"])
    ]


def test_find_survives_a_tree_git_would_refuse(cli: Cli, repo: Path) -> None:
    import pygit2

    from tests.rollback_test import hostile_tree

    git_repo = pygit2.Repository(str(repo))
    sig = pygit2.Signature("Mallory", "mallory@example.com", 1700000000, 0)
    commit = git_repo.create_commit(None, sig, sig, "x\n", hostile_tree(git_repo, "dotgit"), [])
    hostile = create_snapshot(cli, repo, "--from", str(commit), "--unsigned")
    plain = create_snapshot(cli, repo, "--unsigned")

    result = cli(repo, "find", "*", "--json")

    assert result.code == 0, result.err
    found = {s["snapshot"]: s["paths"] for s in json.loads(result.out)["snapshots"]}
    assert found[hostile] == ["README.md"]  # .git/evil is never matched
    assert "src/app.py" in found[plain]
