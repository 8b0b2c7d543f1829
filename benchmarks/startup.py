"""start-up: `govsnap list` on a repository of 10 signed snapshots, the read-only command
people run most, against what stock git needs to show the same refs and notes."""

from __future__ import annotations

from pathlib import Path

from benchmarks.harness import Comparison, Context, paired

SNAPSHOTS = 10
GIT_EQUIVALENT = "git for-each-ref + git notes list"


def prepare(ctx: Context) -> Path:
    """Return a small repository with SNAPSHOTS signed snapshots (kept between runs)."""
    repo = ctx.repo("startup", files=100, total_bytes=1024 * 1024)
    stamp = repo / ".git" / f"benchmark-startup-{SNAPSHOTS}-{ctx.signing_key}"
    if stamp.exists():
        return repo
    ctx.forget_snapshots(repo)
    ctx.git(repo, "config", "govsnap.requireTrust", "false")
    target = repo / "d00" / "s00" / "f000000.py"
    for n in range(SNAPSHOTS):
        target.write_bytes(f"version {n}\n".encode())
        ctx.run([*ctx.govsnap(), "create", "--message", f"startup {n}"], repo)
    ctx.git(repo, "checkout", "-q", "--", ".")
    stamp.write_text("ok\n")
    return repo


def run(ctx: Context) -> list[Comparison]:
    """Time `govsnap list` (the table, then --json) and the stock-git listing, alternating."""
    repo = prepare(ctx)

    def stock_git() -> None:
        ctx.run(["git", "for-each-ref", "refs/govsnap/snapshots/"], repo)
        ctx.run(["git", "notes", "--ref=govsnap", "list"], repo)

    results = []
    for label, extra in (("", []), (" --json", ["--json"])):
        command = [*ctx.govsnap(), "list", *extra]
        ctx.run(command, repo)  # the parsed-tag cache is warm, as after any earlier list
        mine, theirs = paired(lambda c=command: ctx.run(c, repo), stock_git, None, ctx.runs * 2)
        results.append(
            Comparison(
                f"govsnap list{label}, {SNAPSHOTS} snapshots (start-up)",
                mine,
                theirs,
                GIT_EQUIVALENT,
                absolute_target=0.08,
            )
        )
    return results
