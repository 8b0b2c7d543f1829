"""diff --stat: two snapshots of the generated repository 1,000 files apart, against
`git diff --stat --no-renames` of the same two trees."""

from __future__ import annotations

import json

from benchmarks.harness import Comparison, Context, paired

CHANGED = 1000


def run(ctx: Context) -> list[Comparison]:
    """Time `govsnap diff --stat A B` and `git diff --stat` of the two trees, alternating."""
    repo = ctx.clone(ctx.repo("base"), "diff")
    govsnap = ctx.govsnap()
    made = ctx.run([*govsnap, "create", "--json"], repo).stdout
    first = json.loads(made)["snapshot"]
    paths = sorted(repo.glob("d*/s*/f*"))[:: max(1, ctx.files // CHANGED)][:CHANGED]
    for n, path in enumerate(paths):
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2] + f"\nchanged {n}\n".encode())
    second = json.loads(ctx.run([*govsnap, "create", "--json"], repo).stdout)["snapshot"]
    shown = json.loads(
        ctx.run([*govsnap, "diff", first["id"], second["id"], "--json"], repo).stdout
    )
    if len(shown["modified"]) != len(paths):
        raise RuntimeError(f"diff showed {len(shown['modified'])} files, not {len(paths)}")
    mine = [*govsnap, "diff", "--stat", first["id"], second["id"]]
    trees = (first["payload"]["tree"], second["payload"]["tree"])
    theirs = ["git", "diff", "--stat", "--no-renames", *trees]
    govsnap_times, git_times = paired(
        lambda: ctx.run(mine, repo), lambda: ctx.run(theirs, repo), None, ctx.runs
    )
    return [
        Comparison(
            f"diff --stat between two snapshots ({len(paths):,} files changed)",
            govsnap_times,
            git_times,
            "git diff --stat --no-renames <tree> <tree>",
            ratio_target=1.5,
        )
    ]
