"""`govsnap push`, `fetch` and `remote setup`: sharing snapshots, notes and the audit
trail through a git remote (remote.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated

import typer

from govsnap.commands.completers import remotes
from govsnap.commands.options import DryRunOpt, JsonOpt, feature, repo_of
from govsnap.refs import tracking_ref
from govsnap.render import confirm, emit, listed, message, stderr_line, warning

if TYPE_CHECKING:
    from govsnap.remote import FetchReport, PushReport, RestoreReport, SetupReport

app = feature()
remote_app = feature(help="Configure a git remote so plain git push/fetch carry snapshots.")
app.add_typer(remote_app, name="remote")

RemoteArg = Annotated[
    str | None,
    typer.Argument(
        help="A configured git remote (default: govsnap.remote, else origin).",
        autocompletion=remotes,
    ),
]


@app.command("push")
def push_to(
    ctx: typer.Context,
    remote: RemoteArg = None,
    prune: Annotated[
        bool,
        typer.Option(
            "--prune",
            help="Also delete on the remote the snapshots a prune recorded in the audit trail "
            "deleted here.",
        ),
    ] = False,
    include_safety: Annotated[
        bool,
        typer.Option(
            "--include-safety",
            help="Also send safety snapshots (taken before each rollback; they capture "
            "untracked files, so they stay local by default).",
        ),
    ] = False,
    yes: Annotated[
        bool,
        typer.Option("--yes", "-y", help="With --prune: delete on the remote without asking."),
    ] = False,
    dry_run: DryRunOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Send snapshots, notes and the audit trail to a remote; never forces a ref.
    Deleting on the remote (--prune) asks on a terminal and needs --yes without one."""
    from govsnap.remote import push

    report = push(
        repo_of(ctx),
        remote,
        prune=prune,
        dry_run=dry_run,
        include_safety=include_safety,
        confirm=None if yes else confirm_push_deletions,
    )
    emit(report, json_out, show_push)
    report.check()


@app.command("fetch")
def fetch_from(
    ctx: typer.Context,
    remote: RemoteArg = None,
    no_verify: Annotated[
        bool, typer.Option("--no-verify", help="Add new snapshots without verifying them.")
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            "-n",
            help="Fetch and judge, but add, merge and join nothing: say what a fetch would do.",
        ),
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Fetch a remote's snapshots (verified), merge its notes and join its audit trail."""
    from govsnap.remote import fetch

    report = fetch(repo_of(ctx), remote, verify=not no_verify, dry_run=dry_run)
    emit(report, json_out, show_fetch)
    report.check()


@remote_app.command("setup")
def set_up_remote(
    ctx: typer.Context,
    remote: Annotated[str, typer.Argument(help="A configured git remote.", autocompletion=remotes)],
    undo: Annotated[bool, typer.Option("--undo", help="Remove govsnap's refspecs.")] = False,
    dry_run: DryRunOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Add govsnap's refspecs to remote.<REMOTE>.fetch/push (idempotent); --undo removes them."""
    from govsnap.remote import setup

    emit(setup(repo_of(ctx), remote, undo=undo, dry_run=dry_run), json_out, show_setup)


def confirm_push_deletions(remote: str, ids: Sequence[str]) -> bool:
    """Ask on the terminal whether push --prune may delete `ids` on `remote` (see confirm)."""
    action = f"push --prune would delete {len(ids)} snapshot(s) on remote {remote!r}"
    return confirm(
        action,
        f"Delete {len(ids)} snapshot(s) on remote {remote!r} ({listed(ids)})? "
        "This cannot be undone there.",
    )


def show_fetch(report: FetchReport) -> None:
    """Print what `fetch` added and merged; problems go to stderr, one line each."""
    added = report.with_status("added")
    would = "dry run, nothing changed: would have " if report.dry_run else ""
    message(
        f"fetched {report.remote} ({report.url}): {would}{len(added)} snapshot(s) added, "
        f"{report.unchanged} already here; notes {report.notes}; audit trail {report.audit}"
    )
    origin = {
        "kept": "note kept here since an earlier fetch refused it",
        "rebuilt": "note rebuilt from the signed payload: the remote has none",
        "none": "no note: the tag is unreadable",
    }
    for snap in added:
        details = [text for text in (snap.detail, origin.get(snap.note, "")) if text]
        message(f"  added {snap.id}" + (f" ({'; '.join(details)})" if details else ""))
    for snap in report.with_status("pruned"):
        message(f"  skipped {snap.id}: {snap.detail}")
    for snap in report.with_status("conflict", "unverified", "invalid"):
        stderr_line(f"{snap.status}: {snap.id}: {snap.detail}")
    if report.notes_kept_aside:
        message(
            f"  kept the notes of {report.notes_kept_aside} refused snapshot(s): the fetch "
            "that adds them adds their notes"
        )


def show_push(report: PushReport) -> None:
    """Print what `push` sent, or with --dry-run would send."""
    would = "would " if report.dry_run else ""
    if report.fetched is not None:
        show_fetch(report.fetched)
    elif report.fetch_first:
        message(
            f"would fetch and merge first: {report.remote} has notes or audit entries "
            "this clone lacks"
        )
    done = []
    if report.sent:
        done.append(f"{would}send {len(report.sent)} snapshot(s): {listed(report.sent)}")
    for what, state in (("notes", report.notes), ("audit trail", report.audit)):
        if state == "sent":
            done.append(f"{would}send the {what}")
    if report.deleted:
        done.append(
            f"{would}delete {len(report.deleted)} pruned snapshot(s) on the remote: "
            f"{listed(report.deleted)}"
        )
    if report.held_back:
        done.append(
            f"held back {len(report.held_back)} snapshot(s) a prune recorded in the audit "
            f"trail deleted: {listed(report.held_back)}"
        )
    if report.kept_local:
        done.append(
            f"kept {len(report.kept_local)} safety snapshot(s) local (they capture untracked "
            f"files; --include-safety sends them): {listed(report.kept_local)}"
        )
    if not done:
        message(f"{report.remote} ({report.url}) is up to date")
        return
    message(f"{report.remote} ({report.url}):")
    for line in done:
        message(f"  {line}")


def show_restore(report: RestoreReport) -> None:
    """Print what `doctor --restore-remote` did, or with --dry-run would do."""
    would = "would be " if report.dry_run else ""
    what = {
        "up to date": "holds this clone's audit trail already",
        "extended": f"audit trail {would}extended again from this clone's copy",
        "replaced": f"audit trail {would}replaced by this clone's copy (forced, with a lease)",
    }[report.audit]
    message(f"{report.remote} ({report.url}): {what}")
    if report.dropped:
        warning(
            f"{report.dropped} entr{'y' if report.dropped == 1 else 'ies'} of its rewritten "
            f"chain, which this clone does not hold, {'would be' if report.dry_run else 'were'} "
            f"dropped from it (kept in {tracking_ref(report.remote, 'audit')})"
        )
    if report.pushed is not None:
        show_push(report.pushed)


def show_setup(report: SetupReport) -> None:
    """Print what `remote setup` changed in the remote's configuration."""
    would = "would " if report.dry_run else ""
    for key, value in report.removed:
        message(f"{would}remove {key} = {value}")
    for key, value in report.added:
        message(f"{would}add    {key} = {value}")
    if not report.added and not report.removed:
        state = "has none of govsnap's refspecs" if report.undo else "is already set up"
        message(f"remote {report.remote} {state}: nothing to change")
    elif ("remote." + report.remote + ".push", "HEAD") in report.added:
        message(
            f"(with remote.{report.remote}.push set, `git push {report.remote}` pushes only "
            "what it lists: HEAD keeps it pushing the current branch)"
        )
