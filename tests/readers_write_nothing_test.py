"""Read-only commands and dry runs write no object (red team 2, finding 10): `doctor`,
`doctor --fix --dry-run` and `diff <id>` captured the working tree with `git add -A`
into the repository's own object store, leaving every untracked file's content (a local
`.env` secret, say) in `.git/objects`. Judged by git: `git cat-file -e` on the file's
blob id, and `git count-objects`."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.helpers import Cli, create_snapshot, git


def stored(repo: Path, path: Path) -> bool:
    blob = git(repo, "hash-object", str(path)).strip()
    return subprocess.run(["git", "cat-file", "-e", blob], cwd=repo, check=False).returncode == 0


@pytest.mark.parametrize(
    "command", [("doctor",), ("doctor", "--fix", "--dry-run"), ("diff", "SNAP", "--json")]
)
def test_a_reader_stores_no_untracked_content(
    cli: Cli, repo: Path, command: tuple[str, ...]
) -> None:
    ident = create_snapshot(cli, repo, "--label", "a")
    secret = repo / ".env"
    secret.write_text(f"SECRET_TOKEN=not-for-the-object-store {command}\n")
    before = git(repo, "count-objects", "-v")
    result = cli(repo, *(ident if part == "SNAP" else part for part in command))
    assert result.code in (0, 1), result.err
    assert not stored(repo, secret)
    assert git(repo, "count-objects", "-v") == before
    if command[0] == "diff":
        assert ".env" in json.loads(result.out)["added"]  # the diff still sees it
