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
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    from rich.console import Console


class Result(Protocol):
    """What an operation returns: data that says itself as JSON."""

    def as_json(self) -> dict[str, Any]:
        """Return the result as a JSON document naming its schema (govsnap.schemas)."""
        ...


R = TypeVar("R", bound=Result)


def emit(result: R, json_out: bool, show: Callable[[R], None]) -> None:
    """Print `result`: as JSON with --json, else as `show` renders it for people."""
    if json_out:
        emit_json(result.as_json())
    else:
        show(result)


def console(stderr: bool = False) -> Console:
    """Return a rich console for stdout (or stderr) that fits where it prints."""
    from rich.console import Console

    out = Console(stderr=stderr, highlight=False, soft_wrap=True)
    if not out.is_terminal and "COLUMNS" not in os.environ:
        # Piped output is read by people in logs and CI: do not squeeze tables to 80.
        out.width = 200
    return out


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
    sys.stdout.write(_json_text(data, 2 if sys.stdout.isatty() else None) + "\n")


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
    """Print a plain line for people on stdout (no rich: hooks print this, fast)."""
    sys.stdout.write(clean(text) + "\n")


def warning(text: str) -> None:
    """Print a warning line on stderr."""
    sys.stderr.write(f"govsnap: warning: {clean(text)}\n")


def note(text: str) -> None:
    """Print a note on stderr: something the command skipped that the user should know
    (printed with --json too: it is not part of the document)."""
    sys.stderr.write(f"govsnap: note: {clean(text)}\n")


def error(text: str) -> None:
    """Print the one-line error for a failed command on stderr."""
    first = text.strip().splitlines()[0] if text.strip() else "unknown error"
    sys.stderr.write(f"govsnap: error: {clean(first)}\n")


def stderr_line(text: str) -> None:
    """Print a plain `govsnap: ` line on stderr (problems that do not end the command, and
    hook output, which git shows to the user, prefixed `remote:` for server hooks)."""
    sys.stderr.write(f"govsnap: {clean(text)}\n")


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
