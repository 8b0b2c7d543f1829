"""create: incremental (one file changed) and cold (no digest cache) against a temporary
index `git add -A` + `git write-tree`."""

from __future__ import annotations

from pathlib import Path

from benchmarks.harness import Comparison, Context, timed
from govsnap.digest import CACHE_NAME

GIT_EQUIVALENT = "cp index; GIT_INDEX_FILE=tmp git add -A; git write-tree"


def _git_snapshot(ctx: Context, repo: Path) -> None:
    script = (
        "cp .git/index .git/bench-index && "
        "GIT_INDEX_FILE=.git/bench-index git add -A && "
        "GIT_INDEX_FILE=.git/bench-index git write-tree >/dev/null"
    )
    ctx.run(["sh", "-c", script], repo)


def run(ctx: Context) -> list[Comparison]:
    """Time govsnap create and the stock-git equivalent on the same repository states."""
    repo = ctx.clone(ctx.repo("base"), "create")
    govsnap = [*ctx.govsnap(), "create", "--label", "bench"]
    counter = iter(range(10**6))

    def touch_one() -> None:
        n = next(counter)
        (repo / f"d00/s00/f{n % 100:06d}.py").write_bytes(f"changed {n}\n".encode())

    def drop_cache() -> None:
        for path in (repo / ".git" / "govsnap").glob(CACHE_NAME + "*"):
            path.unlink()

    # Warm the cache (and the page cache) once before the incremental runs.
    ctx.run(govsnap, repo)
    incremental_g = timed(lambda: ctx.run(govsnap, repo), touch_one, ctx.runs)
    incremental_s = timed(lambda: _git_snapshot(ctx, repo), touch_one, ctx.runs)
    cold_g = timed(lambda: ctx.run(govsnap, repo), drop_cache, max(1, ctx.runs // 2))
    cold_s = timed(lambda: _git_snapshot(ctx, repo), None, max(1, ctx.runs // 2))
    return [
        Comparison(
            "incremental create (1 file changed)",
            incremental_g,
            incremental_s,
            GIT_EQUIVALENT,
            ratio_target=1.5,
        ),
        Comparison(
            "cold create (no digest cache)", cold_g, cold_s, GIT_EQUIVALENT, ratio_target=3.0
        ),
    ]
