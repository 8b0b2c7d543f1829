"""`govsnap restore`, `ls` and `find`: a snapshot's files, written into another directory
(restore.py) or listed and searched (contents.py), the repository untouched."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from govsnap.commands.options import DryRunOpt, JsonOpt, SnapshotArg, feature, repo_of
from govsnap.render import clean, emit, message, warning

if TYPE_CHECKING:
    from govsnap.restore import RestoreResult

app = feature()


@app.command("restore")
def restore_snapshot(
    ctx: typer.Context,
    snapshot: SnapshotArg,
    target: Annotated[
        Path,
        typer.Option(
            "--target",
            "-t",
            help="The directory to write into (new or empty; outside the repository).",
        ),
    ],
    include: Annotated[
        list[str] | None,
        typer.Option(
            "--include",
            "-i",
            help="Only paths matching this git glob (* within a directory, ** across); repeatable.",
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Write into a non-empty target, overwriting the files the snapshot holds.",
        ),
    ] = False,
    no_verify: Annotated[
        bool, typer.Option("--no-verify", help="Restore an unverified snapshot.")
    ] = False,
    dry_run: DryRunOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Write a snapshot's files into another directory, as git's checkout writes them
    (filters, eol), without touching the repository."""
    from govsnap.restore import RestoreOptions, restore

    options = RestoreOptions(
        target=target,
        includes=tuple(include or ()),
        force=force,
        dry_run=dry_run,
        verify=not no_verify,
    )
    emit(restore(repo_of(ctx), snapshot, options), json_out, show_restore)


def show_restore(result: RestoreResult) -> None:
    """Print what a restore wrote, or with --dry-run would write."""
    snap = result.snapshot.id
    if not result.verified:
        warning(f"snapshot {snap} was NOT verified (--no-verify)")
    count, replaced = len(result.files), len(result.overwritten)
    over = f", overwriting {replaced}" if replaced else ""
    if result.dry_run:
        message(f"dry run: restoring {snap} would write {count} file(s) into {result.target}{over}")
        for f in result.files:
            action = "replace" if f.overwrites else "write"
            message(f"{action:<7} {clean(os.fsdecode(f.path), one_line=True)}")
        return
    message(
        f"restored {count} file(s) of snapshot {snap} into {result.target}{over} "
        f"({result.seconds:.2f}s)"
    )
