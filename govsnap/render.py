"""Shared output helpers of the presentation layer (cli.py, commands/): the one way a
result is emitted (JSON for programs, its renderer for people), terminal-safe text,
tables that fit, one-line errors and warnings, confirmations. The library never prints:
only the presentation layer does, through these helpers.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

if TYPE_CHECKING:
    from rich.console import Console

ColorWhen = Literal["auto", "always", "never"]

# Width of output that is not a terminal and has no COLUMNS: git's own default.
PIPED_WIDTH = 80


@dataclass
class Output:
    """How this run prints, from the global options (-q, --color, --no-pager, --wide)
    and the environment. One run of the command line has one (cli.run resets it), which
    every helper below reads: the options are parsed in one place, printed in many."""

    quiet: bool = False
    color: ColorWhen = "auto"
    no_pager: bool = False
    wide: bool = False
    # The terminal's width when a pager took stdout over (None: no pager of ours).
    paged_width: int | None = None
    # What to do before the first output (pager.paging: start the pager).
    on_output: Callable[[], None] | None = None
    # When the command started (time.monotonic()), for the elapsed time a report shows.
    started: float = 0.0
    # The stderr console drawing progress now: lines on stderr go through it, above.
    live: Any = None


settings = Output()


def reset(started: float | None = None) -> None:
    """Start a run with the defaults (tests run many command lines in one process), begun
    at `started` (time.monotonic(); default now)."""
    global settings
    settings = Output(started=time.monotonic() if started is None else started)


def elapsed() -> float:
    """Return the seconds since the command started: what `time govsnap ...` reports."""
    return time.monotonic() - settings.started


def stdout_is_terminal() -> bool:
    """Return True when stdout ends on a terminal: directly, through our pager, or through
    the pager git started (`git -p govsnap ...` sets GIT_PAGER_IN_USE)."""
    if settings.paged_width is not None or os.environ.get("GIT_PAGER_IN_USE") == "true":
        return True
    try:
        return os.isatty(sys.stdout.fileno())
    except (AttributeError, OSError, ValueError):
        return False


def use_color(terminal: bool) -> bool:
    """Return whether to colour output going to a terminal (or not): --color=always and
    never decide; auto colours a terminal unless NO_COLOR is set (https://no-color.org)
    or TERM is dumb."""
    if settings.color != "auto":
        return settings.color == "always"
    return terminal and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"


def width() -> int:
    """Return the width to fit stdout's output to: the terminal's, COLUMNS when set, and
    80 when piped (a log or a file is not wider than a terminal)."""
    if settings.paged_width is not None:
        return settings.paged_width
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    try:
        return os.get_terminal_size(sys.stdout.fileno()).columns
    except (AttributeError, OSError, ValueError):
        return PIPED_WIDTH


class Result(Protocol):
    """What an operation returns: data that says itself as JSON."""

    def as_json(self) -> dict[str, Any]:
        """Return the result as a JSON document naming its schema (govsnap.schemas)."""
        ...


R = TypeVar("R", bound=Result)


def emit(result: R, json_out: bool, show: Callable[[R], None]) -> None:
    """Print `result`: as JSON with --json, else as `show` renders it for people (nothing
    under --quiet: the exit code says how it went)."""
    if settings.on_output is not None and (json_out or not settings.quiet):
        settings.on_output()
    if json_out:
        emit_json(result.as_json())
    elif not settings.quiet:
        show(result)


def console() -> Console:
    """Return a rich console for stdout, as wide as where it prints, coloured by the
    colour rules (use_color)."""
    from rich.console import Console

    class _Console(Console):
        def on_broken_pipe(self) -> None:
            # rich exits 1 here; the command line ends a closed pipe as git does (cli.run).
            raise BrokenPipeError

    terminal = stdout_is_terminal()
    color = use_color(terminal)
    return _Console(
        highlight=False,
        soft_wrap=True,
        width=width(),
        force_terminal=color,
        no_color=not color,
        color_system="standard" if color else None,
    )


def human_bytes(n: int) -> str:
    """Return a byte count as 1.2 MiB and the like."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def timestamp(epoch: int) -> str:
    """Return an epoch as `2026-11-24 13:10:07Z` (`@<epoch>` beyond year 9999)."""
    from govsnap.objects import utc

    return utc(epoch)


# Characters a terminal acts on instead of showing: C0 and C1 controls, DEL, and the
# bidirectional, zero-width and other format characters that make text read differently
# from what it is. Data from notes, payloads, policies, audit entries and remotes may hold
# any of them; every line printed for people goes through clean().
_UNSAFE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u206f\ufeff]"
)
_UNSAFE_LINE = re.compile("[\x00-\x1f\x7f-\x9f\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u206f\ufeff]")


def _escaped(found: re.Match[str]) -> str:
    code = ord(found.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def clean(text: str, *, one_line: bool = False) -> str:
    """Return `text` with every character a terminal would act on written as an escape
    (`\\x1b`, `\\u202e`); with `one_line`, tabs and newlines too."""
    return (_UNSAFE_LINE if one_line else _UNSAFE).sub(_escaped, text)


def cell(text: object) -> str:
    """Return a value fit for a rich table cell: cleaned, and its `[` escaped so that rich
    never reads data as markup (a label `[/]` made `list` fail)."""
    from rich.markup import escape

    return escape(clean(str(text), one_line=True))


def emit_json(data: Any) -> None:
    """Print `data` as JSON on stdout: indented for a terminal, compact for programs."""
    # json's C encoder only runs without indent: 10,000 snapshots take 0.1 s, not 4 s.
    sys.stdout.write(_json_text(data, 2 if stdout_is_terminal() else None) + "\n")


def error_json(data: dict[str, Any]) -> None:
    """Print a failed command's error document on stderr, on one line (--json)."""
    sys.stderr.write(_json_text(data, None) + "\n")


def _json_text(data: Any, indent: int | None) -> str:
    """Return `data` as JSON text that no terminal acts on (see clean)."""
    text = json.dumps(data, indent=indent, sort_keys=True, ensure_ascii=False)
    # json escapes C0 controls; the others can only stand inside strings, where a \u
    # escape is the same JSON value. ASCII text (the common case) can only hold DEL.
    if text.isascii():
        text = text.replace("\x7f", "\\u007f")
    else:
        text = _UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    return text


def message(text: str) -> None:
    """Print a plain line for people on stdout (no rich: hooks print this, fast); nothing
    under --quiet."""
    if settings.quiet:
        return
    text = clean(text)
    if len(text) > PIPED_WIDTH and stdout_is_terminal() and len(text) > width():
        import textwrap

        # On a terminal, between words (a file or a pipe keeps the line whole for grep).
        text = textwrap.fill(text, width(), break_long_words=False, break_on_hyphens=False)
    sys.stdout.write(text + "\n")


def _stderr(line: str, wrap: bool = True) -> None:
    """Write a line on stderr: above the progress line while one is drawn; on a terminal
    (unless not `wrap`) broken between words at its width."""
    if wrap and len(line) > PIPED_WIDTH and _terminal_width(2) is not None:
        import textwrap

        columns = _terminal_width(2) or PIPED_WIDTH
        line = textwrap.fill(line, columns, break_long_words=False, break_on_hyphens=False)
    if settings.live is not None:
        settings.live.print(line, markup=False, highlight=False, soft_wrap=True)
    else:
        sys.stderr.write(line + "\n")


def _terminal_width(fd: int) -> int | None:
    """Return the width of the terminal on `fd` (None: not a terminal)."""
    try:
        return os.get_terminal_size(fd).columns if os.isatty(fd) else None
    except OSError:
        return None


def warning(text: str) -> None:
    """Print a warning line on stderr."""
    _stderr(f"govsnap: warning: {clean(text)}")


def note(text: str) -> None:
    """Print a note on stderr: something the command skipped that the user should know
    (printed with --json too: it is not part of the document)."""
    sys.stderr.write(f"govsnap: note: {clean(text)}\n")


def error(text: str) -> None:
    """Print the one-line error for a failed command on stderr."""
    first = text.strip().splitlines()[0] if text.strip() else "unknown error"
    # One line, whatever its length: a log or a script reads the error by its line.
    _stderr(f"govsnap: error: {clean(first)}", wrap=False)


def stderr_line(text: str) -> None:
    """Print a plain `govsnap: ` line on stderr (problems that do not end the command, and
    hook output, which git shows to the user, prefixed `remote:` for server hooks)."""
    _stderr(f"govsnap: {clean(text)}")


def require_terminal(action: str) -> None:
    """Raise UsageError unless there is a terminal to confirm `action` on (scripts and CI
    must say --yes: the same rule for every command that deletes or rewrites)."""
    from govsnap.errors import UsageError

    if not sys.stdin.isatty():
        raise UsageError(
            f"{action}: not on a terminal, so nobody can confirm; pass --yes "
            "(--dry-run shows what it would do)"
        )


def confirm(action: str, question: str) -> bool:
    """Ask `question` on the terminal (on stderr) before `action`; return True on yes.

    Raises UsageError when there is no terminal (require_terminal) and Declined on any
    other answer, so that a declined confirmation exits alike everywhere.
    """
    from govsnap.errors import Declined

    require_terminal(action)
    sys.stderr.write(f"{question} [y/N] ")
    sys.stderr.flush()
    if sys.stdin.readline().strip().lower() not in {"y", "yes"}:
        raise Declined("declined: nothing was changed")
    return True


def listed(ids: Sequence[str], limit: int = 8) -> str:
    """Return the first `limit` of `ids` joined, saying how many more there are."""
    return ", ".join(ids[:limit]) + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


# --- progress ------------------------------------------------------------------------------

# Seconds a task runs before its progress shows, as git waits before showing its own: a
# quick operation draws nothing.
PROGRESS_DELAY = 0.5


class TerminalProgress:
    """Shows the tasks an operation reports (progress.Listener) as one line on stderr,
    gone when the task ends; a task inside another takes the line over until it ends."""

    def __init__(self) -> None:
        import threading

        self._lock = threading.Lock()
        self._stack: list[tuple[str, int, int | None]] = []
        self._bar: Any = None
        self._task: Any = None
        self._timer: threading.Timer | None = None
        self._shown = False

    def start(self, what: str, total: int | None) -> None:
        """A task began (the outermost one starts the line, after PROGRESS_DELAY)."""
        import threading

        with self._lock:
            self._stack.append((what, 0, total))
            if self._bar is None:
                self._bar = self._make_bar()
                self._task = self._bar.add_task(
                    clean(what, one_line=True), total=total, count=_count(0, total)
                )
                self._timer = threading.Timer(PROGRESS_DELAY, self._show)
                self._timer.daemon = True
                self._timer.start()
            else:
                self._draw(what, 0, total)

    def update(self, what: str, done: int, total: int | None) -> None:
        """The innermost task moved on."""
        with self._lock:
            if self._stack:
                self._stack[-1] = (what, done, total)
                self._draw(what, done, total)

    def stop(self) -> None:
        """The innermost task ended: the line shows its parent again, or goes."""
        with self._lock:
            if self._stack:
                self._stack.pop()
            if self._stack:
                self._draw(*self._stack[-1])
                return
            if self._timer is not None:
                self._timer.cancel()
            if self._bar is not None and self._shown:
                self._bar.stop()
            self._bar, self._task, self._timer, self._shown = None, None, None, False
            settings.live = None

    def _show(self) -> None:
        with self._lock:
            if self._bar is not None and not self._shown:
                self._bar.start()
                self._shown = True
                settings.live = self._bar.console

    def _draw(self, what: str, done: int, total: int | None) -> None:
        if self._bar is not None:
            self._bar.update(
                self._task,
                description=clean(what, one_line=True),
                completed=done,
                total=total,
                count=_count(done, total),
            )

    @staticmethod
    def _make_bar() -> Any:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )
        from rich.table import Column as TableColumn

        color = use_color(True)
        out = Console(
            stderr=True,
            highlight=False,
            force_terminal=True,
            no_color=not color,
            color_system="standard" if color else None,
        )
        return Progress(
            SpinnerColumn(),
            # What it is doing gives way first on a narrow terminal; the time never does.
            TextColumn(
                "{task.description}",
                table_column=TableColumn(ratio=1, no_wrap=True, overflow="ellipsis"),
            ),
            BarColumn(bar_width=12),
            TextColumn("{task.fields[count]}"),
            TimeElapsedColumn(),
            console=out,
            transient=True,
            redirect_stdout=False,
            redirect_stderr=False,
        )


def _count(done: int, total: int | None) -> str:
    return "" if total is None else f"{done}/{total}"


def shows_progress(json_out: bool) -> bool:
    """Return whether to show progress: on a terminal's stderr, for people (not --json,
    not --quiet), on a terminal that can redraw a line."""
    if json_out or settings.quiet or os.environ.get("TERM") == "dumb":
        return False
    try:
        return os.isatty(sys.stderr.fileno())
    except (AttributeError, OSError, ValueError):
        return False
