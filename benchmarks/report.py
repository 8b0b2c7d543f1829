"""report: `govsnap report --html` over the 1,000 signed snapshots of the verify case
(each verified again, the audit chain checked, the page written) against the shell loop
of `git verify-tag` over the same refs, which checks signatures only. The target is the
brief's verification SLA (under a minute): an auditor's page is a verification run."""

from __future__ import annotations

from benchmarks.harness import Comparison, Context, timed
from benchmarks.verify import GIT_EQUIVALENT, GIT_LOOP, SNAPSHOTS, prepare


def run(ctx: Context) -> list[Comparison]:
    """Time report --html and --json, and the verify-tag loop, on the same refs."""
    repo = prepare(ctx)
    out = repo / ".git" / "benchmark-report.html"
    html = [*ctx.govsnap(), "report", "--html", str(out)]
    ctx.run(html, repo)  # warm the page cache and the digest cache once
    runs = max(3, ctx.runs // 2)
    loop = timed(lambda: ctx.run(["sh", "-c", GIT_LOOP], repo), None, runs)
    page = timed(lambda: ctx.run(html, repo), None, runs)
    work = f"report --html, {SNAPSHOTS} signed snapshots ({out.stat().st_size // 1024} KiB page)"
    return [Comparison(work, page, loop, GIT_EQUIVALENT, absolute_target=60.0)]
