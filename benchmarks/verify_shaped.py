"""verify, real shape: `govsnap verify --all` over 50 signed snapshots of a ~40,000-file
repository shaped like git/git (directory depth, files per directory, file sizes) with
changes between snapshots the size of git/git's commits, against a `git verify-tag` loop.

The shape was measured on git/git's master (4,847 files, November 2026):

- files and directories per depth: `git ls-tree -r -l HEAD`, below;
- file sizes: quantiles of the same listing (10%: 132 B, median 1,757 B, 90%: 18 KB,
  99%: 87 KB, largest 1.1 MB);
- change pattern: files changed per commit over the last 400 non-merge commits (median 1,
  75%: 3, 90%: 5, 99%: 19), in 1 to 4 directories.

Eight components of that shape side by side make 38,776 files (~380 MB).
"""

from __future__ import annotations

import bisect
import math
import random
import sqlite3
import sys
from pathlib import Path

from benchmarks.harness import Comparison, Context, paired
from benchmarks.verify import GIT_EQUIVALENT, GIT_LOOP
from govsnap.digest import CACHE_NAME

SNAPSHOTS = 50
COMPONENTS = 8
# git/git: (depth below the top, directories at that depth, files at that depth).
DEPTHS = [(0, 1, 530), (1, 31, 1864), (2, 113, 2215), (3, 47, 179), (4, 15, 36), (5, 6, 18),
          (6, 4, 4), (7, 1, 1)]  # fmt: skip
# git/git: (quantile, file size in bytes).
SIZES = [(0.0, 1), (0.1, 132), (0.25, 452), (0.5, 1757), (0.75, 5989), (0.9, 18078),
         (0.99, 86878), (1.0, 1088754)]  # fmt: skip
# git/git: (quantile, files changed by a commit).
CHANGES = [(0.5, 1), (0.75, 3), (0.9, 5), (0.99, 19), (1.0, 40)]


def _size(rng: random.Random) -> int:
    """Return a file size drawn from git/git's quantiles (log-linear between them)."""
    q = rng.random()
    at = bisect.bisect_left([p for p, _ in SIZES], q)
    (q0, s0), (q1, s1) = SIZES[max(0, at - 1)], SIZES[min(at, len(SIZES) - 1)]
    if q1 == q0:
        return s1
    fraction = (q - q0) / (q1 - q0)
    return int(math.exp(math.log(s0) + fraction * (math.log(s1) - math.log(s0))))


def _text(rng: random.Random, size: int) -> bytes:
    """Return `size` bytes of text in 64-byte lines (line diffs behave as in source)."""
    raw = rng.randbytes(size // 2 + 1).hex()
    lines = [raw[i : i + 63] for i in range(0, size, 64)]
    return ("\n".join(lines) + "\n").encode()[:size]


def _directories(rng: random.Random, top: str) -> list[tuple[str, int]]:
    """Return (directory, files) of one component, heavy-tailed as git/git's (a few
    directories hold most files: Zipf weights within each depth)."""
    found: list[tuple[str, int]] = []
    parents = [top]
    for depth, count, files in DEPTHS:
        names = (
            [top] if depth == 0 else [f"{rng.choice(parents)}/d{depth}x{i}" for i in range(count)]
        )
        weights = [1 / (rank + 1) for rank in range(len(names))]
        total = sum(weights)
        shares = [max(1, round(files * w / total)) for w in weights]
        found.extend(zip(names, shares, strict=True))
        parents = names
    return found


def generate(path: Path, seed: int = 1) -> list[str]:
    """Write the repository's files; return its directories."""
    rng = random.Random(seed)
    directories: list[str] = []
    for component in range(COMPONENTS):
        for directory, files in _directories(rng, f"c{component}"):
            where = path / directory
            where.mkdir(parents=True, exist_ok=True)
            directories.append(directory)
            for n in range(files):
                (where / f"f{n}.c").write_bytes(_text(rng, _size(rng)))
    return directories


def change(rng: random.Random, path: Path) -> None:
    """Change files as a git/git commit does: a few files in one to four directories."""
    q = rng.random()
    count = next(n for p, n in CHANGES if q <= p)
    files = sorted(path.glob("c*/**/*.c"))
    chosen_dirs = rng.sample(sorted({f.parent for f in files}), rng.randint(1, 4))
    pool = [f for f in files if f.parent in chosen_dirs] or files
    for target in rng.sample(pool, min(count, len(pool))):
        data = target.read_bytes()
        cut = rng.randint(0, len(data))
        target.write_bytes(data[:cut] + _text(rng, 64 * rng.randint(1, 5)) + data[cut:])


def prepare(ctx: Context) -> Path:
    """Return the shaped repository with SNAPSHOTS signed snapshots (kept between runs)."""
    source = ctx.workdir / "shaped"
    path = ctx.workdir / "shaped-run"
    stamp = path / ".git" / f"benchmark-shaped-{SNAPSHOTS}-{ctx.signing_key}"
    if stamp.exists():
        return path
    if not (source / ".git" / "benchmark-ready").exists():
        import shutil

        shutil.rmtree(source, ignore_errors=True)
        generate(source)
        ctx.git(source, "init", "-q", "-b", "main")
        ctx.git(source, "add", "-A")
        ctx.git(source, "commit", "-q", "-m", "generated")
        (source / ".git" / "benchmark-ready").write_text("ok\n")
    # Snapshots signed by an earlier run's throwaway key cannot be verified: start over.
    path = ctx.fresh_clone(source, "shaped-run")
    policy = path / ".govsnap" / "trust.toml"
    policy.parent.mkdir(exist_ok=True)
    policy.write_text(ctx.trust_policy('["create", "rollback"]'))
    ctx.git(path, "add", ".govsnap")
    ctx.git(path, "commit", "-q", "-m", "trust the benchmark key")
    rng = random.Random(2)
    for n in range(SNAPSHOTS):
        print(f"  shaped snapshot {n + 1}/{SNAPSHOTS}", file=sys.stderr, flush=True)
        change(rng, path)
        ctx.run([*ctx.govsnap(), "create", "--environment", "production", "-m", f"s{n}"], path)
    stamp.write_text("ok\n")
    return path


def run(ctx: Context) -> list[Comparison]:
    """Time verify --all (digests remembered from the last run, then not) and the
    verify-tag loop, alternating, on the same refs."""
    repo = prepare(ctx)
    found = len(ctx.git(repo, "for-each-ref", "refs/govsnap/snapshots/").splitlines())
    if found != SNAPSHOTS:
        raise RuntimeError(f"expected {SNAPSHOTS} snapshots, found {found}")
    verify = [*ctx.govsnap(), "verify", "--all"]
    ctx.run(verify, repo)  # warm the page cache and the digest cache once
    loop = ["sh", "-c", GIT_LOOP]

    def forget_roots() -> None:
        db = sqlite3.connect(repo / ".git" / "govsnap" / CACHE_NAME)
        try:
            db.execute("DELETE FROM roots3")
            db.commit()
        finally:
            db.close()

    runs = max(3, ctx.runs)
    warm, loop_warm = paired(lambda: ctx.run(verify, repo), lambda: ctx.run(loop, repo), None, runs)
    cold, loop_cold = paired(
        lambda: ctx.run(verify, repo), lambda: ctx.run(loop, repo), forget_roots, runs
    )
    files = len(ctx.git(repo, "ls-files").splitlines())
    work = f"verify --all, {SNAPSHOTS} snapshots of {files:,} files shaped like git/git"
    return [
        Comparison(work, warm, loop_warm, GIT_EQUIVALENT, ratio_target=0.5),
        Comparison(
            f"{work}, no root digest remembered (each tree summary cached)",
            cold,
            loop_cold,
            GIT_EQUIVALENT,
        ),
    ]
