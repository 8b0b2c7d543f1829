"""Parsing JSON and TOML that nobody signed: notes, audit entries, policy files.

Anyone with push access can write these bytes, so their shape is hostile until proved
otherwise. Python's parsers recurse once per nesting level (100,000 `[` raise
RecursionError) and refuse integers of more than 4,300 digits with a bare ValueError; both
would end a command as an internal error in every clone that fetched them. Here a text
nested deeper than MAX_DEPTH is refused before any parser sees it, and every way a parser
can fail becomes `Unreadable`, which each caller turns into its own one-line verdict (a
note shown as unreadable, an audit entry flagged, a PolicyError naming the file).
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterator
from typing import Any

# govsnap's own documents nest four levels at most (a note's verification records, a
# policy's signer tables); 32 leaves room for what users add and stays far below Python's
# recursion limit wherever a parser or a renderer is called from.
MAX_DEPTH = 32

# A JSON string (its escapes skipped, an unterminated one running to the end) or a bracket:
# one pass, linear in the text whatever it holds.
_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\[\s\S])*(?:"|\\?\Z)|[\[\]{}]')
# The same for TOML: the four kinds of string and comments hold brackets that nest nothing.
# A key of more than MAX_DEPTH dotted parts nests as deep without a bracket (and tomllib
# takes time quadratic in its parts: 50,000 of them take minutes), so such a chain is a
# token of its own, matched before the strings its parts may be; bare words are consumed
# whole so that no part of one is tried again.
_TOML_PART = r"""(?:[A-Za-z0-9_-]++|"(?:[^"\\\n]|\\.)*+"|'[^'\n]*+')"""
_TOML_TOKEN = re.compile(
    rf"(?P<chain>{_TOML_PART}(?:[ \t]*+\.[ \t]*+{_TOML_PART}){{{MAX_DEPTH},}})"
    r"|[A-Za-z0-9_-]++"
    r'|"""(?:[^\\]|\\[\s\S])*?(?:"""\"{0,2}|\\?\Z)'
    r"|'''[\s\S]*?(?:''''{0,2}|\Z)"
    r'|"(?:[^"\\\n]|\\[^\n]?)*(?:"|$)'
    r"|'[^'\n]*(?:'|$)"
    r"|#[^\n]*"
    r"|[\[\]{}]",
    re.MULTILINE,
)
# Python refuses to read integers this long (sys.get_int_max_str_digits).
_LONG_DIGITS = re.compile(r"[0-9_]{4300,}")


class Unreadable(ValueError):
    """Untrusted text that does not parse, or is shaped to break the parser; `line` is
    where (1-based) when known."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


def load_json(data: bytes | str) -> Any:
    """Return the JSON value in `data` (strict: UTF-8, no NaN or Infinity); raise
    Unreadable when it does not parse or nests deeper than MAX_DEPTH."""
    try:
        text = data.decode() if isinstance(data, bytes) else data
    except UnicodeDecodeError as exc:
        raise Unreadable(f"not UTF-8 ({exc.reason} at byte {exc.start})") from exc
    too_deep = _too_deep(text, _JSON_TOKEN)
    if too_deep is not None:
        raise Unreadable(f"nested deeper than {MAX_DEPTH} levels", too_deep)
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except RecursionError as exc:  # cannot happen below MAX_DEPTH; kept as a last guard
        raise Unreadable("nested too deeply to read") from exc
    except ValueError as exc:  # JSONDecodeError, an integer too long to convert
        raise Unreadable(str(exc)) from exc


def load_toml(text: str) -> dict[str, Any]:
    """Return the TOML document `text`; raise tomllib.TOMLDecodeError where tomllib finds
    it malformed, Unreadable (with the line) where it nests deeper than MAX_DEPTH or tomllib
    fails in any other way."""
    too_deep = _too_deep(text, _TOML_TOKEN)
    if too_deep is not None:
        raise Unreadable(f"nested deeper than {MAX_DEPTH} levels", too_deep)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        raise
    except RecursionError as exc:
        raise Unreadable("nested too deeply to read") from exc
    except ValueError as exc:  # an integer too long to convert, raised past tomllib
        long = _LONG_DIGITS.search(text)
        raise Unreadable(str(exc), _line(text, long.start()) if long else None) from exc
    # Dotted keys (`a.b.c...`) nest tables without a bracket: measure what was built.
    if _depth_exceeds(doc):
        raise Unreadable(f"keys nested deeper than {MAX_DEPTH} levels")
    return doc


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _too_deep(text: str, token: re.Pattern[str]) -> int | None:
    """Return the line where brackets outside strings and comments first nest deeper than
    MAX_DEPTH (or a dotted key has more parts), or None."""
    if sum(text.count(mark) for mark in "[{.") <= MAX_DEPTH:
        return None
    depth = 0
    for found in token.finditer(text):
        if found.lastgroup == "chain":
            return _line(text, found.start())
        char = found.group()
        if char in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return _line(text, found.start())
        elif char in "]}":
            depth = max(depth - 1, 0)
    return None


def _depth_exceeds(value: Any) -> bool:
    """Return True when tables and arrays in `value` nest deeper than MAX_DEPTH (walked
    without recursion)."""
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if depth > MAX_DEPTH:
            return True
        pending.extend((child, depth + 1) for child in _children(item))
    return False


def _children(value: Any) -> Iterator[Any]:
    if isinstance(value, dict):
        yield from (v for v in value.values() if isinstance(v, dict | list))
    elif isinstance(value, list):
        yield from (v for v in value if isinstance(v, dict | list))


def _line(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1
