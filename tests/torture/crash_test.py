"""Crash trials: govsnap killed with SIGKILL at seeded random points during create,
rollback, prune, a fetch's notes merge and an audit append (pin/unpin); after each kill
the repository must pass every check in harness.check_consistent, and what the operation
promises must hold (nothing lost, an interrupted rollback completed or undone).

GOVSNAP_TORTURE_TRIALS (default 200) is the total over the five operations;
GOVSNAP_TORTURE_SEED fixes the run's seed; GOVSNAP_TORTURE_REPLAY=<operation>:<seed>
runs the one trial a failure message names.
"""

from __future__ import annotations

import abc
import random
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import Keys, git
from tests.torture.harness import (
    State,
    Trial,
    audit_entries,
    base_seed,
    check_consistent,
    copy_repo,
    govsnap,
    init_repo,
    ok,
    replay_seed,
    run_and_kill,
    snapshot_refs,
    state_diff,
    tree_state,
    trial_seed,
    trials_per_operation,
    worktree_state,
    write_tree,
)

pytestmark = pytest.mark.torture

OPERATIONS = ("create", "rollback", "prune", "note-merge", "audit-append")
# Failed trials whose repositories are kept for inspection.
KEEP_FAILED = 3


def files(count: int, rng: random.Random, tag: str) -> dict[str, bytes]:
    """Return `count` files in a few directories, with contents depending on `tag`."""
    out = {}
    for n in range(count):
        size = rng.choice((10, 200, 5000))
        out[f"d{n % 7}/sub{n % 3}/f{n}.txt"] = (f"{tag} {n}\n" * (size // 8 + 1)).encode()
    return out


# --- scenarios --------------------------------------------------------------------------


@dataclass
class Scenario(abc.ABC):
    """One operation under test: a template repository built once, and per trial the
    command to kill and the checks proper to the operation."""

    name: str
    root: Path
    keys: Keys
    template: Path = field(init=False)
    data: dict[str, Any] = field(default_factory=dict)

    @abc.abstractmethod
    def build(self) -> None:
        """Build the template repository (self.template) once."""

    def prepare(self, trial_dir: Path, rng: random.Random) -> Path:
        """Return the repository one trial works on (a copy of the template)."""
        return copy_repo(self.template, trial_dir / "repo")

    @abc.abstractmethod
    def command(self, repo: Path, rng: random.Random) -> list[str]:
        """Return the govsnap arguments to run and kill."""

    def before(self, repo: Path) -> dict[str, Any]:
        """Return what the checks compare with after the kill."""
        return {"refs": snapshot_refs(repo), "audit": len(audit_entries(repo))}

    @abc.abstractmethod
    def after(self, repo: Path, seen: dict[str, Any], trial: Trial, code: int | None) -> None:
        """Check the operation's own promises after the kill (and the common checks)."""


class CreateScenario(Scenario):
    """`govsnap create` of a changed working tree, or of HEAD with --from."""

    def build(self) -> None:
        rng = random.Random(1)
        self.template = init_repo(self.root / "create-template", self.keys, files(60, rng, "v1"))
        for n in range(2):
            ok(self.template, "create", "-m", f"base {n}")

    def prepare(self, trial_dir: Path, rng: random.Random) -> Path:
        repo = super().prepare(trial_dir, rng)
        names = sorted(worktree_state(repo))
        for name in rng.sample(names, 5):
            (repo / name).write_bytes(f"changed {rng.random()}\n".encode())
        (repo / names[0]).unlink()
        write_tree(repo, {f"new/u{rng.randrange(1000)}.bin": rng.randbytes(3000)})
        return repo

    def command(self, repo: Path, rng: random.Random) -> list[str]:
        extra = ["--from", "HEAD"] if rng.random() < 0.25 else []
        self.data["from_head"] = bool(extra)
        return ["create", "-m", "torture", "--label", "trial", *extra]

    def before(self, repo: Path) -> dict[str, Any]:
        seen = super().before(repo)
        seen["index"] = (repo / ".git" / "index").read_bytes()
        seen["worktree"] = worktree_state(repo)
        seen["head_tree"] = git(repo, "rev-parse", "HEAD^{tree}").strip()
        return seen

    def after(self, repo: Path, seen: dict[str, Any], trial: Trial, code: int | None) -> None:
        trial.check(
            (repo / ".git" / "index").read_bytes() == seen["index"], "create changed .git/index"
        )
        trial.check(worktree_state(repo) == seen["worktree"], "create changed the working tree")
        new = set(snapshot_refs(repo)) - set(seen["refs"])
        trial.check(len(new) <= 1, f"{len(new)} new snapshots")
        trial.check(code is None or len(new) == 1, "create exited 0 but left no snapshot")
        check_consistent(repo, trial)
        survivors = set(snapshot_refs(repo)) - set(seen["refs"])
        for ident in survivors:
            shown = ok(repo, "show", ident, "--json").json()
            tree = shown["payload"]["tree"]
            want = (
                tree_state(repo, seen["head_tree"]) if self.data["from_head"] else seen["worktree"]
            )
            trial.check(
                tree_state(repo, tree) == want,
                f"snapshot {ident} does not hold the state: "
                f"{state_diff(tree_state(repo, tree), want)}",
            )
        audited = {
            i for e in audit_entries(repo) if e["operation"] == "create" for i in e["snapshots"]
        }
        trial.check(
            survivors <= audited, f"snapshot without an audit entry: {sorted(survivors - audited)}"
        )
        trial.check(govsnap(repo, "create", "-m", "after").code == 0, "create fails afterwards")


class RollbackScenario(Scenario):
    """`govsnap rollback` from state B (changed, staged, untracked, ignored files, a
    directory turned file and back) to a snapshot of state A."""

    def build(self) -> None:
        rng = random.Random(2)
        base = files(150, rng, "base")
        base[".gitignore"] = b"*.log\n"
        base["tool.sh"] = b"#!/bin/sh\necho v1\n"
        repo = init_repo(self.root / "rollback-template", self.keys, base)
        (repo / "tool.sh").chmod(0o755)
        git(repo, "commit", "-q", "-am", "executable")
        names = sorted(n for n in base if n.startswith("d"))
        # State A, the rollback's target.
        write_tree(repo, {n: b"state A\n" + base[n] for n in names[:60]})
        for name in names[60:65]:
            (repo / name).unlink()
        write_tree(repo, {"a-only/x.txt": b"only in A\n", "link": b"->d0/sub0/f0.txt"})
        self.data["A"] = worktree_state(repo)
        target = ok(repo, "create", "-m", "state A", "--json").json()
        self.data["target"] = target["snapshot"]["id"]
        # State B, the one the rollback starts from.
        write_tree(repo, {n: b"state B\n" + base[n] for n in names[30:120]})
        shutil.rmtree(repo / "a-only")
        write_tree(repo, {"a-only": b"a file where A has a directory\n"})
        (repo / "link").unlink()
        write_tree(repo, {"link/inside.txt": b"a directory where A has a symlink\n"})
        write_tree(repo, {f"b-only/n{n}.txt": b"untracked in B\n" for n in range(20)})
        write_tree(repo, {"debug.log": b"ignored, must survive everything\n"})
        git(repo, "add", names[100], "b-only/n0.txt")
        self.data["B"] = worktree_state(repo)
        self.data["B_index"] = git(repo, "write-tree").strip()
        self.data["ignored"] = {"debug.log": self.data["B"]["debug.log"]}
        self.template = repo

    def command(self, repo: Path, rng: random.Random) -> list[str]:
        return ["rollback", self.data["target"], "--yes"]

    def before(self, repo: Path) -> dict[str, Any]:
        seen = super().before(repo)
        seen["head"] = git(repo, "rev-parse", "HEAD").strip()
        return seen

    def after(self, repo: Path, seen: dict[str, Any], trial: Trial, code: int | None) -> None:
        check_consistent(repo, trial)
        trial.check(git(repo, "rev-parse", "HEAD").strip() == seen["head"], "HEAD moved")
        new = set(snapshot_refs(repo)) - set(seen["refs"])
        safety = [
            i
            for i in new
            if ok(repo, "show", i, "--json").json()["payload"]["trigger"] == "pre-rollback"
        ]
        trial.check(len(safety) <= 1, f"{len(safety)} safety snapshots")
        a_state = {**self.data["A"], **self.data["ignored"]}
        b_state = self.data["B"]
        if not safety:
            # Nothing may be written before the safety snapshot exists.
            have = worktree_state(repo)
            trial.check(
                have == b_state, f"changed without a safety snapshot: {state_diff(have, b_state)}"
            )
        else:
            shown = ok(repo, "show", safety[0], "--json").json()
            kept = {k: v for k, v in b_state.items() if k not in self.data["ignored"]}
            have = tree_state(repo, shown["payload"]["tree"])
            trial.check(have == kept, f"safety snapshot lacks state B: {state_diff(have, kept)}")
            # Undo straight away, on a copy.
            undo = copy_repo(repo, repo.parent / "undo")
            self._undo(undo, safety[0], b_state, trial, "undo")
        # Complete the rollback, then undo it from the first safety snapshot there is.
        done = govsnap(repo, "rollback", self.data["target"], "--yes", "--json")
        trial.check(done.code == 0, f"re-run rollback exited {done.code}: {done.err.strip()}")
        have = worktree_state(repo)
        trial.check(have == a_state, f"completed rollback: {state_diff(have, a_state)}")
        first = safety[0] if safety else done.json()["safety_snapshot"]
        self._undo(repo, first, b_state, trial, "undo after completing")

    def _undo(self, repo: Path, safety: str, want: State, trial: Trial, what: str) -> None:
        result = govsnap(repo, "rollback", safety, "--yes")
        trial.check(
            result.code == 0, f"{what}: rollback {safety} exited {result.code}: {result.err}"
        )
        have = worktree_state(repo)
        trial.check(have == want, f"{what}: files lost: {state_diff(have, want)}")
        index = git(repo, "write-tree").strip()
        trial.check(index == self.data["B_index"], f"{what}: the index is not restored")


class PruneScenario(Scenario):
    """`govsnap prune --keep-last 4` of 24 snapshots in two environments, one pinned,
    with git gc (grace period), --no-gc or --now."""

    def build(self) -> None:
        repo = init_repo(self.root / "prune-template", self.keys, files(30, random.Random(3), "p"))
        for n in range(24):
            write_tree(repo, {"counter.txt": f"{n}\n".encode()})
            env = ("staging", "production")[n % 2]
            ok(repo, "create", "-e", env, "-m", f"snapshot {n}")
        ids = list(snapshot_refs(repo))
        ok(repo, "pin", ids[0])
        plan = ok(repo, "prune", "--keep-last", "4", "--dry-run", "--json").json()
        self.data["keep"] = {d["id"] for d in plan["snapshots"] if d["action"] == "keep"}
        self.data["remove"] = {d["id"] for d in plan["snapshots"] if d["action"] == "remove"}
        assert len(self.data["remove"]) >= 10
        self.template = repo

    def command(self, repo: Path, rng: random.Random) -> list[str]:
        gc = rng.choice(([], ["--no-gc"], ["--now"]))
        return ["prune", "--keep-last", "4", "--yes", "--json", *gc]

    def after(self, repo: Path, seen: dict[str, Any], trial: Trial, code: int | None) -> None:
        present = set(snapshot_refs(repo))
        lost = self.data["keep"] - present
        trial.check(not lost, f"kept snapshots lost: {sorted(lost)}")
        gone = set(seen["refs"]) - present
        trial.check(
            gone <= self.data["remove"],
            f"removed outside the plan: {sorted(gone - self.data['remove'])}",
        )
        check_consistent(repo, trial)
        recorded = {
            i
            for e in audit_entries(repo)
            if e["operation"] in ("prune", "doctor")
            for i in e.get("snapshots", [])
        }
        trial.check(gone <= recorded, f"removed without an audit entry: {sorted(gone - recorded)}")
        ok(repo, "prune", "--keep-last", "4", "--yes", "--no-gc")
        trial.check(set(snapshot_refs(repo)) == self.data["keep"], "re-run prune did not finish")


class NoteMergeScenario(Scenario):
    """`govsnap fetch` of a remote whose notes (a pin, verification results) and audit
    trail diverged from ours, with new snapshots to adopt."""

    def build(self) -> None:
        root = self.root / "merge-template"
        root.mkdir()
        upstream = init_repo(root / "upstream", self.keys, files(20, random.Random(4), "u"))
        git(root, "init", "-q", "--bare", "origin.git")
        git(upstream, "remote", "add", "origin", str(root / "origin.git"))
        git(upstream, "push", "-q", "origin", "main")
        shared = [
            ok(upstream, "create", "-m", f"shared {n}", "--json").json()["snapshot"]["id"]
            for n in range(2)
        ]
        ok(upstream, "push", "origin")
        git(root, "clone", "-q", str(root / "origin.git"), "local")
        local = root / "local"
        git(local, "config", "govsnap.signingKey", self.keys.trusted)
        git(local, "config", "govsnap.staleLockSeconds", "0")
        ok(local, "fetch", "origin")
        # Diverge: upstream adds snapshots, verifies and pins; local pins and creates.
        theirs = [
            ok(upstream, "create", "-m", f"new {n}", "--json").json()["snapshot"]["id"]
            for n in range(3)
        ]
        ok(upstream, "verify", "--all", "--jobs", "1")
        ok(upstream, "pin", shared[0])
        ok(upstream, "push", "origin")
        ok(local, "pin", shared[1])
        ok(local, "create", "-m", "local only")
        self.data.update(shared=shared, theirs=theirs)
        self.template = root

    def prepare(self, trial_dir: Path, rng: random.Random) -> Path:
        root = copy_repo(self.template, trial_dir / "merge")
        git(root / "local", "remote", "set-url", "origin", str(root / "origin.git"))
        return root / "local"

    def command(self, repo: Path, rng: random.Random) -> list[str]:
        return ["fetch", "origin"]

    def after(self, repo: Path, seen: dict[str, Any], trial: Trial, code: int | None) -> None:
        # Before any repair: a snapshot the killed fetch added came with its note.
        noted = {
            line.split()[1]
            for line in git(repo, "notes", "--ref=govsnap", "list").split("\n")
            if line
        }
        bare = {i for i, tag in snapshot_refs(repo).items() if tag not in noted}
        trial.check(not bare, f"snapshots added without their note: {sorted(bare)}")
        check_consistent(repo, trial)
        again = govsnap(repo, "fetch", "origin", "--json")
        trial.check(again.code == 0, f"re-run fetch exited {again.code}: {again.err.strip()}")
        present = set(snapshot_refs(repo))
        trial.check(set(seen["refs"]) <= present, "a local snapshot was lost")
        missing = set(self.data["theirs"]) - present
        trial.check(not missing, f"remote snapshots not adopted: {sorted(missing)}")
        listed = {s["id"]: s for s in ok(repo, "list", "--json").json()["snapshots"]}
        for ident in self.data["shared"]:
            trial.check(
                listed[ident]["note"].get("pinned") is True, f"pin of {ident} lost in the merge"
            )
        for ident in self.data["theirs"]:
            note = ok(repo, "show", ident, "--json").json()
            trial.check("verification" in note["note"], f"remote verification of {ident} lost")
        trial.check(govsnap(repo, "doctor").code == 0, "doctor not clean after the re-run")


class AuditScenario(Scenario):
    """`govsnap pin` / `unpin`: a note update, then a signed audit append."""

    def build(self) -> None:
        repo = init_repo(self.root / "audit-template", self.keys, files(10, random.Random(5), "a"))
        ids = [
            ok(repo, "create", "-m", f"s{n}", "--json").json()["snapshot"]["id"] for n in range(3)
        ]
        ok(repo, "pin", ids[0])
        self.data["ids"] = ids
        self.template = repo

    def command(self, repo: Path, rng: random.Random) -> list[str]:
        ids = self.data["ids"]
        op = rng.choice((["pin", ids[1]], ["unpin", ids[0]]))
        self.data["op"] = op
        return op

    def after(self, repo: Path, seen: dict[str, Any], trial: Trial, code: int | None) -> None:
        count = len(audit_entries(repo))
        trial.check(
            seen["audit"] <= count <= seen["audit"] + 1, f"audit {seen['audit']} -> {count}"
        )
        check_consistent(repo, trial)
        op, ident = self.data["op"]
        ok(repo, op, ident)
        listed = {s["id"]: s for s in ok(repo, "list", "--json").json()["snapshots"]}
        trial.check(listed[ident]["note"].get("pinned") is (op == "pin"), f"{op} not in effect")
        logged = [
            e for e in audit_entries(repo) if e["operation"] == op and ident in e["snapshots"]
        ]
        trial.check(bool(logged), f"{op} {ident} has no audit entry")


SCENARIOS: dict[str, Callable[..., Scenario]] = {
    "create": CreateScenario,
    "rollback": RollbackScenario,
    "prune": PruneScenario,
    "note-merge": NoteMergeScenario,
    "audit-append": AuditScenario,
}


# --- the trial loop -----------------------------------------------------------------------


def run_trial(
    scenario: Scenario, seed: int, window: float | None, workdir: Path
) -> tuple[Trial, float]:
    """Run one seeded trial in `workdir`: prepare, kill at a random point in the first
    1.1 x `window` seconds (None: let it finish), check. Return the trial and how long
    the command ran."""
    rng = random.Random(seed)
    trial = Trial(scenario.name, seed)
    trial.delay = rng.uniform(0, window * 1.1) if window is not None else 0.0
    trial.mode = rng.choice(("process", "group"))
    repo = scenario.prepare(workdir, rng)
    args = scenario.command(repo, rng)
    seen = scenario.before(repo)
    outcome = run_and_kill(repo, args, trial.delay if window is not None else None, trial.mode)
    trial.killed = outcome.killed
    if not outcome.killed:
        trial.check(outcome.code == 0, f"exited {outcome.code}: {outcome.err.strip()}")
    try:
        scenario.after(repo, seen, trial, None if outcome.killed else outcome.code)
    except AssertionError as exc:
        trial.problems.append(f"check crashed: {exc}")
    return trial, outcome.seconds


@pytest.mark.parametrize("operation", OPERATIONS)
def test_crash_trials(
    operation: str,
    keys: Keys,
    tmp_path: Path,
    torture_figures: dict[str, dict[str, Any]],
) -> None:
    scenario = SCENARIOS[operation](operation, tmp_path, keys)
    started = time.monotonic()
    scenario.build()
    # Calibration: a run to the end (checked like the others) measures the window the
    # kills fall into.
    calibration = tmp_path / "calibration"
    calibration.mkdir()
    probe, window = run_trial(scenario, 0, None, calibration)
    assert not probe.problems, probe.describe()

    replay = replay_seed(operation)
    base = base_seed()
    if replay is not None:
        seeds = [replay]
    else:
        seeds = [
            trial_seed(base, operation, n) for n in range(trials_per_operation(len(OPERATIONS)))
        ]
    failed: list[Trial] = []
    killed = 0
    repairs: Counter[str] = Counter()
    for n, seed in enumerate(seeds):
        workdir = tmp_path / f"trial{n}"
        workdir.mkdir()
        trial, _ = run_trial(scenario, seed, window, workdir)
        killed += trial.killed
        repairs.update(set(trial.repairs))
        if trial.problems:
            failed.append(trial)
        if not trial.problems or len(failed) > KEEP_FAILED:
            shutil.rmtree(workdir, ignore_errors=True)
    torture_figures[operation] = {
        "seed": base,
        "trials": len(seeds),
        "killed": killed,
        "failed": len(failed),
        "window_ms": round(window * 1000, 1),
        "doctor_repaired": dict(sorted(repairs.items())),
        "seconds": round(time.monotonic() - started, 1),
    }
    summary = f"{len(failed)} of {len(seeds)} trials failed (run seed {base}):\n"
    assert not failed, summary + "\n".join(t.describe() for t in failed[:10])
