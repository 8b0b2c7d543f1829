"""Timing side by side with stock git on generated repositories.

A case module exposes `run(ctx: Context) -> list[Comparison]`; `python -m benchmarks`
runs every case in one process run and prints one table.
"""

from __future__ import annotations

import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Comparison:
    """One line of the results table: medians of govsnap and of the stock-git equivalent."""

    work: str
    govsnap: list[float]
    git: list[float]
    git_equivalent: str
    ratio_target: float | None = None
    absolute_target: float | None = None  # seconds, for govsnap's median
    overhead_target: float | None = None  # seconds govsnap's median may exceed git's
    unit: str = "ms"  # "ms": the figures are seconds, shown in ms; "MiB": peak memory

    @property
    def govsnap_median(self) -> float:
        """Return govsnap's median wall time in seconds."""
        return statistics.median(self.govsnap)

    @property
    def git_median(self) -> float:
        """Return stock git's median wall time in seconds."""
        return statistics.median(self.git)

    @property
    def ratio(self) -> float:
        """Return govsnap median / git median."""
        return self.govsnap_median / self.git_median if self.git_median else float("inf")

    @property
    def target(self) -> str:
        """Return the target as text."""
        parts = []
        if self.ratio_target is not None:
            parts.append(f"<= {self.ratio_target:g}x")
        if self.absolute_target is not None:
            parts.append(f"<= {self.absolute_target * 1000:g} ms")
        if self.unit != "ms" and self.ratio_target is not None:
            parts[-1] += " (peak memory)"
        if self.overhead_target is not None:
            parts.append(f"<= +{self.overhead_target * 1000:g} ms over git")
        return ", ".join(parts) or "-"

    @property
    def met(self) -> bool:
        """Return whether every target is met."""
        ok = True
        if self.ratio_target is not None:
            ok = ok and self.ratio <= self.ratio_target
        if self.absolute_target is not None:
            ok = ok and self.govsnap_median <= self.absolute_target
        if self.overhead_target is not None:
            ok = ok and self.govsnap_median - self.git_median <= self.overhead_target
        return ok


@dataclass
class Context:
    """What a case needs: sizes, a scratch directory, tools, a signing key."""

    files: int
    total_bytes: int
    runs: int
    workdir: Path
    env: dict[str, str] = field(default_factory=dict)
    signing_key: str = ""

    def govsnap(self) -> list[str]:
        """Return the argv prefix that runs govsnap as users run it."""
        exe = Path(sys.executable).parent / "govsnap"
        return [str(exe)] if exe.exists() else [sys.executable, "-m", "govsnap"]

    def run(
        self, args: Sequence[str], cwd: Path, **kwargs: object
    ) -> subprocess.CompletedProcess[bytes]:
        """Run a command with the benchmark environment; fail loudly if it fails."""
        proc = subprocess.run(
            list(args), cwd=cwd, env=self.env, capture_output=True, check=False, **kwargs
        )  # type: ignore[call-overload]
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed: {proc.stderr.decode(errors='replace')}")
        return proc  # type: ignore[no-any-return]

    def git(self, cwd: Path, *args: str) -> str:
        """Run stock git and return its stdout."""
        return self.run(["git", *args], cwd).stdout.decode()

    def trust_policy(self, operations: str = '["*"]') -> str:
        """Return a trust policy letting the benchmark key do `operations` everywhere,
        carrying its public key as every policy does."""
        armored = self.run(["gpg", "--armor", "--export", self.signing_key], self.workdir)
        return (
            "version = 1\n[signers.bench]\n"
            f'openpgp = "{self.signing_key}"\nenvironments = ["*"]\noperations = {operations}\n'
            f"public_key = '''\n{armored.stdout.decode()}'''\n"
        )

    def repo(self, name: str, files: int | None = None, total_bytes: int | None = None) -> Path:
        """Return a generated repository (cached between runs under the work dir).

        Deterministic: the same sizes always give the same files and the same commit.
        The repository is committed, signed snapshots are configured, and the index is
        refreshed after a pause so no entry is racily clean.
        """
        files = files or self.files
        total_bytes = total_bytes or self.total_bytes
        path = self.workdir / f"{name}-{files}-{total_bytes}"
        stamp = path / ".git" / "benchmark-ready"
        if not stamp.exists():
            shutil.rmtree(path, ignore_errors=True)
            generate(path, files, total_bytes)
            self.git(path, "init", "-q", "-b", "main")
            self.git(path, "add", "-A")
            self.git(path, "commit", "-q", "-m", "generated")
            stamp.write_text("ok\n")
        self.git(path, "config", "govsnap.signingKey", self.signing_key)
        time.sleep(1.1)
        self.git(path, "update-index", "--really-refresh")
        return path

    def forget_snapshots(self, repo: Path) -> None:
        """Delete every govsnap ref and note of a kept repository (its snapshots were
        signed by an earlier run's throwaway key), this clone's record of the audit chain
        included, so that new snapshots start a new chain."""
        names = self.git(repo, "for-each-ref", "--format=%(refname)").split()
        for ref in names:
            if ref.startswith(("refs/govsnap", "refs/notes/")):
                self.git(repo, "update-ref", "-d", ref)

    def fresh_clone(self, source: Path, name: str) -> Path:
        """Return a clone of a kept repository at its first commit, for snapshots and a
        trust policy of this run's key: a policy's version only grows and only its
        signers may change it, so an earlier run's policy cannot be replaced in place."""
        path = self.clone(source, name)
        root = self.git(path, "rev-list", "--max-parents=0", "HEAD").split()[0]
        self.git(path, "reset", "-q", "--hard", root)
        return path

    def clone(self, source: Path, name: str) -> Path:
        """Return a fresh local clone of a generated repository (objects shared by hardlinks)."""
        path = self.workdir / name
        shutil.rmtree(path, ignore_errors=True)
        self.git(self.workdir, "clone", "-q", str(source), str(path))
        self.git(path, "config", "govsnap.signingKey", self.signing_key)
        time.sleep(1.1)
        self.git(path, "update-index", "--really-refresh")
        return path


def generate(path: Path, files: int, total_bytes: int, seed: int = 42) -> None:
    """Write `files` files of deterministic pseudo-random content, ~`total_bytes` in all,
    100 to a directory, with a mix of text and binary kinds."""
    rng = random.Random(seed)
    mean = max(1, total_bytes // files)
    kinds = (".py", ".txt", ".json", ".bin", ".png", ".yaml")
    for i in range(files):
        directory = path / f"d{i // 10000:02d}" / f"s{(i // 100) % 100:02d}"
        if i % 100 == 0:
            directory.mkdir(parents=True, exist_ok=True)
        size = rng.randint(0, 2 * mean)
        (directory / f"f{i:06d}{kinds[i % len(kinds)]}").write_bytes(rng.randbytes(size))


def paired(
    first: Callable[[], object],
    second: Callable[[], object],
    prepare: Callable[[], object] | None = None,
    runs: int = 5,
) -> tuple[list[float], list[float]]:
    """Return the wall times of `runs` calls of `first` and of `second`, alternating
    (first, second, first, ...), `prepare` untimed before each call: on a shared machine
    both see the same load, so their ratio means something when the figures do not."""
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(runs):
        for action, out in ((first, times[0]), (second, times[1])):
            if prepare is not None:
                prepare()
            start = time.perf_counter()
            action()
            out.append(time.perf_counter() - start)
    return times


def peak_memory(ctx: Context, args: Sequence[str], cwd: Path) -> float:
    """Return the peak resident memory in MiB of the largest process `args` runs (itself
    or a child it waits for), as getrusage reports it for a fresh watcher process."""
    watcher = (
        "import resource, subprocess, sys\n"
        "done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL)\n"
        "if done.returncode: sys.exit(done.returncode)\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    out = ctx.run([sys.executable, "-c", watcher, *args], cwd).stdout
    return int(out.decode().strip()) / 1024


def timed(
    action: Callable[[], object], prepare: Callable[[], object] | None = None, runs: int = 5
) -> list[float]:
    """Return the wall times of `runs` calls of `action`, calling `prepare` untimed before each."""
    times = []
    for _ in range(runs):
        if prepare is not None:
            prepare()
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return times


def machine() -> str:
    """Return a one-line description of this machine."""
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    git = subprocess.run(
        ["git", "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return f"{os.cpu_count()} x {cpu}; Python {sys.version.split()[0]}; {git}"


def load() -> str:
    """Return the load averages (1, 5, 15 minutes) as text."""
    return " / ".join(f"{value:.1f}" for value in os.getloadavg())


def table(results: Sequence[Comparison]) -> str:
    """Return the results as a Markdown table."""
    lines = [
        "| work | govsnap median | stock git median | stock-git equivalent "
        "| ratio | target | met |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        scale = 1000 if r.unit == "ms" else 1
        lines.append(
            f"| {r.work} | {r.govsnap_median * scale:.0f} {r.unit} "
            f"| {r.git_median * scale:.0f} {r.unit} "
            f"| {r.git_equivalent} | {r.ratio:.2f}x | {r.target} "
            f"| {'met' if r.met else 'NOT met'} |"
        )
    return "\n".join(lines)
