"""Red team round 2, the robustness findings (/work/team/rt2/findings/): unsigned data that
anyone with push access writes (notes, audit entries, a policy edit, junk refs) is shown
or refused in one line; it never crashes a command, decides a verification or blocks
sharing. Each test plays the finding's script: a bare server running govsnap's hook, a
bare forge running none, the trusted clone (alice) and a keyless pusher (mallory) using
stock git."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import Cli, Keys, MakeRepo, create_snapshot, git, govsnap_bin
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
