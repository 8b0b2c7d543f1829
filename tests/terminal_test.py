"""govsnap on a real terminal of 80 columns (tmux): what a user copies (an id) is whole on
one line, and no line is longer than the terminal, so nothing is cut mid-word by the
terminal's own wrapping; the progress of a long rehearsal shows while it runs and is gone
when it ends."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import Cli, Keys, MakeRepo, create_snapshot, govsnap_bin, trust_policy

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")

DONE = "__GOVSNAP_DONE__"


class Terminal:
    """A tmux session of 80 columns running bash, driven by keystrokes."""

    def __init__(self, cwd: Path, socket: Path) -> None:
        # A server of its own, its socket in the test's own temporary directory (gone
        # with it), not among the user's.
        self.name = f"gs{uuid.uuid4().hex[:8]}"
        self.socket = str(socket)
        bin_dir = Path(govsnap_bin()).parent
        env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "GIT_PAGER": "cat"}
        env.pop("COLUMNS", None)
        env.pop("TMUX", None)
        subprocess.run(
            [
                "tmux",
                "-S",
                self.socket,
                "new-session",
                "-d",
                "-s",
                self.name,
                "-x",
                "80",
                "-y",
                "50",
                "-c",
                str(cwd),
                "bash --norc --noprofile",
            ],
            env=env,
            check=True,
        )
        self.tmux("set-option", "-g", "history-limit", "5000")
        self.runs = 0

    def tmux(self, *args: str) -> str:
        return subprocess.run(
            ["tmux", "-S", self.socket, *args], capture_output=True, text=True, check=True
        ).stdout

    def screen(self, *, joined: bool = False) -> str:
        """Return the screen and its history; `joined`: lines the terminal wrapped joined."""
        return self.tmux(
            "capture-pane", "-p", "-S", "-", *(["-J"] if joined else []), "-t", self.name
        )

    def run(self, line: str, timeout: float = 120) -> list[str]:
        """Type `line`, wait until it has ended; return the lines it printed (after
        checking the terminal wrapped none of them: each was cut by govsnap, between
        words, or not at all)."""
        self.runs += 1
        done = f"{DONE}{self.runs}"
        self.tmux("send-keys", "-t", self.name, f"{line}; echo {done}", "Enter")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.screen()
            if re.search(rf"^{done}$", screen, re.M):
                assert strip(screen) == strip(self.screen(joined=True)), screen
                lines = screen.splitlines()
                start = max(i for i, text in enumerate(lines) if f"echo {done}" in text)
                end = lines.index(done)
                return [text for text in lines[start + 1 : end] if text.strip()]
            time.sleep(0.2)
        raise AssertionError(f"{line!r} did not end: {self.screen()}")

    def close(self) -> None:
        subprocess.run(["tmux", "-S", self.socket, "kill-server"], check=False)


@pytest.fixture
def terminal(trusted: Path, own_tmpdir: Path) -> Iterator[Terminal]:
    shown = Terminal(trusted, own_tmpdir / "tmux")
    yield shown
    shown.close()


@pytest.fixture
def trusted(make_repo: MakeRepo, keys: Keys) -> Path:
    """A trusted repository with enough files for a rehearsal to take a while."""
    files: dict[str, str | bytes] = {
        f"src/module{i // 100:02d}/file{i:04d}.txt": f"{i}\n" for i in range(2000)
    }
    files[".govsnap/trust.toml"] = trust_policy(keys)
    return make_repo(files)


def strip(screen: str) -> list[str]:
    return [line.rstrip() for line in screen.splitlines()]


def test_tables_and_reports_fit_80_columns(cli: Cli, trusted: Path, terminal: Terminal) -> None:
    ids = [
        create_snapshot(
            cli,
            trusted,
            "-e",
            "production-europe-west",
            "-l",
            f"release-{i}",
            "-t",
            "pre-push",
            "-m",
            "a release candidate " * 4,
        )
        for i in range(3)
    ]
    assert cli(trusted, "verify", "--all").code == 0
    for command in (
        "govsnap list",
        "govsnap stats",
        f"govsnap show {ids[0]}",
        "govsnap trust show",
        "govsnap verify --all",
    ):
        printed = terminal.run(command)
        assert printed and all(len(line) <= 80 for line in printed), (command, printed)
        text = "\n".join(printed)
        assert "…" not in text, (command, text)
        if command != "govsnap stats" and command != "govsnap trust show":
            shown = ids if command != f"govsnap show {ids[0]}" else ids[:1]
            for ident in shown:
                assert re.search(rf"(^|\s){ident}(\s|$)", text, re.M), (command, ident, text)
    trust = "\n".join(terminal.run("govsnap trust show"))
    assert "releaser" in trust


def test_progress_shows_during_a_long_rehearsal_and_is_gone_after(
    cli: Cli, trusted: Path, terminal: Terminal
) -> None:
    ident = create_snapshot(cli, trusted)
    terminal.tmux(
        "send-keys", "-t", terminal.name, f"govsnap rehearse --rto 600; echo {DONE}", "Enter"
    )
    seen: set[str] = set()
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        screen = terminal.screen()
        seen.update(p.strip() for p in re.findall(rf"rehearsal of {ident}: ([a-z ]+)", screen))
        if re.search(rf"^{DONE}$", screen, re.M):
            break
        time.sleep(0.1)
    else:
        raise AssertionError(terminal.screen())
    # Its phases were on the screen while it ran (a spinner, what it does, the time) ...
    assert seen, screen
    assert seen <= {
        "checking it out in a throwaway clone",
        "damaging the clone",
        "rolling back",
        "judging the result with git",
    }, seen
    # ... and nothing of them is left: only the report.
    assert not re.search(rf"rehearsal of {ident}: [a-z]", screen), screen
    assert re.search(rf"rehearsal of snapshot {ident}: PASS", screen), screen
