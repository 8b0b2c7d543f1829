"""push / fetch / remote setup between real clones: a bare repository on disk and one served
by `git daemon` on 127.0.0.1; stock git judges what the refs, notes and audit trail hold."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from govsnap import notes
from govsnap.notes import merge_note
from govsnap.repo import open_repo
from tests.helpers import (
    Cli,
    Keys,
    MakeRepo,
    Shared,
    create_snapshot,
    git,
    git_bytes,
    refs,
    run_ok,
    snapshot_ids,
    write_files,
)
from tests.helpers.tamper import gpg_sign, policy_text

POLICY = {"releaser": ("", ["*"], ["*"])}


def _seed(make_repo: MakeRepo, keys: Keys) -> Path:
    policy = policy_text({"releaser": (keys.trusted, ["*"], ["*"])})
    return make_repo(
        {"README.md": "hello\n", "src/app.py": "print('v1')\n", ".govsnap/trust.toml": policy},
        name="seed",
    )


@pytest.fixture
def shared(tmp_path: Path, make_repo: MakeRepo, keys: Keys) -> Shared:
    """A bare remote holding a commit with a trust policy, and clones a and b of it."""
    seed = _seed(make_repo, keys)
    bare = tmp_path / "remote.git"
    git(tmp_path, "clone", "-q", "--bare", str(seed), str(bare))
    first = Shared(tmp_path, bare, seed, seed)
    return Shared(tmp_path, bare, first.clone("a"), first.clone("b"))


def govsnap_state(path: Path) -> dict[str, str]:
    """Return every snapshot ref, the notes ref and the audit ref of a repository."""
    return {
        **refs(path, "refs/govsnap/snapshots/"),
        **refs(path, "refs/notes/govsnap"),
        **refs(path, "refs/govsnap/audit"),
    }


def audit_commits(path: Path) -> set[str]:
    """Return every commit of the audit trail, through all parents (stock git)."""
    return set(git(path, "rev-list", "refs/govsnap/audit").split())


def audit_head(path: Path) -> str:
    """Return the commit the audit ref points at (stock git)."""
    return git(path, "rev-parse", "refs/govsnap/audit").strip()


def note_of(path: Path, ident: str) -> dict[str, object]:
    """Return the note of a snapshot as stock `git notes` shows it."""
    text = git(path, "notes", "--ref=govsnap", "show", f"refs/govsnap/snapshots/{ident}")
    data = json.loads(text)
    assert isinstance(data, dict)
    return data


# --- convergence ---------------------------------------------------------------------------


def test_snapshots_from_both_clones_converge_after_push_and_fetch(shared: Shared, cli: Cli) -> None:
    a1 = create_snapshot(cli, shared.a, "-e", "production")
    a2 = create_snapshot(cli, shared.a, "-e", "staging")
    b1 = create_snapshot(cli, shared.b, "-e", "production", "-l", "from-b")
    run_ok(cli, shared.a, "push")
    assert set(snapshot_ids(shared.bare)) == {a1, a2}

    fetched = json.loads(run_ok(cli, shared.b, "fetch", "--json"))
    assert sorted(fetched["added"]) == sorted([a1, a2])
    assert fetched["verified"] is True
    assert fetched["audit"] == "joined"  # both clones had appended entries
    run_ok(cli, shared.b, "push")
    run_ok(cli, shared.a, "fetch")
    run_ok(cli, shared.a, "push")  # a's fetch entry
    run_ok(cli, shared.b, "fetch")

    assert set(snapshot_ids(shared.a)) == {a1, a2, b1}
    assert govsnap_state(shared.a) == govsnap_state(shared.b) == govsnap_state(shared.bare)
    # Stock git checks the fetched tags with the user's own gpg configuration.
    git(shared.a, "verify-tag", f"refs/govsnap/snapshots/{b1}")
    git(shared.b, "verify-tag", f"refs/govsnap/snapshots/{a1}")
    # A second round changes nothing and appends nothing.
    before = govsnap_state(shared.a)
    assert "up to date" in run_ok(cli, shared.a, "push")
    again = json.loads(run_ok(cli, shared.a, "fetch", "--json"))
    assert again["added"] == [] and again["unchanged"] == 3
    assert govsnap_state(shared.a) == before


def test_notes_edited_on_both_sides_are_merged_field_by_field(shared: Shared, cli: Cli) -> None:
    ident = create_snapshot(cli, shared.a)
    run_ok(cli, shared.a, "push")
    run_ok(cli, shared.b, "fetch")
    tag = refs(shared.a, f"refs/govsnap/snapshots/{ident}")[f"refs/govsnap/snapshots/{ident}"]
    older = {"time": "2026-01-01T00:00:00Z", "verdict": "pass", "signer": "A"}
    newer = {"time": "2026-01-02T00:00:00Z", "verdict": "fail", "signer": None}
    rehearsal = {"time": "2026-01-01T10:00:00Z", "verdict": "pass", "rollback_seconds": 0.4}
    repo_a, repo_b = open_repo(shared.a), open_repo(shared.b)
    notes.merge_fields(
        repo_a, tag, {"verification": older, "rehearsal": rehearsal}, repo_a.committer()
    )
    run_ok(cli, shared.b, "pin", ident)
    notes.merge_fields(repo_b, tag, {"verification": newer}, repo_b.committer())

    run_ok(cli, shared.a, "push")
    fetched = json.loads(run_ok(cli, shared.b, "fetch", "--json"))
    assert fetched["notes"] == "merged"
    merged = note_of(shared.b, ident)
    assert merged["pinned"] is True  # b's edit
    assert merged["rehearsal"] == rehearsal  # a's edit
    assert merged["verification"] == newer  # both edited: the newer result stays in place
    assert merged["result_history"] == {"verification": [older]}  # and the other is kept
    notes_commit = refs(shared.b, "refs/notes/govsnap")["refs/notes/govsnap"]
    parents = git(shared.b, "rev-list", "--parents", "-n1", notes_commit).split()[1:]
    assert len(parents) == 2  # a merge commit: both histories kept

    run_ok(cli, shared.b, "push")
    assert json.loads(run_ok(cli, shared.a, "fetch", "--json"))["notes"] == "fast-forward"
    assert note_of(shared.a, ident) == merged
    assert refs(shared.a, "refs/notes/govsnap") == refs(shared.bare, "refs/notes/govsnap")


def test_diverged_audit_chains_are_joined_without_losing_an_entry(shared: Shared, cli: Cli) -> None:
    create_snapshot(cli, shared.a)
    run_ok(cli, shared.a, "push")
    run_ok(cli, shared.b, "fetch")
    run_ok(cli, shared.b, "push")
    create_snapshot(cli, shared.a, "-l", "from-a")
    create_snapshot(cli, shared.b, "-l", "from-b")
    run_ok(cli, shared.b, "push")
    entries_a, entries_b = audit_commits(shared.a), audit_commits(shared.b)
    assert entries_a - entries_b and entries_b - entries_a  # diverged
    head_a, head_b = audit_head(shared.a), audit_head(shared.b)

    run_ok(cli, shared.a, "push")  # the remote has b's entries: fetch, join, then push
    joined = audit_commits(shared.a)
    assert entries_a | entries_b < joined
    parents = git(shared.a, "rev-list", "--parents", "-n1", "refs/govsnap/audit").split()[1:]
    assert parents == [head_a, head_b]  # this clone's history first, then the remote's
    subject = git(shared.a, "log", "-1", "--format=%s", "refs/govsnap/audit")
    assert subject.startswith("fetch: from origin")
    # The joining entry is signed like every other: stock git checks it.
    git(shared.a, "verify-commit", "refs/govsnap/audit")
    assert audit_commits(shared.bare) == joined
    run_ok(cli, shared.b, "fetch")  # a fast-forward, then b's own entry for the snapshot it got
    assert git(shared.b, "rev-parse", "refs/govsnap/audit^").strip() == audit_head(shared.a)
    assert audit_commits(shared.b) - joined == {audit_head(shared.b)}


# --- tamper and conflicts ------------------------------------------------------------------


def forge(bare: Path, ident: str) -> str:
    """Replace a snapshot ref on the server with an edited copy of its tag; return it."""
    raw = git(bare, "cat-file", "tag", f"refs/govsnap/snapshots/{ident}")
    forged = raw.replace("Govsnap-Environment: production", "Govsnap-Environment: staging")
    assert forged != raw
    oid = git(bare, "hash-object", "-t", "tag", "-w", "--stdin", input_text=forged).strip()
    git(bare, "update-ref", f"refs/govsnap/snapshots/{ident}", oid)
    return oid


def test_a_snapshot_ref_replaced_on_the_server_is_reported_and_not_fetched(
    shared: Shared, cli: Cli
) -> None:
    ident = create_snapshot(cli, shared.a, "-e", "production")
    run_ok(cli, shared.a, "push")
    run_ok(cli, shared.b, "fetch")
    mine = refs(shared.b, "refs/govsnap/snapshots/")
    forged = forge(shared.bare, ident)

    result = cli(shared.b, "fetch")
    assert result.code == 1
    assert f"conflict: {ident}" in result.err and forged in result.err
    assert result.err.strip().endswith("1 snapshot(s) from origin not added: conflict")
    assert refs(shared.b, "refs/govsnap/snapshots/") == mine  # the local snapshot stays
    # The remote's copy is kept apart, where stock git can inspect it.
    assert refs(shared.b, "refs/govsnap-remote/origin/snapshots/") == {
        f"refs/govsnap-remote/origin/snapshots/{ident}": forged
    }
    # The audit trail records the detection.
    assert "conflict" in git(shared.b, "log", "-1", "--format=%B", "refs/govsnap/audit")

    pushed = cli(shared.b, "push")
    assert pushed.code == 1
    assert pushed.err.count("\n") == 1
    assert f"has a different object under snapshot id {ident}" in pushed.err
    assert refs(shared.bare, f"refs/govsnap/snapshots/{ident}") == {
        f"refs/govsnap/snapshots/{ident}": forged
    }

    # A clone that never had the snapshot verifies the forged tag and refuses it.
    fresh = shared.clone("c")
    result = cli(fresh, "fetch")
    assert result.code == 1
    assert f"unverified: {ident}" in result.err and "id:" in result.err
    assert snapshot_ids(fresh) == []


def test_a_snapshot_signed_again_by_another_key_on_the_server_is_a_conflict(
    shared: Shared, cli: Cli, keys: Keys
) -> None:
    ident = create_snapshot(cli, shared.a)
    run_ok(cli, shared.a, "push")
    run_ok(cli, shared.b, "fetch")
    ref = f"refs/govsnap/snapshots/{ident}"
    raw = git_bytes(shared.bare, "cat-file", "tag", ref)
    payload = raw[: raw.index(b"-----BEGIN PGP SIGNATURE-----")]
    resigned = payload + gpg_sign(payload, keys.other)
    oid = git(shared.bare, "hash-object", "-t", "tag", "-w", "--stdin", input_text=resigned)
    git(shared.bare, "update-ref", ref, oid.strip())

    result = cli(shared.b, "fetch")
    assert result.code == 1
    assert f"conflict: {ident}" in result.err and "was signed again" in result.err
    assert refs(shared.b, ref) == refs(shared.a, ref)
    fresh = cli(shared.clone("c"), "fetch")
    assert fresh.code == 1 and f"unverified: {ident}" in fresh.err
    assert f"cannot check: no public key for {keys.other}" in fresh.err


def test_a_notes_ref_replaced_by_a_blob_on_the_server_is_refused(shared: Shared, cli: Cli) -> None:
    ident = create_snapshot(cli, shared.a)
    run_ok(cli, shared.a, "push")
    blob = git(shared.bare, "hash-object", "-w", "--stdin", input_text="not notes\n").strip()
    git(shared.bare, "update-ref", "refs/notes/govsnap", blob)
    result = cli(shared.b, "fetch", "--no-verify")
    assert result.code == 1
    assert "the notes ref of origin is not a commit: ignored" in result.err
    assert snapshot_ids(shared.b) == [ident]  # the rest of the fetch went on
    # Nothing of the remote's notes is taken; the snapshot still gets a note, rebuilt
    # from its signed payload.
    assert note_of(shared.b, ident)["rebuilt_by"] == "govsnap fetch"
    assert "not notes" not in git(shared.b, "log", "-p", "refs/notes/govsnap")


def test_unsigned_snapshots_are_not_added_unless_no_verify(shared: Shared, cli: Cli) -> None:
    good = create_snapshot(cli, shared.a)
    unsigned = create_snapshot(cli, shared.a, "--unsigned", "-m", "unsigned")
    run_ok(cli, shared.a, "push")
    result = cli(shared.b, "fetch", "--json")
    assert result.code == 1
    report = json.loads(result.out)
    assert report["added"] == [good]
    [bad] = [s for s in report["snapshots"] if s["status"] == "unverified"]
    assert bad["id"] == unsigned and "signature" in bad["detail"]
    assert snapshot_ids(shared.b) == [good]

    skipped = json.loads(run_ok(cli, shared.b, "fetch", "--no-verify", "--json"))
    assert skipped["added"] == [unsigned] and skipped["verified"] is False
    assert set(snapshot_ids(shared.b)) == {good, unsigned}


# --- push --prune --------------------------------------------------------------------------


def test_push_prune_deletes_only_what_this_clone_pruned(shared: Shared, cli: Cli) -> None:
    old = create_snapshot(cli, shared.a, "-m", "old")
    new = create_snapshot(cli, shared.a, "-m", "new")
    run_ok(cli, shared.a, "push")
    run_ok(cli, shared.b, "fetch")
    b_only = create_snapshot(cli, shared.b, "-m", "b only")
    run_ok(cli, shared.b, "push")
    run_ok(cli, shared.a, "prune", "--id", old, "--yes", "--no-gc")
    assert set(snapshot_ids(shared.a)) == {new}

    # Without --prune nothing is deleted, and the pruned snapshot is not fetched back.
    run_ok(cli, shared.a, "push")
    assert old in snapshot_ids(shared.bare)
    report = json.loads(run_ok(cli, shared.a, "fetch", "--json"))
    assert [s["status"] for s in report["snapshots"] if s["id"] == old] == ["pruned"]
    assert set(snapshot_ids(shared.a)) == {new, b_only}

    before = govsnap_state(shared.bare)
    dry = json.loads(run_ok(cli, shared.a, "push", "--prune", "--dry-run", "--json"))
    assert dry["deleted"] == [old] and dry["dry_run"] is True
    assert govsnap_state(shared.bare) == before

    # Deleting needs --yes when nobody can be asked; refused, nothing changes.
    refused = cli(shared.a, "push", "--prune")
    assert refused.code == 2 and one_line(refused.err).endswith(
        "push --prune would delete 1 snapshot(s) on remote 'origin': not on a terminal, "
        "so nobody can confirm; pass --yes (--dry-run shows what it would do)"
    )
    assert govsnap_state(shared.bare) == before
    out = run_ok(cli, shared.a, "push", "--prune", "--yes")
    assert f"delete 1 pruned snapshot(s) on the remote: {old}" in out
    assert set(snapshot_ids(shared.bare)) == {new, b_only}  # b's snapshot was not mirrored away
    assert "push: to origin: deleted 1" in git(
        shared.a, "log", "-1", "--format=%s", "refs/govsnap/audit"
    )

    # b still has the snapshot; it keeps it, and does not send it back.
    run_ok(cli, shared.b, "fetch")
    assert old in snapshot_ids(shared.b)
    held = json.loads(run_ok(cli, shared.b, "push", "--json"))
    assert held["held_back"] == [old] and held["sent"] == []
    assert old not in snapshot_ids(shared.bare)


def test_against_a_server_guarded_by_the_pre_receive_hook(shared: Shared, cli: Cli) -> None:
    """The server verifies what is pushed and deletes only what an authorised prune entry
    names; its root of trust is the policy commit it was set up with."""
    anchor = git(shared.bare, "rev-parse", "HEAD").strip()
    git(shared.bare, "config", "govsnap.trustAnchorCommit", anchor)
    run_ok(cli, shared.bare, "hooks", "install", "--server", "--trust-ref", "refs/heads/main")
    old = create_snapshot(cli, shared.a, "-m", "old")
    new = create_snapshot(cli, shared.a, "-m", "new")
    run_ok(cli, shared.a, "push")
    assert set(snapshot_ids(shared.bare)) == {old, new}

    run_ok(cli, shared.a, "prune", "--id", old, "--yes", "--no-gc")
    run_ok(cli, shared.a, "push", "--prune", "--yes")  # the signed prune entry travels with it
    assert snapshot_ids(shared.bare) == [new]

    unsigned = create_snapshot(cli, shared.a, "--unsigned", "-m", "unsigned")
    result = cli(shared.a, "push")
    assert result.code == 1
    line = one_line(result.err)
    assert f"remote 'origin' refused refs/govsnap/snapshots/{unsigned}" in line
    assert "pre-receive hook declined" in line and "REFUSED create" in line
    assert unsigned not in snapshot_ids(shared.bare)


# --- remote setup --------------------------------------------------------------------------


def config_lines(path: Path) -> str:
    """Return the repository's own config, as stock git lists it."""
    return git(path, "config", "--local", "--list")


def test_remote_setup_makes_plain_git_push_and_fetch_carry_snapshots(
    shared: Shared, cli: Cli
) -> None:
    original = config_lines(shared.a)
    dry = run_ok(cli, shared.a, "remote", "setup", "origin", "--dry-run")
    assert "would add" in dry and config_lines(shared.a) == original

    out = run_ok(cli, shared.a, "remote", "setup", "origin")
    assert "add    remote.origin.push = refs/govsnap/*:refs/govsnap/*" in out
    assert "add    remote.origin.fetch = +refs/govsnap/*:refs/govsnap-remote/origin/*" in out
    assert "HEAD" in git(shared.a, "config", "--get-all", "remote.origin.push")
    again = json.loads(run_ok(cli, shared.a, "remote", "setup", "origin", "--json"))
    assert again["added"] == [] and len(again["unchanged"]) == 4  # idempotent

    ident = create_snapshot(cli, shared.a)
    write_files(shared.a, {"NEW.md": "x\n"})
    git(shared.a, "add", "NEW.md")
    git(shared.a, "commit", "-q", "-m", "more")
    git(shared.a, "push", "-q", "origin")  # plain git push
    assert snapshot_ids(shared.bare) == [ident]
    assert refs(shared.bare, "refs/heads/main") == refs(shared.a, "refs/heads/main")
    assert refs(shared.bare, "refs/notes/govsnap") == refs(shared.a, "refs/notes/govsnap")

    run_ok(cli, shared.b, "remote", "setup", "origin")
    git(shared.b, "fetch", "-q", "origin")  # plain git fetch: into the remote namespace
    assert f"refs/govsnap-remote/origin/snapshots/{ident}" in refs(shared.b, "refs/govsnap-remote/")
    assert snapshot_ids(shared.b) == []
    assert json.loads(run_ok(cli, shared.b, "fetch", "--json"))["added"] == [ident]

    out = run_ok(cli, shared.a, "remote", "setup", "origin", "--undo")
    assert "remove remote.origin.push = HEAD" in out
    assert config_lines(shared.a) == original
    assert "nothing to change" in run_ok(cli, shared.a, "remote", "setup", "origin", "--undo")


def test_remote_setup_keeps_existing_push_refspecs(shared: Shared, cli: Cli) -> None:
    git(shared.a, "config", "--add", "remote.origin.push", "refs/heads/main:refs/heads/main")
    original = config_lines(shared.a)
    out = run_ok(cli, shared.a, "remote", "setup", "origin")
    assert "HEAD" not in out
    run_ok(cli, shared.a, "remote", "setup", "origin", "--undo")
    assert config_lines(shared.a) == original


# --- git daemon ----------------------------------------------------------------------------


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """A `git daemon` on 127.0.0.1 serving (and accepting pushes to) a directory."""
    base = tmp_path / "served"
    base.mkdir()
    port = free_port()
    proc = subprocess.Popen(
        [
            "git",
            "daemon",
            "--reuseaddr",
            "--export-all",
            "--enable=receive-pack",
            f"--base-path={base}",
            "--listen=127.0.0.1",
            f"--port={port}",
            str(base),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise AssertionError("git daemon did not start") from None
                time.sleep(0.05)
        yield base, port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_push_and_fetch_through_git_daemon(
    daemon: tuple[Path, int], make_repo: MakeRepo, keys: Keys, cli: Cli, tmp_path: Path
) -> None:
    base, port = daemon
    seed = _seed(make_repo, keys)
    git(tmp_path, "clone", "-q", "--bare", str(seed), str(base / "shared.git"))
    url = f"git://127.0.0.1:{port}/shared.git"
    net = Shared(tmp_path, base / "shared.git", seed, seed)
    a, b = net.clone("da", url), net.clone("db", url)

    a1 = create_snapshot(cli, a, "-e", "production", "-l", "from-a")
    b1 = create_snapshot(cli, b, "-e", "production", "-l", "from-b")
    ident = run_ok(cli, a, "push")
    assert a1 in ident
    assert "1 snapshot(s) added" in run_ok(cli, b, "fetch")
    run_ok(cli, b, "push")
    run_ok(cli, a, "fetch")
    run_ok(cli, a, "push")
    run_ok(cli, b, "fetch")
    assert set(snapshot_ids(a)) == set(snapshot_ids(b)) == {a1, b1}
    assert govsnap_state(a) == govsnap_state(b) == govsnap_state(net.bare)

    forge(net.bare, a1)
    result = cli(b, "fetch")
    assert result.code == 1 and f"conflict: {a1}" in result.err
    assert refs(b, f"refs/govsnap/snapshots/{a1}") == refs(a, f"refs/govsnap/snapshots/{a1}")


# --- bad input ------------------------------------------------------------------------------


def one_line(result_err: str) -> str:
    """Return the only line of an error output."""
    lines = result_err.strip().splitlines()
    assert len(lines) == 1, result_err
    assert lines[0].startswith("govsnap: error: ")
    return lines[0]


def test_unknown_remote(shared: Shared, cli: Cli) -> None:
    for args in (["push", "nowhere"], ["fetch", "nowhere"], ["remote", "setup", "nowhere"]):
        result = cli(shared.a, *args)
        assert result.code == 2
        assert "unknown remote 'nowhere'; known remotes: origin" in one_line(result.err)


def test_no_remote_at_all(repo: Path, cli: Cli) -> None:
    result = cli(repo, "push")
    assert result.code == 2
    assert "unknown remote 'origin'; this repository has no remote" in one_line(result.err)


def test_not_a_repository(tmp_path: Path, cli: Cli) -> None:
    for args in (["push"], ["fetch"], ["remote", "setup", "origin"], ["stats"]):
        result = cli(tmp_path, *args)
        assert result.code == 3
        assert "not a git repository" in one_line(result.err)


def test_unreachable_remote(shared: Shared, cli: Cli) -> None:
    port = free_port()
    git(shared.a, "remote", "add", "down", f"git://127.0.0.1:{port}/nothing.git")
    create_snapshot(cli, shared.a)
    before = govsnap_state(shared.a)
    for args in (["push", "down"], ["fetch", "down"]):
        result = cli(shared.a, *args)
        assert result.code == 3
        assert f"remote 'down' (git://127.0.0.1:{port}/nothing.git)" in one_line(result.err)
    assert govsnap_state(shared.a) == before


def test_a_remote_that_is_no_repository(shared: Shared, cli: Cli) -> None:
    git(shared.a, "remote", "add", "empty", str(shared.root / "no-such-dir"))
    result = cli(shared.a, "fetch", "empty")
    assert result.code == 3
    assert "does not appear to be a git repository" in one_line(result.err)


def test_bare_clones_push_and_fetch(shared: Shared, cli: Cli) -> None:
    """A bare mirror (e.g. a backup server) can fetch, verify and push snapshots too."""
    ident = create_snapshot(cli, shared.a)
    run_ok(cli, shared.a, "push")
    mirror = shared.root / "mirror.git"
    git(shared.root, "clone", "-q", "--bare", str(shared.bare), str(mirror))
    assert json.loads(run_ok(cli, mirror, "fetch", "--json"))["added"] == [ident]
    for pattern in ("refs/govsnap/snapshots/", "refs/notes/govsnap"):
        assert refs(mirror, pattern) == refs(shared.bare, pattern)
    assert audit_commits(shared.bare) < audit_commits(mirror)  # plus its fetch entry
    run_ok(cli, mirror, "push")
    assert govsnap_state(mirror) == govsnap_state(shared.bare)


# --- the merge of one note, as a table -------------------------------------------------------

V1 = {"time": "2026-01-01T00:00:00Z", "verdict": "pass"}
V2 = {"time": "2026-01-02T00:00:00Z", "verdict": "fail"}
V3 = {"time": "2026-01-03T00:00:00Z", "verdict": "pass"}


@pytest.mark.parametrize(
    ("base", "local", "remote", "merged"),
    [
        # one side changed a field: that change is taken, whichever side it is
        ({"a": 1}, {"a": 1}, {"a": 2}, {"a": 2}),
        ({"a": 1}, {"a": 3}, {"a": 1}, {"a": 3}),
        # added on one side, removed on one side (the other untouched)
        ({}, {}, {"pinned": True}, {"pinned": True}),
        ({"x": 1}, {}, {"x": 1}, {}),
        # both changed a plain value: this clone's stays; pinned on either side wins
        ({"a": 1}, {"a": 2}, {"a": 3}, {"a": 2}),
        ({"pinned": False}, {"pinned": False}, {"pinned": True}, {"pinned": True}),
        (None, {"pinned": False}, {"pinned": True}, {"pinned": True}),
        # nested objects merge by field; lists are joined
        ({"d": {"x": 1}}, {"d": {"x": 2}}, {"d": {"x": 1, "y": 3}}, {"d": {"x": 2, "y": 3}}),
        (None, {"l": [1, 2]}, {"l": [2, 3]}, {"l": [1, 2, 3]}),
        # results: the newer stays in place, the other goes to result_history
        (
            {"verification": V1},
            {"verification": V2},
            {"verification": V3},
            {"verification": V3, "result_history": {"verification": [V2]}},
        ),
        (
            None,
            {"verification": V3},
            {"verification": V1},
            {"verification": V3, "result_history": {"verification": [V1]}},
        ),
        (
            {"rehearsal": V1},
            {"rehearsal": V1},
            {"rehearsal": V2},
            {"rehearsal": V2},
        ),
        # histories from both sides are joined, newest first, without repeats
        (
            {"verification": V1},
            {"verification": V2, "result_history": {"verification": [V1]}},
            {"verification": V3, "result_history": {"verification": [V1]}},
            {"verification": V3, "result_history": {"verification": [V2, V1]}},
        ),
    ],
)
def test_merge_note(
    base: dict[str, object] | None,
    local: dict[str, object],
    remote: dict[str, object],
    merged: dict[str, object],
) -> None:
    assert merge_note(base, local, remote) == merged


def test_merge_note_is_the_same_from_both_sides() -> None:
    """Two clones merging each other's note reach the same result for results and pins."""
    local = {"verification": V2, "pinned": True, "rehearsal": V1}
    remote = {"verification": V3, "pinned": False, "rehearsal": V2}
    assert merge_note(None, local, remote) == merge_note(None, remote, local)
