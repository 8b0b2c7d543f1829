"""policy: `govsnap trust check` on a policy ref whose history holds 10,000 commits since
the policy's first version and 20 approved versions (each change approved with `govsnap
trust approve`), the root of trust a pinned key: every command that reads the policy
checks this history back to the anchor (a record of what was verified before only ever
refuses). The stock-git equivalent is git's own walk of that history for the changes of
the file, `git log --full-history -- .govsnap/trust.toml`."""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

from benchmarks.harness import Comparison, Context, timed

COMMITS = 10_000
VERSIONS = 20
GIT_EQUIVALENT = "git log --full-history --format=%H -- .govsnap/trust.toml"


def _fast_import(ctx: Context, repo: Path, count: int, start: int) -> None:
    """Add `count` commits changing one file on top of main, through git fast-import."""
    parent = ctx.git(repo, "rev-parse", "main").strip()
    when = int(time.time()) - 10 * COMMITS + start * 10
    chunks = []
    for n in range(count):
        content = f"{start + n}\n".encode()
        message = f"change {start + n}\n".encode()
        head = f"from {parent}\n" if n == 0 else ""
        chunks.append(
            f"commit refs/heads/main\ncommitter Bench <bench@example.com> {when + n * 10} +0000\n"
            f"data {len(message)}\n".encode()
            + message
            + f"{head}M 100644 inline counter.txt\ndata {len(content)}\n".encode()
            + content
            + b"\n"
        )
    ctx.run(["git", "fast-import", "--quiet"], repo, input=b"".join(chunks))
    ctx.git(repo, "reset", "-q", "--hard", "main")


def _build(ctx: Context, repo: Path) -> None:
    ctx.git(repo.parent, "init", "-q", "-b", "main", str(repo))
    ctx.git(repo, "config", "govsnap.signingKey", ctx.signing_key)
    ctx.git(repo, "config", "govsnap.trustRef", "refs/heads/main")
    policy = repo / ".govsnap" / "trust.toml"
    policy.parent.mkdir()
    policy.write_text(ctx.trust_policy())
    ctx.run([*ctx.govsnap(), "trust", "approve"], repo)
    ctx.git(repo, "add", "-A")
    ctx.git(repo, "commit", "-q", "-m", "trust policy")
    per_version = COMMITS // VERSIONS
    for version in range(2, VERSIONS + 1):
        _fast_import(ctx, repo, per_version, (version - 2) * per_version)
        text = re.sub(r"^version = \d+", f"version = {version}", policy.read_text(), flags=re.M)
        policy.write_text(text)
        ctx.run([*ctx.govsnap(), "trust", "approve"], repo)
        ctx.git(repo, "add", "-A")
        ctx.git(repo, "commit", "-q", "-m", f"trust policy version {version}")
    (repo / ".git" / "benchmark-ready").write_text(ctx.signing_key)


def run(ctx: Context) -> list[Comparison]:
    """Time `trust check` (history back to the anchor key) and git's walk of it."""
    repo = ctx.workdir / f"policy-{COMMITS}-{VERSIONS}"
    stamp = repo / ".git" / "benchmark-ready"
    # Approved with this run's key (every run makes a new one): built again otherwise.
    if not stamp.exists() or stamp.read_text() != ctx.signing_key:
        shutil.rmtree(repo, ignore_errors=True)
        _build(ctx, repo)
    ctx.git(repo, "config", "govsnap.trustAnchor", ctx.signing_key)
    check = [*ctx.govsnap(), "trust", "check"]
    walk = ["git", "log", "--full-history", "--format=%H", "--", ".govsnap/trust.toml"]
    return [
        Comparison(
            f"trust check: {COMMITS:,} commits, {VERSIONS} approved versions, anchor key",
            timed(lambda: ctx.run(check, repo), None, ctx.runs),
            timed(lambda: ctx.run(walk, repo), None, ctx.runs),
            GIT_EQUIVALENT,
            absolute_target=1.0,
        )
    ]
