"""The manual page git-govsnap(1): made from the command line's own help, installed where
`man`, `git help govsnap` and `git govsnap --help` find it, and rendered by man."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from govsnap.cli import command
from tests.helpers import Cli, govsnap_bin

pytestmark = pytest.mark.skipif(shutil.which("man") is None, reason="man (man-db) is not installed")


def rendered(env: dict[str, str], *args: str, cwd: Path | None = None) -> str:
    """Return what `args` (man or git) prints, formatted for 80 columns without a pager."""
    shown = subprocess.run(
        args,
        cwd=cwd,
        env={**os.environ, **env, "MANPAGER": "cat", "PAGER": "cat", "MANWIDTH": "80"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert shown.stderr == "", shown.stderr  # troff warns of nothing
    return shown.stdout


def options_of_every_command() -> list[tuple[str, list[str]]]:
    found = []

    def walk(group: object, path: str) -> None:
        for name, sub in getattr(group, "commands", {}).items():
            if sub.hidden:
                continue
            opts = [
                o
                for p in sub.params
                if not getattr(p, "hidden", False)
                for o in getattr(p, "opts", [])
                if o.startswith("--")
            ]
            found.append((f"{path} {name}", opts))
            walk(sub, f"{path} {name}")

    walk(command(), "govsnap")
    return found


def test_man_renders_every_command_and_option(cli: Cli, repo: Path, tmp_path: Path) -> None:
    folder = tmp_path / "man" / "man1"
    done = cli(repo, "install-man", "--dir", str(folder))
    assert done.code == 0 and f"wrote {folder / 'git-govsnap.1'}" in done.out
    assert (folder / "govsnap.1").read_text() == (folder / "git-govsnap.1").read_text()
    page = rendered({"MANPATH": str(tmp_path / "man")}, "man", "--warnings", "git-govsnap")
    assert page.startswith("GIT-GOVSNAP(1)")
    assert all(len(line) <= 80 for line in page.splitlines())
    # Words man hyphenated at a line's end, joined again.
    text = " ".join(re.sub("\u2010\n\\s*", "", page).split())
    for path, opts in options_of_every_command():
        assert path in text, path
        for opt in opts:
            assert opt in text, (path, opt)
    for section in ("EXIT STATUS", "ENVIRONMENT", "GLOBAL OPTIONS", "NO_COLOR", "LESS=FRX"):
        assert section in text


def test_git_govsnap_help_finds_the_page(cli: Cli, repo: Path, tmp_path: Path) -> None:
    # A govsnap on PATH as pip or pipx puts it: man searches ../share/man beside it.
    bin_dir = tmp_path / "prefix" / "bin"
    bin_dir.mkdir(parents=True)
    for name in ("govsnap", "git-govsnap"):
        (bin_dir / name).symlink_to(Path(govsnap_bin()).with_name(name))
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}"}
    env.pop("MANPATH", None)
    installed = subprocess.run(
        ["govsnap", "install-man"],
        env={**os.environ, **env},
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    )
    page = tmp_path / "prefix" / "share" / "man" / "man1" / "git-govsnap.1"
    assert f"wrote {page}" in installed.stdout and "MANPATH" not in installed.stdout
    environ = {k: v for k, v in os.environ.items() if k != "MANPATH"}
    for args in (["git", "govsnap", "--help"], ["git", "help", "govsnap"], ["man", "govsnap"]):
        shown = subprocess.run(
            args,
            cwd=repo,
            env={**environ, **env, "MANPAGER": "cat", "MANWIDTH": "80"},
            capture_output=True,
            text=True,
            check=True,
        )
        assert shown.stdout.startswith("GIT-GOVSNAP(1)"), (args, shown.stderr)


def test_install_man_dry_run_and_print(cli: Cli, repo: Path, tmp_path: Path) -> None:
    folder = tmp_path / "man1"
    dry = cli(repo, "install-man", "--dir", str(folder), "--dry-run")
    assert dry.code == 0 and "would write" in dry.out and not folder.exists()
    printed = cli(repo, "install-man", "--print")
    assert printed.out.startswith(".TH GIT\\-GOVSNAP 1")
    blocked = tmp_path / "file"
    blocked.write_text("")
    failed = cli(repo, "install-man", "--dir", str(blocked / "man1"))
    assert failed.code == 3 and failed.err.startswith("govsnap: error: cannot write")
