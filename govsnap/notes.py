"""Metadata notes on snapshot tags (`refs/notes/govsnap`): what a new snapshot's note
holds, bulk reads, compare-and-swap writes, the field-by-field merge of two clones' notes,
and a typed view of a note's fields.

A note is a display cache: it repeats signed fields for convenience and adds what may
change after signing (figures, the last verification and rehearsal). Anyone with write
access can edit it, so nothing here decides anything: decisions read the verified tag and
the signed audit entries.
"""

from __future__ import annotations

import getpass
import json
import socket
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, Literal

import pygit2
from pygit2.enums import FileMode

from govsnap import __version__, untrusted
from govsnap.digest import DigestCache, TreeDigest, digest_tree
from govsnap.errors import CorruptObject, GovsnapError
from govsnap.objects import (
    SignatureKind,
    SnapshotPayload,
    contains,
    read_tag,
    ref_target,
    update_ref,
)
from govsnap.refs import NOTES_REF
from govsnap.repo import Identity, Repo

_HEX = frozenset("0123456789abcdef")

JSONObject = dict[str, Any]
Mutation = Callable[[JSONObject | None], JSONObject | None]
# How merging a remote's notes changed this clone's ("invalid": the remote's notes ref
# does not point at a commit).
NotesMerge = Literal["absent", "unchanged", "fast-forward", "merged", "invalid"]


# --- the typed view ------------------------------------------------------------------------


def _whole(value: Any) -> int | None:
    """Return `value` if it is a whole number (not a bool), else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


@dataclass(frozen=True)
class Recorded:
    """The last verification or rehearsal result a note records."""

    raw: Any  # as recorded, for display
    verdict: str | None  # "pass", "fail", or None when it says neither
    time: float | None  # epoch seconds, None when absent or unreadable

    @classmethod
    def read(cls, value: Any) -> Recorded | None:
        """Return the result recorded as `value`, or None when there is none."""
        if not value:
            return None
        verdict = value.get("verdict") if isinstance(value, dict) else None
        return cls(value, verdict if verdict in ("pass", "fail") else None, result_time(value))


@dataclass(frozen=True)
class ArtifactKind:
    """How many files of one kind a snapshot holds, and their bytes."""

    count: int | None
    bytes: int


@dataclass(frozen=True)
class NoteView:
    """A note's fields, each read once with the type govsnap writes it in: a field that is
    absent or of another type (notes are JSON anyone with write access can edit) reads as
    None or empty, so no reader meets a type it does not expect."""

    files: int | None = None
    bytes: int | None = None
    artifacts: Mapping[str, ArtifactKind] = field(default_factory=dict)
    pinned: bool | None = None  # a display copy: the audit trail decides
    created: int | None = None  # a copy of the signed tagger time
    created_ns: int | None = None  # finer than git's seconds, to order one second's snapshots
    claimed_signer: str | None = None  # who the note says signed (verification checks it)
    verification: Recorded | None = None
    rehearsal: Recorded | None = None
    host: str | None = None
    user: str | None = None
    tool_version: str | None = None

    @classmethod
    def read(cls, data: Mapping[str, Any]) -> NoteView:
        """Return the view of a note's JSON."""
        signature = data.get("signature")
        signer = signature.get("signer") if isinstance(signature, dict) else None
        kinds = data.get("artifacts")
        artifacts = {
            str(kind): ArtifactKind(_whole(value.get("count")), _whole(value.get("bytes")) or 0)
            for kind, value in (kinds.items() if isinstance(kinds, dict) else ())
            if isinstance(value, dict)
        }
        pinned = data.get("pinned")
        return cls(
            files=_whole(data.get("files")),
            bytes=_whole(data.get("bytes")),
            artifacts=artifacts,
            pinned=pinned if isinstance(pinned, bool) else None,
            created=_whole(data.get("created")),
            created_ns=_whole(data.get("created_ns")),
            claimed_signer=str(signer) if signer else None,
            verification=Recorded.read(data.get("verification")),
            rehearsal=Recorded.read(data.get("rehearsal")),
            host=_text(data.get("host")),
            user=_text(data.get("user")),
            tool_version=_text(data.get("tool_version")),
        )


@dataclass(frozen=True)
class Note:
    """A note's parsed JSON, or the reason it could not be parsed."""

    data: JSONObject = field(default_factory=dict)
    error: str | None = None

    @cached_property
    def view(self) -> NoteView:
        """Return the note's fields, typed (see NoteView)."""
        return NoteView.read(self.data)


def encode(data: Mapping[str, Any]) -> bytes:
    """Return the canonical JSON text of a note (sorted keys, trailing newline)."""
    return (json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()


def decode(raw: bytes) -> Note:
    """Parse a note blob; a note that is not a JSON object is returned with an error."""
    try:
        data = untrusted.load_json(raw)
    except untrusted.Unreadable as exc:
        return Note(error=f"note is not valid JSON: {exc}")
    if not isinstance(data, dict):
        return Note(error="note is not a JSON object")
    return Note(data)


def result_time(result: Any) -> float | None:
    """Return the `time` of a recorded result (verification, rehearsal) as epoch seconds;
    it is ISO 8601 (`2026-11-24T13:10:07Z`) or a number. None when absent or unreadable."""
    when = result.get("time") if isinstance(result, dict) else None
    if isinstance(when, int | float) and not isinstance(when, bool):
        return float(when)
    if isinstance(when, str):
        try:
            stamp = datetime.fromisoformat(when.replace("Z", "+00:00"))
        except ValueError:
            return None
        return (stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)).timestamp()
    return None


# --- what a snapshot's note holds ----------------------------------------------------------


def signed_copies(payload: SnapshotPayload, ident: str) -> JSONObject:
    """Return the note fields that repeat signed data, as the payload says they must be."""
    return {
        "format": payload.format,
        "id": ident,
        "commit": payload.commit,
        "tree": payload.tree,
        "digest": payload.digest,
        "trigger": payload.trigger,
        "environment": payload.environment,
        "labels": list(payload.labels),
        "source": (
            None
            if payload.source is None
            else {"ref": payload.source.ref, "commit": payload.source.commit}
        ),
        "created": payload.tagger.time,
    }


def dispute(note: Note, payload: SnapshotPayload, ident: str) -> str | None:
    """Return how `note` departs from the signed payload it claims to repeat (unreadable, a
    signed field copied wrongly or left out), or None when it agrees. A note is a claim:
    this is shown, never a reason to refuse the snapshot."""
    if note.error:
        return f"tampered metadata: {note.error}"
    expected = signed_copies(payload, ident)
    wrong = [
        f"{key} (note {_shortened(repr(note.data[key]))}, signed {_shortened(repr(value))})"
        for key, value in expected.items()
        if key in note.data and note.data[key] != value
    ]
    if wrong:
        return "tampered metadata: the note disagrees with the signed payload on " + "; ".join(
            wrong
        )
    absent = [key for key in expected if key not in note.data]
    if absent:
        return f"tampered metadata: the note lacks {', '.join(absent)}"
    return None


def corrected(current: JSONObject, payload: SnapshotPayload, ident: str) -> JSONObject:
    """Return `current` with its copies of the signed fields put back as the payload says,
    keeping everything only the note holds (figures, verification and rehearsal records)."""
    return {**current, **signed_copies(payload, ident)}


def _shortened(text: str, width: int = 40) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def note_fields(
    payload: SnapshotPayload,
    ident: str,
    digest: TreeDigest,
    signer: str | None,
    kind: SignatureKind,
) -> JSONObject:
    """Return the note JSON of a new snapshot: signed fields repeated, plus figures."""
    return {
        **signed_copies(payload, ident),
        "created_ns": time.time_ns(),
        "files": digest.files,
        "bytes": digest.bytes,
        "artifacts": {k: {"count": v.count, "bytes": v.bytes} for k, v in digest.kinds.items()},
        "host": socket.gethostname(),
        "user": _user(),
        "tool_version": __version__,
        "signature": None if signer is None else {"kind": kind, "signer": signer},
        "pinned": False,
    }


def rebuilt_note(repo: Repo, ident: str, tag_oid: str, by: str) -> JSONObject | None:
    """Return a note for snapshot `ident` rebuilt from what its tag proves, marked as
    rebuilt `by` ("govsnap doctor", "govsnap fetch"); None when the tag is unreadable.

    Where and by whom the snapshot was made, and its sub-second creation time, are
    unknown and left out: the rebuilder's own would make the snapshot the newest of its
    second, and a prune would then keep it instead of a newer one.
    """
    from govsnap.signing import SignatureVerifier
    from govsnap.trust import load_policy

    try:
        tag = read_tag(repo, tag_oid)
        payload = SnapshotPayload.parse(tag.payload)
        digest = digest_tree(repo, payload.tree, DigestCache.for_repo(repo), fmt=payload.format)
    except CorruptObject:
        return None
    # The signer is checked as verify checks it: against the keys the trust policy
    # carries (the user's keyring only without a policy); a policy that does not load
    # leaves it unknown.
    try:
        policy = load_policy(repo)
        verifier = policy.verifier(repo) if policy is not None else SignatureVerifier(repo)
    except GovsnapError:
        signer = None
    else:
        try:
            sig = verifier.verify(tag.payload, tag.signature)
        finally:
            verifier.close()
        signer = sig.signer if sig.valid else None
    data = note_fields(payload, ident, digest, signer, tag.signature_kind)
    for unknown in ("created_ns", "host", "user"):
        del data[unknown]
    data["rebuilt_by"] = by
    return data


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


# --- reading -------------------------------------------------------------------------------


def _entries(repo: Repo, tree: pygit2.Tree, prefix: str = "") -> Iterator[tuple[str, pygit2.Oid]]:
    """Yield (annotated object hex, note blob oid), reading git's fan-out directories too."""
    for entry in tree:
        part = entry.name or ""
        name = prefix + part
        if entry.filemode == FileMode.TREE:
            if len(part) == 2 and set(part) <= _HEX:
                sub = repo.git[entry.id]
                assert isinstance(sub, pygit2.Tree)
                yield from _entries(repo, sub, name)
        elif len(name) == 40 and set(name) <= _HEX:
            yield name, entry.id


def _tree_of(repo: Repo, commit_oid: pygit2.Oid | None) -> pygit2.Tree | None:
    if commit_oid is None:
        return None
    commit = repo.git[commit_oid]
    assert isinstance(commit, pygit2.Commit)
    return commit.tree


def note_blobs(repo: Repo, ref: str = NOTES_REF) -> dict[str, pygit2.Oid]:
    """Return annotated object hex -> note blob oid for every note under `ref`."""
    return note_blobs_at(repo, ref_target(repo, ref))


def note_blobs_at(repo: Repo, commit: pygit2.Oid | None) -> dict[str, pygit2.Oid]:
    """Return annotated object hex -> note blob oid in one notes commit (None: no notes)."""
    tree = _tree_of(repo, commit)
    return {} if tree is None else dict(_entries(repo, tree))


# --- writing -------------------------------------------------------------------------------


def _is_fanout(tree: pygit2.Tree) -> bool:
    """Return True when `tree` is in govsnap's layout: 2-hex directories of 38-hex notes
    (git's own 2/38 fan-out, which git and libgit2 read at any size)."""
    return all(
        e.filemode == FileMode.TREE and len(e.name or "") == 2 and set(e.name or "") <= _HEX
        for e in tree
    )


def build_tree(repo: Repo, blobs: Mapping[str, pygit2.Oid]) -> pygit2.Oid:
    """Write a notes tree holding `blobs` (annotated object hex -> note blob) in fan-out
    layout, and return its oid."""
    buckets: dict[str, dict[str, pygit2.Oid]] = {}
    for obj, blob in blobs.items():
        buckets.setdefault(obj[:2], {})[obj[2:]] = blob
    root = repo.git.TreeBuilder()
    for key, entries in buckets.items():
        sub = repo.git.TreeBuilder()
        for rest, blob in entries.items():
            sub.insert(rest, blob, FileMode.BLOB)
        root.insert(key, sub.write(), FileMode.TREE)
    return root.write()


def _apply(
    repo: Repo, tree: pygit2.Tree | None, changes: Mapping[str, pygit2.Oid | None]
) -> pygit2.Oid:
    """Return the notes tree `tree` with `changes` applied (None removes a note).

    In fan-out layout only the buckets that change are rewritten, so a write costs the
    same at 10 or 10,000 snapshots; any other layout is rewritten once into fan-out.
    """
    if tree is None or not _is_fanout(tree):
        blobs = dict(_entries(repo, tree)) if tree is not None else {}
        for obj, blob in changes.items():
            if blob is None:
                blobs.pop(obj, None)
            else:
                blobs[obj] = blob
        return build_tree(repo, blobs)
    root = repo.git.TreeBuilder(tree)
    buckets: dict[str, pygit2.TreeBuilder] = {}
    for obj, blob in changes.items():
        key, rest = obj[:2], obj[2:]
        if key not in buckets:
            entry = root.get(key)
            buckets[key] = repo.git.TreeBuilder(entry.id) if entry else repo.git.TreeBuilder()
        bucket = buckets[key]
        if blob is None:
            if bucket.get(rest) is not None:
                bucket.remove(rest)
        else:
            bucket.insert(rest, blob, FileMode.BLOB)
    for key, bucket in buckets.items():
        if len(bucket):
            root.insert(key, bucket.write(), FileMode.TREE)
        elif root.get(key) is not None:
            root.remove(key)
    return root.write()


def _note_blob(repo: Repo, tree: pygit2.Tree | None, obj: str) -> pygit2.Oid | None:
    """Return the blob of the note on `obj` in `tree`, whatever its layout."""
    if tree is None:
        return None
    for path in (f"{obj[:2]}/{obj[2:]}", obj):
        try:
            return tree[path].id
        except KeyError:
            continue
    return dict(_entries(repo, tree)).get(obj)


def commit_on(
    repo: Repo,
    current: pygit2.Oid | None,
    mutations: Mapping[str, Mutation],
    identity: Identity,
    message: str = "Notes added by 'govsnap'",
) -> pygit2.Oid | None:
    """Write a notes commit on `current` (a notes commit, or None) with each mutation
    applied to the note of its object, and return it; return `current` when nothing changes.

    A mutation gets the current JSON (None when absent or unparseable) and returns the
    new JSON, or None to remove the note. Writes objects only: moving the notes ref is the
    caller's (update, or a transaction that also moves other refs).
    """
    tree = _tree_of(repo, current)
    changes: dict[str, pygit2.Oid | None] = {}
    for obj, mutate in mutations.items():
        blob = _note_blob(repo, tree, obj)
        before = None if blob is None else decode(bytes(repo.git.odb.read(blob)[1])).data
        after = mutate(None if before is None else dict(before))
        if after is None:
            if blob is not None:
                changes[obj] = None
        elif after != before:
            changes[obj] = repo.git.create_blob(encode(after))
    if not changes:
        return current
    sig = identity.signature()
    parents = [] if current is None else [current]
    return repo.git.create_commit(None, sig, sig, message, _apply(repo, tree, changes), parents)


def commit_blobs(
    repo: Repo,
    current: pygit2.Oid | None,
    changes: Mapping[str, pygit2.Oid | None],
    identity: Identity,
    message: str,
) -> pygit2.Oid | None:
    """Write a notes commit on `current` in which each object of `changes` has that note
    blob (None: no note), and return it; return `current` when nothing changes. Writes
    objects only, like commit_on."""
    tree = _tree_of(repo, current)
    effective = {obj: blob for obj, blob in changes.items() if _note_blob(repo, tree, obj) != blob}
    if not effective:
        return current
    sig = identity.signature()
    parents = [] if current is None else [current]
    return repo.git.create_commit(None, sig, sig, message, _apply(repo, tree, effective), parents)


def update(
    repo: Repo,
    mutations: Mapping[str, Mutation],
    identity: Identity,
    message: str = "Notes added by 'govsnap'",
    ref: str = NOTES_REF,
) -> None:
    """Apply each mutation to the current note of its object, as one CAS commit.

    Races with other writers are retried from the fresh state (see commit_on), so
    concurrent updates of different objects or fields are all kept.
    """

    def compute(current: pygit2.Oid | None) -> pygit2.Oid | None:
        return commit_on(repo, current, mutations, identity, message)

    update_ref(repo, ref, compute, message="govsnap: notes")


def merge_fields(repo: Repo, obj: str, fields: JSONObject, identity: Identity) -> None:
    """Set top-level `fields` in the note on `obj`, keeping the others."""

    def mutate(current: JSONObject | None) -> JSONObject:
        return {**(current or {}), **fields}

    update(repo, {obj: mutate}, identity)


def remove(repo: Repo, objs: list[str], identity: Identity) -> None:
    """Remove the notes on `objs` (absent ones are ignored)."""
    update(repo, dict.fromkeys(objs, lambda _current: None), identity, "Notes removed by 'govsnap'")


# Results kept from both sides when a note is merged: the newer one stays in place, the
# older one moves to `result_history` (newest first, at most HISTORY_LIMIT per kind).
RESULT_FIELDS = ("verification", "rehearsal")
HISTORY_FIELD = "result_history"
HISTORY_LIMIT = 20


# --- notes --------------------------------------------------------------------------------


class _Missing:
    """Marks a key absent from one side of a merge."""


MISSING = _Missing()


def _canonical(value: Any) -> bytes:
    return encode({"v": value})


def _newest_first(results: Iterable[Any]) -> list[Any]:
    """Return distinct results, newest first (ties in a fixed order, so both sides of a
    merge compute the same list)."""
    unique = {_canonical(r): r for r in results}

    def key(item: tuple[bytes, Any]) -> tuple[float, bytes]:
        when = result_time(item[1])
        return (float("-inf") if when is None else when, item[0])

    ordered = sorted(unique.items(), key=key, reverse=True)
    return [r for _, r in ordered]


def _merge_value(key: str, base: Any, local: Any, remote: Any) -> Any:
    """Return the merged value of one field (MISSING: the field is absent)."""
    if local == remote:
        return local
    if base == local:
        return remote  # only the remote changed it (or added or removed it)
    if base == remote:
        return local  # only we did
    if local is MISSING or remote is MISSING:
        return remote if local is MISSING else local  # changed on one side, gone on the other
    if key == "pinned":
        return bool(local) or bool(remote)  # pinned on either side: keep the snapshot
    if isinstance(local, dict) and isinstance(remote, dict):
        return _merge_dict(base if isinstance(base, dict) else {}, local, remote)
    if isinstance(local, list) and isinstance(remote, list):
        return local + [item for item in remote if item not in local]
    return local  # a value both sides changed differently: this clone's stays


def _merge_dict(base: JSONObject, local: JSONObject, remote: JSONObject) -> JSONObject:
    merged: JSONObject = {}
    for key in sorted(set(local) | set(remote)):
        value = _merge_value(
            key, base.get(key, MISSING), local.get(key, MISSING), remote.get(key, MISSING)
        )
        if value is not MISSING:
            merged[key] = value
    return merged


def merge_note(base: JSONObject | None, local: JSONObject, remote: JSONObject) -> JSONObject:
    """Return the field-by-field merge of one snapshot's note edited on two sides.

    A field changed on one side only takes that side's value (three-way, against `base`,
    the note where the two histories last met; None when they never did). Where both
    changed it: `verification` and `rehearsal` keep the newer result (by its `time`) and
    move the other into `result_history`, so no result is lost; `pinned` is true if
    either side pinned; dicts merge by field; lists are joined; any other value keeps
    this clone's.
    """
    base = base or {}
    merged = _merge_dict(base, local, remote)
    history: dict[str, list[Any]] = {
        k: list(v) for k, v in dict(merged.get(HISTORY_FIELD) or {}).items() if isinstance(v, list)
    }
    for key in RESULT_FIELDS:
        mine, theirs = local.get(key), remote.get(key)
        if mine == theirs or base.get(key) in (mine, theirs):
            continue
        both = [r for r in (mine, theirs) if r is not None]
        ordered = _newest_first(both)
        merged[key] = ordered[0]
        history[key] = ordered[1:] + history.get(key, [])
    if history:
        merged[HISTORY_FIELD] = {
            k: _newest_first(v)[:HISTORY_LIMIT] for k, v in sorted(history.items())
        }
    return merged


def merge_blobs(
    repo: Repo,
    base: Mapping[str, pygit2.Oid],
    local: Mapping[str, pygit2.Oid],
    remote: Mapping[str, pygit2.Oid],
    keep_remote: Callable[[str], bool],
) -> dict[str, pygit2.Oid]:
    """Return annotated object -> note blob after merging two sets of notes.

    A note only this clone has is kept. A note only the remote has is taken when
    `keep_remote` says so: it annotates one of this clone's snapshots or one the fetch
    refused (not one pruned here, nor a replaced tag). A
    note on both sides is merged with merge_note; one that is not JSON is left as it is
    here.
    """
    odb = repo.git.odb
    merged = dict(local)
    for obj, theirs in remote.items():
        mine = local.get(obj)
        if mine is None:
            if keep_remote(obj):
                merged[obj] = theirs
            continue
        if mine == theirs or base.get(obj) == theirs:
            continue
        if base.get(obj) == mine:
            merged[obj] = theirs
            continue
        ours_note = decode(bytes(odb.read(mine)[1]))
        theirs_note = decode(bytes(odb.read(theirs)[1]))
        if ours_note.error or theirs_note.error:
            continue
        base_blob = base.get(obj)
        base_note = decode(bytes(odb.read(base_blob)[1])) if base_blob else None
        result = merge_note(
            base_note.data if base_note and not base_note.error else None,
            ours_note.data,
            theirs_note.data,
        )
        if result != ours_note.data:
            merged[obj] = repo.git.create_blob(encode(result))
    return merged


def merge_commits(
    repo: Repo,
    current: pygit2.Oid | None,
    theirs: pygit2.Oid | None,
    wanted: set[str],
    adopt: Mapping[str, pygit2.Oid],
    identity: Identity,
) -> tuple[pygit2.Oid | None, NotesMerge]:
    """Return refs/notes/govsnap after merging the remote's notes commit `theirs` into
    `current`, and how: "absent" (no remote notes), "unchanged", "fast-forward" or
    "merged" (a commit whose parents are ours and theirs, so that pushing it is a
    fast-forward for the remote and `git log` shows both histories). Writes objects only.

    `wanted` are the tags whose notes the result holds when either side has one: this
    clone's snapshots, and the remote's snapshots this fetch refused (their notes are
    kept, unattached here, so that pushing the merge never removes them from the
    remote, and so that the fetch that adds the snapshot adds its note). Which of them
    have a note never depends on history: one with none here takes the remote's even
    when our notes already contain the remote's commit, else its note in `adopt` (the
    note it was just added with).
    """
    git = repo.git
    mine = note_blobs_at(repo, current)
    if theirs is None or contains(repo, current, theirs):
        their_blobs = note_blobs_at(repo, theirs)
        gained = {**adopt, **their_blobs}
        missing = {obj: gained[obj] for obj in wanted if obj not in mine and obj in gained}
        if not missing:
            return current, "absent" if theirs is None else "unchanged"
        message = "Notes of fetched snapshots added by 'govsnap fetch'\n"
        new = commit_blobs(repo, current, missing, identity, message)
        return new, "absent" if theirs is None else "merged"
    base = git.merge_base(current, theirs) if current is not None else None
    blobs = merge_blobs(
        repo,
        note_blobs_at(repo, base),
        mine,
        note_blobs_at(repo, theirs),
        wanted.__contains__,
    )
    for obj, blob in adopt.items():
        blobs.setdefault(obj, blob)
    tree = build_tree(repo, blobs)
    their_commit = git[theirs]
    assert isinstance(their_commit, pygit2.Commit)
    if (current is None or git.descendant_of(theirs, current)) and tree == their_commit.tree_id:
        return theirs, "fast-forward"
    sig = identity.signature()
    parents = [theirs] if current is None else [current, theirs]
    message = "Notes merged by 'govsnap fetch'\n"
    return git.create_commit(None, sig, sig, message, tree, parents), "merged"
