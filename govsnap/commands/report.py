"""`govsnap report`: the evidence report (report.py), as a self-contained HTML page
(report_html.py), JSON, or a summary for the terminal."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from govsnap.commands.options import JsonOpt, feature, repo_of
from govsnap.render import cell, console, emit, message, timestamp

if TYPE_CHECKING:
    from govsnap.report import Report

app = feature()


@app.command("report")
def evidence_report(
    ctx: typer.Context,
    html_out: Annotated[
        Path | None,
        typer.Option(
            "--html",
            metavar="OUT.html",
            help="Write the report to this file as one self-contained HTML page "
            "(no network requests; opens from file:// and as a CI artifact).",
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            metavar="DATE",
            help="Only snapshots, rollbacks and audit entries from this time on "
            "(2026-01-31, an ISO time, @epoch, yesterday, '90 days ago').",
        ),
    ] = None,
    environment: Annotated[
        str | None,
        typer.Option("--environment", "-e", help="Only snapshots of this environment."),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Evidence for reviewers: per environment, snapshots with verified signers,
    verifications, rehearsals; rollbacks; the audit trail; the trust policy; retention."""
    from govsnap.report import collect

    report = collect(repo_of(ctx), since=since, environment=environment)
    if html_out is not None:
        from govsnap.report_html import write_page

        write_page(html_out, report)
    if json_out:
        emit(report, True, show_report)
    elif html_out is not None:
        message(f"wrote {html_out}: {_counts(report)}")
    else:
        show_report(report)


def _counts(report: Report) -> str:
    snapshots = sum(len(e.snapshots) for e in report.environments)
    failing = sum(e.failing for e in report.environments)
    flagged = sum(1 for a in report.audit if a.flagged)
    return (
        f"{snapshots} snapshot(s), {failing} failing verification, "
        f"{len(report.rollbacks)} rollback(s), {flagged} audit entr(ies) flagged"
    )


def show_report(report: Report) -> None:
    """Print the report's summary: a row per environment, then the totals."""
    from rich.table import Table

    table = Table(title="evidence per environment", title_justify="left")
    for column in ("environment", "snapshots", "newest", "failing now", "rehearsals"):
        table.add_column(column)
    for env in report.environments:
        newest = env.snapshots[0].snapshot.created if env.snapshots else None
        failing = env.failing
        table.add_row(
            cell(env.name),
            str(len(env.snapshots)),
            "-" if newest is None else timestamp(newest),
            str(failing),
            str(len(env.rehearsals)),
        )
    console().print(table)
    message(_counts(report))
    message("the whole report: govsnap report --html OUT.html (or --json)")
