"""list: 10,000 snapshots read in bulk, as JSON and as the table people read, against
`git for-each-ref` plus `git notes list`."""

from __future__ import annotations

import json

from benchmarks.harness import Comparison, Context, timed
from benchmarks.prune import SNAPSHOTS, template


def run(ctx: Context) -> list[Comparison]:
    """Time `govsnap list --json` and the two stock-git listings on the same repository."""
    repo = template(ctx)
    listed = len(json.loads(ctx.run([*ctx.govsnap(), "list", "--json"], repo).stdout)["snapshots"])
    if listed != SNAPSHOTS:
        raise RuntimeError(f"govsnap list showed {listed} snapshots, not {SNAPSHOTS}")

    def stock_git() -> None:
        ctx.run(["git", "for-each-ref", "refs/govsnap/snapshots/"], repo)
        ctx.run(["git", "notes", "--ref=govsnap", "list"], repo)

    git_times = timed(stock_git, None, ctx.runs)
    # The table fitted to 80 columns, as piped output is (nothing is paged: not a terminal).
    table = [*ctx.govsnap(), "list", "--color=never"]
    return [
        Comparison(
            f"list {SNAPSHOTS:,} snapshots (--json)",
            timed(lambda: ctx.run([*ctx.govsnap(), "list", "--json"], repo), None, ctx.runs),
            git_times,
            "git for-each-ref + git notes list",
            absolute_target=0.3,
        ),
        Comparison(
            f"list {SNAPSHOTS:,} snapshots (table, 80 columns)",
            timed(lambda: ctx.run(table, repo), None, ctx.runs),
            git_times,
            "git for-each-ref + git notes list",
            # What people read costs what programs read.
            absolute_target=0.3,
        ),
    ]
