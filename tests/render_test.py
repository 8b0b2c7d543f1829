"""Rendering trusts no note field's type: notes are plain JSON that anyone with write
access can edit (`git notes add -f`), so a list or show must not crash on them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import Cli, git, snapshot_ids

HOSTILE_NOTES = [
    {"bytes": None, "files": 1},
    {"bytes": "12", "files": [1]},
    {"bytes": 1e400, "files": 1},  # JSON Infinity, which Python's json reads
    {"bytes": True, "signature": True},
    {"signature": ["x"], "artifacts": [1, 2]},
    {"artifacts": {".py": None, ".md": {"count": "x", "bytes": "y"}, ".txt": []}},
    {"artifacts": "many"},
]


@pytest.mark.parametrize("note", HOSTILE_NOTES)
def test_listing_and_showing_survive_any_note(
    cli: Cli, repo: Path, note: dict[str, object]
) -> None:
    assert cli(repo, "create", "--unsigned").code == 0
    (ident,) = snapshot_ids(repo)
    ref = f"refs/govsnap/snapshots/{ident}"
    current = json.loads(git(repo, "notes", "--ref=govsnap", "show", ref))
    body = json.dumps({**current, **note})
    git(repo, "notes", "--ref=govsnap", "add", "-f", "-m", body, ref)
    for args in (
        ["list"],
        ["list", "--json"],
        ["show", ident],
        ["show", ident, "--json"],
        ["stats"],
    ):
        result = cli(repo, *args)
        assert result.code == 0, (args, result.err)
        assert "internal error" not in result.err
