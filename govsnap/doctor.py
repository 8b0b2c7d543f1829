"""`govsnap doctor`: find, and with --fix repair, what interrupted operations leave
behind. It never deletes a snapshot: at most it sets aside a ref whose object is gone."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import pygit2

from govsnap import audit, notes, progress, worktree
from govsnap.digest import DigestCache, key_path
from govsnap.errors import CheckFailed, CorruptObject, GovsnapError
from govsnap.objects import (
    SnapshotPayload,
    delete_ref,
    read_tag,
    ref_target,
    update_ref,
)
from govsnap.refs import (
    AUDIT_REF,
    GOVSNAP_ROOT,
    NOTES_REF,
    SNAPSHOT_REF_PREFIX,
    TRACKING_ROOT,
    VERIFIED_AUDIT_REF,
    is_audit_copy,
    is_tracked_notes_ref,
    snapshot_ref,
)
from govsnap.repo import Repo
from govsnap.schemas import schema_name
from govsnap.store import snapshot_refs

STALE_LOCK_SECONDS = 600
QUARANTINE_LOG = "quarantine.log"
BY = "govsnap doctor"


FindingKind = Literal[
    "stale-lock",
    "torn-cache",
    "cache-key",
    "broken-ref",
    "dangling-snapshot-ref",
    "orphan-note",
    "missing-note",
    "disputed-note",
    "killed-rollback-lock",
    "empty-index-lock",
    "leftover-index",
    "capture-blocked",
    "unreadable-index",
    "dangling-audit",
    "truncated-audit",
    "rewritten-audit",
]


@dataclass(frozen=True)
class Finding:
    """One inconsistency: what it is, where, and how --fix repairs it (None: it cannot)."""

    kind: FindingKind
    subject: str
    problem: str
    fix: str | None
    fixed: bool = False

    def as_json(self) -> dict[str, Any]:
        """Return the finding as JSON-ready data."""
        return {
            "kind": self.kind,
            "subject": self.subject,
            "problem": self.problem,
            "fix": self.fix,
            "fixed": self.fixed,
        }


@dataclass(frozen=True)
class DoctorReport:
    """What `doctor` found and, with --fix, repaired."""

    findings: tuple[Finding, ...]
    fix: bool
    dry_run: bool
    notes: tuple[str, ...] = ()  # checks skipped, and why (a read-only .git)

    @property
    def ok(self) -> bool:
        """Return True when nothing is left to repair."""
        return all(f.fixed for f in self.findings)

    @property
    def left(self) -> list[Finding]:
        """Return the findings not repaired."""
        return [f for f in self.findings if not f.fixed]

    def as_json(self) -> dict[str, Any]:
        """Return the report as JSON-ready data."""
        return {
            "schema": schema_name("doctor"),
            "ok": self.ok,
            "fix": self.fix,
            "dry_run": self.dry_run,
            "findings": [f.as_json() for f in self.findings],
            "notes": list(self.notes),
        }

    def check(self) -> None:
        """Raise CheckFailed while problems remain."""
        if not self.ok:
            raise CheckFailed(f"{len(self.left)} problem(s) found and not repaired")


def stale_lock_seconds(repo: Repo) -> int:
    """Return the age after which a lock file is stale (`govsnap.staleLockSeconds`)."""
    value = repo.config_int("govsnap.staleLockSeconds", STALE_LOCK_SECONDS)
    return STALE_LOCK_SECONDS if value is None else value


# --- diagnosis ---------------------------------------------------------------------------


def _lock_files(repo: Repo) -> list[Path]:
    """Return the lock files git and govsnap may leave for govsnap's state."""
    common = repo.commondir
    found = [common / "packed-refs.lock", repo.gitdir / "index.lock"]
    areas = ("govsnap", "govsnap-remote", "notes")  # govsnap-remote: fetch's copies
    for area in (*(common / "refs" / name for name in areas), repo.state_dir):
        if area.is_dir():
            found.extend(area.rglob("*.lock"))
    return [path for path in found if path.is_file()]


def find_stale_locks(repo: Repo, now: float) -> list[Finding]:
    """Return a finding per lock file older than the stale age."""
    limit = stale_lock_seconds(repo)
    findings = []
    scratch = worktree.scratch_dir(repo)
    for path in _lock_files(repo):
        if path.parent == scratch or worktree.left_by_dead_govsnap(path):
            continue  # find_capture_problems reports those
        if path.name == "index.lock" and worktree.abandoned_empty_lock(path):
            continue
        try:
            age = now - path.stat().st_mtime
        except FileNotFoundError:
            continue
        if age > limit:
            findings.append(
                Finding(
                    "stale-lock",
                    str(path),
                    f"lock file left {int(age)} s ago (stale after {limit} s) blocks updates",
                    "remove the lock file",
                )
            )
    return findings


def find_capture_problems(repo: Repo, now: float) -> list[Finding]:
    """Return what stops `create` or a rollback from capturing the working tree, as git
    reports it: an index git cannot read, a path `git add -A` refuses, an index lock a
    killed rollback left; and the temporary index files such a rollback leaves behind."""
    if repo.is_bare:
        return []
    findings: list[Finding] = []
    lock = worktree.user_index(repo).with_name("index.lock")
    owner = worktree.lock_owner(lock)
    if owner is not None and owner.dead():
        running = owner.survivors()
        if running:
            findings.append(
                Finding(
                    "killed-rollback-lock",
                    str(lock),
                    f"a govsnap rollback was killed holding the index lock, and process "
                    f"{running[0]} it started still runs (it may still write the working "
                    "tree): wait for it to end or kill it",
                    None,
                )
            )
        else:
            findings.append(
                Finding(
                    "killed-rollback-lock",
                    str(lock),
                    "a govsnap rollback was killed holding the index lock (the next rollback "
                    "takes it over; git commands refuse to run until it is gone)",
                    "remove the lock file",
                )
            )
    elif worktree.abandoned_empty_lock(lock):
        findings.append(
            Finding(
                "empty-index-lock",
                str(lock),
                "the index lock is empty and no process has it open: a write that failed "
                "(a full disk) or a process killed while creating it left it behind; git "
                "and govsnap refuse to change the index until it is gone",
                "remove the lock file",
            )
        )
    limit = stale_lock_seconds(repo)
    scratch = worktree.scratch_dir(repo)
    if scratch.is_dir():
        for path in sorted(scratch.iterdir()):
            try:
                age = now - path.stat().st_mtime
            except FileNotFoundError:
                continue
            if age > limit:
                findings.append(
                    Finding(
                        "leftover-index",
                        str(path),
                        f"a temporary index left {int(age)} s ago by a killed govsnap",
                        "remove the file",
                    )
                )
    if not worktree.index_readable(repo, worktree.user_index(repo)):
        findings.append(
            Finding(
                "unreadable-index",
                str(worktree.user_index(repo)),
                "git cannot read the index: create captures without it, a rollback keeps "
                "its bytes aside and rebuilds it",
                None,
            )
        )
    if not repo.writable:
        return findings  # a capture writes objects: run() says it was skipped
    try:
        # Only whether git can capture: its objects go to a temporary directory, so a
        # doctor (and its --dry-run) writes no untracked file's content into .git.
        with worktree.quarantined(repo) as quarantine, worktree.captured(quarantine):
            pass
    except GovsnapError as exc:
        findings.append(Finding("capture-blocked", str(repo.workdir), exc.message, None))
    return findings


def find_torn_cache(repo: Repo) -> list[Finding]:
    """Return a finding when the digest cache database is damaged (a half-written file),
    and one when the user's cache key is unusable."""
    cache = DigestCache.for_repo(repo)
    findings = []
    key_problem = cache.key_problem()
    if key_problem is not None:
        # Without a key nothing in the cache is used: slow, never wrong. The user decides.
        findings.append(Finding("cache-key", str(key_path()), key_problem, None))
    problem = cache.problem()
    if problem is not None:
        findings.append(
            Finding(
                "torn-cache",
                str(cache.path),
                problem,
                "delete the cache; the next digest rebuilds it from the objects",
            )
        )
    return findings


def _object_exists(repo: Repo, oid: pygit2.Oid) -> bool:
    return bool(repo.git.odb.exists(oid))


def _reflog_fallback(repo: Repo, name: str) -> pygit2.Oid | None:
    """Return the newest earlier value of `name` whose commit and tree are present."""
    ref = repo.git.references.get(name)
    if ref is None:
        return None
    try:
        entries = list(ref.log())
    except pygit2.GitError:
        return None
    for entry in entries:
        oid = entry.oid_new
        try:
            commit = repo.git[oid]
        except (KeyError, ValueError, pygit2.GitError):
            continue
        if isinstance(commit, pygit2.Commit) and _object_exists(repo, commit.tree_id):
            return oid
    return None


def find_broken_refs(repo: Repo) -> list[Finding]:
    """Return a finding per govsnap or notes ref that points at a missing object."""
    findings = []
    for ref in repo.git.references.iterator():
        name = ref.name
        if not (name.startswith(GOVSNAP_ROOT) or name == NOTES_REF):
            continue
        if name == AUDIT_REF:
            continue  # find_audit_problems: the chain has repairs of its own
        target = ref.target
        if not isinstance(target, pygit2.Oid) or _object_exists(repo, target):
            continue
        if name.startswith(SNAPSHOT_REF_PREFIX):
            findings.append(
                Finding(
                    "dangling-snapshot-ref",
                    name,
                    f"points at {target}, which is not in the object store: the snapshot's "
                    "tag is lost",
                    f"set the ref aside in .git/govsnap/{QUARANTINE_LOG} (restore it with "
                    f"`git update-ref {name} {target}` once the object is fetched again)",
                )
            )
            continue
        earlier = _reflog_fallback(repo, name)
        findings.append(
            Finding(
                "broken-ref",
                name,
                f"points at {target}, which is not in the object store",
                None if earlier is None else f"reset it to {earlier}, its last intact value",
            )
        )
    return findings


def _present(repo: Repo, oid: pygit2.Oid | None) -> bool:
    return oid is not None and _object_exists(repo, oid)


def find_audit_problems(repo: Repo) -> list[Finding]:
    """Return a finding when the audit ref points at a missing commit (git gc removed an
    entry written while it ran), or no longer holds what this clone recorded of it."""
    current = ref_target(repo, AUDIT_REF)
    recorded = ref_target(repo, VERIFIED_AUDIT_REF)
    if current is not None and not _present(repo, current):
        newest = newest_entry(repo, {current})
        return [
            Finding(
                "dangling-audit",
                AUDIT_REF,
                f"points at {current}, which is not in the object store (git gc removed the "
                "entry while it was being written?): verify, create and rollback cannot "
                "append to it",
                None
                if newest is None
                else f"reattach it to {newest}, the newest entry still present, and record "
                "the gap in a new entry",
            )
        ]
    if recorded is None or current == recorded or not _present(repo, recorded):
        return []
    if current is None or repo.git.descendant_of(recorded, current):
        return [
            Finding(
                "truncated-audit",
                AUDIT_REF,
                f"no longer holds the entries up to {recorded}, which this clone recorded "
                f"({'deleted' if current is None else 'truncated'})",
                f"reset it to {recorded}, this clone's record (nothing is lost)",
            )
        ]
    if not repo.git.descendant_of(current, recorded):
        return [
            Finding(
                "rewritten-audit",
                AUDIT_REF,
                f"was rewritten: it no longer holds {recorded}, which this clone recorded, "
                f"and holds entries that are not on it; compare them (git log "
                f"{recorded} {AUDIT_REF}) and set it yourself (git update-ref)",
                None,
            )
        ]
    return []


def newest_entry(repo: Repo, leave_out: set[pygit2.Oid]) -> pygit2.Oid | None:
    """Return the newest audit entry still in the object store: from the reflog, what this
    clone recorded, the copies fetched from remotes, and unreachable commits."""
    candidates: set[pygit2.Oid] = set()
    ref = repo.git.references.get(AUDIT_REF)
    with contextlib.suppress(pygit2.GitError):
        candidates.update(entry.oid_new for entry in (ref.log() if ref is not None else ()))
    for other in repo.git.references.iterator():
        if is_audit_copy(other.name) and isinstance(other.target, pygit2.Oid):
            candidates.add(other.target)
    fsck = repo.git_cmd("fsck", "--unreachable", "--no-reflogs", "--no-progress", check=False)
    for line in fsck.stdout.decode(errors="replace").splitlines():
        kind, _, rest = line.partition(" ")
        if kind in ("unreachable", "dangling") and rest.startswith("commit "):
            candidates.add(pygit2.Oid(hex=rest.split()[1]))
    best: pygit2.Commit | None = None
    for oid in candidates - leave_out:
        commit = repo.git.get(oid)
        if not isinstance(commit, pygit2.Commit) or str(commit.tree_id) != audit.EMPTY_TREE:
            continue
        if audit.parse_entry(commit).error is not None:
            continue
        if best is None or commit.committer.time > best.committer.time:
            best = commit
    return None if best is None else best.id


def _reset_audit(repo: Repo, finding: Finding) -> bool:
    """Point the audit ref, and this clone's record of it, at the repair's target; for a
    dangling ref, record the gap in a new entry."""
    current = ref_target(repo, AUDIT_REF)
    recorded = ref_target(repo, VERIFIED_AUDIT_REF)
    if finding.kind == "truncated-audit":
        target = recorded
    else:
        target = newest_entry(repo, {current} if current is not None else set())
    if target is None:
        return False
    zero = "0" * 40
    script = (
        f"update {AUDIT_REF}\0{target}\0{current or zero}\0"
        f"update {VERIFIED_AUDIT_REF}\0{target}\0{recorded or zero}\0"
    ).encode()
    proc = repo.git_cmd(
        "update-ref", "--stdin", "-z", "-m", "govsnap doctor", input=script, check=False
    )
    if proc.returncode != 0:
        return False
    if finding.kind == "dangling-audit":
        # Reflog entries naming the lost entry make git gc and git fsck fail; the others
        # are kept.
        for ref in (AUDIT_REF, VERIFIED_AUDIT_REF):
            repo.git_cmd(
                "reflog",
                "expire",
                "--stale-fix",
                "--expire=never",
                "--expire-unreachable=never",
                ref,
                check=False,
            )
        with audit.operation(repo, "doctor", {"fix": True}) as gap:
            lost = f"audit trail reattached to {str(target)[:12]}: entry {current} was lost"
            gap.record(gap.entry(lost, extra={"lost": str(current), "reattached_to": str(target)}))
    return True


def find_note_problems(repo: Repo) -> list[Finding]:
    """Return notes on objects that are no snapshot, snapshots without a note, and notes
    that are not what their snapshot's signed payload says (anyone who can push may edit
    one: verify shows that as a warning, this repairs it)."""
    notes_target = ref_target(repo, NOTES_REF)
    if notes_target is not None and not _object_exists(repo, notes_target):
        return []  # reported as a broken ref; the notes cannot be read until it is fixed
    try:
        blobs = notes.note_blobs(repo)
    except (KeyError, ValueError, pygit2.GitError, AssertionError):
        return [
            Finding(
                "broken-ref",
                NOTES_REF,
                "its tree is missing or damaged, so notes cannot be read",
                None,
            )
        ]
    refs = snapshot_refs(repo)
    tags = {str(oid): ident for ident, oid in refs.items()}
    # Snapshots kept under other govsnap refs (copies fetched from a remote) own notes too.
    held = _govsnap_targets(repo)
    findings = []
    missing: list[tuple[str, str, str]] = []  # (id, tag, problem)
    disputed: list[tuple[str, str, notes.Note, str]] = []  # (id, tag, note, how it departs)
    for obj, blob in sorted(blobs.items()):
        if obj in tags:
            if not _object_exists(repo, blob):
                missing.append((tags[obj], obj, "its note's blob is missing"))
            else:
                note = notes.decode(bytes(repo.git.odb.read(blob)[1]))
                problem = _note_dispute(repo, tags[obj], obj, note)
                if problem is not None:
                    disputed.append((tags[obj], obj, note, problem))
            continue
        if obj in held:
            continue
        findings.append(
            Finding(
                "orphan-note",
                f"{NOTES_REF}:{obj}",
                _orphan_detail(repo, obj),
                "remove the note",
            )
        )
    for ident, oid in sorted(refs.items()):
        if str(oid) not in blobs and _object_exists(repo, oid):
            missing.append((ident, str(oid), "the snapshot has no note"))
    fetched = fetched_notes(repo) if missing or disputed else {}
    findings += [_missing_note(repo, *item, fetched) for item in missing]
    findings += [_disputed_note(repo, *item, fetched) for item in disputed]
    return findings


def _note_dispute(repo: Repo, ident: str, tag_oid: str, note: notes.Note) -> str | None:
    """Return how `note` departs from the snapshot's signed payload, or None (also when
    the tag is unreadable: verify reports that, and nothing can be rebuilt from it)."""
    try:
        payload = SnapshotPayload.parse(read_tag(repo, tag_oid).payload)
    except CorruptObject:
        return None
    return notes.dispute(note, payload, ident)


def _disputed_note(
    repo: Repo,
    ident: str,
    tag_oid: str,
    note: notes.Note,
    problem: str,
    fetched: dict[str, tuple[pygit2.Oid, str]],
) -> Finding:
    if note.error or not note.data:  # nothing of it to keep
        recovered = _recovered_note(repo, ident, tag_oid, fetched)
        fix = (
            "rebuild the note from the signed payload"
            if recovered is None
            else f"recover the note fetched into {recovered[1]}"
        )
    else:
        fix = "copy the signed fields from the payload into the note (keeping the rest)"
    return Finding(
        "disputed-note",
        snapshot_ref(ident),
        f"its note is not what the signed payload says ({problem}); verify warns, and "
        "nothing trusts it",
        fix,
    )


def fetched_notes(repo: Repo) -> dict[str, tuple[pygit2.Oid, str]]:
    """Return annotated object -> (note blob, ref holding it) for the notes fetches
    brought: each remote's notes as last fetched (refs/govsnap-remote/<remote>/notes,
    remotes in name order)."""
    tracked = sorted(
        ref.name for ref in repo.git.references.iterator() if is_tracked_notes_ref(ref.name)
    )
    found: dict[str, tuple[pygit2.Oid, str]] = {}
    for ref in tracked:
        try:
            blobs = notes.note_blobs(repo, ref)
        except (KeyError, ValueError, pygit2.GitError, AssertionError):
            continue  # a remote's ref may hold anything; doctor reports the local ones
        for obj, blob in blobs.items():
            found.setdefault(obj, (blob, ref))
    return found


def _recovered_note(
    repo: Repo, ident: str, tag_oid: str, fetched: dict[str, tuple[pygit2.Oid, str]]
) -> tuple[notes.JSONObject, str] | None:
    """Return a fetched note of the snapshot and the ref it came from, when one exists
    and its copies of the signed fields agree with the tag (a note from elsewhere is
    never trusted more than that); else None."""
    if tag_oid not in fetched:
        return None
    blob, ref = fetched[tag_oid]
    if not _object_exists(repo, blob):
        return None
    note = notes.decode(bytes(repo.git.odb.read(blob)[1]))
    try:
        payload = SnapshotPayload.parse(read_tag(repo, tag_oid).payload)
    except CorruptObject:
        return None
    signed = notes.signed_copies(payload, ident)
    if note.error or any(note.data.get(key) != value for key, value in signed.items()):
        return None
    return note.data, ref


def _govsnap_targets(repo: Repo) -> set[str]:
    """Return the objects any ref under refs/govsnap/ or refs/govsnap-remote/ (what a
    fetch brought, refused snapshots included) points at."""
    return {
        str(ref.target)
        for ref in repo.git.references.iterator()
        if ref.name.startswith((GOVSNAP_ROOT, TRACKING_ROOT)) and isinstance(ref.target, pygit2.Oid)
    }


def _orphan_detail(repo: Repo, obj: str) -> str:
    try:
        tag = read_tag(repo, obj)
        payload = SnapshotPayload.parse(tag.payload)
    except CorruptObject:
        return f"a note on {obj}, which is no snapshot's tag"
    ident = payload.id
    return (
        f"a note on the tag of snapshot {ident}, whose ref is gone (an interrupted prune?); "
        f"`git update-ref {SNAPSHOT_REF_PREFIX}{ident} {obj}` would bring the snapshot back"
    )


def _missing_note(
    repo: Repo,
    ident: str,
    tag_oid: str,
    problem: str,
    fetched: dict[str, tuple[pygit2.Oid, str]],
) -> Finding:
    try:
        SnapshotPayload.parse(read_tag(repo, tag_oid).payload)
        recovered = _recovered_note(repo, ident, tag_oid, fetched)
        fix: str | None = (
            "rebuild the note from the signed payload"
            if recovered is None
            else f"recover the note fetched into {recovered[1]}"
        )
    except CorruptObject:
        fix = None
        problem += " and its tag is unreadable (run `govsnap verify`)"
    return Finding("missing-note", snapshot_ref(ident), problem, fix)


def diagnose(repo: Repo) -> list[Finding]:
    """Return every inconsistency found, locks first (they would block the other repairs)."""
    now = time.time()
    checks: list[tuple[str, Callable[[], list[Finding]]]] = [
        ("stale locks", lambda: find_stale_locks(repo, now)),
        ("interrupted captures", lambda: find_capture_problems(repo, now)),
        ("the digest cache", lambda: find_torn_cache(repo)),
        ("refs", lambda: find_broken_refs(repo)),
        ("the audit trail", lambda: find_audit_problems(repo)),
        ("notes", lambda: find_note_problems(repo)),
    ]
    found: list[Finding] = []
    with progress.task("doctor", total=len(checks)) as step:
        for what, check in checks:
            step.doing(f"doctor: checking {what}")
            found += check()
            step.advance()
    return found


# --- repair ------------------------------------------------------------------------------


def _remove_lock(repo: Repo, finding: Finding) -> bool:
    path = Path(finding.subject)
    try:
        # Checked again now: a lock refreshed since the diagnosis belongs to a live process.
        if time.time() - path.stat().st_mtime <= stale_lock_seconds(repo):
            return False
        path.unlink()
    except FileNotFoundError:
        return True
    return True


def _remove_leftover(finding: Finding) -> bool:
    path = Path(finding.subject)
    # Checked again now: a lock taken since the diagnosis belongs to a live process, and
    # a process of a killed rollback may have started writing meanwhile.
    if path.name == "index.lock":
        owner = worktree.lock_owner(path)
        if finding.kind == "empty-index-lock":
            abandoned = worktree.abandoned_empty_lock(path)
        else:
            abandoned = owner is not None and owner.dead() and not owner.survivors()
        if not abandoned:
            return not path.exists()
    path.unlink(missing_ok=True)
    return True


def _quarantine(repo: Repo, finding: Finding) -> bool:
    ref = repo.git.references.get(finding.subject)
    if ref is None:
        return True
    target = ref.target
    if not isinstance(target, pygit2.Oid) or _object_exists(repo, target):
        return False
    record = {
        "time": int(time.time()),
        "ref": finding.subject,
        "target": str(target),
        "reason": "object missing",
    }
    with (repo.state_dir / QUARANTINE_LOG).open("a") as fh:
        fh.write(json.dumps(record, sort_keys=True) + "\n")
    return delete_ref(repo, finding.subject, target)


def _reset_broken_ref(repo: Repo, finding: Finding) -> bool:
    earlier = _reflog_fallback(repo, finding.subject)
    if earlier is None:
        return False

    def compute(current: pygit2.Oid | None) -> pygit2.Oid | None:
        if current is not None and _object_exists(repo, current):
            return current  # repaired meanwhile by someone else
        return earlier

    update_ref(repo, finding.subject, compute, message="govsnap doctor: reset to intact value")
    return True


def _repair_notes(repo: Repo, findings: Sequence[Finding]) -> set[Finding]:
    """Remove orphan notes and recover or rebuild missing ones in one notes commit; return
    the fixed."""
    mutations: dict[str, notes.Mutation] = {}
    fixed: set[Finding] = set()
    refs = snapshot_refs(repo)
    held = _govsnap_targets(repo)
    fetched = (
        fetched_notes(repo)
        if any(f.kind in ("missing-note", "disputed-note") for f in findings)
        else {}
    )
    for finding in findings:
        if finding.kind == "orphan-note":
            obj = finding.subject.rsplit(":", 1)[1]
            if obj in held:
                continue  # the snapshot came back meanwhile

            def drop(_current: notes.JSONObject | None) -> None:
                return None

            mutations[obj] = drop
            fixed.add(finding)
        elif finding.kind == "missing-note" and finding.fix is not None:
            ident = finding.subject.removeprefix(SNAPSHOT_REF_PREFIX)
            tag_oid = refs.get(ident)
            if tag_oid is None:
                continue
            # What a fetch brought is the snapshot's own note; rebuilding from the signed
            # payload loses what only the note held (figures, host, results, pins).
            recovered = _recovered_note(repo, ident, str(tag_oid), fetched)
            if recovered is None:
                data = notes.rebuilt_note(repo, ident, str(tag_oid), BY)
            else:
                data = recovered[0]
            if data is None:
                continue

            def rebuild(
                current: notes.JSONObject | None, data: dict[str, Any] = data
            ) -> notes.JSONObject:
                return current if current is not None else data

            mutations[str(tag_oid)] = rebuild
            fixed.add(finding)
        elif finding.kind == "disputed-note":
            mutation = _correction(repo, finding, refs, fetched)
            if mutation is not None:
                mutations[mutation[0]] = mutation[1]
                fixed.add(finding)
    if mutations:
        notes.update(repo, mutations, repo.committer(), "Notes repaired by 'govsnap doctor'")
    return fixed


def _correction(
    repo: Repo,
    finding: Finding,
    refs: dict[str, pygit2.Oid],
    fetched: dict[str, tuple[pygit2.Oid, str]],
) -> tuple[str, notes.Mutation] | None:
    """Return (tag, mutation) putting a disputed note right: its copies of the signed
    fields taken from the payload, the rest kept; a note with nothing readable to keep is
    recovered from a fetch (when that one agrees) or rebuilt. None when the tag is gone."""
    ident = finding.subject.removeprefix(SNAPSHOT_REF_PREFIX)
    tag_oid = refs.get(ident)
    if tag_oid is None:
        return None
    try:
        payload = SnapshotPayload.parse(read_tag(repo, str(tag_oid)).payload)
    except CorruptObject:
        return None

    def correct(current: notes.JSONObject | None) -> notes.JSONObject | None:
        if current:
            return notes.corrected(current, payload, ident)
        # An unreadable note reaches a mutation as {} (or None): nothing of it to keep.
        recovered = _recovered_note(repo, ident, str(tag_oid), fetched)
        if recovered is not None:
            return recovered[0]
        return notes.rebuilt_note(repo, ident, str(tag_oid), BY) or notes.corrected(
            {}, payload, ident
        )

    return str(tag_oid), correct


def repair(repo: Repo, findings: Sequence[Finding]) -> list[Finding]:
    """Apply each finding's fix; return the findings, marked fixed where the fix worked."""
    fixed: set[Finding] = set()
    for finding in findings:
        done = False
        if finding.kind == "stale-lock":
            done = _remove_lock(repo, finding)
        elif finding.kind in ("killed-rollback-lock", "empty-index-lock", "leftover-index"):
            done = _remove_leftover(finding)
        elif finding.kind == "torn-cache":
            DigestCache.for_repo(repo).reset()
            done = True
        elif finding.kind == "dangling-snapshot-ref":
            done = _quarantine(repo, finding)
        elif finding.kind == "broken-ref" and finding.fix is not None:
            done = _reset_broken_ref(repo, finding)
        elif finding.kind in ("dangling-audit", "truncated-audit"):
            done = _reset_audit(repo, finding)
        if done:
            fixed.add(finding)
    fixed |= _repair_notes(repo, findings)
    return [replace(f, fixed=True) if f in fixed else f for f in findings]


def run(repo: Repo, *, fix: bool = False, dry_run: bool = False) -> DoctorReport:
    """Diagnose the repository and, with `fix` (and not `dry_run`), repair what can be
    repaired, recording an audit entry; return the report."""
    with audit.operation(repo, "doctor", {"fix": True}) as op:
        findings = diagnose(repo)
        if fix and not dry_run and any(f.fix is not None for f in findings):
            findings = repair(repo, findings)
            done = [f for f in findings if f.fixed]
            # An audit ref that is itself broken (and stays so) cannot take an entry.
            if not any(f.subject == AUDIT_REF and not f.fixed for f in findings):
                result = "ok" if len(done) == len(findings) else "partial"
                op.record(
                    op.entry(f"repaired {len(done)} of {len(findings)} problem(s)", result=result)
                )
        skipped = () if repo.writable else (
            f"the trial capture was skipped: {repo.read_only_reason()} (create cannot "
            "work until it is)",
        )
        return DoctorReport(tuple(findings), fix, dry_run, skipped)
