"""What the shell completes for govsnap's arguments: snapshot ids (with what each is),
environments and remotes, read with one git command each. Completion runs on every Tab:
it reads refs only, never fails loudly, and shows names escaped (they come from tags
and config anyone may have written)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import typer

# What a completion may offer or describe: a shell evaluates what completion prints (zsh
# runs `eval`), and ref names, trailers and subjects may hold `$(...)`, quotes, newlines.
_ID = re.compile(r"[0-9a-f]{16}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_UNSAFE_TEXT = re.compile(r"[^A-Za-z0-9 .,:;@()/+_-]")

# One record per snapshot, ended by two NULs: the body holds the payload's trailers (git's
# own trailer parsing stops at a signed tag's signature).
_FORMAT = "%(refname:lstrip=3)%00%(taggerdate:short)%00%(contents:subject)%00%(contents:body)%00%00"
_ENVIRONMENT = re.compile(r"^Govsnap-Environment: (.*)$", re.M)


def _git(ctx: typer.Context, *args: str) -> str:
    """Return the output of git in the repository of `govsnap -C` ("" when it fails)."""
    from govsnap.repo import scrubbed_env

    directory = ctx.find_root().params.get("repo")
    try:
        proc = subprocess.run(
            ["git", *args],
            cwd=Path(directory) if directory else None,
            capture_output=True,
            env=scrubbed_env(),
            check=False,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return proc.stdout.decode(errors="replace") if proc.returncode == 0 else ""


def _snapshots(ctx: typer.Context) -> list[tuple[str, str, str, str]]:
    """Return (id, date, environment, summary) of each snapshot ref, newest first."""
    listed = _git(
        ctx, "for-each-ref", "--sort=-taggerdate", f"--format={_FORMAT}", "refs/govsnap/snapshots/"
    )
    found = []
    for record in listed.split("\0\0\n"):
        fields = record.split("\0")
        if len(fields) == 4:
            ident, date, summary, body = fields
            environment = _ENVIRONMENT.search(body)
            found.append((ident, date, environment.group(1) if environment else "", summary))
    return found


def snapshot_names(ctx: typer.Context, incomplete: str) -> list[tuple[str, str]]:
    """Return the snapshot names that start with `incomplete`: latest, then every id
    (newest first), each with its date, environment and summary."""
    found = [("latest", "the newest snapshot")]
    for ident, date, environment, summary in _snapshots(ctx):
        if _ID.fullmatch(ident):
            found.append((ident, _UNSAFE_TEXT.sub("?", f"{date} {environment}: {summary}")[:72]))
    return [(name, text) for name, text in found if name.startswith(incomplete)]


def environments(ctx: typer.Context, incomplete: str) -> list[str]:
    """Return the environments of the snapshots, and the configured default."""
    names = {environment for _, _, environment, _ in _snapshots(ctx) if environment}
    names.update(_git(ctx, "config", "--get", "govsnap.environment").split())
    return sorted(n for n in names if n.startswith(incomplete) and _NAME.fullmatch(n))


def remotes(ctx: typer.Context, incomplete: str) -> list[str]:
    """Return the configured git remotes."""
    return [
        r for r in _git(ctx, "remote").split() if r.startswith(incomplete) and _NAME.fullmatch(r)
    ]
