"""The red team's findings F1-F9 on the trust boundary, each played as the attacker played
it (/work/team/rt-trust/findings/): real keys in separate keyrings, a bare server running
govsnap's pre-receive hook, a bare "forge" running none (github.com), and one clone per
actor. lead: the anchor, every operation; bot: create in production and staging; eng:
staging only; atk: a key the policy does not carry.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.helpers import Cli, SSHKey, git, snapshot_ids
from tests.helpers.team import Keyrings, Member, keyrings, make_key_available, sign_as

DAY = 86400
EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
AUDIT = "refs/govsnap/audit"
SNAP = "refs/govsnap/snapshots/"
MAIN = "refs/heads/main"


@dataclass
class World:
    """A team: its members' keys, a hooked server, a hookless forge, and clones."""

    root: Path
    rings: Keyrings
    cli: Cli
    members: dict[str, Member]
    server: Path
    forge: Path
    clones: dict[str, Path] = field(default_factory=dict)

    def clone(self, name: str, remote: Path | None = None) -> Path:
        """Return `name`'s clone of the server (or `remote`), signing with their key."""
        path = self.root / name
        git(self.root, "clone", "-q", str(remote or self.server), str(path))
        git(path, "remote", "add", "forge", str(self.forge))
        self.configure(path, self.members[name])
        self.clones[name] = path
        return path

    def configure(self, path: Path, member: Member) -> None:
        sign_as(path, member)
        git(path, "config", "govsnap.trustAnchor", self.members["lead"].fingerprint)
        git(path, "config", "govsnap.trustRef", MAIN)


def ok(cli: Cli, repo: Path, *args: str) -> str:
    result = cli(repo, *args)
    assert result.code == 0, (args, result.out, result.err)
    return result.out


def create(cli: Cli, repo: Path, *args: str) -> str:
    made = cli(repo, "create", "--from", "HEAD", "--json", *args)
    assert made.code == 0, made.err
    return str(json.loads(made.out)["snapshot"]["id"])


def run(
    repo: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run stock git, whatever it answers."""
    return subprocess.run(
        ["git", *args], cwd=repo, capture_output=True, text=True, env=env, check=False
    )


def commit_as(path: Path, message: str, when: int | None = None) -> None:
    env = {**os.environ}
    if when is not None:
        env["GIT_COMMITTER_DATE"] = env["GIT_AUTHOR_DATE"] = f"@{when} +0000"
    done = run(path, "commit", "-q", "-m", message, env=env)
    assert done.returncode == 0, done.stderr


def make_world(
    root: Path,
    rings: Keyrings,
    cli: Cli,
    *,
    eng_ops: Sequence[str] = ("create", "rollback", "prune", "pin"),
    eng_expired: bool = False,
    committed_at: int | None = None,
) -> World:
    """Build the red team's setup: keys, a policy approved by the anchor key, the server
    (hook, anchor, policy ref) and the forge holding main, lead's clone."""
    now = int(time.time())
    members = {name: rings.generate(name) for name in ("lead", "bot", "atk")}
    # eng's key was made three days ago, valid for two: retired yesterday, as
    # governance.md "Rotating a key" says.
    members["eng"] = (
        rings.generate("eng", created=now - 3 * DAY, expire="2d")
        if eng_expired
        else rings.generate("eng")
    )
    server, forge = root / "server.git", root / "forge.git"
    git(root, "init", "-q", "--bare", "-b", "main", str(server))
    # As hooks.md has it (and as the red team set it up): the hook, then the settings.
    ok(cli, server, "hooks", "install", "--server")
    git(server, "config", "govsnap.trustAnchor", members["lead"].fingerprint)
    git(server, "config", "govsnap.trustRef", MAIN)
    git(root, "init", "-q", "--bare", "-b", "main", str(forge))
    world = World(root, rings, cli, members, server, forge)
    lead = root / "lead"
    git(root, "init", "-q", "-b", "main", str(lead))
    world.configure(lead, members["lead"])
    world.clones["lead"] = lead
    (lead / "app.txt").write_text("v1\n")
    git(lead, "add", "-A")
    commit_as(lead, "v1", committed_at)
    for name in ("bot", "eng"):
        make_key_available(lead, members["lead"], members[name])
    ok(cli, lead, "trust", "init", "lead")
    ok(
        cli,
        lead,
        "trust",
        "add-signer",
        "bot",
        "--key",
        members["bot"].fingerprint,
        "-e",
        "production",
        "-e",
        "staging",
        "-o",
        "create",
    )
    eng_args = [a for op in eng_ops for a in ("-o", op)]
    ok(
        cli,
        lead,
        "trust",
        "add-signer",
        "eng",
        "--key",
        members["eng"].fingerprint,
        "-e",
        "staging",
        *eng_args,
    )
    env = {**os.environ}
    if committed_at is not None:
        env["GIT_COMMITTER_DATE"] = f"@{committed_at} +0000"
    approved = subprocess.run(
        ["git", "-C", str(lead), "config", "--get", "govsnap.signingKey"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert approved.stdout.strip() == members["lead"].fingerprint
    ok(cli, lead, "trust", "approve")
    git(lead, "add", "-A")
    commit_as(lead, "govsnap: trust policy", committed_at)
    git(lead, "remote", "add", "origin", str(server))
    git(lead, "remote", "add", "forge", str(forge))
    for remote in ("origin", "forge"):
        pushed = run(lead, "push", "-q", remote, "main")
        assert pushed.returncode == 0, pushed.stderr
    return world


@pytest.fixture
def rings() -> Iterator[Keyrings]:
    with keyrings() as made:
        yield made


def gpg_at(root: Path, when: int) -> Path:
    """Return a gpg program that signs as if it were `when` (gpg --faked-system-time)."""
    path = root / f"gpg-at-{when}"
    path.write_text(f'#!/bin/sh\nexec gpg --faked-system-time={when}! "$@"\n')
    path.chmod(0o755)
    return path


def entry(
    world: World,
    clone: Path,
    signer: str,
    operation: str,
    ident: str,
    claimed: str,
    *,
    parent: str | None = None,
    when: int | None = None,
    signed_at: int | None = None,
    ssh: SSHKey | None = None,
) -> str:
    """Write, with stock git, an audit entry in exactly the shape govsnap writes, signed by
    `signer` (at the faked time `signed_at`), claiming `claimed` as the environment of
    snapshot `ident`; return its commit."""
    when = int(time.time()) if when is None else when
    arguments = (
        {"snapshot": ident}
        if operation == "unpin"
        else {"ids": [ident], "gc": False, "now": False, "purge": False}
    )
    body = {
        "operation": operation,
        "snapshots": [ident],
        "actor": {"name": signer, "email": f"{signer}@example.com"},
        "host": "vm",
        "time": when,
        "arguments": arguments,
        "result": "ok",
        "duration_seconds": 0.001,
        "environments": {ident: claimed},
    }
    message = f"{operation}: {ident}\n\n{json.dumps(body, indent=2, sort_keys=True)}\n"
    parent = parent or git(clone, "rev-parse", AUDIT).strip()
    member = world.members[signer]
    env = {
        **member.env(),
        "GIT_COMMITTER_DATE": f"@{when} +0000",
        "GIT_AUTHOR_DATE": f"@{when} +0000",
    }
    if ssh is not None:
        config = ["-c", "gpg.format=ssh", "-c", f"user.signingKey={ssh.private}"]
        sign = "-S"
    else:
        program = gpg_at(world.root, signed_at) if signed_at is not None else Path("gpg")
        config = ["-c", f"gpg.program={program}"]
        sign = f"-S{member.fingerprint}"
    made = subprocess.run(
        ["git", *config, "commit-tree", sign, "-p", parent, EMPTY_TREE],
        cwd=clone,
        input=message,
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    return made.stdout.strip()


def adopt(clone: Path, commit: str) -> None:
    """Put a hand-made entry on the clone's trail, as the attacker does."""
    git(clone, "update-ref", AUDIT, commit)
    git(clone, "update-ref", "refs/govsnap-verified/audit", commit)


def ids(bare: Path) -> set[str]:
    return set(snapshot_ids(bare))


# --- F1: an entry's claimed environment decides nothing ------------------------------------


def test_f1_a_prune_or_unpin_is_judged_in_the_environment_of_the_snapshots_tag(
    tmp_path: Path, rings: Keyrings, cli: Cli
) -> None:
    """eng may prune and pin in staging only. A hand-made, validly signed prune entry
    claiming "staging" for a production snapshot, and an unpin claiming the same, were
    accepted by the hook, push --prune and every clone."""
    world = make_world(tmp_path, rings, cli)
    lead, bot = world.clones["lead"], world.clone("bot")
    p1 = create(cli, bot, "-e", "production", "-l", "p1")
    p2 = create(cli, bot, "-e", "production", "-l", "p2")
    ok(cli, bot, "push")
    ok(cli, lead, "fetch")
    ok(cli, lead, "pin", p2)
    ok(cli, lead, "push")
    eng = world.clone("eng")
    ok(cli, eng, "fetch")
    prune = entry(world, eng, "eng", "prune", p1, "staging")
    adopt(eng, prune)
    git(eng, "update-ref", "-d", SNAP + p1)
    refused = cli(eng, "push", "--prune", "--yes")
    assert refused.code == 1
    assert "not trusted for environment 'production'" in refused.err, refused.err
    assert {p1, p2} <= ids(world.server)
    unpin = entry(world, eng, "eng", "unpin", p2, "staging", parent=prune)
    again = run(eng, "push", "origin", f"{unpin}:{AUDIT}")
    assert again.returncode != 0 and "not trusted for environment 'production'" in again.stderr
    # A forge runs no hook: there both entries and the deletion land...
    assert run(world.server, "push", "-q", "--mirror", str(world.forge)).returncode == 0
    landed = run(eng, "push", "forge", f"{unpin}:{AUDIT}", f":{SNAP}{p1}")
    assert landed.returncode == 0, landed.stderr
    # ...and every clone refuses to join them, nor does either decide anything there.
    fetched = cli(lead, "fetch", "forge")
    assert fetched.code == 1
    assert "is not trusted for environment 'production'" in fetched.err
    assert json.loads(ok(cli, lead, "show", p2, "--json"))["pinned"] is True
    adopt(eng, unpin)  # where the entries do land, they are flagged and decide nothing
    report = json.loads(cli(eng, "audit", "verify", "--json").out)
    unauthorised = [p for p in report["problems"] if p["kind"] == "unauthorised"]
    assert {p["commit"] for p in unauthorised} == {prune, unpin}
    dry = json.loads(cli(eng, "push", "forge", "--prune", "--dry-run", "--json").out)
    assert dry["deleted"] == [] and p1 not in dry["held_back"]


# --- F2: a prune of a pinned snapshot counts for nothing ------------------------------------


def test_f2_a_pinned_snapshot_is_pruned_only_after_an_authorised_unpin(
    tmp_path: Path, rings: Keyrings, cli: Cli
) -> None:
    """eng may prune in staging but not pin (nor unpin). A hand-made prune entry and
    push --prune deleted a snapshot lead had pinned: the hook and clients checked the
    prune right, never the pin state. Decisions now replay the chain in order."""
    world = make_world(tmp_path, rings, cli, eng_ops=("create", "rollback", "prune"))
    lead, bot = world.clones["lead"], world.clone("bot")
    s1 = create(cli, bot, "-e", "staging", "-l", "s1")
    create(cli, bot, "-e", "staging", "-l", "s2")
    ok(cli, bot, "push")
    ok(cli, lead, "fetch")
    ok(cli, lead, "pin", s1)
    ok(cli, lead, "push")
    eng = world.clone("eng")
    ok(cli, eng, "fetch")
    assert cli(eng, "unpin", s1).code == 1  # govsnap itself refuses, as documented
    early = entry(world, eng, "eng", "prune", s1, "staging")
    adopt(eng, early)
    git(eng, "update-ref", "-d", SNAP + s1)
    refused = run(eng, "push", "origin", f"{early}:{AUDIT}", f":{SNAP}{s1}")
    assert refused.returncode != 0
    assert "pinned then (no authorised unpin came first)" in refused.stderr, refused.stderr
    assert s1 in ids(world.server)
    # Nor does a clone act on it: push --prune holds back nothing and deletes nothing.
    dry = json.loads(ok(cli, eng, "push", "--prune", "--dry-run", "--json"))
    assert dry["deleted"] == [] and s1 not in dry["held_back"]
    # Once someone allowed to unpins it, a later prune counts; the early one never does.
    # Often in the same second as the early prune, on another copy of the chain: whatever
    # order the joined copies replay in, the early prune had the pin in its own past.
    ok(cli, lead, "unpin", s1)
    ok(cli, lead, "push")
    ok(cli, eng, "fetch")
    git(eng, "update-ref", SNAP + s1, git(world.server, "rev-parse", SNAP + s1).strip())
    ok(cli, eng, "prune", "--id", s1, "--yes", "--no-gc")
    ok(cli, eng, "push", "--prune", "--yes")
    assert s1 not in ids(world.server)
    undecided = json.loads(cli(eng, "audit", "verify", "--json").out)["undecided"]
    assert any(early[:12] in line and "pinned then" in line for line in undecided)


# --- F3: an expired key cannot back-date audit entries ---------------------------------------


def test_f3_back_dated_entries_of_an_expired_key_are_refused_everywhere(
    tmp_path: Path, rings: Keyrings, cli: Cli
) -> None:
    """eng's key expired yesterday. (A) an entry dated now, its signature faked to before
    the expiry; (B) an entry and signature both dated before the expiry, two days older
    than its parent: the hook deleted both snapshots, fetch joined them."""
    world = make_world(tmp_path, rings, cli, eng_expired=True)
    bot = world.clone("bot")
    s1 = create(cli, bot, "-e", "staging", "-l", "s1")
    s2 = create(cli, bot, "-e", "staging", "-l", "s2")
    ok(cli, bot, "push")
    assert run(world.server, "push", "-q", "--mirror", str(world.forge)).returncode == 0
    eng = world.clone("eng")
    git(eng, "fetch", "-q", "origin", f"+{AUDIT}:{AUDIT}")
    before = int(time.time()) - 2 * DAY + 3600  # when the key was still valid
    now_entry = entry(world, eng, "eng", "prune", s1, "staging", signed_at=before)
    old_entry = entry(world, eng, "eng", "prune", s2, "staging", when=before, signed_at=before)
    for forged, ident, why in (
        (now_entry, s1, "a back-dated signature"),
        (old_entry, s2, "older than its parent"),
    ):
        refused = run(eng, "push", "origin", f"{forged}:{AUDIT}", f":{SNAP}{ident}")
        assert refused.returncode != 0 and why in refused.stderr, refused.stderr
        # The forge takes them; a clone that fetches refuses to join them.
        assert (
            run(eng, "push", "-f", "forge", f"{forged}:{AUDIT}", f":{SNAP}{ident}").returncode == 0
        )
        fetched = cli(bot, "fetch", "forge")
        assert fetched.code == 1 and why in fetched.err, fetched.err
        assert ident in snapshot_ids(bot)
    assert ids(world.server) >= {s1, s2}
    adopt(eng, old_entry)
    problems = json.loads(cli(eng, "audit", "verify", "--json").out)["problems"]
    assert {p["kind"] for p in problems if p["commit"] == old_entry} >= {"time"}


def test_f3_the_server_judges_a_key_when_the_entry_arrives(
    tmp_path: Path, rings: Keyrings, cli: Cli, ssh_key: SSHKey
) -> None:
    """On a trail whose newest entry predates the expiry, a back-dated entry holds up
    against every rule a clone can check: only the server's own clock tells. The same
    for an SSH key retired with valid-before."""
    now = int(time.time())
    world = make_world(tmp_path, rings, cli, eng_expired=True, committed_at=now - 3 * DAY)
    lead, bot = world.clones["lead"], world.clone("bot")
    os.environ["GIT_COMMITTER_DATE"] = f"@{now - int(2.5 * DAY)} +0000"
    try:
        s1 = create(cli, bot, "-e", "staging", "-l", "s1")
    finally:
        del os.environ["GIT_COMMITTER_DATE"]
    ok(cli, bot, "push")
    assert run(world.server, "push", "-q", "--mirror", str(world.forge)).returncode == 0
    eng = world.clone("eng")
    git(eng, "fetch", "-q", "origin", f"+{AUDIT}:{AUDIT}")
    then = now - 2 * DAY + 3600
    forged = entry(world, eng, "eng", "prune", s1, "staging", when=then, signed_at=then)
    refused = run(eng, "push", "origin", f"{forged}:{AUDIT}", f":{SNAP}{s1}")
    assert refused.returncode != 0
    assert "had expired" in refused.stderr and "when this server received" in refused.stderr
    assert s1 in ids(world.server)
    # A clone cannot tell (governance.md, "Time"): the entry is joined from the forge.
    assert run(eng, "push", "forge", f"{forged}:{AUDIT}").returncode == 0
    assert cli(lead, "fetch", "forge").code == 0
    # SSH: a key retired with valid-before yesterday; an entry dated the day before.
    valid_before = time.strftime("%Y%m%d", time.gmtime(now - DAY))
    line = f'ssh@example.com valid-before="{valid_before}" {ssh_key.public.read_text().strip()}'
    policy = lead / ".govsnap" / "trust.toml"
    text = policy.read_text().replace("version = 1", "version = 2", 1)
    table = f"\n[signers.retired]\nssh = '{line}'\nenvironments = ['*']\noperations = ['*']\n"
    policy.write_text(text + table)
    ok(cli, lead, "trust", "approve")
    git(lead, "add", "-A")
    commit_as(lead, "a retired SSH signer", now - 2 * DAY)
    pushed = run(lead, "push", "origin", "main")
    assert pushed.returncode == 0, pushed.stderr
    tip = git(world.server, "rev-parse", AUDIT).strip()
    ssh_entry = entry(world, eng, "eng", "prune", s1, "staging", when=then, ssh=ssh_key, parent=tip)
    refused = run(eng, "push", "origin", f"{ssh_entry}:{AUDIT}")
    assert refused.returncode != 0 and "when received" in refused.stderr, refused.stderr


# --- F4: an expired approver cannot back-date an approval -------------------------------------


def _add_mallory(world: World, clone: Path) -> None:
    """Edit the working-tree policy the way the attacker does: raise the version and
    grant the attacker's key every right."""
    atk = world.members["atk"]
    public = subprocess.run(
        ["gpg", "--homedir", str(atk.home), "--batch", "--armor", "--export", atk.fingerprint],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    policy = clone / ".govsnap" / "trust.toml"
    text = policy.read_text().replace("version = 1", "version = 2", 1)
    quote = "'" * 3
    policy.write_text(
        text + f'\n[signers.mallory]\nopenpgp = "{atk.fingerprint}"\nenvironments = ["*"]\n'
        f'operations = ["*"]\npublic_key = {quote}{public}{quote}\n'
    )


def _approve_at(world: World, cli: Cli, clone: Path, when: int) -> None:
    """`govsnap trust approve` by eng, with gpg and the clock set back to `when`."""
    git(clone, "config", "gpg.program", str(gpg_at(world.root, when)))
    os.environ["GIT_COMMITTER_DATE"] = f"@{when} +0000"
    try:
        for old in (clone / ".govsnap" / "approvals").iterdir():
            old.unlink()
        ok(cli, clone, "trust", "approve")
    finally:
        del os.environ["GIT_COMMITTER_DATE"]
        git(clone, "config", "--unset", "gpg.program")


def test_f4_an_approval_cannot_predate_the_version_it_changes(
    tmp_path: Path, rings: Keyrings, cli: Cli
) -> None:
    """eng approves policy changes; its key expired yesterday. It signs an approval dated
    two days ago of a change granting the attacker every right, on a policy committed
    today: the approval claims a time before the version it changes existed."""
    world = make_world(tmp_path, rings, cli, eng_ops=("create", "policy"), eng_expired=True)
    eng = world.clone("eng")
    _add_mallory(world, eng)
    _approve_at(world, cli, eng, int(time.time()) - 2 * DAY + 3600)
    git(eng, "add", "-A")
    git(eng, "commit", "-q", "-m", "routine: update trust policy")
    checked = cli(eng, "trust", "check")
    assert checked.code == 1
    assert "before the version it changes existed" in checked.err, checked.err
    pushed = run(eng, "push", "origin", "main")
    assert pushed.returncode != 0 and "REFUSED fast-forward of refs/heads/main" in pushed.stderr
    # The format of govsnap 0.1, a bare signature over the file's bytes, counts for nothing.
    data = (eng / ".govsnap" / "trust.toml").read_bytes()
    bare = subprocess.run(
        [
            "gpg",
            "--homedir",
            str(world.members["lead"].home),
            "--batch",
            "--armor",
            "--detach-sign",
            "-u",
            world.members["lead"].fingerprint,
        ],
        input=data,
        capture_output=True,
        check=True,
    ).stdout
    approval = eng / ".govsnap" / "approvals" / f"openpgp-{world.members['lead'].fingerprint}.sig"
    approval.write_bytes(bare)
    git(eng, "add", "-A")
    git(eng, "commit", "-q", "--amend", "--no-edit")
    bare_refused = cli(eng, "trust", "check").err
    assert (
        "with 0 of the 1 approval(s)" in bare_refused
        and "not an approval statement" in bare_refused
    )


def test_f4_what_a_clone_cannot_judge_it_says_and_the_server_refuses(
    tmp_path: Path, rings: Keyrings, cli: Cli
) -> None:
    """The version changed was committed before the key expired: an approval dated
    between the two holds up against every rule a clone can check. The clone says so;
    the server, judging the key when the change arrives, refuses it."""
    now = int(time.time())
    world = make_world(
        tmp_path,
        rings,
        cli,
        eng_ops=("create", "policy"),
        eng_expired=True,
        committed_at=now - 3 * DAY + 600,
    )
    eng = world.clone("eng")
    _add_mallory(world, eng)
    _approve_at(world, cli, eng, now - 2 * DAY + 3600)
    git(eng, "add", "-A")
    commit_as(eng, "routine: update trust policy", now - 2 * DAY + 3600)
    checked = cli(eng, "trust", "check")
    assert checked.code == 0, checked.err
    assert "a key that expired" in checked.err and "judged it when it arrived" in checked.err
    pushed = run(eng, "push", "origin", "main")
    assert pushed.returncode != 0
    assert "had expired" in pushed.stderr and "when this server received" in pushed.stderr
    assert git(world.server, "rev-parse", MAIN) != git(eng, "rev-parse", "HEAD")


# --- F5: a record of what was verified never grants trust -------------------------------------


def test_f5_a_verified_record_never_overrides_the_anchor(
    tmp_path: Path, rings: Keyrings, cli: Cli
) -> None:
    """A commit recorded under refs/govsnap-verified/policy/ was trusted as the root,
    overriding govsnap.trustAnchor: a hookless forge takes the ref, `git clone --mirror`
    copies it, a CI cache restores it."""
    world = make_world(tmp_path, rings, cli)
    atk = world.clone("atk")
    _add_mallory(world, atk)
    git(atk, "commit", "-qam", "docs: typo")  # no approval at all
    unapproved = git(atk, "rev-parse", "HEAD").strip()
    record = "refs/govsnap-verified/policy/refs/heads/main"
    git(atk, "update-ref", record, unapproved)
    checked = cli(atk, "trust", "check")
    assert checked.code == 1 and "with 0 of the 1 approval(s)" in checked.err
    mallory = create(cli, atk, "-e", "production")
    pushed = run(atk, "push", "forge", "main", f"{unapproved}:{record}", SNAP + mallory)
    assert pushed.returncode == 0, pushed.stderr  # a forge takes anything
    # The team moves to a self-hosted server: a mirror of the forge, with the hook.
    hosted = tmp_path / "hosted.git"
    git(tmp_path, "clone", "-q", "--mirror", str(world.forge), str(hosted))
    ok(cli, hosted, "hooks", "install", "--server")
    git(hosted, "config", "govsnap.trustAnchor", world.members["lead"].fingerprint)
    git(hosted, "config", "govsnap.trustRef", MAIN)
    assert cli(hosted, "trust", "check").code == 1
    again = create(cli, atk, "-e", "production", "-l", "again")
    refused = run(atk, "push", str(hosted), SNAP + again, f"{unapproved}:{record}-2")
    assert refused.returncode != 0
    assert "with 0 of the 1 approval(s)" in refused.stderr
    assert "this clone" not in refused.stderr and "update-ref -d" not in refused.stderr
    assert again not in ids(hosted)


# --- F6: a clone notices snapshots and notes a forge lost --------------------------------------


def test_f6_a_clone_that_looked_before_detects_deleted_snapshots_and_rewritten_notes(
    tmp_path: Path, rings: Keyrings, cli: Cli
) -> None:
    """On a hookless forge the attacker deletes a pinned snapshot's ref and force-pushes an
    unrelated notes history: the clone that fetched before said "ok": true."""
    world = make_world(tmp_path, rings, cli)
    lead, bot = world.clones["lead"], world.clone("bot")
    p1 = create(cli, bot, "-e", "production", "-l", "p1")
    p2 = create(cli, bot, "-e", "production", "-l", "p2")
    ok(cli, bot, "push", "forge")
    ok(cli, lead, "fetch", "forge")
    ok(cli, lead, "pin", p1)
    ok(cli, lead, "push", "forge")
    ok(cli, lead, "fetch", "forge")
    atk = world.clone("atk", world.forge)
    assert run(atk, "push", "origin", f":{SNAP}{p1}").returncode == 0
    unrelated = git(atk, "commit-tree", "-m", "x", EMPTY_TREE).strip()
    assert run(atk, "push", "-f", "origin", f"{unrelated}:refs/notes/govsnap").returncode == 0
    fetched = cli(lead, "fetch", "forge", "--json")
    assert fetched.code == 1
    report = json.loads(fetched.out)
    assert report["ok"] is False and report["lost"] == [p1] and report["lost_pinned"] == [p1]
    assert report["notes_lost"].startswith("the notes history of forge was rewritten")
    assert f"{p1} (pinned)" in fetched.err and "govsnap push forge" in fetched.err
    assert cli(lead, "fetch", "forge").code == 1  # and every fetch says so until restored
    # This clone holds all of it: a push puts it back.
    restored = cli(lead, "push", "forge")
    assert restored.code == 0, restored.err
    assert p1 in ids(world.forge)
    theirs = git(world.forge, "rev-parse", "refs/notes/govsnap").strip()
    notes_before = git(lead, "rev-parse", "refs/govsnap-verified/remotes/forge/notes").strip()
    assert run(world.forge, "merge-base", "--is-ancestor", notes_before, theirs).returncode == 0
    assert cli(lead, "fetch", "forge").code == 0
    # A deletion an authorised prune entry names is no loss.
    ok(cli, lead, "prune", "--id", p2, "--yes", "--no-gc")
    ok(cli, lead, "push", "forge", "--prune", "--yes")
    ok(cli, bot, "fetch", "forge")
    assert p2 not in ids(world.forge)


# --- F7: a merge cannot bring an older policy version back -------------------------------------


def test_f7_a_fast_forward_merge_cannot_roll_the_policy_back(
    tmp_path: Path, rings: Keyrings, cli: Cli
) -> None:
    """A merge whose first parent is an older approved policy commit and whose second
    parent is the current tip is a fast-forward: branch protection lets it through, and
    fresh clones trusted the old version along first parents."""
    world = make_world(tmp_path, rings, cli)
    lead = world.clones["lead"]
    atk_key = world.members["atk"]
    make_key_available(lead, world.members["lead"], atk_key)
    ok(
        cli,
        lead,
        "trust",
        "add-signer",
        "contractor",
        "--key",
        atk_key.fingerprint,
        "-e",
        "production",
        "-o",
        "create",
    )
    ok(cli, lead, "trust", "approve")
    git(lead, "add", "-A")
    git(lead, "commit", "-qm", "add contractor")
    v2 = git(lead, "rev-parse", "HEAD").strip()
    ok(cli, lead, "trust", "remove-signer", "contractor")
    ok(cli, lead, "trust", "approve")
    git(lead, "add", "-A")
    git(lead, "commit", "-qm", "remove contractor")
    ok(cli, lead, "trust", "check")
    for remote in ("origin", "forge"):
        assert run(lead, "push", "-q", remote, "main").returncode == 0
    git(world.forge, "config", "receive.denyNonFastForwards", "true")
    atk = world.clone("atk", world.forge)
    merge = git(
        atk,
        "commit-tree",
        "-p",
        v2,
        "-p",
        "origin/main",
        "-m",
        "Merge branch 'main'",
        f"{v2}^{{tree}}",
    ).strip()
    refused = run(atk, "push", str(world.server), f"{merge}:{MAIN}")
    assert refused.returncode != 0
    assert "without raising its version (3 -> 2)" in refused.stderr, refused.stderr
    assert run(atk, "push", "origin", f"{merge}:{MAIN}").returncode == 0  # a fast-forward
    # A clone that saw version 3 says what happened (no "rewritten": nothing was).
    git(lead, "fetch", "-q", "forge")
    git(lead, "merge", "-q", "--ff-only", "forge/main")
    seen = cli(lead, "trust", "check")
    assert seen.code == 1 and "without raising its version (3 -> 2)" in seen.err
    assert "rewritten" not in seen.err
    # A fresh clone (or CI job) with the anchor pinned refuses it as well.
    fresh = world.clone("bot", world.forge)
    fresh_check = cli(fresh, "trust", "check")
    assert fresh_check.code == 1 and "without raising its version (3 -> 2)" in fresh_check.err


# --- F8: a server names its policy ref, and never goes back below a version -------------------


def test_f8_a_server_names_its_policy_ref_and_remembers_the_highest_version(
    tmp_path: Path, rings: Keyrings, cli: Cli
) -> None:
    """A server set up as hooks.md said (hook and anchor, no govsnap.trustRef) whose HEAD
    names an unborn `master` while the team pushes `main`: the first pusher of `master`
    chose an old approved policy, which the hook then enforced."""
    world = make_world(tmp_path, rings, cli)
    lead = world.clones["lead"]
    atk_key = world.members["atk"]
    make_key_available(lead, world.members["lead"], atk_key)
    ok(
        cli,
        lead,
        "trust",
        "add-signer",
        "contractor",
        "--key",
        atk_key.fingerprint,
        "-e",
        "production",
        "-o",
        "create",
    )
    ok(cli, lead, "trust", "approve")
    git(lead, "add", "-A")
    git(lead, "commit", "-qm", "add contractor")
    v2 = git(lead, "rev-parse", "HEAD").strip()
    ok(cli, lead, "trust", "remove-signer", "contractor")
    ok(cli, lead, "trust", "approve")
    git(lead, "add", "-A")
    git(lead, "commit", "-qm", "remove contractor (version 3)")
    srv = tmp_path / "srv.git"
    git(tmp_path, "-c", "init.defaultBranch=master", "init", "-q", "--bare", str(srv))
    installed = cli(srv, "hooks", "install", "--server")
    assert installed.code == 0
    assert "refuses every govsnap ref until this server names its policy ref" in installed.err
    git(srv, "config", "govsnap.trustAnchor", world.members["lead"].fingerprint)
    assert run(lead, "push", "-q", str(srv), "main").returncode == 0
    atk = world.clone("atk")
    git(atk, "fetch", "-q", str(lead), "main")
    assert run(atk, "push", str(srv), f"{v2}:refs/heads/master").returncode == 0  # a branch
    git(atk, "checkout", "-q", "-B", "old", v2)
    git(atk, "config", "govsnap.trustRef", "refs/heads/old")
    contractor = create(cli, atk, "-e", "production")
    refused = run(atk, "push", str(srv), SNAP + contractor)
    assert refused.returncode != 0 and "names no policy ref" in refused.stderr
    assert ids(srv) == set()
    # Named, the server enforces main's version 3, remembers it, and refuses lower.
    named = cli(srv, "hooks", "install", "--server", "--trust-ref", MAIN)
    assert named.code == 0 and "set git config govsnap.trustRef refs/heads/main" in named.out
    refused = run(atk, "push", str(srv), SNAP + contractor)
    assert refused.returncode != 0 and "cannot check: no public key for" in refused.stderr
    rolled_back = run(atk, "push", "-f", str(srv), f"{v2}:{MAIN}")
    assert (
        rolled_back.returncode != 0 and "REFUSED rewrite of refs/heads/main" in rolled_back.stderr
    )
    # An admin's slips: the policy ref moved to master (whose approvals name main, so
    # they count for nothing there), then its old version pinned as the anchor.
    git(srv, "config", "govsnap.trustRef", "refs/heads/master")
    slipped = run(atk, "push", str(srv), SNAP + contractor)
    assert slipped.returncode != 0 and "is not signed by a pinned anchor key" in slipped.stderr
    git(srv, "config", "govsnap.trustAnchorCommit", v2)
    slipped = run(atk, "push", str(srv), SNAP + contractor)
    assert slipped.returncode != 0
    assert "went back from version 3, which this server accepted" in slipped.stderr
    assert "this clone" not in slipped.stderr and "govsnap-verified" not in slipped.stderr
    assert ids(srv) == set()


# --- F9: an approval counts for the change it names, nowhere else -------------------------------


def _show(repo: Path, spec: str) -> bytes:
    return subprocess.run(
        ["git", "-C", str(repo), "show", spec], capture_output=True, check=True
    ).stdout


def test_f9_an_approval_is_bound_to_its_ref_and_the_version_it_changes(
    tmp_path: Path, rings: Keyrings, cli: Cli
) -> None:
    """Approvals were signatures over the file's bytes: replayable for a proposal review
    rejected, once the policy had moved on, and in another repository whose policy the
    same key approves."""
    world = make_world(tmp_path, rings, cli)
    lead = world.clones["lead"]
    atk_key = world.members["atk"]
    make_key_available(lead, world.members["lead"], atk_key)
    git(lead, "checkout", "-q", "-b", "proposal")
    ok(
        cli,
        lead,
        "trust",
        "add-signer",
        "contractor",
        "--key",
        atk_key.fingerprint,
        "-e",
        "*",
        "-o",
        "*",
    )
    policy = lead / ".govsnap" / "trust.toml"
    policy.write_text(policy.read_text().replace("version = 2", "version = 5", 1))
    ok(cli, lead, "trust", "approve")  # approved before review, as the docs had it...
    git(lead, "add", "-A")
    git(lead, "commit", "-qm", "proposal: add contractor (rejected in review)")
    assert run(lead, "push", "-q", "origin", "proposal").returncode == 0
    # ...and rejected. The policy moves on by another approved change.
    git(lead, "checkout", "-q", "main")
    auditor = rings.generate("auditor")
    make_key_available(lead, world.members["lead"], auditor)
    ok(
        cli,
        lead,
        "trust",
        "add-signer",
        "auditor",
        "--key",
        auditor.fingerprint,
        "-e",
        "*",
        "-o",
        "create",
    )
    ok(cli, lead, "trust", "approve")
    git(lead, "add", "-A")
    git(lead, "commit", "-qm", "add an auditor (version 2)")
    assert run(lead, "push", "-q", "origin", "main").returncode == 0
    # Months later, someone who may push main but not approve replays the proposal.
    atk = world.clone("atk")
    git(atk, "checkout", "-q", "origin/proposal", "--", ".govsnap")
    git(atk, "commit", "-qm", "chore: sync .govsnap")
    replayed = run(atk, "push", "origin", "HEAD:main")
    assert replayed.returncode != 0
    assert "(version 2 -> 5) with 0 of the 1 approval(s)" in replayed.stderr, replayed.stderr
    # The same bytes and approval in another repository whose policy lead's key approves.
    other = tmp_path / "other"
    git(tmp_path, "init", "-q", "-b", "main", str(other))
    world.configure(other, world.members["lead"])
    (other / "x").write_text("x\n")
    git(other, "add", "-A")
    git(other, "commit", "-qm", "x")
    ok(cli, other, "trust", "init", "lead")
    git(other, "add", "-A")
    git(other, "commit", "-qm", "policy")
    ok(cli, other, "trust", "check")
    approval = f"approvals/openpgp-{world.members['lead'].fingerprint}.sig"
    for name in ("trust.toml", approval):
        (other / ".govsnap" / name).write_bytes(_show(lead, f"proposal:.govsnap/{name}"))
    git(other, "commit", "-qam", "sync")
    elsewhere = cli(other, "trust", "check")
    assert elsewhere.code == 1 and "with 0 of the 1 approval(s)" in elsewhere.err
