"""list filters (--latest, --host, --path) and --format, whose placeholders are judged
against what stock git reads from the same tags (`git for-each-ref`)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from govsnap.pretty import short_ids
from tests.helpers import Cli, MakeRepo, create_snapshot, git, write_files
from tests.helpers.tamper import read_note, tag_oid, write_note


@pytest.fixture
def repo(make_repo: MakeRepo) -> Path:
    return make_repo({"README.md": "hello\n", "deploy/app.yaml": "replicas: 2\n"})


def listed(cli: Cli, repo: Path, *args: str) -> list[str]:
    result = cli(repo, "list", "--format", "%H", *args)
    assert result.code == 0, result.err
    return result.out.split()


def test_latest_host_and_path_filters(cli: Cli, repo: Path) -> None:
    first = create_snapshot(cli, repo, "--unsigned", "-e", "staging")
    write_files(repo, {"deploy/db.yaml": "size: 1\n"})
    second = create_snapshot(cli, repo, "--unsigned", "-e", "staging")
    third = create_snapshot(cli, repo, "--unsigned", "-e", "production")
    note = read_note(repo, tag_oid(repo, second))
    write_note(repo, tag_oid(repo, second), {**note, "host": "build-7"})

    assert listed(cli, repo) == [third, second, first]
    assert listed(cli, repo, "--latest", "2") == [third, second]
    assert listed(cli, repo, "-e", "staging", "--latest", "1") == [second]
    assert listed(cli, repo, "--host", "build-7") == [second]
    assert listed(cli, repo, "--host", socket.gethostname()) == [third, first]
    assert listed(cli, repo, "--path", "deploy/db.yaml") == [third, second]
    assert listed(cli, repo, "--path", "deploy", "--path", "README.md") == [third, second, first]
    assert listed(cli, repo, "--path", "deploy/db.yaml/", "--latest", "1") == [third]
    assert listed(cli, repo, "--path", "missing") == []
    data = json.loads(cli(repo, "list", "--json", "--path", "./deploy/db.yaml").out)
    assert [s["id"] for s in data["snapshots"]] == [third, second]


def test_format_placeholders_read_what_git_reads(cli: Cli, repo: Path) -> None:
    create_snapshot(cli, repo, "--unsigned", "-l", "rel-1", "-m", "first one")
    create_snapshot(cli, repo, "--unsigned", "-e", "production", "-t", "pre-push")
    fmt = "%H|%T|%s|%an|%ae|%at|%P|%S|%e|%t|%l|%b|%y|%GS|%%|%x41"
    atoms = (
        "%(refname:lstrip=3)|%(*tree)|%(contents:subject)|%(taggername)|%(taggeremail:trim)"
        "|%(taggerdate:unix)|%(contents)"
    )

    result = cli(repo, "list", "--format", fmt)

    assert result.code == 0, result.err
    out = git(repo, "for-each-ref", f"--format={atoms}%00", "refs/govsnap/snapshots/")
    from_git = {r.split("|", 1)[0]: r for r in out.split("\0\n") if r}
    lines = result.out.splitlines()
    assert len(lines) == 2 == len(from_git)
    head = git(repo, "rev-parse", "HEAD").strip()
    for line in lines:
        fields = line.split("|")
        ident, tree, subject, name, email, when, message = from_git[fields[0]].split("|", 6)
        assert fields[:6] == [ident, tree, subject, name, email, when]
        # Trailers of the signed message, as git interpret-trailers reads them.
        trailers = dict(
            t.split(": ", 1)
            for t in git(repo, "interpret-trailers", "--parse", input_text=message).splitlines()
        )
        assert fields[6:8] == [head, "refs/heads/main"]
        assert fields[8] == trailers["Govsnap-Environment"]
        assert fields[9] == trailers["Govsnap-Trigger"]
        assert fields[10] == trailers.get("Govsnap-Label", "")
        assert fields[12:] == ["", "UNSIGNED", "%", "A"]
    assert lines[1].split("|")[11] == "first one"


def test_format_dates_and_short_ids(cli: Cli, repo: Path) -> None:
    ident = create_snapshot(cli, repo, "--unsigned")
    when = git(repo, "for-each-ref", "--format=%(taggerdate:unix)", "refs/govsnap/").strip()
    strict_git = git(
        repo, "for-each-ref", "--format=%(taggerdate:iso-strict)", "refs/govsnap/"
    ).strip()

    result = cli(repo, "list", "--format", "%h %ad%n%aI %at")

    assert result.code == 0, result.err
    short, day, clock, strict, epoch = result.out.split()
    assert ident.startswith(short) and len(short) == 7
    assert epoch == when
    # The test HOME's git prints the tagger's zone (UTC here); govsnap always says Z.
    assert strict == strict_git.replace("+00:00", "Z")
    assert f"{day}T{clock}" == strict
    assert json.loads(cli(repo, "show", short, "--json").out)["id"] == ident


@pytest.mark.parametrize(
    ("ids", "expected"),
    [
        (["abcdef0123456789"], ["abcdef0"]),
        (["abcdef0123456789", "abcdef0923456789"], ["abcdef01", "abcdef09"]),
        (["abcdef0123456789", "abcdef0123456780"], ["abcdef0123456789", "abcdef0123456780"]),
        (["1111111111111111", "2222222222222222"], ["1111111", "2222222"]),
    ],
)
def test_short_ids_stay_unique(ids: list[str], expected: list[str]) -> None:
    short = short_ids(ids)
    assert [short[i] for i in ids] == expected


def test_values_from_a_note_cannot_forge_a_line(cli: Cli, repo: Path) -> None:
    ident = create_snapshot(cli, repo)
    oid = tag_oid(repo, ident)
    note = read_note(repo, oid)
    signature = dict(note["signature"])  # type: ignore[call-overload]
    signature["signer"] = "X\x1b[2J\nffffffffffffffff forged"
    write_note(repo, oid, {**note, "signature": signature})

    result = cli(repo, "list", "--format", "%h %GS")

    assert result.code == 0, result.err
    assert result.out.count("\n") == 1 and "\x1b" not in result.out
    assert "X\\x1b[2J\\x0affffffffffffffff forged" in result.out


BAD_INPUT = [
    (["--format", "%q"], "unknown placeholder '%q'"),
    (["--format", "100%"], "unknown placeholder '%'"),
    (["--format", "%h", "--json"], "exclude each other"),
    (["--latest", "0"], "--latest 0"),
    (["--latest", "x"], "'x' is not a valid int"),
    (["--path", "../x"], "cannot climb out"),
    (["--path", "/etc"], "relative to the top"),
]


def test_bad_input_is_one_line(cli: Cli, repo: Path) -> None:
    create_snapshot(cli, repo, "--unsigned")
    for args, expected in BAD_INPUT:
        result = cli(repo, "list", *args)

        assert result.code == 2, (args, result.err)
        assert expected in result.err and len(result.err.splitlines()) == 1, (args, result.err)
        assert result.out == "", args
