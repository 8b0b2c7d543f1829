"""Safety snapshots (the pre-rollback snapshot that undoes a rollback) are local and
separate: their own retention group, never pushed unless asked, marked in listings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import (
    Cli,
    Keys,
    MakeRepo,
    Shared,
    dated,
    git,
    refs,
    run_ok,
    snapshot_ids,
    write_files,
)
from tests.helpers.tamper import policy_text


@pytest.fixture
def shared(tmp_path: Path, make_repo: MakeRepo, keys: Keys) -> Shared:
    """A bare remote whose policy trusts the test key, and clones a and b of it."""
    seed = released(make_repo, keys, {"README.md": "hello\n"}, "seed")
    bare = tmp_path / "remote.git"
    git(tmp_path, "clone", "-q", "--bare", str(seed), str(bare))
    first = Shared(tmp_path, bare, seed, seed)
    return Shared(tmp_path, bare, first.clone("a"), first.clone("b"))


def released(
    make_repo: MakeRepo, keys: Keys, files: dict[str, str | bytes], name: str | None = None
) -> Path:
    """Return a repository holding `files` and a committed policy trusting the test key
    for everything (rollback verifies its target against it)."""
    policy = policy_text({"releaser": (keys.trusted, ["*"], ["*"])})
    return make_repo({**files, ".govsnap/trust.toml": policy}, name=name)


def labelled(cli: Cli, repo: Path, label: str) -> str:
    data = json.loads(run_ok(cli, repo, "create", "--json", "-l", label))
    return str(data["snapshot"]["id"])


def safety_ids(cli: Cli, repo: Path) -> list[str]:
    return [s["id"] for s in json.loads(run_ok(cli, repo, "list", "--json")) if s["safety"]]


def test_rollbacks_do_not_push_releases_out_of_keep_last(
    cli: Cli, make_repo: MakeRepo, keys: Keys
) -> None:
    repo = released(make_repo, keys, {"app.py": "v0\n"})
    releases = {}
    for n in range(1, 6):
        write_files(repo, {"app.py": f"v{n}\n"})
        releases[f"r{n}"] = labelled(cli, repo, f"r{n}")
        if n in (2, 3):
            # Two incidents, each rolled back and undone: four safety snapshots.
            done = json.loads(run_ok(cli, repo, "rollback", releases["r1"], "--yes", "--json"))
            run_ok(cli, repo, "rollback", done["safety_snapshot"], "--yes")
    safety = safety_ids(cli, repo)
    assert len(safety) == 4

    plan = json.loads(run_ok(cli, repo, "prune", "--keep-last", "5", "--dry-run", "--json"))
    assert plan["removed"] == 0
    by_id = {s["id"]: s for s in plan["snapshots"]}
    assert {by_id[i]["group"] for i in releases.values()} == {"default"}
    assert {by_id[i]["group"] for i in safety} == {"safety (pre-rollback)"}
    assert all(by_id[i]["safety"] for i in safety)
    assert plan["safety_policy"] == {"keep_last": 10, "keep_within": "30d"}

    out = run_ok(cli, repo, "prune", "--keep-last", "5", "--yes")
    assert "group default: kept 5, removed 0" in out
    assert "group safety (pre-rollback): kept 4, removed 0" in out
    assert set(snapshot_ids(repo)) == set(releases.values()) | set(safety)

    # A tighter release policy removes releases only.
    run_ok(cli, repo, "prune", "--keep-last", "2", "--yes", "--no-gc")
    assert set(snapshot_ids(repo)) == {releases["r4"], releases["r5"], *safety}


def test_safety_snapshots_have_their_own_retention(cli: Cli, make_repo: MakeRepo) -> None:
    repo = make_repo(signed=False)
    # Twelve safety snapshots five days apart, and two releases.
    safety = [
        dated(cli, repo, f"2024-03-{1 + 5 * n:02d}T10:00:00Z", "--trigger", "pre-rollback")
        for n in range(6)
    ] + [
        dated(cli, repo, f"2024-04-{1 + 5 * n:02d}T10:00:00Z", "--trigger", "pre-rollback")
        for n in range(6)
    ]
    releases = [dated(cli, repo, f"2024-01-0{n}T10:00:00Z", "-l", f"r{n}") for n in (1, 2)]

    # Default: keep-within 30d (of the newest safety snapshot) and keep-last 10.
    plan = json.loads(run_ok(cli, repo, "prune", "--keep-last", "2", "-n", "--json"))
    removed = {s["id"] for s in plan["snapshots"] if s["action"] == "remove"}
    assert removed == set(safety[:2])
    reasons = {s["id"]: s["reasons"] for s in plan["snapshots"]}
    assert reasons[safety[-1]] == ["within 30d", "last snapshot"]
    assert reasons[safety[3]] == ["last snapshot"]
    assert plan["safety_policy_source"] == "default"
    text = run_ok(cli, repo, "prune", "--keep-last", "2", "-n")
    assert "safety snapshots (pre-rollback): keep 10 latest snapshots and all snapshots " in text

    git(repo, "config", "govsnap.safetyRetention", "--keep-last 3 --keep-within=1d")
    plan = json.loads(run_ok(cli, repo, "prune", "-n", "--json"))
    assert plan["safety_policy"] == {"keep_last": 3, "keep_within": "1d"}
    assert plan["safety_policy_source"] == "config"
    run_ok(cli, repo, "prune", "--keep-last", "2", "--yes", "--no-gc")
    assert set(snapshot_ids(repo)) == set(safety[-3:]) | set(releases)
    entry = json.loads(
        git(repo, "log", "-1", "--format=%B", "refs/govsnap/audit").split("\n", 2)[2]
    )
    assert entry["arguments"]["safety_policy"] == ["--keep-last", "3", "--keep-within", "1d"]

    # An empty policy keeps every safety snapshot; the newest is always kept.
    git(repo, "config", "govsnap.safetyRetention", "")
    plan = json.loads(run_ok(cli, repo, "prune", "--keep-last", "1", "-n", "--json"))
    assert not {s["id"] for s in plan["snapshots"] if s["action"] == "remove"} & set(safety)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("--keep-last lots", "git config govsnap.safetyRetention --keep-last 'lots'"),
        ("--keep-lots 3", "unknown option '--keep-lots'"),
        ("keep-last=3", "unknown option 'keep-last'"),
        ("--keep-within", "--keep-within needs a value"),
        ("--keep-label 'a", "No closing quotation"),
    ],
)
def test_a_bad_safety_retention_is_one_line_and_removes_nothing(
    cli: Cli, make_repo: MakeRepo, value: str, problem: str
) -> None:
    repo = make_repo(signed=False)
    for day in (1, 2):
        dated(cli, repo, f"2024-01-0{day}T10:00:00Z")
    git(repo, "config", "govsnap.safetyRetention", value)
    result = cli(repo, "prune", "--keep-last", "1", "--yes")
    assert result.code == 2, result.err
    assert problem in result.err and len(result.err.splitlines()) == 1
    assert len(snapshot_ids(repo)) == 2


def test_list_and_show_mark_safety_snapshots(cli: Cli, make_repo: MakeRepo, keys: Keys) -> None:
    repo = released(make_repo, keys, {"app.py": "v1\n"})
    release = labelled(cli, repo, "r1")
    write_files(repo, {"app.py": "v2\n"})
    safety = json.loads(run_ok(cli, repo, "rollback", release, "--yes", "--json"))[
        "safety_snapshot"
    ]
    listed = json.loads(run_ok(cli, repo, "list", "--json"))
    assert [(s["id"] == release, s["safety"]) for s in listed] == [(False, True), (True, False)]
    table = run_ok(cli, repo, "list")
    assert "pre-rollback (safety)" in table and "govsnap.safetyRetention" in table
    assert "(safety)" not in run_ok(cli, repo, "list", "-l", "r1")
    shown = run_ok(cli, repo, "show", safety)
    assert "safety snapshot" in shown
    assert json.loads(run_ok(cli, repo, "show", safety, "--json"))["safety"] is True
    # `latest` counts release snapshots: the rollback's safety snapshot does not shift it.
    assert json.loads(run_ok(cli, repo, "show", "latest", "--json"))["id"] == release


@pytest.fixture
def incident(shared: Shared, cli: Cli) -> tuple[str, str]:
    """A release in clone a, then a rollback to it while an untracked stray.txt lies in
    the working tree: the safety snapshot captures stray.txt."""
    release = labelled(cli, shared.a, "r1")
    write_files(shared.a, {"stray.txt": "personal notes, never committed\n"})
    result = json.loads(run_ok(cli, shared.a, "rollback", release, "--yes", "--json"))
    safety = str(result["safety_snapshot"])
    tree = git(shared.a, "rev-parse", f"refs/govsnap/snapshots/{safety}^{{tree}}").strip()
    assert "stray.txt" in git(shared.a, "ls-tree", "--name-only", tree)
    return release, safety


def stray_blob(repo: Path) -> str:
    return git(
        repo, "hash-object", "--stdin", input_text="personal notes, never committed\n"
    ).strip()


def test_push_keeps_safety_snapshots_local(
    shared: Shared, cli: Cli, incident: tuple[str, str]
) -> None:
    release, safety = incident
    dry = json.loads(run_ok(cli, shared.a, "push", "--dry-run", "--json"))
    assert dry["sent"] == [release] and dry["kept_local"] == [safety]
    out = run_ok(cli, shared.a, "push")
    assert "kept 1 safety snapshot(s) local" in out and safety in out
    assert snapshot_ids(shared.bare) == [release]
    # The untracked file never reached the server, as stock git sees it.
    missing = subprocess_code(shared.bare, "cat-file", "-e", stray_blob(shared.a))
    assert missing != 0
    # Another clone gets the release, never the safety snapshot.
    run_ok(cli, shared.b, "fetch")
    assert snapshot_ids(shared.b) == [release]
    # A second push still keeps it back, and says so.
    again = json.loads(run_ok(cli, shared.a, "push", "--json"))
    assert again["sent"] == [] and again["kept_local"] == [safety]


def test_push_include_safety_sends_them(
    shared: Shared, cli: Cli, incident: tuple[str, str]
) -> None:
    release, safety = incident
    report = json.loads(run_ok(cli, shared.a, "push", "--include-safety", "--json"))
    assert sorted(report["sent"]) == sorted([release, safety]) and report["kept_local"] == []
    assert set(snapshot_ids(shared.bare)) == {release, safety}
    git(shared.bare, "cat-file", "-e", stray_blob(shared.a))
    assert refs(shared.bare, "refs/govsnap/snapshots/") == refs(shared.a, "refs/govsnap/snapshots/")


def subprocess_code(repo: Path, *args: str) -> int:
    import subprocess

    return subprocess.run(["git", *args], cwd=repo, capture_output=True, check=False).returncode
