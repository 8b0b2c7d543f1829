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


def update(
    repo: Repo,
    mutations: Mapping[str, Mutation],
    identity: Identity,
    message: str = "Notes added by 'govsnap'",
    ref: str = NOTES_REF,
) -> None:
    """Apply each mutation to the current note of its object, as one CAS commit.

    A mutation gets the current JSON (None when absent or unparseable) and returns the
    new JSON, or None to remove the note. Races with other writers are retried from the
    fresh state, so concurrent updates of different objects or fields are all kept.
    """
    sig = identity.signature()

    def compute(current: pygit2.Oid | None) -> pygit2.Oid | None:
        tree = _tree_of(repo, current)
        flat = tree is not None and all(e.filemode != FileMode.TREE for e in tree)
        existing = dict(_entries(repo, tree)) if tree is not None else {}
        if flat and tree is not None:
            builder = repo.git.TreeBuilder(tree)
        else:
            # Rewrite git's fan-out layout (or nothing) as one flat tree.
            builder = repo.git.TreeBuilder()
            for obj, note_blob in existing.items():
                builder.insert(obj, note_blob, FileMode.BLOB)
        changed = False
        for obj, mutate in mutations.items():
            blob = existing.get(obj)
            before = None if blob is None else decode(bytes(repo.git.odb.read(blob)[1])).data
            after = mutate(None if before is None else dict(before))
            if after is None:
                if blob is not None:
                    builder.remove(obj)
                    changed = True
            elif after != before:
                builder.insert(obj, repo.git.create_blob(encode(after)), FileMode.BLOB)
                changed = True
        if not changed:
            return current
        parents = [] if current is None else [current]
        return repo.git.create_commit(None, sig, sig, message, builder.write(), parents)

    update_ref(repo, ref, compute, message="govsnap: notes")


def put(repo: Repo, obj: str, data: JSONObject, identity: Identity) -> None:
    """Replace the note on `obj` with `data`."""
    update(repo, {obj: lambda _current: data}, identity)


def merge_fields(repo: Repo, obj: str, fields: JSONObject, identity: Identity) -> None:
    """Set top-level `fields` in the note on `obj`, keeping the others."""

    def mutate(current: JSONObject | None) -> JSONObject:
        return {**(current or {}), **fields}

    update(repo, {obj: mutate}, identity)


def remove(repo: Repo, objs: list[str], identity: Identity) -> None:
    """Remove the notes on `objs` (absent ones are ignored)."""
    update(repo, dict.fromkeys(objs, lambda _current: None), identity, "Notes removed by 'govsnap'")
