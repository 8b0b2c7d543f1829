"""The `govsnap` application: the commands of every feature (commands/) assembled into one
typer app, and the one edge where an exception becomes a line and an exit code."""

from __future__ import annotations

import functools
import io
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from govsnap import __version__, pager, render
from govsnap.commands import (
    audit,
    configure,
    files,
    hooks,
    report,
    retention,
    rollback,
    sharing,
    shell,
    snapshots,
    stats,
    trust,
    verify,
)
from govsnap.commands.options import State, global_params, table_params
from govsnap.error_handler import Failure, failure
from govsnap.errors import Declined

_SETTINGS: dict[str, Any] = {
    "name": "govsnap",
    "help": "Signed, tamper-evident snapshots of a git repository for promotion governance.",
    "no_args_is_help": True,
    "add_completion": False,
    "pretty_exceptions_enable": False,
    "rich_markup_mode": None,
    "context_settings": {"help_option_names": ["-h", "--help"]},
    "epilog": "`govsnap COMMAND -h` for a command's options; the manual: `man git-govsnap` "
    "(`govsnap install-man` puts it in place); docs/cli.md.",
}
# In the order `govsnap --help` lists them: (feature, group name); groups by name, the
# others merged in.
_FEATURES: list[tuple[typer.Typer, str | None]] = [
    (configure.app, None),
    (snapshots.app, None),
    (audit.app, "audit"),
    (hooks.app, "hooks"),
    (rollback.app, None),
    (files.app, None),
    (retention.app, None),
    (verify.app, None),
    (trust.app, "trust"),
    (sharing.app, None),
    (stats.app, None),
    (report.app, None),
    (shell.app, None),
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


# Commands that describe the whole command line (the manual page, shell completion).
_WHOLE = frozenset({"install-man", "completion"})


def application(argv: list[str]) -> typer.Typer:
    """Return the app to run `argv` with: only the feature that holds the command it
    names, else every feature.

    The framework inspects the signature of every command it is given before it runs
    one (59 of them: ~30% of a `govsnap list`, in cProfile); one feature's are enough.
    """
    name = _command_name(argv)
    if name in _WHOLE:
        return app
    for feature, group in _FEATURES:
        if name is not None and (name == group if group else name in _names(feature)):
            single = typer.Typer(**_SETTINGS)
            single.callback()(main)
            single.add_typer(feature, name=group)
            return single
    return app


# Commands whose output is long enough to page, as git pages log and show; and those that
# print a table (--wide).
PAGED = frozenset({"list", "show", "info", "diff", "audit", "stats", "trust show"})
TABLES = frozenset({"list", "audit", "stats", "trust show", "verify"})


def _commands(group: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Return (name, command) of every command below `group`, groups included."""
    found = []
    for name, command in getattr(group, "commands", {}).items():
        found.append((prefix + name, command))
        found.extend(_commands(command, f"{prefix}{name} "))
    return found


def _paged(command: Any) -> None:
    """Make `command` send its output through the pager (pager.paging)."""
    invoke = command.invoke

    def paged_invoke(ctx: typer.Context) -> Any:
        state = ctx.find_object(State)
        with pager.paging(state.path if state else None):
            return invoke(ctx)

    command.invoke = paged_invoke


def _progress_shown(command: Any) -> None:
    """Make `command` show the progress of long tasks on a terminal (render.shows_progress)."""
    invoke = command.invoke

    def invoke_showing_progress(ctx: typer.Context) -> Any:
        from govsnap import progress

        shown = render.shows_progress(bool(ctx.params.get("json_out")))
        with progress.listening(render.TerminalProgress() if shown else None):
            return invoke(ctx)

    command.invoke = invoke_showing_progress


def command(argv: list[str] | None = None) -> Any:
    """Return the command line as one click command: the app (for `argv`, only the feature
    holding the command it names: application), with the options every command takes (-q,
    --color, --no-pager; --wide where a table is printed), before or after its name, the
    pager on the commands whose output is long, and progress."""
    return _command(application(argv) if argv is not None else app)


@functools.cache
def _command(typer_app: typer.Typer) -> Any:
    root = typer.main.get_command(typer_app)
    # One set of option objects serves every command: a parse keeps its values in its
    # context, not in the options.
    everywhere, tables = global_params(), table_params()
    root.params.extend(everywhere)
    for name, sub in _commands(root):
        sub.params.extend(everywhere)
        if name in TABLES:
            sub.params.extend(tables)
        if name in PAGED:
            _paged(sub)
        if not hasattr(sub, "commands"):
            _progress_shown(sub)
    return root


def _failed(exc: BaseException, json_errors: bool) -> int:
    """Print the line of a failed command and return its exit code (error_handler)."""
    return _report(failure(exc), json_errors)


def _report(failed: Failure, json_errors: bool, *, whole: bool = False) -> int:
    """Print a failure (with `whole`, every line of its message), as a JSON document with
    --json, and return its exit code."""
    if json_errors:
        render.error_json(failed.as_json())
    elif whole and "\n" in failed.message:
        sys.stderr.write(failed.message + "\n")
    else:
        render.error(failed.message)
    return failed.exit_code


def _wants_json(argv: list[str]) -> bool:
    """Return True when the command line asks for --json (before any `--`): its errors
    are then JSON documents too, whatever went wrong, even parsing the rest."""
    options = argv[: argv.index("--")] if "--" in argv else argv
    return "--json" in options


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


def run(argv: list[str], started: float | None = None) -> int:
    """Run one command line (begun at `started`, time.monotonic()) and return the exit
    code; errors become one line on stderr (with --json, one JSON document)."""
    _tolerant_stdout()
    json_errors = _wants_json(argv)
    render.reset(started)
    if "_GOVSNAP_COMPLETE" in os.environ:
        # A shell asks what to complete (commands/shell.py): the framework answers, once
        # its shells are registered (what typer does for its own --install-completion).
        from typer._completion_classes import completion_init

        completion_init()
    try:
        # Not standalone: the framework's usage errors come here as exceptions, to be
        # printed as one line like every other error, not as a usage block.
        code = command(argv).main(args=argv, prog_name="govsnap", standalone_mode=False)
    except SystemExit as exc:
        if isinstance(exc.__context__, BrokenPipeError):
            # The framework's own answer to a closed stdout (exit 1): see below.
            _quiet_stdout()
            return 0
        return exc.code if isinstance(exc.code, int) else 0
    except typer.Abort:
        # Click's own prompts ended without an answer: a declined confirmation.
        return _failed(Declined("aborted"), json_errors)
    except typer.TyperException as exc:
        message, exit_code = _parse_error(exc)
        # A command group given nothing fails with its whole help.
        return _report(Failure(message, exit_code), json_errors, whole=True)
    except BrokenPipeError:
        # The reader has what it wanted (`govsnap diff | head -1`, a pager quit early):
        # as git, stop quietly; as a pipeline's last command would, succeed.
        _quiet_stdout()
        return 0
    except (Exception, KeyboardInterrupt) as exc:
        return _failed(exc, json_errors)
    return code if isinstance(code, int) else 0
