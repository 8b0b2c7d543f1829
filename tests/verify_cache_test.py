"""The digests remembered across verify runs: a later run still finds what went missing
since, and no row anyone edits in the cache file can change a verdict."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pygit2
import pytest

from govsnap.digest import CACHE_NAME, DigestCache, digest_tree, key_path
from govsnap.doctor import find_torn_cache
from govsnap.repo import open_repo
from govsnap.store import resolve
from govsnap.verify import SnapshotVerification, verify_snapshot, verify_snapshots
from tests.helpers import Keys, MakeRepo, git
from tests.helpers.tamper import (
    Template,
    copy_template,
    gpg_sign,
    read_note,
    read_raw_tag,
    replace_snapshot,
    snapshot_ref,
    split_tag,
    tag_oid,
    template,
    write_note,
)


@pytest.fixture(scope="session")
def tpl(isolated_env: Path, keys: Keys) -> Template:
    """The template repository, built once."""
    return template(isolated_env, keys)


@pytest.fixture
def work(tpl: Template, tmp_path: Path) -> Path:
    """A private copy of the template repository to tamper with."""
    return copy_template(tpl, tmp_path / "work")


def verify_id(repo_path: Path, ident: str) -> SnapshotVerification:
    repo = open_repo(repo_path)
    return verify_snapshot(repo, resolve(repo, ident))


def failing(result: SnapshotVerification) -> set[str]:
    return {c.name for c in result.checks if not c.ok}


def cache_db(repo: Path) -> sqlite3.Connection:
    return sqlite3.connect(repo / ".git" / "govsnap" / CACHE_NAME)


def root_row(repo: Path, tree: str) -> tuple[bytes, bytes]:
    """Return the (value, mac) the cache holds for a root tree in format 2."""
    db = cache_db(repo)
    try:
        row = db.execute(
            "SELECT value, mac FROM roots3 WHERE oid = ? AND format = 2", (bytes.fromhex(tree),)
        ).fetchone()
    finally:
        db.close()
    assert row is not None, "the verification left no digest of the tree in the cache"
    return bytes(row[0]), bytes(row[1])


def put_root_row(repo: Path, tree: str, value: bytes, mac: bytes) -> None:
    """Write a row into the cache the way anyone who can write the file can."""
    db = cache_db(repo)
    try:
        db.execute(
            "INSERT OR REPLACE INTO roots3 VALUES (?, 2, ?, ?)", (bytes.fromhex(tree), value, mac)
        )
        db.commit()
    finally:
        db.close()


def test_a_blob_deleted_after_a_verification_is_still_reported_missing(
    work: Path, tpl: Template
) -> None:
    assert verify_id(work, tpl.good).ok
    tree = git(work, "rev-parse", f"{snapshot_ref(tpl.good)}^{{tree}}").strip()
    root_row(work, tree)  # the next run reads the digest from the cache
    blob = git(work, "rev-parse", f"{tree}:{tpl.unique_file}").strip()
    (work / ".git" / "objects" / blob[:2] / blob[2:]).unlink()
    again = verify_id(work, tpl.good)
    assert failing(again) == {"objects"}
    assert again.check("objects").message == f"missing: blob {blob} ({tpl.unique_file})"
    # In one run of both, the trees they share are walked once; each verdict still stands.
    repo = open_repo(work)
    both = verify_snapshots(repo, [resolve(repo, tpl.good), resolve(repo, tpl.second)])
    assert [failing(r) for r in both] == [{"objects"}, set()]


def test_a_row_copied_onto_a_swapped_tree_cannot_pass_its_digest(
    work: Path, tpl: Template, keys: Keys
) -> None:
    # The attack of test_f (a trusted signer's tag naming a tree whose content is not the
    # signed digest), helped by the cache: the honest row of the signed tree, whose value
    # is exactly the signed digest, copied under the swapped tree's id.
    assert verify_id(work, tpl.good).ok
    raw = read_raw_tag(work, tpl.good)
    payload, _ = split_tag(raw)
    old_commit = git(work, "rev-parse", f"{snapshot_ref(tpl.good)}^{{commit}}").strip()
    old_tree = git(work, "rev-parse", f"{old_commit}^{{tree}}").strip()
    listing = git(work, "ls-tree", old_tree)
    blob = git(work, "hash-object", "-w", "--stdin", input_text="not what was signed\n").strip()
    new_tree = git(work, "mktree", input_text=listing + f"100644 blob {blob}\tevil.txt\n").strip()
    new_commit = git(work, "commit-tree", new_tree, "-m", "swapped").strip()
    swapped = payload.replace(old_commit.encode(), new_commit.encode()).replace(
        old_tree.encode(), new_tree.encode()
    )
    new_id = replace_snapshot(
        work,
        tpl.good,
        swapped + gpg_sign(swapped, keys.trusted),
        {"commit": new_commit, "tree": new_tree},
    )
    value, mac = root_row(work, old_tree)
    put_root_row(work, new_tree, value, mac)
    assert failing(verify_id(work, new_id)) == {"digest"}
    # Nor does a row with a made-up MAC.
    put_root_row(work, new_tree, value, os.urandom(16))
    assert failing(verify_id(work, new_id)) == {"digest"}


def test_a_poisoned_row_cannot_fail_an_honest_snapshot(work: Path, tpl: Template) -> None:
    assert verify_id(work, tpl.good).ok
    tree = git(work, "rev-parse", f"{snapshot_ref(tpl.good)}^{{tree}}").strip()
    second_tree = git(work, "rev-parse", f"{snapshot_ref(tpl.second)}^{{tree}}").strip()
    verify_id(work, tpl.second)
    honest = root_row(work, tree)
    # Another tree's genuine row, and a value edited under the genuine MAC.
    put_root_row(work, tree, *root_row(work, second_tree))
    assert verify_id(work, tpl.good).ok
    assert root_row(work, tree) == honest  # recomputed and written back
    put_root_row(work, tree, honest[0].replace(b"sha256:", b"sha256:0"), honest[1])
    assert verify_id(work, tpl.good).ok


def test_a_cache_key_others_can_read_is_not_used(
    make_repo: MakeRepo, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    repo_path = make_repo({"f": "content\n"})
    repo = open_repo(repo_path)
    tree = pygit2.Oid(hex=git(repo_path, "rev-parse", "HEAD^{tree}").strip())
    honest = digest_tree(repo, tree).digest
    assert digest_tree(repo, tree, DigestCache.for_repo(repo)).digest == honest
    key = key_path()
    assert key.is_relative_to(tmp_path / "state") and key.stat().st_mode & 0o777 == 0o600
    key.chmod(0o644)
    cache = DigestCache.for_repo(repo)
    problem = f"cache key {key} is not private to its owner (chmod 600 it, or delete it)"
    assert cache.key_problem() == problem and cache.problem() is None
    assert cache.roots([(tree.raw, 2)]) == {}
    assert digest_tree(repo, tree, cache).digest == honest
    found = find_torn_cache(repo)
    assert [(f.kind, f.problem, f.fix) for f in found] == [("cache-key", problem, None)]


def test_a_cached_note_cannot_hide_a_tampered_one(work: Path, tpl: Template) -> None:
    # The note is edited with stock git; the cache is given the honest note's parsed row
    # (MAC and all) under the edited note's blob id, as anyone who can write it could.
    assert verify_id(work, tpl.good).ok  # the honest note's row is cached now
    tag = tag_oid(work, tpl.good)
    honest_blob = git(work, "notes", "--ref=govsnap", "list", tag).strip()
    note = read_note(work, tag)
    write_note(work, tag, {**note, "environment": "staging"})
    edited_blob = git(work, "notes", "--ref=govsnap", "list", tag).strip()
    db = cache_db(work)
    try:
        value, mac = db.execute(
            "SELECT value, mac FROM parsed3 WHERE oid = ?", (bytes.fromhex(honest_blob),)
        ).fetchone()
        db.execute(
            "INSERT OR REPLACE INTO parsed3 VALUES (?, ?, ?)",
            (bytes.fromhex(edited_blob), value, mac),
        )
        db.commit()
    finally:
        db.close()
    result = verify_id(work, tpl.good)
    assert failing(result) == {"note"}
    assert "environment" in result.check("note").message


def test_git_walks_the_objects_once_for_every_snapshot_when_none_is_missing(
    work: Path, tpl: Template, monkeypatch: pytest.MonkeyPatch
) -> None:
    from govsnap import verify

    def no_python_walk(*args: object) -> None:
        raise AssertionError("git rev-list found every object: nothing to walk in Python")

    monkeypatch.setattr(verify._Checker, "read_tree", no_python_walk)
    repo = open_repo(work)
    results = verify_snapshots(repo, [resolve(repo, tpl.good), resolve(repo, tpl.second)])
    assert [failing(r) for r in results] == [set(), set()]


def test_an_edited_blob_or_tree_row_changes_no_digest(make_repo: MakeRepo) -> None:
    repo_path = make_repo({"src/a.txt": "a\n", "b.txt": "b\n"})
    repo = open_repo(repo_path)
    tree = pygit2.Oid(hex=git(repo_path, "rev-parse", "HEAD^{tree}").strip())
    honest = digest_tree(repo, tree, DigestCache.for_repo(repo)).digest
    db = cache_db(repo_path)
    try:
        db.execute("DELETE FROM roots3")
        # Every blob row claims another content; every tree row swaps in another's summary.
        db.execute("UPDATE blobs3 SET sha256 = zeroblob(32)")
        rows = db.execute("SELECT oid, summary, mac FROM trees3").fetchall()
        for (oid, *_), (_, summary, mac) in zip(rows, rows[1:] + rows[:1], strict=True):
            db.execute("UPDATE trees3 SET summary = ?, mac = ? WHERE oid = ?", (summary, mac, oid))
        db.commit()
    finally:
        db.close()
    assert digest_tree(repo, tree, DigestCache.for_repo(repo)).digest == honest
