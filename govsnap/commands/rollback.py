"""`govsnap rollback` and `rehearse`: restoring a snapshot (rollback.py), and rehearsing
a restore in a throwaway clone (rehearsal.py)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from govsnap.commands.options import JsonOpt, SnapshotArg, YesOpt, feature, repo_of
from govsnap.render import clean, confirm, emit, message, warning

if TYPE_CHECKING:
    from govsnap.rehearsal import RehearsalReport
    from govsnap.rollback import RollbackResult
    from govsnap.store import Snapshot

app = feature()


@app.command("rollback")
def rollback_to(
    ctx: typer.Context,
    snapshot: SnapshotArg,
    paths: Annotated[
        list[str] | None,
        typer.Argument(help="With --paths: the files and directories to restore."),
    ] = None,
    only_paths: Annotated[
        bool,
        typer.Option(
            "--paths", help="Restore only the paths that follow (relative to the work tree top)."
        ),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", "-n", help="List what would be written, removed, left.")
    ] = False,
    commit: Annotated[
        bool, typer.Option("--commit", help="Commit the restored state on the current branch.")
    ] = False,
    no_verify: Annotated[
        bool, typer.Option("--no-verify", help="Roll back to an unverified snapshot.")
    ] = False,
    allow_policy_change: Annotated[
        bool,
        typer.Option(
            "--allow-policy-change",
            help="Let the rollback remove or change .govsnap/trust.toml.",
        ),
    ] = False,
    recurse_submodules: Annotated[
        bool,
        typer.Option(
            "--recurse-submodules",
            help="Check submodules out too (as submodule.recurse=true does).",
        ),
    ] = False,
    yes: YesOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Restore a snapshot into the working tree and index (HEAD unmoved), after taking a
    safety snapshot of the current state that undoes it."""
    from govsnap.errors import UsageError
    from govsnap.rollback import RollbackOptions, rollback

    if paths and not only_paths:
        raise UsageError(f"unexpected argument {paths[0]!r}: name paths after --paths")
    if only_paths and not paths:
        raise UsageError("--paths needs at least one path")
    options = RollbackOptions(
        tuple(paths or ()),
        dry_run,
        commit,
        not no_verify,
        allow_policy_change,
        recurse_submodules,
    )
    ask = None if yes or dry_run else confirm_rollback
    result = rollback(repo_of(ctx), snapshot, options, ask, safety_snapshot_taken)
    emit(result, json_out, show_rollback)
    result.check()


@app.command("rehearse")
def rehearse_rollback(
    ctx: typer.Context,
    snapshot: Annotated[
        str | None, typer.Argument(help="The snapshot to rehearse (default: latest).")
    ] = None,
    damage: Annotated[
        str | None,
        typer.Option("--damage", help="Only this damage: delete, corrupt, stray, index (or all)."),
    ] = None,
    rto: Annotated[
        float | None,
        typer.Option("--rto", help="Recovery time objective in seconds (govsnap.rto, 300)."),
    ] = None,
    report: Annotated[
        Path | None,
        typer.Option("--report", help="Write the report to PATH.json and PATH.md."),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Rehearse a rollback in a throwaway clone: damage it, roll back, check every byte,
    time it against the recovery objective; exit 1 if any gate fails."""
    from govsnap.rehearsal import rehearse

    result = rehearse(repo_of(ctx), snapshot, damage, rto, report)
    emit(result, json_out, show_rehearsal)
    result.check()


def confirm_rollback(snap: Snapshot) -> bool:
    """Ask on the terminal whether to roll back to `snap` (see render.confirm)."""
    summary = snap.payload.summary if snap.payload else snap.id
    return confirm(
        "rollback rewrites the working tree",
        f"Roll the working tree and index back to snapshot {snap.id} ({summary})?\n"
        "The current state is saved first as a safety snapshot.",
    )


def safety_snapshot_taken(safety: Snapshot, undo: str) -> None:
    """Print the way back as soon as it exists, before the working tree is touched: a
    rollback killed half-way has then said how to undo it."""
    sys.stderr.write(f"govsnap: safety snapshot {safety.id} taken; undo with: {undo}\n")
    sys.stderr.flush()


def show_rollback(result: RollbackResult) -> None:
    """Print what a rollback did, or with --dry-run what it would do."""
    plan = result.plan
    snap = result.snapshot.id
    where = f" ({', '.join(result.paths)})" if result.paths else ""
    if not result.verified:
        warning(f"snapshot {snap} was NOT verified (--no-verify)")
    for text in result.warnings:
        warning(clean(text, one_line=True))
    if result.dry_run:
        message(
            f"dry run: rolling back to {snap}{clean(where, one_line=True)} would write "
            f"{len(plan.write)} file(s), "
            f"remove {len(plan.remove)}, leave {len(plan.leave)} ignored; index from "
            f"{result.index_source}"
        )
        for action, items in (
            ("write", plan.write),
            ("remove", plan.remove),
            ("leave", plan.leave),
            ("index", plan.index_only),
        ):
            for path in items:
                # A name may hold a newline or a terminal escape: one line per path.
                message(f"{action:<6} {clean(path, one_line=True)}")
        return
    head = f"HEAD moved to {result.commit[:12]}" if result.commit else "HEAD unmoved"
    message(
        f"rolled back to snapshot {snap}{clean(where, one_line=True)}: wrote "
        f"{len(plan.write)} file(s), removed {len(plan.remove)}; index from "
        f"{result.index_source}; {head} ({result.seconds:.2f}s)"
    )
    if result.commit:
        message(f"committed {result.commit[:12]}: Roll back to snapshot {snap}")
    if result.safety is not None:
        message(
            f"safety snapshot {result.safety.id} holds the previous state; undo with: {result.undo}"
        )


def show_rehearsal(report: RehearsalReport) -> None:
    """Print a rehearsal's verdict, damage, gates and where the reports are."""
    verdict = "PASS" if report.passed else f"FAIL ({', '.join(report.failed_gates)})"
    took = "-" if report.rollback_seconds is None else f"{report.rollback_seconds:.2f}s"
    message(
        f"rehearsal of snapshot {report.snapshot}: {verdict}; rollback took {took} "
        f"(objective {report.rto:g}s)"
    )
    for d in report.damage:
        message(f"damage {d.kind:<8} {len(d.paths)} path(s)")
    for g in report.gates:
        # A gate's detail may name paths, which may hold newlines.
        detail = clean(g.detail, one_line=True)
        message(f"gate   {g.name:<9} {'pass' if g.passed else 'FAIL'}  {detail}")
    for text in report.warnings:
        warning(clean(text, one_line=True))
    for path in report.report_files:
        message(f"report {path}")
