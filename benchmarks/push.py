"""push: `git push` of a one-file change to a local bare repository, with govsnap's
pre-push hook (which snapshots the pushed commit, signed) against the same push without
it, after the digest cache is warm."""

from __future__ import annotations

import shutil
from pathlib import Path

from benchmarks.harness import Comparison, Context, timed

GIT_EQUIVALENT = "the same git push without the hook"


def run(ctx: Context) -> list[Comparison]:
    """Time pushes of a fresh one-file commit with and without the pre-push hook."""
    repo = ctx.clone(ctx.repo("base"), "push")
    remote = ctx.workdir / "push-remote.git"
    shutil.rmtree(remote, ignore_errors=True)
    # A local bare clone shares objects by hardlinks: the remote already has main.
    ctx.git(ctx.workdir, "clone", "-q", "--bare", str(repo), str(remote))
    ctx.git(repo, "remote", "add", "bench", str(remote))
    ctx.git(repo, "config", "govsnap.promotionBranches", "main")
    ctx.git(repo, "config", "govsnap.environment.main", "production")
    counter = iter(range(10**6))

    def commit_one() -> None:
        n = next(counter)
        # Every sixth generated file is a .py file; change an existing one.
        path = Path("d00/s00") / f"f{(n % 16) * 6:06d}.py"
        (repo / path).write_bytes(f"changed {n}\n".encode())
        ctx.git(repo, "commit", "-q", "-m", f"change {n}", "--", str(path))

    def push() -> None:
        ctx.git(repo, "push", "-q", "bench", "main")

    # Warm the digest cache for the tree, and the page cache, once.
    ctx.run([*ctx.govsnap(), "create", "--from", "HEAD"], repo)
    ctx.run([*ctx.govsnap(), "hooks", "install", "--pre-push"], repo)
    commit_one()
    push()
    with_hook = timed(push, commit_one, ctx.runs)
    snapshots = ctx.git(repo, "for-each-ref", "refs/govsnap/snapshots/").splitlines()
    if len(snapshots) != ctx.runs + 2:
        raise RuntimeError(f"the hook took {len(snapshots) - 2} snapshots in {ctx.runs} pushes")
    ctx.run([*ctx.govsnap(), "hooks", "uninstall"], repo)
    without = timed(push, commit_one, ctx.runs)
    return [
        Comparison(
            "git push with the pre-push hook (1 file changed, warm cache)",
            with_hook,
            without,
            GIT_EQUIVALENT,
            overhead_target=0.3,
        )
    ]
