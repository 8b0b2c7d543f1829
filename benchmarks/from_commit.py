"""create --from: a signed snapshot of a commit with the digest cache warm, against
`git tag -s` on the same commit (the stock-git way to sign a point in history)."""

from __future__ import annotations

from itertools import count

from benchmarks.harness import Comparison, Context, timed


def run(ctx: Context) -> list[Comparison]:
    """Time `govsnap create --from HEAD` and `git tag -s` of HEAD, both signing with gpg."""
    repo = ctx.clone(ctx.repo("base"), "from-commit")
    govsnap = [*ctx.govsnap(), "create", "--from", "HEAD", "--trigger", "bench"]
    ctx.run(govsnap, repo)  # warm the digest cache, as a hook's earlier runs would
    names = count()

    def git_tag() -> None:
        ctx.run(["git", "tag", "-s", "-u", ctx.signing_key, "-m", "bench",
                 f"bench-{next(names)}", "HEAD"], repo)  # fmt: skip

    return [
        Comparison(
            "snapshot of a commit (--from), digest cache warm",
            timed(lambda: ctx.run(govsnap, repo), None, ctx.runs),
            timed(git_tag, None, ctx.runs),
            "git tag -s on the same commit",
            absolute_target=0.1,
        )
    ]
