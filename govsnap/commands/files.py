"""`govsnap restore`, `ls` and `find`: a snapshot's files, written into another directory
(restore.py) or listed and searched (contents.py), the repository untouched."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from govsnap.commands.options import DryRunOpt, JsonOpt, SnapshotArg, feature, repo_of
from govsnap.render import clean, emit, listed, message, warning

if TYPE_CHECKING:
    from govsnap.contents import FindResult, Listing
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


@app.command("ls")
def list_files(
    ctx: typer.Context,
    snapshot: SnapshotArg,
    path: Annotated[
        str, typer.Argument(help="A directory or file inside the snapshot (default: the top).")
    ] = "",
    recursive: Annotated[
        bool, typer.Option("--recursive", "-r", help="List everything below, as ls-tree -r.")
    ] = False,
    name_only: Annotated[
        bool, typer.Option("--name-only", help="Only the paths, one a line.")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """List a snapshot's files and directories, as git ls-tree -l lists them."""
    from govsnap.contents import ls

    emit(ls(repo_of(ctx), snapshot, path, recursive), json_out, lambda r: show_ls(r, name_only))


@app.command("find")
def find_files(
    ctx: typer.Context,
    pattern: Annotated[
        list[str],
        typer.Argument(
            help="A name (any directory) or a path from the top with /; git glob: * within "
            "a directory, ** across."
        ),
    ],
    environment: Annotated[
        str | None, typer.Option("--environment", "-e", help="Only this environment.")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Name the snapshots holding files that match a pattern, newest first."""
    from govsnap.contents import find

    emit(find(repo_of(ctx), tuple(pattern), environment), json_out, show_found)


def _path(raw: bytes) -> str:
    """Return a path from a tree fit for the terminal (names are data: escaped)."""
    return clean(os.fsdecode(raw), one_line=True)


def show_ls(listing: Listing, name_only: bool) -> None:
    """Print a snapshot's entries as `git ls-tree -l` does (or only their paths)."""
    for e in listing.entries:
        if name_only:
            message(_path(e.path))
        else:
            size = "-" if e.size is None else str(e.size)
            message(f"{e.mode:06o} {e.type} {e.oid} {size:>7}\t{_path(e.path)}")


def show_found(result: FindResult) -> None:
    """Print each snapshot holding a match, then its matching paths."""
    from govsnap.render import timestamp

    patterns = " ".join(result.patterns)
    for found in result.found:
        snap = found.snapshot
        environment = clean(snap.environment, one_line=True)
        message(
            f"snapshot {snap.id} ({timestamp(snap.created)}, {environment}): "
            f"{len(found.paths)} path(s)"
        )
        for path in found.paths:
            message(f"  {_path(path)}")
    message(f"{len(result.found)} of {result.searched} snapshot(s) hold a path matching {patterns}")
    if result.unreadable:
        warning(f"unreadable, not searched: {listed(result.unreadable)} (govsnap verify says why)")


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
            message(f"{action:<7} {_path(f.path)}")
        return
    message(
        f"restored {count} file(s) of snapshot {snap} into {result.target}{over} "
        f"({result.seconds:.2f}s)"
    )
