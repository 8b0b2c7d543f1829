"""rollback: restore a snapshot that differs from the working tree in 1,000 files (one per
directory) against `git read-tree -u --reset <tree>` on the same repository state.

govsnap's figure is the whole command as users run it: verification of the target
(signature, trust, digest), the signed safety snapshot of the current state (with its
index commit), the checkout, the note and the audit entry.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from benchmarks.harness import Comparison, Context, timed

GIT_EQUIVALENT = "git read-tree -u --reset <snapshot tree>"
CHANGED = 1000


def _trust(ctx: Context, repo: Path) -> None:
    """Commit a trust policy letting the benchmark key sign and roll back."""
    policy = repo / ".govsnap" / "trust.toml"
    policy.parent.mkdir(exist_ok=True)
    policy.write_text(ctx.trust_policy())
    ctx.git(repo, "add", ".govsnap/trust.toml")
    ctx.git(repo, "commit", "-q", "-m", "trust policy")


def run(ctx: Context) -> list[Comparison]:
    """Time govsnap rollback and read-tree on the same damaged states."""
    repo = ctx.clone(ctx.repo("base"), "rollback")
    _trust(ctx, repo)
    created = ctx.run([*ctx.govsnap(), "create", "--json", "--label", "bench"], repo)
    ident = json.loads(created.stdout)["snapshot"]["id"]
    tree = ctx.git(repo, "rev-parse", f"refs/govsnap/snapshots/{ident}^{{tree}}").strip()
    directories = sorted(p for p in repo.glob("d*/s*") if p.is_dir())
    victims = [min(d.iterdir()) for d in directories][:CHANGED]
    if len(victims) < CHANGED:
        # Smaller repositories have fewer directories: take more files from each.
        victims = sorted(p for d in directories for p in d.iterdir())[
            :: max(1, ctx.files // CHANGED)
        ]
        victims = victims[:CHANGED]
    counter = iter(range(10**6))

    def damage() -> None:
        n = next(counter)
        for path in victims:
            path.write_bytes(f"damaged in run {n}\n".encode())
        # Leave the index's stat data racily clean for neither tool.
        time.sleep(1.1)

    govsnap = [*ctx.govsnap(), "rollback", ident, "--yes"]
    # Warm the digest cache and the page cache once, as a repository in use has them.
    damage()
    ctx.run(govsnap, repo)
    rollback_g = timed(lambda: ctx.run(govsnap, repo), damage, ctx.runs)
    rollback_s = timed(lambda: ctx.git(repo, "read-tree", "-u", "--reset", tree), damage, ctx.runs)
    if ctx.git(repo, "status", "--porcelain", "--untracked-files=no"):
        raise RuntimeError("read-tree left the work tree different from the snapshot")
    return [
        Comparison(
            f"rollback ({len(victims):,} files differ)",
            rollback_g,
            rollback_s,
            GIT_EQUIVALENT,
            ratio_target=2.0,
        )
    ]
