"""The nine attacks of issue 13, played as an attacker would play them, with real
repositories, real keys, stock git and (for the server-side ones) a bare repository
running govsnap's pre-receive hook. Each failed against govsnap 0.1 and must fail now.
"""

from __future__ import annotations

import hashlib
import json
import marshal
import os
import re
import shutil
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from govsnap.digest import digest_tree
from govsnap.repo import open_repo
from tests.helpers import (
    Cli,
    Keys,
    MakeRepo,
    create_snapshot,
    git,
    govsnap_bin,
    openpgp_signer,
    snapshot_ids,
    write_files,
)
from tests.helpers.schemas import check_json_output
from tests.helpers.tamper import (
    Template,
    commit_policy,
    copy_template,
    gpg_sign,
    policy_text,
    read_note,
    read_raw_tag,
    replace_snapshot,
    split_tag,
    template,
    write_note,
)


def trusted_policy(keys: Keys, environments: list[str]) -> str:
    """Return a policy trusting the session's trusted key for `environments`."""
    return policy_text({"releaser": (keys.trusted, environments, ["*"])})


# --- attack 5: the content digest was not injective ----------------------------------------


def test_attack_5_a_newline_in_a_name_no_longer_collides(cli: Cli, make_repo: MakeRepo) -> None:
    """A file named `a\\n100644 <sha256 of Y> b` holding X had the digest of two files a=X
    and b=Y, so `create --if-changed` (and the pre-push hook) skipped a real change."""
    repo = make_repo({"a": "X", "b": "Y"})
    git(repo, "config", "govsnap.requireTrust", "false")
    first = cli(repo, "create", "--from", "HEAD", "--json")
    assert first.code == 0, first.err
    blob_x = git(repo, "rev-parse", "HEAD:a").strip()
    forged_name = b"a\n100644 " + hashlib.sha256(b"Y").hexdigest().encode() + b" b"
    raw = b"100644 " + forged_name + b"\0" + bytes.fromhex(blob_x)
    tree = git(repo, "hash-object", "-t", "tree", "-w", "--stdin", input_text=raw).strip()
    commit = git(repo, "commit-tree", tree, "-p", "HEAD", "-m", "one file, not two").strip()
    again = cli(repo, "create", "--from", commit, "--if-changed", "--json")
    assert again.code == 0, again.err
    data = json.loads(again.out)
    assert data["created"] is True
    assert (
        data["snapshot"]["payload"]["digest"]
        != json.loads(first.out)["snapshot"]["payload"]["digest"]
    )
    assert cli(repo, "verify", "--all").code == 0


def test_a_format_1_snapshot_still_verifies_with_a_warning_about_newlines(
    cli: Cli, make_repo: MakeRepo, keys: Keys
) -> None:
    repo = make_repo({"line\nbreak": "x\n", "plain": "y\n"})
    git(repo, "config", "govsnap.requireTrust", "false")
    made = cli(repo, "create", "--json")
    assert made.code == 0, made.err
    ident = json.loads(made.out)["snapshot"]["id"]
    payload, _ = split_tag(read_raw_tag(repo, ident))
    tree = git(repo, "rev-parse", f"refs/govsnap/snapshots/{ident}^{{tree}}").strip()
    old_digest = digest_tree(open_repo(repo), tree, fmt=1).digest
    text = payload.decode()
    new_digest = text.split("Govsnap-Digest: ")[1].split("\n")[0]
    text = text.replace("Govsnap-Format: 2", "Govsnap-Format: 1").replace(new_digest, old_digest)
    signed = text.encode() + gpg_sign(text.encode(), keys.trusted)
    old_id = replace_snapshot(repo, ident, signed, {"digest": old_digest, "format": 1})
    result = cli(repo, "verify", old_id, "--json")
    assert result.code == 0, result.out + result.err
    digest_check = json.loads(result.out)["snapshots"][0]["checks"]["digest"]
    assert digest_check["ok"] and "format 1" in digest_check["message"]
    assert "newline" in digest_check["message"]


# --- attack 6: a retired key still minted valid snapshots ----------------------------------


@pytest.fixture(scope="module")
def tpl(isolated_env: Path, keys: Keys) -> Template:
    return template(isolated_env, keys)


def _resigned(
    work: Path, ident: str, edit: Callable[[str], str], key: str, when: int | None
) -> str:
    """Put in place of snapshot `ident` a payload changed by `edit` and signed by `key`
    (at the faked time `when`); return the new snapshot's id."""
    payload, _ = split_tag(read_raw_tag(work, ident))
    text = edit(payload.decode()).encode()
    return replace_snapshot(work, ident, text + gpg_sign(text, key, when))


def _tagger_time(text: str, when: int) -> str:
    return re.sub(r"^(tagger .*> )\d+ ", rf"\g<1>{when} ", text, flags=re.M)


def test_attack_6_an_expired_key_cannot_back_date_its_signature(
    tpl: Template, tmp_path: Path, cli: Cli
) -> None:
    """The key expired days ago; gpg --faked-system-time signs with a date before its
    expiry, on a payload dated now. The signature predates the snapshot it signs: bad."""
    work = copy_template(tpl, tmp_path / "work")
    now = int(time.time())
    forged = _resigned(
        work, tpl.good, lambda t: _tagger_time(t, now), tpl.keys.expired_after, tpl.keys.t0 + 3600
    )
    result = cli(work, "verify", forged, "--json")
    assert result.code == 1, result.out
    checks = json.loads(result.out)["snapshots"][0]["checks"]
    assert not checks["signature"]["ok"]
    assert "back-dated signature" in checks["signature"]["message"]
    refused = cli(work, "rollback", forged, "--dry-run")
    assert refused.code == 1 and forged in refused.err
    # The same key's honest snapshot, signed and dated before it expired, still verifies.
    assert cli(work, "verify", tpl.expired_after).code == 0


# --- attack 7: unsigned data reached decisions and the screen ------------------------------


def test_attack_7_an_edited_cache_row_changes_nothing_rollback_writes(
    cli: Cli, make_repo: MakeRepo
) -> None:
    repo = make_repo({"app.py": "v1\n"})
    git(repo, "config", "govsnap.requireTrust", "false")
    made = cli(repo, "create", "--json")
    ident = json.loads(made.out)["snapshot"]["id"]
    assert cli(repo, "list").code == 0  # the parsed tag is cached now
    evil = git(repo, "hash-object", "-w", "--stdin", input_text="rm -rf /\n").strip()
    evil_tree = git(repo, "mktree", input_text=f"100644 blob {evil}\tevil.sh\n").strip()
    tag = bytes.fromhex(git(repo, "rev-parse", f"refs/govsnap/snapshots/{ident}").strip())
    db = sqlite3.connect(repo / ".git" / "govsnap" / "digest-cache.sqlite")
    (row,) = db.execute("SELECT value FROM parsed3 WHERE oid = ?", (tag,)).fetchone()
    values, signature = marshal.loads(row)
    forged = (*values[:5], evil_tree, *values[6:])
    db.execute(
        "UPDATE parsed3 SET value = ? WHERE oid = ?", (marshal.dumps((forged, signature)), tag)
    )
    db.commit()
    db.close()
    (repo / "app.py").write_text("v2\n")
    done = cli(repo, "rollback", ident, "--yes")
    assert done.code == 0, done.err
    assert not (repo / "evil.sh").exists()
    assert (repo / "app.py").read_text() == "v1\n"
    shown = json.loads(cli(repo, "show", ident, "--json").out)
    assert shown["payload"]["tree"] != evil_tree


def test_attack_7_list_and_show_never_present_a_copied_note_as_the_signer(
    cli: Cli, make_repo: MakeRepo, keys: Keys
) -> None:
    # The other key is known to the policy, for staging only: its signature checks out.
    policy = trusted_policy(keys, ["*"]) + openpgp_signer("dev", keys.other, ["staging"])
    repo = make_repo({"app.py": "v1\n", ".govsnap/trust.toml": policy})
    git(repo, "config", "govsnap.signingKey", keys.other)
    made = cli(repo, "create", "--json")
    ident = json.loads(made.out)["snapshot"]["id"]
    tag = git(repo, "rev-parse", f"refs/govsnap/snapshots/{ident}").strip()
    note = read_note(repo, tag)
    write_note(repo, tag, {**note, "signature": {"kind": "openpgp", "signer": keys.trusted}})
    listed = cli(repo, "list")
    assert listed.code == 0
    assert (
        "signer (unverified)" in listed.out
        and f"claimed openpgp:{keys.trusted[-16:]}" in listed.out
    )
    shown = cli(repo, "show", ident)
    signed_by = next(line for line in shown.out.splitlines() if line.startswith("signed by"))
    assert keys.other in signed_by and keys.trusted not in signed_by
    assert "FAIL" in signed_by and "is not trusted for environment 'default'" in signed_by
    data = json.loads(cli(repo, "show", ident, "--json").out)["verified"]
    assert data["signer"] == keys.other and not data["trust"]["ok"]


def test_attack_7_markup_and_control_characters_never_reach_the_terminal(
    cli: Cli, make_repo: MakeRepo, keys: Keys
) -> None:
    repo = make_repo({"app.py": "v1\n"})
    git(repo, "config", "govsnap.requireTrust", "false")
    made = cli(repo, "create", "--json")
    ident = json.loads(made.out)["snapshot"]["id"]
    tag = git(repo, "rev-parse", f"refs/govsnap/snapshots/{ident}").strip()
    note = read_note(repo, tag)
    hostile = "[/]\x1b[2J\u202egnp.exe"
    write_note(
        repo, tag, {**note, "signature": {"kind": "openpgp", "signer": hostile}, "host": hostile}
    )
    for args in (
        ["list"],
        ["show", ident],
        ["audit"],
        ["list", "--json"],
        ["show", ident, "--json"],
    ):
        result = cli(repo, *args)
        assert result.code == 0, (args, result.err)
        for text in (result.out, result.err):
            assert "\x1b" not in text and "\u202e" not in text, args
    assert "[/]" in cli(repo, "show", ident).out


def test_attack_7_signed_names_outside_the_grammar_fail_verification(
    cli: Cli, make_repo: MakeRepo, keys: Keys
) -> None:
    """A key trusted only for `staging-*` signs `staging-<ESC>[8Dproduction`, which a
    terminal shows as "production": the signature is real, the name is refused."""
    repo = make_repo({"app.py": "v1\n", ".govsnap/trust.toml": trusted_policy(keys, ["staging-*"])})
    made = cli(repo, "create", "-e", "staging-eu", "--json")
    assert made.code == 0, made.err
    good = json.loads(made.out)["snapshot"]["id"]
    hostile_values = [
        "staging-\x1b[8Dproduction",
        "staging-..",
        "staging-*",
        "staging-\u0430",
        "staging-" + "x" * 200_000,
    ]
    for value in hostile_values:
        forged = _resigned(
            repo, good, lambda t, v=value: t.replace("staging-eu", v), keys.trusted, None
        )
        result = cli(repo, "verify", forged, "--json")
        assert result.code == 1
        checks = json.loads(result.out)["snapshots"][0]["checks"]
        assert not checks["tag"]["ok"] and "malformed" in checks["tag"]["message"]
        listed = cli(repo, "list")
        assert listed.code == 0 and "\x1b" not in listed.out
        good = forged  # replace_snapshot moved the note along


def test_attack_7_future_tagger_times(cli: Cli, make_repo: MakeRepo, keys: Keys) -> None:
    repo = make_repo({"app.py": "v1\n", ".govsnap/trust.toml": trusted_policy(keys, ["*"])})
    base = json.loads(cli(repo, "create", "--json").out)["snapshot"]["id"]
    in_2090 = _resigned(repo, base, lambda t: _tagger_time(t, 3_786_912_000), keys.trusted, None)
    result = cli(repo, "verify", in_2090, "--json")
    assert result.code == 1
    assert "in the future" in json.loads(result.out)["snapshots"][0]["checks"]["tag"]["message"]
    # `latest` is the newest snapshot not dated in the future.
    second = json.loads(cli(repo, "create", "--json").out)["snapshot"]["id"]
    assert json.loads(cli(repo, "show", "latest", "--json").out)["id"] == second
    # Beyond year 9999: shown, never a crash.
    far = _resigned(
        repo, in_2090, lambda t: _tagger_time(t, 253_402_300_800 * 4), keys.trusted, None
    )
    for args in (
        ["list"],
        ["show", far],
        ["stats"],
        ["prune", "--keep-last", "1", "--dry-run"],
        ["audit"],
    ):
        done = cli(repo, *args)
        assert "internal error" not in done.err, (args, done.err)
        assert done.code == 0, (args, done.err)
    # create refuses to date a snapshot in the future.
    os.environ["GIT_COMMITTER_DATE"] = "@3786912000"
    try:
        refused = cli(repo, "create")
    finally:
        del os.environ["GIT_COMMITTER_DATE"]
    assert refused.code == 2 and "in the future" in refused.err


# --- a team's remote, and an attacker with push access but no trusted key ----------------


EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
AUDIT = "refs/govsnap/audit"
SNAP = "refs/govsnap/snapshots/"


@dataclass(frozen=True)
class Team:
    """A bare remote, a trusted clone, and an attacker's clone of the same remote."""

    bare: Path
    trusted: Path
    attacker: Path

    def clone(self, name: str, key: str | None) -> Path:
        """Return a further clone of the remote (with govsnap's refs), signing with `key`."""
        path = self.bare.parent / name
        git(self.bare.parent, "clone", "-q", str(self.bare), str(path))
        git(path, "fetch", "-q", "origin", "+refs/govsnap/*:refs/govsnap/*")
        git(path, "fetch", "-q", "origin", "+refs/notes/*:refs/notes/*")
        if key:
            git(path, "config", "govsnap.signingKey", key)
        return path


def team_policy(keys: Keys) -> str:
    return "version = 1\n" + openpgp_signer("releaser", keys.trusted)


def make_team(tmp_path: Path, make_repo: MakeRepo, keys: Keys, *, hook: bool) -> Team:
    seed = make_repo({"app.py": "v1\n"}, name="seed")
    commit_policy(seed, team_policy(keys), sign_with=keys.trusted)
    bare = tmp_path / "remote.git"
    git(tmp_path, "clone", "-q", "--bare", str(seed), str(bare))
    if hook:
        git(bare, "config", "govsnap.trustAnchor", keys.trusted)
        run_cli(bare, "hooks", "install", "--server", "--trust-ref", "refs/heads/main")
    team = Team(bare, tmp_path / "trusted", tmp_path / "attacker")
    for path, key in ((team.trusted, keys.trusted), (team.attacker, keys.other)):
        git(tmp_path, "clone", "-q", str(bare), str(path))
        git(path, "config", "govsnap.signingKey", key)
    return team


def run_cli(repo: Path, *args: str) -> str:
    """Run the installed govsnap; fail the test unless it succeeds; return its stdout."""
    proc = subprocess.run(
        [govsnap_bin(), "-C", str(repo), *args], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
    check_json_output(args, proc.returncode, proc.stdout, proc.stderr)
    return proc.stdout


def forge_entry(repo: Path, operation: str, ids: list[str], parent: str | None) -> str:
    """Write, with stock git, an unsigned audit entry that looks like govsnap's own."""
    now = int(time.time())
    body = {
        "operation": operation,
        "snapshots": ids,
        "actor": {"name": "Mallory", "email": "mallory@example.com"},
        "host": "x",
        "time": now,
        "arguments": {},
        "result": "ok",
        "duration_seconds": 0.1,
    }
    message = f"{operation}: forged\n\n{json.dumps(body, sort_keys=True, indent=2)}\n"
    args = ["commit-tree", EMPTY_TREE, "-m", message] + (["-p", parent] if parent else [])
    env = {**os.environ, "GIT_COMMITTER_DATE": f"@{now} +0000", "GIT_AUTHOR_DATE": f"@{now} +0000"}
    proc = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def git_push(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "push", *args], cwd=repo, capture_output=True, text=True, check=False
    )


def remote_ids(bare: Path) -> set[str]:
    out = git(bare, "for-each-ref", "--format=%(refname:lstrip=3)", SNAP)
    return set(out.split())


# --- attack 1: a forged audit entry deleted snapshots on the server ----------------------


def test_attack_1_a_forged_prune_entry_deletes_nothing(
    tmp_path: Path, make_repo: MakeRepo, keys: Keys, cli: Cli
) -> None:
    team = make_team(tmp_path, make_repo, keys, hook=False)  # a forge: no hook runs
    target = create_snapshot(cli, team.trusted, "--from", "HEAD", "-m", "the target")
    other = create_snapshot(cli, team.trusted, "--from", "HEAD", "-m", "another")
    assert cli(team.trusted, "push").code == 0
    # The attacker appends an unsigned `prune:` entry naming the target, and edits its
    # note hoping that a clone that lacks it refuses to adopt it.
    attacker = team.clone("mallory", keys.other)
    tip = git(attacker, "rev-parse", AUDIT).strip()
    forged = forge_entry(attacker, "prune", [target], tip)
    git(attacker, "update-ref", AUDIT, forged)
    tag = git(attacker, "rev-parse", SNAP + target).strip()
    write_note(attacker, tag, {**read_note(attacker, tag), "trigger": "edited"})
    pushed = git_push(
        attacker, "origin", f"{AUDIT}:{AUDIT}", "refs/notes/govsnap:refs/notes/govsnap"
    )
    assert pushed.returncode == 0, pushed.stderr

    # The release bot: a clone without the target, which prunes and pushes --prune.
    bot = make_repo(name="bot")
    git(bot, "remote", "add", "origin", str(team.bare))
    git(bot, "fetch", "-q", "origin", "main")
    git(bot, "reset", "-q", "--hard", "origin/main")
    git(bot, "config", "govsnap.signingKey", keys.trusted)
    fetched = cli(bot, "fetch")
    cli(bot, "push", "--prune", "--yes")
    assert remote_ids(team.bare) == {target, other}  # the forged entry deleted nothing
    assert fetched.code == 1
    assert f"{forged[:12]} (prune) is not signed" in fetched.err
    assert "they were not joined" in fetched.err
    assert target in snapshot_ids(bot)  # the edited note decided nothing: adopted, as signed
    # Where the forged entry did land (the attacker's clone), it is flagged and decides nothing.
    report = cli(attacker, "audit", "verify", "--json")
    assert report.code == 1
    kinds = {p["kind"] for p in json.loads(report.out)["problems"]}
    assert "unauthorised" in kinds
    assert cli(attacker, "push", "--prune", "--dry-run", "--json").code in (0, 1)
    dry = json.loads(cli(attacker, "push", "--prune", "--dry-run", "--json").out)
    assert dry["deleted"] == []


# --- attack 2: unpinning needed no right ------------------------------------------------


def test_attack_2_an_edited_note_unpins_nothing(
    tmp_path: Path, make_repo: MakeRepo, keys: Keys, cli: Cli
) -> None:
    team = make_team(tmp_path, make_repo, keys, hook=False)
    os.environ["GIT_COMMITTER_DATE"] = "2026-01-01T10:00:00Z"
    try:
        evidence = create_snapshot(cli, team.trusted, "--from", "HEAD", "-l", "incident-evidence")
    finally:
        del os.environ["GIT_COMMITTER_DATE"]
    newer = create_snapshot(cli, team.trusted, "--from", "HEAD")
    assert cli(team.trusted, "pin", evidence).code == 0
    assert cli(team.trusted, "push").code == 0
    # The attacker unpins by editing the note, and by a forged unsigned unpin entry.
    attacker = team.clone("mallory", keys.other)
    tag = git(attacker, "rev-parse", SNAP + evidence).strip()
    write_note(attacker, tag, {**read_note(attacker, tag), "pinned": False})
    forged = forge_entry(attacker, "unpin", [evidence], git(attacker, "rev-parse", AUDIT).strip())
    git(attacker, "update-ref", AUDIT, forged)
    assert git_push(attacker, "origin", "refs/notes/govsnap:refs/notes/govsnap").returncode == 0
    # Verification passes (pinned is no signed field), and the note now says unpinned...
    assert cli(team.trusted, "fetch").code == 0
    assert read_note(team.trusted, tag)["pinned"] is False
    # ...but the signed pin entry decides: prune keeps it, here and on the remote.
    done = cli(team.trusted, "prune", "--keep-last", "1", "--yes", "--no-gc")
    assert done.code == 0, done.err
    assert evidence in snapshot_ids(team.trusted) and newer in snapshot_ids(team.trusted)
    assert cli(team.trusted, "push", "--prune", "--yes").code == 0
    assert evidence in remote_ids(team.bare)
    shown = json.loads(cli(team.trusted, "show", evidence, "--json").out)
    assert shown["pinned"] is True
    # In the attacker's clone the forged unpin counts for nothing either.
    plan = json.loads(cli(attacker, "prune", "--keep-last", "1", "-n", "--json").out)
    decision = next(d for d in plan["snapshots"] if d["id"] == evidence)
    assert decision["action"] == "keep" and "pinned" in decision["reasons"]


# --- attack 3: the trust policy was hijacked through its ref ------------------------------


def test_attack_3_a_tag_named_main_grants_nothing(
    make_repo: MakeRepo, keys: Keys, cli: Cli
) -> None:
    repo = make_repo({"app.py": "v1\n"})
    commit_policy(repo, team_policy(keys), sign_with=keys.trusted)
    # The attacker's policy, trusting their own key, on a tag that DWIM prefers to main.
    git(repo, "checkout", "-q", "--detach")
    write_files(repo, {".govsnap/trust.toml": "version = 1\n" + openpgp_signer("m", keys.other)})
    git(repo, "commit", "-qam", "a policy trusting the attacker")
    git(repo, "tag", "main")
    git(repo, "checkout", "-q", "main")
    git(repo, "config", "govsnap.signingKey", keys.other)
    evil = create_snapshot(cli, repo, "--from", "HEAD")
    git(repo, "config", "govsnap.trustRef", "main")
    short = cli(repo, "verify", evil)
    assert short.code == 2 and "'main' is not a full ref name" in short.err
    git(repo, "config", "govsnap.trustRef", "refs/heads/main")
    full = cli(repo, "verify", evil, "--json")
    assert full.code == 1
    assert not json.loads(full.out)["snapshots"][0]["checks"]["signature"]["ok"]


def test_attack_3_an_unborn_policy_branch_accepts_nothing(
    tmp_path: Path, make_repo: MakeRepo, keys: Keys, cli: Cli
) -> None:
    """A server whose HEAD names a branch nobody created yet: the first pusher of that
    branch does not get to define the policy."""
    bare = tmp_path / "server.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
    git(bare, "config", "govsnap.trustAnchor", keys.trusted)
    run_cli(bare, "hooks", "install", "--server", "--trust-ref", "refs/heads/main")
    attacker = make_repo({"app.py": "v1\n"}, name="mallory")
    commit_policy(
        attacker, "version = 1\n" + openpgp_signer("mallory", keys.other), sign_with=keys.other
    )
    git(attacker, "config", "govsnap.signingKey", keys.other)
    evil = create_snapshot(cli, attacker, "--from", "HEAD")
    git(attacker, "remote", "add", "origin", str(bare))
    for refs in (["main"], [SNAP + evil]):
        assert git_push(attacker, "origin", *refs).returncode != 0, refs
    assert remote_ids(bare) == set()
    assert git(bare, "for-each-ref").strip() == ""
    together = git_push(attacker, "origin", "main", SNAP + evil)
    assert together.returncode != 0
    assert "REFUSED create of refs/heads/main" in together.stderr
    assert "not signed by a pinned anchor key" in together.stderr
    assert f"REFUSED create of {SNAP}{evil}: this server has no trust policy" in together.stderr


# --- attack 4: the server let evidence be erased ---------------------------------------------


def test_attack_4_every_erasure_push_is_refused(
    tmp_path: Path, make_repo: MakeRepo, keys: Keys, cli: Cli
) -> None:
    team = make_team(tmp_path, make_repo, keys, hook=True)
    secret = create_snapshot(cli, team.trusted, "--from", "HEAD", "-m", "captured a secret")
    for n in range(4):
        create_snapshot(cli, team.trusted, "--from", "HEAD", "-m", f"entry {n}")
    assert cli(team.trusted, "push").code == 0
    before = git(team.bare, "for-each-ref", "--format=%(refname) %(objectname)")
    attacker = team.clone("mallory", keys.other)
    first = git(attacker, "rev-list", "--max-parents=0", AUDIT).strip()
    unsigned = forge_entry(attacker, "verify", [], git(attacker, "rev-parse", AUDIT).strip())
    attempts = {
        "audit force-pushed to one entry": ["--force", "origin", f"{first}:{AUDIT}"],
        "audit deleted": ["origin", f":{AUDIT}"],
        "notes deleted": ["origin", ":refs/notes/govsnap"],
        "a ref beside the snapshots": ["origin", f"{first}:refs/govsnap/snapshots-evil/x"],
        "a ref outside the layout": ["origin", f"{first}:refs/govsnap/other"],
        "a clone's own namespace": ["origin", f"{first}:refs/govsnap-verified/audit"],
        "an unsigned audit entry": ["origin", f"{unsigned}:{AUDIT}"],
        "a snapshot deleted": ["origin", f":{SNAP}{secret}"],
    }
    for what, args in attempts.items():
        refused = git_push(attacker, *args)
        assert refused.returncode != 0, what
        assert "REFUSED" in refused.stderr, (what, refused.stderr)
    assert git(team.bare, "for-each-ref", "--format=%(refname) %(objectname)") == before

    # A purge leaves a signed tombstone: an old clone cannot bring the secret back.
    assert cli(team.trusted, "prune", "--id", secret, "--now", "--yes").code == 0
    assert cli(team.trusted, "push", "--prune", "--yes").code == 0
    assert secret not in remote_ids(team.bare)
    again = git_push(attacker, "origin", f"{SNAP}{secret}")
    assert again.returncode != 0
    assert f"snapshot {secret} was purged" in again.stderr
    assert secret not in remote_ids(team.bare)
    git(team.bare, "fsck", "--full", "--strict")


# --- attack 9: a race destroyed the audit chain --------------------------------------------


def test_attack_9_prune_now_waits_for_an_append_in_flight(
    cli: Cli, make_repo: MakeRepo, tmp_path: Path
) -> None:
    """An append writes its entry, then moves the ref. `prune --id X --now` runs
    git gc --prune=now, which deletes every object no ref names yet: run in between, it
    left refs/govsnap/audit pointing at nothing (1 trial in 10). Now git gc starts only
    once the append is done. (git's own commands are traced, not replaced: a wrapper on
    PATH logs when `git gc` starts and runs the real git.)"""
    from govsnap import audit as audit_module
    from govsnap.repo import open_repo

    repo = make_repo({"app.py": "v1\n"})
    git(repo, "config", "govsnap.requireTrust", "false")
    doomed = create_snapshot(cli, repo, "--from", "HEAD")
    create_snapshot(cli, repo, "--from", "HEAD")
    trace = tmp_path / "gc-started"
    wrapper = tmp_path / "bin"
    wrapper.mkdir()
    real_git = shutil.which("git")
    (wrapper / "git").write_text(
        "#!/bin/sh\n"
        f'case " $* " in *" gc "*) python3 -c "import time; print(time.time())" >> {trace};; esac\n'
        f'exec {real_git} "$@"\n'
    )
    (wrapper / "git").chmod(0o755)
    written = threading.Event()
    finished: list[float] = []
    pruning: list[subprocess.Popen[str]] = []
    original = audit_module.EntryWriter.commit_on

    def slow_commit_on(self: audit_module.EntryWriter, current: object) -> object:
        oid = original(self, current)  # type: ignore[arg-type]
        written.set()
        # The entry exists, unreferenced, until prune --now is done, or waits for this
        # writer (on the object-store lock).
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (
            pruning and (pruning[0].poll() is not None or _waits_on_lock(repo))
        ):
            time.sleep(0.02)
        return oid

    def append() -> None:
        handle = open_repo(repo)
        entry = audit_module.Entry("verify", "racing entry", handle.committer())
        audit_module.append(handle, entry)
        finished.append(time.time())

    audit_module.EntryWriter.commit_on = slow_commit_on  # type: ignore[method-assign]
    try:
        writer = threading.Thread(target=append)
        writer.start()
        assert written.wait(10)
        env = {**os.environ, "PATH": f"{wrapper}{os.pathsep}{os.environ['PATH']}"}
        pruning.append(
            subprocess.Popen(
                [govsnap_bin(), "-C", str(repo), "prune", "--id", doomed, "--now", "--yes"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
        )
        writer.join()
        _, err = pruning[0].communicate(timeout=60)
    finally:
        audit_module.EntryWriter.commit_on = original  # type: ignore[method-assign]
    assert pruning[0].returncode == 0, err
    (gc_started,) = (float(line) for line in trace.read_text().split())
    assert finished and gc_started > finished[0], "git gc ran while an entry was in flight"
    git(repo, "fsck", "--full", "--strict")
    assert git(repo, "log", "-1", "--format=%s", AUDIT).strip() == "verify: racing entry"
    assert cli(repo, "audit", "verify").code == 0


def _waits_on_lock(repo: Path) -> bool:
    """Return True when a process waits for an flock on the repository's gc-mutex (the
    kernel lists waiters with `->` in /proc/locks)."""
    lock = repo / ".git" / "govsnap" / "gc-mutex"
    if not lock.exists():
        return False
    inode = f":{lock.stat().st_ino} "
    return any(
        "->" in line and inode in line for line in Path("/proc/locks").read_text().splitlines()
    )


def test_doctor_reattaches_a_dangling_audit_ref_and_records_the_gap(
    cli: Cli, make_repo: MakeRepo
) -> None:
    """What a `git gc --prune=now` the user runs while an entry is written can still do
    (git's own commands share that danger): doctor --fix repairs it."""
    repo = make_repo({"app.py": "v1\n"})
    git(repo, "config", "govsnap.requireTrust", "false")
    create_snapshot(cli, repo, "--from", "HEAD")
    survivor = git(repo, "rev-parse", AUDIT).strip()
    lost = forge_entry(repo, "verify", [], survivor)
    for ref in (AUDIT, "refs/govsnap-verified/audit"):
        git(repo, "update-ref", ref, lost)
    loose = repo / ".git" / "objects" / lost[:2] / lost[2:]
    loose.unlink()  # as gc --prune=now removed it, the refs already moved
    for args in (["create"], ["verify", "--all"], ["audit"]):
        broken = cli(repo, *args)
        assert broken.code == 1 and "govsnap doctor --fix" in broken.err, (args, broken.err)
    assert "dangling-audit" in cli(repo, "doctor").out
    fixed = cli(repo, "doctor", "--fix")
    assert fixed.code == 0, fixed.out + fixed.err
    subjects = git(repo, "log", "-2", "--format=%s", AUDIT).splitlines()
    assert (
        subjects[1] == f"doctor: audit trail reattached to {survivor[:12]}: entry {lost} was lost"
    )
    assert git(repo, "rev-parse", f"{AUDIT}~2").strip() == survivor
    git(repo, "fsck", "--full", "--strict")
    assert cli(repo, "audit", "verify").code == 0
    assert cli(repo, "create").code == 0


# --- every clone detects what a server does not prevent --------------------------------------


def test_a_clone_detects_a_truncated_or_deleted_remote_trail_and_restores_it(
    tmp_path: Path, make_repo: MakeRepo, keys: Keys, cli: Cli
) -> None:
    team = make_team(tmp_path, make_repo, keys, hook=False)
    for n in range(5):
        create_snapshot(cli, team.trusted, "--from", "HEAD", "-m", f"release {n}")
    assert cli(team.trusted, "push").code == 0
    assert cli(team.trusted, "fetch").code == 0  # verified what the remote holds
    entries = git(team.bare, "rev-list", "--count", AUDIT).strip()
    first = git(team.bare, "rev-list", "--max-parents=0", AUDIT).strip()
    # Anyone with push access to a forge truncates it...
    git(team.bare, "update-ref", AUDIT, first)
    truncated = cli(team.trusted, "fetch")
    assert truncated.code == 1
    assert f"the audit trail of origin was rewritten: {int(entries) - 1} entries" in truncated.err
    assert "govsnap doctor --restore-remote origin" in truncated.err
    # ...or deletes it.
    git(team.bare, "update-ref", "-d", AUDIT)
    deleted = cli(team.trusted, "fetch")
    assert deleted.code == 1 and "the audit trail of origin was deleted" in deleted.err
    # This clone still holds every entry; on request it puts them back.
    dry = cli(team.trusted, "doctor", "--restore-remote", "origin", "--dry-run")
    assert dry.code == 0 and "would be extended" in dry.out
    assert git(team.bare, "for-each-ref", AUDIT).strip() == ""
    restored = cli(team.trusted, "doctor", "--restore-remote", "origin")
    assert restored.code == 0, restored.err
    assert int(git(team.bare, "rev-list", "--count", AUDIT).strip()) >= int(entries)
    assert cli(team.trusted, "fetch").code == 0


def test_a_rewritten_remote_trail_is_replaced_with_a_lease_on_request(
    tmp_path: Path, make_repo: MakeRepo, keys: Keys, cli: Cli
) -> None:
    team = make_team(tmp_path, make_repo, keys, hook=False)
    create_snapshot(cli, team.trusted, "--from", "HEAD")
    create_snapshot(cli, team.trusted, "--from", "HEAD")
    assert cli(team.trusted, "push").code == 0
    first = git(team.bare, "rev-list", "--max-parents=0", AUDIT).strip()
    forged = forge_entry(team.bare, "verify", [], first)
    git(team.bare, "update-ref", AUDIT, forged)  # history rewritten, a new entry on it
    fetched = cli(team.trusted, "fetch")
    assert fetched.code == 1 and "was rewritten" in fetched.err
    restored = cli(team.trusted, "doctor", "--restore-remote", "origin")
    assert restored.code == 0, restored.err
    assert "replaced by this clone's copy" in restored.out and "1 entry" in restored.err
    ours = git(team.trusted, "rev-parse", f"{AUDIT}~1").strip()
    assert git(team.bare, "merge-base", "--is-ancestor", ours, AUDIT) == ""
