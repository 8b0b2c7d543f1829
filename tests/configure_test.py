"""govsnap init: defaults, key generation, signing check."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.conftest import Cli, MakeRepo, git, snapshot_ids


def test_init_writes_defaults_once_and_keeps_existing_values(
    cli: Cli, make_repo: MakeRepo
) -> None:
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


def test_init_reports_a_broken_signing_setup_with_exit_3(cli: Cli, make_repo: MakeRepo) -> None:
    repo = make_repo()
    git(repo, "config", "govsnap.signingKey", "F" * 40)
    result = cli(repo, "init")
    assert result.code == 3
    assert "signing FAILS" in result.err


def test_init_outside_a_repository(cli: Cli, tmp_path: Path) -> None:
    result = cli(tmp_path, "init")
    assert result.code == 3 and "not a git repository" in result.err
