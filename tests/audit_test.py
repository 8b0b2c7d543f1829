"""The audit trail: signed entries stock git verifies, filters, and `audit verify`."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from govsnap.audit import EMPTY_TREE, parse_time
from govsnap.errors import UsageError
from govsnap.refs import AUDIT_REF
from tests.helpers import Cli, MakeRepo, SSHKey, create_snapshot, git

NOW = datetime(2026, 3, 10, 15, 30, 0, tzinfo=UTC)


def entries(cli: Cli, repo: Path, *args: str) -> list[dict[str, object]]:
    result = cli(repo, "audit", "--json", *args)
    assert result.code == 0, result.err
    data = json.loads(result.out)["entries"]
    assert isinstance(data, list)
    return data


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("@1700000000", 1700000000),
        ("now", int(NOW.timestamp())),
        ("today", int(datetime(2026, 3, 10, tzinfo=UTC).timestamp())),
        ("yesterday", int(datetime(2026, 3, 9, tzinfo=UTC).timestamp())),
        ("3 days ago", int((NOW - timedelta(days=3)).timestamp())),
        ("1 week ago", int((NOW - timedelta(weeks=1)).timestamp())),
        ("90 minutes ago", int((NOW - timedelta(minutes=90)).timestamp())),
        ("2026-01-31", int(datetime(2026, 1, 31, tzinfo=UTC).timestamp())),
        ("2026-01-31T12:00:00Z", int(datetime(2026, 1, 31, 12, tzinfo=UTC).timestamp())),
        (
            "2026-01-31T12:00:00+02:00",
            int(datetime(2026, 1, 31, 10, tzinfo=UTC).timestamp()),
        ),
    ],
)
def test_parse_time(text: str, expected: int) -> None:
    assert parse_time(text, NOW) == expected


def test_parse_time_reads_naive_times_in_the_local_zone() -> None:
    east = NOW.astimezone(timezone(timedelta(hours=2)))
    assert parse_time("2026-01-31T12:00:00", east) == int(
        datetime(2026, 1, 31, 10, tzinfo=UTC).timestamp()
    )


@pytest.mark.parametrize("text", ["", "soon", "3 fortnights ago", "2026-13-01", "@-5"])
def test_parse_time_refuses_what_it_cannot_read(text: str) -> None:
    with pytest.raises(UsageError, match="cannot read the time"):
        parse_time(text, NOW)


def test_entries_are_signed_commits_stock_git_verifies(cli: Cli, repo: Path) -> None:
    ident = create_snapshot(cli, repo, "--environment", "production")
    create_snapshot(cli, repo, "--unsigned", "--label", "second")
    git(repo, "verify-commit", AUDIT_REF)
    git(repo, "verify-commit", f"{AUDIT_REF}~1")
    shown = git(repo, "log", "--show-signature", AUDIT_REF, stderr_too=True)
    assert shown.count("Good signature") == 2
    raw = git(repo, "cat-file", "commit", AUDIT_REF)
    assert "\ngpgsig -----BEGIN PGP SIGNATURE-----" in raw
    # Each entry is on the empty tree and the chain is linear.
    assert git(repo, "rev-parse", f"{AUDIT_REF}^{{tree}}").strip() == EMPTY_TREE
    assert git(repo, "rev-list", "--count", "--merges", AUDIT_REF).strip() == "0"
    assert git(repo, "rev-list", "--count", AUDIT_REF).strip() == "2"
    git(repo, "fsck", "--full", "--strict")

    [second, first] = entries(cli, repo)
    assert first["operation"] == "create" and first["snapshots"] == [ident]
    body = first["body"]
    assert isinstance(body, dict)
    assert body["actor"] == {"name": "Test Releaser", "email": "releaser@example.com"}
    assert body["arguments"]["environment"] == "production"
    assert {"host", "time", "result", "duration_seconds"} <= set(body)
    assert second["signature_kind"] == "openpgp"
    # The audit commits never reach snapshot objects.
    reachable = git(repo, "rev-list", "--objects", AUDIT_REF).split()
    assert git(repo, "rev-parse", f"refs/govsnap/snapshots/{ident}").strip() not in reachable


def test_ssh_signed_entries_verify_with_stock_git(cli: Cli, repo: Path, ssh_key: SSHKey) -> None:
    git(repo, "config", "--unset", "govsnap.signingKey")
    git(repo, "config", "gpg.format", "ssh")
    git(repo, "config", "user.signingKey", str(ssh_key.private))
    git(repo, "config", "gpg.ssh.allowedSignersFile", str(ssh_key.allowed_signers))
    create_snapshot(cli, repo)
    out = git(repo, "verify-commit", AUDIT_REF, stderr_too=True)
    assert 'Good "git" signature' in out
    assert entries(cli, repo)[0]["signature_kind"] == "ssh"


def test_unsigned_when_no_key_and_signing_failure_is_recorded(
    cli: Cli, make_repo: MakeRepo
) -> None:
    repo = make_repo(signed=False)
    create_snapshot(cli, repo, "--unsigned")
    assert "gpgsig" not in git(repo, "cat-file", "commit", AUDIT_REF)
    git(repo, "config", "govsnap.signingKey", "0123456789ABCDEF0123456789ABCDEF01234567")
    create_snapshot(cli, repo, "--unsigned", "--label", "second")
    [failed, plain] = entries(cli, repo)
    assert plain["signature_kind"] == failed["signature_kind"] == "none"
    body = failed["body"]
    assert isinstance(body, dict) and "no secret key" in body["signing_error"]


def test_filters(cli: Cli, make_repo: MakeRepo, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = make_repo()
    monkeypatch.setenv("GIT_COMMITTER_DATE", "2026-01-10T10:00:00Z")
    old = create_snapshot(cli, repo, "--label", "old")
    monkeypatch.setenv("GIT_COMMITTER_DATE", "2026-02-10T10:00:00Z")
    new = create_snapshot(cli, repo)
    assert cli(repo, "hooks", "install").code == 0  # not an audited operation
    monkeypatch.delenv("GIT_COMMITTER_DATE")

    def ops(*args: str) -> list[object]:
        return [e["snapshots"] for e in entries(cli, repo, *args)]

    assert ops() == [[new], [old]]
    assert ops("--since", "2026-02-01") == [[new]]
    assert ops("--until", "2026-02-01") == [[old]]
    assert ops("--since", "2026-01-10T10:00:00Z", "--until", "@1768039200") == [[old]]
    assert ops("--snapshot", old[:6]) == [[old]]
    assert ops("--operation", "create") == [[new], [old]]
    assert ops("--operation", "prune") == []
    assert ops("--since", "1 day ago") == []
    table = cli(repo, "audit")
    assert table.code == 0 and "2 audit entries" in table.out and old[:12] in table.out

    bad = cli(repo, "audit", "--since", "last tuesday-ish")
    assert bad.code == 2 and bad.err.count("\n") == 1 and "cannot read the time" in bad.err


def test_verify_accepts_a_good_chain_and_an_empty_one(cli: Cli, repo: Path) -> None:
    empty = cli(repo, "audit", "verify", "--json")
    assert empty.code == 0 and json.loads(empty.out)["entries"] == 0
    create_snapshot(cli, repo)
    create_snapshot(cli, repo, "--unsigned", "--label", "second")
    result = cli(repo, "audit", "verify", "--json")
    assert result.code == 0, result.out + result.err
    report = json.loads(result.out)
    assert report["ok"] and report["entries"] == 2 and report["signed"] == 2
    assert cli(repo, "audit", "verify").out.startswith("audit trail OK: 2 entries")


def _commit(repo: Path, tree: str, parents: list[str], message: str, date: str) -> str:
    args = ["commit-tree", tree, *[x for p in parents for x in ("-p", p)], "-m", message]
    env_date = {"GIT_COMMITTER_DATE": date, "GIT_AUTHOR_DATE": date}
    import os
    import subprocess

    out = subprocess.run(
        ["git", *args], cwd=repo, env={**os.environ, **env_date}, capture_output=True, check=True
    )
    return out.stdout.decode().strip()


def _body(date_epoch: int, operation: str = "create") -> str:
    return f"{operation}: forged\n\n" + json.dumps({"operation": operation, "time": date_epoch})


def test_a_fetch_joining_two_copies_of_the_chain_is_the_one_good_merge(
    cli: Cli, repo: Path
) -> None:
    create_snapshot(cli, repo)
    base = git(repo, "rev-parse", AUDIT_REF).strip()
    when = int(git(repo, "log", "-1", "--format=%ct", AUDIT_REF)) + 5
    ours = _commit(repo, EMPTY_TREE, [base], _body(when), f"@{when} +0000")
    theirs = _commit(repo, EMPTY_TREE, [base], _body(when + 1), f"@{when + 1} +0000")
    join = _commit(repo, EMPTY_TREE, [ours, theirs], _body(when + 2, "fetch"), f"@{when + 2} +0000")
    git(repo, "update-ref", AUDIT_REF, join)
    result = cli(repo, "audit", "verify", "--json")
    assert result.code == 0, result.out
    assert json.loads(result.out)["entries"] == 4
    shown = [e["commit"] for e in entries(cli, repo)]
    assert shown == [join, theirs, ours, base]


def test_verify_finds_merges_trees_time_and_bad_signatures(cli: Cli, repo: Path) -> None:
    create_snapshot(cli, repo)
    tip = git(repo, "rev-parse", AUDIT_REF).strip()
    tip_time = int(git(repo, "log", "-1", "--format=%ct", AUDIT_REF))

    # Time running backwards: beyond the skew fails, within it passes.
    back = tip_time - 3600
    older = _commit(repo, EMPTY_TREE, [tip], _body(back), f"@{back} +0000")
    git(repo, "update-ref", AUDIT_REF, older, tip)
    failed = cli(repo, "audit", "verify", "--json")
    assert failed.code == 1
    problems = json.loads(failed.out)["problems"]
    assert [p["kind"] for p in problems] == ["time"]
    assert cli(repo, "audit", "verify", "--skew", "7200").code == 0
    git(repo, "config", "govsnap.auditSkew", "7200")
    assert cli(repo, "audit", "verify").code == 0
    git(repo, "config", "govsnap.auditSkew", "-1")
    assert cli(repo, "audit", "verify").code == 2

    # A merge and an entry on a non-empty tree.
    git(repo, "config", "--unset", "govsnap.auditSkew")
    now = tip_time + 10
    side = _commit(repo, EMPTY_TREE, [tip], _body(now), f"@{now} +0000")
    merge = _commit(repo, EMPTY_TREE, [older, side], _body(now), f"@{now} +0000")
    tree = git(repo, "rev-parse", "HEAD^{tree}").strip()
    dirty = _commit(repo, tree, [merge], _body(now), f"@{now} +0000")
    git(repo, "update-ref", AUDIT_REF, dirty)
    result = cli(repo, "audit", "verify", "--json")
    kinds = sorted(p["kind"] for p in json.loads(result.out)["problems"])
    assert result.code == 1 and kinds == ["merge", "time", "tree"]
    assert "has 2 parents" in cli(repo, "audit", "verify").err


def test_verify_finds_a_tampered_signed_entry(cli: Cli, repo: Path) -> None:
    create_snapshot(cli, repo)
    raw = git(repo, "cat-file", "commit", AUDIT_REF)
    assert "gpgsig" in raw
    forged = raw.replace('"result": "ok"', '"result": "no"')
    assert forged != raw
    oid = git(repo, "hash-object", "-t", "commit", "-w", "--stdin", input_text=forged).strip()
    git(repo, "update-ref", AUDIT_REF, oid)
    result = cli(repo, "audit", "verify", "--json")
    assert result.code == 1
    # The bad signature, and (replacing the tip dropped the entry this clone recorded)
    # the rewrite of the chain.
    problems = {p["kind"]: p for p in json.loads(result.out)["problems"]}
    assert sorted(problems) == ["rewritten", "signature"]
    problem = problems["signature"]
    assert problem["commit"] == oid
