"""A fetch loses no note: a snapshot's note travels with it, a refused snapshot's note is
kept (in the notes, attached to no snapshot of the clone) until a later fetch adopts the
snapshot, a clone that refused a snapshot never strips its note from the server, and
`doctor --fix` recovers notes from what fetches brought before it rebuilds one from the
signed payload.

Each clone signs with its own keyring, which holds its own key only (tests/helpers/team.py):
public keys reach a clone in the committed trust policy, nowhere else. In the
`newcomer` scenarios the releaser's key is not in the policy yet until the colleague,
who keeps the policy, adds it (`add_to_policy`)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import Cli, Keys, MakeRepo, create_snapshot, git, run_ok, snapshot_ids
from tests.helpers.tamper import commit_policy, policy_text
from tests.helpers.team import Keyrings, Member, add_to_policy, keyrings, pin_trust, sign_as


@dataclass(frozen=True)
class Team:
    """A bare remote whose policy the colleague keeps (their key is the anchor); the
    releaser's clone, and the colleague's clone."""

    root: Path
    bare: Path
    releaser: Member
    colleague: Member
    a: Path  # the releaser's clone
    b: Path  # the colleague's clone

    def clone(self, name: str, member: Member) -> Path:
        """Return a further clone of the remote, working as `member`."""
        path = self.root / name
        git(self.root, "clone", "-q", str(self.bare), str(path))
        sign_as(path, member)
        pin_trust(path, self.colleague)
        return path


@pytest.fixture
def rings() -> Iterator[Keyrings]:
    with keyrings() as made:
        yield made


def make_team(
    tmp_path: Path, make_repo: MakeRepo, keys: Keys, rings: Keyrings, releaser_trusted: bool
) -> Team:
    releaser = rings.member("releaser", keys.trusted)
    colleague = rings.member("colleague", keys.other)
    signers = {"colleague": (keys.other, ["*"], ["*"])}
    if releaser_trusted:
        signers["releaser"] = (keys.trusted, ["*"], ["*"])
    seed = make_repo({"README.md": "hello\n"}, name="seed")
    commit_policy(seed, policy_text(signers), sign_with=keys.other)
    bare = tmp_path / "remote.git"
    git(tmp_path, "clone", "-q", "--bare", str(seed), str(bare))
    start = Team(tmp_path, bare, releaser, colleague, seed, seed)
    return Team(
        tmp_path,
        bare,
        releaser,
        colleague,
        start.clone("a", releaser),
        start.clone("b", colleague),
    )


@pytest.fixture
def team(tmp_path: Path, make_repo: MakeRepo, keys: Keys, rings: Keyrings) -> Team:
    """Both the releaser and the colleague are in the committed policy."""
    return make_team(tmp_path, make_repo, keys, rings, releaser_trusted=True)


@pytest.fixture
def newcomer(tmp_path: Path, make_repo: MakeRepo, keys: Keys, rings: Keyrings) -> Team:
    """The committed policy lists the colleague only: the releaser, new to the team,
    signs snapshots before anyone has added their key."""
    return make_team(tmp_path, make_repo, keys, rings, releaser_trusted=False)


def welcome(cli: Cli, team: Team, *options: str) -> None:
    """The colleague adds the releaser's key to the policy (every operation, every
    environment unless `options` say otherwise) and pushes it; the releaser pulls it."""
    add_to_policy(cli, team.b, team.releaser, *(options or ("-o", "*")))
    git(team.a, "pull", "-q", "--ff-only")


def raw_note(repo: Path, ident: str) -> str:
    """Return the note of a snapshot as stock `git notes` prints it."""
    return git(repo, "notes", "--ref=govsnap", "show", f"refs/govsnap/snapshots/{ident}")


def tag_of(repo: Path, ident: str) -> str:
    return git(repo, "rev-parse", f"refs/govsnap/snapshots/{ident}").strip()


def notes_on(repo: Path) -> set[str]:
    """Return the objects that carry a govsnap note (stock `git notes list`)."""
    if not git(repo, "for-each-ref", "refs/notes/govsnap").strip():
        return set()
    return {line.split()[1] for line in git(repo, "notes", "--ref=govsnap", "list").splitlines()}


def test_fetch_before_the_key_then_after_it_loses_no_note(newcomer: Team, cli: Cli) -> None:
    team = newcomer
    ids = [create_snapshot(cli, team.a, "-l", f"r{n}") for n in range(3)]
    run_ok(cli, team.a, "push")

    refused = cli(team.b, "fetch", "--json")
    assert refused.code == 1
    report = json.loads(refused.out)
    assert report["added"] == []
    assert {s["status"] for s in report["snapshots"]} == {"unverified"}
    key = team.releaser.fingerprint
    fix = f"govsnap trust add-signer NAME --key {key}, then approve and commit the policy"
    missing = f"no public key for {key} in refs/heads/main:.govsnap/trust.toml (add it: {fix})"
    assert all(missing in s["detail"] for s in report["snapshots"]), report["snapshots"]
    assert report["notes_kept_aside"] == 3
    # The audit entries the releaser signed are not joined either, for the same reason.
    assert report["audit"] == "refused" and f"(to trust it: {fix})" in report["audit_detail"]
    # On a terminal every refusal is one line, and each names the fix.
    plain = cli(team.b, "fetch")
    assert plain.code == 1
    lines = plain.err.splitlines()
    assert len(lines) == 4 and all(line.startswith("govsnap: ") for line in lines), lines
    assert all("govsnap trust add-signer NAME --key" in line for line in lines), lines
    # Nothing is half-merged: every note the server has is kept here, byte for byte,
    # though no snapshot of this clone carries it yet; doctor sees nothing orphaned.
    assert snapshot_ids(team.b) == []
    assert notes_on(team.b) >= notes_on(team.bare) >= {tag_of(team.a, i) for i in ids}
    for ident in ids:
        tag = tag_of(team.a, ident)
        assert git(team.b, "notes", "--ref=govsnap", "show", tag) == raw_note(team.a, ident)
    run_ok(cli, team.b, "doctor")

    # The policy is fixed: the colleague adds the releaser's key (trust add-signer),
    # approves the change and pushes it. The remote's snapshots, notes and audit trail
    # have not changed since the first fetch.
    shared = git(team.bare, "for-each-ref", "refs/govsnap/", "refs/notes/")
    welcome(cli, team)
    assert git(team.bare, "for-each-ref", "refs/govsnap/", "refs/notes/") == shared
    adopted = json.loads(run_ok(cli, team.b, "fetch", "--json"))
    assert sorted(adopted["added"]) == sorted(ids)
    assert {s["note"] for s in adopted["snapshots"]} == {"remote"}
    assert adopted["audit"] == "joined"
    assert snapshot_ids(team.b) == sorted(ids)
    for ident in ids:
        # Byte for byte the releaser's note: nothing rebuilt, nothing lost.
        assert raw_note(team.b, ident) == raw_note(team.a, ident)
    listed = json.loads(run_ok(cli, team.b, "list", "--json"))
    assert all(isinstance(s["note"].get("files"), int) for s in listed)
    run_ok(cli, team.b, "verify", "--all")
    run_ok(cli, team.b, "audit", "verify")
    git(team.b, "fsck", "--full", "--no-progress")
    # Stock git agrees, with nothing but the public keys the committed policy carries.
    verify_tags_with_policy_keys(team.b, ids)

    # Later snapshots and note changes arrive as usual: a pin (the releaser may pin now)
    # and a verification result.
    ids.append(create_snapshot(cli, team.a, "-l", "r3"))
    run_ok(cli, team.a, "pin", ids[0])
    run_ok(cli, team.a, "verify", ids[1])
    run_ok(cli, team.a, "push")
    later = json.loads(run_ok(cli, team.b, "fetch", "--json"))
    assert later["added"] == [ids[3]]
    assert raw_note(team.b, ids[3]) == raw_note(team.a, ids[3])
    assert json.loads(raw_note(team.b, ids[0]))["pinned"] is True
    assert json.loads(raw_note(team.b, ids[1]))["verification"]["verdict"] == "pass"


def verify_tags_with_policy_keys(repo: Path, ids: list[str]) -> None:
    """Check each snapshot tag with stock `git verify-tag`, in a GnuPG home holding only
    the public keys the committed trust policy carries."""
    policy = tomllib.loads(git(repo, "show", "refs/heads/main:.govsnap/trust.toml"))
    home = tempfile.mkdtemp(prefix="gp")
    try:
        armored = "".join(s["public_key"] for s in policy["signers"].values())
        subprocess.run(
            ["gpg", "--homedir", home, "--batch", "--import"],
            input=armored.encode(),
            capture_output=True,
            check=True,
        )
        for ident in ids:
            proc = subprocess.run(
                ["git", "verify-tag", f"refs/govsnap/snapshots/{ident}"],
                cwd=repo,
                env={**os.environ, "GNUPGHOME": home},
                capture_output=True,
                check=False,
            )
            assert proc.returncode == 0, proc.stderr.decode()
    finally:
        subprocess.run(["gpgconf", "--homedir", home, "--kill", "all"], check=False)
        shutil.rmtree(home, ignore_errors=True)


def drop_notes_on_server(bare: Path, tags: set[str]) -> None:
    """Move the server's notes ref to a new commit without the notes on `tags` (what an
    admin, or a bad merge elsewhere, could do)."""
    listed = git(bare, "notes", "--ref=govsnap", "list").splitlines()
    kept = [line.split() for line in listed if line.split()[1] not in tags]
    tree = git(bare, "mktree", input_text="".join(f"100644 blob {b}\t{o}\n" for b, o in kept))
    commit = git(bare, "commit-tree", "-m", "notes rewritten", tree.strip()).strip()
    git(bare, "update-ref", "refs/notes/govsnap", commit)


def test_a_refused_snapshots_note_kept_here_is_adopted_when_the_remote_lost_it(
    newcomer: Team, cli: Cli
) -> None:
    team = newcomer
    ident = create_snapshot(cli, team.a, "-m", "made before the policy had the key")
    run_ok(cli, team.a, "push")
    assert cli(team.b, "fetch").code == 1
    drop_notes_on_server(team.bare, {tag_of(team.a, ident)})

    welcome(cli, team)
    fetched = cli(team.b, "fetch", "--json")
    # The server's notes history was rewritten under what this clone saw: said, loudly;
    # the snapshot is added all the same, with the note this clone kept.
    assert fetched.code == 1 and "the notes history of origin was rewritten" in fetched.err
    report = json.loads(fetched.out)
    [added] = report["snapshots"]
    assert (added["id"], added["status"], added["note"]) == (ident, "added", "kept")
    assert raw_note(team.b, ident) == raw_note(team.a, ident)
    run_ok(cli, team.b, "verify", ident)


def test_a_snapshot_whose_note_is_nowhere_is_added_with_a_rebuilt_note(
    team: Team, cli: Cli
) -> None:
    ident = create_snapshot(cli, team.a, "-l", "r1")
    run_ok(cli, team.a, "push")
    drop_notes_on_server(team.bare, {tag_of(team.a, ident)})

    report = json.loads(run_ok(cli, team.b, "fetch", "--json"))
    assert [(s["id"], s["note"]) for s in report["snapshots"]] == [(ident, "rebuilt")]
    note = json.loads(raw_note(team.b, ident))
    original = json.loads(raw_note(team.a, ident))
    assert note["rebuilt_by"] == "govsnap fetch"
    assert {k: note[k] for k in ("digest", "files", "bytes", "labels", "signature")} == {
        k: original[k] for k in ("digest", "files", "bytes", "labels", "signature")
    }
    run_ok(cli, team.b, "verify", ident)


def test_a_partly_refused_fetch_adds_the_good_with_notes_and_keeps_the_rest(
    team: Team, cli: Cli
) -> None:
    good = create_snapshot(cli, team.a, "-l", "good")
    unsigned = create_snapshot(cli, team.a, "--unsigned", "-m", "nobody signed this")
    run_ok(cli, team.a, "push")

    result = cli(team.b, "fetch", "--json")
    assert result.code == 1
    report = json.loads(result.out)
    assert report["added"] == [good] and report["notes_kept_aside"] == 1
    assert raw_note(team.b, good) == raw_note(team.a, good)
    assert notes_on(team.b) == {tag_of(team.a, good), tag_of(team.a, unsigned)}
    # Pushing what this clone has is a fast-forward for the server, and loses nothing.
    before = notes_on(team.bare)
    run_ok(cli, team.b, "push")
    assert notes_on(team.bare) == before
    # Adopting the refused one on purpose brings its note along.
    forced = json.loads(run_ok(cli, team.b, "fetch", "--no-verify", "--json"))
    assert forced["added"] == [unsigned]
    assert raw_note(team.b, unsigned) == raw_note(team.a, unsigned)


def test_a_clone_whose_snapshots_lost_their_notes_gets_them_back(team: Team, cli: Cli) -> None:
    ids = [create_snapshot(cli, team.a, "-l", f"r{n}") for n in range(2)]
    run_ok(cli, team.a, "pin", ids[0])
    run_ok(cli, team.a, "push")
    run_ok(cli, team.b, "fetch")
    expected = {ident: raw_note(team.a, ident) for ident in ids}

    # The state govsnap 0.1 left behind: the snapshots, and notes that hold the remote's
    # notes commit in their history but no note on them.
    tags = [tag_of(team.b, ident) for ident in ids]
    git(team.b, "notes", "--ref=govsnap", "remove", *tags)
    doctor = json.loads(cli(team.b, "doctor", "--json").out)
    fixes = {f["fix"] for f in doctor["findings"] if f["kind"] == "missing-note"}
    assert fixes == {"recover the note fetched into refs/govsnap-remote/origin/notes"}
    run_ok(cli, team.b, "doctor", "--fix")
    assert {ident: raw_note(team.b, ident) for ident in ids} == expected
    run_ok(cli, team.b, "verify", "--all")

    # A fetch heals the same state too, even though the remote has nothing new.
    git(team.b, "notes", "--ref=govsnap", "remove", *tags)
    report = json.loads(run_ok(cli, team.b, "fetch", "--json"))
    assert report["added"] == [] and report["notes"] == "merged"
    assert {ident: raw_note(team.b, ident) for ident in ids} == expected


def test_doctor_rebuilds_when_the_fetched_note_disagrees_with_the_signature(
    team: Team, cli: Cli
) -> None:
    ident = create_snapshot(cli, team.a, "-l", "honest")
    run_ok(cli, team.a, "push")
    run_ok(cli, team.b, "fetch")
    tag = tag_of(team.a, ident)
    forged = {**json.loads(raw_note(team.a, ident)), "labels": ["forged"]}
    # Edit the remote-tracking notes as a tampered server would have them (stock git
    # edits notes only under refs/notes/, so through a scratch ref).
    tracking = "refs/govsnap-remote/origin/notes"
    git(team.b, "update-ref", "refs/notes/scratch", tracking)
    git(team.b, "notes", "--ref=scratch", "add", "-f", "-m", json.dumps(forged), tag)
    git(team.b, "update-ref", tracking, "refs/notes/scratch")
    git(team.b, "update-ref", "-d", "refs/notes/scratch")
    git(team.b, "update-ref", "-d", "refs/notes/govsnap")

    run_ok(cli, team.b, "doctor", "--fix")
    note = json.loads(raw_note(team.b, ident))
    assert note["labels"] == ["honest"] and note["rebuilt_by"] == "govsnap doctor"


def test_a_clone_that_refused_a_snapshot_does_not_strip_its_note_from_the_server(
    newcomer: Team, cli: Cli
) -> None:
    team = newcomer
    ident = create_snapshot(cli, team.a, "-e", "production", "-l", "r1")
    run_ok(cli, team.a, "push")
    expected = raw_note(team.a, ident)
    server = git(team.bare, "for-each-ref", "refs/govsnap/", "refs/notes/")

    # The colleague shares a snapshot of their own while the policy does not carry the
    # releaser's key: push merges the server's trail first, refuses to build on entries
    # signed by a key the policy does not know, and sends nothing, saying how to fix it.
    own = create_snapshot(cli, team.b, "-l", "colleague")
    pushed = cli(team.b, "push")
    assert pushed.code == 1
    assert pushed.err.splitlines()[-1].startswith("govsnap: error: the audit trail of origin")
    assert f"govsnap trust add-signer NAME --key {team.releaser.fingerprint}" in pushed.err
    assert git(team.bare, "for-each-ref", "refs/govsnap/", "refs/notes/") == server

    # The policy now carries the key, but trusts the releaser for staging only: their
    # production snapshot is still refused, their trail joined, and the colleague's push
    # goes through with the merged notes, which keep the refused snapshot's.
    welcome(cli, team, "-e", "staging", "-o", "create")
    pushed = cli(team.b, "push", "--json")
    assert pushed.code == 1  # the merge's fetch refused the releaser's snapshot
    [refused] = json.loads(pushed.out)["fetched"]["snapshots"]
    assert (
        refused["id"] == ident and "not trusted for environment 'production'" in (refused["detail"])
    )
    assert own in snapshot_ids(team.bare)
    assert git(team.bare, "notes", "--ref=govsnap", "show", tag_of(team.a, ident)) == expected

    # So anyone who can check it, once the policy trusts it, gets the releaser's note,
    # not a rebuilt one.
    run_ok(cli, team.b, "trust", "remove-signer", "releaser")
    add_to_policy(cli, team.b, team.releaser, "-o", "*")
    c = team.clone("c", team.colleague)
    report = json.loads(run_ok(cli, c, "fetch", "--json"))
    assert [s["note"] for s in report["snapshots"] if s["id"] == ident] == ["remote"]
    assert raw_note(c, ident) == expected
