"""The trust policy: parsing and validation (bad files name the file and the line),
decisions, reading the committed version at the configured ref, `trust show|check`."""

from __future__ import annotations

import json
import subprocess
import tomllib
from pathlib import Path

import pytest

from govsnap.errors import UsageError
from govsnap.repo import open_repo
from govsnap.trust import PolicyError, load_policy, parse_policy
from tests.helpers import (
    Cli,
    Keys,
    MakeRepo,
    SSHKey,
    git,
    openpgp_signer,
    public_key,
    write_files,
)
from tests.helpers.tamper import commit_policy
from tests.helpers.team import export_public_key, keyrings
from tests.helpers.team import public_key as public_key_of

FPR = "0123456789ABCDEF0123456789ABCDEF01234567"
X509 = "FEDCBA9876543210FEDCBA9876543210FEDCBA98"
SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJZ6Vd2lGsFLoh7bTPMbWa3tD3MZrqCG9nhGdYbJ6mFT"
GOOD = f"""version = 1

[signers.release-bot]
openpgp = "{FPR[:4]} {FPR[4:8]} {FPR[8:]}"
environments = ["staging", "production"]
operations = ["create", "pin"]
description = "CI release job"

[signers.alice]
ssh = 'alice@example.com,ops@example.com namespaces="git" {SSH_KEY} alice laptop'
environments = ["prod-*"]
operations = ["*"]

[signers.hsm]
x509 = "{":".join(X509[i : i + 2] for i in range(0, 40, 2))}"
environments = ["*"]
operations = ["rollback"]
"""


def test_a_good_policy_parses_and_decides() -> None:
    policy = parse_policy(GOOD.encode(), "trust.toml")
    bot, alice, hsm = policy.signers
    assert (bot.name, bot.kind, bot.identity, bot.line) == ("release-bot", "openpgp", FPR, 3)
    assert alice.identity.startswith("SHA256:") and alice.kind == "ssh"
    assert hsm.identity == X509 and hsm.kind == "x509"
    assert policy.allows(FPR, "production", "create")
    assert policy.allows(FPR.lower(), "staging", "pin")
    assert not policy.allows(FPR, "production", "rollback")
    assert not policy.allows(FPR, "dev", "create")
    assert policy.allows(alice.identity, "prod-eu", "prune")
    assert not policy.allows(alice.identity, "production", "prune")
    assert not policy.allows(None, "production", "create")
    decision = policy.decide("SHA256:unknown", "production", "create")
    assert not decision.allowed
    assert decision.reason == "signer SHA256:unknown is not in the trust policy trust.toml"
    assert policy.allowed_signers_text() == (
        f'alice@example.com,ops@example.com namespaces="git" {SSH_KEY} alice laptop\n'
    )


def test_an_empty_policy_trusts_nobody() -> None:
    policy = parse_policy(b"", "t")
    assert policy.signers == ()
    assert not policy.allows(FPR, "production", "create")


SIGNER = '[signers.bot]\nopenpgp = "{fpr}"\nenvironments = {envs}\noperations = {ops}\n'


def signer(fpr: str = FPR, envs: str = '["prod"]', ops: str = '["create"]') -> str:
    return SIGNER.format(fpr=fpr, envs=envs, ops=ops)


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        (
            "version = 1\n[signers.bot\n",
            2,
            "invalid TOML: Expected ']' at the end of a table declaration",
        ),
        (
            'version = 1\nsigner = "x"\n',
            2,
            "signer: unknown key (known: version, policy_threshold, signers)",
        ),
        (
            "version = 0\n",
            1,
            "version: must be a whole number, 1 or more, raised by every change: 0",
        ),
        (
            "policy_threshold = 2\n",
            1,
            "policy_threshold: 2 approvals needed, but only 0 signer(s) may approve a policy "
            "change (operation 'policy')",
        ),
        ("signers = 3\n", 1, "signers: must be a table of [signers.NAME] tables"),
        (
            "\n" + signer() + "role = 'x'\n",
            6,
            "signers.bot.role: unknown key (known: openpgp, ssh, x509, public_key, "
            "environments, operations, description)",
        ),
        (
            signer(fpr="0123456789ABCDEF"),
            2,
            "signers.bot.openpgp: '0123456789ABCDEF' is a key ID, not a fingerprint: "
            "use all 40 hex digits",
        ),
        (
            signer(fpr="0123"),
            2,
            "signers.bot.openpgp: '0123' is not an OpenPGP fingerprint (40 or 64 hex digits)",
        ),
        (
            signer(fpr="not-hex"),
            2,
            "signers.bot.openpgp: 'not-hex' is not a fingerprint: use hex digits",
        ),
        (
            signer(envs="[]"),
            3,
            "signers.bot.environments: must be a non-empty list of strings",
        ),
        (
            signer(envs='["pro duction"]'),
            3,
            "signers.bot.environments: 'pro duction' is not an environment name or pattern "
            "(letters, digits, '.', '_', '-', '*')",
        ),
        (
            signer(ops='["create", "deploy"]'),
            4,
            "signers.bot.operations: unknown operation 'deploy' (known: create, rollback, "
            "prune, pin, policy, or '*')",
        ),
        (
            '[signers.bot]\nenvironments = ["a"]\noperations = ["pin"]\n',
            1,
            "signers.bot: needs exactly one of openpgp, ssh or x509",
        ),
        (
            f'[signers.bot]\nopenpgp = "{FPR}"\noperations = ["pin"]\n',
            1,
            "signers.bot: missing environments (a list; '*' for all)",
        ),
        (
            signer() + "\n" + signer().replace("[signers.bot]", "[signers.twin]"),
            6,
            "signers.twin: the same key is already listed as signer 'bot'",
        ),
        (
            f"[signers.bot]\nssh = '{SSH_KEY}'\nenvironments = ['a']\noperations = ['pin']\n",
            2,
            "signers.bot.ssh: must be an allowed-signers line: '<principals> [options] "
            "<key type> <base64 key>' (for example 'alice@example.com ssh-ed25519 AAAA...')",
        ),
        (
            "[signers.bot]\nssh = 'a@b ssh-ed25519 AAAA!!'\nenvironments = ['a']\n"
            "operations = ['pin']\n",
            2,
            "signers.bot.ssh: the ssh-ed25519 key is not valid base64",
        ),
        (
            f"[signers.bot]\nssh = 'a@b {SSH_KEY.replace('ed25519', 'rsa', 1)}'\n"
            "environments = ['a']\noperations = ['pin']\n",
            2,
            "signers.bot.ssh: the key data is not a ssh-rsa key",
        ),
        (
            f"[signers.bot]\nssh = 'a@b cert-authority {SSH_KEY}'\nenvironments = ['a']\n"
            "operations = ['pin']\n",
            2,
            "signers.bot.ssh: cert-authority entries are not supported: list user keys",
        ),
        (
            f"[signers.bot]\nssh = 'a@b expiry=\"x\" {SSH_KEY}'\nenvironments = ['a']\n"
            "operations = ['pin']\n",
            2,
            "signers.bot.ssh: unknown allowed-signers option 'expiry' (known: namespaces, "
            "valid-after, valid-before)",
        ),
        (
            f"[signers.x509]\nx509 = '{FPR[:20]}'\nenvironments = ['a']\noperations = ['pin']\n",
            2,
            f"signers.x509.x509: '{FPR[:20]}' is not an X.509 certificate fingerprint (40 hex)",
        ),
        (
            f'[signers."bad name"]\nopenpgp = "{FPR}"\n',
            1,
            "signers.bad name: a signer name uses 1-64 letters, digits, '.', '_' or '-'",
        ),
        (
            # The escape is decoded as TOML reads it: the table is found at its own line.
            f'version = 1\n\n[signers.ok]\nopenpgp = "{FPR}"\nenvironments = ["a"]\n'
            f'operations = ["pin"]\n\n[signers."ev\\u001bil"]\nopenpgp = "{FPR}"\n',
            8,
            "signers.\"ev\\u001bil\": a signer name uses 1-64 letters, digits, '.', '_' or '-'",
        ),
    ],
)
def test_bad_policies_name_the_file_and_line(text: str, line: int, message: str) -> None:
    with pytest.raises(PolicyError) as info:
        parse_policy(text.encode(), "HEAD:.govsnap/trust.toml")
    assert info.value.message == f"HEAD:.govsnap/trust.toml:{line}: {message}"


def test_a_policy_that_is_not_utf8() -> None:
    with pytest.raises(PolicyError) as info:
        parse_policy(b"version = 1\n# caf\xe9\n", "t.toml")
    assert info.value.message == "t.toml:2: the file is not UTF-8"


def test_dotted_keys_are_located_too() -> None:
    text = (
        f'signers.bot.openpgp = "{FPR}"\n'
        'signers.bot.environments = ["a"]\n'
        'signers.bot.operations = ["x"]\n'
    )
    with pytest.raises(PolicyError) as info:
        parse_policy(text.encode(), "t")
    assert info.value.message.startswith("t:3: signers.bot.operations: unknown operation 'x'")


def test_the_committed_version_at_the_full_ref_is_read(make_repo: MakeRepo) -> None:
    path = make_repo()
    repo = open_repo(path)
    assert load_policy(repo) is None
    write_files(path, {".govsnap/trust.toml": signer()})
    assert load_policy(repo) is None  # not committed yet
    git(path, "add", ".govsnap")
    git(path, "commit", "-q", "-m", "policy")
    policy = load_policy(repo)
    assert policy is not None and policy.source == "refs/heads/main:.govsnap/trust.toml"
    git(path, "config", "govsnap.trustRef", "refs/heads/nowhere")
    assert load_policy(repo) is None  # no such ref: no policy (a server refuses everything)
    git(path, "config", "govsnap.trustRef", "main")
    with pytest.raises(UsageError, match=r"'main' is not a full ref name: .*refs/heads/main"):
        load_policy(repo)


def test_an_unborn_head_has_no_policy(cli: Cli, make_repo: MakeRepo) -> None:
    path = make_repo(commit=False)
    assert load_policy(open_repo(path)) is None
    # A fresh repository is told how to write one, not how to do without.
    missing = cli(path, "trust", "check")
    assert missing.code == 1 and len(missing.err.splitlines()) == 1
    assert "the policy ref refs/heads/main does not exist yet; write one with `govsnap " in (
        missing.err
    )
    assert "then git add .govsnap && git commit on it" in missing.err
    assert "requireTrust" not in missing.err


# --- the commands -------------------------------------------------------------------------


def commit_policy_file(path: Path, text: str) -> None:
    write_files(path, {".govsnap/trust.toml": text})
    git(path, "add", ".govsnap")
    git(path, "commit", "-q", "-m", "policy")


def test_trust_show_and_check(cli: Cli, make_repo: MakeRepo, keys: Keys, ssh_key: SSHKey) -> None:
    path = make_repo()
    missing = cli(path, "trust", "check")
    assert missing.code == 1
    assert missing.err == (
        "govsnap: error: every snapshot fails the trust check: no trust policy: "
        "refs/heads/main:.govsnap/trust.toml does not exist; write one with `govsnap trust "
        "init` (or `govsnap trust add-signer NAME --key KEY`), then git add .govsnap && "
        "git commit\n"
    )
    shown_missing = cli(path, "trust", "show").out
    assert "no trust policy at refs/heads/main:.govsnap/trust.toml" in shown_missing
    assert "write one with `govsnap trust init`" in shown_missing
    text = (
        "version = 1\n"
        + openpgp_signer("bot", keys.trusted, ["prod"], ["create"])
        + (
            "\n[signers.laptop]\n"
            f"ssh = 'releaser@example.com {ssh_key.public.read_text().strip()}'\n"
            "environments = ['*']\noperations = ['rollback']\n"
        )
    )
    commit_policy_file(path, text)
    check = cli(path, "trust", "check")
    assert check.code == 0, check.err
    assert check.out.startswith(
        "refs/heads/main:.govsnap/trust.toml is valid: version 1, 2 signer(s); root of trust: "
        "trust on first use of commit "
    )
    shown = cli(path, "trust", "show")
    assert shown.code == 0
    assert keys.trusted in shown.out and "laptop" in shown.out and "rollback" in shown.out
    # What this clone verified before only ever refuses a rollback: the root of trust
    # stays the first use of the policy's first version (F5).
    assert "root of trust: trust on first use of commit" in shown.out
    data = json.loads(cli(path, "trust", "show", "--json").out)
    assert data["source"] == "refs/heads/main:.govsnap/trust.toml"
    assert data["version"] == 1 and data["policy_threshold"] == 1
    assert data["commit"] == git(path, "rev-parse", "HEAD").strip()
    assert [s["name"] for s in data["signers"]] == ["bot", "laptop"]
    assert data["signers"][0] == {
        "name": "bot",
        "kind": "openpgp",
        "identity": keys.trusted,
        "environments": ["prod"],
        "operations": ["create"],
        "description": "",
        "line": 3,
        "public_key": True,
    }
    assert data["uncommitted_edit"] is False


def test_an_uncommitted_edit_is_flagged_and_checkable(cli: Cli, make_repo: MakeRepo) -> None:
    path = make_repo()
    commit_policy_file(path, signer())
    write_files(path, {".govsnap/trust.toml": signer(ops='["create", "nuke"]')})
    shown = cli(path, "trust", "show")
    assert "only the committed version counts" in shown.err
    assert cli(path, "trust", "check").code == 0
    edited = cli(path, "trust", "check", "--file", str(path / ".govsnap" / "trust.toml"))
    assert edited.code == 2
    assert edited.err == (
        f"govsnap: error: {path}/.govsnap/trust.toml:4: signers.bot.operations: unknown "
        "operation 'nuke' (known: create, rollback, prune, pin, policy, or '*')\n"
    )


def test_a_bad_committed_policy_stops_trust_and_verify_with_one_line(
    cli: Cli, make_repo: MakeRepo
) -> None:
    path = make_repo()
    assert cli(path, "create").code == 0
    commit_policy_file(path, signer(fpr="ABCD1234").replace("[signers", "version = 1\n\n[signers"))
    expected = (
        "govsnap: error: refs/heads/main:.govsnap/trust.toml:4: signers.bot.openpgp: 'ABCD1234' "
        "is a key ID, not a fingerprint: use all 40 hex digits\n"
    )
    for args in (("trust", "check"), ("trust", "show"), ("verify", "--all")):
        result = cli(path, *args)
        assert (result.code, result.err) == (2, expected), args
    assert cli(path, "trust", "check", "--ref", "HEAD~1").code == 1


def test_requiring_no_trust(cli: Cli, make_repo: MakeRepo) -> None:
    path = make_repo()
    git(path, "config", "govsnap.requireTrust", "false")
    result = cli(path, "trust", "check")
    assert result.code == 0
    assert (
        result.out
        == "no trust policy at refs/heads/main:.govsnap/trust.toml (govsnap.requireTrust=false)\n"
    )


# --- the root of trust: a change counts only when approved, back to an anchor ------------


def policy_of(keys: Keys, *extra: str, threshold: int = 1, version: int = 1) -> str:
    return (
        f"version = {version}\npolicy_threshold = {threshold}\n"
        + openpgp_signer("releaser", keys.trusted)
        + "".join(extra)
    )


def snap(cli: Cli, repo: Path, key: str) -> str:
    git(repo, "config", "govsnap.signingKey", key)
    made = cli(repo, "create", "--from", "HEAD", "--json")
    assert made.code == 0, made.err
    return str(json.loads(made.out)["snapshot"]["id"])


def test_an_unapproved_policy_change_fails_loudly(
    cli: Cli, make_repo: MakeRepo, keys: Keys
) -> None:
    path = make_repo()
    commit_policy(path, policy_of(keys))
    assert cli(path, "trust", "check").code == 0  # trusted on first use, and remembered
    # An unsigned commit widening the policy (as anyone who can push to main could make).
    write_files(
        path, {".govsnap/trust.toml": policy_of(keys, openpgp_signer("x", keys.other), version=2)}
    )
    git(path, "commit", "-qam", "widen")
    for args in (("trust", "check"), ("verify", "--all")):
        result = cli(path, *args)
        assert result.code == 1, args
        assert "changes the trust policy (version 1 -> 2) with 0 of the 1 approval(s)" in result.err
    # Approved by a signer allowed 'policy' (a signed commit), it counts.
    git(path, "reset", "-q", "--hard", "HEAD~1")
    commit_policy(path, policy_of(keys, openpgp_signer("x", keys.other)), sign_with=keys.trusted)
    assert cli(path, "trust", "check").code == 0
    assert cli(path, "verify", snap(cli, path, keys.other)).code == 0


def test_merges_keep_the_newest_version_and_refuse_an_older_one(
    cli: Cli, make_repo: MakeRepo, keys: Keys
) -> None:
    """Every parent counts: merging a branch that carries an older version (or none) is
    fine when the merge keeps the newer; a merge that takes an older version fails
    whichever parent comes first; two diverged versions need a newer, approved one."""
    path = make_repo()
    git(path, "branch", "before-policy")
    commit_policy(path, policy_of(keys))
    git(path, "branch", "old-feature")
    commit_policy(path, policy_of(keys, openpgp_signer("x", keys.other)), sign_with=keys.trusted)
    v2 = git(path, "rev-parse", "HEAD").strip()
    for branch in ("old-feature", "before-policy"):
        git(path, "checkout", "-q", branch)
        write_files(path, {f"{branch}.txt": "work\n"})
        git(path, "add", "-A")
        git(path, "commit", "-qm", f"work on {branch}")
        git(path, "checkout", "-q", "main")
        git(path, "merge", "-q", "--no-edit", branch)
    assert cli(path, "trust", "check").code == 0
    # A merge taking version 1 back, with main as its *second* parent.
    git(path, "checkout", "-q", "old-feature")
    git(path, "merge", "-q", "-s", "ours", "--no-edit", "main")
    git(path, "config", "govsnap.trustRef", "refs/heads/old-feature")
    back = cli(path, "trust", "check")
    assert back.code == 1 and "without raising its version (2 -> 1)" in back.err
    # Two versions 2 made apart: the merge must raise the version, approved by both.
    git(path, "reset", "-q", "--hard", "HEAD~1")
    commit_policy(path, policy_of(keys, openpgp_signer("y", keys.other)), sign_with=keys.trusted)
    git(path, "merge", "-q", "--no-edit", "-X", "theirs", v2)
    assert "without raising its version (2 -> 2)" in cli(path, "trust", "check").err
    write_files(path, {".govsnap/trust.toml": policy_of(keys, version=3)})
    git(path, "add", "-A")
    git(path, "-c", f"user.signingKey={keys.trusted}", "commit", "-S", "-q", "--amend", "--no-edit")
    assert cli(path, "trust", "check").code == 0


def test_a_version_that_does_not_grow_is_refused(cli: Cli, make_repo: MakeRepo, keys: Keys) -> None:
    path = make_repo()
    commit_policy(path, policy_of(keys, openpgp_signer("x", keys.other)))
    write_files(path, {".govsnap/trust.toml": policy_of(keys)})  # same version, narrower
    git(path, "-c", f"user.signingKey={keys.trusted}", "commit", "-S", "-qam", "back")
    result = cli(path, "trust", "check")
    assert result.code == 1 and "without raising its version (1 -> 1)" in result.err


def test_approvals_meet_a_threshold_and_survive_a_forge_merge(
    cli: Cli, make_repo: MakeRepo, keys: Keys
) -> None:
    """With policy_threshold = 2, a change needs two signers allowed 'policy'; approvals
    are detached signatures committed with it, so whoever (or whatever) commits counts
    for nothing by itself."""
    both = openpgp_signer("second", keys.other, ["*"], ["policy"])
    path = make_repo()
    commit_policy(path, policy_of(keys, both, threshold=2))
    assert cli(path, "trust", "check").code == 0
    write_files(path, {".govsnap/trust.toml": policy_of(keys, both, threshold=2, version=2)})
    git(path, "config", "govsnap.signingKey", keys.trusted)
    assert cli(path, "trust", "approve").code == 0
    git(path, "add", ".govsnap")
    git(path, "commit", "-qm", "one approval (the commit itself is unsigned)")
    one = cli(path, "trust", "check")
    assert one.code == 1 and "with 1 of the 2 approval(s)" in one.err
    git(path, "config", "govsnap.signingKey", keys.other)
    assert cli(path, "trust", "approve").code == 0
    git(path, "add", ".govsnap")
    git(path, "commit", "--amend", "-qm", "two approvals")
    assert cli(path, "trust", "check").code == 0
    assert len(list((path / ".govsnap" / "approvals").iterdir())) == 2


def test_the_anchor_key_must_have_signed_the_first_version(
    cli: Cli, make_repo: MakeRepo, keys: Keys
) -> None:
    path = make_repo()
    commit_policy(path, policy_of(keys), sign_with=keys.other)  # signed, by the wrong key
    git(path, "config", "govsnap.trustAnchor", keys.trusted)
    refused = cli(path, "trust", "check")
    assert refused.code == 1 and "is not signed by a pinned anchor key" in refused.err
    git(path, "reset", "-q", "--hard", "HEAD~1")
    commit_policy(path, policy_of(keys), sign_with=keys.trusted)
    accepted = cli(path, "trust", "check")
    assert accepted.code == 0 and "first version signed by pinned key" in accepted.out


def test_a_pinned_commit_anchors_the_policy(cli: Cli, make_repo: MakeRepo, keys: Keys) -> None:
    path = make_repo()
    commit_policy(path, policy_of(keys))
    anchor = git(path, "rev-parse", "HEAD").strip()
    git(path, "config", "govsnap.trustAnchorCommit", anchor)
    assert "pinned commit" in cli(path, "trust", "check").out
    git(path, "update-ref", "-d", "refs/govsnap-verified/policy/refs/heads/main")
    git(path, "checkout", "-q", "--orphan", "other")
    commit_policy(path, policy_of(keys))
    git(path, "config", "govsnap.trustRef", "refs/heads/other")
    result = cli(path, "trust", "check")
    assert result.code == 1 and "does not descend from the pinned policy commit" in result.err


def test_a_clone_detects_its_policy_branch_rolled_back(
    cli: Cli, make_repo: MakeRepo, keys: Keys
) -> None:
    path = make_repo()
    commit_policy(path, policy_of(keys))
    commit_policy(path, policy_of(keys, openpgp_signer("x", keys.other)), sign_with=keys.trusted)
    assert cli(path, "trust", "check").code == 0  # this clone verified version 2
    git(path, "reset", "-q", "--hard", "HEAD~1")  # someone force-pushed main back
    result = cli(path, "verify", "--all")
    assert result.code == 1 and "refs/heads/main was rewritten" in result.err
    assert "git update-ref refs/heads/main" in result.err
    git(path, "rm", "-q", ".govsnap/trust.toml")
    git(path, "commit", "-qm", "no more policy")
    gone = cli(path, "trust", "check")
    assert gone.code == 1 and "has no .govsnap/trust.toml" in gone.err


# --- editing the policy -------------------------------------------------------------------


def test_trust_init_add_and_remove_signers_keep_comments(
    cli: Cli, make_repo: MakeRepo, keys: Keys, ssh_key: SSHKey
) -> None:
    path = make_repo()
    dry = cli(path, "trust", "init", "owner", "--dry-run")
    assert dry.code == 0 and "[signers.owner]" in dry.out
    assert not (path / ".govsnap" / "trust.toml").exists()
    assert cli(path, "trust", "init", "owner", "-e", "production").code == 0
    text = (path / ".govsnap" / "trust.toml").read_text()
    assert keys.trusted in text and "BEGIN PGP PUBLIC KEY BLOCK" in text
    assert cli(path, "trust", "init", "again").code == 2  # never over an existing policy
    policy_file = path / ".govsnap" / "trust.toml"
    policy_file.write_text(policy_file.read_text() + "# reviewed by platform engineering\n")
    added = cli(
        path,
        "trust",
        "add-signer",
        "bot",
        "--key",
        "other@example.com",
        "-e",
        "staging-*",
        "-o",
        "create",
    )
    assert added.code == 0, added.err
    laptop = cli(
        path, "trust", "add-signer", "laptop", "--key", str(ssh_key.public), "-o", "rollback"
    )
    assert laptop.code == 0, laptop.err
    assert cli(path, "trust", "add-signer", "bot", "--key", keys.other).code == 2
    assert cli(path, "trust", "add-signer", "nobody", "--key", "no-such@example.com").code == 2
    edited = policy_file.read_text()
    assert "# reviewed by platform engineering" in edited and "# govsnap trust policy" in edited
    assert cli(path, "trust", "check", "--file", str(policy_file)).code == 0
    data = json.loads(cli(path, "trust", "check", "--file", str(policy_file), "--json").out)
    assert [s["name"] for s in data["signers"]] == ["owner", "bot", "laptop"]
    assert data["signers"][1]["environments"] == ["staging-*"] and data["signers"][1]["public_key"]
    assert cli(path, "trust", "remove-signer", "bot").code == 0
    assert cli(path, "trust", "remove-signer", "bot").code == 2
    final = json.loads(cli(path, "trust", "check", "--file", str(policy_file), "--json").out)
    assert [s["name"] for s in final["signers"]] == ["owner", "laptop"]
    assert "# reviewed by platform engineering" in policy_file.read_text()
    git(path, "add", ".govsnap")
    git(path, "commit", "-qm", "policy")
    assert cli(path, "trust", "check").code == 0


def test_add_signer_takes_an_exported_public_key_without_importing_it(
    cli: Cli, make_repo: MakeRepo, keys: Keys, tmp_path: Path
) -> None:
    """A colleague sends `gpg --armor --export` output: add-signer puts exactly that key in
    the policy and leaves the keyring it signs with as it was."""
    path = make_repo()
    assert cli(path, "trust", "init", "owner").code == 0
    with keyrings() as rings:
        bob = rings.generate("bob")
        sent = export_public_key(bob, tmp_path)
        before = gpg_listing()
        added = cli(path, "trust", "add-signer", "bob", "--key", str(sent), "-e", "staging")
        assert added.code == 0, added.err
        assert gpg_listing() == before  # nothing imported
        policy_file = path / ".govsnap" / "trust.toml"
        data = json.loads(cli(path, "trust", "check", "--file", str(policy_file), "--json").out)
        bob_entry = next(s for s in data["signers"] if s["name"] == "bob")
        assert bob_entry["identity"] == bob.fingerprint and bob_entry["environments"] == ["staging"]
        written = tomllib.loads(policy_file.read_text())["signers"]["bob"]["public_key"]
        assert written.strip() == public_key_of(bob).decode().strip()

        # Bad input: one line, exit 2, the policy file untouched.
        text = policy_file.read_text()
        both = tmp_path / "both.asc"
        both.write_bytes(public_key_of(bob) + public_key(keys.other).encode())
        garbage = tmp_path / "garbage.asc"
        garbage.write_text(
            "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nnot a key\n"
            "-----END PGP PUBLIC KEY BLOCK-----\n"
        )
        secret = tmp_path / "secret.asc"
        secret.write_text("-----BEGIN PGP PRIVATE KEY BLOCK-----\n...\n")
        for bad, says in (
            (both, "holds 2 OpenPGP keys: export one"),
            (garbage, "holds no OpenPGP public key gpg can read"),
            (secret, "is neither an SSH public key file"),
        ):
            result = cli(path, "trust", "add-signer", "carol", "--key", str(bad))
            assert result.code == 2 and says in result.err, result.err
            assert len(result.err.splitlines()) == 1
        unknown = cli(path, "trust", "add-signer", "carol", "--key", bob.fingerprint)
        assert unknown.code == 2
        assert f"gpg --armor --export {bob.fingerprint} > key.asc" in unknown.err
        assert policy_file.read_text() == text


def gpg_listing() -> str:
    """Return the public keys of the session's keyring, as gpg lists them."""
    proc = subprocess.run(
        ["gpg", "--batch", "--with-colons", "--list-keys"], capture_output=True, check=True
    )
    return proc.stdout.decode()


def test_a_public_key_must_be_the_declared_key(cli: Cli, make_repo: MakeRepo, keys: Keys) -> None:
    swapped = openpgp_signer("bot", keys.other).replace(
        f'openpgp = "{keys.other}"', f'openpgp = "{keys.trusted}"'
    )
    path = make_repo({".govsnap/trust.toml": "version = 1\n" + swapped})
    result = cli(path, "trust", "check")
    assert result.code == 2
    assert result.err == (
        "govsnap: error: refs/heads/main:.govsnap/trust.toml: signers.bot.public_key does not "
        f"hold the declared key {keys.trusted} (gpg --armor --export {keys.trusted})\n"
    )
    extra = "version = 1\n" + openpgp_signer("bot", keys.trusted).replace(
        "-----END PGP PUBLIC KEY BLOCK-----\n",
        "-----END PGP PUBLIC KEY BLOCK-----\n" + public_key(keys.other),
    )
    other = make_repo({".govsnap/trust.toml": extra})
    result = cli(other, "verify", "--all")
    assert result.code == 2 and f"holds key {keys.other}, which no signer declares" in result.err


def test_entries_a_retired_signer_made_stay_records(
    cli: Cli, make_repo: MakeRepo, keys: Keys, tmp_path: Path
) -> None:
    """A key removed from the policy (rotated out) signed audit entries while it was
    listed: a fresh clone joins them and audit verify accepts them; they decide nothing."""
    seed = make_repo()
    commit_policy(seed, policy_of(keys, openpgp_signer("alice", keys.other)))
    snap(cli, seed, keys.other)  # alice's create entry
    snap(cli, seed, keys.trusted)
    commit_policy(seed, policy_of(keys), "alice rotated out", sign_with=keys.trusted)
    bare = tmp_path / "remote.git"
    git(tmp_path, "clone", "-q", "--bare", str(seed), str(bare))
    git(seed, "remote", "add", "origin", str(bare))
    assert cli(seed, "push").code == 0
    assert cli(seed, "audit", "verify").code == 0
    fresh = tmp_path / "fresh"
    git(tmp_path, "clone", "-q", str(bare), str(fresh))
    fetched = cli(fresh, "fetch")
    assert fetched.code == 1  # alice's snapshot no longer verifies (not trusted now)...
    assert "audit trail" not in fetched.err  # ...but the trail she signed is joined
    remote_tip = git(bare, "rev-parse", "refs/govsnap/audit").strip()
    git(fresh, "merge-base", "--is-ancestor", remote_tip, "refs/govsnap/audit")
    assert cli(fresh, "audit", "verify").code == 0
