"""`govsnap prune`, `pin` and `unpin`: the retention policy (retention.py, prune.py)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from govsnap.commands.completers import environments
from govsnap.commands.options import DryRunOpt, JsonOpt, SnapshotArg, YesOpt, feature, repo_of
from govsnap.render import (
    clean,
    confirm,
    emit,
    human_bytes,
    message,
    require_terminal,
    timestamp,
    warning,
)

if TYPE_CHECKING:
    from govsnap.prune import PinResult, PrunePlan, PruneResult

app = feature()


@app.command("prune")
def prune_snapshots(
    ctx: typer.Context,
    keep_last: Annotated[
        str | None,
        typer.Option("--keep-last", metavar="N", help="Keep the N newest (or 'unlimited')."),
    ] = None,
    keep_hourly: Annotated[
        str | None,
        typer.Option(
            "--keep-hourly", metavar="N", help="Newest per hour, for the N newest hours with one."
        ),
    ] = None,
    keep_daily: Annotated[
        str | None,
        typer.Option(
            "--keep-daily", metavar="N", help="Newest per day, for the N newest days with one."
        ),
    ] = None,
    keep_weekly: Annotated[
        str | None,
        typer.Option("--keep-weekly", metavar="N", help="Newest per ISO week, N weeks."),
    ] = None,
    keep_monthly: Annotated[
        str | None,
        typer.Option("--keep-monthly", metavar="N", help="Newest per month, N months."),
    ] = None,
    keep_yearly: Annotated[
        str | None,
        typer.Option("--keep-yearly", metavar="N", help="Newest per year, N years."),
    ] = None,
    keep_within: Annotated[
        str | None,
        typer.Option(
            "--keep-within", metavar="DURATION", help="Keep all within 1y2m3d4h of the newest."
        ),
    ] = None,
    keep_within_hourly: Annotated[
        str | None,
        typer.Option("--keep-within-hourly", metavar="DURATION", help="Hourly, within DURATION."),
    ] = None,
    keep_within_daily: Annotated[
        str | None,
        typer.Option("--keep-within-daily", metavar="DURATION", help="Daily, within DURATION."),
    ] = None,
    keep_within_weekly: Annotated[
        str | None,
        typer.Option("--keep-within-weekly", metavar="DURATION", help="Weekly, within DURATION."),
    ] = None,
    keep_within_monthly: Annotated[
        str | None,
        typer.Option("--keep-within-monthly", metavar="DURATION", help="Monthly, within DURATION."),
    ] = None,
    keep_within_yearly: Annotated[
        str | None,
        typer.Option("--keep-within-yearly", metavar="DURATION", help="Yearly, within DURATION."),
    ] = None,
    keep_label: Annotated[
        list[str] | None,
        typer.Option(
            "--keep-label",
            metavar="L[,L...]",
            help="Keep snapshots carrying all these labels; repeatable (any list matches).",
        ),
    ] = None,
    environment: Annotated[
        str | None,
        typer.Option(
            "--environment",
            "-e",
            help="Only this environment's snapshots.",
            autocompletion=environments,
        ),
    ] = None,
    group_by: Annotated[
        str,
        typer.Option("--group-by", help="'environment' (policy per environment) or 'none'."),
    ] = "environment",
    ids: Annotated[
        list[str] | None,
        typer.Option("--id", help="Remove this snapshot (repeatable); with --now, purge it."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", "-n", help="Show each decision and its reasons only.")
    ] = False,
    now: Annotated[
        bool,
        typer.Option(
            "--now", help="git gc --prune=now: reclaim at once (expires all unreachable objects)."
        ),
    ] = False,
    no_gc: Annotated[bool, typer.Option("--no-gc", help="Only delete refs and notes.")] = False,
    yes: YesOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Delete the snapshots a retention policy does not keep (restic `forget` semantics).

    With no --keep-* option the policy comes from git config (govsnap.keepLast,
    govsnap.keepDaily, ..., govsnap.keepLabel); the default is --keep-last 20. Pinned
    snapshots and the newest snapshot of each group are always kept. After deleting
    refs and notes, `git gc` runs with git's grace period (gc.pruneExpire); --now
    reclaims at once, which also expires every other unreachable object. `--id ID
    --now` purges one snapshot: refs, notes history and objects. Deleting asks on a
    terminal and needs --yes without one.
    """
    from govsnap.prune import PruneOptions, run
    from govsnap.retention import policy_from_values

    given = {
        "last": keep_last,
        "hourly": keep_hourly,
        "daily": keep_daily,
        "weekly": keep_weekly,
        "monthly": keep_monthly,
        "yearly": keep_yearly,
        "within": keep_within,
        "within_hourly": keep_within_hourly,
        "within_daily": keep_within_daily,
        "within_weekly": keep_within_weekly,
        "within_monthly": keep_within_monthly,
        "within_yearly": keep_within_yearly,
    }
    values = {rule: text for rule, text in given.items() if text is not None}
    policy = None
    if values or keep_label:
        option_of = {rule: "--keep-" + rule.replace("_", "-") for rule in given}
        policy = policy_from_values(values, keep_label or [], option_of, "--keep-label")
    options = PruneOptions(
        policy=policy,
        environment=environment,
        group_by=group_by,
        ids=tuple(ids or ()),
        dry_run=dry_run,
        now=now,
        gc=not no_gc,
    )

    def ask(plan: PrunePlan) -> bool:
        return confirm_prune(plan, show=not json_out)

    def announce(plan: PrunePlan) -> None:
        if plan.options.now and not json_out:
            warning(_now_warning())

    emit(run(repo_of(ctx), options, None if yes else ask, announce), json_out, show_prune)


@app.command("pin")
def pin_snapshot(
    ctx: typer.Context, snapshot: SnapshotArg, dry_run: DryRunOpt = False, json_out: JsonOpt = False
) -> None:
    """Pin a snapshot: prune always keeps it (recorded in its note, audited)."""
    from govsnap.prune import set_pinned

    emit(set_pinned(repo_of(ctx), snapshot, True, dry_run=dry_run), json_out, show_pin)


@app.command("unpin")
def unpin_snapshot(
    ctx: typer.Context, snapshot: SnapshotArg, dry_run: DryRunOpt = False, json_out: JsonOpt = False
) -> None:
    """Unpin a snapshot: the retention policy decides about it again."""
    from govsnap.prune import set_pinned

    emit(set_pinned(repo_of(ctx), snapshot, False, dry_run=dry_run), json_out, show_pin)


def show_prune(done: PrunePlan | PruneResult) -> None:
    """Print what a dry run found, or what a prune did."""
    from govsnap.prune import PrunePlan

    if isinstance(done, PrunePlan):
        show_plan(done)
    else:
        show_result(done)


def confirm_prune(plan: PrunePlan, show: bool) -> bool:
    """Ask on the terminal whether to delete what `plan` removes, after listing its
    decisions when `show` (see confirm)."""
    count = len(plan.removed)
    verb = "purge" if plan.options.purge else "delete"
    action = f"prune would {verb} {count} snapshot(s)"
    require_terminal(action)
    if show:
        prune_decisions(plan)
    return confirm(action, f"{verb.capitalize()} {count} snapshot(s)? This cannot be undone.")


def _source_text(plan: PrunePlan) -> str:
    return {
        "flags": "from the command line",
        "config": "from git config govsnap.keep*",
        "default": "the default; set git config govsnap.keepLast and friends to change it",
        "ids": "",
    }.get(plan.source, plan.source)


def prune_decisions(plan: PrunePlan) -> None:
    """Print, per group, every snapshot with keep/remove and its reasons (plain lines:
    a plan may hold thousands of snapshots)."""
    source = _source_text(plan)
    message(f"policy: {plan.describe()}" + (f" ({source})" if source else ""))
    if plan.has_safety and plan.safety_policy is not None:
        where = (
            "from git config govsnap.safetyRetention"
            if plan.safety_source == "config"
            else "the default; set git config govsnap.safetyRetention to change it"
        )
        message(f"safety snapshots (pre-rollback): {plan.safety_policy.describe()} ({where})")
    groups = plan.groups
    current = None
    lines = []
    for d in plan.decisions:
        if d.group != current:
            current = d.group
            kept, removed = groups[d.group]
            lines.append(f"group {d.group}: keep {kept}, remove {removed}")
        snap = d.snapshot
        when = timestamp(snap.created) if snap.payload else "?"
        labels = ",".join(snap.labels) or "-"
        lines.append(
            f"  {d.action:<6}  {snap.id}  {when}  {labels:<16}  {'; '.join(d.reasons)}".rstrip()
        )
    if lines:
        sys.stdout.write("\n".join(clean(line, one_line=True) for line in lines) + "\n")
    if plan.why_nothing:
        message(plan.why_nothing)


def _now_warning() -> str:
    return (
        "--now runs git gc --prune=now: it also deletes every other unreachable object "
        "in this repository at once, not only the pruned snapshots' (git's grace period "
        "is skipped)"
    )


def show_plan(plan: PrunePlan) -> None:
    """Print what a dry run found: the decisions, then a summary."""
    prune_decisions(plan)
    if not plan.decisions:
        message("no snapshots to consider")
    message(
        f"dry run: would remove {len(plan.removed)} snapshot(s), keep {len(plan.kept)}; "
        f"{human_bytes(plan.reclaimable or 0)} would be reclaimed (objects no other ref or "
        "the index holds) once git gc prunes them"
    )
    if plan.options.now:
        warning(_now_warning())


def show_result(result: PruneResult) -> None:
    """Print what a real prune did: per group, totals, and the space before and after."""
    plan = result.plan
    if plan.why_nothing:
        message(plan.why_nothing)
    if plan.source == "ids":
        verb = "purged" if plan.options.purge else "removed"
        message(f"{verb} snapshot(s) {', '.join(result.removed) or '-'} in {result.seconds:.2f}s")
    else:
        for group, (kept, removed) in plan.groups.items():
            message(f"group {group}: kept {kept}, removed {removed}")
        message(
            f"removed {len(result.removed)} snapshot(s), kept {len(plan.kept)} "
            f"({plan.describe()}) in {result.seconds:.2f}s"
        )
    if result.vanished:
        shown = ", ".join(result.vanished[:8]) + (" ..." if len(result.vanished) > 8 else "")
        warning(
            f"{len(result.vanished)} planned snapshot(s) had already gone or changed and "
            f"were left alone: {shown}"
        )
    sizes = f"objects {human_bytes(result.bytes_before)} -> {human_bytes(result.bytes_after)}"
    if result.gc == "now":
        message(f"git gc --prune=now: {sizes}; every unreachable object was expired at once")
    elif result.gc == "grace":
        message(
            f"git gc: {sizes}; unreachable objects newer than {result.prune_expire} "
            "(gc.pruneExpire) are kept for now; prune --now reclaims them at once"
        )
    else:
        message(f"git gc not run (--no-gc): {sizes}")


def show_pin(result: PinResult) -> None:
    """Print what pin / unpin did."""
    if not result.changed:
        state = "pinned" if result.pinned else "not pinned"
        message(f"snapshot {result.snapshot} is already {state}")
    elif result.dry_run:
        verb = "pin" if result.pinned else "unpin"
        message(f"dry run: would {verb} snapshot {result.snapshot}; nothing was changed")
    elif result.pinned:
        message(f"pinned snapshot {result.snapshot}: prune always keeps it")
    else:
        message(f"unpinned snapshot {result.snapshot}: the retention policy decides again")
