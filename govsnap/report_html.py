"""The evidence report as one self-contained HTML page: inline CSS and SVG, no script,
no request of any kind (its Content-Security-Policy forbids them), so it opens from a
file:// URL, as a CI artifact or an e-mail attachment alike.

Every text from the repository (labels, summaries, names, audit entries, notes, policy
descriptions) is data an attacker may have written: it goes through `_e`, HTML-escaped,
and is never placed in an attribute unquoted, a URL, a style or a script.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from pathlib import Path

from govsnap import __version__
from govsnap.objects import utc
from govsnap.report import (
    AuditEvidence,
    EnvironmentEvidence,
    Recorded,
    Report,
    RollbackEvidence,
    SnapshotEvidence,
    Standing,
)
from govsnap.stats import write_textfile

# No script, no fetch, no frame, no font or image from anywhere: only the inline style
# and inline SVG this page carries.
_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
    "form-action 'none'"
)

_STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0;
  color: #1d232b; background: #f6f7f9; }
header, main { max-width: 1200px; margin: 0 auto; padding: 0 24px; }
header { padding-top: 24px; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 32px 0 8px; border-bottom: 2px solid #d5dae1; padding-bottom: 4px; }
h3 { font-size: 16px; margin: 20px 0 6px; }
.meta { color: #58616c; margin: 0 0 12px; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; margin: 16px 0; }
.card { background: #fff; border: 1px solid #d5dae1; border-radius: 6px; padding: 10px 14px;
  min-width: 150px; }
.card b { display: block; font-size: 22px; }
.card.bad { border-color: #c62828; background: #fdecea; }
table { border-collapse: collapse; width: 100%; background: #fff; margin: 6px 0 12px;
  font-size: 13px; }
th, td { border: 1px solid #d5dae1; padding: 4px 6px; text-align: left; vertical-align: top; }
th { background: #eceff3; }
tr.row-fail td { background: #fdecea; }
tr.row-warn td { background: #fff6e0; }
code { font: 12px ui-monospace, "SFMono-Regular", Menlo, monospace; word-break: break-all; }
.pass { color: #1b6e2a; font-weight: 600; }
.fail { color: #b71c1c; font-weight: 600; }
.unknown, .unchecked { color: #8a6d00; font-weight: 600; }
.muted { color: #6b747f; }
ul.plain { margin: 0; padding-left: 16px; }
svg { background: #fff; border: 1px solid #d5dae1; }
footer { max-width: 1200px; margin: 32px auto; padding: 0 24px; color: #6b747f; }
"""


def _e(text: object) -> str:
    """Return `text` escaped for HTML text and double-quoted attributes."""
    return html.escape(str(text), quote=True)


def _when(epoch: float | None) -> str:
    return "-" if epoch is None else _e(utc(int(epoch)))


def _verdict(verdict: str, text: str | None = None) -> str:
    shown = _e(text or verdict.upper())
    return f'<span class="{_e(verdict)}" data-verdict="{_e(verdict)}">{shown}</span>'


_STANDING_TEXT = {
    "good": "signed, verified",
    "bad": "BAD signature",
    "unsigned": "UNSIGNED",
    "unchecked": "not checked",
}


def _standing(standing: Standing) -> str:
    css = {"good": "pass", "bad": "fail", "unsigned": "fail", "unchecked": "unchecked"}[standing]
    return f'<span class="{css}" data-signature="{_e(standing)}">{_STANDING_TEXT[standing]}</span>'


def _table(headers: Sequence[str], rows: Iterable[str], empty: str) -> str:
    body = "".join(rows)
    if not body:
        return f'<p class="muted">{_e(empty)}</p>'
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _records(records: Sequence[Recorded], *, rehearsal: bool = False) -> str:
    if not records:
        return '<span class="muted">none recorded</span>'
    items = []
    for r in reversed(records):
        extra = ""
        if rehearsal and r.rollback_seconds is not None:
            objective = "" if r.rto_seconds is None else f" / RTO {r.rto_seconds:g} s"
            extra = f" {r.rollback_seconds:.2f} s{objective}"
        if rehearsal and r.verdict == "fail" and r.detail:
            extra += f" ({_e(r.detail)})"
        items.append(
            f"<li>{_verdict(r.verdict)} {_when(r.time)}{extra} by {_e(r.actor)} "
            f"&middot; {_standing(r.standing)}</li>"
        )
    return f'<ul class="plain">{"".join(items)}</ul>'


def _snapshot_row(item: SnapshotEvidence) -> str:
    snap, payload, now = item.snapshot, item.snapshot.payload, item.now
    assert payload is not None
    labels = ", ".join(snap.labels) or "-"
    if now is None:
        signer = '<span class="unchecked">not verified</span>'
        why = f'<div class="muted">{_e(item.unchecked)}</div>'
        verdict = _verdict("unknown", "NOT CHECKED") + why
        css = "row-warn"
    else:
        who = now.signer or "no verified signer"
        named = f"{_e(item.signer_name)} " if item.signer_name else ""
        signer = f"{named}<code>{_e(who)}</code> ({_e(snap.signature_kind)})"
        failures = "".join(f"<li>{_e(f)}</li>" for f in now.failures())
        verdict = _verdict(now.verdict) + (f'<ul class="plain">{failures}</ul>' if failures else "")
        css = "row-fail" if not now.ok else ""
    source = ""
    if payload.source is not None:
        source = f'<div class="muted">{_e(payload.source.ref)}</div>'
    if payload.message:
        source += f"<div>{_e(payload.message)}</div>"
    note = snap.note_view
    if note.host or note.user:
        # Unsigned: shown as what the note claims, never as evidence.
        claim = f"{note.user or '?'} on {note.host or '?'}"
        source += f'<div class="muted">note claims: taken by {_e(claim)}</div>'
    return (
        f'<tr class="{css}" data-snapshot="{_e(snap.id)}">'
        f"<td>{_when(snap.created)}</td>"
        f"<td><code>{_e(snap.id)}</code><div>{_e(payload.summary)}</div>{source}</td>"
        f"<td>{_e(payload.trigger)}</td>"
        f"<td>{_e(labels)}</td>"
        f"<td>{signer}</td>"
        f'<td class="now">{verdict}</td>'
        f"<td>{_records(item.verifications)}</td>"
        f"<td>{_records(item.rehearsals, rehearsal=True)}</td>"
        "</tr>"
    )


def rto_chart(runs: Sequence[Recorded], width: int = 720, height: int = 220) -> str:
    """Return an inline SVG of the recovery times measured by rehearsals over time, with
    the objective each was held to as a dashed line; failed rehearsals in red."""
    points = [r for r in runs if r.rollback_seconds is not None]
    if not points:
        return '<p class="muted">No rehearsal with a measured recovery time.</p>'
    left, right, top, bottom = 64, 20, 16, 36
    plot_w, plot_h = width - left - right, height - top - bottom
    first, last = points[0].time, points[-1].time
    span = max(last - first, 1)
    values = [r.rollback_seconds or 0.0 for r in points]
    values += [r.rto_seconds for r in points if r.rto_seconds is not None]
    ceiling = max(values) * 1.15 or 1.0

    def x(epoch: int) -> float:
        if last == first:
            return left + plot_w / 2
        return left + plot_w * (epoch - first) / span

    def y(seconds: float) -> float:
        return top + plot_h * (1 - seconds / ceiling)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="rehearsal recovery time">',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" '
        'stroke="#8a939e"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#8a939e"/>',
        f'<text x="{left - 6}" y="{top + 4}" text-anchor="end" font-size="11">'
        f"{ceiling:.3g} s</text>",
        f'<text x="{left - 6}" y="{top + plot_h}" text-anchor="end" font-size="11">0 s</text>',
        f'<text x="{left}" y="{height - 12}" font-size="11">{_when(first)}</text>',
    ]
    if last != first:
        parts.append(
            f'<text x="{left + plot_w}" y="{height - 12}" text-anchor="end" font-size="11">'
            f"{_when(last)}</text>"
        )
    objective = [(x(r.time), y(r.rto_seconds)) for r in points if r.rto_seconds is not None]
    if objective:
        if len(objective) == 1:
            objective = [(left, objective[0][1]), (left + plot_w, objective[0][1])]
        line = " ".join(f"{px:.1f},{py:.1f}" for px, py in objective)
        parts.append(
            f'<polyline points="{line}" fill="none" stroke="#c62828" stroke-dasharray="6 4"/>'
        )
        parts.append(
            f'<text x="{left + plot_w}" y="{objective[-1][1] - 4:.1f}" text-anchor="end" '
            'font-size="11" fill="#c62828">objective (RTO)</text>'
        )
    if len(points) > 1:
        line = " ".join(f"{x(r.time):.1f},{y(r.rollback_seconds or 0):.1f}" for r in points)
        parts.append(f'<polyline points="{line}" fill="none" stroke="#1565c0" stroke-width="2"/>')
    for r in points:
        colour = "#1565c0" if r.verdict == "pass" else "#c62828"
        seconds = r.rollback_seconds or 0.0
        parts.append(
            f'<circle cx="{x(r.time):.1f}" cy="{y(seconds):.1f}" r="4" fill="{colour}">'
            f"<title>{_when(r.time)}: {seconds:.3f} s ({_e(r.verdict)})</title></circle>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _environment(env: EnvironmentEvidence) -> str:
    failed = env.failing
    rows = (_snapshot_row(s) for s in env.snapshots)
    table = _table(
        (
            "created",
            "snapshot",
            "trigger",
            "labels",
            "signer (verified now)",
            "verification now",
            "verifications recorded",
            "rehearsals",
        ),
        rows,
        "No snapshot.",
    )
    state = f'<span class="fail">{failed} failing verification</span>' if failed else "all verify"
    return (
        f'<section class="environment" data-environment="{_e(env.name)}">'
        f"<h2>Environment {_e(env.name)}</h2>"
        f'<p class="meta">{len(env.snapshots)} snapshot(s), {state}</p>'
        f"<h3>Rehearsal recovery time</h3>{rto_chart(env.rehearsals)}"
        f"<h3>Snapshots, newest first</h3>{table}</section>"
    )


def _rollback_row(r: RollbackEvidence) -> str:
    failed = r.entry.result != "ok"
    duration = r.as_json()["duration_seconds"]
    took = "-" if duration is None else f"{duration:.2f} s"
    result = _verdict("fail", r.entry.result) if failed else _verdict("pass", "ok")
    css = "row-fail" if failed or r.standing in ("bad", "unsigned") else ""
    return (
        f'<tr class="{css}"><td>{_when(r.entry.time)}</td><td>{_e(r.entry.actor)}</td>'
        f"<td><code>{_e(r.target or '-')}</code></td>"
        f"<td><code>{_e(r.safety or '-')}</code></td>"
        f"<td>{_e(r.environment or '?')}</td><td>{result}</td><td>{took}</td>"
        f"<td>{_standing(r.standing)}</td></tr>"
    )


def _audit_row(a: AuditEvidence) -> str:
    e = a.entry
    notes = [_e(p) for p in a.problems]
    if a.gap:
        notes.insert(0, f"<b>GAP</b>: {_e(a.gap)}")
    signing_error = e.body.get("signing_error")
    if signing_error:
        notes.append(f"not signed: {_e(signing_error)}")
    css = "row-fail" if a.flagged else ""
    result_css = "pass" if e.result in ("ok", "pass") else "fail"
    return (
        f'<tr class="{css}" data-audit="{_e(e.oid)}"><td>{_when(e.time)}</td>'
        f"<td>{_e(e.operation)}</td><td>{_e(e.summary)}</td><td>{_e(e.actor)}</td>"
        f'<td><span class="{result_css}">{_e(e.result)}</span></td>'
        f"<td>{_standing(a.standing)}</td>"
        f"<td>{'<br>'.join(notes) or '-'}</td><td><code>{_e(e.oid[:12])}</code></td></tr>"
    )


def _trust(report: Report) -> str:
    trust = report.trust
    policy = trust.policy
    parts = ["<h2>Trust policy</h2>"]
    if trust.error:
        parts.append(f'<p class="fail">The trust policy does not hold: {_e(trust.error)}</p>')
    if policy is None:
        if not trust.error:
            parts.append(f'<p class="fail">{_e(trust.source)}</p>')
    else:
        parts.append(
            f'<p class="meta">In force: <code>{_e(policy.source)}</code>, version '
            f"{policy.version}, commit <code>{_e(policy.commit or '-')}</code>; "
            f"believed because: {_e(policy.anchor)}; policy changes need "
            f"{policy.threshold} approval(s).</p>"
        )
        if not trust.anchor_pinned:
            # Whoever first wrote the policy ref decided it: a reviewer must know.
            parts.append(
                '<p class="unknown" data-anchor="unpinned">No trust anchor is pinned '
                "(govsnap.trustAnchor or govsnap.trustAnchorCommit): this policy is "
                "trusted because it was the first one seen.</p>"
            )
        rows = (
            f"<tr><td>{_e(s.name)}</td><td>{_e(s.kind)}</td><td><code>{_e(s.identity)}</code>"
            f"</td><td>{_e(', '.join(s.environments))}</td><td>{_e(', '.join(s.operations))}"
            f"</td><td>{_e(s.description)}</td></tr>"
            for s in policy.signers
        )
        parts.append(
            _table(
                ("signer", "kind", "identity", "environments", "operations", "description"),
                rows,
                "The policy names no signer.",
            )
        )
    history = (
        f"<tr><td>{_when(v.time)}</td><td><code>{_e(v.commit[:12])}</code></td>"
        f"<td>{'-' if v.policy is None else v.policy.version}</td><td>{_e(v.committer)}</td>"
        f"<td>{_e(v.subject)}</td><td>"
        + (
            _e(", ".join(s.name for s in v.policy.signers))
            if v.policy is not None
            else f'<span class="fail">{_e(v.error)}</span>'
        )
        + "</td></tr>"
        for v in reversed(trust.versions)
    )
    parts.append("<h3>History, newest first</h3>")
    parts.append(
        _table(
            ("committed", "commit", "version", "committer", "subject", "signers"),
            history,
            "No committed version of the policy.",
        )
    )
    return "".join(parts)


def _retention(report: Report) -> str:
    retention = report.retention
    parts = ["<h2>What retention removes next</h2>"]
    if retention.error:
        parts.append(f'<p class="fail">{_e(retention.error)}</p>')
        return "".join(parts)
    parts.append(f'<p class="meta">Policy: {_e(retention.policy or "-")}</p>')
    rows = (
        f"<tr><td><code>{_e(d.snapshot.id)}</code></td><td>{_when(d.snapshot.created)}</td>"
        f"<td>{_e(d.snapshot.environment)}</td><td>{_e(', '.join(d.snapshot.labels) or '-')}"
        f"</td><td>{_e('; '.join(d.reasons) or 'no keep rule keeps it')}</td></tr>"
        for d in retention.removals
    )
    parts.append(
        _table(
            ("snapshot", "created", "environment", "labels", "why"),
            rows,
            "The next prune removes nothing.",
        )
    )
    return "".join(parts)


def page(report: Report) -> str:
    """Return the report as one self-contained HTML document."""
    failing = sum(env.failing for env in report.environments)
    flagged = sum(1 for a in report.audit if a.flagged)
    rollbacks_failed = sum(1 for r in report.rollbacks if r.entry.result != "ok")
    scope = []
    if report.environment:
        scope.append(f"environment {_e(report.environment)}")
    if report.since is not None:
        scope.append(f"since {_when(report.since)}")
    cards = [
        ("snapshots", sum(len(e.snapshots) for e in report.environments), False),
        ("failing verification now", failing, failing > 0),
        ("rollbacks", len(report.rollbacks), False),
        ("failed rollbacks", rollbacks_failed, rollbacks_failed > 0),
        ("audit entries flagged", flagged, flagged > 0),
    ]
    card_html = "".join(
        f'<div class="card{" bad" if bad else ""}"><b>{value}</b>{_e(name)}</div>'
        for name, value, bad in cards
    )
    audit_note = ""
    if report.audit_error:
        problem = _e(report.audit_error)
        audit_note = f'<p class="fail">The audit trail could not be checked: {problem}</p>'
    elif report.audit_summary is not None:
        s = report.audit_summary
        verdict = "holds" if s.ok else f"has {len(s.problems)} problem(s)"
        audit_note = (
            f'<p class="meta">The whole chain: {s.entries} entries, {s.signed} signed, '
            f"{s.entries - s.signed} unsigned; it {_e(verdict)}.</p>"
        )
    unreadable = ""
    if report.unreadable:
        items = "".join(
            f"<li><code>{_e(s.id)}</code>: {_e(s.error or '?')}</li>" for s in report.unreadable
        )
        unreadable = f'<h2>Unreadable snapshot refs</h2><ul class="fail">{items}</ul>'
    body = [
        "<header><h1>govsnap evidence report</h1>",
        f'<p class="meta">Repository <code>{_e(report.repository)}</code> &middot; generated '
        f"{_when(report.generated)} by govsnap {_e(__version__)}"
        + (f" &middot; {', '.join(scope)}" if scope else "")
        + "</p>",
        '<p class="meta">Signers and verdicts were verified when this page was made; '
        "the histories come from audit entries, each marked with its signature's standing. "
        "Notes are not evidence and are not shown as such.</p>",
        f'<div class="cards">{card_html}</div></header><main>',
    ]
    if not report.environments:
        body.append('<p class="muted">No snapshot in scope.</p>')
    body += [_environment(env) for env in report.environments]
    body.append(unreadable)
    body.append("<h2>Rollbacks</h2>")
    body.append(
        _table(
            (
                "time",
                "actor",
                "rolled back to",
                "safety snapshot (the undo)",
                "environment",
                "result",
                "duration",
                "audit signature",
            ),
            (_rollback_row(r) for r in report.rollbacks),
            "No rollback recorded.",
        )
    )
    body.append("<h2>Audit trail, newest first</h2>")
    body.append(audit_note)
    body.append(
        _table(
            ("time", "operation", "summary", "actor", "result", "signature", "findings", "commit"),
            (_audit_row(a) for a in report.audit),
            "No audit entry.",
        )
    )
    body.append(_trust(report))
    body.append(_retention(report))
    body.append("</main>")
    body.append(
        "<footer>Made with <code>govsnap report --html</code>; the same data: "
        "<code>govsnap report --json</code>.</footer>"
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>govsnap evidence report</title><style>{_STYLE}</style></head>"
        f"<body>{''.join(body)}</body></html>\n"
    )


def write_page(path: Path, report: Report) -> None:
    """Write the report's page to `path`, atomically (a reader never sees half of it)."""
    write_textfile(path, page(report))
