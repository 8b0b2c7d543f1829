"""`govsnap stats`: figures for monitoring (stats.py)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from govsnap.commands.options import JsonOpt, feature, repo_of
from govsnap.render import cell, emit, human_bytes, message, timestamp
from govsnap.tables import Column, table

if TYPE_CHECKING:
    from govsnap.stats import Stats

app = feature()


@app.command("stats")
def show_figures(
    ctx: typer.Context,
    prometheus: Annotated[
        Path | None,
        typer.Option(
            "--prometheus",
            help="Also write the figures to this file in the Prometheus textfile format "
            "(atomically), for node_exporter's textfile collector.",
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Show snapshots per environment, ages, check outcomes, last rollback, bytes held."""
    from govsnap.stats import run

    emit(run(repo_of(ctx), prometheus), json_out, show_stats)


def _age(seconds: float) -> str:
    """Return a duration as `3d 4h`, `5h 2m`, `7m 3s` or `9s`."""
    days, left = divmod(max(0, int(seconds)), 86400)
    hours, left = divmod(left, 3600)
    minutes, secs = divmod(left, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {secs}s" if minutes else f"{secs}s"


def _when(epoch: float | None) -> str:
    return "-" if epoch is None else timestamp(int(epoch))


def show_stats(stats: Stats) -> None:
    """Print the figures of `govsnap stats`: a table per environment, then totals."""
    columns = (
        Column("environment", wrap=True),
        Column("snapshots", keep=9, justify="right"),
        Column("newest", keep=6),
        Column("age", keep=8),
        Column("verified pass/fail/never", keep=7, wrap=True, justify="right"),
        Column("last verified pass / fail", keep=4, wrap=True),
        Column("rehearsed pass/fail/never", keep=5, wrap=True, justify="right"),
        Column("last rehearsed pass / fail", keep=3, wrap=True),
    )
    rows = []
    for e in stats.environments:
        v, r = e.verification, e.rehearsal
        rows.append(
            [
                cell(e.environment),
                str(e.snapshots),
                timestamp(e.newest),
                _age(stats.now - e.newest),
                f"{v.passed}/{v.failed}/{v.never}",
                f"{_when(v.last_pass)} / {_when(v.last_fail)}",
                f"{r.passed}/{r.failed}/{r.never}",
                f"{_when(r.last_pass)} / {_when(r.last_fail)}",
            ]
        )
    table("snapshots per environment", columns, rows)
    if stats.unreadable:
        message(f"unreadable snapshot refs: {stats.unreadable}")
    rollback = stats.last_rollback
    if rollback is None:
        message("last rollback: none recorded")
    else:
        message(
            f"last rollback: {timestamp(rollback.time)}, {rollback.seconds:.2f}s, "
            f"{rollback.result}" + (f" (to {rollback.snapshot})" if rollback.snapshot else "")
        )
    limit = stats.storage_limit
    message(
        f"held only by snapshots: {human_bytes(stats.snapshot_only_bytes)} "
        f"({stats.snapshot_only_bytes} bytes on disk"
        + ("" if limit is None else f", limit {human_bytes(limit)}")
        + ")"
    )
    _show_operations(stats)


def _show_operations(stats: Stats) -> None:
    """Print what the audit trail records of each operation that ran."""
    if stats.audit_problem is not None:
        message(f"operations: the audit trail cannot be read: {stats.audit_problem}")
    ran = [o for o in stats.operations if o.last_time is not None]
    if not ran:
        return
    columns = (
        Column("operation"),
        Column("environment"),
        Column("ok", justify="right"),
        Column("failed", justify="right"),
        Column("over SLA", keep=3, justify="right"),
        Column("SLA", keep=2),
        Column("last run", keep=4, wrap=True),
    )
    rows = []
    for o in ran:
        limit = stats.sla.get(o.operation)
        took = "" if o.last_duration is None else f", {o.last_duration:.2f}s"
        rows.append(
            [
                cell(o.operation),
                cell(o.environment or "-"),
                str(o.succeeded),
                str(o.failed),
                str(o.sla_breaches),
                "-" if limit is None else f"{limit:g}s",
                cell(f"{_when(o.last_time)} {o.last_outcome}{took}"),
            ]
        )
    table("operations (audit trail)", columns, rows)
