"""The pager of long output, as git runs one: which program (`git var GIT_PAGER`: GIT_PAGER,
core.pager, PAGER, then git's default), only when stdout is a terminal, with LESS=FRX and
LV=-c unless set, stdout (and stderr, when it is the terminal too) sent to it until the
command ends."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from govsnap import render


def pager_command(cwd: Path) -> str | None:
    """Return the pager git would run in `cwd` (None: none, or git could not say)."""
    # git var applies git's own order, and reads core.pager of the repository at cwd.
    extra = {"GIT_PAGER": os.environ["GIT_PAGER"]} if "GIT_PAGER" in os.environ else None
    from govsnap.repo import scrubbed_env

    try:
        proc = subprocess.run(
            ["git", "var", "GIT_PAGER"],
            cwd=cwd if cwd.is_dir() else None,
            capture_output=True,
            env=scrubbed_env(extra),
            check=False,
        )
    except OSError:
        return None
    command = proc.stdout.decode(errors="replace").strip()
    # git runs no pager for an empty one or `cat`.
    return command if proc.returncode == 0 and command not in ("", "cat") else None


def _terminal(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False


@contextmanager
def paging(cwd: Path | None) -> Iterator[None]:
    """Let the block's first output start the pager, when the pager rules say so (a
    command that fails before printing shows its error on the terminal); wait for the
    pager (the user reading) when the block ends."""
    if (
        render.settings.no_pager
        or os.environ.get("GIT_PAGER_IN_USE") == "true"
        or not _terminal(1)
    ):
        yield
        return
    started: list[_Pager] = []

    def start() -> None:
        render.settings.on_output = None
        command = pager_command(cwd or Path.cwd())
        if command is not None:
            running = _Pager.start(command)
            if running is not None:
                started.append(running)

    render.settings.on_output = start
    try:
        yield
    finally:
        render.settings.on_output = None
        for running in started:
            running.finish()


class _Pager:
    """A pager process holding stdout (and stderr when that is the terminal too)."""

    def __init__(self, process: subprocess.Popen[bytes], saved: dict[int, int]) -> None:
        self.process = process
        self.saved = saved

    @classmethod
    def start(cls, command: str) -> _Pager | None:
        """Run `command` and send stdout to it; return None if it cannot run."""
        columns = os.get_terminal_size(1).columns
        env = dict(os.environ)
        env.setdefault("LESS", "FRX")
        env.setdefault("LV", "-c")
        env["GIT_PAGER_IN_USE"] = "true"
        try:
            # A shell command, as git runs it (`less -S`, `delta --dark`).
            process = subprocess.Popen(command, shell=True, stdin=subprocess.PIPE, env=env)
        except OSError:
            return None
        assert process.stdin is not None
        sys.stdout.flush()
        sys.stderr.flush()
        saved = {fd: os.dup(fd) for fd in (1, 2)}
        os.dup2(process.stdin.fileno(), 1)
        if _terminal(2):
            os.dup2(process.stdin.fileno(), 2)
        process.stdin.close()
        render.settings.paged_width = columns
        return cls(process, saved)

    def finish(self) -> None:
        """Give the pager the rest of the output, put the terminal back, and wait until
        the reader quits the pager."""
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except BrokenPipeError:
            # The reader quit the pager early: what is still buffered goes nowhere, not
            # to the terminal once it is back.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            os.close(devnull)
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            for fd, copy in self.saved.items():
                os.dup2(copy, fd)
                os.close(copy)
            render.settings.paged_width = None
            self.process.wait()
