"""stats --prometheus: 10,000 snapshots and an audit trail of 10,000 entries (every
operation, two environments, failures and SLA breaches among them) read into the
Prometheus textfile, against stock git reading the same: the snapshot refs, every
audit entry's message, and the bytes only snapshots hold.

The entries are written through the library (signing 10,000 of them would take an
hour), unsigned, on a copy of prune's template repository.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from benchmarks.harness import Comparison, Context, timed
from benchmarks.prune import template

ENTRIES = 10_000
OPERATIONS = ("create", "verify", "rollback", "rehearse", "prune", "fetch")


def generate_entries(path: Path, count: int) -> None:
    """Append `count` audit entries to the chain at `path`, one commit each."""
    from govsnap import audit
    from govsnap.objects import ref_target
    from govsnap.refs import AUDIT_REF
    from govsnap.repo import Identity, open_repo

    repo = open_repo(path)
    git = repo.git
    empty = git.TreeBuilder().write()
    tip = ref_target(repo, AUDIT_REF)
    start = git[tip].committer.time if tip is not None else 1_780_000_000
    for n in range(count):
        operation = OPERATIONS[n % len(OPERATIONS)]
        who = Identity("Bench", "bench@example.com", start + n, 0)
        entry = audit.Entry(
            operation,
            f"generated entry {n}",
            who,
            result="ok" if n % 17 else "failed: generated",
            duration=0.5 + (n % 90),
            environments=()
            if operation == "fetch"
            else (("production", "staging")[n // len(OPERATIONS) % 2],),
            sla=60.0,
        )
        sig = who.signature()
        tip = git.create_commit(
            None, sig, sig, entry.message(), empty, [] if tip is None else [tip]
        )
    repo.git_cmd("update-ref", AUDIT_REF, str(tip))


def run(ctx: Context) -> list[Comparison]:
    """Time `govsnap stats --prometheus` and the stock-git reads it stands for."""
    path = ctx.workdir / f"stats-{ENTRIES}"
    stamp = path / ".git" / "benchmark-entries-ready"
    if not stamp.exists():
        shutil.rmtree(path, ignore_errors=True)
        shutil.copytree(template(ctx), path, symlinks=True)
        generate_entries(path, ENTRIES)
        ctx.git(path, "gc", "--quiet")
        stamp.write_text("ok\n")
    out = ctx.workdir / "stats.prom"

    def govsnap_stats() -> None:
        ctx.run([*ctx.govsnap(), "stats", "--prometheus", str(out)], path)

    def stock_git() -> None:
        ctx.run(["git", "for-each-ref", "refs/govsnap/snapshots/"], path)
        ctx.run(["git", "log", "--format=%B", "refs/govsnap/audit"], path)
        ctx.run(
            ["git", "rev-list", "--objects", "--disk-usage", "--all", "--reflog"],
            path,
        )

    govsnap_stats()
    text = out.read_text()
    if 'govsnap_operations_total{operation="rollback",environment="staging"' not in text:
        raise RuntimeError("stats did not count the generated rollbacks")
    return [
        Comparison(
            f"stats --prometheus, 10,000 snapshots, {ENTRIES:,} audit entries",
            timed(govsnap_stats, None, ctx.runs),
            timed(stock_git, None, ctx.runs),
            "git for-each-ref + git log (audit) + git rev-list --disk-usage",
            absolute_target=5.0,
        )
    ]
