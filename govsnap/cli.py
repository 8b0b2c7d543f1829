"""The `govsnap` command line: parse, call one library operation, render. Nothing else."""

from __future__ import annotations

import io
import os
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import pygit2
import typer

from govsnap import __version__, render
from govsnap.errors import EXIT_ENVIRONMENT, GovsnapError
from govsnap.repo import Repo, open_repo

if TYPE_CHECKING:
    from govsnap.trust_edit import PolicyEdit

app = typer.Typer(
    name="govsnap",
    help="Signed, tamper-evident snapshots of a git repository for promotion governance.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
DryRunOpt = Annotated[
    bool, typer.Option("--dry-run", help="Show what would change; change nothing.")
]


class State:
    """Options shared by every command."""

    def __init__(self, path: Path | None) -> None:
        self.path = path

    def repo(self) -> Repo:
        """Open the repository the command works on."""
        return open_repo(self.path)


def _state(ctx: typer.Context) -> State:
    state = ctx.obj
    assert isinstance(state, State)
    return state


def _version(value: bool) -> None:
    if value:
        render.message(f"govsnap {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    repo: Annotated[
        Path | None,
        typer.Option("-C", "--repo", help="Run as if started in this directory."),
    ] = None,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Signed, tamper-evident snapshots of a git repository for promotion governance."""
    ctx.obj = State(repo)


@app.command()
def init(
    ctx: typer.Context,
    generate_key: Annotated[
        bool,
        typer.Option(
            "--generate-key",
            help="Create a passphrase-less OpenPGP signing key, unless one is configured.",
        ),
    ] = False,
    keyring: Annotated[
        Path | None,
        typer.Option("--keyring", help="GnuPG home for the generated key (default: gpg's own)."),
    ] = None,
    environment: Annotated[
        str | None, typer.Option("--environment", "-e", help="Default environment to record.")
    ] = None,
    signer: Annotated[
        str | None,
        typer.Option("--signer", help="Your name in the trust policy (default: from user.email)."),
    ] = None,
    signer_environment: Annotated[
        list[str] | None,
        typer.Option(
            "--signer-environment", help="Environments you may act in (repeatable; default *)."
        ),
    ] = None,
    signer_operation: Annotated[
        list[str] | None,
        typer.Option(
            "--signer-operation",
            help="Operations you may perform (repeatable; default *: all, policy changes too).",
        ),
    ] = None,
    dry_run: DryRunOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Prepare a repository: check git and signing, write govsnap.* config defaults, and a
    trust policy naming your key, ready to commit."""
    from govsnap import configure

    options = configure.InitOptions(
        generate_key=generate_key,
        keyring=keyring,
        environment=environment,
        signer_name=signer,
        signer_environments=tuple(signer_environment or ["*"]),
        signer_operations=tuple(signer_operation or ["*"]),
        dry_run=dry_run,
    )
    report = configure.init(_state(ctx).repo(), options)
    if json_out:
        render.emit_json(report.as_json())
    else:
        render.init_report(report)
    if report.signing_configured and not report.signing_ok:
        raise typer.Exit(3)


@app.command()
def create(
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
    message: Annotated[str, typer.Option("--message", "-m", help="A note for humans.")] = "",
    unsigned: Annotated[
        bool, typer.Option("--unsigned", help="Create the snapshot without a signature.")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Take a signed snapshot of the working tree (or of a commit with --from)."""
    from govsnap.store import CreateOptions
    from govsnap.store import create as create_snapshot

    options = CreateOptions(
        trigger=trigger,
        environment=environment,
        labels=label or [],
        from_rev=from_rev,
        source_ref=source_ref,
        tracked_only=tracked_only,
        if_changed=if_changed,
        message=message,
        unsigned=unsigned,
    )
    result = create_snapshot(_state(ctx).repo(), options)
    if json_out:
        render.emit_json(render.created_json(result))
    else:
        render.created(result)


@app.command("list")
def list_(
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
    from govsnap.store import filter_snapshots, list_snapshots

    snaps = filter_snapshots(list_snapshots(_state(ctx).repo()), environment, label)
    if json_out:
        render.emit_json([render.snapshot_json(s, full=False) for s in snaps])
    else:
        render.snapshot_table(snaps)


@app.command()
def show(
    ctx: typer.Context,
    snapshot: Annotated[str, typer.Argument(help="Id prefix, latest, latest~N, sha256:<prefix>.")],
    json_out: JsonOpt = False,
) -> None:
    """Show everything about one snapshot, and who signed it (as verification finds)."""
    from govsnap.prune import pinned_ids
    from govsnap.store import resolve
    from govsnap.verify import verify_snapshot

    repo = _state(ctx).repo()
    snap = resolve(repo, snapshot)
    # Who signed it is what the signature says, checked now; the note only claims it.
    # Whether it is pinned is what the audit trail says.
    check = verify_snapshot(repo, snap) if snap.signed and snap.payload else None
    pinned = snap.id in pinned_ids(repo)
    if json_out:
        data = render.snapshot_json(snap)
        render.emit_json({**data, "verified": render.checked_json(check), "pinned": pinned})
    else:
        render.snapshot_details(snap, check, pinned)


app.command("info", hidden=True, help="Alias of show.")(show)


@app.command()
def diff(
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
    from govsnap.store import diff_trees, list_snapshots, resolve, snapshot_tree
    from govsnap.worktree import capture_tree

    repo = _state(ctx).repo()
    snaps = list_snapshots(repo)
    a = resolve(repo, old, snaps)
    old_tree = snapshot_tree(repo, a)
    if new is None:
        new_label = "working tree"
        new_tree = repo.git[capture_tree(repo)]
    else:
        b = resolve(repo, new, snaps)
        new_label = b.id
        new_tree = snapshot_tree(repo, b)
    changes = diff_trees(repo, old_tree, new_tree)  # type: ignore[arg-type]
    if json_out:
        render.emit_json(render.diff_json(a.id, new_label, changes))
    else:
        render.diff(a.id, new_label, changes, stat)


# --- audit and hooks (issue 6) ---------------------------------------------------------

audit_app = typer.Typer(
    help="Show the audit trail (refs/govsnap/audit), or verify it.",
    invoke_without_command=True,
    no_args_is_help=False,
)
app.add_typer(audit_app, name="audit")


@audit_app.callback()
def audit_show(
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
    from datetime import datetime

    from govsnap import audit

    now = datetime.now().astimezone()
    wanted = audit.AuditFilter(
        since=None if since is None else audit.parse_time(since, now),
        until=None if until is None else audit.parse_time(until, now),
        operation=operation,
        snapshot=snapshot,
    )
    entries = audit.select(audit.read_chain(_state(ctx).repo()), wanted)
    if json_out:
        render.emit_json([e.as_json() for e in entries])
    else:
        render.audit_table(entries)


@audit_app.command("verify")
def audit_verify(
    ctx: typer.Context,
    skew: Annotated[
        int | None,
        typer.Option("--skew", help="Seconds time may go backwards (default govsnap.auditSkew)."),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Check the chain is linear on the empty tree, in time order, with good signatures."""
    from govsnap import audit
    from govsnap.errors import CheckFailed

    report = audit.verify(_state(ctx).repo(), skew)
    if json_out:
        render.emit_json(report.as_json())
    else:
        render.audit_report(report)
    if not report.ok:
        raise CheckFailed(f"the audit trail has {len(report.problems)} problem(s)")


hooks_app = typer.Typer(help="Install, remove and inspect govsnap's git hooks.")
app.add_typer(hooks_app, name="hooks")

PrePushOpt = Annotated[bool, typer.Option("--pre-push", help="The pre-push hook.")]
PostMergeOpt = Annotated[bool, typer.Option("--post-merge", help="The post-merge hook.")]
AllHooksOpt = Annotated[bool, typer.Option("--all", help="pre-push and post-merge.")]
ServerOpt = Annotated[
    bool, typer.Option("--server", help="The pre-receive hook of a server (bare) repository.")
]


@hooks_app.command("install")
def hooks_install(
    ctx: typer.Context,
    pre_push: PrePushOpt = False,
    post_merge: PostMergeOpt = False,
    all_: AllHooksOpt = False,
    server: ServerOpt = False,
    force: Annotated[
        bool,
        typer.Option("--force", help="Discard a chained hook left over from an earlier install."),
    ] = False,
    trust_ref: Annotated[
        str | None,
        typer.Option(
            "--trust-ref",
            help="With --server: the full name of the ref whose trust policy the server "
            "enforces (sets govsnap.trustRef; the hook refuses every govsnap ref until set).",
        ),
    ] = None,
    dry_run: DryRunOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Install hooks where git runs them (pre-push when no hook is named), chaining to
    any hook already there."""
    from govsnap import hooks

    names = hooks.select_hooks(pre_push, post_merge, all_, server)
    report = hooks.install(
        _state(ctx).repo(), names, force=force, dry_run=dry_run, trust_ref=trust_ref
    )
    if json_out:
        render.emit_json(report.as_json())
    else:
        render.hooks_report(report)


@hooks_app.command("uninstall")
def hooks_uninstall(
    ctx: typer.Context,
    pre_push: PrePushOpt = False,
    post_merge: PostMergeOpt = False,
    all_: AllHooksOpt = False,
    server: ServerOpt = False,
    dry_run: DryRunOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Remove govsnap's hooks (every one when none is named) and put back chained hooks."""
    from govsnap import hooks

    named = pre_push or post_merge or all_ or server
    names = hooks.select_hooks(pre_push, post_merge, all_, server) if named else []
    report = hooks.uninstall(_state(ctx).repo(), names, dry_run=dry_run)
    if json_out:
        render.emit_json(report.as_json())
    else:
        render.hooks_report(report)


@hooks_app.command("status")
def hooks_status(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """Show where git runs hooks from, which are govsnap's, and what they act on."""
    from govsnap import hooks

    report = hooks.status(_state(ctx).repo())
    if json_out:
        render.emit_json(report.as_json())
    else:
        render.hooks_status(report)


# --- rollback and rehearsal (issue 4) ---------------------------------------------------


@app.command()
def rollback(
    ctx: typer.Context,
    snapshot: Annotated[str, typer.Argument(help="Id prefix, latest, latest~N, sha256:<prefix>.")],
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
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Restore a snapshot into the working tree and index (HEAD unmoved), after taking a
    safety snapshot of the current state that undoes it."""
    from govsnap.errors import UsageError
    from govsnap.rollback import RollbackOptions
    from govsnap.rollback import rollback as run_rollback

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
    confirm = None if yes or dry_run else render.confirm_rollback
    result = run_rollback(
        _state(ctx).repo(), snapshot, options, confirm, render.safety_snapshot_taken
    )
    if json_out:
        render.emit_json(result.as_json())
    else:
        render.rollback_result(result)
    if result.blocked is not None:
        raise UsageError(result.blocked)


@app.command()
def rehearse(
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
    from govsnap.errors import CheckFailed
    from govsnap.rehearsal import rehearse as run_rehearsal

    result = run_rehearsal(_state(ctx).repo(), snapshot, damage, rto, report)
    if json_out:
        render.emit_json(result.as_json())
    else:
        render.rehearsal_report(result)
    if not result.passed:
        raise CheckFailed(
            f"rehearsal of {result.snapshot} failed: {', '.join(result.failed_gates)}"
        )


# --- prune, pin and unpin (issue 5) -------------------------------------------------------


@app.command()
def prune(
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
        str | None, typer.Option("--environment", "-e", help="Only this environment's snapshots.")
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
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
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
    from govsnap import prune as pruning
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
    options = pruning.PruneOptions(
        policy=policy,
        environment=environment,
        group_by=group_by,
        ids=tuple(ids or ()),
        dry_run=dry_run,
        now=now,
        gc=not no_gc,
    )
    repo = _state(ctx).repo()
    plan = pruning.plan(repo, options)
    if dry_run:
        reclaimable = pruning.reclaimable_bytes(repo, plan)
        if json_out:
            render.emit_json(plan.as_json(reclaimable))
        else:
            render.prune_plan(plan, reclaimable)
        return
    pruning.authorize(repo, plan)
    if plan.removed and not yes:
        render.confirm_prune(plan, show=not json_out)
    if now and not json_out:
        render.prune_now_warning()
    result = pruning.execute(repo, plan, authorized=True)
    if json_out:
        render.emit_json(result.as_json())
    else:
        render.prune_result(result)


@app.command()
def pin(
    ctx: typer.Context,
    snapshot: Annotated[str, typer.Argument(help="Id prefix, latest, latest~N, sha256:<prefix>.")],
    json_out: JsonOpt = False,
) -> None:
    """Pin a snapshot: prune always keeps it (recorded in its note, audited)."""
    from govsnap.prune import set_pinned

    result = set_pinned(_state(ctx).repo(), snapshot, True)
    if json_out:
        render.emit_json({"id": result.snapshot, "pinned": True, "changed": result.changed})
    else:
        render.pin_result(result)


@app.command()
def unpin(
    ctx: typer.Context,
    snapshot: Annotated[str, typer.Argument(help="Id prefix, latest, latest~N, sha256:<prefix>.")],
    json_out: JsonOpt = False,
) -> None:
    """Unpin a snapshot: the retention policy decides about it again."""
    from govsnap.prune import set_pinned

    result = set_pinned(_state(ctx).repo(), snapshot, False)
    if json_out:
        render.emit_json({"id": result.snapshot, "pinned": False, "changed": result.changed})
    else:
        render.pin_result(result)


# --- verification, trust and doctor (issue 3) ---------------------------------------------


@app.command()
def verify(
    ctx: typer.Context,
    snapshots: Annotated[
        list[str] | None,
        typer.Argument(help="Snapshots to verify: id prefix, latest, latest~N, sha256:<prefix>."),
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Verify every snapshot.")] = False,
    environment: Annotated[
        str | None,
        typer.Option("--environment", "-e", help="Only snapshots of this environment."),
    ] = None,
    deep: Annotated[
        bool, typer.Option("--deep", help="Re-read every blob instead of trusting the cache.")
    ] = False,
    jobs: Annotated[
        int | None,
        typer.Option("--jobs", "-j", min=1, help="Processes to use (default: one per core)."),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Verify snapshots: id, tag, signature, trust, digest, objects, note. Exit 1 if any fails."""
    from govsnap.verify import run as run_verify

    report = run_verify(
        _state(ctx).repo(),
        snapshots or [],
        all_=all_,
        environment=environment,
        deep=deep,
        jobs=jobs,
    )
    if json_out:
        render.emit_json(render.verification_json(report))
    else:
        render.verification_report(report)
    if not report.ok:
        raise typer.Exit(1)


trust_app = typer.Typer(
    help="Show, check and edit the trust policy (.govsnap/trust.toml as committed).",
    no_args_is_help=True,
)
app.add_typer(trust_app, name="trust")

TrustRefOpt = Annotated[
    str | None,
    typer.Option(
        "--ref", help="Read the policy committed at this full ref (default: govsnap.trustRef)."
    ),
]


@trust_app.command("show")
def trust_show(ctx: typer.Context, ref: TrustRefOpt = None, json_out: JsonOpt = False) -> None:
    """Print the signers the policy trusts, what each may do, and its root of trust."""
    from govsnap import trust

    state = trust.status(_state(ctx).repo(), ref)
    if json_out:
        render.emit_json(render.policy_json(state))
    else:
        render.policy_table(state)


@trust_app.command("check")
def trust_check(
    ctx: typer.Context,
    ref: TrustRefOpt = None,
    file: Annotated[
        Path | None,
        typer.Option("--file", help="Check this file instead (e.g. an edit not yet committed)."),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Validate the policy, its public keys and its history back to its anchor: exit 0
    when valid, 2 when malformed, 1 when absent but required or its history fails."""
    from govsnap import trust
    from govsnap.errors import CheckFailed

    repo = _state(ctx).repo()
    state = trust.status(repo, ref, file)
    if state.policy is None and state.require_trust:
        raise CheckFailed(
            f"every snapshot fails the trust check: {trust.missing_policy(repo, ref)}"
        )
    if json_out:
        render.emit_json(render.policy_json(state))
    else:
        render.policy_check(state)


SignerEnvOpt = Annotated[
    list[str] | None,
    typer.Option("--environment", "-e", help="An environment or pattern (repeatable; default *)."),
]


@trust_app.command("init")
def trust_init(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Your name in the policy (letters, digits, ._-).")],
    key: Annotated[
        str | None,
        typer.Option("--key", help="Your key (default: the one govsnap signs with)."),
    ] = None,
    environment: SignerEnvOpt = None,
    operation: Annotated[
        list[str] | None,
        typer.Option("--operation", "-o", help="An operation (repeatable; default *: all)."),
    ] = None,
    dry_run: DryRunOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Write a new .govsnap/trust.toml naming one signer, approved by your key, to commit."""
    from govsnap import trust_edit
    from govsnap.errors import SigningError
    from govsnap.signing import SSHSigner, signer_for

    repo = _state(ctx).repo()
    if key is None:
        signer = signer_for(repo)
        if signer is None:
            raise SigningError("no signing key is configured: pass --key, or run govsnap init")
        if isinstance(signer, SSHSigner):
            key = signer.public_key()
        else:
            key = signer.sign(b"govsnap trust init\n").signer  # its fingerprint
    edit = trust_edit.init_policy(
        repo,
        name,
        key,
        environments=tuple(environment or ["*"]),
        operations=tuple(operation or ["*"]),
        dry_run=dry_run,
    )
    _policy_edit_done(edit, json_out)


@trust_app.command("add-signer")
def trust_add_signer(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The signer's name in the policy.")],
    key: Annotated[
        str,
        typer.Option(
            "--key",
            help="An OpenPGP key of your keyring (fingerprint, key ID, e-mail), an exported "
            "OpenPGP public key file (gpg --armor --export), or an SSH public key (its .pub "
            "file, or 'ssh-ed25519 AAAA...'); its public key goes in the policy.",
        ),
    ],
    environment: SignerEnvOpt = None,
    operation: Annotated[
        list[str] | None,
        typer.Option(
            "--operation",
            "-o",
            help="An operation (repeatable; default create): "
            + ", ".join(("create", "rollback", "prune", "pin", "policy")),
        ),
    ] = None,
    description: Annotated[str, typer.Option("--description", help="Who this is.")] = "",
    principal: Annotated[
        str | None, typer.Option("--principal", help="SSH: the principal (default: NAME).")
    ] = None,
    dry_run: DryRunOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Add a signer (with its public key) to .govsnap/trust.toml, for review and commit."""
    from govsnap import trust_edit

    edit = trust_edit.add_signer(
        _state(ctx).repo(),
        name,
        key,
        environments=tuple(environment or ["*"]),
        operations=tuple(operation or trust_edit.DEFAULT_ADD_OPERATIONS),
        description=description,
        principal=principal,
        dry_run=dry_run,
    )
    _policy_edit_done(edit, json_out)


@trust_app.command("remove-signer")
def trust_remove_signer(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The signer to remove.")],
    dry_run: DryRunOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Remove a signer from .govsnap/trust.toml, for review and commit."""
    from govsnap import trust_edit

    _policy_edit_done(trust_edit.remove_signer(_state(ctx).repo(), name, dry_run=dry_run), json_out)


@trust_app.command("approve")
def trust_approve(
    ctx: typer.Context,
    ref: Annotated[
        str | None,
        typer.Option("--ref", help="The policy ref the change is for (default: govsnap.trustRef)."),
    ] = None,
    dry_run: DryRunOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Approve .govsnap/trust.toml as it is in the working tree: a signed statement binding
    it to the policy ref and the version it replaces, written to .govsnap/approvals/ and
    counted once committed with the change."""
    from govsnap import trust_edit

    edit = trust_edit.approve(_state(ctx).repo(), ref=ref, dry_run=dry_run)
    _policy_edit_done(edit, json_out)


def _policy_edit_done(edit: PolicyEdit, json_out: bool) -> None:
    if json_out:
        render.emit_json(edit.as_json())
    else:
        render.policy_edit(edit)


@app.command()
def doctor(
    ctx: typer.Context,
    fix: Annotated[bool, typer.Option("--fix", help="Repair what can be repaired.")] = False,
    restore_remote: Annotated[
        str | None,
        typer.Option(
            "--restore-remote",
            metavar="REMOTE",
            help="Put this clone's audit trail (and snapshots, notes) back on a remote whose "
            "trail was truncated, deleted or rewritten.",
        ),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", "-n", help="With --fix or --restore-remote: change nothing."),
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Find (and with --fix repair) what interrupted operations left: notes without a
    snapshot, refs to missing objects, an audit trail that lost entries, stale locks, a
    damaged cache. Never deletes a snapshot. Exit 1 while problems remain."""
    if restore_remote is not None:
        from govsnap import remote as sharing

        restored = sharing.restore(_state(ctx).repo(), restore_remote, dry_run=dry_run)
        if json_out:
            render.emit_json(restored.as_json())
        else:
            render.restore_report(restored)
        return
    from govsnap.doctor import run as run_doctor

    report = run_doctor(_state(ctx).repo(), fix=fix, dry_run=dry_run)
    if json_out:
        render.emit_json(render.doctor_json(report))
    else:
        render.doctor_report(report)
    if not report.ok:
        raise typer.Exit(1)


# --- push, fetch, remote setup and stats (issue 7) ----------------------------------------

RemoteArg = Annotated[
    str | None,
    typer.Argument(help="A configured git remote (default: govsnap.remote, else origin)."),
]


@app.command()
def push(
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
    from govsnap import remote as sharing

    report = sharing.push(
        _state(ctx).repo(),
        remote,
        prune=prune,
        dry_run=dry_run,
        include_safety=include_safety,
        confirm=None if yes else render.confirm_push_deletions,
    )
    if json_out:
        render.emit_json(report.as_json())
    else:
        render.push_report(report)
    report.check()


@app.command()
def fetch(
    ctx: typer.Context,
    remote: RemoteArg = None,
    no_verify: Annotated[
        bool, typer.Option("--no-verify", help="Add new snapshots without verifying them.")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Fetch a remote's snapshots (verified), merge its notes and join its audit trail."""
    from govsnap import remote as sharing

    report = sharing.fetch(_state(ctx).repo(), remote, verify=not no_verify)
    if json_out:
        render.emit_json(report.as_json())
    else:
        render.fetch_report(report)
    report.check()


remote_app = typer.Typer(help="Configure a git remote so plain git push/fetch carry snapshots.")
app.add_typer(remote_app, name="remote")


@remote_app.command("setup")
def remote_setup(
    ctx: typer.Context,
    remote: Annotated[str, typer.Argument(help="A configured git remote.")],
    undo: Annotated[bool, typer.Option("--undo", help="Remove govsnap's refspecs.")] = False,
    dry_run: DryRunOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Add govsnap's refspecs to remote.<REMOTE>.fetch/push (idempotent); --undo removes them."""
    from govsnap import remote as sharing

    report = sharing.setup(_state(ctx).repo(), remote, undo=undo, dry_run=dry_run)
    if json_out:
        render.emit_json(report.as_json())
    else:
        render.setup_report(report)


@app.command()
def stats(
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
    from govsnap import stats as figures

    result = figures.collect(_state(ctx).repo())
    if prometheus is not None:
        figures.write_textfile(prometheus, figures.prometheus_text(result))
    if json_out:
        render.emit_json(result.as_json())
    else:
        render.stats_report(result)


def _log_crash() -> Path | None:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "govsnap"
    try:
        base.mkdir(parents=True, exist_ok=True)
        log = base / "govsnap.log"
        with log.open("a") as fh:
            fh.write(traceback.format_exc() + "\n")
        return log
    except OSError:
        return None


def _parse_error(exc: typer.TyperException) -> tuple[str, int]:
    """Return the message and exit code of a command-line parsing error: one line naming
    the command's --help, or the whole help when a command group was given nothing."""
    format_message = getattr(exc, "format_message", None)
    text = str(format_message() if callable(format_message) else exc).strip()
    path = getattr(getattr(exc, "ctx", None), "command_path", None)
    code = getattr(exc, "exit_code", 2)
    if path and "\n" not in text:
        text += f" (see `{path} --help`)"
    return text, code if isinstance(code, int) else 2


def _quiet_stdout() -> None:
    """Point stdout at /dev/null, so that the final flush after a reader went away
    (`govsnap list | head -1`) does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):
        return


def _tolerant_stdout() -> None:
    """Let stdout escape what its encoding cannot carry (as stderr does) instead of
    failing: file names that are not UTF-8 reach us as lone surrogates, and a terminal may
    not be UTF-8. In JSON the escapes (\\udc80) are valid string escapes."""
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if callable(reconfigure):
        reconfigure(errors="backslashreplace")


def run(argv: list[str]) -> int:
    """Run one command line and return the exit code; errors become one line on stderr."""
    _tolerant_stdout()
    try:
        # Not standalone: the framework's usage errors come here as exceptions, to be
        # printed as one line like every other error, not as a usage block.
        code = app(args=argv, prog_name="govsnap", standalone_mode=False)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 0
    except typer.Abort:
        render.error("aborted")
        return 1
    except typer.TyperException as exc:
        message, exit_code = _parse_error(exc)
        if "\n" in message:
            sys.stderr.write(message + "\n")
        else:
            render.error(message)
        return exit_code
    except BrokenPipeError:
        _quiet_stdout()
        return 1
    except GovsnapError as exc:
        render.error(exc.message)
        return exc.exit_code
    except pygit2.GitError as exc:
        # libgit2 could not read the object store (a damaged pack, a truncated object):
        # the repository, not govsnap, needs repairing.
        render.error(
            f"cannot read the repository: {exc} (`git fsck --full` names the damaged objects)"
        )
        return EXIT_ENVIRONMENT
    except KeyboardInterrupt:
        render.error("interrupted")
        return 130
    except Exception as exc:
        log = _log_crash()
        where = f" (traceback in {log})" if log else ""
        render.error(f"internal error: {type(exc).__name__}: {exc}{where}")
        return 3
    return code if isinstance(code, int) else 0
