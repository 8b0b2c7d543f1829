"""`govsnap hooks install|uninstall|status`: govsnap's git hooks, installed where git runs
them (hooks.py). What git runs is commands/hook_run.py."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from govsnap.commands.options import DryRunOpt, JsonOpt, feature, repo_of
from govsnap.render import emit, message, warning

if TYPE_CHECKING:
    from govsnap.hooks import HooksReport, HooksStatus

app = feature(help="Install, remove and inspect govsnap's git hooks.")

PrePushOpt = Annotated[bool, typer.Option("--pre-push", help="The pre-push hook.")]
PostMergeOpt = Annotated[bool, typer.Option("--post-merge", help="The post-merge hook.")]
AllHooksOpt = Annotated[bool, typer.Option("--all", help="pre-push and post-merge.")]
ServerOpt = Annotated[
    bool, typer.Option("--server", help="The pre-receive hook of a server (bare) repository.")
]


@app.command("install")
def install_hooks(
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
    from govsnap.hooks import install, select_hooks

    names = select_hooks(pre_push, post_merge, all_, server)
    report = install(repo_of(ctx), names, force=force, dry_run=dry_run, trust_ref=trust_ref)
    emit(report, json_out, show_report)


@app.command("uninstall")
def uninstall_hooks(
    ctx: typer.Context,
    pre_push: PrePushOpt = False,
    post_merge: PostMergeOpt = False,
    all_: AllHooksOpt = False,
    server: ServerOpt = False,
    dry_run: DryRunOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Remove govsnap's hooks (every one when none is named) and put back chained hooks."""
    from govsnap.hooks import select_hooks, uninstall

    names = select_hooks(pre_push, post_merge, all_, server, default=())
    emit(uninstall(repo_of(ctx), names, dry_run=dry_run), json_out, show_report)


@app.command("status")
def hooks_status(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """Show where git runs hooks from, which are govsnap's, and what they act on."""
    from govsnap.hooks import status

    emit(status(repo_of(ctx)), json_out, show_status)


def show_report(report: HooksReport) -> None:
    """Print what `hooks install` / `hooks uninstall` did or would do."""
    prefix = "would " if report.dry_run else ""
    message(f"hooks directory: {report.directory}")
    for a in report.actions:
        discard = f" (discarding {a.name}.govsnap-chained)" if a.discard_chained else ""
        message(f"{a.name}: {prefix}{a.action}: {a.detail}{discard}")
    for key, value in report.config:
        message(f"{prefix}set git config {key} {value}")
    for text in report.warnings:
        warning(text)


def show_status(report: HooksStatus) -> None:
    """Print where hooks are run from, their state and the configuration they use."""
    where = f" (core.hooksPath = {report.hooks_path})" if report.hooks_path else ""
    message(f"hooks directory: {report.directory}{where}")
    for h in report.hooks:
        state = {"govsnap": "govsnap", "absent": "not installed"}.get(h.state, h.state)
        if h.state == "foreign":
            state = "another hook (not govsnap's)"
        if h.state != "absent" and not h.executable:
            state += ", NOT executable"
        if h.chained:
            runs = "" if h.chained_executable else ", not executable: skipped"
            state += f"; chains to {h.chained_path.name}{runs}"
        message(f"{h.name:<12} {state}")
    for pattern in report.promotion_branches:
        message(f"promotion branch {pattern} -> environment {report.environments[pattern]}")
    message(f"on failure: {report.hook_failure} (govsnap.hookFailure)")
