"""`govsnap verify` and `doctor`: checking snapshots (verify.py) and repairing what
interrupted operations left (doctor.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from govsnap.commands.options import JsonOpt, feature, repo_of
from govsnap.render import clean, console, emit, warning

if TYPE_CHECKING:
    from govsnap.doctor import DoctorReport
    from govsnap.verify import VerifyReport

app = feature()


@app.command("verify")
def verify_snapshots(
    ctx: typer.Context,
    snapshots: Annotated[
        list[str] | None,
        typer.Argument(help="Snapshots to verify: id prefix, latest, latest~N, sha256:<prefix>."),
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Verify every snapshot.")] = False,
    environment: Annotated[
        str | None,
        typer.Option("--environment", "-e", help="Only snapshots of this environment."),
    ] = None,
    deep: Annotated[
        bool, typer.Option("--deep", help="Re-read every blob instead of trusting the cache.")
    ] = False,
    jobs: Annotated[
        int | None,
        typer.Option("--jobs", "-j", min=1, help="Processes to use (default: one per core)."),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Verify snapshots: id, tag, signature, trust, digest, objects, note. Exit 1 if any fails."""
    from govsnap.verify import run

    report = run(
        repo_of(ctx), snapshots or [], all_=all_, environment=environment, deep=deep, jobs=jobs
    )
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
    emit(report, json_out, show_doctor)
    report.check()


def show_verification(report: VerifyReport) -> None:
    """Print one row per snapshot and one column per check, the failures, and a verdict."""
    from rich.text import Text

    from govsnap.verify import CHECKS

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
    out.print(text)


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
