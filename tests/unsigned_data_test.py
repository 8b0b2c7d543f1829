"""Red team round 2, the robustness findings (/work/team/rt2/findings/): unsigned data that
anyone with push access writes (notes, audit entries, a policy edit, junk refs) is shown
or refused in one line; it never crashes a command, decides a verification or blocks
sharing. Each test plays the finding's script: a bare server running govsnap's hook, a
bare forge running none, the trusted clone (alice) and a keyless pusher (mallory) using
stock git."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import Cli, Keys, MakeRepo, create_snapshot, git, govsnap_bin, write_files
from tests.helpers.tamper import commit_policy, policy_text

AUDIT = "refs/govsnap/audit"
NOTES = "refs/notes/govsnap"
SNAP = "refs/govsnap/snapshots/"
EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
DEEP = 100_000


@dataclass(frozen=True)
class Sites:
    """A hooked server, a hookless forge, and alice's clone (remotes origin and forge)."""

    server: Path
    forge: Path
    alice: Path

    def mallory(self, remote: Path) -> Path:
        """Return a keyless clone of `remote` holding its govsnap refs, as stock git has them."""
        path = remote.parent / f"mallory-{remote.stem}"
        git(remote.parent, "clone", "-q", str(remote), str(path))
        git(path, "fetch", "-q", "origin", "+refs/govsnap/*:refs/govsnap/*")
        git(path, "fetch", "-q", "origin", "+refs/notes/*:refs/notes/*")
        return path


@pytest.fixture
def sites(tmp_path: Path, make_repo: MakeRepo, keys: Keys, cli: Cli) -> Sites:
    seed = make_repo({"app.txt": "v1\n"}, name="seed")
    commit_policy(seed, policy_text({"releaser": (keys.trusted, ["*"], ["*"])}))
    server, forge, alice = tmp_path / "server.git", tmp_path / "forge.git", tmp_path / "alice"
    for bare in (server, forge):
        git(tmp_path, "clone", "-q", "--bare", str(seed), str(bare))
    git(server, "config", "govsnap.trustAnchor", keys.trusted)
    hook = cli(server, "hooks", "install", "--server", "--trust-ref", "refs/heads/main")
    assert hook.code == 0, hook.err
    git(tmp_path, "clone", "-q", str(server), str(alice))
    git(alice, "remote", "add", "forge", str(forge))
    git(alice, "config", "govsnap.signingKey", keys.trusted)
    git(alice, "config", "govsnap.trustAnchor", keys.trusted)
    return Sites(server, forge, alice)


def push(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "push", *args], cwd=repo, capture_output=True, text=True, check=False
    )


def assert_one_line_error(err: str) -> None:
    """A refusal is a line of its own: never an internal error, never a traceback."""
    assert "internal error" not in err and "Traceback" not in err, err


def hook_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "govsnap:" in line]


# --- 06: a deeply nested note -------------------------------------------------------------


def test_06_a_deeply_nested_note_is_shown_unreadable_and_blocks_nothing(
    sites: Sites, cli: Cli
) -> None:
    alice = sites.alice
    good = create_snapshot(cli, alice, "--label", "good")
    write_files(alice, {"app.txt": "v2\n"})
    bad = create_snapshot(cli, alice, "--label", "bad-release")
    assert cli(alice, "push", "origin").code == 0
    mallory = sites.mallory(sites.server)
    tag = git(mallory, "rev-parse", SNAP + bad).strip()
    deep = "[" * DEEP + "]" * DEEP
    git(mallory, "notes", "--ref=govsnap", "add", "-f", "-F", "-", tag, input_text=deep)
    pushed = push(mallory, "origin", NOTES)
    assert pushed.returncode == 0, pushed.stderr  # notes are claims: the hook lets them by

    assert cli(alice, "fetch", "origin").code == 0
    listed = cli(alice, "list", "--json")
    assert listed.code == 0, listed.err
    assert {s["id"] for s in json.loads(listed.out)["snapshots"]} == {good, bad}
    shown = cli(alice, "show", bad)
    assert shown.code == 0, shown.err
    assert "unreadable" in shown.out and "nested deeper than" in shown.out
    verified = cli(alice, "verify", "--all")
    assert verified.code == 0, verified.out + verified.err
    assert f"{bad} warning: note: tampered metadata: note is not valid JSON" in verified.out
    for args in (("stats",), ("prune", "--keep-last", "1", "--dry-run")):
        result = cli(alice, *args)
        assert result.code == 0, (args, result.err)
    rolled = cli(alice, "rollback", good, "--yes")
    assert rolled.code == 0, rolled.err
    assert (alice / "app.txt").read_text() == "v1\n"
    rolled = cli(alice, "rollback", bad, "--yes")
    assert rolled.code == 0, rolled.err
    assert (alice / "app.txt").read_text() == "v2\n"
    # doctor finds the note and rebuilds it from the signed payload.
    found = cli(alice, "doctor", "--json")
    assert found.code == 1
    assert [(f["kind"], f["subject"]) for f in json.loads(found.out)["findings"]] == [
        ("disputed-note", SNAP + bad)
    ]
    assert cli(alice, "doctor", "--fix").code == 0
    note = json.loads(git(alice, "notes", "--ref=govsnap", "show", tag))
    assert (note["id"], note["rebuilt_by"]) == (bad, "govsnap doctor")
    assert cli(alice, "doctor").code == 0


# --- 07: an unsigned audit entry with a deeply nested body ----------------------------------


def test_07_an_unsigned_deeply_nested_audit_entry_is_refused_in_one_line(
    sites: Sites, cli: Cli
) -> None:
    alice = sites.alice
    create_snapshot(cli, alice, "--label", "r1")
    for remote in ("origin", "forge"):
        assert cli(alice, "push", remote).code == 0
    mallory = sites.mallory(sites.forge)
    tip = git(mallory, "rev-parse", AUDIT).strip()
    message = "prune: snapshot 0000\n\n" + "[" * DEEP + "]" * DEEP + "\n"
    forged = git(mallory, "commit-tree", EMPTY_TREE, "-p", tip, "-F", "-", input_text=message)
    forged = forged.strip()
    assert push(mallory, "origin", f"{forged}:{AUDIT}").returncode == 0  # the forge takes it

    refused = push(mallory, str(sites.server), f"{forged}:{AUDIT}")
    assert refused.returncode != 0
    assert_one_line_error(refused.stderr)
    assert any(
        "REFUSED" in line and "is not signed" in line for line in hook_lines(refused.stderr)
    ), refused.stderr
    assert git(sites.server, "rev-parse", AUDIT).strip() == tip

    fetched = cli(alice, "fetch", "forge")
    assert fetched.code == 1, fetched.err
    assert_one_line_error(fetched.err)
    assert f"{forged[:12]} (prune) is not signed" in fetched.err
    assert "govsnap doctor --restore-remote forge" in fetched.err
    assert git(alice, "rev-parse", AUDIT).strip() == tip
    audit = cli(alice, "audit", "verify")
    assert audit.code == 0, audit.out + audit.err


# --- 12: a deeply nested policy edit ---------------------------------------------------------


@pytest.mark.parametrize(
    "hostile",
    [
        "x = " + "[" * 50_000 + "]" * 50_000,
        ".".join(["x"] * 50_000) + " = 1",  # dotted keys nest tables without a bracket
    ],
    ids=["brackets", "dotted-keys"],
)
def test_12_a_deeply_nested_policy_stops_every_reader_with_its_file_and_line(
    sites: Sites, cli: Cli, hostile: str
) -> None:
    alice = sites.alice
    create_snapshot(cli, alice, "--label", "r1")
    mallory = sites.mallory(sites.forge)
    policy = mallory / ".govsnap/trust.toml"
    line = policy.read_text().count("\n") + 1
    policy.write_text(policy.read_text() + hostile + "\n")
    git(mallory, "commit", "-qam", "tidy policy")
    assert push(mallory, "origin", "main").returncode == 0

    refused = push(mallory, str(sites.server), "main")
    assert refused.returncode != 0
    assert_one_line_error(refused.stderr)
    assert any(
        f".govsnap/trust.toml:{line}: unreadable TOML" in text
        for text in hook_lines(refused.stderr)
    ), refused.stderr

    git(alice, "pull", "-q", "forge", "main")
    for args in (
        ("trust", "check"),
        ("verify", "--all"),
        ("rollback", "latest", "--dry-run"),
        ("trust", "add-signer", "bob", "--key", "0" * 40),
    ):
        result = cli(alice, *args)
        assert result.code == 2, (args, result.err)
        assert_one_line_error(result.err)
        assert ".govsnap/trust.toml" in result.err, (args, result.err)
        assert "nested deeper than" in result.err, (args, result.err)
    # The installed command (and its exit code) says the same.
    proc = subprocess.run(
        [govsnap_bin(), "-C", str(alice), "trust", "check"], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert f".govsnap/trust.toml:{line}: unreadable TOML" in proc.stderr


# --- 05: notes edited by a keyless pusher ----------------------------------------------------


def test_05_edited_notes_are_warnings_that_block_nothing_and_doctor_puts_them_right(
    sites: Sites, cli: Cli
) -> None:
    alice = sites.alice
    first = create_snapshot(cli, alice, "--label", "r1")
    write_files(alice, {"app.txt": "v2\n"})
    second = create_snapshot(cli, alice, "--label", "r2")
    assert cli(alice, "verify", "--all").code == 0  # each note now holds a verification
    assert cli(alice, "push", "origin").code == 0
    mallory = sites.mallory(sites.server)
    tags = {ident: git(mallory, "rev-parse", SNAP + ident).strip() for ident in (first, second)}
    for tag in tags.values():
        note = json.loads(git(mallory, "notes", "--ref=govsnap", "show", tag))
        edited = json.dumps({**note, "environment": "staging", "extra": "mallory was here"})
        git(mallory, "notes", "--ref=govsnap", "add", "-f", "-F", "-", tag, input_text=edited)
    pushed = push(mallory, "origin", NOTES)
    assert pushed.returncode == 0, pushed.stderr

    assert cli(alice, "fetch", "origin").code == 0
    verified = cli(alice, "verify", "--all", "--json")
    assert verified.code == 0, verified.out
    report = json.loads(verified.out)
    assert (report["verdict"], report["failed"], report["warned"]) == ("pass", 0, 2)
    for snap in report["snapshots"]:
        assert snap["verdict"] == "pass"
        message = (
            "tampered metadata: the note disagrees with the signed payload on "
            "environment (note 'staging', signed 'default')"
        )
        assert snap["checks"]["note"] == {"ok": False, "message": message}
        assert snap["warnings"] == [f"note: {message}"]
    shown = cli(alice, "verify", "--all")
    assert "WARN" in shown.out and "PASS: 2 snapshot(s) verified" in shown.out
    rolled = cli(alice, "rollback", first, "--yes")  # no --no-verify needed
    assert rolled.code == 0, rolled.err
    assert (alice / "app.txt").read_text() == "v1\n"

    found = cli(alice, "doctor", "--json")
    assert found.code == 1
    disputed = [f for f in json.loads(found.out)["findings"] if f["kind"] == "disputed-note"]
    assert sorted(f["subject"] for f in disputed) == sorted(SNAP + i for i in (first, second))
    before = git(alice, "rev-parse", NOTES)
    dry = cli(alice, "doctor", "--fix", "--dry-run")
    assert dry.code == 1 and git(alice, "rev-parse", NOTES) == before
    assert cli(alice, "doctor", "--fix").code == 0
    for ident, tag in tags.items():
        note = json.loads(git(alice, "notes", "--ref=govsnap", "show", tag))
        assert note["environment"] == "default"
        # What only the note held is kept: the verification record, even the extra claim.
        assert note["verification"]["verdict"] == "pass", ident
        assert note["extra"] == "mallory was here"
        assert "rebuilt_by" not in note
    again = json.loads(cli(alice, "verify", "--all", "--json").out)
    assert again["warned"] == 0


# --- 08: the notes and audit refs created as something else than a commit -----------------


def test_08_the_notes_and_audit_refs_are_created_only_as_commits(sites: Sites, cli: Cli) -> None:
    alice = sites.alice
    ident = create_snapshot(cli, alice, "--label", "r1")
    mallory = sites.mallory(alice)  # holds alice's signed audit entry, not yet on the server
    blob = git(mallory, "hash-object", "-w", "--stdin", input_text="junk\n").strip()
    entry = git(mallory, "rev-parse", AUDIT).strip()
    git(mallory, "tag", "-a", "-m", "wrapped", "wrapped", entry)
    tag = git(mallory, "rev-parse", "refs/tags/wrapped").strip()
    for spec, what in ((f"{blob}:{NOTES}", "blob"), (f"{tag}:{AUDIT}", "tag")):
        refused = push(mallory, str(sites.server), spec)
        assert refused.returncode != 0, spec
        assert_one_line_error(refused.stderr)
        ref = spec.split(":")[1]
        assert any(
            f"REFUSED create of {ref}: {ref} must point at a commit, not {what}" in line
            for line in hook_lines(refused.stderr)
        ), refused.stderr
    assert git(sites.server, "for-each-ref", "refs/notes/", "refs/govsnap/") == ""
    # Sharing still works: alice creates both refs, as commits.
    pushed = cli(alice, "push", "origin")
    assert pushed.code == 0, pushed.err
    assert git(sites.server, "cat-file", "-t", NOTES).strip() == "commit"
    assert git(sites.server, "rev-parse", AUDIT).strip() == entry
    assert ident in git(sites.server, "for-each-ref", SNAP)
    assert cli(alice, "fetch", "origin").code == 0


# --- 02: a junk ref named like a tracking copy -----------------------------------------------


def test_02_junk_refs_on_a_hookless_forge_collide_with_nothing_fetch_copies(
    sites: Sites, cli: Cli, keys: Keys
) -> None:
    alice = sites.alice
    first = create_snapshot(cli, alice, "--label", "r1")
    assert cli(alice, "push", "forge").code == 0
    mallory = sites.mallory(sites.forge)
    git(mallory, "commit", "-q", "--allow-empty", "-m", "junk")
    # Each landed on a tracking copy govsnap uses, or beside one (D/F), with refs/govsnap/*.
    for junk in ("refs/govsnap/notes", "refs/govsnap/snapshots-x", "refs/notes/govsnap-x/y"):
        assert push(mallory, "origin", f"HEAD:{junk}").returncode == 0, junk
    write_files(alice, {"app.txt": "v2\n"})
    second = create_snapshot(cli, alice, "--label", "r2")
    pushed = cli(alice, "push", "forge")
    assert pushed.code == 0, pushed.err

    bob = sites.forge.parent / "bob"
    git(sites.forge.parent, "clone", "-q", str(sites.forge), str(bob))
    git(bob, "config", "govsnap.trustAnchor", keys.trusted)
    fetched = cli(bob, "fetch", "origin", "--json")
    assert fetched.code == 0, fetched.err
    assert sorted(json.loads(fetched.out)["added"]) == sorted([first, second])
    assert git(bob, "rev-parse", "refs/govsnap-remote/origin/notes") == git(
        sites.forge, "rev-parse", NOTES
    )
    # Plain git fetch, as `remote setup` configures it, collides with nothing either; an
    # earlier version's refspec (which did) is replaced.
    legacy = "+refs/govsnap/*:refs/govsnap-remote/origin/*"
    git(bob, "config", "--add", "remote.origin.fetch", legacy)
    setup = cli(bob, "remote", "setup", "origin")
    assert setup.code == 0, setup.err
    assert legacy not in git(bob, "config", "--get-all", "remote.origin.fetch")
    git(bob, "fetch", "-q", "origin")
    assert cli(bob, "fetch", "origin").code == 0
    # What git cannot write there is named, with the fix.
    write_files(alice, {"app.txt": "v3\n"})
    create_snapshot(cli, alice, "--label", "r3")
    assert cli(alice, "push", "forge").code == 0
    (bob / ".git/refs/govsnap-remote/origin/notes.lock").write_text("")
    blocked = cli(bob, "fetch", "origin")
    assert blocked.code == 3
    assert_one_line_error(blocked.err)
    assert "refs/govsnap-remote/origin/notes" in blocked.err
    assert "refs/govsnap-remote/origin/ only mirrors the remote" in blocked.err, blocked.err
