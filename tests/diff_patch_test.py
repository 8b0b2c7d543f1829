"""diff --patch: the content diff of two snapshots is git's own diff of their commits,
byte for byte when piped, and escaped on a terminal."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import BINARY, Cli, MakeRepo, create_snapshot, git, govsnap_bin, write_files


@pytest.fixture
def repo(make_repo: MakeRepo) -> Path:
    return make_repo({"README.md": "hello\n", "src/app.py": "print('v1')\n", "old.txt": "x\n"})


def commit_of(repo: Path, ident: str) -> str:
    return git(repo, "rev-parse", f"refs/govsnap/snapshots/{ident}^{{commit}}").strip()


def test_patch_is_gits_diff_of_the_two_commits(cli: Cli, repo: Path) -> None:
    first = create_snapshot(cli, repo, "--unsigned")
    write_files(repo, {"src/app.py": "print('v2')\n", "new.txt": "added\n", "blob.bin": BINARY})
    (repo / "old.txt").unlink()
    second = create_snapshot(cli, repo, "--unsigned")

    result = cli(repo, "diff", first, second, "--patch")
    data = json.loads(cli(repo, "diff", first, second, "-p", "--json").out)

    assert result.code == 0, result.err
    expected = git(repo, "diff", commit_of(repo, first), commit_of(repo, second))
    assert "+print('v2')" in expected and "Binary files" in expected
    assert result.out == expected
    assert data["patch"] == expected and data["modified"] == ["src/app.py"]
    # The patch is git's: it applies in reverse to the state it came from.
    git(repo, "add", "-A")
    git(repo, "apply", "--check", "-R", "--exclude=blob.bin", input_text=result.out)


def test_patch_against_the_working_tree(cli: Cli, repo: Path) -> None:
    ident = create_snapshot(cli, repo, "--unsigned")
    write_files(repo, {"README.md": "changed\n"})

    result = cli(repo, "diff", ident, "--patch", "--stat")

    assert result.code == 0, result.err
    stat, _, patch = result.out.partition("diff --git")
    assert "M README.md" in stat and "1 file(s)" in stat
    assert "diff --git" + patch == git(repo, "diff", commit_of(repo, ident))


def test_patch_on_a_terminal_escapes_file_contents(cli: Cli, repo: Path, tmp_path: Path) -> None:
    if shutil.which("script") is None:
        pytest.skip("script (util-linux) is needed for a terminal")
    first = create_snapshot(cli, repo, "--unsigned")
    write_files(repo, {"README.md": "\x1b]0;pwned\x07\x1b[2Jwiped\n\tindented\fform\rfeed\n"})
    second = create_snapshot(cli, repo, "--unsigned")
    # govsnap's own escaping on a terminal (a pager, `less` with LESS=FRX, shows control
    # characters as ^X by itself).
    command = f"{govsnap_bin()} -C {repo} --no-pager diff {first} {second} --patch"

    proc = subprocess.run(
        ["script", "-qec", command, "/dev/null"],
        capture_output=True,
        check=False,
        env={**os.environ, "TERM": "xterm", "COLUMNS": "200"},
        cwd=tmp_path,
    )

    out = proc.stdout.decode(errors="replace")
    assert proc.returncode == 0, out
    assert "\\x1b]0;pwned\\x07\\x1b[2Jwiped" in out
    assert "\x1b]0;" not in out and "\x1b[2J" not in out
    assert "\x1b[" in out  # git's colours, drawn by govsnap
    # A tab stays whitespace; a form feed or carriage return is shown, not obeyed.
    assert "indented\\x0cform\\x0dfeed" in out and "\x0c" not in out
    assert "\\x09" not in out
