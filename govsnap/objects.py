"""The snapshot tag payload (the only code that knows its bytes), ids, and CAS ref updates."""

from __future__ import annotations

import fcntl
import hashlib
import os
import random
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import pygit2
from pygit2.enums import ObjectType

from govsnap.errors import (
    ConcurrentUpdate,
    CorruptObject,
    EnvironmentProblem,
    HistoryRewritten,
    UsageError,
)
from govsnap.refs import AUDIT_REF, VERIFIED_AUDIT_REF
from govsnap.repo import Identity, Repo, parse_ident_line

# Govsnap-Format of new snapshots; every format in READABLE_FORMATS still verifies (the
# format names the manifest encoding of the content digest, see digest.py).
FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)
# The object-store lock file under .git/govsnap/ (see writing()).
GC_LOCK = "gc-mutex"
ID_LENGTH = 16

# Lines that open a signature block, as git's parse_signed_buffer knows them.
SIGNATURE_HEADERS = (
    b"-----BEGIN PGP SIGNATURE-----",
    b"-----BEGIN PGP MESSAGE-----",
    b"-----BEGIN SIGNED MESSAGE-----",
    b"-----BEGIN SSH SIGNATURE-----",
)

# The grammar of trigger, environment and label names (docs/format.md): ASCII letters,
# digits, '.', '_', '-', starting with a letter or digit, at most 64, never "..". It is
# held by create and by every reader of a payload (verify, the server), because a
# name is shown on terminals and matched against the trust policy's patterns.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_HEX40 = re.compile(r"^[0-9a-f]{40}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_TAG_NAME = re.compile(r"^govsnap/(?P<env>[^/]+)/[0-9]{8}T[0-9]{6}Z(?:-[0-9a-f]{8})?$")
# Characters that change what a terminal shows (C0 and C1 controls, DEL, bidirectional
# overrides and isolates, zero-width and other format characters).
_UNSAFE = re.compile(
    r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u206f\ufeff]"
)
MAX_MESSAGE = 16 * 1024  # characters of free text in a payload
MAX_REF = 1024  # characters of a source ref
# The last second of year 9999: later times cannot be shown as dates, and no snapshot
# needs them. Times before 1970 are refused too.
MAX_TIME = 253_402_300_799


def validate_name(kind: str, value: str) -> str:
    """Return `value` if it is a safe trigger, environment or label name, else raise."""
    if not _NAME.match(value) or ".." in value:
        shown = value if len(value) <= 80 else value[:77] + "..."
        raise UsageError(
            f"invalid {kind} {shown!r}: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit, without '..'"
        )
    return value


def unsafe_character(text: str, allow: str = "") -> str | None:
    """Return a description of the first character of `text` that a terminal would act on
    (a control, bidirectional or zero-width character), ignoring those in `allow`."""
    for found in _UNSAFE.finditer(text):
        if found.group() not in allow:
            return f"U+{ord(found.group()):04X} at position {found.start()}"
    if "\t" in text and "\t" not in allow:
        return f"U+0009 at position {text.index(chr(9))}"
    if "\n" in text and "\n" not in allow:
        return f"U+000A at position {text.index(chr(10))}"
    return None


def validate_message(message: str) -> str:
    """Return a cleaned free-text message, refusing text that could forge payload structure
    or act on a terminal."""
    text = message.strip()
    if "\0" in text:
        raise UsageError("the message must not contain NUL characters")
    problem = unsafe_character(text, "\n\t")
    if problem:
        raise UsageError(f"the message must not contain control characters ({problem})")
    if len(text) > MAX_MESSAGE:
        raise UsageError(f"the message is longer than {MAX_MESSAGE} characters")
    for line in text.splitlines():
        if line.startswith("-----BEGIN") or line.startswith("Govsnap-"):
            raise UsageError(f"the message must not contain a line starting with {line[:10]!r}")
    return text


def utc(epoch: int, layout: str = "%Y-%m-%d %H:%M:%SZ") -> str:
    """Return an epoch as `2026-11-24 13:10:07Z` (or in `layout`), or `@<epoch>` for a time
    no date can show (beyond year 9999: times in unsigned data are anything)."""
    try:
        return datetime.fromtimestamp(epoch, UTC).strftime(layout)
    except (ValueError, OverflowError, OSError):
        return f"@{epoch}"


ISO_UTC = "%Y-%m-%dT%H:%M:%SZ"


class Trigger(StrEnum):
    """The triggers govsnap records itself (`create --trigger` takes any valid name)."""

    MANUAL = "manual"
    PRE_PUSH = "pre-push"
    POST_MERGE = "post-merge"
    # A safety snapshot: taken before a rollback, its undo. It captures untracked files,
    # so it stays in this clone (push --include-safety shares it) and has a retention
    # group of its own (govsnap.safetyRetention).
    PRE_ROLLBACK = "pre-rollback"


@dataclass(frozen=True)
class Source:
    """The ref and commit a snapshot was taken from."""

    ref: str
    commit: str


@dataclass(frozen=True)
class SnapshotPayload:
    """The signed content of a snapshot tag: headers, summary, optional message, trailers."""

    commit: str
    tag_name: str
    tagger: Identity
    summary: str
    digest: str
    tree: str
    trigger: str
    environment: str
    labels: tuple[str, ...] = ()
    source: Source | None = None
    index_commit: str | None = None
    message: str = ""
    format: int = FORMAT_VERSION

    def trailers(self) -> list[tuple[str, str]]:
        """Return the trailers in their fixed order."""
        items = [
            ("Govsnap-Format", str(self.format)),
            ("Govsnap-Digest", self.digest),
            ("Govsnap-Tree", self.tree),
        ]
        if self.source is not None:
            items.append(("Govsnap-Source", f"{self.source.ref} {self.source.commit}"))
        if self.index_commit is not None:
            items.append(("Govsnap-Index", self.index_commit))
        items.append(("Govsnap-Trigger", self.trigger))
        items.append(("Govsnap-Environment", self.environment))
        items.extend(("Govsnap-Label", label) for label in self.labels)
        return items

    def to_bytes(self) -> bytes:
        """Return the unsigned tag object content, exactly as hashed and signed."""
        body = self.summary + "\n\n"
        if self.message:
            body += self.message + "\n\n"
        body += "".join(f"{k}: {v}\n" for k, v in self.trailers())
        head = (
            f"object {self.commit}\n"
            "type commit\n"
            f"tag {self.tag_name}\n"
            f"tagger {self.tagger.line()}\n"
            "\n"
        )
        return (head + body).encode()

    @property
    def id(self) -> str:
        """Return the snapshot id: the first 16 hex digits of SHA-256 of the payload."""
        return snapshot_id(self.to_bytes())

    @classmethod
    def parse(cls, payload: bytes) -> SnapshotPayload:
        """Parse unsigned tag content; raise CorruptObject when it is not a govsnap payload."""
        try:
            text = payload.decode()
        except UnicodeDecodeError as exc:
            raise CorruptObject("tag payload is not UTF-8") from exc
        head, sep, body = text.partition("\n\n")
        if not sep:
            raise CorruptObject("tag has no message")
        headers: dict[str, str] = {}
        for line in head.split("\n"):
            key, _, value = line.partition(" ")
            headers[key] = value
        if list(headers) != ["object", "type", "tag", "tagger"]:
            raise CorruptObject("tag headers are not object/type/tag/tagger")
        if headers["type"] != "commit" or not _HEX40.match(headers["object"]):
            raise CorruptObject("tag does not point at a commit")
        paragraphs = body.rstrip("\n").split("\n\n")
        if len(paragraphs) < 2:
            raise CorruptObject("tag message has no trailers")
        summary = paragraphs[0]
        message = "\n\n".join(paragraphs[1:-1])
        trailers: dict[str, list[str]] = {}
        for line in paragraphs[-1].split("\n"):
            key, sep, value = line.partition(": ")
            if not sep or not key.startswith("Govsnap-"):
                raise CorruptObject(f"malformed trailer line {line!r}")
            trailers.setdefault(key, []).append(value)

        def one(key: str, required: bool = True) -> str | None:
            values = trailers.get(key, [])
            if len(values) > 1 or (required and not values):
                raise CorruptObject(f"trailer {key} must appear exactly once")
            return values[0] if values else None

        fmt = one("Govsnap-Format")
        if fmt not in {str(known) for known in READABLE_FORMATS}:
            raise CorruptObject(f"unsupported Govsnap-Format {fmt!r}")
        digest = str(one("Govsnap-Digest"))
        tree = str(one("Govsnap-Tree"))
        if not _DIGEST.match(digest) or not _HEX40.match(tree):
            raise CorruptObject("Govsnap-Digest or Govsnap-Tree is malformed")
        source = None
        raw_source = one("Govsnap-Source", required=False)
        if raw_source is not None:
            ref, _, commit = raw_source.rpartition(" ")
            if not ref or not _HEX40.match(commit):
                raise CorruptObject("Govsnap-Source is malformed")
            source = Source(ref, commit)
        index_commit = one("Govsnap-Index", required=False)
        if index_commit is not None and not _HEX40.match(index_commit):
            raise CorruptObject("Govsnap-Index is malformed")
        known = {
            "Govsnap-Format",
            "Govsnap-Digest",
            "Govsnap-Tree",
            "Govsnap-Source",
            "Govsnap-Index",
            "Govsnap-Trigger",
            "Govsnap-Environment",
            "Govsnap-Label",
        }
        unknown = set(trailers) - known
        if unknown:
            raise CorruptObject(f"unknown trailer {sorted(unknown)[0]}")
        try:
            tagger = parse_ident_line(headers["tagger"])
        except UsageError as exc:
            raise CorruptObject("malformed tagger line") from exc
        _check_signed_text(headers, tagger, summary, message, source, trailers)
        parsed = cls(
            commit=headers["object"],
            tag_name=headers["tag"],
            tagger=tagger,
            summary=summary,
            digest=digest,
            tree=tree,
            trigger=str(one("Govsnap-Trigger")),
            environment=str(one("Govsnap-Environment")),
            labels=tuple(trailers.get("Govsnap-Label", [])),
            source=source,
            index_commit=index_commit,
            message=message,
            format=int(str(fmt)),
        )
        if parsed.to_bytes() != payload:
            # Only one serialisation is valid, so the id of a payload is unambiguous.
            raise CorruptObject("tag payload is not in canonical form")
        return parsed


def _check_signed_text(
    headers: dict[str, str],
    tagger: Identity,
    summary: str,
    message: str,
    source: Source | None,
    trailers: dict[str, list[str]],
) -> None:
    """Raise CorruptObject unless every name and text of a payload keeps to the documented
    grammar: a signature makes them authentic, not harmless (a key trusted for
    `staging-*` could otherwise sign `staging-<ESC>[8Dproduction`)."""
    for key in ("Govsnap-Trigger", "Govsnap-Environment", "Govsnap-Label"):
        for value in trailers.get(key, []):
            try:
                validate_name(key.removeprefix("Govsnap-").lower(), value)
            except UsageError as exc:
                raise CorruptObject(f"{key}: {exc.message.removeprefix('invalid ')}") from exc
    tag = _TAG_NAME.match(headers["tag"])
    environment = trailers.get("Govsnap-Environment", [""])[0]
    if tag is None or tag.group("env") != environment:
        raise CorruptObject("the tag name is not govsnap/<environment>/<time>-<hex>")
    if not 0 <= tagger.time <= MAX_TIME:
        raise CorruptObject(f"the tagger time {tagger.time} is outside 1970 to 9999")
    texts = {
        "tagger name": (tagger.name, ""),
        "tagger email": (tagger.email, ""),
        "summary": (summary, ""),
        "message": (message, "\n\t"),
        "Govsnap-Source": (source.ref if source else "", ""),
    }
    for what, (text, allow) in texts.items():
        problem = unsafe_character(text, allow)
        if problem:
            raise CorruptObject(f"the {what} holds a control character ({problem})")
    if len(message) > MAX_MESSAGE or len(summary) > MAX_REF + 200:
        raise CorruptObject("the summary or message is longer than govsnap writes")
    if source is not None and (len(source.ref) > MAX_REF or " " in source.ref):
        raise CorruptObject("Govsnap-Source names no valid ref")


def payload_to_tuple(payload: SnapshotPayload) -> tuple[Any, ...]:
    """Return a payload as plain values (for the parsed-object cache)."""
    t = payload.tagger
    return (
        payload.commit,
        payload.tag_name,
        (t.name, t.email, t.time, t.offset),
        payload.summary,
        payload.digest,
        payload.tree,
        payload.trigger,
        payload.environment,
        payload.labels,
        None if payload.source is None else (payload.source.ref, payload.source.commit),
        payload.index_commit,
        payload.message,
        payload.format,
    )


def payload_from_tuple(values: tuple[Any, ...]) -> SnapshotPayload:
    """Return the payload `payload_to_tuple` gave `values` for."""
    (commit, tag_name, tagger, summary, digest, tree, trigger, environment, labels, source,
     index_commit, message, fmt) = values  # fmt: skip
    return SnapshotPayload(
        commit=commit,
        tag_name=tag_name,
        tagger=Identity(*tagger),
        summary=summary,
        digest=digest,
        tree=tree,
        trigger=trigger,
        environment=environment,
        labels=tuple(labels),
        source=None if source is None else Source(*source),
        index_commit=index_commit,
        message=message,
        format=fmt,
    )


def snapshot_id(payload: bytes) -> str:
    """Return the id of an unsigned payload."""
    return hashlib.sha256(payload).hexdigest()[:ID_LENGTH]


@dataclass(frozen=True)
class SignedTag:
    """A raw tag object split into the signed payload and the appended signature."""

    payload: bytes
    signature: bytes = field(default=b"")

    @classmethod
    def split(cls, raw: bytes) -> SignedTag:
        """Split raw tag content at the start of its last signature block.

        Like git's parse_signed_buffer: the block starts at the last line that begins
        with a known signature header.
        """
        start = len(raw)
        while True:
            start = raw.rfind(b"-----BEGIN ", 0, start)
            if start < 0:
                return cls(raw)
            at_line_start = start == 0 or raw[start - 1] == 0x0A
            if at_line_start and raw.startswith(SIGNATURE_HEADERS, start):
                return cls(raw[:start], raw[start:])

    @property
    def raw(self) -> bytes:
        """Return the tag object content."""
        return self.payload + self.signature

    @property
    def signature_kind(self) -> SignatureKind:
        """Return the kind of the tag's signature."""
        return signature_kind(self.signature)


class SignatureKind(StrEnum):
    """The kinds of signature git makes (gpg.format), and none."""

    OPENPGP = "openpgp"
    SSH = "ssh"
    X509 = "x509"
    NONE = "none"


def signature_kind(block: bytes | None) -> SignatureKind:
    """Return the kind of a signature block (of a tag, or a commit's gpgsig), by its first
    line as git's parse_signed_buffer tells them apart."""
    if not block:
        return SignatureKind.NONE
    first = block.split(b"\n", 1)[0]
    if first == b"-----BEGIN SSH SIGNATURE-----":
        return SignatureKind.SSH
    if first == b"-----BEGIN SIGNED MESSAGE-----":
        return SignatureKind.X509
    return SignatureKind.OPENPGP


def read_tag(repo: Repo, oid: pygit2.Oid | str) -> SignedTag:
    """Return the raw content of a tag object, split into payload and signature."""
    try:
        kind, data = repo.git.odb.read(oid)
    except (KeyError, ValueError) as exc:
        raise CorruptObject(f"tag object {oid} is missing") from exc
    except pygit2.GitError as exc:  # a damaged pack or loose object
        raise CorruptObject(f"tag object {oid} is unreadable: {exc}") from exc
    if kind != ObjectType.TAG:
        raise CorruptObject(f"object {oid} is not a tag")
    return SignedTag.split(bytes(data))


def write_tag(repo: Repo, tag: SignedTag) -> pygit2.Oid:
    """Write a tag object and return its oid."""
    return repo.git.odb.write(ObjectType.TAG, tag.raw)


def write_commit(
    repo: Repo, tree: str, parents: list[str], identity: Identity, message: str
) -> pygit2.Oid:
    """Write a commit object (no ref moves) and return its oid."""
    sig = identity.signature()
    return repo.git.create_commit(
        None, sig, sig, message, pygit2.Oid(hex=tree), [pygit2.Oid(hex=p) for p in parents]
    )


# --- compare-and-swap ref updates -------------------------------------------------------

_ATTEMPTS = 200
_REWRITE_CONFIRMATIONS = 10  # consecutive looks before a mismatch counts as a rewrite
# What libgit2 raises when a ref moved under us (GitError: the compare-and-swap failed;
# AlreadyExistsError, KeyError: created or deleted meanwhile) or when another process
# holds its lock file or packed-refs.lock (OSError): all are worth another try.
_RACES = (pygit2.AlreadyExistsError, pygit2.GitError, KeyError, OSError)


def _backoff(attempt: int) -> None:
    time.sleep(min(0.05, 0.001 * (attempt + 1)) * random.random())


def ref_target(repo: Repo, name: str) -> pygit2.Oid | None:
    """Return what a direct ref points at, or None when it does not exist."""
    ref = repo.git.references.get(name)
    target = None if ref is None else ref.target
    return target if isinstance(target, pygit2.Oid) else None


def contains(repo: Repo, ours: pygit2.Oid | None, theirs: pygit2.Oid | str | None) -> bool:
    """Return True when history `ours` already holds `theirs` (or there is nothing in
    `theirs`); False when it does not, or when `theirs` was never fetched here."""
    if theirs is None:
        return True
    theirs = pygit2.Oid(hex=theirs) if isinstance(theirs, str) else theirs
    if ours == theirs:
        return True
    if ours is None or not repo.git.odb.exists(theirs):
        return False
    return bool(repo.git.descendant_of(ours, theirs))


@contextmanager
def writing(repo: Repo) -> Iterator[None]:
    """Hold the shared side of the object-store lock while writing objects that a ref
    will name. `prune --now` takes the exclusive side around `git gc --prune=now`, which
    deletes every unreachable object at once: an audit entry written but not yet on its
    ref would go, and the ref would then point at nothing (issue 13, attack 9)."""
    with _gc_lock(repo, fcntl.LOCK_SH):
        yield


@contextmanager
def collecting(repo: Repo) -> Iterator[None]:
    """Hold the exclusive side of the object-store lock (see writing): no govsnap process
    writes objects meanwhile."""
    with _gc_lock(repo, fcntl.LOCK_EX):
        yield


@contextmanager
def _gc_lock(repo: Repo, mode: int) -> Iterator[None]:
    # flock: released by the kernel when the process dies, so a killed writer never
    # leaves the lock held.
    fd = os.open(repo.state_dir / GC_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, mode)
        yield
    finally:
        os.close(fd)


def _audit_continuity(repo: Repo, current: pygit2.Oid | None) -> pygit2.Oid | None:
    """Return what this clone last recorded of the audit chain (VERIFIED_AUDIT_REF);
    raise HistoryRewritten when the chain at `current` no longer holds it."""
    recorded = ref_target(repo, VERIFIED_AUDIT_REF)
    if recorded is None or recorded == current:
        return recorded
    odb = repo.git.odb
    holds = (
        current is not None
        and odb.exists(current)
        and odb.exists(recorded)
        and repo.git.descendant_of(current, recorded)
    )
    if holds:
        return recorded
    state = "is gone" if current is None else f"is {current}"
    raise HistoryRewritten(
        f"{AUDIT_REF} no longer holds entry {recorded}, which this clone recorded "
        f"(the ref {state}: rewritten, truncated, deleted, or an object is missing); nothing "
        f"was written. Restore it from this clone's record: git update-ref {AUDIT_REF} "
        f"{recorded} (or run govsnap doctor)"
    )


def update_ref(
    repo: Repo,
    name: str,
    compute: Callable[[pygit2.Oid | None], pygit2.Oid | None],
    message: str = "govsnap",
) -> pygit2.Oid | None:
    """Move ref `name` to compute(current) by compare-and-swap, retrying on races.

    `compute` may be called several times; it must derive the new value from the
    current one only. Returning None deletes the ref. Returns the value written.
    """
    if name == AUDIT_REF:
        # The audit ref moves with its record of what this clone wrote (update_refs).
        def both(current: RefValues) -> RefValues:
            return {AUDIT_REF: compute(current[AUDIT_REF])}

        return update_refs(repo, [AUDIT_REF], both, message)[AUDIT_REF]
    with writing(repo):
        return _update_one(repo, name, compute, message)


def _update_one(
    repo: Repo,
    name: str,
    compute: Callable[[pygit2.Oid | None], pygit2.Oid | None],
    message: str,
) -> pygit2.Oid | None:
    for attempt in range(_ATTEMPTS):
        ref = repo.git.references.get(name)
        target = None if ref is None else ref.target
        current = target if isinstance(target, pygit2.Oid) else None
        new = compute(current)
        if new == current:
            return new
        try:
            if ref is None:
                assert new is not None
                repo.git.references.create(name, new, force=False)
            elif new is None:
                ref.delete()
            else:
                ref.set_target(new, message)
            return new
        except _RACES:
            _backoff(attempt)
    raise ConcurrentUpdate(_gave_up(repo, [name]))


def _gave_up(repo: Repo, names: Sequence[str]) -> str:
    """Return why updating `names` failed every attempt: a lock file left in place (by a
    killed process, if no other is running), or refs that kept moving."""
    for name in names:
        lock = repo.commondir / f"{name}.lock"
        if lock.exists():
            return (
                f"{name} is locked: {lock} exists; another govsnap or git process is "
                "writing it, or one was killed while it did: if none is running, delete "
                "the lock file (govsnap doctor --fix removes stale locks)"
            )
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    return f"{shown} kept changing under us; gave up after {_ATTEMPTS} attempts"


RefValues = dict[str, pygit2.Oid | None]
_ZERO = "0" * 40


def update_refs(
    repo: Repo,
    names: Sequence[str],
    compute: Callable[[RefValues], RefValues],
    message: str = "govsnap",
) -> RefValues:
    """Move several refs at once by compare-and-swap: all of the changes or none.

    `compute` gets the current value of each of `names` (None: absent) and returns the new
    value of those it changes (None deletes); it may be called several times and must
    derive the new values from the current ones only. One `git update-ref --stdin`
    transaction locks every ref and checks every old value before changing any: when a
    ref moved meanwhile, or another writer holds a lock, it changes nothing and is tried
    again from the fresh values. Returns the values written.

    A killed govsnap leaves all of the changes or none. git itself, killed while it
    commits (its files backend renames one lock file after another), leaves the updates
    before that point done, in the order of `names`, and deletions after every update:
    callers name the audit ref first, so that no change lands without its audit entry.
    """
    with writing(repo):
        return _update_many(repo, names, compute, message)


def _update_many(
    repo: Repo, names: Sequence[str], compute: Callable[[RefValues], RefValues], message: str
) -> RefValues:
    suspicions = 0
    for attempt in range(_ATTEMPTS):
        current = {name: ref_target(repo, name) for name in names}
        recorded = None
        if AUDIT_REF in names:
            try:
                recorded = _audit_continuity(repo, current[AUDIT_REF])
            except HistoryRewritten:
                # A reader can see a concurrent transaction half-committed (git renames
                # one lock file after another): only a mismatch that stays is a rewrite.
                suspicions += 1
                if suspicions >= _REWRITE_CONFIRMATIONS:
                    raise
                _backoff(attempt)
                continue
        wanted = compute(current)
        changes = {n: v for n, v in wanted.items() if v != current.get(n)}
        if not changes:
            return wanted
        script = b"".join(
            _transaction_line(n, changes[n], current[n]) for n in names if n in changes
        )
        if changes.get(AUDIT_REF) is not None:
            # Checked against what it held: a concurrent writer makes the transaction fail
            # and this attempt start again.
            script += _transaction_line(VERIFIED_AUDIT_REF, changes[AUDIT_REF], recorded)
        proc = repo.git_cmd("update-ref", "--stdin", "-z", "-m", message, input=script, check=False)
        if proc.returncode == 0:
            return wanted
        moved = any(ref_target(repo, name) != current[name] for name in names)
        if AUDIT_REF in names:
            moved = moved or ref_target(repo, VERIFIED_AUDIT_REF) != recorded
        detail = proc.stderr.decode(errors="replace").strip()
        if not moved and "exists" not in detail.lower():
            reason = detail.splitlines()[-1] if detail else f"exit code {proc.returncode}"
            raise EnvironmentProblem(f"git update-ref failed: {reason}")
        # Another writer moved a ref (compute again) or holds a lock (wait for it).
        _backoff(attempt)
    raise ConcurrentUpdate(_gave_up(repo, list(names)))


def _transaction_line(name: str, new: pygit2.Oid | None, old: pygit2.Oid | None) -> bytes:
    """Return one `git update-ref --stdin -z` command moving `name` from `old` to `new`."""
    expected = str(old) if old is not None else _ZERO
    if new is None:
        return f"delete {name}\0{expected}\0".encode()
    return f"update {name}\0{new}\0{expected}\0".encode()


def delete_ref(repo: Repo, name: str, expected: pygit2.Oid) -> bool:
    """Delete `name` only if it still points at `expected`; return whether it was deleted."""
    ref = repo.git.references.get(name)
    if ref is None or ref.target != expected:
        return False
    for attempt in range(_ATTEMPTS):
        try:
            ref.delete()
            return True
        except (pygit2.GitError, OSError):
            ref = repo.git.references.get(name)
            if ref is None or ref.target != expected:
                return False
            _backoff(attempt)
    raise ConcurrentUpdate(f"could not delete {name}: the ref store stayed locked")


# How far (seconds) an entry's time may lie before its parent's: clocks of the machines
# appending to one chain are never perfectly in step. `govsnap.auditSkew` overrides it.
DEFAULT_SKEW = 300


def configured_skew(repo: Repo) -> int:
    """Return `govsnap.auditSkew` (seconds), or the default; refuse a negative value."""
    skew = repo.config_int("govsnap.auditSkew", DEFAULT_SKEW)
    assert skew is not None
    if skew < 0:
        raise UsageError(f"govsnap.auditSkew must be 0 or more seconds, not {skew}")
    return skew
