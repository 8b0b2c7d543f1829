"""The policy governs the ref it names (red team 2, finding 09): a clone that pins only
the anchor reads the policy on the checked-out branch, and an older release branch cut
while a signer was trusted carries a copy that still trusts her. With `ref` in the policy
(written by `trust init`, covered by its approvals) the copy leads back to the policy's
own ref; read anywhere else on purpose it is refused; a policy without `ref` still works
and says why it should name one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import Cli, Keys, MakeRepo, create_snapshot, git
from tests.helpers.tamper import commit_policy, policy_text

MAIN = "refs/heads/main"


def bound(text: str, ref: str = MAIN) -> str:
    return text.replace("version = 1\n", f'version = 1\nref = "{ref}"\n', 1)


@pytest.fixture
def released(make_repo: MakeRepo, keys: Keys) -> Path:
    """main: v1 (trusted), v2 (+mallory, the other key), release/1.0 cut, v3 (-mallory);
    every policy commit signed by the trusted key (an approval)."""
    repo = make_repo({"app.txt": "v1\n"})
    git(repo, "config", "govsnap.trustAnchor", keys.trusted)
    alone = {"alice": (keys.trusted, ["*"], ["*"])}
    both = {**alone, "mallory": (keys.other, ["production"], ["create", "rollback"])}
    commit_policy(repo, bound(policy_text(alone)), sign_with=keys.trusted)
    commit_policy(repo, bound(policy_text(both)), "add mallory", sign_with=keys.trusted)
    git(repo, "branch", "release/1.0")
    commit_policy(repo, bound(policy_text(alone)), "remove mallory", sign_with=keys.trusted)
    return repo


def mallory_snapshot(cli: Cli, repo: Path, keys: Keys) -> str:
    git(repo, "config", "govsnap.signingKey", keys.other)
    ident = create_snapshot(cli, repo, "--environment", "production", "--label", "hotfix")
    git(repo, "config", "govsnap.signingKey", keys.trusted)
    return ident


def test_an_old_branch_does_not_bring_back_a_removed_signer(
    released: Path, cli: Cli, keys: Keys
) -> None:
    git(released, "checkout", "-q", "release/1.0")
    ident = mallory_snapshot(cli, released, keys)
    result = cli(released, "verify", ident, "--json")
    assert result.code != 0
    report = json.loads(result.out)
    assert report["policy"].startswith(MAIN + ":"), report["policy"]
    shown = cli(released, "trust", "show", "--json")
    assert shown.code == 0, shown.err
    policy = json.loads(shown.out)
    assert policy["source"] == f"{MAIN}:.govsnap/trust.toml"
    assert [s["name"] for s in policy["signers"]] == ["alice"]


def test_reading_the_copy_on_purpose_is_refused(released: Path, cli: Cli) -> None:
    result = cli(released, "trust", "show", "--ref", "refs/heads/release/1.0")
    assert result.code != 0
    assert "is the policy of refs/heads/main (its `ref`), not of refs/heads/release/1.0" in (
        result.err
    )
    git(released, "config", "govsnap.trustRef", "refs/heads/release/1.0")
    assert cli(released, "trust", "check").code != 0


def test_a_clone_without_the_policy_ref_fails_closed(
    released: Path, cli: Cli, keys: Keys, tmp_path: Path
) -> None:
    deploy = tmp_path / "deploy"
    git(tmp_path, "clone", "-q", "-b", "release/1.0", str(released), str(deploy))
    git(deploy, "config", "govsnap.trustAnchor", keys.trusted)
    git(deploy, "config", "govsnap.signingKey", keys.trusted)
    ident = mallory_snapshot(cli, deploy, keys)
    result = cli(deploy, "verify", ident)
    assert result.code != 0
    assert "governs refs/heads/main, which this clone does not have" in result.out + result.err


def test_a_policy_naming_no_ref_still_works_and_says_so(
    make_repo: MakeRepo, cli: Cli, keys: Keys
) -> None:
    repo = make_repo({"app.txt": "v1\n"})
    commit_policy(repo, policy_text({"alice": (keys.trusted, ["*"], ["*"])}))
    shown = cli(repo, "trust", "show", "--json")
    assert shown.code == 0, shown.err
    caveats = json.loads(shown.out)["caveats"]
    assert any("names no `ref` it governs" in c for c in caveats), caveats
    git(repo, "config", "govsnap.trustRef", MAIN)
    assert json.loads(cli(repo, "trust", "show", "--json").out)["caveats"] == []


def test_trust_init_writes_the_ref_it_governs(make_repo: MakeRepo, cli: Cli, keys: Keys) -> None:
    repo = make_repo({"app.txt": "v1\n"})
    result = cli(repo, "trust", "init", "alice", "--key", keys.trusted)
    assert result.code == 0, result.err
    assert f'ref = "{MAIN}"' in (repo / ".govsnap" / "trust.toml").read_text()


def test_an_approval_on_a_proposal_branch_names_the_policy_ref(
    make_repo: MakeRepo, cli: Cli, keys: Keys
) -> None:
    repo = make_repo({"app.txt": "v1\n"})
    assert cli(repo, "trust", "init", "alice", "--key", keys.trusted).code == 0
    git(repo, "add", ".govsnap")
    git(repo, "commit", "-q", "-m", "policy")
    git(repo, "checkout", "-q", "-b", "proposal")
    added = cli(repo, "trust", "add-signer", "bob", "--key", keys.other)
    assert added.code == 0, added.err
    assert cli(repo, "trust", "approve").code == 0
    approvals = list((repo / ".govsnap" / "approvals").iterdir())
    assert all(f"ref {MAIN}\n".encode() in a.read_bytes() for a in approvals)
    git(repo, "add", "-A", ".govsnap")
    git(repo, "commit", "-q", "-m", "add bob")
    git(repo, "checkout", "-q", "main")
    git(repo, "merge", "-q", "--ff-only", "proposal")
    checked = cli(repo, "trust", "check")
    assert checked.code == 0, checked.err
