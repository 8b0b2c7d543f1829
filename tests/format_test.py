"""docs/format.md's shell recipes, run verbatim, agree with what govsnap wrote."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
from pathlib import Path

from govsnap.digest import digest_tree
from govsnap.repo import open_repo
from tests.helpers import Cli, MakeRepo, git

FORMAT_DOC = Path(__file__).resolve().parents[1] / "docs" / "format.md"


def recipes() -> list[str]:
    """Return the ```sh blocks of docs/format.md."""
    return re.findall(r"```sh\n(.*?)```", FORMAT_DOC.read_text(), flags=re.S)


def run_sh(script: str, cwd: Path, ref: str) -> str:
    proc = subprocess.run(
        ["bash", "-c", f"set -eo pipefail\nref={ref}\n{script}"],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    return proc.stdout.strip()


def test_id_and_digest_recomputed_with_git_and_sha256sum(cli: Cli, make_repo: MakeRepo) -> None:
    repo = make_repo(
        {
            "a file with spaces.txt": "x\n",
            "naïve/文件.md": "unicode\n",
            "a.b": "sorted before a/b\n",
            "a/b": "nested\n",
            "a-b/c": "a directory sorting before a/\n",
            "line\nbreak": "a name holding a newline\n",
            "empty": "",
            "bin.dat": bytes(range(256)),
        }
    )
    tool = repo / "tool.sh"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    os.symlink("a/b", repo / "link")
    result = cli(repo, "create", "--json", "--label", "fmt")
    assert result.code == 0, result.err
    snap = json.loads(result.out)["snapshot"]
    ref = snap["ref"]
    id_block, digest_block, _format_1 = (b for b in recipes() if "sha256sum" in b)
    id_line = [line for line in id_block.splitlines() if not line.startswith("ref=")]
    assert run_sh("\n".join(id_line), repo, ref) == snap["id"]
    assert "sha256:" + run_sh(digest_block, repo, ref) == snap["payload"]["digest"]
    tag = git(repo, "cat-file", "tag", ref)
    assert "Govsnap-Format: 2\n" in tag
    assert f"Govsnap-Digest: {snap['payload']['digest']}" in tag
    assert f"Govsnap-Tree: {git(repo, 'rev-parse', ref + '^{tree}').strip()}" in tag
    note = json.loads(run_sh(recipes()[-1], repo, ref))
    assert note["digest"] == snap["payload"]["digest"]


def test_the_format_1_recipe_gives_the_format_1_digest(make_repo: MakeRepo) -> None:
    """Format-1 snapshots still verify: the documented format-1 recipe and govsnap's
    format-1 digest agree (on a tree without newlines in its paths)."""
    repo = make_repo({"a.b": "1\n", "a/b": "2\n", "a-b/c": "3\n", "x y": "4\n"})
    digest_1 = next(b for b in recipes() if "tr '\\0' '\\n'" in b)
    tree = git(repo, "rev-parse", "HEAD^{tree}").strip()
    expected = digest_tree(open_repo(repo), tree, fmt=1).digest
    assert "sha256:" + run_sh(digest_1, repo, "HEAD") == expected
