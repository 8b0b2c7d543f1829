"""restore and find: writing a whole snapshot into a new directory against git's own
checkout of the same tree into a directory (`read-tree -u --reset` on a temporary
index), and `find` across snapshots against listing each tree with `git ls-tree -r`.

govsnap's restore figure is the whole command as users run it: verification of the
snapshot (signature, trust, digest), the tree safety check, and git's checkout-index.
"""

from __future__ import annotations

import json
import os
import shutil

from benchmarks.harness import Comparison, Context, timed
from benchmarks.rollback import _trust

SNAPSHOTS = 10


def run(ctx: Context) -> list[Comparison]:
    """Time restore and find, and their stock-git equivalents, on the same repository."""
    repo = ctx.clone(ctx.repo("base"), "restore")
    _trust(ctx, repo)
    trees = []
    ids = []
    for n in range(SNAPSHOTS):
        (repo / "changing.txt").write_text(f"state {n}\n")
        created = ctx.run([*ctx.govsnap(), "create", "--json"], repo)
        ids.append(json.loads(created.stdout)["snapshot"]["id"])
        ref = f"refs/govsnap/snapshots/{ids[-1]}^{{tree}}"
        trees.append(ctx.git(repo, "rev-parse", ref).strip())
    ident, tree = ids[-1], trees[-1]
    out = ctx.workdir / "restore-out"
    index = ctx.workdir / "restore-index"

    def clear() -> None:
        shutil.rmtree(out, ignore_errors=True)
        index.unlink(missing_ok=True)

    def stock_checkout() -> None:
        out.mkdir()
        command = ["git", f"--work-tree={out}", "read-tree", "-u", "--reset", tree]
        ctx.run(["env", f"GIT_INDEX_FILE={index}", *command], repo)

    restore = [*ctx.govsnap(), "restore", ident, "--target", str(out)]
    # Warm the digest cache and the page cache once, as a repository in use has them.
    clear()
    ctx.run(restore, repo)
    restore_g = timed(lambda: ctx.run(restore, repo), clear, ctx.runs)
    restore_s = timed(stock_checkout, clear, ctx.runs)
    files = sum(len(names) for _, _, names in os.walk(out))
    clear()

    find = [*ctx.govsnap(), "find", "*.json", "--json"]
    found = json.loads(ctx.run(find, repo).stdout)
    if len(found["snapshots"]) != SNAPSHOTS:
        raise RuntimeError(f"find matched {len(found['snapshots'])} snapshots, not {SNAPSHOTS}")

    def stock_find() -> None:
        for t in trees:
            ctx.run(["git", "ls-tree", "-r", "--name-only", t], repo)

    return [
        Comparison(
            f"restore a snapshot into a new directory ({files:,} files)",
            restore_g,
            restore_s,
            "GIT_INDEX_FILE=tmp git --work-tree=DIR read-tree -u --reset <tree>",
            ratio_target=1.5,
        ),
        Comparison(
            f"find '*.json' across {SNAPSHOTS} snapshots",
            timed(lambda: ctx.run(find, repo), None, ctx.runs),
            timed(stock_find, None, ctx.runs),
            f"git ls-tree -r --name-only, {SNAPSHOTS} trees (no matching)",
        ),
    ]
