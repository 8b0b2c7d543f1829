"""`govsnap init`: prepare a repository (configure.py does the work)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from govsnap.commands.options import DryRunOpt, JsonOpt, feature, repo_of
from govsnap.render import emit, message, warning

if TYPE_CHECKING:
    from govsnap.configure import InitReport

app = feature()


@app.command("init")
def init_repository(
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
    from govsnap.configure import InitOptions, init

    options = InitOptions(
        generate_key=generate_key,
        keyring=keyring,
        environment=environment,
        signer_name=signer,
        signer_environments=tuple(signer_environment or ["*"]),
        signer_operations=tuple(signer_operation or ["*"]),
        dry_run=dry_run,
    )
    report = init(repo_of(ctx), options)
    emit(report, json_out, show_init)
    report.check()


def show_init(report: InitReport) -> None:
    """Print what `govsnap init` did (or, with --dry-run, would do), and what is left."""
    would = "would " if report.dry_run else ""
    message(report.git_version)
    for key, value in report.config_set.items():
        message(f"{would}set   {key} = {value}")
    for key, value in report.config_kept.items():
        message(f"kept  {key} = {value}")
    if report.kept_key:
        message(
            f"kept the configured signing key {report.kept_key}: --generate-key makes a key "
            "only when none is configured"
        )
    if report.generated_key:
        where = report.keyring or "the default GnuPG keyring"
        verb = "would generate" if report.dry_run else "generated"
        message(f"{verb} OpenPGP signing key {report.generated_key} in {where}")
    if report.signing_ok:
        message(f"signing works: {report.signing}")
    elif not (report.dry_run and report.generated_key):
        warning(f"signing: {report.signing}; snapshots will be refused unless --unsigned")
    if report.policy in ("written", "would write"):
        message(f"{'would write' if report.dry_run else 'wrote'} {report.policy_detail}")
    elif report.policy_detail:
        message(report.policy_detail)
    for step in report.next_steps:
        message(f"next: {step}")
