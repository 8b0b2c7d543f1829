"""list: 10,000 snapshots read in bulk, against `git for-each-ref` plus `git notes list`."""

from __future__ import annotations

import json

from benchmarks.harness import Comparison, Context, timed
from benchmarks.prune import SNAPSHOTS, template


def run(ctx: Context) -> list[Comparison]:
    """Time `govsnap list --json` and the two stock-git listings on the same repository."""
    repo = template(ctx)
    listed = len(json.loads(ctx.run([*ctx.govsnap(), "list", "--json"], repo).stdout))
    if listed != SNAPSHOTS:
        raise RuntimeError(f"govsnap list showed {listed} snapshots, not {SNAPSHOTS}")

    def stock_git() -> None:
        ctx.run(["git", "for-each-ref", "refs/govsnap/snapshots/"], repo)
        ctx.run(["git", "notes", "--ref=govsnap", "list"], repo)

    return [
        Comparison(
            f"list {SNAPSHOTS:,} snapshots (--json)",
            timed(lambda: ctx.run([*ctx.govsnap(), "list", "--json"], repo), None, ctx.runs),
            timed(stock_git, None, ctx.runs),
            "git for-each-ref + git notes list",
            absolute_target=0.3,
        )
    ]
