"""prune, pin and unpin against real repositories, judged by stock git."""

from __future__ import annotations

import hashlib
import json
import os
import pty
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from govsnap import prune
from govsnap.repo import open_repo
from govsnap.retention import RetentionPolicy
from tests.helpers import (
    Cli,
    Keys,
    MakeRepo,
    all_refs,
    dated,
    git,
    govsnap_bin,
    openpgp_signer,
    snapshot_ids,
    write_files,
)
from tests.helpers.tamper import commit_policy


def tag_of(repo: Path, ident: str) -> str:
    return git(repo, "rev-parse", f"refs/govsnap/snapshots/{ident}").strip()


def noted_objects(repo: Path) -> set[str]:
    """Return the objects carrying a govsnap note, as `git notes` lists them."""
    out = git(repo, "notes", "--ref=govsnap", "list")
    return {line.split()[1] for line in out.splitlines()}


def last_audit(repo: Path) -> dict[str, Any]:
    body = git(repo, "log", "-1", "--format=%B", "refs/govsnap/audit")
    return dict(json.loads(body.split("\n", 2)[2]))


def tree_bytes(root: Path) -> dict[str, str]:
    """Return path -> SHA-256 of every file below `root`, but for govsnap's digest cache
    (an in-process `create` leaves its SQLite connection open until garbage collection,
    which removes the -wal and -shm files whenever it happens)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.startswith("digest-cache")
    }


@pytest.fixture
def dated_repo(cli: Cli, make_repo: MakeRepo) -> Iterator[tuple[Path, dict[str, str]]]:
    """A repository with dated snapshots in two environments: name -> id."""
    repo = make_repo(signed=False)
    ids = {}
    for name, when, env in [
        ("p1", "2024-01-01T10:00:00Z", "production"),
        ("p2", "2024-01-01T12:00:00Z", "production"),
        ("p3", "2024-01-02T10:00:00Z", "production"),
        ("p4", "2024-01-08T10:00:00Z", "production"),
        ("p5", "2024-02-01T10:00:00Z", "production"),
        ("s1", "2024-01-03T10:00:00Z", "staging"),
        ("s2", "2024-01-04T10:00:00Z", "staging"),
    ]:
        ids[name] = dated(cli, repo, when, "--environment", env)
    yield repo, ids


def test_prune_keeps_what_the_policy_says(
    cli: Cli, dated_repo: tuple[Path, dict[str, str]]
) -> None:
    repo, ids = dated_repo
    removed_tags = {tag_of(repo, ids[n]) for n in ("p1", "p2", "p3")}
    result = cli(repo, "prune", "--yes", "--keep-daily", "2")
    assert result.code == 0, result.err
    assert "group production: kept 2, removed 3" in result.out
    assert "group staging: kept 2, removed 0" in result.out
    assert sorted(snapshot_ids(repo)) == sorted(ids[n] for n in ("p4", "p5", "s1", "s2"))
    assert noted_objects(repo) == {tag_of(repo, ids[n]) for n in ("p4", "p5", "s1", "s2")}
    assert not removed_tags & noted_objects(repo)
    entry = last_audit(repo)
    assert entry["operation"] == "prune"
    assert sorted(entry["snapshots"]) == sorted(ids[n] for n in ("p1", "p2", "p3"))
    git(repo, "fsck", "--full", "--strict")


def test_group_by_none_and_environment_filter(
    cli: Cli, dated_repo: tuple[Path, dict[str, str]]
) -> None:
    repo, ids = dated_repo
    plan = json.loads(
        cli(repo, "prune", "--keep-last", "2", "--group-by", "none", "--dry-run", "--json").out
    )
    kept = {s["id"] for s in plan["snapshots"] if s["action"] == "keep"}
    assert kept == {ids["p5"], ids["p4"]} and plan["groups"] == [
        {"group": "all", "kept": 2, "removed": 5}
    ]
    result = cli(repo, "prune", "--yes", "--keep-last", "1", "--environment", "staging")
    assert result.code == 0, result.err
    assert sorted(snapshot_ids(repo)) == sorted(
        ids[n] for n in ("p1", "p2", "p3", "p4", "p5", "s2")
    )


def test_dry_run_changes_nothing_and_shows_every_reason(
    cli: Cli, dated_repo: tuple[Path, dict[str, str]]
) -> None:
    repo, ids = dated_repo
    before = tree_bytes(repo / ".git")
    text = cli(repo, "prune", "--keep-weekly", "2", "--keep-monthly", "unlimited", "--dry-run")
    data = cli(repo, "prune", "--keep-weekly", "2", "--keep-monthly", "-1", "-n", "--json")
    assert text.code == 0 and data.code == 0, text.err + data.err
    assert tree_bytes(repo / ".git") == before
    lines = text.out.splitlines()
    assert lines[0] == "policy: keep 2 weekly, all monthly snapshots (from the command line)"
    assert "group production: keep 3, remove 2" in lines
    assert any(
        line.split()[:2] == ["keep", ids["p5"]] and "weekly snapshot; monthly snapshot" in line
        for line in lines
    )
    assert any(
        line.split() == ["remove", ids["p2"], "2024-01-01", "12:00:00Z", "-"] for line in lines
    )
    # p1 is the oldest: monthly is unlimited, so it is kept as the oldest of January.
    assert any(ids["p1"] in line and line.endswith("oldest monthly snapshot") for line in lines)
    assert "dry run: would remove 2 snapshot(s), keep 5" in text.out
    plan = json.loads(data.out)
    assert plan["dry_run"] is True and plan["removed"] == 2 and plan["kept"] == 5
    assert plan["policy"] == {"keep_weekly": 2, "keep_monthly": -1}
    by_id = {s["id"]: s for s in plan["snapshots"]}
    assert by_id[ids["p3"]] == {
        "id": ids["p3"],
        "time": "2024-01-02T10:00:00Z",
        "environment": "production",
        "labels": [],
        "safety": False,
        "group": "production",
        "action": "remove",
        "reasons": [],
    }
    assert by_id[ids["s2"]]["reasons"] == ["weekly snapshot", "monthly snapshot"]
    assert isinstance(plan["reclaimable_bytes"], int) and plan["reclaimable_bytes"] > 0


def test_reclaimable_bytes_count_only_what_no_other_ref_holds(
    cli: Cli, make_repo: MakeRepo
) -> None:
    repo = make_repo(signed=False)
    big = os.urandom(200_000)
    write_files(repo, {"big.bin": big})
    dated(cli, repo, "2024-01-01T10:00:00Z")
    (repo / "big.bin").unlink()
    dated(cli, repo, "2024-01-02T10:00:00Z")
    plan = json.loads(cli(repo, "prune", "--keep-last", "1", "-n", "--json").out)
    assert 200_000 < plan["reclaimable_bytes"] < 203_000
    # Once a branch holds the same content (in an older commit, not the tip), it is not
    # reclaimable any more.
    write_files(repo, {"big.bin": big})
    git(repo, "add", "big.bin")
    git(repo, "commit", "-q", "-m", "big")
    git(repo, "rm", "-q", "big.bin")
    git(repo, "commit", "-q", "-m", "no big")
    plan = json.loads(cli(repo, "prune", "--keep-last", "1", "-n", "--json").out)
    assert plan["reclaimable_bytes"] < 3_000


def test_now_reclaims_a_blob_only_removed_snapshots_held(cli: Cli, make_repo: MakeRepo) -> None:
    repo = make_repo(signed=False)
    write_files(repo, {"only-old.txt": "held by the old snapshots only\n"})
    blob = git(repo, "hash-object", "only-old.txt").strip()
    dated(cli, repo, "2024-01-01T10:00:00Z")
    dated(cli, repo, "2024-01-02T10:00:00Z", "--label", "second")
    (repo / "only-old.txt").unlink()
    newest = dated(cli, repo, "2024-01-03T10:00:00Z")
    grace = cli(repo, "prune", "--yes", "--keep-last", "1")
    assert grace.code == 0, grace.err
    assert "newer than 2.weeks.ago (gc.pruneExpire)" in grace.out
    git(repo, "cat-file", "-e", blob)  # git's grace period keeps it for now
    result = cli(repo, "prune", "--yes", "--now", "--json")
    assert result.code == 0, result.err
    assert json.loads(result.out)["gc"] == "now" and json.loads(result.out)["removed"] == 0
    assert subprocess.run(["git", "cat-file", "-e", blob], cwd=repo).returncode != 0
    assert snapshot_ids(repo) == [newest]
    git(repo, "fsck", "--full", "--strict", "--no-dangling")
    git(repo, "cat-file", "-e", "HEAD:README.md")


def test_now_warns_it_expires_every_unreachable_object(cli: Cli, make_repo: MakeRepo) -> None:
    repo = make_repo(signed=False)
    dated(cli, repo, "2024-01-01T10:00:00Z")
    stray = git(repo, "hash-object", "-w", "--stdin", input_text="unreachable\n").strip()
    result = cli(repo, "prune", "--yes", "--now")
    assert result.code == 0, result.err
    assert "also deletes every other unreachable object" in result.err
    assert subprocess.run(["git", "cat-file", "-e", stray], cwd=repo).returncode != 0


def test_gc_honours_prune_expire_and_no_gc_leaves_objects(cli: Cli, make_repo: MakeRepo) -> None:
    repo = make_repo(signed=False)
    write_files(repo, {"old.txt": "old\n"})
    blob = git(repo, "hash-object", "old.txt").strip()
    old = dated(cli, repo, "2024-01-01T10:00:00Z")
    (repo / "old.txt").unlink()
    dated(cli, repo, "2024-01-02T10:00:00Z")
    objects = tree_bytes(repo / ".git" / "objects")
    result = json.loads(cli(repo, "prune", "--yes", "--keep-last", "1", "--no-gc", "--json").out)
    assert result["gc"] == "skipped" and result["removed"] == 1
    assert old not in snapshot_ids(repo)
    assert set(objects) <= set(tree_bytes(repo / ".git" / "objects"))  # nothing deleted
    git(repo, "config", "gc.pruneExpire", "now")
    result = json.loads(cli(repo, "prune", "--yes", "--json").out)
    assert result["gc"] == "grace" and result["gc_prune_expire"] == "now"
    assert subprocess.run(["git", "cat-file", "-e", blob], cwd=repo).returncode != 0


def test_pinned_snapshots_are_always_kept(
    cli: Cli, dated_repo: tuple[Path, dict[str, str]]
) -> None:
    repo, ids = dated_repo
    pinned = cli(repo, "pin", ids["p1"][:8])
    assert pinned.code == 0 and f"pinned snapshot {ids['p1']}" in pinned.out
    again = json.loads(cli(repo, "pin", ids["p1"], "--json").out)
    assert again == {
        "schema": "govsnap/pin/v1",
        "id": ids["p1"],
        "pinned": True,
        "changed": False,
        "dry_run": False,
    }
    note = json.loads(git(repo, "notes", "--ref=govsnap", "show", tag_of(repo, ids["p1"])))
    assert note["pinned"] is True and note["id"] == ids["p1"]
    assert last_audit(repo)["operation"] == "pin"
    plan = json.loads(cli(repo, "prune", "--keep-last", "1", "-n", "--json").out)
    by_id = {s["id"]: s for s in plan["snapshots"]}
    assert by_id[ids["p1"]]["reasons"] == ["pinned"]
    assert cli(repo, "prune", "--yes", "--keep-last", "1").code == 0
    assert sorted(snapshot_ids(repo)) == sorted([ids["p1"], ids["p5"], ids["s2"]])
    # A pinned snapshot cannot be purged by name either.
    refused = cli(repo, "prune", "--id", ids["p1"], "--now")
    assert refused.code == 2 and "is pinned" in refused.err
    unpinned = cli(repo, "unpin", ids["p1"])
    assert unpinned.code == 0 and "unpinned" in unpinned.out
    assert last_audit(repo)["operation"] == "unpin"
    assert cli(repo, "prune", "--yes", "--keep-last", "1").code == 0
    assert sorted(snapshot_ids(repo)) == sorted([ids["p5"], ids["s2"]])


def test_empty_policy_deletes_nothing_and_says_why(
    cli: Cli, dated_repo: tuple[Path, dict[str, str]]
) -> None:
    repo, _ = dated_repo
    refs = all_refs(repo)
    result = cli(repo, "prune", "--yes", "--keep-last", "0", "--no-gc")
    assert result.code == 0, result.err
    assert "the retention policy is empty" in result.out
    assert all_refs(repo) == refs  # not even an audit entry: nothing changed
    data = json.loads(cli(repo, "prune", "--keep-daily", "0", "-n", "--json").out)
    assert data["removed"] == 0 and "empty" in data["message"]
    assert {tuple(s["reasons"]) for s in data["snapshots"]} == {("no policy: nothing is removed",)}


def test_label_policy_keeps_the_newest_of_each_group(cli: Cli, make_repo: MakeRepo) -> None:
    repo = make_repo(signed=False)
    release = dated(cli, repo, "2024-01-01T10:00:00Z", "--label", "release", "--label", "rc")
    dated(cli, repo, "2024-01-02T10:00:00Z", "--label", "rc")
    newest = dated(cli, repo, "2024-01-03T10:00:00Z")
    data = json.loads(cli(repo, "prune", "--yes", "--keep-label", "release,rc", "--json").out)
    assert sorted(snapshot_ids(repo)) == sorted([release, newest])
    reasons = {s["id"]: s["reasons"] for s in data["snapshots"]}
    assert reasons[release] == ["has labels [release, rc]"]
    assert reasons[newest] == ["newest snapshot of its group"]


def test_same_second_snapshots_are_ordered_by_creation(cli: Cli, make_repo: MakeRepo) -> None:
    repo = make_repo(signed=False)
    first = dated(cli, repo, "2024-01-01T10:00:00Z", "--label", "a")
    second = dated(cli, repo, "2024-01-01T10:00:00Z", "--label", "b")
    assert cli(repo, "prune", "--yes", "--keep-last", "1").code == 0
    assert snapshot_ids(repo) == [second] and first != second


def test_policy_from_git_config_and_the_default(
    cli: Cli, dated_repo: tuple[Path, dict[str, str]]
) -> None:
    repo, ids = dated_repo
    data = json.loads(cli(repo, "prune", "-n", "--json").out)
    assert data["policy"] == {"keep_last": 20} and data["policy_source"] == "default"
    assert data["removed"] == 0
    git(repo, "config", "govsnap.keepDaily", "1")
    git(repo, "config", "govsnap.keepWithin", "1d")
    git(repo, "config", "--add", "govsnap.keepLabel", "nothing,here")
    data = json.loads(cli(repo, "prune", "-n", "--json").out)
    assert data["policy_source"] == "config"
    assert data["policy"] == {
        "keep_daily": 1,
        "keep_within": "1d",
        "keep_label": [["nothing", "here"]],
    }
    # Flags replace the configured policy as a whole.
    data = json.loads(cli(repo, "prune", "--keep-last", "3", "-n", "--json").out)
    assert data["policy"] == {"keep_last": 3} and data["policy_source"] == "flags"
    git(repo, "config", "govsnap.keepDaily", "lots")
    bad = cli(repo, "prune")
    assert bad.code == 2 and "git config govsnap.keepDaily 'lots'" in bad.err
    assert len(snapshot_ids(repo)) == len(ids)


def test_purge_removes_a_secret_from_objects_and_notes_history(
    cli: Cli, make_repo: MakeRepo
) -> None:
    repo = make_repo(signed=False)
    keep = dated(cli, repo, "2024-01-01T10:00:00Z")
    write_files(repo, {"leaked.env": "API_KEY=hunter2\n"})
    secret = git(repo, "hash-object", "leaked.env").strip()
    oops = dated(cli, repo, "2024-01-02T10:00:00Z")
    (repo / "leaked.env").unlink()
    later = dated(cli, repo, "2024-01-03T10:00:00Z")
    oops_tag = tag_of(repo, oops)
    note_blob = git(repo, "notes", "--ref=govsnap", "list", oops_tag).strip()
    history = git(repo, "rev-list", "refs/notes/govsnap").split()
    cli(repo, "pin", keep)  # a note written after the secret's: it must survive the rewrite

    result = cli(repo, "prune", "--yes", "--id", oops[:6], "--now")
    assert result.code == 0, result.err
    assert f"purged snapshot(s) {oops}" in result.out
    assert sorted(snapshot_ids(repo)) == sorted([keep, later])
    for gone in (secret, note_blob, oops_tag):
        assert subprocess.run(["git", "cat-file", "-e", gone], cwd=repo).returncode != 0, gone
    notes_log = git(repo, "log", "-p", "refs/notes/govsnap")
    assert oops not in notes_log and oops_tag not in notes_log
    assert len(git(repo, "rev-list", "refs/notes/govsnap").split()) == len(history) + 1
    assert json.loads(git(repo, "notes", "--ref=govsnap", "show", tag_of(repo, keep)))["pinned"]
    assert noted_objects(repo) == {tag_of(repo, keep), tag_of(repo, later)}
    git(repo, "fsck", "--full", "--strict", "--no-dangling")
    assert last_audit(repo)["operation"] == "purge"
    assert not (repo / ".git" / "govsnap" / "digest-cache.sqlite").exists()


def test_purge_rewrites_flat_notes_written_by_git(cli: Cli, make_repo: MakeRepo) -> None:
    repo = make_repo(signed=False)
    victim = dated(cli, repo, "2024-01-01T10:00:00Z")
    other = dated(cli, repo, "2024-01-02T10:00:00Z")
    tag = tag_of(repo, victim)
    # govsnap writes notes in fan-out directories; stock git writes few notes flat.
    entries = ""
    for line in git(repo, "ls-tree", "-r", "refs/notes/govsnap").splitlines():
        meta, path = line.split("\t")
        entries += f"{meta}\t{path.replace('/', '')}\n"
    tree = git(repo, "mktree", input_text=entries).strip()
    parent = git(repo, "rev-parse", "refs/notes/govsnap").strip()
    commit = git(repo, "commit-tree", tree, "-p", parent, "-m", "flat").strip()
    git(repo, "update-ref", "refs/notes/govsnap", commit)
    assert git(repo, "notes", "--ref=govsnap", "list", tag)
    assert cli(repo, "prune", "--yes", "--id", victim, "--now").code == 0
    assert (
        subprocess.run(
            ["git", "notes", "--ref=govsnap", "list", tag], cwd=repo, capture_output=True
        ).returncode
        != 0
    )
    assert noted_objects(repo) == {tag_of(repo, other)}
    git(repo, "fsck", "--full", "--strict")


def test_a_stale_plan_never_removes_a_snapshot_created_meanwhile(
    cli: Cli, make_repo: MakeRepo
) -> None:
    repo = make_repo(signed=False)
    old = dated(cli, repo, "2024-01-01T10:00:00Z")
    newest = dated(cli, repo, "2024-01-02T10:00:00Z")
    handle = open_repo(repo)
    plan = prune.plan(handle, prune.PruneOptions(policy=RetentionPolicy(last=1), gc=False))
    assert [d.snapshot.id for d in plan.removed] == [old]
    meanwhile = dated(cli, repo, "2024-01-03T10:00:00Z")
    gone = dated(cli, repo, "2024-01-04T10:00:00Z", "--label", "gone")
    git(repo, "update-ref", "-d", f"refs/govsnap/snapshots/{gone}")
    # Another process already deleted `old`: the plan skips it, says so, removes nothing.
    git(repo, "update-ref", "-d", f"refs/govsnap/snapshots/{old}")
    result = prune.execute(handle, plan)
    assert result.removed == () and result.vanished == (old,)
    assert sorted(snapshot_ids(repo)) == sorted([newest, meanwhile])
    assert tag_of(repo, meanwhile) in noted_objects(repo)


CREATOR = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from govsnap.repo import open_repo
    from govsnap.store import CreateOptions, create

    repo = open_repo(Path(sys.argv[1]))
    for i in range(int(sys.argv[3])):
        options = CreateOptions(from_rev="HEAD", labels=[f"{sys.argv[2]}-{i}"], unsigned=True)
        print(create(repo, options).snapshot.id, flush=True)
    """
)


def test_concurrent_creates_during_prunes_are_never_lost(cli: Cli, make_repo: MakeRepo) -> None:
    repo = make_repo(signed=False)
    for day in range(1, 6):
        dated(cli, repo, f"2024-01-0{day}T10:00:00Z")
    creators = [
        subprocess.Popen(
            [sys.executable, "-c", CREATOR, str(repo), f"w{n}", "6"],
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in range(2)
    ]
    planned_removals: set[str] = set()
    runs = 0
    while any(c.poll() is None for c in creators):
        run = subprocess.run(
            [
                govsnap_bin(),
                "-C",
                str(repo),
                "prune",
                "--yes",
                "--keep-last",
                "3",
                "--no-gc",
                "--json",
            ],
            capture_output=True,
            text=True,
        )
        assert run.returncode == 0, run.stderr
        data = json.loads(run.stdout)
        planned_removals |= {s["id"] for s in data["snapshots"] if s["action"] == "remove"}
        runs += 1
    created = [line for c in creators for line in c.communicate()[0].split()]
    assert runs >= 1  # at least one prune ran while snapshots were being created
    assert all(c.returncode == 0 for c in creators) and len(created) == 12
    present = set(snapshot_ids(repo))
    # A snapshot is gone only if a prune's plan saw it and chose to remove it.
    assert {c for c in created if c not in present} <= planned_removals
    assert noted_objects(repo) == {tag_of(repo, ident) for ident in present}
    git(repo, "fsck", "--full", "--strict")


def test_confirmation_when_interactive(cli: Cli, dated_repo: tuple[Path, dict[str, str]]) -> None:
    repo, _ = dated_repo

    def answer(text: str) -> subprocess.CompletedProcess[str]:
        leader, follower = pty.openpty()
        try:
            os.write(leader, text.encode())
            return subprocess.run(
                [govsnap_bin(), "-C", str(repo), "prune", "--keep-last", "1", "--no-gc"],
                stdin=follower,
                capture_output=True,
                text=True,
                timeout=60,
            )
        finally:
            os.close(leader)
            os.close(follower)

    refs = all_refs(repo)
    refused = answer("n\n")
    assert refused.returncode == 1
    assert refused.stderr.endswith("govsnap: error: declined: nothing was changed\n")
    assert "Delete 5 snapshot(s)?" in refused.stderr
    assert "group production: keep 1, remove 4" in refused.stdout
    assert all_refs(repo) == refs
    accepted = answer("y\n")
    assert accepted.returncode == 0, accepted.stderr
    assert len(snapshot_ids(repo)) == 2


def test_bare_repository_prunes_and_pins(
    cli: Cli, tmp_path: Path, dated_repo: tuple[Path, dict[str, str]]
) -> None:
    repo, ids = dated_repo
    bare = tmp_path / "server.git"
    git(tmp_path, "clone", "-q", "--mirror", str(repo), str(bare))
    assert cli(bare, "pin", ids["p2"]).code == 0
    plan = json.loads(cli(bare, "prune", "--keep-last", "1", "-n", "--json").out)
    assert plan["removed"] == 4 and plan["reclaimable_bytes"] > 0
    result = cli(bare, "prune", "--yes", "--keep-last", "1", "--now")
    assert result.code == 0, result.err
    assert sorted(snapshot_ids(bare)) == sorted(ids[n] for n in ("p2", "p5", "s2"))
    git(bare, "fsck", "--full", "--strict")


# --- bad input: one line, the right exit code, nothing changed ------------------------------

BAD = [
    (["--keep-within", "2w"], 2, "--keep-within '2w': invalid unit 'w'"),
    (["--keep-within-daily", "1.5d"], 2, "invalid unit '.'"),
    (["--keep-within-monthly", "-1m"], 2, "negative values are not allowed"),
    (["--keep-within-yearly", "y"], 2, "expected a number"),
    (["--keep-within-hourly", "12"], 2, "no unit after 12"),
    (["--keep-last", "-2"], 2, "negative values other than -1 are not allowed"),
    (["--keep-daily", "many"], 2, "--keep-daily 'many': expected a number or 'unlimited'"),
    (["--keep-label", "a,,b"], 2, "invalid label"),
    (["--group-by", "host"], 2, "--group-by 'host'"),
    (["--id", "feedfacefeedface"], 2, "no snapshot matches 'feedfacefeedface'"),
    (["--id", "zz"], 2, "is not a snapshot name"),
    (["--id", "latest", "--keep-last", "1"], 2, "cannot be combined with --keep-*"),
    (["--now", "--no-gc"], 2, "cannot be combined with --no-gc"),
]


@pytest.mark.parametrize(("args", "code", "problem"), BAD, ids=[" ".join(a) for a, _, _ in BAD])
def test_bad_input(
    cli: Cli, dated_repo: tuple[Path, dict[str, str]], args: list[str], code: int, problem: str
) -> None:
    repo, _ = dated_repo
    before = tree_bytes(repo / ".git")
    result = cli(repo, "prune", *args)
    assert result.code == code, result.err
    assert problem in result.err
    assert len(result.err.splitlines()) == 1 and result.err.startswith("govsnap: error: ")
    assert tree_bytes(repo / ".git") == before


def test_bad_pin_and_environment(
    cli: Cli, tmp_path: Path, dated_repo: tuple[Path, dict[str, str]]
) -> None:
    repo, _ = dated_repo
    for args in (["pin", "0000000000"], ["unpin", "latest~99"]):
        result = cli(repo, *args)
        assert result.code == 2 and len(result.err.splitlines()) == 1, result.err
    for args in (["prune"], ["pin", "latest"], ["unpin", "latest"]):
        result = cli(tmp_path / "nowhere", *args)
        assert result.code == 3 and "does not exist" in result.err
        outside = tmp_path / "plain"
        outside.mkdir(exist_ok=True)
        result = cli(outside, *args)
        assert result.code == 3 and "not a git repository" in result.err


def test_a_held_ref_lock_is_waited_for(cli: Cli, make_repo: MakeRepo) -> None:
    repo = make_repo(signed=False)
    old = dated(cli, repo, "2024-01-01T10:00:00Z")
    newest = dated(cli, repo, "2024-01-02T10:00:00Z")
    lock = repo / ".git" / "refs" / "govsnap" / "snapshots" / f"{old}.lock"
    lock.write_text("")
    release = threading.Timer(0.5, lock.unlink)
    release.start()
    try:
        result = cli(repo, "prune", "--yes", "--keep-last", "1", "--no-gc")
    finally:
        release.join()
    assert result.code == 0, result.err
    assert snapshot_ids(repo) == [newest]


def test_a_failing_gc_says_the_snapshots_are_gone(cli: Cli, make_repo: MakeRepo) -> None:
    repo = make_repo(signed=False)
    dated(cli, repo, "2024-01-01T10:00:00Z")
    newest = dated(cli, repo, "2024-01-02T10:00:00Z")
    git(repo, "config", "gc.pruneExpire", "not-a-date")
    result = cli(repo, "prune", "--yes", "--keep-last", "1")
    assert result.code == 3
    assert result.err.startswith("govsnap: error: removed 1 snapshot(s), then git gc failed")
    assert snapshot_ids(repo) == [newest]


def test_prune_and_pin_change_refs_notes_and_audit_together(
    cli: Cli, make_repo: MakeRepo, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Before, a prune killed after deleting refs left no audit entry for the deletions,
    # and a pin killed after its note none for the pin. A lock held on the audit ref (as
    # a killed process leaves it) now stops each whole operation.
    from govsnap import objects

    monkeypatch.setattr(objects, "_ATTEMPTS", 3)
    repo = make_repo()
    for n in range(3):
        assert cli(repo, "create", "-m", f"s{n}").code == 0
    before = all_refs(repo)
    lock = repo / ".git" / "refs" / "govsnap" / "audit.lock"
    lock.write_text("")
    for args in (["prune", "--keep-last", "1", "--yes", "--no-gc"], ["pin", "latest"]):
        result = cli(repo, *args)
        assert result.code == 3 and "refs/govsnap/audit is locked" in result.err, result.err
        assert all_refs(repo) == before
    lock.unlink()
    assert cli(repo, "prune", "--keep-last", "1", "--yes", "--no-gc").code == 0
    assert len(snapshot_ids(repo)) == 1
    assert last_audit(repo)["snapshots"] and last_audit(repo)["operation"] == "prune"
    assert len(noted_objects(repo)) == 1


def pin_policy(fingerprint: str, operations: str) -> str:
    """A policy letting the key do `operations` in prod, and change the policy."""
    ops = [op.strip().strip('"') for op in operations.split(",")] + ["policy"]
    return "version = 1\n" + openpgp_signer("releaser", fingerprint, ["prod"], ops)


def test_the_trust_policy_decides_who_may_pin_and_unpin(
    cli: Cli, make_repo: MakeRepo, keys: Keys
) -> None:
    repo = make_repo({"a.txt": "a\n", ".govsnap/trust.toml": pin_policy(keys.trusted, '"create"')})
    # Configured by e-mail, not fingerprint: the key is looked up as verify would.
    git(repo, "config", "govsnap.signingKey", "releaser@example.com")
    made = cli(repo, "create", "--environment", "prod", "--json")
    assert made.code == 0, made.err
    ident = json.loads(made.out)["snapshot"]["id"]
    before = all_refs(repo)

    refused = cli(repo, "pin", ident)
    assert refused.code == 1
    assert refused.err.startswith(f"govsnap: error: cannot pin {ident}: signer releaser")
    assert "may not pin" in refused.err and len(refused.err.splitlines()) == 1
    assert all_refs(repo) == before

    commit_policy(repo, pin_policy(keys.trusted, '"create", "pin"'), "releaser may pin")
    assert cli(repo, "pin", ident).code == 0
    assert json.loads(git(repo, "notes", "--ref=govsnap", "show", tag_of(repo, ident)))["pinned"]

    # Another key, not in the policy, can neither unpin nor pin.
    git(repo, "config", "govsnap.signingKey", keys.other)
    before = all_refs(repo)
    refused = cli(repo, "unpin", ident)
    assert refused.code == 1 and "is not in the trust policy" in refused.err
    assert all_refs(repo) == before
    git(repo, "config", "--unset", "govsnap.signingKey")
    refused = cli(repo, "unpin", ident)
    assert refused.code == 1 and "no signing key is configured" in refused.err
    assert all_refs(repo) == before
    git(repo, "config", "govsnap.signingKey", keys.trusted)
    assert cli(repo, "unpin", ident).code == 0
    assert git(repo, "log", "-2", "--format=%s", "refs/govsnap/audit").split("\n")[:2] == [
        f"unpin: unpinned snapshot {ident}",
        f"pin: pinned snapshot {ident}",
    ]


def test_the_trust_policy_decides_who_may_prune(cli: Cli, make_repo: MakeRepo, keys: Keys) -> None:
    repo = make_repo({"a.txt": "a\n", ".govsnap/trust.toml": pin_policy(keys.trusted, '"create"')})
    ids = []
    for day in (1, 2, 3):
        os.environ["GIT_COMMITTER_DATE"] = f"2024-01-0{day}T10:00:00Z"
        try:
            made = cli(repo, "create", "--environment", "prod", "--json")
        finally:
            del os.environ["GIT_COMMITTER_DATE"]
        assert made.code == 0, made.err
        ids.append(json.loads(made.out)["snapshot"]["id"])
    before = all_refs(repo)
    for args in (["--keep-last", "1"], ["--id", ids[0], "--now"]):
        refused = cli(repo, "prune", "--yes", *args)
        assert refused.code == 1, refused.err
        assert refused.err.startswith("govsnap: error: nothing removed: signer releaser")
        assert "may not prune" in refused.err and len(refused.err.splitlines()) == 1
        assert all_refs(repo) == before
    assert cli(repo, "prune", "--keep-last", "1", "--dry-run").code == 0

    commit_policy(repo, pin_policy(keys.trusted, '"create", "prune"'), "releaser may prune")
    done = cli(repo, "prune", "--yes", "--keep-last", "1", "--no-gc")
    assert done.code == 0, done.err
    assert snapshot_ids(repo) == [ids[2]]
