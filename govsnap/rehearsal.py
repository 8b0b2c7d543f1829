"""Rollback rehearsal: the real rollback, in a throwaway shared clone that was damaged
first, checked byte for byte against the snapshot and timed against the recovery time
objective. The user's working tree, index, HEAD and branches are never touched."""

from __future__ import annotations

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
from pygit2.enums import ConfigLevel

from govsnap import __version__, audit, notes, worktree
from govsnap.digest import CACHE_NAME, CURRENT_FORMAT, DigestCache, digest_tree
from govsnap.errors import CheckFailed, CorruptObject, GovsnapError, UsageError
from govsnap.repo import Repo
from govsnap.rollback import RecordedState, RollbackOptions, read_recorded_state, rollback
from govsnap.safepaths import find_unsafe
from govsnap.store import Snapshot, list_snapshots, resolve, snapshot_tree
from govsnap.worktree import TreeEntry, fs_path

DAMAGE_KINDS = ("delete", "corrupt", "stray", "index")
DEFAULT_RTO = 300.0
# The clone gets the repository's local configuration, so that it signs, verifies,
# filters (filter.*, lfs.*), converts line endings (core.autocrlf, core.eol) and checks
# out sparsely (core.sparseCheckout) as the repository does; but not what describes the
# repository itself or would run the user's programs (hooks, fsmonitor).
_OWN_CONFIG = (
    "extensions.",
    "core.bare",
    "core.worktree",
    "core.repositoryformatversion",
    "core.hookspath",
    "core.fsmonitor",
    "core.sharedrepository",
    "core.logallrefupdates",
)
# Files under the git directory that shape what a checkout writes or ignores.
_INFO_FILES = ("info/attributes", "info/exclude", "info/sparse-checkout")


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

    def check(self) -> None:
        """Raise CheckFailed unless every gate passed."""
        if not self.passed:
            raise CheckFailed(
                f"rehearsal of {self.snapshot} failed: {', '.join(self.failed_gates)}"
            )

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
    of its refs, HEAD, configuration (see _OWN_CONFIG) and attribute, exclude and
    sparse-checkout files; `repo` is only read."""
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
        # config.worktree (git sparse-checkout writes core.sparseCheckout there) counts too.
        local = entry.level in (ConfigLevel.LOCAL, ConfigLevel.WORKTREE)
        if local and entry.value is not None and not entry.name.lower().startswith(_OWN_CONFIG):
            clone.config.set_multivar(entry.name, "^$", entry.value or "")
    lfs = repo.commondir / "lfs"
    if lfs.is_dir() and repo.config_str("lfs.storage") is None:
        # Large files stay where the repository keeps them, not fetched again.
        clone.config["lfs.storage"] = str(lfs.resolve())
    for name in _INFO_FILES:
        source = (repo.gitdir if name == "info/sparse-checkout" else repo.commondir) / name
        if source.is_file():
            (Path(clone.path) / name).parent.mkdir(exist_ok=True)
            shutil.copyfile(source, Path(clone.path) / name)
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


def _regular_files(repo: Repo, tree: str) -> list[str]:
    """Return the snapshot's regular files that the clone's checkout put on disk."""
    root = os.fsencode(repo.workdir)
    return sorted(
        fs_path(e.path)
        for e in worktree.tree_entries(repo, tree)
        if e.mode in worktree.REGULAR and stat.S_ISREG(worktree.lstat_mode(root + b"/" + e.path))
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


def _files_gate(
    repo: Repo, listed: list[TreeEntry], recorded: RecordedState | None, skipped: set[bytes]
) -> Gate:
    """Return the files gate: every file of the snapshot is on disk with the bytes, type
    and exec bit git's own checkout of it writes (filters and eol conversion applied), or
    the bytes a safety snapshot recorded where that checkout would not reproduce them."""
    root = os.fsencode(repo.workdir)
    raw = {e.path: e for e in recorded.raw_files} if recorded is not None else {}
    file_mode = repo.config_bool("core.fileMode", True)
    wrong: list[str] = []
    regular: list[TreeEntry] = []
    entries = [e for e in listed if e.path not in skipped]
    for entry in entries:
        entry = raw.get(entry.path, entry)
        name = fs_path(entry.path)
        mode = worktree.lstat_mode(root + b"/" + entry.path)
        if entry.mode == worktree.GITLINK:
            # A submodule is a directory here; its commit id is all there is.
            if not stat.S_ISDIR(mode):
                wrong.append(f"{name} (missing submodule directory)")
        elif mode == 0:
            wrong.append(f"{name} (missing)")
        elif entry.mode == worktree.SYMLINK:
            blob = _blob(repo, entry.oid)
            if not stat.S_ISLNK(mode):
                wrong.append(f"{name} (not a symlink)")
            elif blob is None or os.readlink(root + b"/" + entry.path) != blob:
                wrong.append(f"{name} (symlink target differs)")
        elif not stat.S_ISREG(mode):
            wrong.append(f"{name} (not a file)")
        elif file_mode and bool(mode & stat.S_IXUSR) != (entry.mode == 0o100755):
            wrong.append(f"{name} (exec bit differs)")
        else:
            regular.append(entry)
    wrong += _content_differs(repo, regular, set(raw))
    if wrong:
        return Gate("files", False, _listing(sorted(wrong), "differ"))
    return Gate("files", True, f"{len(entries)} files as git's checkout writes them")


def _blob(repo: Repo, oid: str) -> bytes | None:
    try:
        obj = repo.git[oid]
    except (KeyError, ValueError, pygit2.GitError):
        return None
    return obj.data if isinstance(obj, pygit2.Blob) else None


def _content_differs(repo: Repo, entries: list[TreeEntry], raw: set[bytes]) -> list[str]:
    """Return the regular files whose bytes on disk are not what git's checkout writes."""
    wrong: list[str] = []
    with worktree.scratch_index(repo) as index:
        worktree.build_index(repo, index, entries)
        converted = set(
            worktree.converted_paths(repo, index, [e.path for e in entries if e.path not in raw])
        )
        expected = worktree.would_write(repo, index, sorted(converted))
    root = os.fsencode(repo.workdir)
    plain = [e for e in entries if e.path not in converted]
    disk = worktree.hash_files(repo, [e.path for e in plain])
    for entry in plain:
        if disk.get(entry.path) != entry.oid:
            wrong.append(f"{fs_path(entry.path)} (content differs)")
    for path in sorted(converted):
        with open(root + b"/" + path, "rb") as fh:
            if expected.get(path) != fh.read():
                wrong.append(f"{fs_path(path)} (content differs from git's checkout)")
    return wrong


def validate(repo: Repo, snap: Snapshot, tree: pygit2.Tree) -> list[Gate]:
    """Return the digest, files, no-stray and index gates for the clone's restored state,
    each judged by git: what `git add -A` would commit from the restored working tree,
    what git's checkout writes, and the index git reads."""
    oid = str(tree.id)
    listed = worktree.tree_entries(repo, oid)
    recorded = read_recorded_state(repo, snap)
    signed = snap.payload.digest if snap.payload else "?"
    gates: list[Gate] = []
    try:
        # Read as a safety snapshot reads: what the index assumes unchanged too.
        with worktree.captured(repo, safety=True) as capture:
            # A clone has no content for gitlinks (submodules, nested repositories): their
            # directories count for them, as the files gate checks.
            root = os.fsencode(repo.workdir)
            worktree.add_entries(
                repo,
                capture.index,
                (
                    e
                    for e in listed
                    if e.mode == worktree.GITLINK
                    and stat.S_ISDIR(worktree.lstat_mode(root + b"/" + e.path))
                ),
            )
            restored = worktree.write_tree(repo, capture.index)
        fmt = snap.payload.format if snap.payload else CURRENT_FORMAT
        digest = digest_tree(repo, restored, DigestCache.for_repo(repo), fmt=fmt).digest
        same = digest == signed
        gates.append(
            Gate(
                "digest",
                same,
                f"restored {digest[:19]}… {'=' if same else '≠'} signed {signed[:19]}…",
            )
        )
        stray = [
            fs_path(c.path) for c in worktree.diff_trees(repo, oid, restored) if c.status == "A"
        ]
    except (GovsnapError, CorruptObject) as exc:
        gates.append(Gate("digest", False, f"cannot capture the restored state: {exc.message}"))
        stray = []
    index = worktree.user_index(repo)
    skipped: set[bytes] = set()
    if worktree.index_readable(repo, index):
        skipped = set(worktree.flagged_paths(repo, index)[0])
    gates.append(_files_gate(repo, listed, recorded, skipped))
    gates.append(
        Gate("no-stray", not stray, "no stray files" if not stray else _listing(stray, "stray"))
    )
    gates.append(_index_gate(repo, oid, recorded, snap))
    return gates


def _index_gate(repo: Repo, tree: str, recorded: RecordedState | None, snap: Snapshot) -> Gate:
    """Return the index gate: the clone's index holds the snapshot's tree or, for a safety
    snapshot, exactly the entries and flags of the index it recorded."""
    index = worktree.user_index(repo)
    if not worktree.index_readable(repo, index):
        return Gate("index", False, "the index is unreadable")
    if recorded is None or recorded.legacy:
        want_tree = tree if recorded is None else recorded.index_tree
        try:
            have = worktree.write_tree(repo, index)
        except GovsnapError as exc:
            return Gate("index", False, f"index unreadable: {exc.message}")
        what = "snapshot tree" if recorded is None else "recorded index tree"
        if have == want_tree:
            return Gate("index", True, f"index tree = {what}")
        return Gate("index", False, f"index tree is {have}, not the {what}")
    have_entries = worktree.index_entries(repo, index)
    with worktree.scratch_index(repo) as wanted:
        if recorded.index is not None:
            recorded.index.copy_to(wanted)
        want_entries = worktree.index_entries(repo, wanted)
    if have_entries == want_entries:
        return Gate("index", True, f"{len(want_entries)} entries = the index {snap.id} recorded")
    differ = sorted({fs_path(e.path) for e in set(have_entries) ^ set(want_entries)})
    return Gate("index", False, _listing(differ, "entries differ from the recorded index"))


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
    with audit.operation(repo, "rehearse") as op:
        return _rehearse(repo, op, name, damage, rto, report_path)


def _rehearse(
    repo: Repo,
    op: audit.Operation,
    name: str | None,
    damage: str | None,
    rto: float | None,
    report_path: Path | None,
) -> RehearsalReport:
    kinds = damage_kinds(damage)
    objective = resolve_rto(repo, rto)
    if report_path is not None and not report_path.parent.is_dir():
        # As git does for `archive -o`: a report goes into a directory that exists, and
        # never makes directories wherever a mistyped path points.
        raise UsageError(
            f"cannot write the rehearsal report to {report_path}: the directory "
            f"{report_path.parent} does not exist"
        )
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
                worktree.fetch_missing(repo, [str(tree.id)])
                clone = shared_clone(repo, scratch / "work")
                # git's own checkout of the snapshot, as the clone is configured.
                checkout = clone.git_cmd("read-tree", "-u", "--reset", str(tree.id), check=False)
                if checkout.returncode != 0:
                    warnings.append(
                        "the snapshot could not be checked out whole: "
                        + worktree.git_error(checkout.stderr)
                    )
                timings["setup"] = time.monotonic() - mark
                mark = time.monotonic()
                regular = _regular_files(clone, str(tree.id)) if not warnings else []
                files = len(regular)
                done = do_damage(clone.workdir, clone.gitdir, regular, kinds, snap.id)
                timings["damage"] = time.monotonic() - mark
                mark = time.monotonic()
                try:
                    # A throwaway clone: restoring an older trust policy there is the point.
                    result = rollback(
                        Repo(pygit2.Repository(str(clone.workdir))),
                        snap.id,
                        RollbackOptions(allow_policy_change=True),
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
    timings["total"] = op.seconds
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
    verdict = "pass" if report.passed else f"failed: {', '.join(report.failed_gates)}"
    summary = report.note_summary()

    def merge(note: notes.JSONObject | None) -> notes.JSONObject:
        return {**(note or {}), "rehearsal": summary}

    # The result in the note and the audit entry are written together.
    entry = op.entry(
        f"rehearsal of {snap.id}: {verdict}",
        snapshots=[snap.id],
        arguments={"damage": kinds, "rto": objective},
        result="ok" if report.passed else verdict,
    )
    op.record(entry, notes={snap.tag_oid: merge})
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
        json_path.write_text(json.dumps(done.as_json(), indent=2, sort_keys=True) + "\n")
        # A file name that is not UTF-8 reaches us with lone surrogates: show it escaped.
        md_path.write_text(done.markdown(), errors="backslashreplace")
    except OSError as exc:
        raise UsageError(f"cannot write the rehearsal report to {base}: {exc}") from exc
    return done
