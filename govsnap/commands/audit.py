"""`govsnap audit` and `audit verify`: the audit trail (audit.py) shown and checked."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from govsnap.commands.options import JsonOpt, feature, repo_of
from govsnap.render import cell, emit, message, stderr_line, timestamp
from govsnap.tables import Column, table

if TYPE_CHECKING:
    from govsnap.audit import AuditEntry, AuditListing, AuditReport

app = feature(
    help="Show the audit trail (refs/govsnap/audit), or verify it.",
    invoke_without_command=True,
    no_args_is_help=False,
)


@app.callback()
def show_trail(
    ctx: typer.Context,
    since: Annotated[
        str | None,
        typer.Option("--since", help="Only entries at or after: 2026-01-31, '3 days ago', @epoch."),
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="Only entries at or before this time.")
    ] = None,
    operation: Annotated[
        str | None, typer.Option("--operation", help="Only this operation (create, prune, ...).")
    ] = None,
    snapshot: Annotated[
        str | None, typer.Option("--snapshot", help="Only entries naming this snapshot id prefix.")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Show the audit trail, newest first."""
    if ctx.invoked_subcommand is not None:
        return
    from govsnap.audit import filter_of, listing

    wanted = filter_of(since, until, operation, snapshot)
    emit(listing(repo_of(ctx), wanted), json_out, show_listing)


@app.command("verify")
def verify_trail(
    ctx: typer.Context,
    skew: Annotated[
        int | None,
        typer.Option("--skew", help="Seconds time may go backwards (default govsnap.auditSkew)."),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Check the chain is linear on the empty tree, in time order, with good signatures."""
    from govsnap.audit import verify

    report = verify(repo_of(ctx), skew)
    emit(report, json_out, show_report)
    report.check()


def show_listing(listed: AuditListing) -> None:
    """Print audit entries as a table, newest first, that fits the terminal (snapshot ids
    whole)."""
    entries = listed.entries
    title = f"{len(entries)} audit entr{'y' if len(entries) == 1 else 'ies'}"
    columns = (
        Column("time"),
        Column("operation"),
        Column("result", keep=8, wrap=True),
        Column("took", keep=5),
        Column("actor", keep=4, wrap=True),
        Column("snapshots", keep=7, wrap=True),
        Column("signed", keep=3, wrap=True),
        Column("summary", keep=6, wrap=True),
    )
    rows = []
    for e in entries:
        summary = e.summary if e.error is None else f"{e.summary} (malformed: {e.error})"
        cells = (
            timestamp(e.time),
            e.operation,
            e.result,
            _took(e),
            e.actor,
            " ".join(e.snapshots),
            (e.signature_kind if e.signature_kind != "none" else "-")
            + ("" if e.shared else " (this clone only)"),
            summary,
        )
        rows.append([cell(text) for text in cells])
    table(title, columns, rows)


def _took(entry: AuditEntry) -> str:
    """Return how long the operation took, and its SLA when it breached it."""
    seconds = entry.duration
    if seconds is None:
        return "-"
    limit = entry.sla_seconds
    breached = f" > SLA {limit:g}s" if entry.sla_breached and limit is not None else ""
    return f"{seconds:.2f}s{breached}"


def show_report(report: AuditReport) -> None:
    """Print the result of `audit verify`."""
    state = "OK" if report.ok else "FAILED"
    message(
        f"audit trail {state}: {report.entries} entries, {report.signed} signed, "
        f"{report.entries - report.signed} unsigned (skew {report.skew}s)"
    )
    for signer in report.signers:
        message(f"  signed by {signer}")
    for problem in report.problems:
        stderr_line(f"{problem.kind}: {problem.message}")
