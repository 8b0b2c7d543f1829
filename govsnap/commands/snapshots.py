"""`govsnap create`, `list`, `show` and `diff`: taking snapshots and looking at them."""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Annotated

import typer

from govsnap.commands.completers import environments, snapshot_names
from govsnap.commands.options import JsonOpt, SnapshotArg, feature, repo_of
from govsnap.render import (
    cell,
    clean,
    console,
    emit,
    human_bytes,
    message,
    timestamp,
    warning,
    width,
)
from govsnap.tables import Column, table

if TYPE_CHECKING:
    from govsnap.notes import ArtifactKind
    from govsnap.store import CreateResult, Snapshot, SnapshotDiff, SnapshotListing
    from govsnap.verify import SnapshotDetails, SnapshotVerification

app = feature()


@app.command("create")
def create_snapshot(
    ctx: typer.Context,
    trigger: Annotated[str, typer.Option("--trigger", "-t", help="What caused it.")] = "manual",
    environment: Annotated[
        str | None,
        typer.Option(
            "--environment",
            "-e",
            help="Environment (govsnap.environment).",
            autocompletion=environments,
        ),
    ] = None,
    label: Annotated[
        list[str] | None, typer.Option("--label", "-l", help="A label; repeatable.")
    ] = None,
    from_rev: Annotated[
        str | None,
        typer.Option("--from", help="Capture this commit's tree instead of the working tree."),
    ] = None,
    source_ref: Annotated[
        str | None, typer.Option("--source-ref", hidden=True, help="Ref recorded as the source.")
    ] = None,
    tracked_only: Annotated[
        bool, typer.Option("--tracked-only", help="Leave untracked files out.")
    ] = False,
    if_changed: Annotated[
        bool,
        typer.Option("--if-changed", help="Do nothing if the newest snapshot has this content."),
    ] = False,
    message_: Annotated[str, typer.Option("--message", "-m", help="A note for humans.")] = "",
    unsigned: Annotated[
        bool, typer.Option("--unsigned", help="Create the snapshot without a signature.")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Take a signed snapshot of the working tree (or of a commit with --from)."""
    from govsnap.store import CreateOptions, create

    options = CreateOptions(
        trigger=trigger,
        environment=environment,
        labels=label or [],
        from_rev=from_rev,
        source_ref=source_ref,
        tracked_only=tracked_only,
        if_changed=if_changed,
        message=message_,
        unsigned=unsigned,
    )
    emit(create(repo_of(ctx), options), json_out, show_created)


@app.command("list")
def list_snapshots(
    ctx: typer.Context,
    environment: Annotated[
        str | None,
        typer.Option(
            "--environment", "-e", help="Only this environment.", autocompletion=environments
        ),
    ] = None,
    label: Annotated[
        list[str] | None, typer.Option("--label", "-l", help="Only snapshots with this label.")
    ] = None,
    host: Annotated[
        str | None, typer.Option("--host", help="Only snapshots the note says HOST took.")
    ] = None,
    path: Annotated[
        list[str] | None,
        typer.Option("--path", help="Only snapshots holding this file or directory; repeatable."),
    ] = None,
    latest: Annotated[
        int | None, typer.Option("--latest", help="Only the newest N (after the other filters).")
    ] = None,
    format_: Annotated[
        str | None,
        typer.Option(
            "--format", help="One line per snapshot from placeholders: %H %h %s %ad %e ..."
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """List snapshots, newest first."""
    from govsnap.errors import UsageError
    from govsnap.store import ListFilter, filtered_listing

    parts = None
    if format_ is not None:
        from govsnap.pretty import parse

        if json_out:
            raise UsageError("--format and --json exclude each other")
        parts = parse(format_)
    wanted = ListFilter(environment, tuple(label or ()), host, tuple(path or ()), latest)
    listed = filtered_listing(repo_of(ctx), wanted)
    if parts is None:
        emit(listed, json_out, show_listing)
        return
    from govsnap.pretty import expand

    for line in expand(parts, listed.snapshots, listed.every_id, _one_line):
        sys.stdout.write(line + "\n")


def _one_line(text: str) -> str:
    return clean(text, one_line=True)


@app.command("show")
def show_snapshot(ctx: typer.Context, snapshot: SnapshotArg, json_out: JsonOpt = False) -> None:
    """Show everything about one snapshot, and who signed it (as verification finds)."""
    from govsnap.verify import details

    emit(details(repo_of(ctx), snapshot), json_out, show_details)


app.command("info", hidden=True, help="Alias of show.")(show_snapshot)


@app.command("diff")
def diff_snapshots(
    ctx: typer.Context,
    old: Annotated[
        str, typer.Argument(help="The snapshot to compare from.", autocompletion=snapshot_names)
    ],
    new: Annotated[
        str | None,
        typer.Argument(
            help="The snapshot to compare to (default: the working tree).",
            autocompletion=snapshot_names,
        ),
    ] = None,
    stat: Annotated[bool, typer.Option("--stat", help="Show lines added and removed.")] = False,
    patch: Annotated[
        bool, typer.Option("--patch", "-p", help="Show the content diff, as git diff prints it.")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Show files added, removed and modified between two snapshots (or the working tree)."""
    from govsnap.store import diff

    emit(diff(repo_of(ctx), old, new, patch), json_out, lambda d: show_diff(d, stat))


# --- how they are shown -------------------------------------------------------------------


def signer_label(snap: Snapshot) -> str:
    """Return who the note says signed a snapshot (a claim: notes are not signed), or
    UNSIGNED when the tag carries no signature."""
    if not snap.signed:
        return "UNSIGNED"
    signer = snap.note_view.claimed_signer or "?"
    return f"claimed {snap.signature_kind}:{signer[-16:]}"


def show_listing(listed: SnapshotListing) -> None:
    """Print snapshots as a table, newest first, that fits the terminal: ids whole, the
    least useful columns left out first. The signer column shows what the note claims
    (`govsnap verify` and `show` check the signature)."""
    snaps = listed.snapshots
    caption = (
        "(safety): taken before a rollback, its undo; not pushed unless push "
        "--include-safety; kept by govsnap.safetyRetention"
        if any(s.safety for s in snaps)
        else None
    )
    columns = (
        Column("id"),
        Column("created"),
        Column("trigger", keep=6, wrap=True),
        Column("environment", keep=9),
        Column("labels", keep=7, wrap=True),
        Column("files", keep=3, justify="right"),
        Column("size", keep=4, justify="right"),
        Column("digest", keep=2),
        Column("signer (unverified)", keep=5, wrap=True),
    )
    rows = []
    for s in snaps:
        if s.payload is None:
            rows.append([s.id, "-", "-", "-", "-", "-", "-", "-", f"[red]{cell(s.error)}[/red]"])
            continue
        note = s.note_view
        signer = signer_label(s)
        rows.append(
            [
                s.id,
                timestamp(s.created),
                cell(s.payload.trigger) + (" (safety)" if s.safety else ""),
                cell(s.payload.environment),
                cell(", ".join(s.labels)),
                "?" if note.files is None else str(note.files),
                "?" if note.bytes is None else human_bytes(note.bytes),
                s.payload.digest[7:19],
                "[bold red]UNSIGNED[/bold red]" if signer == "UNSIGNED" else cell(signer),
            ]
        )
    table(f"{len(snaps)} snapshot(s)", columns, rows, caption)


def verified_signer(check: SnapshotVerification) -> str:
    """Return who signed a snapshot as verification established it, or why it could not."""
    from govsnap.verify import Check

    signature, trust = check.check(Check.SIGNATURE), check.check(Check.TRUST)
    if not signature.ok:
        return f"NOT VERIFIED: {signature.message}"
    judged = trust.message if trust.ok else f"FAIL: {trust.message}"
    return f"{check.signer} (verified); trust: {judged}"


def _payload_lines(shown: SnapshotDetails) -> list[tuple[str, str]]:
    """Return what the signed payload says, and who signed it, as (field, value) lines."""
    snap = shown.snapshot
    p = snap.payload
    if p is None:
        return [("error", str(snap.error))]
    safety = " (safety snapshot: a rollback's undo; not pushed unless --include-safety)"
    lines = [
        ("created", timestamp(snap.created)),
        ("summary", p.summary),
        ("trigger", p.trigger + (safety if snap.safety else "")),
        ("environment", p.environment),
        ("labels", ", ".join(p.labels) or "-"),
        ("source", f"{p.source.ref} {p.source.commit}" if p.source else "-"),
        ("commit", p.commit),
        ("tree", p.tree),
        ("digest", p.digest),
        ("tagger", f"{p.tagger.name} <{p.tagger.email}>"),
    ]
    if not snap.signed:
        lines.append(("signed by", "UNSIGNED"))
    elif shown.verification is not None:
        lines.append(("signed by", verified_signer(shown.verification)))
    lines.append(("note claims", signer_label(snap)))
    if p.message:
        lines.append(("message", p.message))
    return lines


def _note_lines(snap: Snapshot) -> list[tuple[str, str]]:
    """Return what the note says (a display copy) as (field, value) lines."""
    if not snap.note_data:
        if snap.note and snap.note.error:
            return [("note", f"unreadable: {snap.note.error}")]
        return [("note", "missing")]
    view = snap.note_view
    lines = []
    if "files" in snap.note_data:
        size = "?" if view.bytes is None else human_bytes(view.bytes)
        lines.append(("files", f"{'?' if view.files is None else view.files} ({size})"))
    texts = (("host", view.host), ("user", view.user), ("tool_version", view.tool_version))
    for key, text in texts:
        if text is not None:
            lines.append((key, text))
    grouped = artifact_kinds(view.artifacts)
    top = sorted(grouped.items(), key=lambda kv: -kv[1][1])[:8]
    if top:
        kinds = (
            f"{kind} {'?' if count is None else count} ({human_bytes(size)})"
            for kind, (count, size) in top
        )
        lines.append(("artifacts", ", ".join(kinds)))
    recorded_results = (
        ("last verification", view.verification),
        ("last rehearsal", view.rehearsal),
    )
    for key, recorded in recorded_results:
        if recorded is not None:
            lines.append((key, recorded_text(recorded.raw)))
    return lines


# What reads as a file extension: short letters and digits (`.py`, `.tar`, `.h5`); a name
# like `refs.br-branches-default-merge` has none, whatever follows its last dot.
_EXTENSION = re.compile(r"\.[a-z0-9_+]{1,10}")


def artifact_kinds(kinds: Mapping[str, ArtifactKind]) -> dict[str, tuple[int | None, int]]:
    """Return the note's artifact kinds for people: what is no extension counted as
    `(other)`, with its files and bytes."""
    grouped: dict[str, tuple[int | None, int]] = {}
    for kind, figures in kinds.items():
        shown = kind if not kind.startswith(".") or _EXTENSION.fullmatch(kind) else "(other)"
        count, size = grouped.get(shown, (0, 0))
        both = None if count is None or figures.count is None else count + figures.count
        grouped[shown] = (both, size + figures.bytes)
    return grouped


# How a recorded result's fields read for people; the others read as their names.
_RESULT_LABELS = {
    "failed_gates": "failed gates",
    "rollback_seconds": "rollback took (s)",
    "rto_seconds": "objective (s)",
    "tool_version": "by govsnap",
}


def plain(value: object) -> str:
    """Return a value of a note (any JSON: notes are edited by hand) as words: yes/no, lists
    joined with commas, objects as `key value` pairs; never a Python or JSON repr."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return ", ".join(plain(v) for v in value) or "none"
    if isinstance(value, dict):
        return "; ".join(f"{k} {plain(v)}" for k, v in sorted(value.items(), key=str))
    return str(value)


def recorded_text(raw: object) -> str:
    """Return a verification or rehearsal result a note records as one line: its verdict
    and time first, then what else it says."""
    if not isinstance(raw, dict):
        return plain(raw)
    head = " ".join(
        part
        for part in (plain(raw["verdict"]) if "verdict" in raw else "", _at(raw.get("time")))
        if part
    )
    rest = [
        f"{_RESULT_LABELS.get(str(key), str(key).replace('_', ' '))} {plain(value)}"
        for key, value in sorted(raw.items(), key=str)
        if key not in ("verdict", "time") and value not in (None, [], "")
    ]
    return "; ".join(part for part in (head, *rest) if part) or "-"


def _at(time: object) -> str:
    return f"at {plain(time)}" if time not in (None, "") else ""


def show_details(shown: SnapshotDetails) -> None:
    """Print one snapshot's fields, one per line: who signed it as verification finds (the
    note's copy is only a claim), and whether the audit trail pins it (the note's copy
    decides nothing)."""
    snap = shown.snapshot
    lines = [("id", snap.id), ("ref", snap.ref), ("tag", snap.tag_oid)]
    lines += _payload_lines(shown)
    lines += _note_lines(snap)
    lines.append(("pinned", "yes (audit trail)" if shown.pinned else "no"))
    fields(lines)


def fields(lines: Sequence[tuple[str, str]]) -> None:
    """Print `key  value` lines, values wrapped between words under each other to fit the
    width; a word too long for that (a digest) starts its own line, whole."""
    import textwrap

    key_width = max(len(k) for k, _ in lines)
    room = max(20, width() - key_width - 2)
    out = []
    for key, value in lines:
        wrapped = textwrap.wrap(
            clean(value, one_line=True), room, break_long_words=False, break_on_hyphens=False
        ) or [""]
        if any(len(line) > room for line in wrapped):
            out.append(key)
            out.extend(
                "  " + line
                for line in textwrap.wrap(
                    clean(value, one_line=True),
                    max(20, width() - 2),
                    break_long_words=False,
                    break_on_hyphens=False,
                )
            )
            continue
        out.append(f"{key:<{key_width}}  {wrapped[0]}")
        out.extend(" " * (key_width + 2) + line for line in wrapped[1:])
    sys.stdout.write("\n".join(out) + "\n")


def show_created(result: CreateResult) -> None:
    """Print what `create` did."""
    snap = result.snapshot
    if not result.created:
        message(f"unchanged: newest {snap.environment} snapshot {snap.id} has the same content")
        return
    # This run signed it: the note it wrote names the key it signed with.
    signed = signer_label(snap).replace("claimed ", "signed with ", 1)
    message(
        f"created snapshot {snap.id} ({snap.environment}, {result.digest.files} files, "
        f"{human_bytes(result.digest.bytes)}, {signed}) in {result.seconds:.2f}s"
    )
    if signed == "UNSIGNED":
        warning("this snapshot is UNSIGNED: it cannot be verified")
    for text in result.warnings:
        warning(text)


_PATCH_COLOURS = (("diff ", "bold"), ("+++", "bold"), ("---", "bold"), ("@@", "cyan"))


def show_patch(patch: bytes) -> None:
    """Print git's diff: as it is when piped (`| git apply` works), or on a terminal
    coloured as git colours it, every line escaped (file contents are data: a snapshot's
    file must not move the cursor or retitle the window). Through a pager the bytes go
    as they are, as git sends them: less shows control characters as ^X (LESS=FRX)."""
    if not sys.stdout.isatty():
        sys.stdout.flush()
        sys.stdout.buffer.write(patch)
        return
    from rich.markup import escape

    out = console()
    text = patch.decode(errors="replace")
    # Split on newlines only (a form feed in a file is not a line break), keep tabs.
    for raw in text.removesuffix("\n").split("\n") if text else []:
        line = escape(clean(raw))
        style = next((s for start, s in _PATCH_COLOURS if raw.startswith(start)), None)
        if style is None and raw[:1] in ("+", "-"):
            style = "green" if raw[0] == "+" else "red"
        out.print(f"[{style}]{line}[/{style}]" if style else line)


def show_diff(diff: SnapshotDiff, stat: bool) -> None:
    """Print a diff as status lines, or as a diffstat; with --patch, git's content diff
    (after the diffstat, with --stat)."""
    if diff.patch is not None:
        if stat and diff.changes:
            _show_changes(diff, stat)
        show_patch(diff.patch)
        return
    _show_changes(diff, stat)


def _show_changes(diff: SnapshotDiff, stat: bool) -> None:
    """Print a diff as status lines, or as a diffstat."""
    from rich.text import Text

    out = console()
    changes = diff.changes
    if not changes:
        out.print(f"no differences between {diff.old} and {diff.new}", markup=False)
        return
    marks = {"added": ("A", "green"), "removed": ("D", "red"), "modified": ("M", "yellow")}
    width = max(len(c.path) for c in changes)
    # One Text printed once: a print per line costs rich ~0.3 ms each (1,000 files changed).
    text = Text()
    for c in changes:
        mark, colour = marks[c.status]
        text.append(mark, colour)
        if stat:
            counts = "Bin" if c.binary else f"+{c.additions} -{c.deletions}"
            text.append(f" {clean(c.path, one_line=True):<{width}} | {counts}\n")
        else:
            text.append(f" {clean(c.path, one_line=True)}\n")
    text.append(
        f"{len(changes)} file(s): {len(diff.paths('added'))} added, "
        f"{len(diff.paths('removed'))} removed, {len(diff.paths('modified'))} modified"
    )
    out.print(text)
