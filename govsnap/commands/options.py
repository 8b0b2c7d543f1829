"""What every command shares: the repository it works on (`-C`), the options spelt alike
everywhere, and the Typer each feature module adds its commands to."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from govsnap.repo import Repo

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
DryRunOpt = Annotated[
    bool, typer.Option("--dry-run", "-n", help="Show what would change; change nothing.")
]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
SnapshotArg = Annotated[str, typer.Argument(help="Id prefix, latest, latest~N, sha256:<prefix>.")]


def feature(**settings: Any) -> typer.Typer:
    """Return a Typer for one feature's commands (cli.py adds it to the application)."""
    return typer.Typer(rich_markup_mode=None, **settings)


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
