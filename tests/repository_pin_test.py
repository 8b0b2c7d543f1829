"""Approvals bound to one repository (red team 2, findings 04 and 13). A fork shares the
policy ref's name, the policy's bytes and its commits, so an approval given in a fork
counted in the original, and a signed commit approved its change wherever it went (a
policy signer rebasing a contributor's branch re-signed a hidden policy change). With
`govsnap.repository` pinned, an approval statement must name the repository and a
signed commit approves nothing."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.helpers import Cli, Keys, MakeRepo, git

Y = "example.com/acme/y"
X = "example.com/alice/sandbox"


def push(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "push", *args], cwd=repo, capture_output=True, text=True, check=False
    )


@pytest.fixture
def y(tmp_path: Path, cli: Cli, keys: Keys, make_repo: MakeRepo) -> tuple[Path, Path]:
    """Y's server (the hook, anchor and repository pinned) and alice's clone of Y, whose
    policy's first version she approved as a statement naming Y."""
    server = tmp_path / "y.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(server))
    git(server, "config", "govsnap.trustAnchor", keys.trusted)
    git(server, "config", "govsnap.repository", Y)
    installed = cli(server, "hooks", "install", "--server", "--trust-ref", "refs/heads/main")
    assert installed.code == 0, installed.err
    alice = make_repo({"app.txt": "v1\n"}, name="alice-y")
    git(alice, "config", "govsnap.repository", Y)
    git(alice, "config", "govsnap.trustAnchor", keys.trusted)
    made = cli(alice, "trust", "init", "alice", "--key", keys.trusted)
    assert made.code == 0, made.err
    git(alice, "add", ".govsnap")
    git(alice, "commit", "-q", "-m", "govsnap: trust policy")
    git(alice, "remote", "add", "origin", str(server))
    pushed = push(alice, "origin", "main")
    assert pushed.returncode == 0, pushed.stderr
    return server, alice


def add_mallory(cli: Cli, clone: Path, keys: Keys) -> None:
    added = cli(clone, "trust", "add-signer", "mallory", "--key", keys.other, "-o", "create")
    assert added.code == 0, added.err


def test_an_approval_given_in_a_fork_does_not_count_in_the_original(
    y: tuple[Path, Path], cli: Cli, keys: Keys, tmp_path: Path
) -> None:
    server, alice = y
    # X: alice's sandbox fork of Y, where she legitimately lets mallory create snapshots.
    # A fork that is a repository of its own names itself and starts its trust at the
    # policy it forked (Y's approvals name Y).
    fork = tmp_path / "x"
    git(tmp_path, "clone", "-q", str(server), str(fork))
    for key, value in (
        ("govsnap.signingKey", keys.trusted),
        ("govsnap.trustAnchorCommit", git(fork, "rev-parse", "HEAD").strip()),
        ("govsnap.repository", X),
    ):
        git(fork, "config", key, value)
    add_mallory(cli, fork, keys)
    assert cli(fork, "trust", "approve").code == 0
    git(fork, "add", "-A", ".govsnap")
    git(fork, "commit", "-q", "-m", "sandbox: let mallory create snapshots")
    assert cli(fork, "trust", "check").code == 0  # it counts in the fork

    # Mallory, with push access to Y and no key Y trusts, replays the fork's commit.
    mallory = tmp_path / "m"
    git(tmp_path, "clone", "-q", str(server), str(mallory))
    git(mallory, "fetch", "-q", str(fork), "main")
    git(mallory, "merge", "-q", "--ff-only", "FETCH_HEAD")
    replayed = push(mallory, "origin", "main")
    assert replayed.returncode != 0
    assert f"names repository {X}, not {Y} (govsnap.repository)" in replayed.stderr
    assert "mallory" not in git(server, "show", "main:.govsnap/trust.toml")

    # The same change approved in Y itself counts (the refusal above is the binding).
    add_mallory(cli, alice, keys)
    assert cli(alice, "trust", "approve").code == 0
    git(alice, "add", "-A", ".govsnap")
    git(alice, "commit", "-q", "-m", "let mallory create snapshots")
    accepted = push(alice, "origin", "main")
    assert accepted.returncode == 0, accepted.stderr


def test_a_rebase_signed_by_a_policy_signer_approves_nothing(
    y: tuple[Path, Path], cli: Cli, keys: Keys
) -> None:
    _, alice = y
    # A contributor's branch hides a policy change; alice re-signs it as a rebase does.
    git(alice, "checkout", "-q", "-b", "contribution")
    add_mallory(cli, alice, keys)
    (alice / "app.txt").write_text("v2\n")
    git(alice, "add", "-A")
    git(alice, "-c", "user.name=Contributor", "commit", "-q", "-m", "fix typo")
    git(
        alice, "rebase", "-q", "--exec", f"git commit -q --amend --no-edit -S{keys.trusted}", "main"
    )
    git(alice, "verify-commit", "HEAD")  # the commit is signed by a policy signer
    git(alice, "checkout", "-q", "main")
    git(alice, "merge", "-q", "--ff-only", "contribution")
    checked = cli(alice, "trust", "check")
    assert checked.code != 0
    assert "approves nothing where govsnap.repository is pinned" in checked.err
    pushed = push(alice, "origin", "main")
    assert pushed.returncode != 0
    assert "approves nothing where govsnap.repository is pinned" in pushed.stderr
