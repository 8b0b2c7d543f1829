"""The evidence report: what a reviewer asks of a repository's promotions, gathered in
one read-only pass. Per environment, the snapshots with their trigger, the signer
verification finds now, and the history of verifications and rehearsals; rollbacks with
their safety snapshots; the audit trail with each entry's signature standing; the trust
policy in force and its history; what the retention policy removes next.

What decides is checked here, not copied: the signer and verdict of each snapshot come
from verifying it now (writes nothing), and the history of verdicts, recovery times and
rollbacks comes from audit entries, each shown with whether its signature holds. Notes
are shown only as what they claim. The page itself is report_html.py's.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from govsnap import __version__, audit
from govsnap.audit import AuditEntry, AuditReport
from govsnap.errors import GovsnapError
from govsnap.objects import ISO_UTC, SignatureKind, utc
from govsnap.prune import Decision, PruneOptions, plan
from govsnap.repo import Repo
from govsnap.schemas import schema_name
from govsnap.store import Snapshot, list_snapshots
from govsnap.trust import (
    PolicyVersion,
    TrustPolicy,
    configured_anchor,
    history,
    load_policy,
    missing_policy,
)
from govsnap.verify import SnapshotVerification, verify_snapshots

# Where an audit entry's signature stands: good (verified against the trust policy's
# keys, or the keyring without one), bad (a problem `audit verify` names), unsigned, or
# unchecked (the trust policy could not be loaded, so nothing was checked against it).
Standing = Literal["good", "bad", "unsigned", "unchecked"]
Verdict = Literal["pass", "fail", "unknown"]


def _iso(epoch: float | None) -> str | None:
    return None if epoch is None else utc(int(epoch), ISO_UTC)


@dataclass(frozen=True)
class Recorded:
    """One past verification or rehearsal of a snapshot, as a signed audit entry says."""

    time: int
    verdict: Verdict
    actor: str
    commit: str
    standing: Standing
    detail: str = ""
    rollback_seconds: float | None = None  # rehearsals: the recovery time measured
    rto_seconds: float | None = None  # rehearsals: the objective it was held to

    def as_json(self) -> dict[str, Any]:
        """Return the record as JSON-ready data."""
        return {
            "time": _iso(self.time),
            "epoch": self.time,
            "verdict": self.verdict,
            "actor": self.actor,
            "audit_commit": self.commit,
            "signature": self.standing,
            "detail": self.detail,
            "rollback_seconds": self.rollback_seconds,
            "rto_seconds": self.rto_seconds,
        }


@dataclass(frozen=True)
class SnapshotEvidence:
    """One snapshot: what it signs, what verifying it now finds, and its history."""

    snapshot: Snapshot
    now: SnapshotVerification | None  # None when it could not be checked (see unchecked)
    signer_name: str | None  # the policy's name for the verified signer
    verifications: tuple[Recorded, ...]
    rehearsals: tuple[Recorded, ...]
    unchecked: str = ""

    def as_json(self) -> dict[str, Any]:
        """Return the snapshot's evidence as JSON-ready data."""
        snap, payload = self.snapshot, self.snapshot.payload
        note = snap.note_view
        claims = {
            "verification": note.verification.raw if note.verification else None,
            "rehearsal": note.rehearsal.raw if note.rehearsal else None,
            "signer": note.claimed_signer,
        }
        now = self.now
        return {
            "id": snap.id,
            "created": snap.created_iso if payload else None,
            "epoch": snap.created if payload else None,
            "environment": snap.environment if payload else None,
            "trigger": payload.trigger if payload else None,
            "labels": list(snap.labels),
            "summary": payload.summary if payload else None,
            "source": None
            if payload is None or payload.source is None
            else {"ref": payload.source.ref, "commit": payload.source.commit},
            "safety": snap.safety,
            "signature_kind": snap.signature_kind,
            "verification_now": None
            if now is None
            else {
                "verdict": now.verdict,
                "signer": now.signer,
                "signer_name": self.signer_name,
                "failures": now.failures(),
            },
            "unchecked": self.unchecked or None,
            "verifications": [r.as_json() for r in self.verifications],
            "rehearsals": [r.as_json() for r in self.rehearsals],
            "note_claims": claims,
        }


@dataclass(frozen=True)
class EnvironmentEvidence:
    """The snapshots of one environment, newest first."""

    name: str
    snapshots: tuple[SnapshotEvidence, ...]

    @property
    def failing(self) -> int:
        """Return how many of the snapshots fail verification now."""
        return sum(1 for s in self.snapshots if s.now is not None and not s.now.ok)

    @property
    def rehearsals(self) -> list[Recorded]:
        """Return every recorded rehearsal of the environment's snapshots, oldest first."""
        return sorted((r for s in self.snapshots for r in s.rehearsals), key=lambda r: r.time)

    def as_json(self) -> dict[str, Any]:
        """Return the environment's evidence as JSON-ready data."""
        return {"name": self.name, "snapshots": [s.as_json() for s in self.snapshots]}


@dataclass(frozen=True)
class RollbackEvidence:
    """One rollback the audit trail records, with the safety snapshot that undoes it."""

    entry: AuditEntry
    standing: Standing
    environment: str | None  # the target's, when the target is still held

    @property
    def target(self) -> str | None:
        """Return the snapshot rolled back to."""
        return self.entry.snapshots[0] if self.entry.snapshots else None

    @property
    def safety(self) -> str | None:
        """Return the safety snapshot taken before it, if one was."""
        return self.entry.snapshots[1] if len(self.entry.snapshots) > 1 else None

    def as_json(self) -> dict[str, Any]:
        """Return the rollback as JSON-ready data."""
        duration = self.entry.body.get("duration_seconds")
        return {
            "time": _iso(self.entry.time),
            "epoch": self.entry.time,
            "actor": self.entry.actor,
            "target": self.target,
            "safety_snapshot": self.safety,
            "environment": self.environment,
            "result": self.entry.result,
            "duration_seconds": duration if isinstance(duration, int | float) else None,
            "audit_commit": self.entry.oid,
            "signature": self.standing,
        }


@dataclass(frozen=True)
class AuditEvidence:
    """One audit entry, its signature's standing, and what `audit verify` found at it."""

    entry: AuditEntry
    standing: Standing
    problems: tuple[str, ...]
    gap: str | None  # what a recorded gap lost (doctor --fix), else None

    @property
    def flagged(self) -> bool:
        """Return True for an entry a reviewer must look at: unsigned, badly signed, with
        a problem, or recording a gap."""
        return self.standing in ("bad", "unsigned") or bool(self.problems) or bool(self.gap)

    def as_json(self) -> dict[str, Any]:
        """Return the entry as JSON-ready data."""
        e = self.entry
        return {
            "commit": e.oid,
            "time": _iso(e.time),
            "epoch": e.time,
            "operation": e.operation,
            "summary": e.summary,
            "actor": e.actor,
            "result": e.result,
            "signature_kind": e.signature_kind,
            "signature": self.standing,
            "signing_error": e.body.get("signing_error"),
            "problems": list(self.problems),
            "gap": self.gap,
        }


@dataclass(frozen=True)
class TrustEvidence:
    """The trust policy in force (or why there is none) and its versions."""

    source: str
    policy: TrustPolicy | None
    error: str | None
    versions: tuple[PolicyVersion, ...]
    anchor_pinned: bool  # govsnap.trustAnchor or trustAnchorCommit is set (else first use)

    def as_json(self) -> dict[str, Any]:
        """Return the policy and its history as JSON-ready data."""
        policy = self.policy
        return {
            "source": self.source,
            "present": policy is not None,
            "error": self.error,
            "version": None if policy is None else policy.version,
            "commit": None if policy is None else policy.commit,
            "anchor": None if policy is None else policy.anchor,
            "anchor_pinned": self.anchor_pinned,
            "policy_threshold": None if policy is None else policy.threshold,
            "signers": [] if policy is None else [s.as_json() for s in policy.signers],
            "history": [
                {
                    "commit": v.commit,
                    "time": _iso(v.time),
                    "epoch": v.time,
                    "committer": v.committer,
                    "subject": v.subject,
                    "version": None if v.policy is None else v.policy.version,
                    "signers": [] if v.policy is None else [s.name for s in v.policy.signers],
                    "error": v.error,
                }
                for v in self.versions
            ],
        }


@dataclass(frozen=True)
class RetentionEvidence:
    """What the next prune would remove under the configured retention policy."""

    policy: str | None
    removals: tuple[Decision, ...]
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        """Return the planned removals as JSON-ready data."""
        return {
            "policy": self.policy,
            "error": self.error,
            "remove": [d.as_json() for d in self.removals],
        }


@dataclass(frozen=True)
class Report:
    """Everything the evidence report shows, gathered at `generated`."""

    generated: int
    repository: str
    since: int | None
    environment: str | None
    environments: tuple[EnvironmentEvidence, ...]
    unreadable: tuple[Snapshot, ...]
    rollbacks: tuple[RollbackEvidence, ...]
    audit: tuple[AuditEvidence, ...]
    audit_summary: AuditReport | None
    audit_error: str | None
    trust: TrustEvidence
    retention: RetentionEvidence

    def as_json(self) -> dict[str, Any]:
        """Return the report as JSON-ready data (docs/schemas/report.v1.json)."""
        summary = self.audit_summary
        return {
            "schema": schema_name("report"),
            "tool_version": __version__,
            "generated": _iso(self.generated),
            "repository": self.repository,
            "since": _iso(self.since),
            "environment": self.environment,
            "environments": [e.as_json() for e in self.environments],
            "unreadable_snapshots": [{"id": s.id, "error": s.error} for s in self.unreadable],
            "rollbacks": [r.as_json() for r in self.rollbacks],
            "audit": {
                "error": self.audit_error,
                "ok": None if summary is None else summary.ok,
                "entries_total": None if summary is None else summary.entries,
                "signed_total": None if summary is None else summary.signed,
                "problems_total": None if summary is None else len(summary.problems),
                "entries": [a.as_json() for a in self.audit],
            },
            "trust": self.trust.as_json(),
            "retention": self.retention.as_json(),
        }


# --- gathering ----------------------------------------------------------------------------


def _standings(
    entries: Sequence[AuditEntry], summary: AuditReport | None
) -> tuple[dict[str, Standing], dict[str, list[str]]]:
    """Return commit -> signature standing, and commit -> problems `audit verify` found."""
    problems: dict[str, list[str]] = {}
    bad: set[str] = set()
    if summary is not None:
        for problem in summary.problems:
            problems.setdefault(problem.commit, []).append(problem.message)
            if problem.kind in ("signature", "unknown-key"):
                bad.add(problem.commit)
    standings: dict[str, Standing] = {}
    for e in entries:
        if e.signature_kind == SignatureKind.NONE:
            standings[e.oid] = "unsigned"
        elif summary is None:
            standings[e.oid] = "unchecked"
        else:
            standings[e.oid] = "bad" if e.oid in bad else "good"
    return standings, problems


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _verdicts(
    entries: Sequence[AuditEntry], standings: dict[str, Standing]
) -> dict[str, list[Recorded]]:
    """Return snapshot id -> its verifications as the audit trail records them."""
    found: dict[str, list[Recorded]] = {}
    for e in entries:
        if e.operation != "verify":
            continue
        failed = e.body.get("failed")
        for ident in e.snapshots:
            verdict: Verdict
            if isinstance(failed, list):
                verdict = "fail" if ident in failed else "pass"
            elif e.result == "pass":
                verdict = "pass"
            else:
                # An entry written before entries named the failures: with one snapshot
                # its result is that snapshot's; with several, it cannot say which.
                verdict = "fail" if len(e.snapshots) == 1 else "unknown"
            found.setdefault(ident, []).append(
                Recorded(e.time, verdict, e.actor, e.oid, standings.get(e.oid, "unchecked"))
            )
    return found


def _rehearsals(
    entries: Sequence[AuditEntry], standings: dict[str, Standing]
) -> dict[str, list[Recorded]]:
    """Return snapshot id -> its rehearsals as the audit trail records them."""
    found: dict[str, list[Recorded]] = {}
    for e in entries:
        if e.operation != "rehearse" or not e.snapshots:
            continue
        arguments = e.body.get("arguments")
        rto = _number(arguments.get("rto")) if isinstance(arguments, dict) else None
        record = Recorded(
            e.time,
            "pass" if e.result == "ok" else "fail",
            e.actor,
            e.oid,
            standings.get(e.oid, "unchecked"),
            detail=e.result,
            rollback_seconds=_number(e.body.get("rollback_seconds")),
            rto_seconds=rto,
        )
        found.setdefault(e.snapshots[0], []).append(record)
    return found


def _gap(entry: AuditEntry) -> str | None:
    """Return what a gap `doctor --fix` recorded lost, else None."""
    lost = entry.body.get("lost")
    if entry.operation == "doctor" and lost:
        return f"chain reattached to {entry.body.get('reattached_to', '?')}; lost head {lost}"
    return None


def _retention(repo: Repo, environment: str | None) -> RetentionEvidence:
    try:
        the_plan = plan(repo, PruneOptions(environment=environment, dry_run=True))
    except GovsnapError as exc:
        return RetentionEvidence(None, (), exc.message)
    return RetentionEvidence(the_plan.describe(), tuple(the_plan.removed))


def collect(
    repo: Repo,
    *,
    since: str | None = None,
    environment: str | None = None,
    jobs: int | None = None,
) -> Report:
    """Return the evidence report of the repository: snapshots created since `since`
    (audit.parse_time's forms) in `environment` (default: all), verified now. Writes
    nothing but what loading the trust policy records (the policy commit it verified)."""
    now = datetime.now().astimezone()
    start = None if since is None else audit.parse_time(since, now)
    policy: TrustPolicy | None = None
    policy_error: str | None = None
    try:
        policy = load_policy(repo)
    except GovsnapError as exc:
        policy_error = exc.message
    snaps = list_snapshots(repo)
    readable = [
        s
        for s in snaps
        if s.payload is not None
        and (environment is None or s.environment == environment)
        and (start is None or s.created >= start)
    ]
    readable.sort(key=lambda s: (s.created, s.id), reverse=True)
    checks: list[SnapshotVerification | None] = [None] * len(readable)
    unchecked = ""
    if policy_error is None:
        workers = jobs if jobs is not None else (os.cpu_count() or 1)
        checks = list(verify_snapshots(repo, readable, policy=policy, jobs=workers))
    else:
        unchecked = f"not verified: the trust policy does not load ({policy_error})"

    chain = audit.read_chain(repo)
    summary: AuditReport | None = None
    audit_error: str | None = None
    try:
        summary = audit.verify(repo)
    except GovsnapError as exc:
        audit_error = exc.message
    standings, problems = _standings(chain, summary)
    verifications = _verdicts(chain, standings)
    rehearsals = _rehearsals(chain, standings)

    groups: dict[str, list[SnapshotEvidence]] = {}
    for snap, check in zip(readable, checks, strict=True):
        trusted = policy.find(check.signer) if policy is not None and check else None
        groups.setdefault(snap.environment, []).append(
            SnapshotEvidence(
                snap,
                check,
                trusted.name if trusted else None,
                tuple(sorted(verifications.get(snap.id, []), key=lambda r: r.time)),
                tuple(sorted(rehearsals.get(snap.id, []), key=lambda r: r.time)),
                unchecked,
            )
        )
    environment_of = {s.id: s.environment for s in snaps if s.payload is not None}
    rollbacks = tuple(
        RollbackEvidence(e, standings.get(e.oid, "unchecked"), environment_of.get(_first(e)))
        for e in chain
        if e.operation == "rollback"
        and (start is None or e.time >= start)
        and (environment is None or environment_of.get(_first(e)) == environment)
    )
    trail = tuple(
        AuditEvidence(e, standings.get(e.oid, "unchecked"), tuple(problems.get(e.oid, ())), _gap(e))
        for e in chain
        if start is None or e.time >= start
    )
    source = policy.source if policy is not None else ""
    if policy is None and policy_error is None:
        source = missing_policy(repo)
    return Report(
        generated=int(time.time()),
        repository=str(repo.workdir if not repo.is_bare else repo.gitdir),
        since=start,
        environment=environment,
        environments=tuple(
            EnvironmentEvidence(name, tuple(group)) for name, group in sorted(groups.items())
        ),
        unreadable=tuple(s for s in snaps if s.payload is None),
        rollbacks=rollbacks,
        audit=trail,
        audit_summary=summary,
        audit_error=audit_error,
        trust=TrustEvidence(
            source, policy, policy_error, tuple(history(repo)), configured_anchor(repo).pinned
        ),
        retention=_retention(repo, environment),
    )


def _first(entry: AuditEntry) -> str:
    return entry.snapshots[0] if entry.snapshots else ""
