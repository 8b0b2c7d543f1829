"""`govsnap create`, `list`, `show` and `diff`: taking snapshots and looking at them."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

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
)

if TYPE_CHECKING:
    from govsnap.store import CreateResult, Snapshot, SnapshotDiff, SnapshotListing
    from govsnap.verify import SnapshotDetails, SnapshotVerification

app = feature()


@app.command("create")
def create_snapshot(
    ctx: typer.Context,
    trigger: Annotated[str, typer.Option("--trigger", "-t", help="What caused it.")] = "manual",
    environment: Annotated[
        str | None, typer.Option("--environment", "-e", help="Environment (govsnap.environment).")
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
        str | None, typer.Option("--environment", "-e", help="Only this environment.")
    ] = None,
    label: Annotated[
        list[str] | None, typer.Option("--label", "-l", help="Only snapshots with this label.")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """List snapshots, newest first."""
    from govsnap.store import listing

    emit(listing(repo_of(ctx), environment, label), json_out, show_listing)


@app.command("show")
def show_snapshot(ctx: typer.Context, snapshot: SnapshotArg, json_out: JsonOpt = False) -> None:
    """Show everything about one snapshot, and who signed it (as verification finds)."""
    from govsnap.verify import details

    emit(details(repo_of(ctx), snapshot), json_out, show_details)


app.command("info", hidden=True, help="Alias of show.")(show_snapshot)


@app.command("diff")
def diff_snapshots(
    ctx: typer.Context,
    old: Annotated[str, typer.Argument(help="The snapshot to compare from.")],
    new: Annotated[
        str | None,
        typer.Argument(help="The snapshot to compare to (default: the working tree)."),
    ] = None,
    stat: Annotated[bool, typer.Option("--stat", help="Show lines added and removed.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Show files added, removed and modified between two snapshots (or the working tree)."""
    from govsnap.store import diff

    emit(diff(repo_of(ctx), old, new), json_out, lambda d: show_diff(d, stat))


# --- how they are shown -------------------------------------------------------------------


def signer_label(snap: Snapshot) -> str:
    """Return who the note says signed a snapshot (a claim: notes are not signed), or
    UNSIGNED when the tag carries no signature."""
    if not snap.signed:
        return "UNSIGNED"
    signer = snap.note_view.claimed_signer or "?"
    return f"claimed {snap.signature_kind}:{signer[-16:]}"


def show_listing(listed: SnapshotListing) -> None:
    """Print snapshots as a table, newest first. The signer column shows what the note
    claims (`govsnap verify` and `show` check the signature)."""
    from rich.table import Table

    snaps = listed.snapshots
    caption = (
        "(safety): taken before a rollback, its undo; not pushed unless push "
        "--include-safety; kept by govsnap.safetyRetention"
        if any(s.safety for s in snaps)
        else None
    )
    table = Table(
        title=f"{len(snaps)} snapshot(s)",
        title_justify="left",
        caption=caption,
        caption_justify="left",
    )
    for column in ("id", "created", "trigger", "environment", "labels", "files", "size"):
        table.add_column(column, justify="right" if column in {"files", "size"} else "left")
    table.add_column("digest")
    table.add_column("signer (unverified)")
    for s in snaps:
        if s.payload is None:
            table.add_row(s.id, "-", "-", "-", "-", "-", "-", "-", f"[red]{cell(s.error)}[/red]")
            continue
        note = s.note_view
        signer = signer_label(s)
        table.add_row(
            s.id,
            timestamp(s.created),
            cell(s.payload.trigger) + (" (safety)" if s.safety else ""),
            cell(s.payload.environment),
            cell(",".join(s.labels)),
            "?" if note.files is None else str(note.files),
            "?" if note.bytes is None else human_bytes(note.bytes),
            s.payload.digest[7:19],
            "[bold red]UNSIGNED[/bold red]" if signer == "UNSIGNED" else cell(signer),
        )
    console().print(table)


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
    top = sorted(view.artifacts.items(), key=lambda kv: -kv[1].bytes)[:8]
    if top:
        kinds = (
            f"{kind} {'?' if a.count is None else a.count} ({human_bytes(a.bytes)})"
            for kind, a in top
        )
        lines.append(("artifacts", ", ".join(kinds)))
    for key, recorded in (("verification", view.verification), ("rehearsal", view.rehearsal)):
        if recorded is not None:
            lines.append((key, json.dumps(recorded.raw, sort_keys=True)))
    return lines


def show_details(shown: SnapshotDetails) -> None:
    """Print one snapshot's fields, one per line: who signed it as verification finds (the
    note's copy is only a claim), and whether the audit trail pins it (the note's copy
    decides nothing)."""
    snap = shown.snapshot
    lines = [("id", snap.id), ("ref", snap.ref), ("tag", snap.tag_oid)]
    lines += _payload_lines(shown)
    lines += _note_lines(snap)
    lines.append(("pinned", "yes (audit trail)" if shown.pinned else "no"))
    width = max(len(k) for k, _ in lines)
    out = console()
    for key, value in lines:
        out.print(f"{key:<{width}}  {clean(value)}", markup=False)


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


def show_diff(diff: SnapshotDiff, stat: bool) -> None:
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
