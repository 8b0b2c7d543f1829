"""The command line's own parsing errors (unknown options, missing or extra arguments,
bad values) are one line on stderr like every other error, not a usage block."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import Cli, git


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["show", "--bogus"], "No such option: --bogus (see `govsnap show --help`)"),
        (["show"], "Missing argument"),
        (["verify", "--jobs", "x"], "Invalid value for '--jobs'"),
        (["hooks", "install", "extra"], "unexpected extra argument"),
        (["prune", "--keep-last"], "requires an argument"),
        (["show", "-x"], "No such option: -x"),
    ],
)
def test_parse_errors_are_one_line(cli: Cli, repo: Path, args: list[str], needle: str) -> None:
    result = cli(repo, *args)
    assert result.code == 2
    assert result.err.count("\n") == 1 and result.err.startswith("govsnap: error: "), result.err
    assert needle in result.err
    assert result.out == ""


def test_a_group_without_a_command_shows_its_help(cli: Cli, repo: Path) -> None:
    result = cli(repo, "trust")
    assert result.code == 2
    assert result.err.startswith("Usage: govsnap trust") and "show" in result.err


def test_help_and_version_exit_0(cli: Cli, repo: Path) -> None:
    assert cli(repo, "--help").code == 0
    assert cli(repo, "show", "--help").code == 0
    assert cli(repo, "--version").out.startswith("govsnap ")


def test_file_names_that_are_not_utf8_are_printed_escaped(cli: Cli, repo: Path) -> None:
    blob = git(repo, "hash-object", "-w", "--stdin", input_text="x\n").strip()
    raw = b"100644 caf\x80\xe9\0" + bytes.fromhex(blob)
    tree = git(repo, "hash-object", "-t", "tree", "-w", "--stdin", input_text=raw).strip()
    commit = git(repo, "commit-tree", tree, "-m", "latin-1 name").strip()
    created = cli(repo, "create", "--unsigned", "--from", commit, "--json")
    ident = json.loads(created.out)["snapshot"]["id"]
    text = cli(repo, "diff", ident)
    assert text.code == 0 and "caf\\udc80\\udce9" in text.out, text.err
    data = cli(repo, "diff", ident, "--json")
    assert data.code == 0 and "caf\udc80\udce9" in json.loads(data.out)["removed"]
    dry = cli(repo, "rollback", ident, "--dry-run", "--no-verify")
    assert dry.code == 0 and "caf\\udc80\\udce9" in dry.out, dry.err


def test_each_command_runs_in_an_app_of_its_own_feature_with_the_same_options() -> None:
    from typing import Any

    import typer
    from typer.core import TyperGroup

    from govsnap.cli import app, application

    def shape(command: Any) -> tuple[object, object]:
        params = sorted((p.name or "", tuple(p.opts)) for p in command.params)
        subcommands = getattr(command, "commands", {})
        return params, {n: shape(c) for n, c in subcommands.items()}

    # Only the feature holding the command is handed to the framework (start-up); the
    # command must come out exactly as in the whole app, the global options too.
    full = typer.main.get_command(app)
    assert isinstance(full, TyperGroup)
    for name, command in full.commands.items():
        if name in ("install-man", "completion"):
            # They describe the whole command line: the manual page, shell completion.
            assert application([name]) is app
            continue
        for argv in ([name], ["-C", "elsewhere", name, "--help"], ["--repo=x", name]):
            chosen = application(argv)
            assert chosen is not app, argv
            single = typer.main.get_command(chosen)
            assert isinstance(single, TyperGroup)
            assert shape(single.commands[name]) == shape(command)
            assert shape(single)[0] == shape(full)[0]
    for argv in ([], ["--help"], ["no-such-command"], ["-C", "list"]):
        assert application(argv) is app
