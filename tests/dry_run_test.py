"""`--dry-run` of fetch, pin and unpin (init's is in configure_test): everything the
command checks is checked, what it would do is said, and nothing of the clone changes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import (
    Cli,
    Keys,
    MakeRepo,
    Shared,
    create_snapshot,
    git,
    refs,
    run_ok,
    trust_policy,
)


def clone_state(path: Path) -> dict[str, str]:
    """Every ref a fetch or a pin may change, as git lists them: not the remote-tracking
    refs, nor the trust policy commit this clone verified, which any command reading the
    policy records (as ssh records a host key); the audit tips it verified, yes."""
    every = refs(path, "refs/")
    aside = ("refs/govsnap-remote/", "refs/govsnap-verified/policy/")
    return {ref: oid for ref, oid in every.items() if not ref.startswith(aside)}


@pytest.fixture
def shared(tmp_path: Path, make_repo: MakeRepo, keys: Keys) -> Shared:
    """A bare remote with a trust policy, and clones a and b of it."""
    seed = make_repo({"README.md": "seed\n", ".govsnap/trust.toml": trust_policy(keys)})
    bare = tmp_path / "remote.git"
    git(tmp_path, "clone", "-q", "--bare", str(seed), str(bare))
    first = Shared(tmp_path, bare, seed, seed)
    return Shared(tmp_path, bare, first.clone("a"), first.clone("b"))


def test_fetch_dry_run_says_what_it_would_add_and_changes_nothing(
    shared: Shared, cli: Cli
) -> None:
    made = {create_snapshot(cli, shared.a), create_snapshot(cli, shared.a, "-e", "staging")}
    create_snapshot(cli, shared.b)
    run_ok(cli, shared.a, "push")
    before = clone_state(shared.b)

    would = json.loads(run_ok(cli, shared.b, "fetch", "--dry-run", "--json"))

    assert would["dry_run"] is True and set(would["added"]) == made
    assert would["audit"] == "joined" and would["ok"] is True
    assert clone_state(shared.b) == before
    text = run_ok(cli, shared.b, "fetch", "-n")
    assert "dry run, nothing changed: would have 2 snapshot(s) added" in text
    assert clone_state(shared.b) == before

    done = json.loads(run_ok(cli, shared.b, "fetch", "--json"))
    assert done["dry_run"] is False and set(done["added"]) == made
    assert (done["notes"], done["audit"]) == (would["notes"], would["audit"])


@pytest.mark.parametrize("command", ["pin", "unpin"])
def test_pin_and_unpin_dry_run_change_nothing(
    cli: Cli, make_repo: MakeRepo, keys: Keys, command: str
) -> None:
    repo = make_repo({"README.md": "v1\n", ".govsnap/trust.toml": trust_policy(keys)})
    ident = create_snapshot(cli, repo)
    if command == "unpin":
        run_ok(cli, repo, "pin", ident)
    before = clone_state(repo)

    would = json.loads(run_ok(cli, repo, command, ident, "--dry-run", "--json"))

    assert (would["changed"], would["dry_run"]) == (True, True)
    assert would["pinned"] is (command == "pin")
    assert clone_state(repo) == before
    assert f"would {command} snapshot {ident}" in run_ok(cli, repo, command, "-n", ident)
    assert clone_state(repo) == before


def test_pin_dry_run_refuses_what_pin_would_refuse(
    cli: Cli, make_repo: MakeRepo, keys: Keys
) -> None:
    repo = make_repo({"README.md": "v1\n", ".govsnap/trust.toml": trust_policy(keys)})
    ident = create_snapshot(cli, repo)
    git(repo, "config", "govsnap.signingKey", keys.other)  # a key the policy does not know
    before = clone_state(repo)
    result = cli(repo, "pin", ident, "--dry-run")
    assert result.code == 1 and result.err.startswith(f"govsnap: error: cannot pin {ident}")
    assert clone_state(repo) == before
