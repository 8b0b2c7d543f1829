"""Figures for monitoring: snapshots and the age of the newest per environment, outcomes of
the last verification and rehearsal, the last rollback, the bytes only snapshots hold, and
what the audit trail records of every operation (outcomes, durations, SLA breaches); as
JSON-ready data and in the Prometheus text format (node_exporter's textfile collector).
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from govsnap import audit, sla
from govsnap.errors import CheckFailed, EnvironmentProblem, UsageError
from govsnap.notes import Recorded
from govsnap.objects import validate_name
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
class OperationFigures:
    """What the audit trail records of one operation in one environment ("" for an
    operation that acts in none, push and fetch): outcomes, SLA breaches, the newest run.
    Read from entries anyone could have appended: shown, never a decision."""

    operation: str
    environment: str
    succeeded: int = 0
    failed: int = 0
    sla_breaches: int = 0
    last_time: int | None = None  # the newest entry's time
    last_outcome: str | None = None
    last_duration: float | None = None
    last_success: int | None = None
    last_failure: int | None = None

    def as_json(self) -> dict[str, Any]:
        """Return the figures as JSON-ready data."""
        return {
            "operation": self.operation,
            "environment": self.environment,
            "success": self.succeeded,
            "failure": self.failed,
            "sla_breaches": self.sla_breaches,
            "last_time": self.last_time,
            "last_outcome": self.last_outcome,
            "last_duration_seconds": self.last_duration,
            "last_success": self.last_success,
            "last_failure": self.last_failure,
        }


@dataclass(frozen=True)
class Stats:
    """Everything `govsnap stats` reports, measured at `now`."""

    now: int
    environments: tuple[EnvironmentStats, ...]
    unreadable: int  # snapshot refs whose tag does not parse (no environment)
    last_rollback: LastRollback | None
    snapshot_only_bytes: int
    operations: tuple[OperationFigures, ...] = ()
    sla: Mapping[str, float] = field(default_factory=dict)  # thresholds in force now
    storage_limit: int | None = None  # govsnap.storageLimit: bytes snapshots may hold
    audit_problem: str | None = None  # why the audit trail could not be read

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
            "operations": [o.as_json() for o in self.operations],
            "sla_seconds": dict(self.sla),
            "storage_limit_bytes": self.storage_limit,
            "audit_problem": self.audit_problem,
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


# The operations whose outcomes are exported for every environment holding snapshots
# even before the first run, so that a monitor sees the first failure as an increase (a
# hook run records an entry of its own only when it fails).
WATCHED = ("create", "verify", "rollback", "rehearse", "pre-push", "post-merge")
_OPERATION = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
INVALID = "(invalid)"


def _shown_name(text: str, pattern: re.Pattern[str] | None = None) -> str:
    """Return an operation or environment name from an entry as a label value: a name
    govsnap could have written, else INVALID (a forged entry cannot mint label values)."""
    if pattern is not None:
        return text if pattern.match(text) else INVALID
    try:
        return validate_name("environment", text)
    except UsageError:
        return INVALID


def operation_figures(
    entries: Sequence[audit.AuditEntry], environments: Iterable[str]
) -> tuple[OperationFigures, ...]:
    """Return the figures of each (operation, environment) the entries (newest first)
    name, and of each watched operation in each of `environments`, sorted."""
    places = list(environments)
    found: dict[tuple[str, str], OperationFigures] = {
        (operation, env): OperationFigures(operation, env)
        for operation in WATCHED
        for env in places
    }
    # Oldest first, entries of one second in the chain's order (`entries` are newest
    # first): the last entry seen of a key is its newest.
    for entry in sorted(reversed(entries), key=lambda e: e.time):
        operation = _shown_name(entry.operation, _OPERATION)
        # Each label value once per entry (two names no entry could hold are one value).
        outcome_of: dict[str, bool] = {}
        for place in entry.environments or [""]:
            env = _shown_name(place) if place else ""
            success = (entry.outcome_in(place) if place else entry.outcome) == "success"
            outcome_of[env] = outcome_of.get(env, True) and success
        for env, success in outcome_of.items():
            key = (operation, env)
            old = found.get(key) or OperationFigures(operation, env)
            found[key] = replace(
                old,
                succeeded=old.succeeded + success,
                failed=old.failed + (not success),
                sla_breaches=old.sla_breaches + entry.sla_breached,
                last_time=entry.time,
                last_outcome=entry.outcome,
                last_duration=entry.duration,
                last_success=entry.time if success else old.last_success,
                last_failure=old.last_failure if success else entry.time,
            )
    return tuple(found[key] for key in sorted(found))


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
    envs = by_environment(snaps)
    problem = None
    try:
        entries = audit.outcomes(repo)
    except CheckFailed as exc:
        entries, problem = [], exc.message
    return Stats(
        now=int(time.time()) if now is None else now,
        environments=envs,
        unreadable=sum(1 for s in snaps if s.payload is None),
        last_rollback=None if problem else last_rollback(repo),
        snapshot_only_bytes=snapshot_only_bytes(repo),
        operations=operation_figures(entries, (e.environment for e in envs)),
        sla=sla.thresholds(repo),
        storage_limit=storage_limit(repo),
        audit_problem=problem,
    )


def storage_limit(repo: Repo) -> int | None:
    """Return `govsnap.storageLimit` in bytes (git's k, m, g suffixes), None when unset."""
    limit = repo.config_int("govsnap.storageLimit", None)
    if limit is not None and limit <= 0:
        raise UsageError(f"govsnap.storageLimit must be a positive size (10g), not {limit}")
    return limit


def run(repo: Repo, prometheus: Path | None = None) -> Stats:
    """Return the repository's figures, also written to the Prometheus textfile
    `prometheus` when one is named."""
    figures = collect(repo)
    if prometheus is not None:
        write_textfile(prometheus, prometheus_text(figures))
    return figures


# --- Prometheus text format -----------------------------------------------------------------


def _label(value: str) -> str:
    # A lone surrogate (a JSON escape can make one) cannot be written as UTF-8: replaced.
    text = value.encode("utf-8", "replace").decode("utf-8")
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class _Metrics:
    """Collects samples, grouped per metric with its HELP and TYPE lines."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def gauge(
        self, name: str, help_text: str, samples: Iterable[tuple[dict[str, str], float | None]]
    ) -> None:
        self.family("gauge", name, help_text, samples)

    def counter(
        self, name: str, help_text: str, samples: Iterable[tuple[dict[str, str], float | None]]
    ) -> None:
        """Write a counter (`name` ends in _total): what the audit trail holds only grows."""
        self.family("counter", name, help_text, samples)

    def family(
        self,
        kind: str,
        name: str,
        help_text: str,
        samples: Iterable[tuple[dict[str, str], float | None]],
    ) -> None:
        rows = [(labels, value) for labels, value in samples if value is not None]
        if not rows:
            return
        self.lines += [f"# HELP govsnap_{name} {help_text}", f"# TYPE govsnap_{name} {kind}"]
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
        "snapshot_only_bytes_limit",
        "What snapshots may hold (git config govsnap.storageLimit); absent when unset.",
        [({}, stats.storage_limit)],
    )
    m.gauge(
        "unreadable_snapshots", "Snapshot refs whose tag does not parse.", [({}, stats.unreadable)]
    )
    _operation_metrics(m, stats)
    m.gauge("stats_timestamp_seconds", "When these figures were measured.", [({}, stats.now)])
    return "\n".join(m.lines) + "\n"


def _operation_metrics(m: _Metrics, stats: Stats) -> None:
    """Write what the audit trail records of each operation (see OperationFigures)."""
    ops = stats.operations

    def keyed(o: OperationFigures) -> dict[str, str]:
        return {"operation": o.operation, "environment": o.environment}

    m.counter(
        "operations_total",
        "Operations the audit trail records, by operation, environment and outcome.",
        [
            ({**keyed(o), "outcome": outcome}, count)
            for o in ops
            for outcome, count in (("success", o.succeeded), ("failure", o.failed))
        ],
    )
    m.counter(
        "operation_sla_breaches_total",
        "Operations that took longer than the SLA they were held to when they ran.",
        [(keyed(o), o.sla_breaches) for o in ops],
    )
    m.gauge(
        "operation_last_duration_seconds",
        "Duration of the newest run of each operation.",
        [(keyed(o), o.last_duration) for o in ops],
    )
    m.gauge(
        "operation_last_success",
        "1 when the newest run of each operation succeeded, else 0.",
        [(keyed(o), None if o.last_outcome is None else o.last_outcome == "success") for o in ops],
    )
    m.gauge(
        "operation_last_timestamp_seconds",
        "Time of the newest successful and failed run of each operation.",
        [
            ({**keyed(o), "outcome": outcome}, when)
            for o in ops
            for outcome, when in (("success", o.last_success), ("failure", o.last_failure))
        ],
    )
    m.gauge(
        "operation_sla_seconds",
        "The SLA each operation is held to now (git config govsnap.sla.<operation>).",
        [({"operation": name}, seconds) for name, seconds in sorted(stats.sla.items())],
    )
    m.gauge(
        "audit_readable",
        "1 when the audit trail could be read, else 0 (`govsnap doctor` says why).",
        [({}, stats.audit_problem is None)],
    )


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
