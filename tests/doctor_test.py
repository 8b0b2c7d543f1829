"""`govsnap doctor`: each inconsistency an interrupted operation can leave is found, shown
by --fix --dry-run without change, repaired by --fix, and no snapshot is ever deleted."""

from __future__ import annotations

import gc
import json
import os
import time
from pathlib import Path

from tests.helpers import Cli, MakeRepo, all_refs, git, snapshot_ids


def snapshots(cli: Cli, make_repo: MakeRepo, count: int = 2) -> Path:
    repo = make_repo()
    git(repo, "config", "govsnap.requireTrust", "false")
    for n in range(count):
        assert cli(repo, "create", "-m", f"snapshot {n}").code == 0
    return repo


def doctor_json(cli: Cli, repo: Path, *args: str) -> tuple[int, dict[str, object]]:
    result = cli(repo, "doctor", "--json", *args)
    return result.code, json.loads(result.out)


def kinds(data: dict[str, object]) -> list[str]:
    findings = data["findings"]
    assert isinstance(findings, list)
    return [f["kind"] for f in findings]


def test_a_healthy_repository(cli: Cli, make_repo: MakeRepo) -> None:
    repo = snapshots(cli, make_repo)
    result = cli(repo, "doctor")
    assert (result.code, result.out) == (0, "no problems found\n")
    code, data = doctor_json(cli, repo, "--fix")
    assert code == 0 and data["findings"] == [] and data["ok"] is True


def test_a_note_without_a_snapshot_is_removed(cli: Cli, make_repo: MakeRepo) -> None:
    repo = snapshots(cli, make_repo)
    gone, kept = snapshot_ids(repo)
    tag = git(repo, "rev-parse", f"refs/govsnap/snapshots/{gone}").strip()
    git(repo, "update-ref", "-d", f"refs/govsnap/snapshots/{gone}")  # a prune cut short
    report = cli(repo, "doctor")
    assert report.code == 1
    assert f"orphan-note refs/notes/govsnap:{tag}: a note on the tag of snapshot {gone}" in (
        report.out
    )
    assert "`govsnap doctor --fix` repairs 1 of them" in report.out
    before = all_refs(repo)
    dry = cli(repo, "doctor", "--fix", "--dry-run")
    assert dry.code == 1 and "would fix" in dry.out
    assert all_refs(repo) == before
    code, data = doctor_json(cli, repo, "--fix")
    assert code == 0 and kinds(data) == ["orphan-note"]
    assert git(repo, "notes", "--ref=govsnap", "list").split()[1::2] == [
        git(repo, "rev-parse", f"refs/govsnap/snapshots/{kept}").strip()
    ]
    assert snapshot_ids(repo) == [kept]
    assert git(repo, "log", "-1", "--format=%s", "refs/govsnap/audit").startswith(
        "doctor: repaired 1 of 1 problem(s)"
    )
    assert cli(repo, "doctor").code == 0


def test_a_missing_note_is_rebuilt_from_the_signed_payload(cli: Cli, make_repo: MakeRepo) -> None:
    repo = snapshots(cli, make_repo, 1)
    (ident,) = snapshot_ids(repo)
    ref = f"refs/govsnap/snapshots/{ident}"
    original = json.loads(git(repo, "notes", "--ref=govsnap", "show", ref))
    git(repo, "notes", "--ref=govsnap", "remove", ref)  # create cut short after the ref
    assert cli(repo, "verify", ident).code == 1
    code, data = doctor_json(cli, repo)
    assert code == 1 and kinds(data) == ["missing-note"]
    assert cli(repo, "doctor", "--fix").code == 0
    rebuilt = json.loads(git(repo, "notes", "--ref=govsnap", "show", ref))
    for key in ("id", "digest", "tree", "commit", "environment", "labels", "files", "signature"):
        assert rebuilt[key] == original[key], key
    assert rebuilt["rebuilt_by"] == "govsnap doctor"
    assert cli(repo, "verify", ident).code == 0


def test_a_snapshot_ref_to_a_missing_object_is_set_aside(cli: Cli, make_repo: MakeRepo) -> None:
    repo = snapshots(cli, make_repo)
    kept = snapshot_ids(repo)
    missing = "1234567890abcdef1234567890abcdef12345678"
    # git update-ref refuses a missing object; a lost object leaves exactly this.
    (repo / ".git" / "refs" / "govsnap" / "snapshots" / "deadbeefdeadbeef").write_text(
        missing + "\n"
    )
    code, data = doctor_json(cli, repo)
    assert code == 1 and kinds(data) == ["dangling-snapshot-ref"]
    assert cli(repo, "doctor", "--fix").code == 0
    assert snapshot_ids(repo) == kept  # every real snapshot is still there
    log = (repo / ".git" / "govsnap" / "quarantine.log").read_text().splitlines()
    assert json.loads(log[0])["ref"] == "refs/govsnap/snapshots/deadbeefdeadbeef"
    assert json.loads(log[0])["target"] == missing
    git(repo, "fsck", "--full")


def test_a_notes_ref_to_a_missing_commit_is_reset_from_its_reflog(
    cli: Cli, make_repo: MakeRepo
) -> None:
    repo = snapshots(cli, make_repo)
    good = git(repo, "rev-parse", "refs/notes/govsnap").strip()
    (repo / ".git" / "refs" / "notes" / "govsnap").write_text("ab" * 20 + "\n")
    code, data = doctor_json(cli, repo)
    assert code == 1 and kinds(data) == ["broken-ref"]
    assert cli(repo, "doctor", "--fix").code == 0
    assert git(repo, "rev-parse", "refs/notes/govsnap").strip() == good
    assert cli(repo, "verify", "--all").code == 0


def test_stale_locks_are_removed_and_fresh_ones_left(cli: Cli, make_repo: MakeRepo) -> None:
    repo = snapshots(cli, make_repo, 1)
    stale = repo / ".git" / "refs" / "notes" / "govsnap.lock"
    fresh = repo / ".git" / "packed-refs.lock"
    stale.write_text("")
    fresh.write_text("")
    hour_ago = time.time() - 3600
    os.utime(stale, (hour_ago, hour_ago))
    code, data = doctor_json(cli, repo)
    assert code == 1 and kinds(data) == ["stale-lock"]
    assert cli(repo, "doctor", "--fix").code == 0
    assert not stale.exists() and fresh.exists()
    fresh.unlink()
    assert cli(repo, "create", "-m", "after the repair").code == 0


def test_a_damaged_digest_cache_is_reset(cli: Cli, make_repo: MakeRepo) -> None:
    repo = snapshots(cli, make_repo, 1)
    cache = repo / ".git" / "govsnap" / "digest-cache.sqlite"
    # In-process CLI runs leave the cache's SQLite connection to the garbage collector;
    # closing it later would checkpoint the old write-ahead log over the damage.
    gc.collect()
    data = cache.read_bytes()
    for suffix in ("-wal", "-shm"):
        Path(f"{cache}{suffix}").unlink(missing_ok=True)
    cache.write_bytes(data[: len(data) // 2])  # a copy or a disk cut short
    code, report = doctor_json(cli, repo)
    assert code == 1 and kinds(report) == ["torn-cache"]
    assert cli(repo, "doctor", "--fix").code == 0
    assert cli(repo, "doctor").code == 0
    assert cli(repo, "verify", "--all").code == 0


def test_a_stale_lock_on_a_fetched_copy_is_removed(cli: Cli, make_repo: MakeRepo) -> None:
    # A fetch killed while git wrote refs/govsnap-remote/ left a lock that made every
    # later fetch fail, and doctor did not look there.
    repo = snapshots(cli, make_repo, 1)
    lock = repo / ".git" / "refs" / "govsnap-remote" / "origin" / "notes.lock"
    lock.parent.mkdir(parents=True)
    lock.write_text("")
    hour_ago = time.time() - 3600
    os.utime(lock, (hour_ago, hour_ago))
    code, data = doctor_json(cli, repo)
    assert code == 1 and kinds(data) == ["stale-lock"]
    assert cli(repo, "doctor", "--fix").code == 0
    assert not lock.exists()


def test_a_rebuilt_note_does_not_make_its_snapshot_the_newest(
    cli: Cli, make_repo: MakeRepo
) -> None:
    # Found by the crash trials: a prune killed inside git's ref transaction removed
    # notes but not refs; doctor rebuilt the notes with its own sub-second creation time,
    # so the re-run prune kept those old snapshots and removed newer ones of that second.
    repo = make_repo()
    os.environ["GIT_COMMITTER_DATE"] = "2024-05-01T10:00:00Z"
    try:
        made = []
        for n in range(3):
            result = cli(repo, "create", "--json", "-m", f"n{n}")
            assert result.code == 0, result.err
            made.append(json.loads(result.out)["snapshot"]["id"])
    finally:
        del os.environ["GIT_COMMITTER_DATE"]
    oldest, middle, newest = made
    git(repo, "notes", "--ref=govsnap", "remove", f"refs/govsnap/snapshots/{oldest}")
    assert cli(repo, "doctor", "--fix").code == 0
    rebuilt = json.loads(
        git(repo, "notes", "--ref=govsnap", "show", f"refs/govsnap/snapshots/{oldest}")
    )
    assert "created_ns" not in rebuilt and "host" not in rebuilt and "user" not in rebuilt
    listed = cli(repo, "list", "--json")
    assert [s["id"] for s in json.loads(listed.out)] == [newest, middle, oldest]
    assert cli(repo, "prune", "--keep-last", "2", "--yes", "--no-gc").code == 0
    assert set(snapshot_ids(repo)) == {newest, middle}


def test_an_empty_index_lock_nobody_holds(cli: Cli, make_repo: MakeRepo) -> None:
    """A write that failed (a full disk) can leave `.git/index.lock` empty: git refuses
    to touch the index until it is gone. Doctor names it and --fix removes it; an empty
    lock some process has open (git holds its lock open while it works) is left alone,
    and a rollback says which of the two it met."""
    repo = snapshots(cli, make_repo, count=1)
    lock = repo / ".git" / "index.lock"
    with lock.open("wb"):  # held open, as a git at work holds it
        code, data = doctor_json(cli, repo)
        assert "empty-index-lock" not in kinds(data)
        held = cli(repo, "rollback", "latest", "--yes")
        assert held.code == 3 and "another git process is changing the index" in held.err
    code, data = doctor_json(cli, repo)
    assert code == 1 and kinds(data) == ["empty-index-lock"]
    refused = cli(repo, "rollback", "latest", "--yes")
    assert refused.code == 3 and "no process has it open" in refused.err
    assert "govsnap doctor --fix" in refused.err
    code, data = doctor_json(cli, repo, "--fix")
    assert code == 0 and not lock.exists()
    assert cli(repo, "rollback", "latest", "--yes").code == 0
