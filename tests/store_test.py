"""create / list / show / diff against real repositories, judged by stock git."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import threading
from pathlib import Path

import pytest

from tests.helpers import (
    Cli,
    Keys,
    MakeRepo,
    SSHKey,
    all_refs,
    create_snapshot,
    git,
    git_bytes,
    govsnap_bin,
    run_ok,
    snapshot_ids,
    write_files,
)


def test_openpgp_snapshot_is_judged_good_by_stock_git(cli: Cli, repo: Path) -> None:
    index_before = (repo / ".git" / "index").read_bytes()
    status_before = git(repo, "status", "--porcelain")
    write_files(repo, {"untracked.txt": "new\n"})
    status_before = git(repo, "status", "--porcelain")

    ident = create_snapshot(cli, repo, "--environment", "production", "--label", "rc-1")

    ref = f"refs/govsnap/snapshots/{ident}"
    git(repo, "verify-tag", ref)
    git(repo, "fsck", "--full", "--strict")
    note = json.loads(git(repo, "notes", "--ref=govsnap", "show", ref))
    assert note["id"] == ident and note["environment"] == "production"
    assert note["signature"]["kind"] == "openpgp"
    # The index file and the status are exactly as before.
    assert (repo / ".git" / "index").read_bytes() == index_before
    assert git(repo, "status", "--porcelain") == status_before
    # The payload is the tag without its signature; its SHA-256 gives the id.
    raw = git(repo, "cat-file", "tag", ref).encode()
    payload = raw[: raw.index(b"-----BEGIN PGP SIGNATURE-----")]
    assert hashlib.sha256(payload).hexdigest()[:16] == ident
    trailers = git(repo, "interpret-trailers", "--parse", input_text=payload)
    assert "Govsnap-Environment: production" in trailers
    assert "Govsnap-Label: rc-1" in trailers
    # The untracked file was captured.
    assert "untracked.txt" in git(repo, "ls-tree", "-r", "--name-only", ref + "^{tree}")


def test_ssh_signed_snapshot_verifies_with_git(cli: Cli, repo: Path, ssh_key: SSHKey) -> None:
    git(repo, "config", "gpg.format", "ssh")
    git(repo, "config", "--unset", "govsnap.signingKey")
    git(repo, "config", "user.signingKey", str(ssh_key.private))
    git(repo, "config", "gpg.ssh.allowedSignersFile", str(ssh_key.allowed_signers))
    ident = create_snapshot(cli, repo)
    out = git(repo, "verify-tag", f"refs/govsnap/snapshots/{ident}", stderr_too=True)
    assert "Good" in out
    shown = json.loads(cli(repo, "show", ident, "--json").out)
    assert shown["signature_kind"] == "ssh"
    assert shown["note"]["signature"]["signer"].startswith("SHA256:")


def test_file_kinds_round_trip_into_the_snapshot_tree(cli: Cli, make_repo: MakeRepo) -> None:
    repo = make_repo(
        {
            "empty.txt": "",
            "bin/data.bin": bytes(range(256)) * 4,
            "deep/a/b/c.txt": "deep\n",
            "naïve-文件.txt": "unicode\n",
        }
    )
    script = repo / "run.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    os.symlink("deep/a/b/c.txt", repo / "link")
    ident = create_snapshot(cli, repo)
    listing = git(repo, "ls-tree", "-r", "-z", f"refs/govsnap/snapshots/{ident}^{{tree}}")
    entries = {}
    for item in listing.split("\0"):
        if item:
            meta, path = item.split("\t", 1)
            mode, _, oid = meta.split()
            entries[path] = (mode, oid)
    assert entries["run.sh"][0] == "100755"
    assert entries["link"][0] == "120000"
    assert entries["empty.txt"][0] == "100644"
    for path in ("empty.txt", "bin/data.bin", "deep/a/b/c.txt", "naïve-文件.txt", "run.sh"):
        content = git_bytes(repo, "cat-file", "blob", entries[path][1])
        assert content == (repo / path).read_bytes(), path
    assert git(repo, "cat-file", "blob", entries["link"][1]) == "deep/a/b/c.txt"


def test_ignored_files_are_left_out_and_tracked_only_leaves_untracked_out(
    cli: Cli, repo: Path
) -> None:
    write_files(repo, {".gitignore": "*.log\n", "build.log": "x\n", "new.txt": "n\n"})
    full = create_snapshot(cli, repo)
    tracked = create_snapshot(cli, repo, "--tracked-only")
    names = git(repo, "ls-tree", "-r", "--name-only", f"refs/govsnap/snapshots/{full}")
    assert "new.txt" in names and "build.log" not in names
    names = git(repo, "ls-tree", "-r", "--name-only", f"refs/govsnap/snapshots/{tracked}")
    assert "new.txt" not in names and "README.md" in names


def test_deleted_and_modified_files_are_captured(cli: Cli, repo: Path) -> None:
    (repo / "README.md").unlink()
    (repo / "src/app.py").write_text("print('v2')\n")
    ident = create_snapshot(cli, repo)
    tree = f"refs/govsnap/snapshots/{ident}^{{tree}}"
    assert "README.md" not in git(repo, "ls-tree", "-r", "--name-only", tree)
    assert git(repo, "show", f"{tree}:src/app.py") == "print('v2')\n"


def test_from_revision_captures_the_commit_and_records_its_source(cli: Cli, repo: Path) -> None:
    head = git(repo, "rev-parse", "HEAD").strip()
    (repo / "README.md").write_text("dirty working tree\n")
    ident = create_snapshot(cli, repo, "--from", "main", "--trigger", "pre-push")
    ref = f"refs/govsnap/snapshots/{ident}"
    assert git(repo, "rev-parse", f"{ref}^{{tree}}") == git(repo, "rev-parse", "HEAD^{tree}")
    assert git(repo, "rev-parse", f"{ref}^{{commit}}^").strip() == head
    payload = git(repo, "cat-file", "tag", ref)
    assert f"Govsnap-Source: refs/heads/main {head}" in payload
    assert "Govsnap-Trigger: pre-push" in payload


def test_committer_date_and_identity_come_from_the_environment(cli: Cli, repo: Path) -> None:
    os.environ.update(
        GIT_COMMITTER_DATE="2024-02-29T12:00:00Z",
        GIT_COMMITTER_NAME="Ci Robot",
        GIT_COMMITTER_EMAIL="ci@example.com",
    )
    try:
        ident = create_snapshot(cli, repo)
    finally:
        for key in ("GIT_COMMITTER_DATE", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL"):
            del os.environ[key]
    tagger = git(
        repo,
        "for-each-ref",
        "--format=%(taggername) %(taggerdate:unix)",
        f"refs/govsnap/snapshots/{ident}",
    )
    assert tagger.strip() == "Ci Robot 1709208000"


def test_if_changed_creates_nothing_when_content_is_the_same(cli: Cli, repo: Path) -> None:
    first = create_snapshot(cli, repo)
    again = cli(repo, "create", "--if-changed")
    assert again.code == 0 and "unchanged" in again.out
    assert snapshot_ids(repo) == [first]
    (repo / "README.md").write_text("changed\n")
    second = create_snapshot(cli, repo, "--if-changed")
    assert sorted(snapshot_ids(repo)) == sorted([first, second])
    # Another environment has its own newest snapshot.
    create_snapshot(cli, repo, "--if-changed", "--environment", "staging")
    assert len(snapshot_ids(repo)) == 3


def test_unsigned_needs_consent_and_is_marked(cli: Cli, make_repo: MakeRepo) -> None:
    repo = make_repo(signed=False)
    refused = cli(repo, "create")
    assert refused.code == 3 and "no signing key" in refused.err
    assert snapshot_ids(repo) == []
    ident = create_snapshot(cli, repo, "--unsigned")
    assert "UNSIGNED" in cli(repo, "list").out
    assert "UNSIGNED" in cli(repo, "show", ident).out
    assert json.loads(cli(repo, "show", ident, "--json").out)["signed"] is False
    git(repo, "config", "govsnap.allowUnsigned", "true")
    assert cli(repo, "create").code == 0


def test_empty_repository_snapshot_has_no_parent(cli: Cli, make_repo: MakeRepo) -> None:
    repo = make_repo({"first.txt": "not committed yet\n"}, commit=False)
    ident = create_snapshot(cli, repo)
    commit = git(repo, "cat-file", "commit", f"refs/govsnap/snapshots/{ident}^{{commit}}")
    assert "parent" not in commit
    assert "Govsnap-Source" not in git(repo, "cat-file", "tag", f"refs/govsnap/snapshots/{ident}")
    git(repo, "fsck", "--full", "--strict")


def test_digest_cache_spares_unchanged_blobs(cli: Cli, repo: Path) -> None:
    write_files(repo, {f"f{i}.txt": f"{i}\n" for i in range(20)})
    first = json.loads(cli(repo, "create", "--json").out)
    assert first["hashed_blobs"] == 22
    (repo / "f3.txt").write_text("changed\n")
    second = json.loads(cli(repo, "create", "--json").out)
    assert second["hashed_blobs"] == 1


def test_list_filters_and_orders_newest_first(cli: Cli, repo: Path) -> None:
    a = create_snapshot(cli, repo, "-e", "staging", "-l", "x")
    b = create_snapshot(cli, repo, "-e", "production", "-l", "x", "-l", "y")
    c = create_snapshot(cli, repo, "-e", "production")
    listed = [s["id"] for s in json.loads(cli(repo, "list", "--json").out)["snapshots"]]
    assert listed == [c, b, a]
    prod = [
        s["id"]
        for s in json.loads(cli(repo, "list", "--json", "-e", "production").out)["snapshots"]
    ]
    assert prod == [c, b]
    labelled = [
        s["id"] for s in json.loads(cli(repo, "list", "--json", "-l", "y").out)["snapshots"]
    ]
    assert labelled == [b]
    table = cli(repo, "list").out
    assert a in table and "production" in table


def test_names_resolve_by_prefix_latest_and_digest(cli: Cli, repo: Path) -> None:
    a = create_snapshot(cli, repo)
    (repo / "README.md").write_text("v2\n")
    b = create_snapshot(cli, repo)
    show = lambda name: json.loads(cli(repo, "show", name, "--json").out)["id"]  # noqa: E731
    assert show("latest") == b
    assert show("latest~1") == a
    assert show(a[:6]) == a
    digest = json.loads(cli(repo, "show", a, "--json").out)["payload"]["digest"]
    assert show(digest[:14]) == a
    assert json.loads(cli(repo, "info", b, "--json").out)["id"] == b


def test_diff_between_snapshots_and_against_the_working_tree(cli: Cli, repo: Path) -> None:
    a = create_snapshot(cli, repo)
    (repo / "README.md").write_text("v2\nmore\n")
    (repo / "src/app.py").unlink()
    write_files(repo, {"new.txt": "n\n"})
    b = create_snapshot(cli, repo)
    data = json.loads(cli(repo, "diff", a, b, "--json").out)
    assert data["added"] == ["new.txt"]
    assert data["removed"] == ["src/app.py"]
    assert data["modified"] == ["README.md"]
    stat_out = cli(repo, "diff", a, b, "--stat").out
    assert "README.md" in stat_out and "+2 -1" in stat_out
    write_files(repo, {"later.txt": "l\n"})
    worktree = json.loads(cli(repo, "diff", b, "--json").out)
    assert worktree["to"] == "working tree" and worktree["added"] == ["later.txt"]


def test_diff_stat_counts_what_git_diff_numstat_counts(cli: Cli, repo: Path) -> None:
    write_files(repo, {"tail.txt": "a\nb", "img.bin": b"\0\1\2" * 50, "link": "x\n"})
    a = create_snapshot(cli, repo)
    write_files(repo, {"tail.txt": "a\nc\nd", "img.bin": b"\0\3" * 90, "README.md": "x\n" * 5})
    (repo / "link").unlink()
    (repo / "link").symlink_to("README.md")  # a typechange
    b = create_snapshot(cli, repo)
    trees = [git(repo, "rev-parse", f"refs/govsnap/snapshots/{i}^{{tree}}").strip() for i in (a, b)]
    numstat = git(repo, "diff", "--numstat", "--no-renames", *trees).splitlines()
    expected = {
        path: (None if added == "-" else (int(added), int(removed)))
        for added, removed, path in (line.split("\t") for line in numstat)
    }
    files = json.loads(cli(repo, "diff", a, b, "--json").out)["files"]
    shown = {f["path"]: None if f["binary"] else (f["additions"], f["deletions"]) for f in files}
    assert shown == expected and expected["img.bin"] is None


# --- bad input: one line, the right exit code, nothing written -------------------------


def test_not_a_repository(cli: Cli, tmp_path: Path) -> None:
    result = cli(tmp_path, "create")
    assert result.code == 3
    assert result.err.startswith("govsnap: error: not a git repository")
    assert len(result.err.splitlines()) == 1


def test_bare_repository_has_no_working_tree(cli: Cli, tmp_path: Path, repo: Path) -> None:
    bare = tmp_path / "bare.git"
    git(tmp_path, "clone", "-q", "--bare", str(repo), str(bare))
    git(bare, "config", "govsnap.signingKey", git(repo, "config", "govsnap.signingKey").strip())
    result = cli(bare, "create")
    assert result.code == 3 and "bare repository" in result.err
    assert snapshot_ids(bare) == []
    # A commit can still be snapshotted there (server-side use).
    assert cli(bare, "create", "--from", "main").code == 0


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["show", "abcdef"], 2, "no snapshot matches"),
        (["show", "zz"], 2, "not a snapshot name"),
        (["show", "latest~5"], 2, "only 1 readable"),
        (["diff", "ffff"], 2, "no snapshot matches"),
        (["create", "--from", "no-such-branch"], 2, "is not a commit"),
        (["create", "--environment", "../prod"], 2, "invalid environment"),
        (["create", "--label", "a b"], 2, "invalid label"),
        (["create", "--message", "-----BEGIN PGP SIGNATURE-----"], 2, "must not contain"),
        (["create", "--bogus"], 2, "No such option"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(
    cli: Cli, repo: Path, args: list[str], code: int, needle: str
) -> None:
    create_snapshot(cli, repo)
    before = all_refs(repo)
    result = cli(repo, *args)
    assert result.code == code, result.err
    assert needle in result.err
    assert "Traceback" not in result.err
    assert all_refs(repo) == before


def test_ambiguous_prefix_lists_the_candidates(cli: Cli, repo: Path) -> None:
    ident = create_snapshot(cli, repo)
    tag = git(repo, "rev-parse", f"refs/govsnap/snapshots/{ident}").strip()
    twins = [ident[:5] + "0" * 11, ident[:5] + "1" * 11]
    for twin in twins:
        git(repo, "update-ref", f"refs/govsnap/snapshots/{twin}", tag)
    result = cli(repo, "show", ident[:5])
    assert result.code == 2 and "ambiguous" in result.err
    for candidate in [ident, *twins]:
        assert candidate in result.err
    assert len(result.err.splitlines()) == 1


@pytest.mark.parametrize("command", [["show"], ["verify"], ["rollback", "--dry-run"]])
def test_a_digest_two_snapshots_share_is_ambiguous(
    cli: Cli, repo: Path, command: list[str]
) -> None:
    first = create_snapshot(cli, repo, "--unsigned", "-e", "staging")
    second = create_snapshot(cli, repo, "--unsigned", "-e", "production")
    digest = json.loads(run_ok(cli, repo, "show", first, "--json"))["payload"]["digest"]
    before = all_refs(repo)
    result = cli(repo, *command, digest[:11])
    assert result.code == 2 and "ambiguous" in result.err, result.err
    assert first in result.err and second in result.err
    assert "staging" in result.err and "production" in result.err
    assert len(result.err.splitlines()) == 1
    assert all_refs(repo) == before


def test_missing_signing_key_and_missing_gpg(cli: Cli, repo: Path, keys: Keys) -> None:
    git(repo, "config", "govsnap.signingKey", "0" * 40)
    result = cli(repo, "create")
    assert result.code == 3 and "could not sign" in result.err
    git(repo, "config", "govsnap.signingKey", keys.trusted)
    git(repo, "config", "gpg.program", "/nonexistent/gpg")
    result = cli(repo, "create")
    assert result.code == 3 and "not installed" in result.err
    assert snapshot_ids(repo) == []


def test_identical_states_in_the_same_second_get_distinct_snapshots(cli: Cli, repo: Path) -> None:
    os.environ["GIT_COMMITTER_DATE"] = "2025-01-01T00:00:00Z"
    try:
        signed = create_snapshot(cli, repo)
        unsigned = create_snapshot(cli, repo, "--unsigned")
        again = create_snapshot(cli, repo)
    finally:
        del os.environ["GIT_COMMITTER_DATE"]
    assert len({signed, unsigned, again}) == 3
    assert sorted(snapshot_ids(repo)) == sorted([signed, unsigned, again])


def test_listing_from_the_parsed_cache_equals_listing_without_it(cli: Cli, repo: Path) -> None:
    create_snapshot(cli, repo, "-l", "a")
    create_snapshot(cli, repo, "--unsigned", "-e", "staging")
    first = cli(repo, "list", "--json").out
    assert cli(repo, "list", "--json").out == first
    for cache in (repo / ".git" / "govsnap").glob("digest-cache.sqlite*"):
        cache.unlink()
    assert cli(repo, "list", "--json").out == first


def test_a_snapshot_of_an_unparsable_tree_is_refused_in_one_line(cli: Cli, repo: Path) -> None:
    blob = git(repo, "hash-object", "-w", "--stdin", input_text="x\n").strip()
    # A file mode libgit2 does not know makes it refuse the whole tree.
    raw = b"777777 f\0" + bytes.fromhex(blob)
    tree = git(repo, "hash-object", "-t", "tree", "--literally", "-w", "--stdin", input_text=raw)
    commit = git(repo, "commit-tree", tree.strip(), "-m", "damaged").strip()
    result = cli(repo, "create", "--from", commit)
    assert result.code == 1 and "is malformed" in result.err, result.err
    assert "internal error" not in result.err
    assert snapshot_ids(repo) == []


def test_a_diff_of_a_tree_git_fsck_rejects_is_what_git_diff_tree_says(cli: Cli, repo: Path) -> None:
    blob = git(repo, "hash-object", "-w", "--stdin", input_text="x\n").strip()
    # An entry named "/abs" (git fsck rejects it) tripped an assertion in libgit2's diff;
    # the diff is git's own now, and shows what git shows.
    raw = b"100644 /abs\0" + bytes.fromhex(blob)
    tree = git(repo, "hash-object", "-t", "tree", "--literally", "-w", "--stdin", input_text=raw)
    commit = git(repo, "commit-tree", tree.strip(), "-m", "hostile").strip()
    ident = create_snapshot(cli, repo, "--from", commit)
    plain = create_snapshot(cli, repo)
    plain_tree = git(repo, "rev-parse", f"refs/govsnap/snapshots/{plain}^{{tree}}").strip()
    expected = git(repo, "diff-tree", "-r", "--name-status", plain_tree, tree.strip())
    result = cli(repo, "diff", plain, ident, "--json")
    assert result.code == 0, result.err
    data = json.loads(result.out)
    letters = {"added": "A", "removed": "D", "modified": "M"}
    shown = {f"{letter}\t{p}" for status, letter in letters.items() for p in data[status]}
    assert shown == set(expected.splitlines())
    # A tree git cannot read is refused in one line.
    (repo / ".git" / "objects" / tree.strip()[:2] / tree.strip()[2:]).unlink()
    missing = cli(repo, "diff", plain, ident)
    assert missing.code != 0 and len(missing.err.splitlines()) == 1, missing.err


def test_create_writes_its_ref_note_and_audit_entry_together(
    cli: Cli, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Before, the ref, the note and the audit entry were three updates: a create killed
    # between them left a snapshot without note or audit entry. A lock held on the audit
    # ref (as a killed process leaves it) now stops all three.
    from govsnap import objects

    monkeypatch.setattr(objects, "_ATTEMPTS", 3)
    create_snapshot(cli, repo)
    before = all_refs(repo)
    lock = repo / ".git" / "refs" / "govsnap" / "audit.lock"
    lock.write_text("")
    result = cli(repo, "create")
    assert result.code == 3 and "refs/govsnap/audit is locked" in result.err, result.err
    assert all_refs(repo) == before
    lock.unlink()
    ident = create_snapshot(cli, repo)
    assert ident in snapshot_ids(repo)
    assert git(repo, "log", "-1", "--format=%s", "refs/govsnap/audit").startswith(
        f"create: snapshot {ident}"
    )


def test_a_file_rewritten_while_it_is_captured_is_read_again(repo: Path) -> None:
    # A build writing files during a snapshot made libgit2 fail half-way ("failed to
    # read file into stream"), which create reported as bad usage (exit 2).
    churned = repo / "build.log"
    stop = threading.Event()

    def churn() -> None:
        n = 0
        while not stop.is_set():
            churned.write_bytes(bytes([n % 256]) * ((1 + n % 3) << 20))
            n += 1

    thread = threading.Thread(target=churn)
    thread.start()
    try:
        runs = [
            subprocess.run(
                [govsnap_bin(), "-C", str(repo), "create", "--unsigned", "--json"],
                capture_output=True,
                text=True,
                check=False,
            )
            for _ in range(12)
        ]
    finally:
        stop.set()
        thread.join()
    for run in runs:
        if run.returncode != 0:
            assert run.returncode == 3, run.stderr
            assert run.stderr.startswith("govsnap: error: cannot capture the working tree: ")
            assert "attempts; is something writing to it?" in run.stderr
            assert len(run.stderr.splitlines()) == 1
    assert any(run.returncode == 0 for run in runs)
    assert git(repo, "fsck", "--full", "--strict", stderr_too=True) == ""
