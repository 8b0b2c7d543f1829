"""The `govsnap` application: the commands of every feature (commands/) assembled into one
typer app, and the one edge where an exception becomes a line and an exit code."""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from govsnap import __version__, render
from govsnap.commands import (
    audit,
    configure,
    hooks,
    retention,
    rollback,
    sharing,
    snapshots,
    stats,
    trust,
    verify,
)
from govsnap.commands.options import State
from govsnap.error_handler import failure
from govsnap.errors import Declined

_SETTINGS: dict[str, Any] = {
    "name": "govsnap",
    "help": "Signed, tamper-evident snapshots of a git repository for promotion governance.",
    "no_args_is_help": True,
    "add_completion": False,
    "pretty_exceptions_enable": False,
    "rich_markup_mode": None,
}
# In the order `govsnap --help` lists them: (feature, group name); groups by name, the
# others merged in.
_FEATURES: list[tuple[typer.Typer, str | None]] = [
    (configure.app, None),
    (snapshots.app, None),
    (audit.app, "audit"),
    (hooks.app, "hooks"),
    (rollback.app, None),
    (retention.app, None),
    (verify.app, None),
    (trust.app, "trust"),
    (sharing.app, None),
    (stats.app, None),
]
app = typer.Typer(**_SETTINGS)
for _feature, _group in _FEATURES:
    app.add_typer(_feature, name=_group)


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


def _command_name(argv: list[str]) -> str | None:
    """Return the command (or group) a command line names, past the global options."""
    args = iter(argv)
    for arg in args:
        if arg in ("-C", "--repo"):
            next(args, None)
        elif not arg.startswith("-"):
            return arg
        elif arg == "--":
            return next(args, None)
    return None


def _names(feature: typer.Typer) -> set[str]:
    """Return the command and group names a feature adds (as Typer names them)."""
    names = {
        info.name or info.callback.__name__.replace("_", "-")
        for info in feature.registered_commands
        if info.callback is not None
    }
    return names | {info.name for info in feature.registered_groups if info.name}


def application(argv: list[str]) -> typer.Typer:
    """Return the app to run `argv` with: only the feature that holds the command it
    names, else every feature.

    The framework inspects the signature of every command it is given before it runs
    one (59 of them: ~30% of a `govsnap list`, in cProfile); one feature's are enough.
    """
    name = _command_name(argv)
    for feature, group in _FEATURES:
        if name is not None and (name == group if group else name in _names(feature)):
            single = typer.Typer(**_SETTINGS)
            single.callback()(main)
            single.add_typer(feature, name=group)
            return single
    return app


def _failed(exc: BaseException) -> int:
    """Print the line of a failed command and return its exit code (error_handler)."""
    failed = failure(exc)
    render.error(failed.message)
    return failed.exit_code


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
        code = application(argv)(args=argv, prog_name="govsnap", standalone_mode=False)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 0
    except typer.Abort:
        # Click's own prompts ended without an answer: a declined confirmation.
        return _failed(Declined("aborted"))
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
    except (Exception, KeyboardInterrupt) as exc:
        return _failed(exc)
    return code if isinstance(code, int) else 0
