"""Figures for monitoring: snapshots and the age of the newest per environment, outcomes of
the last verification and rehearsal, the last rollback, and the bytes only snapshots hold;
as JSON-ready data and in the Prometheus text format (node_exporter's textfile collector).
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from govsnap import audit
from govsnap.errors import EnvironmentProblem, UsageError
from govsnap.notes import Recorded
from govsnap.refs import SNAPSHOT_REF_PREFIX, TRACKING_ROOT, is_snapshot_ref
from govsnap.repo import Repo
from govsnap.schemas import schema_name
from govsnap.store import Snapshot, list_snapshots

# How the bytes held only by snapshots are measured, stated in the output: the on-disk
# size (compressed, as packed or loose) of every object reachable from a snapshot ref
# (local, or fetched into refs/govsnap-remote/) and from nothing else git keeps alive.
BYTES_METHOD = (
    "git rev-list --objects --disk-usage <snapshot refs> --not --all --reflog "
    "--indexed-objects (other refs excluding snapshot refs)"
)


@dataclass(frozen=True)
class Outcomes:
    """Snapshots by the verdict of their last recorded check (verification or rehearsal)."""

    passed: int = 0
    failed: int = 0
    never: int = 0
    last_pass: float | None = None  # epoch seconds of the newest passing result
    last_fail: float | None = None

    def as_json(self) -> dict[str, Any]:
        """Return the counts and times as JSON-ready data."""
        return {
            "pass": self.passed,
            "fail": self.failed,
            "never": self.never,
            "last_pass": self.last_pass,
            "last_fail": self.last_fail,
        }


def outcomes(results: Iterable[Recorded | None]) -> Outcomes:
    """Return the outcomes of these note results (None: never checked)."""
    passed = failed = never = 0
    last: dict[str, float | None] = {"pass": None, "fail": None}
    for result in results:
        verdict = None if result is None else result.verdict
        if result is None or verdict is None:
            never += 1
            continue
        if verdict == "pass":
            passed += 1
        else:
            failed += 1
        when = result.time
        previous = last[verdict]
        if when is not None and (previous is None or when > previous):
            last[verdict] = when
    return Outcomes(passed, failed, never, last["pass"], last["fail"])


@dataclass(frozen=True)
class EnvironmentStats:
    """The figures of one environment."""

    environment: str
    snapshots: int
    newest: int  # creation time of the newest snapshot (signed tagger time)
    verification: Outcomes
    rehearsal: Outcomes


@dataclass(frozen=True)
class LastRollback:
    """The newest rollback in the audit trail."""

    time: int
    seconds: float
    result: str
    snapshot: str | None


@dataclass(frozen=True)
class Stats:
    """Everything `govsnap stats` reports, measured at `now`."""

    now: int
    environments: tuple[EnvironmentStats, ...]
    unreadable: int  # snapshot refs whose tag does not parse (no environment)
    last_rollback: LastRollback | None
    snapshot_only_bytes: int

    def as_json(self) -> dict[str, Any]:
        """Return the figures as JSON-ready data."""
        rollback = self.last_rollback
        return {
            "schema": schema_name("stats"),
            "now": self.now,
            "snapshots": sum(e.snapshots for e in self.environments),
            "unreadable_snapshots": self.unreadable,
            "environments": {
                e.environment: {
                    "snapshots": e.snapshots,
                    "newest": e.newest,
                    "newest_age_seconds": self.now - e.newest,
                    "verification": e.verification.as_json(),
                    "rehearsal": e.rehearsal.as_json(),
                }
                for e in self.environments
            },
            "last_rollback": None
            if rollback is None
            else {
                "time": rollback.time,
                "duration_seconds": rollback.seconds,
                "result": rollback.result,
                "snapshot": rollback.snapshot,
            },
            "snapshot_only_bytes": self.snapshot_only_bytes,
            "snapshot_only_bytes_method": BYTES_METHOD,
        }


def by_environment(snaps: Sequence[Snapshot]) -> tuple[EnvironmentStats, ...]:
    """Return the figures of each environment (readable snapshots only), sorted by name."""
    groups: dict[str, list[Snapshot]] = {}
    for snap in snaps:
        if snap.payload is not None:
            groups.setdefault(snap.environment, []).append(snap)
    return tuple(
        EnvironmentStats(
            environment=env,
            snapshots=len(group),
            newest=max(s.created for s in group),
            verification=outcomes(s.note_view.verification for s in group),
            rehearsal=outcomes(s.note_view.rehearsal for s in group),
        )
        for env, group in sorted(groups.items())
    )


def last_rollback(repo: Repo) -> LastRollback | None:
    """Return the newest rollback the audit trail records (all joined copies of it)."""
    entries = audit.entries_of(repo, "rollback")
    if not entries:
        return None
    newest = max(entries, key=lambda e: e.time)
    duration = newest.body.get("duration_seconds")
    return LastRollback(
        newest.time,
        float(duration) if isinstance(duration, int | float) else 0.0,
        newest.result,
        newest.snapshots[0] if newest.snapshots else None,
    )


def snapshot_only_bytes(repo: Repo) -> int:
    """Return the on-disk bytes of the objects that only snapshot refs keep (see
    BYTES_METHOD): what deleting every snapshot ref would let `git gc` free."""
    tips = sorted(
        {str(ref.target) for ref in repo.git.references.iterator() if is_snapshot_ref(ref.name)}
    )
    if not tips:
        return 0
    out = repo.git_cmd(
        "rev-list",
        "--objects",
        "--disk-usage",
        "--stdin",
        "--not",
        f"--exclude={SNAPSHOT_REF_PREFIX}*",
        f"--exclude={TRACKING_ROOT}*/snapshots/*",
        "--all",
        "--reflog",
        "--indexed-objects",
        input="".join(f"{tip}\n" for tip in tips).encode(),
    )
    return int(out.stdout.decode().strip() or 0)


def collect(repo: Repo, now: int | None = None) -> Stats:
    """Return the repository's figures, ages measured at `now` (default: the clock)."""
    snaps = list_snapshots(repo)
    return Stats(
        now=int(time.time()) if now is None else now,
        environments=by_environment(snaps),
        unreadable=sum(1 for s in snaps if s.payload is None),
        last_rollback=last_rollback(repo),
        snapshot_only_bytes=snapshot_only_bytes(repo),
    )


def run(repo: Repo, prometheus: Path | None = None) -> Stats:
    """Return the repository's figures, also written to the Prometheus textfile
    `prometheus` when one is named."""
    figures = collect(repo)
    if prometheus is not None:
        write_textfile(prometheus, prometheus_text(figures))
    return figures


# --- Prometheus text format -----------------------------------------------------------------


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class _Metrics:
    """Collects samples, grouped per metric with its HELP and TYPE lines."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def gauge(
        self, name: str, help_text: str, samples: Iterable[tuple[dict[str, str], float | None]]
    ) -> None:
        rows = [(labels, value) for labels, value in samples if value is not None]
        if not rows:
            return
        self.lines += [f"# HELP govsnap_{name} {help_text}", f"# TYPE govsnap_{name} gauge"]
        for labels, value in rows:
            inner = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
            braces = f"{{{inner}}}" if inner else ""
            self.lines.append(f"govsnap_{name}{braces} {_number(value)}")


def prometheus_text(stats: Stats) -> str:
    """Return the figures in the Prometheus text exposition format (version 0.0.4)."""
    m = _Metrics()
    envs = stats.environments

    def per_env(
        pick: Callable[[EnvironmentStats], float],
    ) -> list[tuple[dict[str, str], float | None]]:
        return [({"environment": e.environment}, pick(e)) for e in envs]

    m.gauge("snapshots", "Snapshots held, per environment.", per_env(lambda e: e.snapshots))
    m.gauge(
        "newest_snapshot_timestamp_seconds",
        "Creation time of the newest snapshot, per environment.",
        per_env(lambda e: e.newest),
    )
    m.gauge(
        "newest_snapshot_age_seconds",
        "Age of the newest snapshot when this file was written, per environment.",
        per_env(lambda e: stats.now - e.newest),
    )
    for kind in ("verification", "rehearsal"):
        counts: list[tuple[dict[str, str], float | None]] = []
        times: list[tuple[dict[str, str], float | None]] = []
        for e in envs:
            got: Outcomes = getattr(e, kind)
            for result, count in (("pass", got.passed), ("fail", got.failed), ("never", got.never)):
                counts.append(({"environment": e.environment, "result": result}, count))
            times.append(({"environment": e.environment, "result": "pass"}, got.last_pass))
            times.append(({"environment": e.environment, "result": "fail"}, got.last_fail))
        m.gauge(
            f"{kind}_snapshots",
            f"Snapshots by the verdict of their last recorded {kind} (never: none recorded).",
            counts,
        )
        m.gauge(
            f"last_{kind}_timestamp_seconds",
            f"Time of the newest passing and failing {kind} recorded in the notes.",
            times,
        )
    rollback = stats.last_rollback
    if rollback is not None:
        m.gauge(
            "last_rollback_duration_seconds",
            "Duration of the newest rollback in the audit trail.",
            [({}, rollback.seconds)],
        )
        m.gauge(
            "last_rollback_timestamp_seconds",
            "Time of the newest rollback in the audit trail.",
            [({}, rollback.time)],
        )
        m.gauge(
            "last_rollback_success",
            "1 when the newest rollback in the audit trail succeeded, else 0.",
            [({}, 1 if rollback.result == "ok" else 0)],
        )
    m.gauge(
        "snapshot_only_bytes",
        "On-disk bytes of objects reachable from snapshot refs and from no other ref, "
        "reflog or the index.",
        [({}, stats.snapshot_only_bytes)],
    )
    m.gauge(
        "unreadable_snapshots", "Snapshot refs whose tag does not parse.", [({}, stats.unreadable)]
    )
    m.gauge("stats_timestamp_seconds", "When these figures were measured.", [({}, stats.now)])
    return "\n".join(m.lines) + "\n"


def write_textfile(path: Path, text: str) -> None:
    """Write `text` to `path` atomically: a temporary file in the same directory, flushed,
    then renamed over it, so node_exporter never reads half a file."""
    folder = path.parent
    if path.is_dir():
        raise UsageError(f"cannot write {path}: it is a directory")
    if not folder.is_dir():
        raise UsageError(f"cannot write {path}: {folder} is not a directory")
    try:
        handle, temp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise EnvironmentProblem(f"cannot write {path}: {exc.strerror}") from exc
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temp, 0o644)  # node_exporter often runs as another user
        os.replace(temp, path)
    except OSError as exc:
        Path(temp).unlink(missing_ok=True)
        raise EnvironmentProblem(f"cannot write {path}: {exc.strerror}") from exc
