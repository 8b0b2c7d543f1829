"""The manual page `git-govsnap(1)`, written from the command line itself: every command's
usage, help and options are the ones `--help` prints, so the page cannot drift from the
program (`govsnap install-man` puts it where `man` and `git govsnap --help` find it)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import typer

from govsnap import __version__

# Options every command takes: described once, under GLOBAL OPTIONS.
GLOBAL_OPTIONS = frozenset({"quiet", "color", "no_pager"})

_FIXED_BEFORE = r"""
.SH DESCRIPTION
govsnap takes signed, tamper-evident snapshots of a git repository's state when it is
promoted (pushed to a release branch, merged, deployed), keeps them under a retention
policy, verifies them, and rolls back to one with nothing lost. A snapshot is a commit
holding the captured tree, named by a signed tag under \fBrefs/govsnap/snapshots/\fR, with
metadata in git notes (\fBrefs/notes/govsnap\fR) and every operation in an audit chain
(\fBrefs/govsnap/audit\fR).
.PP
Wherever a command takes \fIID\fR: any unique prefix of a snapshot id (4 to 16 hex
digits), \fBlatest\fR, \fBlatest~\fR\fIN\fR, or \fBsha256:\fR\fIprefix\fR of the content
digest.
"""

_FIXED_AFTER = r"""
.SH OUTPUT
Every command that reads has \fB\-\-json\fR. Tables fit the terminal's width (80 columns
when piped, or \fBCOLUMNS\fR): an id or a word is never cut; the least useful columns are
left out, and named, when the table does not fit; \fB\-\-wide\fR shows them all.
.PP
Long output (list, show, diff, audit, stats, trust show) goes through the pager git
would use (\fBgit var GIT_PAGER\fR: \fBGIT_PAGER\fR, \fBcore.pager\fR, \fBPAGER\fR, then
git's default) when stdout is a terminal, with \fBLESS=FRX\fR and \fBLV=\-c\fR unless set.
Colour is used on a terminal unless \fBNO_COLOR\fR is set or \fBTERM\fR is dumb;
\fB\-\-color\fR=\fIalways\fR|\fInever\fR decides otherwise. A reader that goes away
(\fBgovsnap diff ... | head \-1\fR) ends the command quietly, with status 0.
.SH EXIT STATUS
.TP
.B 0
success
.TP
.B 1
a check failed (verify, rehearse, audit verify, a refused snapshot), or a confirmation
was declined
.TP
.B 2
usage or input error (unknown id, bad option, malformed policy, \fB\-\-yes\fR missing
without a terminal)
.TP
.B 3
an environment problem (not a repository, no gpg, no signing key)
.SH ENVIRONMENT
.TP
.B GIT_PAGER, PAGER, LESS, LV
the pager, as for git
.TP
.B NO_COLOR
no colour unless \fB\-\-color=always\fR
.TP
.B COLUMNS
the width tables fit
.TP
.B GNUPGHOME
the keyring OpenPGP signatures are made with
.SH SEE ALSO
\fBgit\fR(1), \fBgit\-notes\fR(1), \fBgit\-tag\fR(1), \fBgpg\fR(1);
docs/cli.md and docs/concepts.md in govsnap's sources.
"""


def roff(text: str) -> str:
    """Return `text` as roff body text: backslashes, hyphens and leading dots escaped."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return re.sub(r"^([.'])", r"\\&\1", text, flags=re.M)


def _bold(text: str) -> str:
    return f"\\fB{roff(text)}\\fR"


def _commands(group: Any, parent: typer.Context) -> Iterator[tuple[Any, typer.Context]]:
    """Yield every visible leaf command below `group` with its context, in help order."""
    for name in group.list_commands(parent):
        command = group.get_command(parent, name)
        if command is None or command.hidden:
            continue
        ctx = typer.Context(command, info_name=name, parent=parent)
        if hasattr(command, "commands"):
            if command.callback is not None and getattr(command, "invoke_without_command", False):
                yield command, ctx
            yield from _commands(command, ctx)
        else:
            yield command, ctx


def _options(params: list[Any], ctx: typer.Context, globals_too: bool) -> list[str]:
    lines = []
    for param in params:
        if param.hidden if hasattr(param, "hidden") else False:
            continue
        if not globals_too and param.name in GLOBAL_OPTIONS:
            continue
        record = param.get_help_record(ctx)
        if record is None:
            continue
        names, help_text = record
        lines += [".TP", _bold(names), roff(" ".join(help_text.split()))]
    return lines


def page(root: Any) -> str:
    """Return the roff source of git-govsnap(1) for the command line `root`."""
    top = typer.Context(root, info_name="govsnap")
    lines = [
        f'.TH GIT\\-GOVSNAP 1 "" "govsnap {__version__}" "govsnap manual"',
        ".SH NAME",
        "git\\-govsnap, govsnap \\- " + roff(root.help.strip().rstrip(".").lower()),
        ".SH SYNOPSIS",
        ".B git govsnap",
        "[\\fB\\-C\\fR \\fIpath\\fR] \\fIcommand\\fR [\\fIoptions\\fR]",
        ".br",
        ".B govsnap",
        "[\\fB\\-C\\fR \\fIpath\\fR] \\fIcommand\\fR [\\fIoptions\\fR]",
        _FIXED_BEFORE.strip(),
        ".SH GLOBAL OPTIONS",
        "Given before the command, or (except \\fB\\-C\\fR) after it.",
        *_options(root.params, top, globals_too=True),
        ".SH COMMANDS",
    ]
    for command, ctx in _commands(root, top):
        usage = command.collect_usage_pieces(ctx)
        lines += [
            ".SS " + _bold(ctx.command_path) + " " + roff(" ".join(usage)),
            roff(" ".join((command.help or "").split())),
        ]
        lines += _options(command.params, ctx, globals_too=False)
    lines.append(_FIXED_AFTER.strip())
    return "\n".join(lines) + "\n"
