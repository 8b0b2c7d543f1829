"""Start-up: `govsnap --version` against `git --version`."""

from __future__ import annotations

from pathlib import Path

from benchmarks.harness import Comparison, Context, timed


def run(ctx: Context) -> list[Comparison]:
    """Time the two version commands, many runs each (they are short)."""
    here = Path.cwd()
    runs = max(10, ctx.runs * 4)
    return [
        Comparison(
            "govsnap --version",
            timed(lambda: ctx.run([*ctx.govsnap(), "--version"], here), None, runs),
            timed(lambda: ctx.run(["git", "--version"], here), None, runs),
            "git --version",
            absolute_target=0.150,
        )
    ]
