"""govsnap init: defaults, key generation, signing check."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.helpers import Cli, MakeRepo, git, govsnap_bin, snapshot_ids


def test_init_writes_defaults_once_and_keeps_existing_values(cli: Cli, make_repo: MakeRepo) -> None:
    repo = make_repo()
    git(repo, "config", "govsnap.keepLast", "7")
    result = cli(repo, "init", "--json")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert report["config_kept"]["govsnap.keepLast"] == "7"
    assert git(repo, "config", "govsnap.environment").strip() == "default"
    assert report["signing_ok"] is True
    again = json.loads(cli(repo, "init", "--json").out)
    assert again["config_set"] == {}


def test_generate_key_in_a_named_keyring_signs_snapshots(
    cli: Cli, make_repo: MakeRepo, tmp_path: Path
) -> None:
    repo = make_repo(signed=False)
    keyring = tmp_path / "kr"
    result = cli(repo, "init", "--generate-key", "--keyring", str(keyring), "-e", "prod")
    assert result.code == 0, result.err
    assert "generated OpenPGP signing key" in result.out
    fingerprint = git(repo, "config", "govsnap.signingKey").strip()
    assert len(fingerprint) == 40
    assert git(repo, "config", "govsnap.gpgHome").strip() == str(keyring.resolve())
    assert cli(repo, "create").code == 0
    ref = f"refs/govsnap/snapshots/{snapshot_ids(repo)[0]}"
    # Stock git checks it against the keyring the key was generated in.
    proc = subprocess.run(
        ["git", "verify-tag", "--raw", ref],
        cwd=repo,
        capture_output=True,
        text=True,
        env={**os.environ, "GNUPGHOME": str(keyring)},
        check=False,
    )
    assert proc.returncode == 0 and f"VALIDSIG {fingerprint}" in proc.stderr
    subprocess.run(["gpgconf", "--homedir", str(keyring), "--kill", "all"], check=False)


def test_init_reports_a_broken_signing_setup_with_exit_3(cli: Cli, make_repo: MakeRepo) -> None:
    repo = make_repo()
    git(repo, "config", "govsnap.signingKey", "F" * 40)
    result = cli(repo, "init")
    assert result.code == 3
    assert "signing FAILS" in result.err


def test_init_outside_a_repository(cli: Cli, tmp_path: Path) -> None:
    result = cli(tmp_path, "init")
    assert result.code == 3 and "not a git repository" in result.err


def test_init_in_a_fresh_repository_ends_with_a_policy_that_verifies(
    cli: Cli, make_repo: MakeRepo, tmp_path: Path
) -> None:
    """One command to a trusted setup: init makes the key, writes the policy naming it
    (with its public key, approved by it), pins it as this clone's anchor, and says what
    is left; a fresh clone with no keyring at all verifies with the policy's keys."""
    repo = make_repo(signed=False)
    keyring = tmp_path / "kr"
    dry = cli(repo, "init", "--generate-key", "--keyring", str(keyring), "--dry-run")
    assert dry.code == 0 and "would write .govsnap/trust.toml" in dry.out
    assert not (repo / ".govsnap").exists() and not keyring.exists()
    configured = subprocess.run(
        ["git", "config", "--get-regexp", "^govsnap"], cwd=repo, capture_output=True, check=False
    )
    assert configured.stdout == b""
    result = cli(repo, "init", "--generate-key", "--keyring", str(keyring), "-e", "production")
    assert result.code == 0, result.err
    fingerprint = git(repo, "config", "govsnap.signingKey").strip()
    assert "next: git add .govsnap && git commit" in result.out
    assert git(repo, "config", "govsnap.trustAnchor").strip() == fingerprint
    assert git(repo, "config", "govsnap.trustRef").strip() == "refs/heads/main"
    again = cli(repo, "init", "--generate-key", "--keyring", str(keyring))
    assert again.code == 0 and f"kept the configured signing key {fingerprint}" in again.out
    assert git(repo, "config", "govsnap.signingKey").strip() == fingerprint
    git(repo, "add", ".govsnap")
    git(repo, "commit", "-q", "-m", "govsnap: trust policy")
    made = cli(repo, "create", "-e", "production", "--json")
    assert made.code == 0, made.err
    verified = cli(repo, "verify", "--all")
    assert verified.code == 0, verified.out + verified.err

    clone = tmp_path / "fresh"
    git(tmp_path, "clone", "-q", str(repo), str(clone))
    git(
        clone, "fetch", "-q", "origin", "refs/govsnap/*:refs/govsnap/*", "refs/notes/*:refs/notes/*"
    )
    git(clone, "config", "govsnap.trustAnchor", fingerprint)
    empty = tmp_path / "no-keys"
    empty.mkdir(mode=0o700)
    proc = subprocess.run(
        [govsnap_bin(), "verify", "--all"],
        cwd=clone,
        capture_output=True,
        text=True,
        env={**os.environ, "GNUPGHOME": str(empty)},
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "PASS: 1 snapshot(s) verified" in proc.stdout
    assert not any(empty.iterdir())  # nothing was imported into anyone's keyring
    # The generated key's keyring started a gpg-agent: stop it.
    subprocess.run(["gpgconf", "--homedir", str(keyring), "--kill", "all"], check=False)
