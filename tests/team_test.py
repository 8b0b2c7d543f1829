"""Issue 14's team: a bare remote running govsnap's pre-receive hook, a release bot and two
engineers, each signing with their own key from a GnuPG home that holds that key only,
and a committed trust policy carrying the three public keys. Nobody imports anybody's
key: the process's own GNUPGHOME is empty throughout, so nothing can be checked against
a keyring by accident, on the clones or on the server.

They create, push and fetch in interleaved order; a fourth engineer, whose key the
policy does not carry, is refused everywhere (local verify, fetch, the server) with one
line naming the fix. Afterwards every clone lists the same snapshots, each with its note,
`verify --all` and `audit verify` pass in every clone, and a fresh clone with an empty
GnuPG home verifies them all."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import (
    Cli,
    Keys,
    create_snapshot,
    git,
    govsnap_bin,
    run_ok,
    snapshot_ids,
    write_files,
)
from tests.helpers.team import Keyrings, Member, add_to_policy, keyrings, pin_trust, sign_as


@dataclass(frozen=True)
class Team:
    root: Path
    server: Path
    rings: Keyrings
    bot: Member
    alice: Member  # keeps the trust policy: her key is the root of trust
    bob: Member
    clones: dict[str, Path]  # member name -> their clone

    def clone(self, member: Member, source: Path | None = None) -> Path:
        """Return `member`'s new clone of the server, signing as them, trust pinned."""
        path = self.root / member.name
        git(self.root, "clone", "-q", str(source or self.server), str(path))
        sign_as(path, member)
        pin_trust(path, self.alice)
        return path


@pytest.fixture
def team(tmp_path: Path, cli: Cli, keys: Keys, monkeypatch: pytest.MonkeyPatch) -> Iterator[Team]:
    with keyrings() as rings:
        bot = rings.member("release-bot", keys.trusted)
        alice = rings.member("alice", keys.other)
        bob = rings.generate("bob")
        # From here on the process's own keyring is an empty one: the session's holds
        # public keys this test must not lean on.
        empty = Path(tempfile.mkdtemp(prefix="ge"))
        empty.chmod(0o700)
        monkeypatch.setenv("GNUPGHOME", str(empty))
        server = tmp_path / "server.git"
        git(tmp_path, "init", "-q", "--bare", "-b", "main", str(server))
        git(server, "config", "govsnap.trustRef", "refs/heads/main")
        git(server, "config", "govsnap.trustAnchor", alice.fingerprint)
        run_ok(cli, server, "hooks", "install", "--server")
        made = Team(tmp_path, server, rings, bot, alice, bob, {})

        # alice sets the policy up as governance.md's bootstrap says; the bot and bob
        # send her their exported public keys.
        keeper = made.clone(alice)
        write_files(keeper, {"app.py": "print('v1')\n"})
        git(keeper, "add", "-A")
        git(keeper, "commit", "-q", "-m", "app")
        run_ok(cli, keeper, "trust", "init", "alice")
        add_to_policy(
            cli, keeper, bot, "-e", "production", "-e", "staging", "-o", "create", push=False
        )
        add_to_policy(cli, keeper, bob, "-e", "staging", "-e", "production", "-o", "create,pin")
        clones = {"alice": keeper, "release-bot": made.clone(bot), "bob": made.clone(bob)}
        try:
            yield Team(tmp_path, server, rings, bot, alice, bob, clones)
        finally:
            subprocess.run(["gpgconf", "--homedir", str(empty), "--kill", "all"], check=False)
            shutil.rmtree(empty, ignore_errors=True)


def listed(cli: Cli, repo: Path) -> list[str]:
    """Return the ids `govsnap list` shows, newest first."""
    return [s["id"] for s in json.loads(run_ok(cli, repo, "list", "--json"))["snapshots"]]


def annotated(repo: Path) -> set[str]:
    """Return the objects carrying a govsnap note, as stock `git notes list` shows them."""
    return {line.split()[1] for line in git(repo, "notes", "--ref=govsnap", "list").splitlines()}


def tag_of(repo: Path, ident: str) -> str:
    return git(repo, "rev-parse", f"refs/govsnap/snapshots/{ident}").strip()


def tags(repo: Path) -> set[str]:
    """Return the tag objects of the snapshot refs, as stock git lists them."""
    out = git(repo, "for-each-ref", "--format=%(objectname)", "refs/govsnap/snapshots/")
    return set(out.split())


def keyring_fingerprints(home: Path) -> list[str]:
    """Return the fingerprints of the primary keys a GnuPG home holds."""
    out = subprocess.run(
        ["gpg", "--homedir", str(home), "--batch", "--with-colons", "--list-keys"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    lines = out.splitlines()
    return [
        lines[i + 1].split(":")[9]
        for i, line in enumerate(lines)
        if line.startswith("pub:") and i + 1 < len(lines) and lines[i + 1].startswith("fpr:")
    ]


def test_a_team_shares_snapshots_with_keys_only_the_policy_carries(
    team: Team, cli: Cli, tmp_path: Path
) -> None:
    bot, alice, bob = (team.clones[n] for n in ("release-bot", "alice", "bob"))

    # Interleaved: each creates, pushes and fetches while the others do.
    r1 = create_snapshot(cli, bot, "--from", "main", "-e", "production", "-t", "deploy", "-l", "r1")
    run_ok(cli, bot, "push")
    a1 = create_snapshot(cli, alice, "-e", "staging", "-l", "a1")
    run_ok(cli, alice, "push")  # merges the bot's notes and trail first
    b1 = create_snapshot(cli, bob, "-e", "staging", "-l", "b1")  # before fetching anything
    run_ok(cli, bob, "fetch")
    run_ok(cli, bob, "pin", r1)
    run_ok(cli, bob, "push")
    r2 = create_snapshot(cli, bot, "--from", "main", "-e", "production", "-t", "deploy", "-l", "r2")
    run_ok(cli, bot, "push")
    run_ok(cli, alice, "verify", r1)
    run_ok(cli, alice, "push")
    for clone in (bot, alice, bob):
        run_ok(cli, clone, "fetch")
    ids = sorted([r1, a1, b1, r2])
    assert sorted(snapshot_ids(team.server)) == ids
    # Bob's pin and alice's verification of r1 reached every clone, in r1's note.
    for name, clone in team.clones.items():
        note = json.loads(git(clone, "notes", "--ref=govsnap", "show", tag_of(clone, r1)))
        assert note["pinned"] is True and note["verification"]["verdict"] == "pass", name

    # mallory has push access and a key of her own, which the policy does not carry.
    mallory_member = team.rings.generate("mallory")
    mallory = team.clone(mallory_member)
    m1 = create_snapshot(cli, mallory, "-e", "production", "-l", "m1")
    fix = f"govsnap trust add-signer NAME --key {mallory_member.fingerprint}"
    # Refused by her own clone's verify...
    verified = cli(mallory, "verify", m1)
    assert verified.code == 1
    [why] = [line for line in verified.out.splitlines() if "signature:" in line]
    assert f"no public key for {mallory_member.fingerprint}" in why and fix in why
    # ...by the server...
    pushed = cli(mallory, "push")
    assert pushed.code == 1
    refusals = [line for line in pushed.err.splitlines() if "REFUSED" in line]
    assert refusals and all(fix in line for line in refusals), pushed.err
    assert sorted(snapshot_ids(team.server)) == ids
    # ...and by every clone fetching from where she could push: a fork without the hook.
    fork = tmp_path / "fork.git"
    git(tmp_path, "clone", "-q", "--mirror", str(team.server), str(fork))
    git(mallory, "remote", "add", "fork", str(fork))
    run_ok(cli, mallory, "push", "fork")
    git(bob, "remote", "add", "fork", str(fork))
    fetched = cli(bob, "fetch", "fork")
    assert fetched.code == 1
    problems = fetched.err.splitlines()
    assert problems[0].startswith(f"govsnap: unverified: {m1}: signature: cannot check")
    assert problems[-1].startswith("govsnap: error: the audit trail of fork holds entries")
    assert all(fix in line for line in problems), problems

    # Every clone of the team lists the same snapshots, each with its note, and they all
    # verify, trail included.
    for name, clone in team.clones.items():
        assert sorted(listed(cli, clone)) == ids, name
        assert tags(clone) <= annotated(clone), name
        assert "PASS: 4 snapshot(s) verified" in run_ok(cli, clone, "verify", "--all"), name
        run_ok(cli, clone, "audit", "verify")
    # No keyring gained a key: each holds its owner's only.
    for member in (team.bot, team.alice, team.bob):
        assert keyring_fingerprints(member.home) == [member.fingerprint]

    # A fresh clone, as the installed command run with an empty GnuPG home and no key of
    # its own, fetches and verifies everything from the keys the policy carries.
    fresh = tmp_path / "fresh"
    git(tmp_path, "clone", "-q", str(team.server), str(fresh))
    pin_trust(fresh, team.alice)
    nothing = Path(tempfile.mkdtemp(prefix="gn"))
    try:
        env = {**os.environ, "GNUPGHOME": str(nothing)}
        for args in (["fetch"], ["verify", "--all"]):
            proc = subprocess.run(
                [govsnap_bin(), *args], cwd=fresh, env=env, capture_output=True, text=True
            )
            assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
        assert "PASS: 4 snapshot(s) verified" in proc.stdout
        assert keyring_fingerprints(nothing) == []
    finally:
        subprocess.run(["gpgconf", "--homedir", str(nothing), "--kill", "all"], check=False)
        shutil.rmtree(nothing, ignore_errors=True)
    assert sorted(snapshot_ids(fresh)) == ids and tags(fresh) <= annotated(fresh)
