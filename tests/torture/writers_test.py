"""Eight concurrent `govsnap create` writers and a real `govsnap prune` lose nothing: every
snapshot created is present or was removed by a prune that said so (its --json output and
its audit entry), every present snapshot has its note, every create its audit entry, and
stock git finds the repository sound. tests/concurrency_test.py is the fast variant (one
process loop per writer, a deleter instead of prune)."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import Keys, git, govsnap_bin
from tests.helpers.schemas import check_json_output
from tests.torture.harness import (
    audit_entries,
    fsck_problems,
    govsnap,
    init_repo,
    snapshot_refs,
)

pytestmark = pytest.mark.torture

WRITERS = 8
PER_WRITER = int(os.environ.get("GOVSNAP_TORTURE_CREATES", "12"))
KEEP = 10


def run_govsnap(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the installed govsnap command."""
    proc = subprocess.run(
        [govsnap_bin(), "-C", str(repo), *args], capture_output=True, text=True, check=False
    )
    check_json_output(args, proc.returncode, proc.stdout, proc.stderr)
    return proc


def writer(repo: Path, number: int) -> list[str]:
    """Create PER_WRITER snapshots (a changed file each time, every third of HEAD with
    --from); return their ids."""
    ids = []
    for n in range(PER_WRITER):
        (repo / f"w{number}.txt").write_text(f"writer {number} step {n}\n")
        extra = ["--from", "HEAD"] if n % 3 == 2 else []
        env = ("staging", "production")[number % 2]
        proc = run_govsnap(repo, "create", "--json", "-e", env, "-l", f"w{number}", *extra)
        assert proc.returncode == 0, f"writer {number}: {proc.stderr}"
        ids.append(json.loads(proc.stdout)["snapshot"]["id"])
    return ids


def pruner(repo: Path, done: threading.Event) -> list[dict[str, Any]]:
    """Run `govsnap prune --keep-last KEEP` until the writers are done, then once more;
    alternate git gc (with its grace period) and --no-gc. Return each run's JSON."""
    runs = []
    n = 0
    while True:
        finished = done.is_set()
        gc = [] if n % 2 else ["--no-gc"]
        proc = run_govsnap(repo, "prune", "--keep-last", str(KEEP), "--yes", "--json", *gc)
        assert proc.returncode == 0, f"prune: {proc.stderr}"
        runs.append(json.loads(proc.stdout))
        n += 1
        if finished:
            return runs
        time.sleep(0.2)


def test_eight_writers_and_a_pruner_lose_nothing(
    tmp_path: Path, keys: Keys, torture_figures: dict[str, dict[str, Any]]
) -> None:
    started = time.monotonic()
    repo = init_repo(tmp_path / "repo", keys, {"README.md": b"hello\n"})
    done = threading.Event()
    with ThreadPoolExecutor(WRITERS + 1) as pool:
        prunes = pool.submit(pruner, repo, done)
        writers = [pool.submit(writer, repo, k) for k in range(WRITERS)]
        try:
            created = [ident for w in writers for ident in w.result()]
        finally:
            # A failed writer must stop the pruner too, or leaving the pool waits forever.
            done.set()
        runs = prunes.result()

    assert len(set(created)) == WRITERS * PER_WRITER
    removed: set[str] = set()
    for run in runs:
        planned = {d["id"] for d in run["snapshots"] if d["action"] == "remove"}
        vanished = set(run["vanished"])
        assert run["removed"] == len(planned - vanished)
        removed |= planned - vanished
    present = set(snapshot_refs(repo))
    # Every snapshot created is there, or a prune removed it and said so.
    lost = sorted(set(created) - present - removed)
    assert not lost, lost
    assert not present & removed
    assert removed <= set(created)
    # The last prune saw every snapshot: it keeps KEEP per environment.
    assert len(present) == 2 * KEEP
    # Every present snapshot has its note, as stock git lists them.
    tags = snapshot_refs(repo)
    annotated = set(git(repo, "notes", "--ref=govsnap", "list").split()[1::2])
    assert {tags[i] for i in present} <= annotated
    assert annotated <= set(tags.values()), "notes on removed snapshots remain"
    # Every create and every removal has its audit entry, on one linear chain.
    entries = audit_entries(repo)
    creates = {i for e in entries if e["operation"] == "create" for i in e["snapshots"]}
    pruned = {i for e in entries if e["operation"] == "prune" for i in e["snapshots"]}
    assert set(created) <= creates
    assert pruned == removed
    assert git(repo, "rev-list", "--count", "--merges", "refs/govsnap/audit").strip() == "0"
    # Sound as stock git and govsnap see it.
    assert fsck_problems(repo) is None
    assert govsnap(repo, "doctor").code == 0
    assert govsnap(repo, "audit", "verify").code == 0
    assert govsnap(repo, "verify", "--all", "--jobs", "1").code == 0
    torture_figures["writers"] = {
        "writers": WRITERS,
        "creates": len(created),
        "prune_runs": len(runs),
        "removed": len(removed),
        "lost": len(lost),
        "seconds": round(time.monotonic() - started, 1),
    }
