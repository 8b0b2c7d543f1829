"""verify: `govsnap verify --all` over 1,000 signed snapshots (every check: id, tag,
signature, trust, digest, objects, note; verdicts recorded in the notes) against a
shell loop of `git verify-tag` over the same refs, which checks signatures only."""

from __future__ import annotations

import sys
from pathlib import Path

from benchmarks.harness import Comparison, Context, timed

SNAPSHOTS = 1000
FILES = 1000
MIB = 10
GIT_EQUIVALENT = "for ref in $(git for-each-ref refs/govsnap/snapshots/); do git verify-tag $ref"
GIT_LOOP = (
    'for ref in $(git for-each-ref --format="%(refname)" refs/govsnap/snapshots/); do '
    'git verify-tag "$ref" 2>/dev/null || exit 1; done'
)

# Run in a subprocess with the benchmark environment: one process creates every snapshot
# (each after a one-file change, so every snapshot has its own tree), through the same
# code path as `govsnap create`.
SETUP = """
import sys
from pathlib import Path
from govsnap.repo import open_repo
from govsnap.store import CreateOptions, create
repo = open_repo(Path.cwd())
count = int(sys.argv[1])
target = Path("d00/s00/f000000.py")
for n in range(count):
    target.write_bytes(f"version {n}\\n".encode())
    create(repo, CreateOptions(environment="production", message=f"benchmark {n}"))
"""


def prepare(ctx: Context) -> Path:
    """Return a repository with SNAPSHOTS signed snapshots and a policy trusting the key
    (kept between runs like the generated repositories)."""
    source = ctx.repo("verify", files=FILES, total_bytes=MIB * 1024 * 1024)
    repo = ctx.workdir / "verify-run"
    stamp = repo / ".git" / f"benchmark-verify-{SNAPSHOTS}-{ctx.signing_key}"
    if stamp.exists():
        return repo
    # Snapshots signed by an earlier run's throwaway key cannot be verified: start over.
    repo = ctx.fresh_clone(source, "verify-run")
    policy = repo / ".govsnap" / "trust.toml"
    policy.parent.mkdir(exist_ok=True)
    policy.write_text(ctx.trust_policy('["create", "rollback"]'))
    ctx.git(repo, "add", ".govsnap")
    ctx.git(repo, "commit", "-q", "-m", "trust the benchmark key")
    ctx.run([sys.executable, "-c", SETUP, str(SNAPSHOTS)], repo)
    ctx.git(repo, "checkout", "-q", "--", ".")
    stamp.write_text("ok\n")
    return repo


def run(ctx: Context) -> list[Comparison]:
    """Time verify --all (all cores, then one) and the verify-tag loop, same refs."""
    repo = prepare(ctx)
    found = len(ctx.git(repo, "for-each-ref", "refs/govsnap/snapshots/").splitlines())
    if found != SNAPSHOTS:
        raise RuntimeError(f"expected {SNAPSHOTS} snapshots, found {found}")
    verify = [*ctx.govsnap(), "verify", "--all"]
    ctx.run(verify, repo)  # warm the page cache and the digest cache once
    runs = max(3, ctx.runs // 2)
    loop = timed(lambda: ctx.run(["sh", "-c", GIT_LOOP], repo), None, runs)
    parallel = timed(lambda: ctx.run(verify, repo), None, runs)
    serial = timed(lambda: ctx.run([*verify, "--jobs", "1"], repo), None, runs)
    work = f"verify --all, {SNAPSHOTS} signed snapshots of {FILES} files"
    return [
        Comparison(work, parallel, loop, GIT_EQUIVALENT, ratio_target=0.4),
        Comparison(f"{work}, --jobs 1", serial, loop, GIT_EQUIVALENT),
    ]
