"""`list --format`: one line per snapshot from a format string with git's `--format`
placeholders as the model (`%H` the id, `%h` a short id that stays unique, `%s` the
summary, `%ad` the date...). A format is parsed once, so an unknown placeholder is an
error before anything is printed; values from the payload and the note go through the
presentation's escape (they are data, not instructions)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from govsnap.errors import UsageError
from govsnap.objects import ISO_UTC, SnapshotPayload, utc
from govsnap.store import Snapshot

# The shortest a short id gets, as git's default core.abbrev.
MIN_SHORT = 7


@dataclass(frozen=True)
class Context:
    """What expanding a placeholder may need besides the snapshot."""

    short: dict[str, str]  # id -> its shortest unique prefix


def _signer(snap: Snapshot) -> str:
    if not snap.signed:
        return "UNSIGNED"
    return snap.note_view.claimed_signer or ""


def _number(value: int | None) -> str:
    return "" if value is None else str(value)


Field = Callable[[Snapshot, Context], str]


def _signed(get: Callable[[SnapshotPayload], str]) -> Field:
    """Return a field read from the signed payload (empty for an unreadable snapshot)."""
    return lambda snap, _context: get(snap.payload) if snap.payload else ""


FIELDS: dict[str, tuple[str, Field]] = {
    "H": ("the snapshot id", lambda s, _c: s.id),
    "h": ("the shortest unique prefix of the id (7 or more)", lambda s, c: c.short[s.id]),
    "T": ("the tree", _signed(lambda p: p.tree)),
    "P": ("the source commit", _signed(lambda p: p.source.commit if p.source else "")),
    "S": ("the source ref", _signed(lambda p: p.source.ref if p.source else "")),
    "D": ("the content digest", _signed(lambda p: p.digest)),
    "s": ("the summary (subject)", _signed(lambda p: p.summary)),
    "b": ("the message", _signed(lambda p: p.message)),
    "l": ("the labels, comma-separated", _signed(lambda p: ",".join(p.labels))),
    "e": ("the environment", _signed(lambda p: p.environment)),
    "t": ("the trigger", _signed(lambda p: p.trigger)),
    "ad": ("the date, 2026-11-24 13:10:07Z", _signed(lambda p: utc(p.tagger.time))),
    "aI": ("the date, strict ISO 8601", _signed(lambda p: utc(p.tagger.time, ISO_UTC))),
    "at": ("the date, UNIX seconds", _signed(lambda p: str(p.tagger.time))),
    "an": ("the tagger's name", _signed(lambda p: p.tagger.name)),
    "ae": ("the tagger's email", _signed(lambda p: p.tagger.email)),
    "GS": ("the signing key the note claims (unverified), or UNSIGNED", lambda s, _c: _signer(s)),
    "f": ("the file count (note)", lambda s, _c: _number(s.note_view.files)),
    "z": ("the size in bytes (note)", lambda s, _c: _number(s.note_view.bytes)),
    "y": ("'safety' for a rollback's safety snapshot", lambda s, _c: "safety" if s.safety else ""),
}
# Longest names first, so that %ad is not read as %a followed by "d".
_TOKEN = re.compile(
    "%(?:(?P<field>" + "|".join(sorted(FIELDS, key=len, reverse=True)) + ")"
    r"|(?P<n>n)|(?P<percent>%)|x(?P<hex>[0-9a-fA-F]{2}))"
)

# A format is a list of literal texts and field names.
Part = tuple[bool, str]  # (is a field, text or field name)


def parse(fmt: str) -> list[Part]:
    """Return a format string as its parts; raise UsageError at an unknown placeholder."""
    parts: list[Part] = []
    at = 0
    while at < len(fmt):
        cut = fmt.find("%", at)
        if cut < 0:
            parts.append((False, fmt[at:]))
            break
        if cut > at:
            parts.append((False, fmt[at:cut]))
        found = _TOKEN.match(fmt, cut)
        if found is None:
            shown = fmt[cut : cut + 3]
            raise UsageError(
                f"--format: unknown placeholder {shown!r} (known: "
                + " ".join(f"%{k}" for k in FIELDS)
                + " %n %% %xNN)"
            )
        if found.group("field"):
            parts.append((True, found.group("field")))
        elif found.group("n"):
            parts.append((False, "\n"))
        elif found.group("percent"):
            parts.append((False, "%"))
        else:
            parts.append((False, chr(int(found.group("hex"), 16))))
        at = found.end()
    return parts


def short_ids(ids: Sequence[str]) -> dict[str, str]:
    """Return id -> its shortest prefix (MIN_SHORT or more) no other id shares."""
    ordered = sorted(set(ids))
    short = {}
    for i, ident in enumerate(ordered):
        need = MIN_SHORT
        for other in ordered[max(i - 1, 0) : i + 2]:
            if other != ident:
                common = next(
                    (k for k, (a, b) in enumerate(zip(ident, other, strict=False)) if a != b),
                    min(len(ident), len(other)),
                )
                need = max(need, common + 1)
        short[ident] = ident[:need]
    return short


def expand(
    parts: Sequence[Part],
    snaps: Sequence[Snapshot],
    every_id: Sequence[str],
    escape: Callable[[str], str],
) -> list[str]:
    """Return one line per snapshot (short ids unique among `every_id`), each field value
    passed through `escape` (the presentation's: onto one line, so that a label cannot
    forge another snapshot's line)."""
    context = Context(short_ids([*every_id, *(s.id for s in snaps)]))
    return [
        "".join(escape(FIELDS[text][1](snap, context)) if field else text for field, text in parts)
        for snap in snaps
    ]
