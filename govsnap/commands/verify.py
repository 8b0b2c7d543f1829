"""`govsnap verify` and `doctor`: checking snapshots (verify.py) and repairing what
interrupted operations left (doctor.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from govsnap import render
from govsnap.commands.completers import environments, snapshot_names
from govsnap.commands.options import JsonOpt, feature, repo_of
from govsnap.render import clean, console, elapsed, emit, note, warning, width

if TYPE_CHECKING:
    from govsnap.doctor import DoctorReport
    from govsnap.verify import VerifyReport

app = feature()

# How each cell of the verification table looks.
_CELL_STYLE = {"ok": "green", "WARN": "yellow", "FAIL": "bold red"}


@app.command("verify")
def verify_snapshots(
    ctx: typer.Context,
    snapshots: Annotated[
        list[str] | None,
        typer.Argument(
            help="Snapshots to verify: id prefix, latest, latest~N, sha256:<prefix>.",
            autocompletion=snapshot_names,
        ),
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Verify every snapshot.")] = False,
    environment: Annotated[
        str | None,
        typer.Option(
            "--environment",
            "-e",
            help="Only snapshots of this environment.",
            autocompletion=environments,
        ),
    ] = None,
    deep: Annotated[
        bool, typer.Option("--deep", help="Re-read every blob instead of trusting the cache.")
    ] = False,
    jobs: Annotated[
        int | None,
        typer.Option("--jobs", "-j", min=1, help="Processes to use (default: one per core)."),
    ] = None,
    record: Annotated[
        bool | None,
        typer.Option(
            "--record/--no-record",
            help="Record the verdicts in the notes and the audit trail (default: when .git "
            "is writable; --no-record for a cron job).",
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Verify snapshots: id, tag, signature, trust, digest, objects, note. Exit 1 if any fails."""
    from govsnap.verify import run

    report = run(
        repo_of(ctx),
        snapshots or [],
        all_=all_,
        environment=environment,
        deep=deep,
        jobs=jobs,
        record=record,
    )
    if report.unrecorded:
        note(report.unrecorded)
    emit(report, json_out, show_verification)
    report.check()


@app.command("doctor")
def doctor_repository(
    ctx: typer.Context,
    fix: Annotated[bool, typer.Option("--fix", help="Repair what can be repaired.")] = False,
    restore_remote: Annotated[
        str | None,
        typer.Option(
            "--restore-remote",
            metavar="REMOTE",
            help="Put this clone's audit trail (and snapshots, notes) back on a remote whose "
            "trail was truncated, deleted or rewritten.",
        ),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", "-n", help="With --fix or --restore-remote: change nothing."),
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Find (and with --fix repair) what interrupted operations left: notes without a
    snapshot, refs to missing objects, an audit trail that lost entries, stale locks, a
    damaged cache. Never deletes a snapshot. Exit 1 while problems remain."""
    if restore_remote is not None:
        from govsnap.commands.sharing import show_restore
        from govsnap.remote import restore

        emit(restore(repo_of(ctx), restore_remote, dry_run=dry_run), json_out, show_restore)
        return
    from govsnap.doctor import run

    report = run(repo_of(ctx), fix=fix, dry_run=dry_run)
    for text in report.notes:
        note(text)
    emit(report, json_out, show_doctor)
    report.check()


def show_verification(report: VerifyReport) -> None:
    """Print one row per snapshot and one column per check, the failures, and a verdict."""
    from rich.text import Text

    from govsnap.verify import ADVISORY, CHECKS

    out = console()
    if report.policy_anchor.startswith("trust on first use"):
        # Never trust on first use without saying so.
        warning(f"trust policy {report.policy_source}: {report.policy_anchor}")
    for caveat in report.policy_caveats:
        warning(f"trust policy {report.policy_source}: {caveat}")
    if not report.results:
        out.print("no snapshots to verify", markup=False)
        return
    # Plain aligned columns in one Text: a rich Table takes seconds for 1,000 rows.
    headers = ["snapshot", *CHECKS, "verdict"]
    widths = [max(16, len(headers[0])), *(max(4, len(h)) for h in headers[1:])]
    signers = [clean(r.signer or "-", one_line=True) for r in report.results]
    row = sum(w + 2 for w in widths)
    # The signer ends each row when it fits the width; otherwise it has lines of its own.
    inline = render.settings.wide or row + max(len("signer"), *(len(s) for s in signers)) <= width()
    text = Text(
        "".join(h.ljust(w) + "  " for h, w in zip(headers, widths, strict=True)).rstrip()
        + ("  signer" if inline else "")
        + "\n"
    )
    for r, signer in zip(report.results, signers, strict=True):
        text.append(r.id.ljust(widths[0]) + "  ")
        # A failed advisory check (the unsigned note) is a warning, not a failure.
        words = [("ok" if c.ok else "WARN" if c.name in ADVISORY else "FAIL") for c in r.checks]
        words.append("ok" if r.ok else "FAIL")
        for i, (word, column) in enumerate(zip(words, widths[1:], strict=True)):
            last = i == len(words) - 1 and not inline
            text.append(word if last else word.ljust(column), _CELL_STYLE[word])
            if not last:
                text.append("  ")
        text.append((signer if inline else "") + "\n")
    if not inline:
        for r, signer in zip(report.results, signers, strict=True):
            text.append(f"{r.id} signed by {signer}\n")
    for r in report.results:
        for line in r.failures():
            text.append(f"{r.id} {clean(line, one_line=True)}\n")
        for line in r.warnings():
            text.append(f"{r.id} warning: {clean(line, one_line=True)}\n", "yellow")
    if report.warned:
        text.append(
            f"{report.warned} note(s) are not what their signed payload says: notes are "
            "unsigned claims and decided nothing (govsnap doctor --fix rebuilds them)\n",
            "yellow",
        )
    # The whole command's time, as `time` would say: the checks are only part of it.
    took = f"{elapsed():.2f}s" + (", deep" if report.deep else "")
    if report.ok:
        text.append(f"PASS: {len(report.results)} snapshot(s) verified ({took})")
    else:
        text.append(
            f"FAIL: {report.failed} of {len(report.results)} snapshot(s) failed verification "
            f"({took})",
            "bold red",
        )
    # On a terminal, long lines (a failure's reason) wrap between words at its width; a
    # file or a pipe (and --wide) keeps each line whole, for grep.
    out.print(text, soft_wrap=render.settings.wide or not render.stdout_is_terminal())


def show_doctor(report: DoctorReport) -> None:
    """Print each finding, what was (or would be) done about it, and a summary."""
    out = console()
    if not report.findings:
        out.print("no problems found", markup=False)
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
        out.print(clean(line, one_line=True), markup=False)
    left = [f for f in report.findings if not f.fixed]
    fixable = [f for f in left if f.fix is not None]
    if not left:
        out.print(f"repaired {len(report.findings)} problem(s)", markup=False)
    elif fixable and not (report.fix and not report.dry_run):
        out.print(
            f"{len(left)} problem(s); `govsnap doctor --fix` repairs {len(fixable)} of them",
            markup=False,
        )
    else:
        out.print(f"{len(left)} problem(s) left that doctor cannot repair", markup=False)
