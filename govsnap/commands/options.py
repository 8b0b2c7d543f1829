"""What every command shares: the repository it works on (`-C`), the options spelt alike
everywhere, and the Typer each feature module adds its commands to."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from govsnap import render
from govsnap.commands.completers import snapshot_names

if TYPE_CHECKING:
    from govsnap.repo import Repo

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
DryRunOpt = Annotated[
    bool, typer.Option("--dry-run", "-n", help="Show what would change; change nothing.")
]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
SnapshotArg = Annotated[
    str,
    typer.Argument(
        help="Id prefix, latest, latest~N, sha256:<prefix>.", autocompletion=snapshot_names
    ),
]


def feature(**settings: Any) -> typer.Typer:
    """Return a Typer for one feature's commands (cli.py adds it to the application)."""
    return typer.Typer(rich_markup_mode=None, **settings)


# --- options every command takes (cli.py adds them to each, before or after its name) ----


def _set_quiet(value: bool) -> None:
    if value:
        render.settings.quiet = True


class ColorWhen(StrEnum):
    """When to colour output (--color)."""

    AUTO = "auto"
    ALWAYS = "always"
    NEVER = "never"


def _set_color(value: ColorWhen | None) -> None:
    if value is not None:
        render.settings.color = value.value


def _set_no_pager(value: bool) -> None:
    if value:
        render.settings.no_pager = True


def _set_wide(value: bool) -> None:
    if value:
        render.settings.wide = True


_everywhere = typer.Typer(add_completion=False)


@_everywhere.command()
def _global_options(
    quiet: Annotated[
        bool,
        typer.Option(
            "--quiet", "-q", callback=_set_quiet, help="Print no report, only errors and warnings."
        ),
    ] = False,
    color: Annotated[
        ColorWhen | None,
        typer.Option(
            "--color",
            metavar="WHEN",
            callback=_set_color,
            help="Colour: auto (a terminal without NO_COLOR), always, never.",
        ),
    ] = None,
    no_pager: Annotated[
        bool,
        typer.Option("--no-pager", callback=_set_no_pager, help="Do not page long output."),
    ] = False,
) -> None:
    """Holds the options cli.py gives every command."""


_tables = typer.Typer(add_completion=False)


@_tables.command()
def _table_options(
    wide: Annotated[
        bool,
        typer.Option(
            "--wide", callback=_set_wide, help="Show every column, however wide the table."
        ),
    ] = False,
) -> None:
    """Holds the option cli.py gives every command that prints a table."""


def global_params() -> list[Any]:
    """Return the parsed-once options of every command: -q, --color, --no-pager."""
    return _unexposed(_everywhere)


def table_params() -> list[Any]:
    """Return the option of every command that prints a table: --wide."""
    return _unexposed(_tables)


def _unexposed(holder: typer.Typer) -> list[Any]:
    # Their callbacks set render.settings; the commands' functions never see them.
    params = list(typer.main.get_command(holder).params)
    for param in params:
        param.expose_value = False
    return params


class State:
    """Options shared by every command."""

    def __init__(self, path: Path | None) -> None:
        self.path = path

    def repo(self) -> Repo:
        """Open the repository the command works on."""
        from govsnap.repo import open_repo

        return open_repo(self.path)


def repo_of(ctx: typer.Context) -> Repo:
    """Return the repository the command of `ctx` works on (`govsnap -C DIR`)."""
    state = ctx.obj
    assert isinstance(state, State)
    return state.repo()
