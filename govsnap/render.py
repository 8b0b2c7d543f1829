"""All output: rich tables for people, JSON for programs, one-line errors. Only this
module prints."""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

    from govsnap.audit import AuditEntry, AuditReport
    from govsnap.configure import InitReport
    from govsnap.doctor import DoctorReport
    from govsnap.hooks import HooksReport, HooksStatus
    from govsnap.prune import PinResult, PrunePlan, PruneResult
    from govsnap.rehearsal import RehearsalReport
    from govsnap.remote import FetchReport, PushReport, RestoreReport, SetupReport
    from govsnap.rollback import RollbackResult
    from govsnap.stats import Stats
    from govsnap.store import CreateResult, FileChange, Snapshot
    from govsnap.trust import PolicyStatus, TrustedSigner
    from govsnap.trust_edit import PolicyEdit
    from govsnap.verify import SnapshotVerification, VerifyReport


def _console(stderr: bool = False) -> Console:
    from rich.console import Console

    console = Console(stderr=stderr, highlight=False, soft_wrap=True)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        # Piped output is read by people in logs and CI: do not squeeze tables to 80.
        console.width = 200
    return console


def human_bytes(n: int) -> str:
    """Return a byte count as 1.2 MiB and the like."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def timestamp(epoch: int) -> str:
    """Return an epoch as `2026-11-24 13:10:07Z` (`@<epoch>` beyond year 9999)."""
    from govsnap.objects import utc

    return utc(epoch)


# Characters a terminal acts on instead of showing: C0 and C1 controls, DEL, and the
# bidirectional, zero-width and other format characters that make text read differently
# from what it is. Data from notes, payloads, policies, audit entries and remotes may hold
# any of them; every line printed for people goes through clean().
_UNSAFE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u206f\ufeff]"
)
_UNSAFE_LINE = re.compile("[\x00-\x1f\x7f-\x9f\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u206f\ufeff]")


def _escaped(found: re.Match[str]) -> str:
    code = ord(found.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def clean(text: str, *, one_line: bool = False) -> str:
    """Return `text` with every character a terminal would act on written as an escape
    (`\\x1b`, `\\u202e`); with `one_line`, tabs and newlines too."""
    return (_UNSAFE_LINE if one_line else _UNSAFE).sub(_escaped, text)


def cell(text: object) -> str:
    """Return a value fit for a rich table cell: cleaned, and its `[` escaped so that rich
    never reads data as markup (a label `[/]` made `list` fail)."""
    from rich.markup import escape

    return escape(clean(str(text), one_line=True))


def emit_json(data: Any) -> None:
    """Print `data` as JSON on stdout: indented for a terminal, compact for programs."""
    # json's C encoder only runs without indent: 10,000 snapshots take 0.1 s, not 4 s.
    indent = 2 if sys.stdout.isatty() else None
    text = json.dumps(data, indent=indent, sort_keys=True, ensure_ascii=False)
    # json escapes C0 controls; the others can only stand inside strings, where a \u
    # escape is the same JSON value. ASCII text (the common case) can only hold DEL.
    if text.isascii():
        text = text.replace("\x7f", "\\u007f")
    else:
        text = _UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    sys.stdout.write(text + "\n")


def message(text: str) -> None:
    """Print a plain line for people on stdout (no rich: hooks print this, fast)."""
    sys.stdout.write(clean(text) + "\n")


def warning(text: str) -> None:
    """Print a warning line on stderr."""
    sys.stderr.write(f"govsnap: warning: {clean(text)}\n")


def error(text: str) -> None:
    """Print the one-line error for a failed command on stderr."""
    first = text.strip().splitlines()[0] if text.strip() else "unknown error"
    sys.stderr.write(f"govsnap: error: {clean(first)}\n")


def _note_int(value: Any) -> int | None:
    """Return a note value if it is a whole number, else None: notes are plain JSON
    anyone with write access can edit, so no field's type is taken for granted."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def signer_label(snap: Snapshot) -> str:
    """Return who the note says signed a snapshot (a claim: notes are not signed), or
    UNSIGNED when the tag carries no signature."""
    if not snap.signed:
        return "UNSIGNED"
    sig = snap.note_data.get("signature")
    signer = str((sig.get("signer") if isinstance(sig, dict) else None) or "?")
    return f"claimed {snap.signature_kind}:{signer[-16:]}"


# The note fields `list --json` repeats; `show --json` gives the whole note.
LIST_NOTE_FIELDS = ("bytes", "files", "pinned", "rehearsal", "signature", "verification")


def snapshot_json(snap: Snapshot, full: bool = True) -> dict[str, Any]:
    """Return what is known about a snapshot as JSON-ready data (the whole note when
    `full`, else the fields a listing shows)."""
    p = snap.payload
    note = snap.note_data
    if not full:
        note = {key: note[key] for key in LIST_NOTE_FIELDS if key in note}
    return {
        "id": snap.id,
        "ref": snap.ref,
        "tag": snap.tag_oid,
        "error": snap.error,
        "created": snap.created_iso if p else None,
        "signed": snap.signed,
        "signature_kind": snap.signature_kind,
        "safety": snap.safety,
        "payload": None
        if p is None
        else {
            "commit": p.commit,
            "tree": p.tree,
            "digest": p.digest,
            "summary": p.summary,
            "message": p.message,
            "trigger": p.trigger,
            "environment": p.environment,
            "labels": list(p.labels),
            "source": None
            if p.source is None
            else {"ref": p.source.ref, "commit": p.source.commit},
            "index_commit": p.index_commit,
            "tagger": {"name": p.tagger.name, "email": p.tagger.email},
        },
        "note": note,
        "note_error": snap.note.error if snap.note else None,
    }


def snapshot_table(snaps: Sequence[Snapshot]) -> None:
    """Print snapshots as a table, newest first. The signer column shows what the note
    claims (`govsnap verify` and `show` check the signature)."""
    from rich.table import Table

    caption = (
        "(safety): taken before a rollback, its undo; not pushed unless push "
        "--include-safety; kept by govsnap.safetyRetention"
        if any(s.safety for s in snaps)
        else None
    )
    table = Table(
        title=f"{len(snaps)} snapshot(s)",
        title_justify="left",
        caption=caption,
        caption_justify="left",
    )
    for column in ("id", "created", "trigger", "environment", "labels", "files", "size"):
        table.add_column(column, justify="right" if column in {"files", "size"} else "left")
    table.add_column("digest")
    table.add_column("signer (unverified)")
    for s in snaps:
        if s.payload is None:
            table.add_row(s.id, "-", "-", "-", "-", "-", "-", "-", f"[red]{cell(s.error)}[/red]")
            continue
        note = s.note_data
        signer = signer_label(s)
        size = _note_int(note.get("bytes"))
        files = _note_int(note.get("files"))
        table.add_row(
            s.id,
            timestamp(s.created),
            cell(s.payload.trigger) + (" (safety)" if s.safety else ""),
            cell(s.payload.environment),
            cell(",".join(s.labels)),
            "?" if files is None else str(files),
            "?" if size is None else human_bytes(size),
            s.payload.digest[7:19],
            "[bold red]UNSIGNED[/bold red]" if signer == "UNSIGNED" else cell(signer),
        )
    _console().print(table)


def verified_signer(check: SnapshotVerification) -> str:
    """Return who signed a snapshot as verification established it, or why it could not."""
    signature, trust = check.check("signature"), check.check("trust")
    if not signature.ok:
        return f"NOT VERIFIED: {signature.message}"
    judged = trust.message if trust.ok else f"FAIL: {trust.message}"
    return f"{check.signer} (verified); trust: {judged}"


def checked_json(check: SnapshotVerification | None) -> dict[str, Any] | None:
    """Return who verification found signed a snapshot, as JSON-ready data (None: the
    snapshot is unsigned or unreadable)."""
    if check is None:
        return None
    signature, trust = check.check("signature"), check.check("trust")
    return {
        "signer": check.signer,
        "signature": {"ok": signature.ok, "message": signature.message},
        "trust": {"ok": trust.ok, "message": trust.message},
        "verdict": check.verdict,
    }


def snapshot_details(
    snap: Snapshot, check: SnapshotVerification | None = None, pinned: bool | None = None
) -> None:
    """Print one snapshot's fields, one per line; `check` is its verification, which says
    who signed it (the note's copy is only a claim); `pinned` is what the audit trail
    says (the note's copy decides nothing)."""
    data = snapshot_json(snap)
    p = data["payload"]
    note = data["note"]
    lines: list[tuple[str, str]] = [("id", snap.id), ("ref", snap.ref), ("tag", snap.tag_oid)]
    if p is None:
        lines.append(("error", str(snap.error)))
    else:
        lines += [
            ("created", timestamp(snap.created)),
            ("summary", p["summary"]),
            (
                "trigger",
                p["trigger"]
                + (
                    " (safety snapshot: a rollback's undo; not pushed unless --include-safety)"
                    if snap.safety
                    else ""
                ),
            ),
            ("environment", p["environment"]),
            ("labels", ", ".join(p["labels"]) or "-"),
            ("source", f"{p['source']['ref']} {p['source']['commit']}" if p["source"] else "-"),
            ("commit", p["commit"]),
            ("tree", p["tree"]),
            ("digest", p["digest"]),
            ("tagger", f"{p['tagger']['name']} <{p['tagger']['email']}>"),
        ]
        if not snap.signed:
            lines.append(("signed by", "UNSIGNED"))
        elif check is not None:
            lines.append(("signed by", verified_signer(check)))
        lines.append(("note claims", signer_label(snap)))
        if p["message"]:
            lines.append(("message", p["message"]))
    if note:
        if "files" in note:
            size = _note_int(note.get("bytes"))
            shown = "?" if size is None else human_bytes(size)
            lines.append(("files", f"{note['files']} ({shown})"))
        for key in ("host", "user", "tool_version"):
            if key in note:
                lines.append((key, str(note[key])))
        kinds = note.get("artifacts")
        sizes = {
            kind: (v.get("count"), _note_int(v.get("bytes")) or 0)
            for kind, v in (kinds.items() if isinstance(kinds, dict) else ())
            if isinstance(v, dict)
        }
        top = sorted(sizes.items(), key=lambda kv: -kv[1][1])[:8]
        if top:
            lines.append(
                (
                    "artifacts",
                    ", ".join(f"{k} {count} ({human_bytes(size)})" for k, (count, size) in top),
                )
            )
        for key in ("verification", "rehearsal"):
            if note.get(key):
                lines.append((key, json.dumps(note[key], sort_keys=True)))
    elif snap.note and snap.note.error:
        lines.append(("note", f"unreadable: {snap.note.error}"))
    else:
        lines.append(("note", "missing"))
    if pinned is not None:
        lines.append(("pinned", "yes (audit trail)" if pinned else "no"))
    width = max(len(k) for k, _ in lines)
    console = _console()
    for key, value in lines:
        console.print(f"{key:<{width}}  {clean(value)}", markup=False)


def created(result: CreateResult) -> None:
    """Print what `create` did."""
    snap = result.snapshot
    if not result.created:
        message(f"unchanged: newest {snap.environment} snapshot {snap.id} has the same content")
        return
    # This run signed it: the note it wrote names the key it signed with.
    signed = signer_label(snap).replace("claimed ", "signed with ", 1)
    message(
        f"created snapshot {snap.id} ({snap.environment}, {result.digest.files} files, "
        f"{human_bytes(result.digest.bytes)}, {signed}) in {result.seconds:.2f}s"
    )
    if signed == "UNSIGNED":
        warning("this snapshot is UNSIGNED: it cannot be verified")
    for text in result.warnings:
        warning(text)


def created_json(result: CreateResult) -> dict[str, Any]:
    """Return what `create` did as JSON-ready data."""
    return {
        "created": result.created,
        "seconds": round(result.seconds, 6),
        "hashed_blobs": result.digest.hashed_blobs,
        "snapshot": snapshot_json(result.snapshot),
        "warnings": list(result.warnings),
    }


def diff_json(old: str, new: str, changes: Sequence[FileChange]) -> dict[str, Any]:
    """Return a diff as JSON-ready data."""
    return {
        "from": old,
        "to": new,
        "added": [c.path for c in changes if c.status == "added"],
        "removed": [c.path for c in changes if c.status == "removed"],
        "modified": [c.path for c in changes if c.status == "modified"],
        "files": [
            {
                "status": c.status,
                "path": c.path,
                "additions": c.additions,
                "deletions": c.deletions,
                "binary": c.binary,
            }
            for c in changes
        ],
    }


def diff(old: str, new: str, changes: Sequence[FileChange], stat: bool) -> None:
    """Print a diff as status lines, or as a diffstat."""

    console = _console()
    if not changes:
        console.print(f"no differences between {old} and {new}", markup=False)
        return
    marks = {"added": ("A", "green"), "removed": ("D", "red"), "modified": ("M", "yellow")}
    width = max(len(c.path) for c in changes)
    for c in changes:
        mark, colour = marks[c.status]
        if stat:
            counts = "Bin" if c.binary else f"+{c.additions} -{c.deletions}"
            console.print(f"[{colour}]{mark}[/{colour}] {cell(c.path):<{width}} | {counts}")
        else:
            console.print(f"[{colour}]{mark}[/{colour}] {cell(c.path)}")
    totals = {s: sum(1 for c in changes if c.status == s) for s in marks}
    console.print(
        f"{len(changes)} file(s): {totals['added']} added, {totals['removed']} removed, "
        f"{totals['modified']} modified",
        markup=False,
    )


def init_report(report: InitReport) -> None:
    """Print what `govsnap init` did (or, with --dry-run, would do), and what is left."""
    would = "would " if report.dry_run else ""
    message(report.git_version)
    for key, value in report.config_set.items():
        message(f"{would}set   {key} = {value}")
    for key, value in report.config_kept.items():
        message(f"kept  {key} = {value}")
    if report.kept_key:
        message(
            f"kept the configured signing key {report.kept_key}: --generate-key makes a key "
            "only when none is configured"
        )
    if report.generated_key:
        where = report.keyring or "the default GnuPG keyring"
        verb = "would generate" if report.dry_run else "generated"
        message(f"{verb} OpenPGP signing key {report.generated_key} in {where}")
    if report.signing_ok:
        message(f"signing works: {report.signing}")
    elif not (report.dry_run and report.generated_key):
        warning(f"signing: {report.signing}; snapshots will be refused unless --unsigned")
    if report.policy in ("written", "would write"):
        message(f"{'would write' if report.dry_run else 'wrote'} {report.policy_detail}")
    elif report.policy_detail:
        message(report.policy_detail)
    for step in report.next_steps:
        message(f"next: {step}")


# --- audit and hooks (issue 6) ---------------------------------------------------------


def audit_table(entries: Sequence[AuditEntry]) -> None:
    """Print audit entries as a table, newest first."""
    from rich.table import Table

    title = f"{len(entries)} audit entr{'y' if len(entries) == 1 else 'ies'}"
    table = Table(title=title, title_justify="left")
    for column in ("time", "operation", "result", "actor", "snapshots", "signed", "summary"):
        table.add_column(column)
    for e in entries:
        actor = e.body.get("actor")
        actor = actor if isinstance(actor, dict) else {}
        summary = e.summary if e.error is None else f"{e.summary} (malformed: {e.error})"
        cells = (
            timestamp(e.time),
            e.operation,
            e.result,
            str(actor.get("email") or e.committer),
            ",".join(s[:12] for s in e.snapshots),
            e.signature_kind if e.signature_kind != "none" else "-",
            summary,
        )
        table.add_row(*(cell(text) for text in cells))
    _console().print(table)


def audit_report(report: AuditReport) -> None:
    """Print the result of `audit verify`."""
    state = "OK" if report.ok else "FAILED"
    message(
        f"audit trail {state}: {report.entries} entries, {report.signed} signed, "
        f"{report.entries - report.signed} unsigned (skew {report.skew}s)"
    )
    for signer in report.signers:
        message(f"  signed by {signer}")
    for problem in report.problems:
        stderr_line(f"{problem.kind}: {problem.message}")


def stderr_line(text: str) -> None:
    """Print a plain `govsnap: ` line on stderr (problems that do not end the command, and
    hook output, which git shows to the user, prefixed `remote:` for server hooks)."""
    sys.stderr.write(f"govsnap: {clean(text)}\n")


def hooks_report(report: HooksReport) -> None:
    """Print what `hooks install` / `hooks uninstall` did or would do."""
    prefix = "would " if report.dry_run else ""
    message(f"hooks directory: {report.directory}")
    for a in report.actions:
        discard = f" (discarding {a.name}.govsnap-chained)" if a.discard_chained else ""
        message(f"{a.name}: {prefix}{a.action}: {a.detail}{discard}")
    for key, value in report.config:
        message(f"{prefix}set git config {key} {value}")
    for text in report.warnings:
        warning(text)


def hooks_status(report: HooksStatus) -> None:
    """Print where hooks are run from, their state and the configuration they use."""
    where = f" (core.hooksPath = {report.hooks_path})" if report.hooks_path else ""
    message(f"hooks directory: {report.directory}{where}")
    for h in report.hooks:
        state = {"govsnap": "govsnap", "absent": "not installed"}.get(h.state, h.state)
        if h.state == "foreign":
            state = "another hook (not govsnap's)"
        if h.state != "absent" and not h.executable:
            state += ", NOT executable"
        if h.chained:
            runs = "" if h.chained_executable else ", not executable: skipped"
            state += f"; chains to {h.chained_path.name}{runs}"
        message(f"{h.name:<12} {state}")
    for pattern in report.promotion_branches:
        message(f"promotion branch {pattern} -> environment {report.environments[pattern]}")
    message(f"on failure: {report.hook_failure} (govsnap.hookFailure)")


# --- rollback and rehearsal (issue 4) ---------------------------------------------------


def require_terminal(action: str) -> None:
    """Raise UsageError unless there is a terminal to confirm `action` on (scripts and CI
    must say --yes: the same rule for every command that deletes or rewrites)."""
    from govsnap.errors import UsageError

    if not sys.stdin.isatty():
        raise UsageError(
            f"{action}: not on a terminal, so nobody can confirm; pass --yes "
            "(--dry-run shows what it would do)"
        )


def confirm(action: str, question: str) -> bool:
    """Ask `question` on the terminal (on stderr) before `action`; return True on yes.

    Raises UsageError when there is no terminal (require_terminal) and Declined on any
    other answer, so that a declined confirmation exits alike everywhere.
    """
    from govsnap.errors import Declined

    require_terminal(action)
    sys.stderr.write(f"{question} [y/N] ")
    sys.stderr.flush()
    if sys.stdin.readline().strip().lower() not in {"y", "yes"}:
        raise Declined("declined: nothing was changed")
    return True


def confirm_rollback(snap: Snapshot) -> bool:
    """Ask on the terminal whether to roll back to `snap` (see confirm)."""
    summary = snap.payload.summary if snap.payload else snap.id
    return confirm(
        "rollback rewrites the working tree",
        f"Roll the working tree and index back to snapshot {snap.id} ({summary})?\n"
        "The current state is saved first as a safety snapshot.",
    )


def safety_snapshot_taken(safety: Snapshot, undo: str) -> None:
    """Print the way back as soon as it exists, before the working tree is touched: a
    rollback killed half-way has then said how to undo it."""
    sys.stderr.write(f"govsnap: safety snapshot {safety.id} taken; undo with: {undo}\n")
    sys.stderr.flush()


def rollback_result(result: RollbackResult) -> None:
    """Print what a rollback did, or with --dry-run what it would do."""
    plan = result.plan
    snap = result.snapshot.id
    where = f" ({', '.join(result.paths)})" if result.paths else ""
    if not result.verified:
        warning(f"snapshot {snap} was NOT verified (--no-verify)")
    for text in result.warnings:
        warning(clean(text, one_line=True))
    if result.dry_run:
        message(
            f"dry run: rolling back to {snap}{clean(where, one_line=True)} would write "
            f"{len(plan.write)} file(s), "
            f"remove {len(plan.remove)}, leave {len(plan.leave)} ignored; index from "
            f"{result.index_source}"
        )
        for action, items in (
            ("write", plan.write),
            ("remove", plan.remove),
            ("leave", plan.leave),
            ("index", plan.index_only),
        ):
            for path in items:
                # A name may hold a newline or a terminal escape: one line per path.
                message(f"{action:<6} {clean(path, one_line=True)}")
        return
    head = f"HEAD moved to {result.commit[:12]}" if result.commit else "HEAD unmoved"
    message(
        f"rolled back to snapshot {snap}{clean(where, one_line=True)}: wrote "
        f"{len(plan.write)} file(s), removed {len(plan.remove)}; index from "
        f"{result.index_source}; {head} ({result.seconds:.2f}s)"
    )
    if result.commit:
        message(f"committed {result.commit[:12]}: Roll back to snapshot {snap}")
    if result.safety is not None:
        message(
            f"safety snapshot {result.safety.id} holds the previous state; undo with: {result.undo}"
        )


def rehearsal_report(report: RehearsalReport) -> None:
    """Print a rehearsal's verdict, damage, gates and where the reports are."""
    verdict = "PASS" if report.passed else f"FAIL ({', '.join(report.failed_gates)})"
    took = "-" if report.rollback_seconds is None else f"{report.rollback_seconds:.2f}s"
    message(
        f"rehearsal of snapshot {report.snapshot}: {verdict}; rollback took {took} "
        f"(objective {report.rto:g}s)"
    )
    for d in report.damage:
        message(f"damage {d.kind:<8} {len(d.paths)} path(s)")
    for g in report.gates:
        # A gate's detail may name paths, which may hold newlines.
        detail = clean(g.detail, one_line=True)
        message(f"gate   {g.name:<9} {'pass' if g.passed else 'FAIL'}  {detail}")
    for text in report.warnings:
        warning(clean(text, one_line=True))
    for path in report.report_files:
        message(f"report {path}")


# --- verification, trust and doctor (issue 3) ---------------------------------------------


def verification_json(report: VerifyReport) -> dict[str, Any]:
    """Return a verification report as JSON-ready data."""
    return {
        "verdict": "pass" if report.ok else "fail",
        "verified": len(report.results),
        "failed": report.failed,
        "seconds": round(report.seconds, 6),
        "deep": report.deep,
        "policy": report.policy_source,
        "policy_anchor": report.policy_anchor,
        "policy_caveats": list(report.policy_caveats),
        "snapshots": [
            {
                "id": r.id,
                "verdict": r.verdict,
                "signer": r.signer,
                "checks": {c.name: {"ok": c.ok, "message": c.message} for c in r.checks},
            }
            for r in report.results
        ],
    }


def verification_report(report: VerifyReport) -> None:
    """Print one row per snapshot and one column per check, the failures, and a verdict."""
    from rich.text import Text

    from govsnap.verify import CHECKS

    console = _console()
    if report.policy_anchor.startswith("trust on first use"):
        # Never trust on first use without saying so.
        warning(f"trust policy {report.policy_source}: {report.policy_anchor}")
    for caveat in report.policy_caveats:
        warning(f"trust policy {report.policy_source}: {caveat}")
    if not report.results:
        console.print("no snapshots to verify", markup=False)
        return
    # Plain aligned columns in one Text: a rich Table takes seconds for 1,000 rows.
    headers = ["snapshot", *CHECKS, "verdict", "signer"]
    widths = [max(16, len(headers[0])), *(max(4, len(h)) for h in headers[1:-1])]
    text = Text(
        "".join(h.ljust(w) + "  " for h, w in zip(headers, widths, strict=False)) + "signer\n"
    )
    for r in report.results:
        text.append(r.id.ljust(widths[0]) + "  ")
        cells = [c.ok for c in r.checks] + [r.ok]
        for ok, width in zip(cells, widths[1:], strict=True):
            text.append(
                "ok".ljust(width) if ok else "FAIL".ljust(width), "green" if ok else "bold red"
            )
            text.append("  ")
        text.append(clean(r.signer or "-", one_line=True) + "\n")
    for r in report.results:
        for line in r.failures():
            text.append(f"{r.id} {clean(line, one_line=True)}\n")
    deep = ", deep" if report.deep else ""
    if report.ok:
        text.append(
            f"PASS: {len(report.results)} snapshot(s) verified ({report.seconds:.2f}s{deep})"
        )
    else:
        text.append(
            f"FAIL: {report.failed} of {len(report.results)} snapshot(s) failed verification "
            f"({report.seconds:.2f}s{deep})",
            "bold red",
        )
    console.print(text)


def _signer_json(signer: TrustedSigner) -> dict[str, Any]:
    return {
        "name": signer.name,
        "kind": signer.kind,
        "identity": signer.identity,
        "environments": list(signer.environments),
        "operations": list(signer.operations),
        "description": signer.description,
        "line": signer.line,
        "public_key": signer.kind == "ssh" or bool(signer.public_key),
    }


def policy_json(state: PolicyStatus) -> dict[str, Any]:
    """Return the trust policy `trust show|check` looked at as JSON-ready data."""
    policy = state.policy
    return {
        "source": state.source,
        "present": policy is not None,
        "valid": True,
        "require_trust": state.require_trust,
        "uncommitted_edit": state.uncommitted_edit,
        "version": None if policy is None else policy.version,
        "policy_threshold": None if policy is None else policy.threshold,
        "commit": None if policy is None else policy.commit,
        "anchor": None if policy is None else policy.anchor,
        "caveats": [] if policy is None else list(policy.caveats),
        "signers": [] if policy is None else [_signer_json(s) for s in policy.signers],
    }


def _uncommitted_warning(state: PolicyStatus) -> None:
    if state.uncommitted_edit:
        warning(
            ".govsnap/trust.toml in the working tree differs from the committed policy; "
            "only the committed version counts"
        )


def _keyless(state: PolicyStatus) -> None:
    """Warn about OpenPGP signers whose public key the policy does not carry, and say
    what checking the policy's history could not judge."""
    if state.policy is None:
        return
    for caveat in state.policy.caveats:
        warning(caveat)
    for s in state.policy.signers:
        if s.kind == "openpgp" and not s.public_key:
            warning(
                f"signer {s.name} carries no public_key: its signatures cannot be checked "
                f"(govsnap trust remove-signer {s.name}, then trust add-signer with --key)"
            )


def policy_table(state: PolicyStatus) -> None:
    """Print the signers of the trust policy, what each may do, and its root of trust."""
    from rich.table import Table

    if state.policy is None:
        required = (
            "fails (write one with `govsnap trust init`, then git add .govsnap && git commit)"
            if state.require_trust
            else "passes (govsnap.requireTrust=false)"
        )
        message(f"no trust policy at {state.source}: the trust check {required}")
        _uncommitted_warning(state)
        return
    policy = state.policy
    title = f"trust policy {cell(state.source)} version {policy.version}"
    table = Table(title=title, title_justify="left")
    for column in ("signer", "kind", "identity", "environments", "operations", "description"):
        table.add_column(column)
    for s in policy.signers:
        table.add_row(
            cell(s.name),
            s.kind,
            cell(s.identity),
            cell(", ".join(s.environments)),
            cell(", ".join(s.operations)),
            cell(s.description),
        )
    _console().print(table)
    if policy.anchor:
        message(f"root of trust: {policy.anchor}")
    message(f"a change needs {policy.threshold} approval(s) by signers allowed 'policy'")
    _keyless(state)
    _uncommitted_warning(state)


def policy_check(state: PolicyStatus) -> None:
    """Print the outcome of `trust check`."""
    if state.policy is None:
        message(f"no trust policy at {state.source} (govsnap.requireTrust=false)")
    else:
        message(
            f"{state.source} is valid: version {state.policy.version}, "
            f"{len(state.policy.signers)} signer(s)"
            + (f"; root of trust: {state.policy.anchor}" if state.policy.anchor else "")
        )
    _keyless(state)
    _uncommitted_warning(state)


def policy_edit(edit: PolicyEdit) -> None:
    """Print what a `trust` edit wrote (with --dry-run: the text it would write)."""
    if edit.dry_run:
        sys.stdout.write(clean(edit.text))
        message(f"(dry run: {edit.path} not written)")
        return
    if edit.approval is not None:
        message(f"approved {edit.path} (version {edit.policy.version}): wrote {edit.approval}")
    else:
        verb = "wrote" if edit.created else "updated"
        names = ", ".join(s.name for s in edit.policy.signers) or "none"
        message(f"{verb} {edit.path} (version {edit.policy.version}; signers: {names})")
    message(
        "next: review it, have signers allowed 'policy' approve it (a signed commit, or "
        "govsnap trust approve), then git add .govsnap && git commit"
    )


def doctor_json(report: DoctorReport) -> dict[str, Any]:
    """Return a doctor report as JSON-ready data."""
    return {
        "ok": report.ok,
        "fix": report.fix,
        "dry_run": report.dry_run,
        "findings": [
            {
                "kind": f.kind,
                "subject": f.subject,
                "problem": f.problem,
                "fix": f.fix,
                "fixed": f.fixed,
            }
            for f in report.findings
        ],
    }


def doctor_report(report: DoctorReport) -> None:
    """Print each finding, what was (or would be) done about it, and a summary."""
    console = _console()
    if not report.findings:
        console.print("no problems found", markup=False)
        return
    for f in report.findings:
        if f.fixed:
            state = "fixed"
        elif f.fix is None:
            state = "cannot fix"
        else:
            state = "would fix" if report.fix and report.dry_run else "fixable"
        remedy = f" [{f.fix}]" if f.fix and not f.fixed else ""
        line = f"{state:<10} {f.kind} {f.subject}: {f.problem}{remedy}"
        console.print(clean(line, one_line=True), markup=False)
    left = [f for f in report.findings if not f.fixed]
    fixable = [f for f in left if f.fix is not None]
    if not left:
        console.print(f"repaired {len(report.findings)} problem(s)", markup=False)
    elif fixable and not (report.fix and not report.dry_run):
        console.print(
            f"{len(left)} problem(s); `govsnap doctor --fix` repairs {len(fixable)} of them",
            markup=False,
        )
    else:
        console.print(f"{len(left)} problem(s) left that doctor cannot repair", markup=False)


# --- prune, pin and unpin (issue 5) -------------------------------------------------------


def confirm_prune(plan: PrunePlan, show: bool) -> bool:
    """Ask on the terminal whether to delete what `plan` removes, after listing its
    decisions when `show` (see confirm)."""
    count = len(plan.removed)
    verb = "purge" if plan.options.purge else "delete"
    action = f"prune would {verb} {count} snapshot(s)"
    require_terminal(action)
    if show:
        prune_decisions(plan)
    return confirm(action, f"{verb.capitalize()} {count} snapshot(s)? This cannot be undone.")


def confirm_push_deletions(remote: str, ids: Sequence[str]) -> bool:
    """Ask on the terminal whether push --prune may delete `ids` on `remote` (see confirm)."""
    action = f"push --prune would delete {len(ids)} snapshot(s) on remote {remote!r}"
    return confirm(
        action,
        f"Delete {len(ids)} snapshot(s) on remote {remote!r} ({_ids(ids)})? "
        "This cannot be undone there.",
    )


def _source_text(plan: PrunePlan) -> str:
    return {
        "flags": "from the command line",
        "config": "from git config govsnap.keep*",
        "default": "the default; set git config govsnap.keepLast and friends to change it",
        "ids": "",
    }.get(plan.source, plan.source)


def prune_decisions(plan: PrunePlan) -> None:
    """Print, per group, every snapshot with keep/remove and its reasons (plain lines:
    a plan may hold thousands of snapshots)."""
    source = _source_text(plan)
    message(f"policy: {plan.describe()}" + (f" ({source})" if source else ""))
    if plan.has_safety and plan.safety_policy is not None:
        where = (
            "from git config govsnap.safetyRetention"
            if plan.safety_source == "config"
            else "the default; set git config govsnap.safetyRetention to change it"
        )
        message(f"safety snapshots (pre-rollback): {plan.safety_policy.describe()} ({where})")
    groups = plan.groups
    current = None
    lines = []
    for d in plan.decisions:
        if d.group != current:
            current = d.group
            kept, removed = groups[d.group]
            lines.append(f"group {d.group}: keep {kept}, remove {removed}")
        snap = d.snapshot
        when = timestamp(snap.created) if snap.payload else "?"
        labels = ",".join(snap.labels) or "-"
        lines.append(
            f"  {d.action:<6}  {snap.id}  {when}  {labels:<16}  {'; '.join(d.reasons)}".rstrip()
        )
    if lines:
        sys.stdout.write("\n".join(clean(line, one_line=True) for line in lines) + "\n")
    if plan.why_nothing:
        message(plan.why_nothing)


def _now_warning() -> str:
    return (
        "--now runs git gc --prune=now: it also deletes every other unreachable object "
        "in this repository at once, not only the pruned snapshots' (git's grace period "
        "is skipped)"
    )


def prune_plan(plan: PrunePlan, reclaimable: int) -> None:
    """Print what a dry run found: the decisions, then a summary."""
    prune_decisions(plan)
    if not plan.decisions:
        message("no snapshots to consider")
    message(
        f"dry run: would remove {len(plan.removed)} snapshot(s), keep {len(plan.kept)}; "
        f"{human_bytes(reclaimable)} would be reclaimed (objects no other ref or the index "
        "holds) once git gc prunes them"
    )
    if plan.options.now:
        warning(_now_warning())


def prune_now_warning() -> None:
    """Warn, before it happens, that --now expires every unreachable object."""
    warning(_now_warning())


def prune_result(result: PruneResult) -> None:
    """Print what a real prune did: per group, totals, and the space before and after."""
    plan = result.plan
    if plan.why_nothing:
        message(plan.why_nothing)
    if plan.source == "ids":
        verb = "purged" if plan.options.purge else "removed"
        message(f"{verb} snapshot(s) {', '.join(result.removed) or '-'} in {result.seconds:.2f}s")
    else:
        for group, (kept, removed) in plan.groups.items():
            message(f"group {group}: kept {kept}, removed {removed}")
        message(
            f"removed {len(result.removed)} snapshot(s), kept {len(plan.kept)} "
            f"({plan.describe()}) in {result.seconds:.2f}s"
        )
    if result.vanished:
        shown = ", ".join(result.vanished[:8]) + (" ..." if len(result.vanished) > 8 else "")
        warning(
            f"{len(result.vanished)} planned snapshot(s) had already gone or changed and "
            f"were left alone: {shown}"
        )
    sizes = f"objects {human_bytes(result.bytes_before)} -> {human_bytes(result.bytes_after)}"
    if result.gc == "now":
        message(f"git gc --prune=now: {sizes}; every unreachable object was expired at once")
    elif result.gc == "grace":
        message(
            f"git gc: {sizes}; unreachable objects newer than {result.prune_expire} "
            "(gc.pruneExpire) are kept for now; prune --now reclaims them at once"
        )
    else:
        message(f"git gc not run (--no-gc): {sizes}")


def pin_result(result: PinResult) -> None:
    """Print what pin / unpin did."""
    if not result.changed:
        state = "pinned" if result.pinned else "not pinned"
        message(f"snapshot {result.snapshot} is already {state}")
    elif result.pinned:
        message(f"pinned snapshot {result.snapshot}: prune always keeps it")
    else:
        message(f"unpinned snapshot {result.snapshot}: the retention policy decides again")


# --- push, fetch, remote setup and stats (issue 7) ----------------------------------------


def _ids(ids: Sequence[str], limit: int = 8) -> str:
    return ", ".join(ids[:limit]) + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


def fetch_report(report: FetchReport) -> None:
    """Print what `fetch` added and merged; problems go to stderr, one line each."""
    added = report.with_status("added")
    message(
        f"fetched {report.remote} ({report.url}): {len(added)} snapshot(s) added, "
        f"{report.unchanged} already here; notes {report.notes}; audit trail {report.audit}"
    )
    origin = {
        "kept": "note kept here since an earlier fetch refused it",
        "rebuilt": "note rebuilt from the signed payload: the remote has none",
        "none": "no note: the tag is unreadable",
    }
    for snap in added:
        details = [text for text in (snap.detail, origin.get(snap.note, "")) if text]
        message(f"  added {snap.id}" + (f" ({'; '.join(details)})" if details else ""))
    for snap in report.with_status("pruned"):
        message(f"  skipped {snap.id}: {snap.detail}")
    for snap in report.with_status("conflict", "unverified", "invalid"):
        stderr_line(f"{snap.status}: {snap.id}: {snap.detail}")
    if report.notes_kept_aside:
        message(
            f"  kept the notes of {report.notes_kept_aside} refused snapshot(s): the fetch "
            "that adds them adds their notes"
        )


def push_report(report: PushReport) -> None:
    """Print what `push` sent, or with --dry-run would send."""
    would = "would " if report.dry_run else ""
    if report.fetched is not None:
        fetch_report(report.fetched)
    elif report.fetch_first:
        message(
            f"would fetch and merge first: {report.remote} has notes or audit entries "
            "this clone lacks"
        )
    done = []
    if report.sent:
        done.append(f"{would}send {len(report.sent)} snapshot(s): {_ids(report.sent)}")
    for what, state in (("notes", report.notes), ("audit trail", report.audit)):
        if state == "sent":
            done.append(f"{would}send the {what}")
    if report.deleted:
        done.append(
            f"{would}delete {len(report.deleted)} pruned snapshot(s) on the remote: "
            f"{_ids(report.deleted)}"
        )
    if report.held_back:
        done.append(
            f"held back {len(report.held_back)} snapshot(s) a prune recorded in the audit "
            f"trail deleted: {_ids(report.held_back)}"
        )
    if report.kept_local:
        done.append(
            f"kept {len(report.kept_local)} safety snapshot(s) local (they capture untracked "
            f"files; --include-safety sends them): {_ids(report.kept_local)}"
        )
    if not done:
        message(f"{report.remote} ({report.url}) is up to date")
        return
    message(f"{report.remote} ({report.url}):")
    for line in done:
        message(f"  {line}")


def restore_report(report: RestoreReport) -> None:
    """Print what `doctor --restore-remote` did, or with --dry-run would do."""
    would = "would be " if report.dry_run else ""
    what = {
        "up to date": "holds this clone's audit trail already",
        "extended": f"audit trail {would}extended again from this clone's copy",
        "replaced": f"audit trail {would}replaced by this clone's copy (forced, with a lease)",
    }[report.audit]
    message(f"{report.remote} ({report.url}): {what}")
    if report.dropped:
        warning(
            f"{report.dropped} entr{'y' if report.dropped == 1 else 'ies'} of its rewritten "
            f"chain, which this clone does not hold, {'would be' if report.dry_run else 'were'} "
            f"dropped from it (kept in refs/govsnap-remote/{report.remote}/audit)"
        )
    if report.pushed is not None:
        push_report(report.pushed)


def setup_report(report: SetupReport) -> None:
    """Print what `remote setup` changed in the remote's configuration."""
    would = "would " if report.dry_run else ""
    for key, value in report.removed:
        message(f"{would}remove {key} = {value}")
    for key, value in report.added:
        message(f"{would}add    {key} = {value}")
    if not report.added and not report.removed:
        state = "has none of govsnap's refspecs" if report.undo else "is already set up"
        message(f"remote {report.remote} {state}: nothing to change")
    elif ("remote." + report.remote + ".push", "HEAD") in report.added:
        message(
            f"(with remote.{report.remote}.push set, `git push {report.remote}` pushes only "
            "what it lists: HEAD keeps it pushing the current branch)"
        )


def _age(seconds: float) -> str:
    """Return a duration as `3d 4h`, `5h 2m`, `7m 3s` or `9s`."""
    days, left = divmod(max(0, int(seconds)), 86400)
    hours, left = divmod(left, 3600)
    minutes, secs = divmod(left, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {secs}s" if minutes else f"{secs}s"


def _when(epoch: float | None) -> str:
    return "-" if epoch is None else timestamp(int(epoch))


def stats_report(stats: Stats) -> None:
    """Print the figures of `govsnap stats`: a table per environment, then totals."""
    from rich.table import Table

    table = Table(title="snapshots per environment", title_justify="left")
    for column in ("environment", "snapshots", "newest", "age"):
        table.add_column(column, justify="right" if column == "snapshots" else "left")
    for kind in ("verified", "rehearsed"):
        table.add_column(f"{kind} pass/fail/never", justify="right")
        table.add_column(f"last {kind} pass / fail")
    for e in stats.environments:
        v, r = e.verification, e.rehearsal
        table.add_row(
            cell(e.environment),
            str(e.snapshots),
            timestamp(e.newest),
            _age(stats.now - e.newest),
            f"{v.passed}/{v.failed}/{v.never}",
            f"{_when(v.last_pass)} / {_when(v.last_fail)}",
            f"{r.passed}/{r.failed}/{r.never}",
            f"{_when(r.last_pass)} / {_when(r.last_fail)}",
        )
    _console().print(table)
    if stats.unreadable:
        message(f"unreadable snapshot refs: {stats.unreadable}")
    rollback = stats.last_rollback
    if rollback is None:
        message("last rollback: none recorded")
    else:
        message(
            f"last rollback: {timestamp(rollback.time)}, {rollback.seconds:.2f}s, "
            f"{rollback.result}" + (f" (to {rollback.snapshot})" if rollback.snapshot else "")
        )
    message(
        f"held only by snapshots: {human_bytes(stats.snapshot_only_bytes)} "
        f"({stats.snapshot_only_bytes} bytes on disk)"
    )
