"""How govsnap prints, as a git subcommand would: -h everywhere, --quiet, colour by
NO_COLOR and --color, the pager by git's rules, tables that fit the width without cutting
an id, and a reader that goes away (`| head -1`) ending nothing with an error."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from govsnap.cli import command, run
from tests.helpers import Cli, create_snapshot, git, govsnap_bin, write_files
from tests.helpers.terminal import in_terminal

ESC = "\x1b["


def every_command() -> list[list[str]]:
    """Return the words of every command (groups too), as typed after `govsnap`."""
    found: list[list[str]] = [[]]

    def walk(group: object, words: list[str]) -> None:
        for name, sub in getattr(group, "commands", {}).items():
            found.append([*words, name])
            walk(sub, [*words, name])

    walk(command(), [])
    return found


def test_minus_h_is_help_everywhere(cli: Cli, repo: Path) -> None:
    commands = every_command()
    assert len(commands) > 30
    for words in commands:
        result = cli(repo, *words, "-h")
        assert result.code == 0, (words, result.err)
        assert result.out.startswith("Usage: govsnap"), words
        assert result.out == cli(repo, *words, "--help").out


def test_quiet_prints_no_report_before_or_after_the_command(cli: Cli, repo: Path) -> None:
    for args in (["-q", "create"], ["create", "--quiet"]):
        result = cli(repo, *args)
        assert (result.code, result.out) == (0, ""), result.err
    assert cli(repo, "list", "-q").out == ""
    # What was asked for is still printed, and errors still are.
    assert json.loads(cli(repo, "list", "-q", "--json").out)
    failed = cli(repo, "-q", "show", "ffffffff")
    assert failed.code == 2 and failed.err.startswith("govsnap: error: ")


def test_colour_follows_color_and_no_color(
    cli: Cli, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    create_snapshot(cli, repo, "--unsigned")
    assert ESC in cli(repo, "list", "--color=always").out
    assert ESC not in cli(repo, "list", "--color", "never").out
    assert ESC not in cli(repo, "list").out  # not a terminal
    bad = cli(repo, "list", "--color=sometimes")
    assert bad.code == 2 and "is not one of 'auto', 'always', 'never'" in bad.err
    monkeypatch.setenv("NO_COLOR", "1")
    assert ESC in cli(repo, "--color=always", "list").out


def test_colour_on_a_terminal_unless_no_color(repo: Path) -> None:
    git(repo, "config", "govsnap.allowUnsigned", "true")
    subprocess.run(
        [govsnap_bin(), "create", "--unsigned"], cwd=repo, check=True, capture_output=True
    )
    code, shown = in_terminal(repo, "list", env={"GIT_PAGER": "cat"})
    assert code == 0 and ESC in shown
    code, plain = in_terminal(repo, "list", env={"GIT_PAGER": "cat", "NO_COLOR": "1"})
    assert code == 0 and ESC not in plain


def lines_of(text: str) -> list[str]:
    return re.sub(r"\x1b\[[0-9;]*m", "", text).splitlines()


def many_snapshots(cli: Cli, repo: Path, count: int) -> list[str]:
    ids = []
    for i in range(count):
        write_files(repo, {f"f{i}.txt": f"{i}\n"})
        ids.append(
            create_snapshot(
                cli,
                repo,
                "-e",
                "staging-europe-west",
                "-l",
                f"release-candidate-{i}",
                "-t",
                "pre-push",
                "-m",
                "a message",
            )
        )
    return ids


@pytest.mark.parametrize("columns", [40, 80, 120])
def test_list_fits_the_width_and_never_cuts_an_id(
    cli: Cli, repo: Path, monkeypatch: pytest.MonkeyPatch, columns: int
) -> None:
    ids = many_snapshots(cli, repo, 2)
    monkeypatch.setenv("COLUMNS", str(columns))
    out = cli(repo, "list").out
    assert all(len(line) <= columns for line in lines_of(out)), out
    for ident in ids:
        assert re.search(rf"^{ident}\b", out, re.M), out
    assert "…" not in out
    if columns < 120:
        assert "left out to fit" in out and "--wide" in out
    wide = cli(repo, "list", "--wide").out
    assert "signer (unverified)" in wide and "release-candidate-1" in wide


def test_piped_output_is_80_columns_wide(cli: Cli, repo: Path) -> None:
    many_snapshots(cli, repo, 1)
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    for args in (["list"], ["audit"], ["stats"]):
        shown = subprocess.run(
            [govsnap_bin(), *args], cwd=repo, env=env, capture_output=True, text=True, check=True
        ).stdout
        assert shown and max(len(line) for line in shown.splitlines()) <= 80, (args, shown)


def test_audit_shows_snapshot_ids_whole(
    cli: Cli, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (ident,) = many_snapshots(cli, repo, 1)
    monkeypatch.setenv("COLUMNS", "80")
    out = cli(repo, "audit").out
    assert ident in out and all(len(line) <= 80 for line in lines_of(out)), out


def test_a_reader_that_goes_away_ends_nothing_with_an_error(cli: Cli, repo: Path) -> None:
    write_files(repo, {f"dir/file{i:03}.txt": "x\n" for i in range(200)})
    ident = create_snapshot(cli, repo)
    write_files(repo, {f"dir/file{i:03}.txt": "y\n" for i in range(200)})
    # `true` has gone before govsnap prints: its first write meets a closed pipe.
    for args in (f"diff {ident}", f"diff {ident} --json", "audit", "list"):
        shown = subprocess.run(
            ["bash", "-c", f"set -o pipefail; {govsnap_bin()} {args} | true"],
            cwd=repo,
            capture_output=True,
            text=True,
            check=False,
        )
        assert (shown.returncode, shown.stderr) == (0, ""), (args, shown)


PAGER_PREFIX = "sed s/^/PAGED:/"


def test_the_pager_is_gits(repo: Path) -> None:
    git(repo, "config", "govsnap.allowUnsigned", "true")
    subprocess.run(
        [govsnap_bin(), "create", "--unsigned"], cwd=repo, check=True, capture_output=True
    )
    env = {k: v for k, v in os.environ.items() if k not in ("GIT_PAGER", "PAGER", "LESS", "LV")}
    # GIT_PAGER, then core.pager, then PAGER, as `git var GIT_PAGER` orders them.
    code, out = in_terminal(repo, "list", env={**env, "GIT_PAGER": PAGER_PREFIX})
    assert code == 0 and "PAGED:" in out and "snapshot(s)" in out
    git(repo, "config", "core.pager", "sed s/^/CORE:/")
    code, out = in_terminal(repo, "list", env={**env, "PAGER": PAGER_PREFIX})
    assert "CORE:" in out and "PAGED:" not in out
    git(repo, "config", "--unset", "core.pager")
    code, out = in_terminal(repo, "list", env={**env, "PAGER": PAGER_PREFIX})
    assert "PAGED:" in out
    # --no-pager, before or after the command; a pager of `cat` is none.
    for args in (["--no-pager", "list"], ["list", "--no-pager"]):
        code, out = in_terminal(repo, *args, env={**env, "GIT_PAGER": PAGER_PREFIX})
        assert code == 0 and "PAGED:" not in out and "snapshot(s)" in out
    # LESS=FRX and LV=-c unless set, as git does; the width is the terminal's.
    shown = "cat >/dev/null; echo LESS=$LESS LV=$LV"
    code, out = in_terminal(repo, "list", env={**env, "GIT_PAGER": shown})
    assert "LESS=FRX LV=-c" in out
    code, out = in_terminal(repo, "list", env={**env, "GIT_PAGER": shown, "LESS": "-S"})
    assert "LESS=-S LV=-c" in out
    # An error before any output goes to the terminal, not through the pager.
    code, out = in_terminal(repo, "show", "ffffffff", env={**env, "GIT_PAGER": PAGER_PREFIX})
    assert code == 2 and "PAGED:" not in out and "govsnap: error:" in out


def test_no_pager_when_not_on_a_terminal(cli: Cli, repo: Path) -> None:
    create_snapshot(cli, repo)
    env = {**os.environ, "GIT_PAGER": PAGER_PREFIX}
    shown = subprocess.run(
        [govsnap_bin(), "list"], cwd=repo, env=env, capture_output=True, text=True, check=True
    )
    assert "PAGED:" not in shown.stdout


def test_show_reads_as_words_not_reprs(cli: Cli, repo: Path) -> None:
    ident = create_snapshot(cli, repo)
    cli(repo, "verify", ident)  # fails (no trust policy here): its verdict is recorded
    ref = f"refs/govsnap/snapshots/{ident}"
    note = json.loads(git(repo, "notes", "--ref=govsnap", "show", ref))
    note["rehearsal"] = {
        "time": "2026-11-30T08:00:00Z",
        "verdict": "fail",
        "failed_gates": ["rto"],
        "damage": ["delete", "modify"],
        "rollback_seconds": 1.5,
        "rto_seconds": 1.0,
        "tool_version": "0.1.0",
    }
    git(repo, "notes", "--ref=govsnap", "add", "-f", "-m", json.dumps(note), ref)
    out = cli(repo, "show", ident).out
    for repr_text in ("{", "}", "[", "'", '"', "True", "False", "None"):
        assert repr_text not in out, (repr_text, out)
    assert re.search(r"^last verification +fail at \S+Z; signer [0-9A-F]+$", out, re.M), out
    assert re.search(
        r"^last rehearsal +fail at 2026-11-30T08:00:00Z; damage delete, modify; failed gates "
        r"rto; rollback took \(s\) 1.5; objective \(s\) 1; by govsnap 0.1.0$",
        out,
        re.M,
    ), out
    assert re.search(r"^pinned +no$", out, re.M)


def test_show_wraps_between_words_and_keeps_digests_whole(
    cli: Cli, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ident = create_snapshot(cli, repo, "-m", "word " * 30)
    monkeypatch.setenv("COLUMNS", "60")
    out = cli(repo, "show", ident).out
    digest = json.loads(cli(repo, "show", ident, "--json").out)["payload"]["digest"]
    assert f"\n  {digest}\n" in out, out
    lines = out.splitlines()
    assert all(len(line) <= 60 for line in lines if digest not in line), out
    assert " ".join(out.split()).count("word") == 30


def test_verify_reports_the_whole_commands_time(
    cli: Cli, repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    create_snapshot(cli, repo)
    # The figure counts from when the command started (__main__ passes it), not from
    # when the checks began: a command begun 5 s ago says so.
    capsys.readouterr()
    run(["-C", str(repo), "verify", "--all"], started=time.monotonic() - 5)
    said = float(re.findall(r"\(([0-9.]+)s\)$", capsys.readouterr().out, re.M)[0])
    assert said >= 5
    # Run as users run it, it says no more than the command took.
    began = time.monotonic()
    shown = subprocess.run(
        [govsnap_bin(), "verify", "--all"], cwd=repo, capture_output=True, text=True, check=False
    )
    took = time.monotonic() - began
    said = float(re.findall(r"\(([0-9.]+)s\)$", shown.stdout, re.M)[0])
    assert 0 < said <= took, (said, took)


def test_show_groups_what_is_no_extension_as_other(cli: Cli, repo: Path) -> None:
    write_files(
        repo,
        {
            "t/refs.br-branches-default-merge": "x\n",
            "t/refs.br-remotes-default-octopus": "y\n",
            "lib/a.tar": "z\n",
        },
    )
    ident = create_snapshot(cli, repo)
    line = next(x for x in cli(repo, "show", ident).out.splitlines() if x.startswith("artifacts"))
    assert "(other) 2 (4 B)" in line and ".tar 1" in line and ".py 1" in line, line
    assert "branches" not in line


def test_verify_keeps_the_signer_on_its_row_when_it_fits(
    cli: Cli, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ident = create_snapshot(cli, repo)
    monkeypatch.setenv("COLUMNS", "80")
    narrow = cli(repo, "verify", ident).out
    assert re.search(rf"^{ident} signed by [0-9A-F]{{40}}$", narrow, re.M), narrow
    # The table fits; a failure's reason stays one line when piped (a terminal wraps it).
    rows = [line for line in narrow.splitlines() if line.startswith(("snapshot ", f"{ident} "))]
    assert all(len(line) <= 80 for line in rows if " trust: " not in line), narrow
    for args in (["verify", ident, "--wide"], ["verify", ident]):
        monkeypatch.setenv("COLUMNS", "200" if args[-1] == ident else "80")
        row = next(x for x in cli(repo, *args).out.splitlines() if x.startswith(ident))
        assert re.search(r"  [0-9A-F]{40}$", row), (args, row)
