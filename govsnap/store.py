"""Create, list, resolve and compare snapshots, built on objects, digest, signing and notes."""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import pygit2
from pygit2.enums import ObjectType

from govsnap import audit, notes, objects, progress, worktree
from govsnap.digest import DigestCache, TreeDigest, digest_tree
from govsnap.errors import (
    AmbiguousSnapshot,
    CorruptObject,
    GovsnapError,
    InvalidRevision,
    SigningError,
    SnapshotNotFound,
    UsageError,
)
from govsnap.notes import Note, NoteView
from govsnap.objects import (
    FORMAT_VERSION,
    ISO_UTC,
    RefValues,
    SignatureKind,
    SignedTag,
    SnapshotPayload,
    Source,
    Trigger,
    payload_from_tuple,
    payload_to_tuple,
    read_tag,
    signature_kind,
    snapshot_id,
    update_refs,
    utc,
    validate_message,
    validate_name,
    write_commit,
    write_tag,
    writing,
)
from govsnap.refs import AUDIT_REF, NOTES_REF, SNAPSHOT_REF_PREFIX, snapshot_ref
from govsnap.repo import Repo
from govsnap.schemas import schema_name
from govsnap.signing import Signer, signer_for, stored_signature

DEFAULT_ENVIRONMENT = "default"
# The note fields `list --json` repeats; `show --json` gives the whole note.
LIST_NOTE_FIELDS = ("bytes", "files", "pinned", "rehearsal", "signature", "verification")
_NO_NOTE = NoteView()


@dataclass(frozen=True)
class Snapshot:
    """One snapshot as found in the repository: its ref, parsed tag and note."""

    id: str
    tag_oid: str
    payload: SnapshotPayload | None
    signature_kind: SignatureKind
    note: Note | None
    error: str | None = None

    @property
    def ref(self) -> str:
        """Return the snapshot's ref name."""
        return snapshot_ref(self.id)

    @property
    def created(self) -> int:
        """Return the creation time (tagger time), 0 when the tag is unreadable."""
        return self.payload.tagger.time if self.payload else 0

    @property
    def created_iso(self) -> str:
        """Return the creation time as ISO 8601 UTC."""
        return utc(self.created, ISO_UTC)

    @property
    def environment(self) -> str:
        """Return the signed environment ('?' when unreadable)."""
        return self.payload.environment if self.payload else "?"

    @property
    def labels(self) -> tuple[str, ...]:
        """Return the signed labels."""
        return self.payload.labels if self.payload else ()

    @property
    def safety(self) -> bool:
        """Return True for a safety snapshot (signed trigger pre-rollback)."""
        return self.payload is not None and self.payload.trigger == Trigger.PRE_ROLLBACK

    @property
    def signed(self) -> bool:
        """Return True when the tag carries a signature block."""
        return self.signature_kind != SignatureKind.NONE

    @property
    def note_data(self) -> dict[str, Any]:
        """Return the note's JSON, or an empty mapping."""
        return self.note.data if self.note else {}

    @property
    def note_view(self) -> NoteView:
        """Return the note's fields, typed (all absent without a note)."""
        return self.note.view if self.note else _NO_NOTE

    def as_json(self, full: bool = True) -> dict[str, Any]:
        """Return what is known about the snapshot as JSON-ready data (the whole note when
        `full`, else the fields a listing shows)."""
        p = self.payload
        note = self.note_data
        if not full:
            note = {key: note[key] for key in LIST_NOTE_FIELDS if key in note}
        return {
            "id": self.id,
            "ref": self.ref,
            "tag": self.tag_oid,
            "error": self.error,
            "created": self.created_iso if p else None,
            "signed": self.signed,
            "signature_kind": self.signature_kind,
            "safety": self.safety,
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
            "note_error": self.note.error if self.note else None,
        }


def _read_snapshot(
    repo: Repo, ident: str, tag_oid: pygit2.Oid, note: Note | None
) -> tuple[Snapshot, SignedTag | None]:
    """Return the snapshot a ref names, read from its tag, and the tag (None when it is
    unreadable: then the Snapshot's `error` says why)."""
    try:
        tag = read_tag(repo, tag_oid)
        payload = SnapshotPayload.parse(tag.payload)
    except CorruptObject as exc:
        return Snapshot(ident, str(tag_oid), None, SignatureKind.NONE, note, exc.message), None
    return Snapshot(ident, str(tag_oid), payload, tag.signature_kind, note), tag


def load_snapshot(repo: Repo, ident: str, tag_oid: pygit2.Oid, note: Note | None) -> Snapshot:
    """Return the snapshot whose ref names `ident` and points at `tag_oid`, with `note`;
    an unreadable tag gives a Snapshot with `error` set."""
    return _read_snapshot(repo, ident, tag_oid, note)[0]


def snapshot_refs(repo: Repo, prefix: str = SNAPSHOT_REF_PREFIX) -> dict[str, pygit2.Oid]:
    """Return snapshot id -> tag oid for every snapshot ref (under `prefix`: remote.py
    reads the copies fetched from a remote there)."""
    found: dict[str, pygit2.Oid] = {}
    for ref in repo.git.references.iterator():
        name = ref.name
        if name.startswith(prefix):
            target = ref.target
            if isinstance(target, pygit2.Oid):
                found[name[len(prefix) :]] = target
    return found


def list_snapshots(repo: Repo) -> list[Snapshot]:
    """Return every snapshot, newest first, reading refs and notes in bulk.

    Tags and note blobs are immutable, so their parsed forms are cached by object id. The
    cache lives in `.git/govsnap/`, which anyone who restores a CI cache can write: a row
    is used only under a MAC of the user's key (DigestCache), so an edited row is re-read
    from the object, and verification re-reads the tag anyway.
    """
    refs = snapshot_refs(repo)
    note_blobs = notes.note_blobs(repo)
    cache = DigestCache.for_repo(repo)
    known = cache.parsed([oid.raw for oid in refs.values()] + [b.raw for b in note_blobs.values()])
    snaps = []
    for ident, oid in refs.items():
        blob = note_blobs.get(str(oid))
        note = None
        if blob is not None:
            cached_note = known.get(blob.raw)
            if isinstance(cached_note, dict):
                note = Note(cached_note)
            else:
                try:
                    note = notes.decode(bytes(repo.git.odb.read(blob)[1]))
                except pygit2.GitError as exc:  # a damaged pack: show it, list the rest
                    note = Note(error=f"note {blob} is unreadable: {exc}")
                if note.error is None:
                    cache.put_parsed(blob.raw, note.data)
        cached = _cached_payload(known.get(oid.raw))
        if cached is not None:
            payload, kind = cached
            snaps.append(Snapshot(ident, str(oid), payload, kind, note))
            continue
        snap, tag = _read_snapshot(repo, ident, oid, note)
        if snap.payload is not None and tag is not None:
            cache.put_parsed(oid.raw, (payload_to_tuple(snap.payload), tag.signature))
        snaps.append(snap)
    cache.flush()
    snaps.sort(key=order_key, reverse=True)
    return snaps


def _cached_payload(value: Any) -> tuple[SnapshotPayload, SignatureKind] | None:
    """Return the payload and signature kind a cache row holds, or None when the row is
    absent or unreadable. (Rebuilding the tag to check its object id took a quarter of
    listing 10,000 snapshots; the row's MAC vouches for it.)"""
    try:
        values, signature = value
        return payload_from_tuple(values), signature_kind(signature)
    except (TypeError, ValueError, AttributeError):
        return None


def order_key(snap: Snapshot) -> tuple[int, int, str]:
    """Return the sort key of a snapshot: signed time, then the finer creation time the
    note records (git times have whole seconds), then id."""
    # The one field read as NoteView reads it, without building the whole view: for
    # 10,000 snapshots that took a fifth of `list --json` (cProfile).
    fine = snap.note_data.get("created_ns")
    return (snap.created, fine if type(fine) is int else 0, snap.id)


@dataclass(frozen=True)
class SnapshotListing:
    """The snapshots `list` shows, newest first."""

    snapshots: tuple[Snapshot, ...]
    # The id of every snapshot, listed or not: a short id must stay unique among them all.
    every_id: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        """Return the listing as JSON-ready data: the fields a listing shows."""
        return {
            "schema": schema_name("list"),
            "snapshots": [s.as_json(full=False) for s in self.snapshots],
        }


@dataclass(frozen=True)
class ListFilter:
    """Which snapshots `list` shows (restic's `snapshots` filters). The host is what the
    note claims: a display filter, like every use of a note."""

    environment: str | None = None
    labels: tuple[str, ...] = ()  # every one must be carried
    host: str | None = None
    paths: tuple[str, ...] = ()  # every one must be in the snapshot's tree
    latest: int | None = None  # only the newest N of those that pass the rest


def filtered_listing(repo: Repo, wanted: ListFilter) -> SnapshotListing:
    """Return the snapshots `wanted` selects, newest first."""
    if wanted.latest is not None and wanted.latest < 1:
        raise UsageError(f"--latest {wanted.latest}: give a number of snapshots, 1 or more")
    paths = [tree_path(p) for p in wanted.paths]
    every = list_snapshots(repo)
    snaps = filter_snapshots(every, wanted.environment, list(wanted.labels))
    if wanted.host is not None:
        snaps = [s for s in snaps if s.note_view.host == wanted.host]
    if paths:
        snaps = [s for s in snaps if all(holds(repo, s, p) for p in paths)]
    if wanted.latest is not None:
        snaps = snaps[: wanted.latest]
    return SnapshotListing(tuple(snaps), tuple(s.id for s in every))


def tree_path(path: str) -> str:
    """Return a path inside a snapshot as git names it ("" for the top); raise UsageError
    for an absolute path or one that climbs out."""
    if "\0" in path:
        raise UsageError(f"{path!r} is not a path")
    if path.startswith("/"):
        raise UsageError(f"{path}: paths are relative to the top of the snapshot")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UsageError(f"{path}: a path inside a snapshot cannot climb out with '..'")
    return "/".join(parts)


def holds(repo: Repo, snap: Snapshot, path: str) -> bool:
    """Return True when the snapshot's tree has an entry (file, directory, submodule) at
    `path` ("" is the top); False for an unreadable snapshot."""
    try:
        tree = snapshot_tree(repo, snap)
        if path:
            tree[path]
    except (CorruptObject, KeyError, ValueError, pygit2.GitError):
        return False
    return True


def filter_snapshots(
    snaps: list[Snapshot], environment: str | None = None, labels: list[str] | None = None
) -> list[Snapshot]:
    """Return the snapshots of `environment` that carry every label in `labels`."""
    wanted = set(labels or ())
    return [
        s
        for s in snaps
        if (environment is None or s.environment == environment) and wanted <= set(s.labels)
    ]


_LATEST = re.compile(r"^latest(?:~(\d+))?$")
_HEXPREFIX = re.compile(r"^[0-9a-f]{4,16}$")


def resolve(repo: Repo, name: str, snaps: list[Snapshot] | None = None) -> Snapshot:
    """Return the one snapshot `name` designates: id prefix, latest[~N], sha256:<prefix>."""
    snaps = list_snapshots(repo) if snaps is None else snaps
    name = name.strip().removeprefix(SNAPSHOT_REF_PREFIX)
    if not snaps:
        raise SnapshotNotFound(f"no snapshot matches {name!r}: this repository has no snapshots")
    latest = _LATEST.match(name)
    if latest:
        # A tagger time in the future (beyond the clock skew) fails verification; it
        # must not make a snapshot the newest either. Safety snapshots do not count:
        # a failed rollback adds one, and retrying `rollback latest~1` must restore the
        # same release as the first attempt (a safety snapshot is named by its id).
        horizon = int(time.time()) + objects.configured_skew(repo)
        valid = [
            s for s in snaps if s.payload is not None and s.created <= horizon and not s.safety
        ]
        n = int(latest.group(1) or 0)
        if n >= len(valid):
            skipped = sum(1 for s in snaps if s.safety)
            aside = (
                f" (and {skipped} safety snapshot(s), which `latest` does not count: name "
                "them by id)"
                if skipped
                else ""
            )
            raise SnapshotNotFound(
                f"{name!r}: there are only {len(valid)} readable snapshots{aside}"
            )
        return valid[n]
    if name.startswith("sha256:"):
        prefix = name.removeprefix("sha256:").lower()
        if not re.fullmatch(r"[0-9a-f]{4,64}", prefix):
            raise UsageError(f"{name!r}: a digest prefix needs 4 to 64 hex digits")
        matches = [s for s in snaps if s.payload and s.payload.digest[7:].startswith(prefix)]
    else:
        lowered = name.lower()
        if not _HEXPREFIX.match(lowered):
            raise UsageError(
                f"{name!r} is not a snapshot name: use 4-16 hex digits of an id, "
                "latest, latest~N or sha256:<digest prefix>"
            )
        matches = [s for s in snaps if s.id.startswith(lowered)]
    if not matches:
        newest = ", ".join(s.id for s in snaps[:3])
        raise SnapshotNotFound(f"no snapshot matches {name!r} (newest: {newest})")
    if len(matches) > 1:
        # Even snapshots of the same content (one digest) differ in what they record
        # (trigger, environment, note): picking one silently would act on a guess.
        shown = ", ".join(_candidate(s) for s in matches[:8])
        more = f" and {len(matches) - 8} more" if len(matches) > 8 else ""
        raise AmbiguousSnapshot(
            f"{name!r} is ambiguous: it matches {shown}{more}; name one by its id"
        )
    return matches[0]


def _candidate(snap: Snapshot) -> str:
    """Return a snapshot as an ambiguous name's error lists it: id, environment, date."""
    if snap.payload is None:
        return f"{snap.id} (unreadable)"
    return f"{snap.id} ({snap.environment}, {snap.created_iso})"


# --- capture ---------------------------------------------------------------------------


def head_source(repo: Repo) -> tuple[str, pygit2.Commit | None]:
    """Return the ref HEAD names (or 'HEAD' when detached) and its commit, if born."""
    git = repo.git
    if git.head_is_unborn:
        target = git.references["HEAD"].target
        return str(target), None
    commit = git.head.peel(pygit2.Commit)
    name = "HEAD" if git.head_is_detached else git.head.name
    return name, commit


def resolve_commit(repo: Repo, rev: str) -> tuple[str, pygit2.Commit]:
    """Return (ref name or revision text, commit) for a revision the user gave."""
    try:
        obj, ref = repo.git.revparse_ext(rev)
        commit = obj.peel(pygit2.Commit)
    except (KeyError, ValueError, pygit2.GitError, pygit2.InvalidSpecError) as exc:
        raise InvalidRevision(f"{rev!r} is not a commit in this repository") from exc
    return (ref.name if ref is not None else rev), commit


def _short_ref(ref: str) -> str:
    for prefix in ("refs/heads/", "refs/tags/", "refs/remotes/"):
        if ref.startswith(prefix):
            return ref[len(prefix) :]
    return ref


# --- create ----------------------------------------------------------------------------


@dataclass
class CreateOptions:
    """What `create` was asked to do."""

    trigger: str = Trigger.MANUAL
    environment: str | None = None
    labels: list[str] = field(default_factory=list)
    from_rev: str | None = None
    source_ref: str | None = None
    tracked_only: bool = False
    if_changed: bool = False
    message: str = ""
    unsigned: bool = False
    index_commit: str | None = None
    # A tree the caller captured already (the rollback's safety snapshot), used as is.
    tree: str | None = None
    # Recorded in the audit entry's arguments: what ran create (a hook, its remote...).
    audit_context: dict[str, Any] = field(default_factory=dict)


@dataclass
class CreateResult:
    """What `create` did: the snapshot, or the existing one when nothing changed."""

    snapshot: Snapshot
    created: bool
    digest: TreeDigest
    seconds: float
    warnings: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        """Return what `create` did as JSON-ready data."""
        return {
            "schema": schema_name("create"),
            "created": self.created,
            "seconds": round(self.seconds, 6),
            "hashed_blobs": self.digest.hashed_blobs,
            "snapshot": self.snapshot.as_json(),
            "warnings": list(self.warnings),
        }


def default_environment(repo: Repo) -> str:
    """Return `govsnap.environment`, or 'default'."""
    return repo.config_str("govsnap.environment") or DEFAULT_ENVIRONMENT


def require_signer(repo: Repo, unsigned: bool) -> Signer | None:
    """Return the configured signer; refuse to go on unsigned unless that was asked for."""

    signer = signer_for(repo)
    if signer is None and not (unsigned or repo.config_bool("govsnap.allowUnsigned", False)):
        raise SigningError(
            "no signing key: set govsnap.signingKey or user.signingKey "
            "(or run `govsnap init --generate-key`); pass --unsigned to snapshot without one"
        )
    return None if unsigned else signer


def create(repo: Repo, options: CreateOptions) -> CreateResult:
    """Capture, sign and record a snapshot: commit, tag, ref, note, audit entry in that order."""
    from govsnap import audit

    # Its objects are written long before a ref names them: `prune --now` must wait.
    with writing(repo), audit.operation(repo, "create", options.audit_context) as op:
        return _create(repo, options, op)


def _create(repo: Repo, options: CreateOptions, op: audit.Operation) -> CreateResult:
    if options.from_rev is None and options.tree is None:
        repo.workdir  # noqa: B018 - a bare repository is refused before anything is tried
    import secrets
    from datetime import UTC, datetime

    trigger = validate_name("trigger", options.trigger)
    environment = validate_name("environment", options.environment or default_environment(repo))
    op.place(environment)
    labels = tuple(dict.fromkeys(validate_name("label", label) for label in options.labels))
    message = validate_message(options.message)
    signer = require_signer(repo, options.unsigned)
    identity = op.identity
    ahead = identity.time - int(time.time())
    if ahead > objects.configured_skew(repo):
        raise UsageError(
            f"the snapshot's time {utc(identity.time)} lies {ahead}s in the future "
            "(GIT_COMMITTER_DATE?): verification would refuse it"
        )

    commit: pygit2.Commit | None
    warnings: tuple[str, ...] = ()
    if options.from_rev is not None:
        ref_name, commit = resolve_commit(repo, options.from_rev)
        if options.source_ref:
            ref_name = options.source_ref
        tree = str(commit.tree_id)
    else:
        ref_name, commit = head_source(repo)
        if options.tree is not None:
            tree = options.tree
        else:
            with (
                progress.task("capturing the working tree (git add -A)"),
                worktree.captured(repo, tracked_only=options.tracked_only) as capture,
            ):
                tree, warnings = capture.tree, capture.warnings

    # A partial clone lacks blobs the digest reads: fetch them as git would on demand.
    worktree.fetch_missing(repo, [tree])
    cache = DigestCache.for_repo(repo)
    # The working tree holds most new blobs as git stored them: hashing a file whose git
    # id is the blob's spares inflating it (the first snapshot of a repository).
    workdir = None if repo.is_bare else repo.workdir
    try:
        with progress.task("hashing the captured files (SHA-256)"):
            digest = digest_tree(repo, tree, cache, fmt=FORMAT_VERSION, workdir=workdir)
    except CorruptObject as exc:
        raise CorruptObject(exc.message + worktree.partial_clone_hint(repo)) from exc
    if options.if_changed:
        same_env = filter_snapshots(list_snapshots(repo), environment)
        newest = next((s for s in same_env if s.payload is not None), None)
        if newest is not None and newest.payload:
            # A snapshot of an older format states its digest in that format.
            fmt = newest.payload.format
            same = digest if fmt == FORMAT_VERSION else digest_tree(repo, tree, cache, fmt=fmt)
            if newest.payload.digest == same.digest:
                return CreateResult(newest, False, digest, op.seconds, warnings)

    where = _short_ref(ref_name) + (f"@{str(commit.id)[:7]}" if commit else " (unborn)")
    summary = f"govsnap snapshot of {where} ({trigger}, {environment})"
    parents = [str(commit.id)] if commit else []
    if options.index_commit:
        parents.append(options.index_commit)
    snap_commit = write_commit(repo, tree, parents, identity, summary + "\n")
    stamp = datetime.fromtimestamp(identity.time, UTC).strftime("%Y%m%dT%H%M%SZ")
    payload = SnapshotPayload(
        commit=str(snap_commit),
        # The random part makes every payload, and so every id, unique: two snapshots of
        # the same state in the same second would otherwise collide.
        tag_name=f"govsnap/{environment}/{stamp}-{secrets.token_hex(4)}",
        tagger=identity,
        summary=summary,
        digest=digest.digest,
        tree=tree,
        trigger=trigger,
        environment=environment,
        labels=labels,
        source=Source(ref_name, str(commit.id)) if commit else None,
        index_commit=options.index_commit,
        message=message,
    )
    body = payload.to_bytes()
    try:
        # What verify and the server will read back must parse: names, texts and times
        # from the environment (user.name, a ref given to --source-ref) are held here too.
        SnapshotPayload.parse(body)
    except CorruptObject as exc:
        raise UsageError(f"cannot snapshot: {exc.message}") from exc
    signature = stored_signature(signer.sign(body)) if signer else None
    tag = SignedTag(body, signature.block if signature else b"")
    tag_oid = write_tag(repo, tag)
    ident = snapshot_id(body)
    ref = snapshot_ref(ident)
    note = notes.note_fields(
        payload,
        ident,
        digest,
        signature.signer if signature else None,
        signature.kind if signature else SignatureKind.NONE,
    )
    seconds = op.seconds
    arguments = {
        "trigger": trigger,
        "environment": environment,
        "labels": list(labels),
        **options.audit_context,
    }
    entry = op.writer(
        op.entry(f"snapshot {ident} of {where}", snapshots=[ident], arguments=arguments)
    )

    def record(current: RefValues) -> RefValues:
        if current[ref] is not None:
            raise UsageError(f"{ref} already exists with another object")
        return {
            ref: tag_oid,
            NOTES_REF: notes.commit_on(
                repo, current[NOTES_REF], {str(tag_oid): lambda _old: note}, identity
            ),
            AUDIT_REF: entry.commit_on(current[AUDIT_REF]),
        }

    # The ref, its note and its audit entry appear together or not at all (the audit
    # entry first should git itself be killed half-way, see update_refs).
    update_refs(repo, [AUDIT_REF, NOTES_REF, ref], record, message=f"govsnap: create {ident}")
    snapshot = Snapshot(ident, str(tag_oid), payload, tag.signature_kind, Note(note))
    return CreateResult(snapshot, True, digest, seconds, warnings)


# --- diff ------------------------------------------------------------------------------


ChangeStatus = Literal["added", "removed", "modified"]


@dataclass(frozen=True)
class FileChange:
    """One path that differs between two states."""

    status: ChangeStatus
    path: str
    additions: int
    deletions: int
    binary: bool

    def as_json(self) -> dict[str, Any]:
        """Return the change as JSON-ready data."""
        return {
            "status": self.status,
            "path": self.path,
            "additions": self.additions,
            "deletions": self.deletions,
            "binary": self.binary,
        }


@dataclass(frozen=True)
class SnapshotDiff:
    """What differs between a snapshot and another snapshot or the working tree."""

    old: str  # the snapshot compared from
    new: str  # the snapshot compared to, or "working tree"
    changes: tuple[FileChange, ...]
    patch: bytes | None = None  # git's own diff of the two, when asked for

    def paths(self, status: ChangeStatus) -> list[str]:
        """Return the paths changed with `status`."""
        return [c.path for c in self.changes if c.status == status]

    def as_json(self) -> dict[str, Any]:
        """Return the diff as JSON-ready data."""
        return {
            "schema": schema_name("diff"),
            "from": self.old,
            "to": self.new,
            "added": self.paths("added"),
            "removed": self.paths("removed"),
            "modified": self.paths("modified"),
            "files": [c.as_json() for c in self.changes],
            **({} if self.patch is None else {"patch": os.fsdecode(self.patch)}),
        }


def diff(repo: Repo, old: str, new: str | None = None, patch: bool = False) -> SnapshotDiff:
    """Return what changed from snapshot `old` to snapshot `new`, or to the working tree
    as `create` would capture it (new None); with `patch`, also git's own diff of the two
    (`git diff`: the repository's diff attributes and settings apply, as they do there)."""
    snaps = list_snapshots(repo)
    a = resolve(repo, old, snaps)
    old_tree = snapshot_tree(repo, a)
    if new is None:
        # A reader writes nothing: the capture's objects (untracked files' contents, a
        # local secret say) go to a temporary object directory, as a dry run's do (and
        # so it works where .git cannot be written, a read-only mount).
        with worktree.quarantined(repo) as where:
            before, after = where.git[old_tree.id], where.git[worktree.capture_tree(where)]
            assert isinstance(before, pygit2.Tree) and isinstance(after, pygit2.Tree)
            return _diff(where, a.id, "working tree", before, after, patch)
    b = resolve(repo, new, snaps)
    return _diff(repo, a.id, b.id, old_tree, snapshot_tree(repo, b), patch)


def _diff(
    repo: Repo, old: str, new: str, old_tree: pygit2.Tree, new_tree: pygit2.Tree, patch: bool
) -> SnapshotDiff:
    changes = tuple(diff_trees(repo, old_tree, new_tree))
    text = None
    if patch:
        # No colour and no external diff program: the bytes are data, shown by the caller.
        text = worktree.git(
            repo, "diff", "--no-color", "--no-ext-diff", str(old_tree.id), str(new_tree.id)
        )
    return SnapshotDiff(old, new, changes, text)


_STATUS: dict[str, ChangeStatus] = {
    "A": "added",
    "D": "removed",
    "M": "modified",
    "T": "modified",
}


def snapshot_tree(repo: Repo, snap: Snapshot) -> pygit2.Tree:
    """Return the tree a snapshot captured."""
    if snap.payload is None:
        raise CorruptObject(f"snapshot {snap.id} is unreadable: {snap.error}")
    try:
        tree = repo.git[snap.payload.tree]
    except (KeyError, ValueError) as exc:
        raise CorruptObject(f"snapshot {snap.id}: tree {snap.payload.tree} is missing") from exc
    except pygit2.GitError as exc:
        raise CorruptObject(
            f"snapshot {snap.id}: tree {snap.payload.tree} is malformed: {exc}"
        ) from exc
    if tree.type != ObjectType.TREE:
        raise CorruptObject(f"snapshot {snap.id}: {snap.payload.tree} is not a tree")
    assert isinstance(tree, pygit2.Tree)
    return tree


def diff_trees(repo: Repo, old: pygit2.Tree, new: pygit2.Tree) -> list[FileChange]:
    """Return the files added, removed and modified from `old` to `new`, by path, with
    the lines git's own diff counts; raise CorruptObject when git cannot compare them."""
    from govsnap import worktree

    try:
        stats = worktree.diff_stats(repo, str(old.id), str(new.id))
    except GovsnapError as exc:
        raise CorruptObject(f"cannot compare tree {old.id} with {new.id}: {exc.message}") from exc
    changes = []
    for stat in stats:
        status = _STATUS.get(stat.change.status)
        if status is None:
            continue
        additions, deletions = stat.lines or (0, 0)
        # As the rest of govsnap shows paths: bytes that are not UTF-8 kept as escapes.
        path = stat.change.path.decode(errors="surrogateescape")
        changes.append(FileChange(status, path, additions, deletions, stat.lines is None))
    return sorted(changes, key=lambda c: c.path)
