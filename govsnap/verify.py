"""The seven verification checks of a snapshot, the per-snapshot report, verifying many
snapshots in parallel, and recording the verdicts in the notes."""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

import pygit2
from pygit2.enums import ObjectType

from govsnap import audit, notes, objects, progress, worktree
from govsnap.digest import DigestCache, Digester, TreeDigest
from govsnap.errors import CheckFailed, CorruptObject, GovsnapError, UsageError
from govsnap.objects import ISO_UTC, SignedTag, SnapshotPayload, read_tag, snapshot_id, utc
from govsnap.prune import pinned_ids
from govsnap.repo import Identity, Repo
from govsnap.schemas import schema_name
from govsnap.signing import SignatureCheck, SignatureVerifier, canonical_block
from govsnap.store import Snapshot, filter_snapshots, list_snapshots, resolve
from govsnap.trust import OPERATIONS, TrustPolicy, load_policy, missing_policy, require_trust


class Check(StrEnum):
    """The seven checks of a snapshot, in the order they are made and shown."""

    ID = "id"  # the ref name is the payload's id
    TAG = "tag"  # a well-formed payload, tagging a commit of the signed tree
    SIGNATURE = "signature"
    TRUST = "trust"  # the policy trusts the signer for the environment (and operation)
    DIGEST = "digest"  # the content digest recomputed equals the signed one
    OBJECTS = "objects"  # every object is present
    NOTE = "note"  # the note's copies of signed fields agree with the payload


CHECKS = tuple(Check)
# Checks of what nobody signed: anyone who can push may edit a note, so a failed one is a
# warning shown beside the verdict, never part of it (the signed tag decides).
ADVISORY = frozenset({Check.NOTE})
# Below this many snapshots per worker, starting processes costs more than it saves:
# each worker imports its own keyring, walks the objects its snapshots share with the
# other's, and starts its own gpg (50 snapshots of 39k files, 4 alternating runs at load
# 11: 2.6 s with two workers, 2.0 s with one; 1,000 snapshots: 0.43x against 0.68x).
_MIN_PER_JOB = 100
_MAX_MISSING_SHOWN = 3


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check on one snapshot."""

    name: Check
    ok: bool
    message: str


@dataclass(frozen=True)
class SnapshotVerification:
    """Every check's outcome for one snapshot, and who signed it (when the signature holds)."""

    id: str
    checks: tuple[CheckResult, ...]
    signer: str | None

    @property
    def ok(self) -> bool:
        """Return True when every check of signed data passed (advisory ones aside)."""
        return all(c.ok for c in self.checks if c.name not in ADVISORY)

    @property
    def verdict(self) -> str:
        """Return "pass" or "fail"."""
        return "pass" if self.ok else "fail"

    def failures(self) -> list[str]:
        """Return one line per failed check of signed data: "check: message"."""
        return [
            f"{c.name}: {c.message}" for c in self.checks if not c.ok and c.name not in ADVISORY
        ]

    def warnings(self) -> list[str]:
        """Return one line per failed advisory check (a note that is not what the payload
        says): "check: message"."""
        return [f"{c.name}: {c.message}" for c in self.checks if not c.ok and c.name in ADVISORY]

    def check(self, name: Check) -> CheckResult:
        """Return the result of check `name`."""
        for result in self.checks:
            if result.name == name:
                return result
        raise KeyError(name)

    def as_json(self) -> dict[str, Any]:
        """Return the outcome of every check as JSON-ready data."""
        return {
            "id": self.id,
            "verdict": self.verdict,
            "signer": self.signer,
            "checks": {c.name: {"ok": c.ok, "message": c.message} for c in self.checks},
            "warnings": self.warnings(),  # the failed advisory checks, outside the verdict
        }

    def signed_by_json(self) -> dict[str, Any]:
        """Return who verification found signed the snapshot, as JSON-ready data."""
        signature, trust = self.check(Check.SIGNATURE), self.check(Check.TRUST)
        return {
            "signer": self.signer,
            "signature": {"ok": signature.ok, "message": signature.message},
            "trust": {"ok": trust.ok, "message": trust.message},
            "verdict": self.verdict,
        }


@dataclass(frozen=True)
class _Options:
    """What every check needs to know besides the snapshot; picklable for workers."""

    operation: str | None
    deep: bool
    policy: TrustPolicy | None
    require_trust: bool
    policy_source: str  # the policy's source, or why there is none
    now: int  # what "the future" is measured from
    skew: int  # govsnap.auditSkew: how far clocks may disagree
    # SSH signatures carry no time: times by which a snapshot is known to have existed
    # (the server's first acceptance, id -> time; `at`: now, for a push being received),
    # at which the key must be valid too, whatever time the signer wrote.
    seen: dict[str, int] = field(default_factory=dict)
    at: int | None = None


# --- when a server first received a snapshot ----------------------------------------------

# Where the server records when it first accepted each snapshot (one JSON line each).
RECEIVED_LOG = "received.log"


def record_received(repo: Repo, ids: Sequence[str], when: int) -> None:
    """Record when the server first accepted each snapshot: where the signature carries
    no time (SSH), the earliest time the server knows the snapshot existed."""
    if not ids:
        return
    with (repo.state_dir / RECEIVED_LOG).open("a") as fh:
        for ident in ids:
            fh.write(json.dumps({"id": ident, "time": when}) + "\n")


def received_times(repo: Repo) -> dict[str, int]:
    """Return snapshot id -> when the server first accepted it (empty on a clone)."""
    path = repo.state_dir / RECEIVED_LOG
    found: dict[str, int] = {}
    if not repo.is_bare or not path.is_file():
        return found
    for line in path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
            ident, when = str(record["id"]), int(record["time"])
        except (ValueError, KeyError, TypeError):
            continue
        found[ident] = min(when, found.get(ident, when))
    return found


def _options(
    repo: Repo,
    operation: str | None,
    deep: bool,
    policy: TrustPolicy | None,
    at: int | None = None,
) -> _Options:
    if operation is not None and operation not in OPERATIONS:
        raise UsageError(f"unknown operation {operation!r} (known: {', '.join(OPERATIONS)})")
    if policy is None:
        policy = load_policy(repo)
    source = policy.source if policy else missing_policy(repo)
    skew = objects.configured_skew(repo)
    now = int(time.time())
    seen = received_times(repo)
    return _Options(operation, deep, policy, require_trust(repo), source, now, skew, seen, at)


def _short(text: str, width: int = 40) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


class _Checker:
    """Runs the checks for snapshots of one repository, sharing work between them:
    one gpg process for all OpenPGP signatures; each tree and blob checked once, each
    root tree's digest computed once (or read from the cache, which vouches for it)."""

    def __init__(self, repo: Repo, options: _Options) -> None:
        self.repo = repo
        self.options = options
        # One digester per run: snapshots share almost all of their trees.
        self.digester = Digester(repo, DigestCache.for_repo(repo), options.deep)
        self.deep_digester: Digester | None = None
        # With a policy, signatures are checked against its keys only.
        policy = options.policy
        self.verifier = policy.verifier(repo) if policy else SignatureVerifier(repo)
        # tree oid -> its subtrees (oid, name), for trees whose entries are all present;
        # `whole`: trees whose every object below is present.
        self.trees_ok: dict[pygit2.Oid, list[tuple[pygit2.Oid, str]]] = {}
        self.whole: set[pygit2.Oid] = set()
        self.digests: dict[tuple[str, int], TreeDigest | CorruptObject] = {}
        # Snapshots share most blobs: each is looked up once per run.
        self.blobs_ok: set[pygit2.Oid] = set()

    def run(
        self, snaps: Sequence[Snapshot], advance: Callable[[int], None] | None = None
    ) -> list[SnapshotVerification]:
        """Return the verification of each snapshot, in order (telling `advance` of each
        one done)."""
        tags: list[SignedTag | CorruptObject] = []
        for snap in snaps:
            try:
                tags.append(read_tag(self.repo, snap.tag_oid))
            except CorruptObject as exc:
                tags.append(exc)
        readable = [t for t in tags if isinstance(t, SignedTag)]
        self.prefetch_digests(readable)
        self.find_complete(readable)
        try:
            checked = self.verifier.verify_many([(t.payload, t.signature) for t in readable])
            ssh_ids = [s.id for s, t in zip(snaps, tags, strict=True) if isinstance(t, SignedTag)]
            checked = [
                self.at_known_times(ident, tag, check)
                for ident, tag, check in zip(ssh_ids, readable, checked, strict=True)
            ]
        finally:
            self.verifier.close()
        verdicts = iter(checked)
        done = []
        for snap, tag in zip(snaps, tags, strict=True):
            done.append(
                self.verify(snap, tag, next(verdicts) if isinstance(tag, SignedTag) else None)
            )
            if advance is not None:
                advance(1)
        self.digester.flush()
        return done

    def find_complete(self, tags: Sequence[SignedTag]) -> None:
        """Mark the payloads' trees whole when git finds every object below all of them
        present: one `git rev-list --objects --missing=print` walks the objects they
        share once, in C (50 snapshots of 39,000 files: ~40 ms, against ~150 ms for the
        Python walk). When git names a missing object, or cannot walk a tree, the walk
        below finds which snapshots lack what, and says where. --deep reads every blob."""
        if self.options.deep:
            return
        trees: set[pygit2.Oid] = set()
        for tag in tags:
            try:
                oid = pygit2.Oid(hex=SnapshotPayload.parse(tag.payload).tree)
            except CorruptObject:
                continue
            # rev-list would list a blob or commit given here as an object like any other.
            if isinstance(self.repo.git.get(oid), pygit2.Tree):
                trees.add(oid)
        if not trees:
            return
        listed = self.repo.git_cmd(
            "rev-list",
            "--objects",
            "--missing=print",
            "--no-object-names",
            "--stdin",
            input="".join(f"{oid}\n" for oid in trees).encode(),
            check=False,
        )
        if listed.returncode == 0 and b"\n?" not in b"\n" + listed.stdout:
            self.whole.update(trees)

    def prefetch_digests(self, tags: Sequence[SignedTag]) -> None:
        """Read the cached digests of every well-formed payload's tree in one query."""
        keys: list[tuple[pygit2.Oid, int]] = []
        for tag in tags:
            try:
                payload = SnapshotPayload.parse(tag.payload)
            except CorruptObject:
                continue
            keys.append((pygit2.Oid(hex=payload.tree), payload.format))
        self.digester.prefetch(keys)

    def at_known_times(self, ident: str, tag: SignedTag, check: SignatureCheck) -> SignatureCheck:
        """Return `check`, failed when the key was not valid when a server receives the
        snapshot (`at`: any key; an OpenPGP key that expired before then, whatever time
        its signature claims), or, for an SSH key, at the server's first acceptance: the
        time a key is otherwise judged at is the signer's word."""
        if not check.valid:
            return check
        if self.options.at is not None:
            check = self.verifier.at_arrival(tag.payload, tag.signature, check, self.options.at)
        if not check.valid or check.kind != "ssh":
            return check
        times = {t for t in (self.options.seen.get(ident),) if t is not None}
        for when in sorted(times):
            again = self.verifier.verify(tag.payload, tag.signature, when)
            if not again.valid:
                return replace(
                    again,
                    reason=f"{again.reason} (judged at {utc(when)}, when the snapshot is known "
                    "to have existed)",
                )
        return check

    def verify(
        self, snap: Snapshot, tag: SignedTag | CorruptObject, sig: SignatureCheck | None
    ) -> SnapshotVerification:
        """Return the seven checks of one snapshot whose tag was read (or failed to be)."""
        if isinstance(tag, CorruptObject):
            reason = f"cannot read the tag: {tag.message}"
            failed = tuple(CheckResult(name, False, reason) for name in CHECKS)
            return SnapshotVerification(snap.id, failed, None)
        assert sig is not None
        ident = snapshot_id(tag.payload)
        payload: SnapshotPayload | None = None
        try:
            payload = SnapshotPayload.parse(tag.payload)
            tag_result = self.check_tag(payload)
        except CorruptObject as exc:
            tag_result = CheckResult(Check.TAG, False, f"malformed snapshot tag: {exc.message}")
        signature = self.check_signature(payload, sig, tag.signature)
        signer = sig.signer if signature.ok else None
        checks = (
            self.check_id(snap.id, ident),
            tag_result,
            signature,
            self.check_trust(payload, signer),
            self.check_digest(payload),
            self.check_objects(snap, payload),
            self.check_note(snap, payload, ident),
        )
        return SnapshotVerification(snap.id, checks, signer)

    # --- the checks ------------------------------------------------------------------------

    def check_id(self, ref_id: str, ident: str) -> CheckResult:
        """Check 1: the ref name equals the id recomputed from the payload."""
        if ref_id == ident:
            return CheckResult(Check.ID, True, "the ref name is the payload's id")
        return CheckResult(
            Check.ID,
            False,
            f"the ref names {ref_id} but the tag's payload hashes to {ident}: "
            "the ref was moved to another tag",
        )

    def check_tag(self, payload: SnapshotPayload) -> CheckResult:
        """Check 2: the tag points at a commit whose tree is the signed Govsnap-Tree."""
        try:
            commit = self.repo.git[payload.commit]
        except (KeyError, ValueError, pygit2.GitError):
            return CheckResult(Check.TAG, False, f"the tagged commit {payload.commit} is missing")
        if not isinstance(commit, pygit2.Commit):
            return CheckResult(
                Check.TAG, False, f"the tagged object {payload.commit} is not a commit"
            )
        if str(commit.tree_id) != payload.tree:
            return CheckResult(
                Check.TAG,
                False,
                f"the tagged commit's tree {commit.tree_id} is not the signed "
                f"Govsnap-Tree {payload.tree}",
            )
        ahead = payload.tagger.time - self.options.now
        if ahead > self.options.skew:
            return CheckResult(
                Check.TAG,
                False,
                f"the tagger time {utc(payload.tagger.time)} lies {ahead}s in the future "
                f"(more than govsnap.auditSkew, {self.options.skew}s)",
            )
        return CheckResult(Check.TAG, True, f"tag of commit {payload.commit[:12]}, tree as signed")

    def check_signature(
        self, payload: SnapshotPayload | None, sig: SignatureCheck, block: bytes
    ) -> CheckResult:
        """Check 3: the signature is good, in its one canonical form, by a key valid when
        it signed, made when the payload says the snapshot was made."""
        if not sig.valid:
            return CheckResult(Check.SIGNATURE, False, sig.reason)
        if canonical_block(block) != block:
            # The block is not hashed into the id: another form of a good signature is
            # another object under the same id, which only its copier made.
            return CheckResult(
                Check.SIGNATURE,
                False,
                "the signature block is not in its canonical form (armour headers, line "
                "breaks or packet framing changed after signing: a re-armoured copy)",
            )
        if payload is not None and sig.signed_at is not None:
            # A key's validity is judged at the signature's time, which the signer's
            # clock sets (gpg --faked-system-time): a signature older than the snapshot
            # it signs would let a retired key sign today with a date from before it
            # expired. (A tagger time older than the signature is a back-dated snapshot,
            # as GIT_COMMITTER_DATE makes: the key is still judged at the signature time.)
            early = payload.tagger.time - sig.signed_at
            if early > self.options.skew:
                return CheckResult(
                    Check.SIGNATURE,
                    False,
                    f"the signature was made {utc(sig.signed_at)}, {early}s before the "
                    f"snapshot it signs ({utc(payload.tagger.time)}; more than "
                    f"govsnap.auditSkew, {self.options.skew}s): a back-dated signature",
                )
        return CheckResult(Check.SIGNATURE, True, sig.reason)

    def check_trust(self, payload: SnapshotPayload | None, signer: str | None) -> CheckResult:
        """Check 4: the policy trusts the signer for the environment (and the operation)."""
        options = self.options
        policy = options.policy
        if policy is None:
            if options.require_trust:
                return CheckResult(Check.TRUST, False, options.policy_source)
            return CheckResult(Check.TRUST, True, "no trust policy (govsnap.requireTrust=false)")
        if signer is None:
            return CheckResult(Check.TRUST, False, "no verified signer to look up (see signature)")
        if payload is None:
            return CheckResult(
                Check.TRUST, False, "the environment is unknown: the tag is malformed"
            )
        operations = ["create"]
        if options.operation and options.operation != "create":
            operations.append(options.operation)
        for operation in operations:
            decision = policy.decide(signer, payload.environment, operation)
            if not decision.allowed:
                return CheckResult(Check.TRUST, False, decision.reason)
        return CheckResult(Check.TRUST, True, decision.reason)

    def check_digest(self, payload: SnapshotPayload | None) -> CheckResult:
        """Check 5: the content digest recomputed from the tree equals Govsnap-Digest."""
        if payload is None:
            return CheckResult(Check.DIGEST, False, "no signed digest: the tag is malformed")
        key = (payload.tree, payload.format)
        digest = self.digests.get(key)
        if digest is None:
            digest = self.digest(payload, self.options.deep)
            if isinstance(digest, TreeDigest) and digest.digest != payload.digest:
                # The cache only saves work: a mismatch is confirmed from the objects
                # alone, so that no cache entry can fail a snapshot.
                digest = self.digest(payload, True)
            self.digests[key] = digest
        if isinstance(digest, CorruptObject):
            return CheckResult(
                Check.DIGEST, False, f"cannot recompute the digest: {digest.message}"
            )
        if digest.digest != payload.digest:
            return CheckResult(
                Check.DIGEST,
                False,
                f"the tree's content digest {_short(digest.digest, 23)} differs from the signed "
                f"{_short(payload.digest, 23)}: the content is not what was signed",
            )
        warning = ""
        if payload.format == 1 and digest.newline_in_path:
            warning = (
                " (format 1, whose manifest a path holding a newline makes ambiguous: "
                "snapshot this content again to sign it in format 2)"
            )
        return CheckResult(Check.DIGEST, True, f"{_short(digest.digest, 23)} recomputed{warning}")

    def digest(self, payload: SnapshotPayload, deep: bool) -> TreeDigest | CorruptObject:
        """Return the digest of the payload's tree in its format, or why it cannot be had."""
        digester = self.digester
        if deep and not self.options.deep:
            if self.deep_digester is None:
                self.deep_digester = Digester(self.repo, None, deep=True)
            digester = self.deep_digester
        try:
            return digester.digest(pygit2.Oid(hex=payload.tree), payload.format)
        except CorruptObject as exc:
            return exc
        except RecursionError:
            return CorruptObject(f"tree {payload.tree} is nested too deeply to walk")

    def check_objects(self, snap: Snapshot, payload: SnapshotPayload | None) -> CheckResult:
        """Check 6: the tag, commit, trees and blobs of the snapshot are all present."""
        if payload is None:
            return CheckResult(
                Check.OBJECTS, False, "cannot list the objects: the tag is malformed"
            )
        missing: list[str] = []
        if not self.repo.git.odb.exists(payload.commit):
            missing.append(f"commit {payload.commit}")
        missing += self.missing_below(pygit2.Oid(hex=payload.tree))
        if missing:
            shown = "; ".join(missing[:_MAX_MISSING_SHOWN])
            more = len(missing) - _MAX_MISSING_SHOWN
            extra = f" and {more} more" if more > 0 else ""
            hint = worktree.partial_clone_hint(self.repo)
            return CheckResult(Check.OBJECTS, False, f"missing: {shown}{extra}{hint}")
        return CheckResult(Check.OBJECTS, True, "every object is present")

    def missing_below(self, root: pygit2.Oid) -> list[str]:
        """Return a description of each object missing below a tree (gitlinks excepted).

        A tree whose every object below was found present earlier in this run is not
        walked again: a snapshot costs the trees it does not share with those before it."""
        missing: list[str] = []
        # (tree, where, its entries already pushed): a tree is whole once it is complete
        # and its subtrees are, which is known when it comes off the stack the second time.
        stack = [(root, "", False)]
        while stack:
            oid, where, expanded = stack.pop()
            if oid in self.whole:
                continue
            subtrees = self.trees_ok.get(oid)
            if expanded:
                if subtrees is not None and all(sub in self.whole for sub, _ in subtrees):
                    self.whole.add(oid)
                continue
            if subtrees is None:
                subtrees = self.read_tree(oid, where, missing)
            stack.append((oid, where, True))
            stack.extend((sub, f"{where}{name}/", False) for sub, name in subtrees)
        return missing

    def read_tree(
        self, oid: pygit2.Oid, where: str, missing: list[str]
    ) -> list[tuple[pygit2.Oid, str]]:
        """Return a tree's subtrees, noting its absent entries; remember it if complete."""
        label = where.rstrip("/") or "/"
        try:
            tree = self.repo.git[oid]
        except (KeyError, ValueError, pygit2.GitError):
            missing.append(f"tree {oid} ({label})")
            return []
        if not isinstance(tree, pygit2.Tree):
            missing.append(f"{oid} ({label}) is not a tree")
            return []
        odb = self.repo.git.odb
        # Without --deep a blob is checked with odb.exists alone: a cache of checked blobs
        # costs more than the lookup. Entry kinds are compared as strings, which pygit2
        # returns without building an enum (the walk visits every entry: 100,000 in the
        # benchmark repository).
        present = self.blob_intact if self.options.deep else odb.exists
        subtrees: list[tuple[pygit2.Oid, str]] = []
        complete = True
        for entry in tree:
            kind = entry.type_str
            if kind == "tree":
                subtrees.append((entry.id, entry.name or ""))
            elif kind == "commit":
                continue  # a submodule's commit lives in another repository
            elif not present(entry.id):
                missing.append(f"blob {entry.id} ({where}{entry.name or ''})")
                complete = False
        if complete:
            self.trees_ok[oid] = subtrees
        return subtrees

    def blob_intact(self, oid: pygit2.Oid) -> bool:
        """Return True when the blob exists and reads back intact (for --deep)."""
        if oid in self.blobs_ok:
            return True
        try:
            # libgit2 checks the content against the oid while reading.
            kind, _data = self.repo.git.odb.read(oid)
        except (KeyError, ValueError, pygit2.GitError):
            return False
        if kind != ObjectType.BLOB:
            return False
        self.blobs_ok.add(oid)
        return True

    def check_note(
        self, snap: Snapshot, payload: SnapshotPayload | None, ident: str
    ) -> CheckResult:
        """Check 7 (advisory): the note's copies of the signed fields agree with the payload.
        A note is an unsigned claim: what it says is shown, and decides nothing."""
        note = snap.note
        if note is None:
            return CheckResult(
                Check.NOTE, False, "the snapshot has no note: its metadata is missing"
            )
        if note.error:
            return CheckResult(Check.NOTE, False, f"tampered metadata: {note.error}")
        if payload is None:
            return CheckResult(Check.NOTE, False, "cannot compare: the tag is malformed")
        problem = notes.dispute(note, payload, ident)
        if problem is not None:
            return CheckResult(Check.NOTE, False, problem)
        return CheckResult(Check.NOTE, True, "the note agrees with the signed payload")


def verify_snapshot(
    repo: Repo,
    snap: Snapshot,
    *,
    operation: str | None = None,
    deep: bool = False,
    policy: TrustPolicy | None = None,
) -> SnapshotVerification:
    """Return the seven checks of one snapshot. Writes nothing.

    `operation` (e.g. "rollback") additionally requires the signer be allowed that
    operation; `policy` defaults to the committed policy (load_policy); `deep` re-reads
    every blob instead of trusting the digest cache.
    """
    return _Checker(repo, _options(repo, operation, deep, policy)).run([snap])[0]


def _verify_chunk(job: tuple[str, list[Snapshot], _Options]) -> list[SnapshotVerification]:
    path, snaps, options = job
    repo = Repo(pygit2.Repository(path))
    # A forked worker must not draw on its parent's terminal: the parent counts for it.
    with progress.listening(None):
        return _Checker(repo, options).run(snaps)


def verify_snapshots(
    repo: Repo,
    snaps: Sequence[Snapshot],
    *,
    operation: str | None = None,
    deep: bool = False,
    policy: TrustPolicy | None = None,
    jobs: int = 1,
    at: int | None = None,
) -> list[SnapshotVerification]:
    """Return the checks of many snapshots, in order, using up to `jobs` processes.

    Each process takes a contiguous share and checks every OpenPGP signature of it in
    one gpg run. `at` (a server receiving them: now) is a time each must have been valid
    at too, where the signature carries no time (SSH). Writes nothing.
    """
    if jobs < 1:
        raise UsageError("--jobs must be at least 1")
    options = _options(repo, operation, deep, policy, at)
    workers = min(jobs, len(snaps) // _MIN_PER_JOB)
    with progress.task(f"verifying {len(snaps)} snapshot(s)", total=len(snaps)) as step:
        if workers <= 1:
            return _Checker(repo, options).run(snaps, step.advance)
        return _in_processes(repo, snaps, options, workers, step)


def _in_processes(
    repo: Repo, snaps: Sequence[Snapshot], options: _Options, workers: int, step: progress.Task
) -> list[SnapshotVerification]:
    """Return the checks of `snaps`, a contiguous share each checked by one of `workers`
    processes, counting each share in `step` as it comes back."""
    size, extra = divmod(len(snaps), workers)
    chunks: list[list[Snapshot]] = []
    start = 0
    for index in range(workers):
        end = start + size + (1 if index < extra else 0)
        chunks.append(list(snaps[start:end]))
        start = end
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else None)
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        jobs_args = [(str(repo.git.path), chunk, options) for chunk in chunks]
        results: list[SnapshotVerification] = []
        for part in pool.map(_verify_chunk, jobs_args):
            results += part
            step.advance(len(part))
        return results


# --- the `verify` operation ---------------------------------------------------------------


@dataclass(frozen=True)
class VerifyReport:
    """What `govsnap verify` checked, the outcome per snapshot, and how long it took."""

    results: tuple[SnapshotVerification, ...]
    seconds: float
    policy_source: str | None
    deep: bool
    policy_anchor: str = ""  # why the policy is believed (its root of trust)
    policy_caveats: tuple[str, ...] = ()  # what verifying the policy could not judge
    recorded: bool = True  # the verdicts went into the notes and the audit trail
    # Why they were not, when nobody asked for --no-record (a read-only .git).
    unrecorded: str | None = None

    @property
    def ok(self) -> bool:
        """Return True when every snapshot passed every check."""
        return all(r.ok for r in self.results)

    @property
    def failed(self) -> int:
        """Return how many snapshots failed at least one check."""
        return sum(1 for r in self.results if not r.ok)

    @property
    def warned(self) -> int:
        """Return how many snapshots carry a note that is not what their payload says."""
        return sum(1 for r in self.results if r.warnings())

    def as_json(self) -> dict[str, Any]:
        """Return the report as JSON-ready data."""
        return {
            "schema": schema_name("verify"),
            "verdict": "pass" if self.ok else "fail",
            "verified": len(self.results),
            "failed": self.failed,
            "warned": self.warned,
            "seconds": round(self.seconds, 6),
            "deep": self.deep,
            "recorded": self.recorded,
            "policy": self.policy_source,
            "policy_anchor": self.policy_anchor,
            "policy_caveats": list(self.policy_caveats),
            "snapshots": [r.as_json() for r in self.results],
        }

    def check(self) -> None:
        """Raise CheckFailed unless every snapshot passed every check."""
        if not self.ok:
            raise CheckFailed(
                f"{self.failed} of {len(self.results)} snapshot(s) failed verification"
            )


@dataclass(frozen=True)
class SnapshotDetails:
    """Everything about one snapshot: what its tag and note say, who signed it as
    verification finds (the note only claims it), whether the audit trail pins it."""

    snapshot: Snapshot
    verification: SnapshotVerification | None  # None: unsigned or unreadable
    pinned: bool

    def as_json(self) -> dict[str, Any]:
        """Return the details as JSON-ready data."""
        check = self.verification
        return {
            "schema": schema_name("show"),
            **self.snapshot.as_json(),
            "verified": None if check is None else check.signed_by_json(),
            "pinned": self.pinned,
        }


def details(repo: Repo, name: str) -> SnapshotDetails:
    """Return everything about the snapshot `name` designates. Writes nothing."""
    snap = resolve(repo, name)
    # Who signed it is what the signature says, checked now; the note only claims it.
    # Whether it is pinned is what the audit trail says.
    check = verify_snapshot(repo, snap) if snap.signed and snap.payload else None
    return SnapshotDetails(snap, check, snap.id in pinned_ids(repo))


def select(repo: Repo, names: Sequence[str], all_: bool, environment: str | None) -> list[Snapshot]:
    """Return the snapshots `verify` was asked for: named ones, or all (of an environment)."""
    if names and all_:
        raise UsageError("name snapshots or pass --all, not both")
    if not names and not all_ and environment is None:
        raise UsageError("name the snapshots to verify, or pass --all (or --environment)")
    snaps = list_snapshots(repo)
    if not names:
        return filter_snapshots(snaps, environment)
    chosen: dict[str, Snapshot] = {}
    for name in names:
        snap = resolve(repo, name, snaps)
        if environment is not None and snap.environment != environment:
            raise UsageError(
                f"snapshot {snap.id} belongs to environment {snap.environment!r}, "
                f"not {environment!r}"
            )
        chosen.setdefault(snap.id, snap)
    return list(chosen.values())


def verdict_mutations(
    snaps: Sequence[Snapshot], results: Sequence[SnapshotVerification], identity: Identity
) -> dict[str, notes.Mutation]:
    """Return the notes mutations recording each verdict in its snapshot's note as
    {"verification": {time, verdict, signer}}; a snapshot without a readable note gets
    none, so that verification never invents metadata."""
    when = utc(identity.time, ISO_UTC)
    mutations: dict[str, notes.Mutation] = {}
    for snap, result in zip(snaps, results, strict=True):
        if snap.note is None or snap.note.error:
            continue
        value = {"time": when, "verdict": result.verdict, "signer": result.signer}

        def merge(current: notes.JSONObject | None, value: dict[str, Any] = value) -> Any:
            return None if current is None else {**current, "verification": value}

        mutations[snap.tag_oid] = merge
    return mutations


def run(
    repo: Repo,
    names: Sequence[str],
    *,
    all_: bool = False,
    environment: str | None = None,
    deep: bool = False,
    jobs: int | None = None,
    record: bool | None = None,
) -> VerifyReport:
    """Verify the selected snapshots and, with `record` (default: when the repository is
    writable), record each verdict in its note and append an audit entry; return the
    report (the caller decides the exit code)."""
    unrecorded = None
    if record is None:
        record = repo.writable
        if not record:
            unrecorded = f"verdicts not recorded: {repo.read_only_reason()}"
    with audit.operation(repo, "verify") as op:
        report = _run(repo, op, names, all_, environment, deep, jobs, record)
    return replace(report, recorded=record and bool(report.results), unrecorded=unrecorded)


def _run(
    repo: Repo,
    op: audit.Operation,
    names: Sequence[str],
    all_: bool,
    environment: str | None,
    deep: bool,
    jobs: int | None,
    record: bool,
) -> VerifyReport:
    snaps = select(repo, names, all_, environment)
    op.place(*(s.payload.environment for s in snaps if s.payload is not None))
    policy = load_policy(repo)
    # A partial clone fetches the blobs the digest reads, as git would on demand; when it
    # cannot, the objects check names them and the partial clone.
    with contextlib.suppress(GovsnapError):
        worktree.fetch_missing(repo, [s.payload.tree for s in snaps if s.payload is not None])
    workers = jobs if jobs is not None else (os.cpu_count() or 1)
    results = verify_snapshots(repo, snaps, deep=deep, policy=policy, jobs=workers)
    report = VerifyReport(
        tuple(results),
        op.seconds,
        policy.source if policy else None,
        deep,
        policy.anchor if policy else "",
        policy.caveats if policy else (),
    )
    if results and record:
        passed = len(results) - report.failed
        # The verdicts in the notes and the audit entry are written together.
        entry = op.entry(
            f"{len(results)} snapshot(s): {passed} passed, {report.failed} failed",
            snapshots=[r.id for r in results],
            arguments={"all": all_, "environment": environment, "deep": deep, "names": list(names)},
            result="pass" if report.ok else "fail",
            failed_in=[s.environment for s, r in zip(snaps, results, strict=True) if not r.ok],
            # Which snapshots failed, under the entry's signature: the evidence report's
            # history of verdicts per snapshot (a note keeps only the last, unsigned).
            extra={"failed": [r.id for r in results if not r.ok]},
        )
        mutations = verdict_mutations(snaps, results, op.identity)
        op.record(entry, notes=mutations, notes_message="Verification recorded by 'govsnap verify'")
    return report
