"""memory: peak resident memory of `govsnap create` with one 300 MB untracked file, against
a temporary-index `git add -A` + `git write-tree` storing the same state."""

from __future__ import annotations

import random
from pathlib import Path

from benchmarks.harness import Comparison, Context, peak_memory

SIZE = 300 * 1024 * 1024
GIT_EQUIVALENT = "cp index; GIT_INDEX_FILE=tmp git add -A; git write-tree"
GIT_SCRIPT = (
    "cp .git/index .git/bench-index && GIT_INDEX_FILE=.git/bench-index git add -A && "
    "GIT_INDEX_FILE=.git/bench-index git write-tree >/dev/null; rm -f .git/bench-index"
)


def run(ctx: Context) -> list[Comparison]:
    """Measure both peaks, alternating, each on the file new to the object store (the
    first snapshot of it: git must hash and store it, govsnap must also digest it)."""
    repo = ctx.clone(ctx.repo("memory", files=100, total_bytes=1024 * 1024), "memory")
    ctx.git(repo, "config", "govsnap.requireTrust", "false")
    big = repo / "big.bin"
    rng = random.Random(7)

    def fresh_file() -> None:
        # New content each time (16 random bytes at the front), so that no run finds the
        # blob already stored or digested.
        with big.open("wb") as fh:
            fh.write(rng.randbytes(16))
            block = rng.randbytes(1024 * 1024)
            for _ in range(SIZE // len(block)):
                fh.write(block)

    mine: list[float] = []
    theirs: list[float] = []
    for _ in range(max(2, ctx.runs // 2)):
        fresh_file()
        mine.append(peak_memory(ctx, [*ctx.govsnap(), "create"], repo))
        fresh_file()
        theirs.append(peak_memory(ctx, ["sh", "-c", GIT_SCRIPT], repo))
    Path(big).unlink()
    return [
        Comparison(
            "peak memory of create, one 300 MB untracked file",
            mine,
            theirs,
            GIT_EQUIVALENT,
            ratio_target=1.2,
            unit="MiB",
        )
    ]
