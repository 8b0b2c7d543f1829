"""Tables for people that fit the width: an id, a date or a word is never cut; free text
wraps between words; the least useful columns give way, named under the table, when even
that is too wide (all of them with --wide). Drawn as aligned text: rich renders only what
it colours, so 10,000 rows cost what their JSON does."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from govsnap import render

# A column's `keep`: columns are left out lowest first when the table is too wide.
ALWAYS = 1_000


@dataclass(frozen=True)
class Column:
    """One column of a table for people."""

    header: str
    # Left out lowest first to fit the width (ALWAYS: never; ids are ALWAYS).
    keep: int = ALWAYS
    # Free text may wrap between words; anything else (ids, dates, figures) is never cut.
    wrap: bool = False
    justify: Literal["left", "right"] = "left"


def _cell_width(plain: str) -> tuple[int, int]:
    """Return the (whole, longest word) width of a cell's text."""
    lines = plain.splitlines() or [""]
    words = plain.split() or [""]
    return max(len(line) for line in lines), max(len(w) for w in words)


def _wrapped(text: str, width: int) -> list[str]:
    """Return `text` in lines of at most `width`, broken between words (a word longer than
    that only where nothing else fits it)."""
    import textwrap

    if len(text) <= width:
        return [text]
    return textwrap.wrap(text, width, break_on_hyphens=False) or [""]


def table(
    title: str | None,
    columns: Sequence[Column],
    rows: Sequence[Sequence[str]],
    caption: str | None = None,
) -> None:
    """Print a table (cells in rich markup, made safe with cell(); the title and caption
    plain text) that fits the width: never cutting an id or a word, wrapping free text
    between words, and leaving out the least useful columns, named in a last line, when
    even that is too wide (all with --wide, however wide)."""
    from rich.text import Text

    if not rows:
        # Headers over nothing say less than the title ("0 snapshot(s)") does alone.
        if title is not None:
            render.message(title)
        return
    # Cells in markup (a colour, an escaped `[`) are parsed once; most hold plain text.
    styled_cells = {c: Text.from_markup(c) for row in rows for c in row if "[" in c}
    plain_rows = [[styled_cells[c].plain if c in styled_cells else c for c in row] for row in rows]
    natural: list[int] = []
    least: list[int] = []
    for i, column in enumerate(columns):
        measured = [_cell_width(row[i]) for row in plain_rows] or [(0, 0)]
        whole = max(m[0] for m in measured)
        word = max(m[1] for m in measured)
        header_words = max(len(w) for w in column.header.split())
        natural.append(max(whole, len(column.header)))
        least.append(max(word if column.wrap else whole, header_words))
    shown = list(range(len(columns)))
    available = render.width()

    def needed(widths: Sequence[int]) -> int:
        # Columns are three spaces apart.
        return sum(widths[i] for i in shown) + 3 * (len(shown) - 1)

    if not render.settings.wide:
        while needed(least) > available:
            droppable = [i for i in shown if columns[i].keep < ALWAYS]
            if not droppable:
                break
            shown.remove(min(reversed(droppable), key=lambda i: columns[i].keep))
        # A column left out early may fit once a wider one went too.
        for i in sorted(set(range(len(columns))) - set(shown), key=lambda i: -columns[i].keep):
            shown.append(i)
            shown.sort()
            if needed(least) > available:
                shown.remove(i)
    # Free-text columns give up width, the widest first, down to their longest word.
    widths = {i: natural[i] for i in shown}
    excess = needed(natural) - available
    while excess > 0 and not render.settings.wide:
        shrinkable = [i for i in shown if columns[i].wrap and widths[i] > least[i]]
        if not shrinkable:
            break
        widest = max(shrinkable, key=lambda i: widths[i])
        widths[widest] -= 1
        excess -= 1
    # Plain aligned text in one Text, not a rich Table: 10,000 rows print in well under a
    # second. A line is never cut: where even the least is too wide, the terminal wraps.
    from rich.text import Span

    chunks: list[str] = []
    spans: list[Span] = []
    at = 0

    def add(text: str, style: str | None = None) -> None:
        nonlocal at
        chunks.append(text)
        if style:
            spans.append(Span(at, at + len(text), style))
        at += len(text)

    def line(cells: Sequence[tuple[str, int, str, list[Span]]]) -> None:
        # (text, width, justify, its spans): three spaces apart, no trailing blanks.
        last = len(cells) - 1
        for n, (text, room, justify, styles) in enumerate(cells):
            pad = room - len(text)
            if justify == "right":
                add(" " * pad)
            start = at
            add(text)
            spans.extend(Span(start + a, start + b, style) for a, b, style in styles)
            if n < last:
                add(" " * pad if justify != "right" else "")
                add("   ")
        add("\n")

    if title is not None:
        add(render.clean(title, one_line=True), "italic")
        add("\n")
    header = [_wrapped(columns[i].header, widths[i]) for i in shown]
    depth = max(len(h) for h in header)
    for row_at in range(depth):
        cells = []
        for h, i in zip(header, shown, strict=True):
            # Headers sit on the rule, as a table's do.
            text = h[row_at - (depth - len(h))] if row_at >= depth - len(h) else ""
            cells.append((text, widths[i], columns[i].justify, [Span(0, len(text), "bold")]))
        line(cells)
    add(_rule() * needed([widths.get(i, 0) for i in range(len(columns))]) + "\n")
    for row, plain_row in zip(rows, plain_rows, strict=True):
        cell_lines: list[list[tuple[str, list[Span]]]] = []
        for i in shown:
            text = plain_row[i]
            styled = styled_cells.get(row[i])
            if styled is not None and len(text) <= widths[i]:
                cell_lines.append([(styled.plain, list(styled.spans))])
            else:
                cell_lines.append([(t, []) for t in _wrapped(text, widths[i])])
        for row_at in range(max(len(c) for c in cell_lines)):
            cells = []
            for lines, i in zip(cell_lines, shown, strict=True):
                text, styles = lines[row_at] if row_at < len(lines) else ("", [])
                cells.append((text, widths[i], columns[i].justify, styles))
            line(cells)
    if not render.use_color(render.stdout_is_terminal()):
        # Nothing to colour: the text as it is, without rich's rendering (a second for
        # 10,000 rows).
        sys.stdout.write("".join(chunks))
        for note in notes_of(caption, columns, shown, available):
            sys.stdout.write(
                "\n".join(_wrapped(render.clean(note, one_line=True), available)) + "\n"
            )
        return
    out = Text("".join(chunks), spans=spans)
    for note in notes_of(caption, columns, shown, available):
        out.append("\n".join(_wrapped(render.clean(note, one_line=True), available)) + "\n")
    printer = render.console()
    printer.width = max(printer.width, needed([widths.get(i, 0) for i in range(len(columns))]))
    printer.print(out, end="")


def notes_of(
    caption: str | None, columns: Sequence[Column], shown: Sequence[int], available: int
) -> list[str]:
    """Return the lines under a table: its caption, and which columns were left out."""
    notes = [caption] if caption else []
    left_out = [columns[i].header for i in range(len(columns)) if i not in shown]
    if left_out:
        notes.append(
            f"left out to fit {available} columns: {', '.join(left_out)} (--wide shows all)"
        )
    return notes


def _rule() -> str:
    """Return the character of the line under a table's headers."""
    encoding = (getattr(sys.stdout, "encoding", None) or "").lower().replace("-", "")
    return "─" if encoding.startswith("utf") else "-"
