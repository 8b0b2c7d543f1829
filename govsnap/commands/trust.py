"""`govsnap trust ...`: the trust policy as committed, checked (trust.py) and edited for
review (trust_edit.py)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from govsnap.commands.options import DryRunOpt, JsonOpt, feature, repo_of
from govsnap.render import cell, clean, console, emit, message, warning

if TYPE_CHECKING:
    from govsnap.trust import PolicyStatus
    from govsnap.trust_edit import PolicyEdit

app = feature(
    help="Show, check and edit the trust policy (.govsnap/trust.toml as committed).",
    no_args_is_help=True,
)

TrustRefOpt = Annotated[
    str | None,
    typer.Option(
        "--ref", help="Read the policy committed at this full ref (default: govsnap.trustRef)."
    ),
]
SignerEnvOpt = Annotated[
    list[str] | None,
    typer.Option("--environment", "-e", help="An environment or pattern (repeatable; default *)."),
]


@app.command("show")
def show_policy(ctx: typer.Context, ref: TrustRefOpt = None, json_out: JsonOpt = False) -> None:
    """Print the signers the policy trusts, what each may do, and its root of trust."""
    from govsnap.trust import status

    emit(status(repo_of(ctx), ref), json_out, show_table)


@app.command("check")
def check_policy(
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
    from govsnap.trust import status

    state = status(repo_of(ctx), ref, file)
    state.check()
    emit(state, json_out, show_check)


@app.command("init")
def init_trust(
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

    edit = trust_edit.init_policy(
        repo_of(ctx),
        name,
        key,
        environments=tuple(environment or ["*"]),
        operations=tuple(operation or ["*"]),
        dry_run=dry_run,
    )
    emit(edit, json_out, show_edit)


@app.command("add-signer")
def add_trusted_signer(
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
    from govsnap.trust_edit import DEFAULT_ADD_OPERATIONS, add_signer

    edit = add_signer(
        repo_of(ctx),
        name,
        key,
        environments=tuple(environment or ["*"]),
        operations=tuple(operation or DEFAULT_ADD_OPERATIONS),
        description=description,
        principal=principal,
        dry_run=dry_run,
    )
    emit(edit, json_out, show_edit)


@app.command("remove-signer")
def remove_trusted_signer(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The signer to remove.")],
    dry_run: DryRunOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Remove a signer from .govsnap/trust.toml, for review and commit."""
    from govsnap.trust_edit import remove_signer

    emit(remove_signer(repo_of(ctx), name, dry_run=dry_run), json_out, show_edit)


@app.command("approve")
def approve_policy(
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
    from govsnap.trust_edit import approve

    emit(approve(repo_of(ctx), ref=ref, dry_run=dry_run), json_out, show_edit)


def _uncommitted_warning(state: PolicyStatus) -> None:
    if state.uncommitted_edit:
        warning(
            ".govsnap/trust.toml in the working tree differs from the committed policy; "
            "only the committed version counts"
        )


def _keyless(state: PolicyStatus) -> None:
    """Warn about OpenPGP signers whose public key the policy does not carry, and say
    what checking the policy's history could not judge."""
    if state.policy is None:
        return
    for caveat in state.policy.caveats:
        warning(caveat)
    for s in state.policy.signers:
        if s.kind == "openpgp" and not s.public_key:
            warning(
                f"signer {s.name} carries no public_key: its signatures cannot be checked "
                f"(govsnap trust remove-signer {s.name}, then trust add-signer with --key)"
            )


def show_table(state: PolicyStatus) -> None:
    """Print the signers of the trust policy, what each may do, and its root of trust."""
    from rich.table import Table

    if state.policy is None:
        required = (
            "fails (write one with `govsnap trust init`, then git add .govsnap && git commit)"
            if state.require_trust
            else "passes (govsnap.requireTrust=false)"
        )
        message(f"no trust policy at {state.source}: the trust check {required}")
        _uncommitted_warning(state)
        return
    policy = state.policy
    title = f"trust policy {cell(state.source)} version {policy.version}"
    table = Table(title=title, title_justify="left")
    for column in ("signer", "kind", "identity", "environments", "operations", "description"):
        table.add_column(column)
    for s in policy.signers:
        table.add_row(
            cell(s.name),
            s.kind,
            cell(s.identity),
            cell(", ".join(s.environments)),
            cell(", ".join(s.operations)),
            cell(s.description),
        )
    console().print(table)
    if policy.anchor:
        message(f"root of trust: {policy.anchor}")
    message(f"a change needs {policy.threshold} approval(s) by signers allowed 'policy'")
    _keyless(state)
    _uncommitted_warning(state)


def show_check(state: PolicyStatus) -> None:
    """Print the outcome of `trust check`."""
    if state.policy is None:
        message(f"no trust policy at {state.source} (govsnap.requireTrust=false)")
    else:
        message(
            f"{state.source} is valid: version {state.policy.version}, "
            f"{len(state.policy.signers)} signer(s)"
            + (f"; root of trust: {state.policy.anchor}" if state.policy.anchor else "")
        )
    _keyless(state)
    _uncommitted_warning(state)


def show_edit(edit: PolicyEdit) -> None:
    """Print what a `trust` edit wrote (with --dry-run: the text it would write)."""
    if edit.dry_run:
        sys.stdout.write(clean(edit.text))
        message(f"(dry run: {edit.path} not written)")
        return
    if edit.approval is not None:
        message(f"approved {edit.path} (version {edit.policy.version}): wrote {edit.approval}")
    else:
        verb = "wrote" if edit.created else "updated"
        names = ", ".join(s.name for s in edit.policy.signers) or "none"
        message(f"{verb} {edit.path} (version {edit.policy.version}; signers: {names})")
    message(
        "next: review it, have signers allowed 'policy' approve it (a signed commit, or "
        "govsnap trust approve), then git add .govsnap && git commit"
    )
