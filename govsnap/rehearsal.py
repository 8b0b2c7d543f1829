"""Rollback rehearsal: the real rollback, in a throwaway shared clone that was damaged
first, checked byte for byte against the snapshot and timed against the recovery time
objective. The user's working tree, index, HEAD and branches are never touched."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import sqlite3
import stat
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import pygit2
from pygit2.enums import CheckoutStrategy, ConfigLevel, FileMode

from govsnap import __version__, audit, notes
from govsnap.digest import CACHE_NAME, CURRENT_FORMAT, manifest_from_files, walk_tree
from govsnap.errors import GovsnapError, UsageError
from govsnap.repo import Repo
from govsnap.rollback import RollbackOptions, rollback
from govsnap.safepaths import find_unsafe
from govsnap.store import Snapshot, list_snapshots, resolve, snapshot_tree

DAMAGE_KINDS = ("delete", "corrupt", "stray", "index")
DEFAULT_RTO = 300.0
GATES = ("safe-tree", "rollback", "digest", "files", "no-stray", "index", "rto")
# Copied into the clone so it signs and verifies as the repository does; core.* and
# extensions.* describe the repository itself and stay the clone's own.
_OWN_CONFIG = ("core.", "extensions.")


@dataclass(frozen=True)
class Damage:
    """One kind of damage done to the throwaway work tree, and where."""

    kind: str
    paths: tuple[str, ...]


@dataclass(frozen=True)
class Gate:
    """One validation of the restored state."""

    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class RehearsalReport:
    """Everything a rehearsal did and found."""

    snapshot: str
    summary: str
    digest: str
    started: str
    rto: float
    damage: tuple[Damage, ...]
    gates: tuple[Gate, ...]
    timings: dict[str, float]
    rollback_seconds: float | None
    files: int
    report_files: tuple[str, ...] = ()
    warnings: tuple[str, ...] = field(default=())

    @property
    def passed(self) -> bool:
        """Return True when every gate passed."""
        return all(g.passed for g in self.gates)

    @property
    def failed_gates(self) -> list[str]:
        """Return the names of the gates that failed."""
        return [g.name for g in self.gates if not g.passed]

    def as_json(self) -> dict[str, Any]:
        """Return the report as JSON-ready data."""
        return {
            "snapshot": self.snapshot,
            "summary": self.summary,
            "digest": self.digest,
            "started": self.started,
            "verdict": "pass" if self.passed else "fail",
            "failed_gates": self.failed_gates,
            "rto_seconds": self.rto,
            "rollback_seconds": None
            if self.rollback_seconds is None
            else round(self.rollback_seconds, 6),
            "files": self.files,
            "damage": [{"kind": d.kind, "paths": list(d.paths)} for d in self.damage],
            "gates": [{"name": g.name, "passed": g.passed, "detail": g.detail} for g in self.gates],
            "timings": {k: round(v, 6) for k, v in self.timings.items()},
            "report_files": list(self.report_files),
            "warnings": list(self.warnings),
            "tool_version": __version__,
        }

    def note_summary(self) -> dict[str, Any]:
        """Return what the snapshot's note records about its last rehearsal."""
        return {
            "time": self.started,
            "verdict": "pass" if self.passed else "fail",
            "failed_gates": self.failed_gates,
            "damage": [d.kind for d in self.damage],
            "rollback_seconds": None
            if self.rollback_seconds is None
            else round(self.rollback_seconds, 3),
            "rto_seconds": self.rto,
            "tool_version": __version__,
        }

    def markdown(self) -> str:
        """Return the report as a Markdown document."""
        verdict = "PASS" if self.passed else f"FAIL ({', '.join(self.failed_gates)})"
        took = "-" if self.rollback_seconds is None else f"{self.rollback_seconds:.3f} s"
        lines = [
            f"# Rollback rehearsal of snapshot {self.snapshot}",
            "",
            f"- **Verdict: {verdict}**",
            f"- Snapshot: `{self.snapshot}` ({self.summary})",
            f"- Digest: `{self.digest}`, {self.files} files",
            f"- Started: {self.started}",
            f"- Recovery time: {took} (objective {self.rto:g} s)",
            "",
            "## Damage",
            "",
            "| kind | paths |",
            "|---|---|",
        ]
        for d in self.damage:
            shown = ", ".join(f"`{p}`" for p in d.paths[:10]) or "-"
            more = f" and {len(d.paths) - 10} more" if len(d.paths) > 10 else ""
            lines.append(f"| {d.kind} | {shown}{more} |")
        lines += ["", "## Gates", "", "| gate | result | detail |", "|---|---|---|"]
        for g in self.gates:
            detail = g.detail.replace("|", "\\|")
            lines.append(f"| {g.name} | {'pass' if g.passed else '**FAIL**'} | {detail} |")
        lines += ["", "## Timings", "", "| step | seconds |", "|---|---|"]
        lines += [f"| {k} | {v:.3f} |" for k, v in self.timings.items()]
        if self.warnings:
            lines += ["", "## Warnings", ""] + [f"- {w}" for w in self.warnings]
        return "\n".join(lines) + "\n"


# --- the throwaway clone -----------------------------------------------------------------


@contextmanager
def _signals_interrupt() -> Iterator[None]:
    """Turn SIGTERM and SIGHUP into KeyboardInterrupt inside, so clean-up code runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = {s: signal.signal(s, interrupt) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def shared_clone(repo: Repo, path: Path) -> Repo:
    """Return a new repository at `path` sharing `repo`'s objects (alternates), with a copy
    of its refs, HEAD and repository-level configuration; `repo` is only read."""
    clone = pygit2.init_repository(str(path))
    alternates = Path(clone.path) / "objects" / "info" / "alternates"
    alternates.write_text(str((repo.commondir / "objects").resolve()) + "\n")
    clone = pygit2.Repository(str(path))  # reopened so the alternates are read
    for ref in repo.git.references.iterator():
        target = ref.target
        if isinstance(target, pygit2.Oid):
            clone.references.create(ref.name, target, force=True)
    head = repo.git.references.get("HEAD")
    if head is not None and isinstance(head.target, str):
        clone.references.create("HEAD", head.target, force=True)
    elif head is not None:
        clone.set_head(head.target)
    for entry in repo.git.config:
        local = entry.level == ConfigLevel.LOCAL and entry.value is not None
        if local and not entry.name.startswith(_OWN_CONFIG):
            clone.config.set_multivar(entry.name, "^$", entry.value or "")
    _copy_digest_cache(repo, Path(clone.path) / "govsnap")
    return Repo(clone)


def _copy_digest_cache(repo: Repo, state_dir: Path) -> None:
    """Give the clone the digest cache so it hashes no more than the repository would (the
    cache is keyed by content ids, so a copy is never wrong; a failure only costs time)."""
    source = repo.commondir / "govsnap" / CACHE_NAME
    if not source.is_file():
        return
    state_dir.mkdir(exist_ok=True)
    try:
        with sqlite3.connect(source) as src, sqlite3.connect(state_dir / CACHE_NAME) as dst:
            src.backup(dst)
    except sqlite3.Error:
        (state_dir / CACHE_NAME).unlink(missing_ok=True)


# --- damage ------------------------------------------------------------------------------


def _regular_files(repo: Repo, tree: pygit2.Tree) -> list[str]:
    return sorted(
        os.fsdecode(e.path)
        for e in walk_tree(repo, tree.id)
        if e.mode in (FileMode.BLOB, FileMode.BLOB_EXECUTABLE)
    )


def do_damage(
    workdir: Path, gitdir: Path, files: list[str], kinds: list[str], seed: str
) -> list[Damage]:
    """Damage the work tree as `kinds` say (a few files each), deterministically by `seed`."""
    rng = random.Random(seed)
    count = max(1, min(10, len(files) // 10))
    pool = list(files)
    rng.shuffle(pool)
    done: list[Damage] = []
    for kind in kinds:
        paths: list[str] = []
        if kind == "delete":
            paths, pool = pool[:count], pool[count:]
            for p in paths:
                (workdir / p).unlink(missing_ok=True)
        elif kind == "corrupt":
            paths, pool = pool[:count], pool[count:]
            for p in paths:
                target = workdir / p
                if target.is_file() and not target.is_symlink():
                    target.write_bytes(b"\0govsnap rehearsal corruption\0" + rng.randbytes(64))
        elif kind == "stray":
            token = rng.randbytes(4).hex()
            paths = [f"govsnap-stray-{token}.txt", f"govsnap-stray-{token}/nested/stray.bin"]
            if files:
                parent = files[rng.randrange(len(files))].rpartition("/")[0]
                paths.append(f"{parent}/govsnap-stray-{token}.tmp" if parent else f"stray-{token}")
            for p in paths:
                (workdir / p).parent.mkdir(parents=True, exist_ok=True)
                (workdir / p).write_bytes(rng.randbytes(32))
        elif kind == "index":
            paths = [".git/index"]
            (gitdir / "index").write_bytes(b"DIRC" + rng.randbytes(60))
        done.append(Damage(kind, tuple(paths)))
    return done


# --- validation --------------------------------------------------------------------------


def _disk_entries(workdir: Path) -> dict[bytes, tuple[int, bytes]]:
    """Return path -> (git mode, content) for every file and symlink below the work tree,
    read from the filesystem without git."""
    found: dict[bytes, tuple[int, bytes]] = {}
    root = os.fsencode(workdir)
    for dirpath, dirnames, filenames in os.walk(root):
        if dirpath == root:
            dirnames[:] = [d for d in dirnames if d != b".git"]
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root)
            info = os.lstat(full)
            if stat.S_ISLNK(info.st_mode):
                found[rel] = (FileMode.LINK, os.readlink(full))
            else:
                mode = FileMode.BLOB_EXECUTABLE if info.st_mode & stat.S_IXUSR else FileMode.BLOB
                with open(full, "rb") as fh:
                    found[rel] = (mode, fh.read())
    return found


def validate(repo: Repo, snap: Snapshot, tree: pygit2.Tree) -> list[Gate]:
    """Return the digest, files, no-stray and index gates for the clone's restored state."""
    workdir = repo.workdir
    expected = {e.path: e for e in walk_tree(repo, tree.id)}
    disk = _disk_entries(workdir)
    files: list[tuple[int, str, bytes]] = []
    wrong: list[str] = []
    for path, entry in sorted(expected.items()):
        if entry.mode == FileMode.COMMIT:
            # A submodule is an empty directory here; its commit id is all there is.
            if not (workdir / os.fsdecode(path)).is_dir():
                wrong.append(f"{os.fsdecode(path)} (missing submodule directory)")
            files.append((entry.mode, str(entry.oid), path))
            continue
        got = disk.get(path)
        if got is None:
            wrong.append(f"{os.fsdecode(path)} (missing)")
            continue
        mode, content = got
        try:
            blob = repo.git[entry.oid]
            same = isinstance(blob, pygit2.Blob) and blob.data == content
        except (KeyError, ValueError):
            same = False
        if mode != entry.mode:
            wrong.append(f"{os.fsdecode(path)} (mode {mode:o}, snapshot {entry.mode:o})")
        elif not same:
            wrong.append(f"{os.fsdecode(path)} (content differs)")
        files.append((mode, hashlib.sha256(content).hexdigest(), path))
    extra = sorted(p for p in disk if p not in expected)
    for raw in extra:
        mode, content = disk[raw]
        files.append((mode, hashlib.sha256(content).hexdigest(), raw))
    stray = [os.fsdecode(p) for p in extra]
    fmt = snap.payload.format if snap.payload else CURRENT_FORMAT
    digest = "sha256:" + hashlib.sha256(manifest_from_files(files, fmt)).hexdigest()
    signed = snap.payload.digest if snap.payload else "?"
    gates = [
        Gate(
            "digest",
            digest == signed,
            f"restored {digest[:19]}… {'=' if digest == signed else '≠'} signed {signed[:19]}…",
        ),
        Gate(
            "files",
            not wrong,
            f"{len(expected)} files byte-equal" if not wrong else _listing(wrong, "differ"),
        ),
        Gate("no-stray", not stray, "no stray files" if not stray else _listing(stray, "stray")),
    ]
    try:
        index_tree = pygit2.Repository(str(repo.gitdir)).index.write_tree()
        same_index = index_tree == tree.id
        detail = "index tree = snapshot tree" if same_index else f"index tree is {index_tree}"
    except pygit2.GitError as exc:
        same_index, detail = False, f"index unreadable: {exc}"
    gates.append(Gate("index", same_index, detail))
    return gates


def _listing(paths: list[str], what: str) -> str:
    more = f" and {len(paths) - 5} more" if len(paths) > 5 else ""
    return f"{len(paths)} {what}: {', '.join(paths[:5])}{more}"


# --- the operation -----------------------------------------------------------------------


def resolve_rto(repo: Repo, rto: float | None) -> float:
    """Return the recovery time objective in seconds: the option, govsnap.rto, or 300."""
    value = rto if rto is not None else repo.config_int("govsnap.rto", None)
    value = DEFAULT_RTO if value is None else float(value)
    if value <= 0:
        raise UsageError(f"the recovery time objective must be positive, not {value:g}")
    return value


def damage_kinds(damage: str | None) -> list[str]:
    """Return the damage kinds to apply: all of them, or the one named."""
    if damage is None or damage == "all":
        return list(DAMAGE_KINDS)
    if damage not in DAMAGE_KINDS:
        raise UsageError(f"unknown damage {damage!r} (known: {', '.join(DAMAGE_KINDS)}, all)")
    return [damage]


def rehearse(
    repo: Repo,
    name: str | None = None,
    damage: str | None = None,
    rto: float | None = None,
    report_path: Path | None = None,
) -> RehearsalReport:
    """Rehearse a rollback to snapshot `name` (default latest) in a throwaway clone; write
    the JSON and Markdown reports, record the result in the snapshot's note and the audit
    trail, and return the report. The clone is removed even when interrupted."""
    started = time.monotonic()
    kinds = damage_kinds(damage)
    objective = resolve_rto(repo, rto)
    snap = resolve(repo, name or "latest", list_snapshots(repo))
    tree = snapshot_tree(repo, snap)
    stamp = datetime.now(UTC)
    timings: dict[str, float] = {}
    warnings: list[str] = []
    gates: list[Gate] = []
    done: list[Damage] = []
    rollback_seconds: float | None = None
    files = 0
    scratch = Path(tempfile.mkdtemp(prefix="govsnap-rehearsal-"))
    with _signals_interrupt():
        try:
            unsafe = find_unsafe(repo, tree.id)
            gates.append(
                Gate(
                    "safe-tree",
                    not unsafe,
                    "every entry is safe to check out"
                    if not unsafe
                    else "; ".join(u.describe() for u in unsafe[:3]),
                )
            )
            if not unsafe:
                mark = time.monotonic()
                clone = shared_clone(repo, scratch / "work")
                try:
                    clone.git.checkout_tree(clone.git[tree.id], strategy=CheckoutStrategy.FORCE)  # type: ignore[no-untyped-call]
                except pygit2.GitError as exc:
                    warnings.append(f"the snapshot could not be checked out whole: {exc}")
                timings["setup"] = time.monotonic() - mark
                mark = time.monotonic()
                regular = _regular_files(clone, tree) if not warnings else []
                files = len(regular)
                done = do_damage(clone.workdir, clone.gitdir, regular, kinds, snap.id)
                timings["damage"] = time.monotonic() - mark
                mark = time.monotonic()
                try:
                    result = rollback(
                        Repo(pygit2.Repository(str(clone.workdir))), snap.id, RollbackOptions()
                    )
                    rollback_seconds = time.monotonic() - mark
                    timings.update({f"rollback.{k}": v for k, v in result.timings.items()})
                    gates.append(Gate("rollback", True, f"completed in {rollback_seconds:.3f} s"))
                except GovsnapError as exc:
                    gates.append(Gate("rollback", False, exc.message))
                timings["rollback"] = time.monotonic() - mark
                mark = time.monotonic()
                gates.extend(validate(clone, snap, tree))
                timings["validate"] = time.monotonic() - mark
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    if rollback_seconds is None:
        gates.append(Gate("rto", False, "no recovery time: the rollback did not complete"))
    else:
        within = rollback_seconds <= objective
        gates.append(
            Gate(
                "rto", within, f"{rollback_seconds:.3f} s {'<=' if within else '>'} {objective:g} s"
            )
        )
    timings["total"] = time.monotonic() - started
    report = RehearsalReport(
        snapshot=snap.id,
        summary=snap.payload.summary if snap.payload else str(snap.error),
        digest=snap.payload.digest if snap.payload else "?",
        started=stamp.strftime("%Y-%m-%dT%H:%M:%SZ"),
        rto=objective,
        damage=tuple(done),
        gates=tuple(gates),
        timings=timings,
        rollback_seconds=rollback_seconds,
        files=files,
        warnings=tuple(warnings),
    )
    report = _write_reports(repo, report, report_path, stamp)
    identity = repo.committer()
    verdict = "pass" if report.passed else f"failed: {', '.join(report.failed_gates)}"
    entry = audit.EntryWriter(
        repo,
        "rehearse",
        f"rehearsal of {snap.id}: {verdict}",
        snapshots=[snap.id],
        identity=identity,
        arguments={"damage": kinds, "rto": objective},
        result="ok" if report.passed else verdict,
        duration=timings["total"],
    )
    summary = report.note_summary()

    def merge(note: notes.JSONObject | None) -> notes.JSONObject:
        return {**(note or {}), "rehearsal": summary}

    # The result in the note and the audit entry are written together.
    audit.append_with_notes(repo, entry, {snap.tag_oid: merge}, "Notes added by 'govsnap'")
    return report


def _write_reports(
    repo: Repo, report: RehearsalReport, base: Path | None, stamp: datetime
) -> RehearsalReport:
    """Write `<base>.json` and `<base>.md` (default under .git/govsnap/rehearsals/)."""
    if base is None:
        folder = repo.state_dir / "rehearsals"
        folder.mkdir(exist_ok=True)
        base = folder / f"{report.snapshot}-{stamp.strftime('%Y%m%dT%H%M%SZ')}"
    elif base.suffix in (".json", ".md"):
        base = base.with_suffix("")
    json_path, md_path = base.with_name(base.name + ".json"), base.with_name(base.name + ".md")
    done = RehearsalReport(**{**report.__dict__, "report_files": (str(json_path), str(md_path))})
    try:
        base.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(done.as_json(), indent=2, sort_keys=True) + "\n")
        md_path.write_text(done.markdown())
    except OSError as exc:
        raise UsageError(f"cannot write the rehearsal report to {base}: {exc}") from exc
    return done
