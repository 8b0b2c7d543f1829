"""Metadata notes on snapshot tags (`refs/notes/govsnap`): bulk read, CAS write."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pygit2
from pygit2.enums import FileMode

from govsnap.objects import ref_target, update_ref
from govsnap.repo import Identity, Repo

NOTES_REF = "refs/notes/govsnap"
_HEX = frozenset("0123456789abcdef")

JSONObject = dict[str, Any]
Mutation = Callable[[JSONObject | None], JSONObject | None]


@dataclass(frozen=True)
class Note:
    """A note's parsed JSON, or the reason it could not be parsed."""

    data: JSONObject = field(default_factory=dict)
    error: str | None = None


def encode(data: Mapping[str, Any]) -> bytes:
    """Return the canonical JSON text of a note (sorted keys, trailing newline)."""
    return (json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()


def decode(raw: bytes) -> Note:
    """Parse a note blob; a note that is not a JSON object is returned with an error."""
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return Note(error=f"note is not valid JSON: {exc}")
    if not isinstance(data, dict):
        return Note(error="note is not a JSON object")
    return Note(data)


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


def read_all(repo: Repo, ref: str = NOTES_REF) -> dict[str, Note]:
    """Return every note, keyed by the hex oid of the object it annotates."""
    odb = repo.git.odb
    return {obj: decode(bytes(odb.read(blob)[1])) for obj, blob in note_blobs(repo, ref).items()}


def read(repo: Repo, obj: str, ref: str = NOTES_REF) -> Note | None:
    """Return the note on one object, or None."""
    blob = note_blobs(repo, ref).get(obj)
    return None if blob is None else decode(bytes(repo.git.odb.read(blob)[1]))


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
