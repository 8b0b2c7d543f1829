"""The trust policy: which signers may sign snapshots for which environments and perform
which operations, with their public keys; read from `.govsnap/trust.toml` as committed at
a full ref name, and believed only as far as its history is signed back to an anchor.

The root of trust (DESIGN.md section 6, docs/governance.md): the policy at the tip of
`govsnap.trustRef` counts only if every change of the file on the ref's history, back to
an anchor, was approved by signers the version it changes allows the `policy` operation
(as many as its `policy_threshold`; an approval is bound to that change, approval.py),
and its `version` grew. At a merge, the policy must succeed the version of *every*
parent, so a merge cannot bring an older version back. The anchor is a key
(`govsnap.trustAnchor`) that signed the policy's first version, or a commit
(`govsnap.trustAnchorCommit`); with neither, the first version is trusted on first use,
and every report says so. What a clone (`refs/govsnap-verified/policy/<ref>`) or a
server (`.git/govsnap/policy-record.json`) verified before only ever makes the check
stricter: a policy ref that no longer holds it, or a lower version, is refused.
"""

from __future__ import annotations

import base64
import fnmatch
import json
import os
import re
import tempfile
import time
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pygit2

from govsnap.approval import ApprovalFile, ApprovalStatement
from govsnap.errors import CheckFailed, UsageError
from govsnap.objects import SignatureKind, SignedTag, ref_target, update_ref
from govsnap.refs import verified_policy_ref
from govsnap.repo import Repo
from govsnap.signing import (
    KeySet,
    SignatureCheck,
    SignatureVerifier,
    signer_for,
    ssh_key_fingerprint,
)

POLICY_PATH = ".govsnap/trust.toml"
# Detached signatures over the bytes of the committed trust.toml, one per file: approvals
# of a policy change by signers other than (or besides) the commit's own signer.
APPROVALS_DIR = ".govsnap/approvals"
FORMAT_VERSION = 1
OPERATIONS = ("create", "rollback", "prune", "pin", "policy")
WILDCARD = "*"
KINDS = tuple(k for k in SignatureKind if k is not SignatureKind.NONE)

_TOP_KEYS = ("version", "policy_threshold", "signers")
_SIGNER_KEYS = (*KINDS, "public_key", "environments", "operations", "description")
_SSH_KEY_TYPES = frozenset(
    {
        "ssh-ed25519",
        "ssh-rsa",
        "ssh-dss",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ssh-ed25519@openssh.com",
        "sk-ecdsa-sha2-nistp256@openssh.com",
    }
)
# Options ssh-keygen accepts in an allowed-signers line; cert-authority is refused because
# a certificate's signature names the user key, which the policy would then not list.
_SSH_OPTIONS = frozenset({"namespaces", "valid-after", "valid-before"})
_SIGNER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_ENV_PATTERN = re.compile(r"^[A-Za-z0-9*][A-Za-z0-9._*-]{0,63}$")
_PUBLIC_KEY = re.compile(
    r"^\s*-----BEGIN PGP PUBLIC KEY BLOCK-----\n.*\n-----END PGP PUBLIC KEY BLOCK-----\s*$", re.S
)


class PolicyError(UsageError):
    """The trust policy is malformed; the message names the file and the line."""


class PolicyChainError(CheckFailed):
    """The policy's history does not hold: a change nobody allowed approved, a version
    that did not grow, a rewrite or removal of what this clone verified, no anchor."""


@dataclass(frozen=True)
class TrustedSigner:
    """One signer the policy names, with what it may do."""

    name: str
    kind: SignatureKind
    identity: str  # OpenPGP/X.509 fingerprint (upper-case hex) or SSH "SHA256:..."
    environments: tuple[str, ...]  # names or fnmatch patterns; "*" for all
    operations: tuple[str, ...]  # subset of OPERATIONS, or ("*",)
    line: int
    description: str = ""
    allowed_signers: str = ""  # the SSH allowed-signers line, for ssh-keygen
    public_key: str = ""  # an OpenPGP signer's armored public key

    def covers_environment(self, environment: str) -> bool:
        """Return True when this signer may act in `environment`."""
        return any(fnmatch.fnmatchcase(environment, p) for p in self.environments)

    def covers_operation(self, operation: str) -> bool:
        """Return True when this signer may perform `operation`."""
        return WILDCARD in self.operations or operation in self.operations

    def as_json(self) -> dict[str, Any]:
        """Return the signer as JSON-ready data (whether its public key is carried)."""
        return {
            "name": self.name,
            "kind": self.kind,
            "identity": self.identity,
            "environments": list(self.environments),
            "operations": list(self.operations),
            "description": self.description,
            "line": self.line,
            "public_key": self.kind == "ssh" or bool(self.public_key),
        }


@dataclass(frozen=True)
class TrustDecision:
    """Whether the policy allows something, and why (a sentence for the user)."""

    allowed: bool
    reason: str
    signer: TrustedSigner | None = None


@dataclass(frozen=True)
class TrustPolicy:
    """A parsed, validated trust policy (and, once loaded from a ref, how it is anchored)."""

    source: str  # e.g. "refs/heads/main:.govsnap/trust.toml", used in messages
    signers: tuple[TrustedSigner, ...]
    version: int = 1  # grows with every change of the file
    threshold: int = 1  # approvals a change of this policy needs
    commit: str | None = None  # the commit it was read from
    anchor: str = ""  # why it is believed (the root of trust), for reports
    # Signers of earlier versions (on the history verified by this run) that this one no
    # longer lists: an audit entry they signed while listed is a record, not a forgery.
    retired: tuple[TrustedSigner, ...] = ()
    # What verifying its history could not judge (approvals by keys retired since), said.
    caveats: tuple[str, ...] = ()

    def keys(self, with_retired: bool = False) -> KeySet:
        """Return the public keys the policy carries (and, asked, those of its retired
        signers), to check signatures against."""
        signers = self.signers + (self.retired if with_retired else ())
        return KeySet(
            self.source,
            tuple((s.name, s.identity, s.public_key) for s in signers if s.kind == "openpgp"),
            _allowed_signers(signers),
        )

    def verifier(self, repo: Repo, with_retired: bool = False) -> SignatureVerifier:
        """Return a verifier that checks signatures against this policy's keys only."""
        return SignatureVerifier(repo, self.keys(with_retired))

    def find(self, signer: str | None) -> TrustedSigner | None:
        """Return the policy entry for a verified signer identity, or None."""
        if not signer:
            return None
        wanted = _normalise_identity(signer)
        return next((s for s in self.signers if s.identity == wanted), None)

    def decide(self, signer: str | None, environment: str, operation: str) -> TrustDecision:
        """Return whether `signer` may perform `operation` in `environment` (any environment
        for the `policy` operation), with the reason."""
        if operation not in OPERATIONS:
            raise UsageError(f"unknown operation {operation!r} (known: {', '.join(OPERATIONS)})")
        if not signer:
            return TrustDecision(False, "no verified signer to look up in the trust policy")
        entry = self.find(signer)
        if entry is None:
            return TrustDecision(False, f"signer {signer} is not in the trust policy {self.source}")
        who = f"signer {entry.name} ({entry.identity})"
        if operation != "policy" and not entry.covers_environment(environment):
            allowed = ", ".join(entry.environments)
            return TrustDecision(
                False,
                f"{who} is not trusted for environment {environment!r} (trusted for: {allowed})",
                entry,
            )
        if not entry.covers_operation(operation):
            allowed = ", ".join(entry.operations)
            return TrustDecision(
                False, f"{who} may not {operation} (allowed operations: {allowed})", entry
            )
        return TrustDecision(True, f"{who} may {operation} in {environment!r}", entry)

    def allows(self, signer: str | None, environment: str, operation: str) -> bool:
        """Return True when `signer` may perform `operation` in `environment`."""
        return self.decide(signer, environment, operation).allowed

    def allowed_signers_text(self) -> str:
        """Return the policy's SSH signers as an allowed-signers file for ssh-keygen."""
        return _allowed_signers(self.signers)


def _allowed_signers(signers: Iterable[TrustedSigner]) -> str:
    return "".join(s.allowed_signers + "\n" for s in signers if s.kind == "ssh")


def _normalise_identity(value: str) -> str:
    if value.startswith("SHA256:"):
        return value
    return value.replace(" ", "").replace(":", "").upper()


# --- locating errors -----------------------------------------------------------------------

_HEADER = re.compile(r"^\s*\[\[?\s*(?P<name>[^\]]+?)\s*\]\]?\s*(#.*)?$")
_ASSIGN = re.compile(r"^\s*(?P<key>[A-Za-z0-9_.\"' -]+?|\"(?:[^\"\\]|\\.)*\")\s*=")


def _key_parts(text: str) -> tuple[str, ...]:
    """Return the parts of a TOML key as TOML reads them (escapes in quoted parts
    decoded), or a plain split when it does not parse."""
    try:
        doc: Any = tomllib.loads(f"{text} = 0")
    except tomllib.TOMLDecodeError:
        return tuple(part.strip().strip("\"'") for part in text.split("."))
    parts: list[str] = []
    while isinstance(doc, dict) and len(doc) == 1:
        key, doc = next(iter(doc.items()))
        parts.append(key)
    return tuple(parts)


def locate(text: str, path: tuple[str, ...]) -> int:
    """Return the 1-based line where the TOML key or table `path` is defined (1 if unknown).

    Understands `[table]` headers and dotted keys, which is how policy files are written;
    a key spelt some other way falls back to the first line mentioning its last part.
    """
    table: tuple[str, ...] = ()
    first_inside: int | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(line)
        if header:
            table = _key_parts(header.group("name"))
            if table == path:
                return number
            continue
        assign = _ASSIGN.match(line)
        if assign:
            full = table + _key_parts(assign.group("key"))
            if full == path:
                return number
            if first_inside is None and full[: len(path)] == path:
                first_inside = number
    if first_inside is not None:
        return first_inside
    for number, line in enumerate(text.splitlines(), start=1):
        if path and path[-1] in line:
            return number
    return 1


# --- parsing -------------------------------------------------------------------------------


class _Reader:
    """Validates a decoded policy, raising PolicyError at the offending line."""

    def __init__(self, text: str, source: str) -> None:
        self.text = text
        self.source = source

    def fail(self, path: tuple[str, ...], problem: str) -> PolicyError:
        # A name holding control characters is shown escaped, as TOML would write it.
        where = ".".join(p if p.isprintable() else json.dumps(p) for p in path)
        prefix = f"{where}: " if where else ""
        return PolicyError(f"{self.source}:{locate(self.text, path)}: {prefix}{problem}")

    def names(
        self, path: tuple[str, ...], value: Any, allowed: tuple[str, ...] | None
    ) -> tuple[str, ...]:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not value:
            raise self.fail(path, "must be a non-empty list of strings")
        out: list[str] = []
        for item in value:
            if not isinstance(item, str):
                raise self.fail(path, f"{item!r} is not a string")
            if allowed is not None:
                if item != WILDCARD and item not in allowed:
                    known = ", ".join(allowed)
                    raise self.fail(path, f"unknown operation {item!r} (known: {known}, or '*')")
            elif not _ENV_PATTERN.match(item):
                raise self.fail(
                    path,
                    f"{item!r} is not an environment name or pattern "
                    "(letters, digits, '.', '_', '-', '*')",
                )
            if item not in out:
                out.append(item)
        return tuple(out)

    def signer(self, name: str, entry: Any) -> TrustedSigner:
        path = ("signers", name)
        if not _SIGNER_NAME.match(name):
            raise self.fail(path, "a signer name uses 1-64 letters, digits, '.', '_' or '-'")
        if not isinstance(entry, dict):
            raise self.fail(path, "must be a table ([signers.NAME])")
        for key in entry:
            if key not in _SIGNER_KEYS:
                raise self.fail((*path, key), f"unknown key (known: {', '.join(_SIGNER_KEYS)})")
        kinds = [k for k in KINDS if k in entry]
        if len(kinds) != 1:
            raise self.fail(path, "needs exactly one of openpgp, ssh or x509")
        kind = SignatureKind(kinds[0])
        raw = entry[kind]
        if not isinstance(raw, str):
            raise self.fail((*path, kind), "must be a string")
        for required in ("environments", "operations"):
            if required not in entry:
                raise self.fail(path, f"missing {required} (a list; '*' for all)")
        description = entry.get("description", "")
        if not isinstance(description, str):
            raise self.fail((*path, "description"), "must be a string")
        identity, allowed_signers = self.identity(kind, raw, (*path, kind))
        public_key = entry.get("public_key", "")
        if "public_key" in entry:
            if kind != "openpgp":
                raise self.fail(
                    (*path, "public_key"),
                    "only OpenPGP signers carry a public_key (an ssh line holds its key)",
                )
            if not isinstance(public_key, str) or not _PUBLIC_KEY.match(public_key):
                raise self.fail(
                    (*path, "public_key"),
                    "must be an armored OpenPGP public key (gpg --armor --export FINGERPRINT)",
                )
        return TrustedSigner(
            name=name,
            kind=kind,
            identity=identity,
            environments=self.names((*path, "environments"), entry["environments"], None),
            operations=self.names((*path, "operations"), entry["operations"], OPERATIONS),
            line=locate(self.text, path),
            description=description,
            allowed_signers=allowed_signers,
            public_key=public_key.strip() + "\n" if public_key else "",
        )

    def identity(self, kind: SignatureKind, raw: str, path: tuple[str, ...]) -> tuple[str, str]:
        if kind == "ssh":
            return self.ssh(raw, path)
        hexed = re.sub(r"[\s:]", "", raw).upper()
        if not re.fullmatch(r"[0-9A-F]+", hexed):
            raise self.fail(path, f"{raw!r} is not a fingerprint: use hex digits")
        if kind == "openpgp":
            if len(hexed) in (8, 16):
                raise self.fail(
                    path, f"{raw!r} is a key ID, not a fingerprint: use all 40 hex digits"
                )
            if len(hexed) not in (40, 64):
                raise self.fail(
                    path, f"{raw!r} is not an OpenPGP fingerprint (40 or 64 hex digits)"
                )
        elif len(hexed) != 40:
            raise self.fail(path, f"{raw!r} is not an X.509 certificate fingerprint (40 hex)")
        return hexed, ""

    def ssh(self, raw: str, path: tuple[str, ...]) -> tuple[str, str]:
        usage = (
            "must be an allowed-signers line: '<principals> [options] <key type> <base64 key>' "
            "(for example 'alice@example.com ssh-ed25519 AAAA...')"
        )
        try:
            fields = _split_allowed_signers(raw)
        except ValueError as exc:
            raise self.fail(path, f"{exc}; it {usage}") from exc
        if len(fields) < 3 or fields[0] in _SSH_KEY_TYPES:
            raise self.fail(path, usage)
        position = 1
        if fields[1] not in _SSH_KEY_TYPES:
            self.ssh_options(fields[1], path)
            position = 2
        if position + 1 >= len(fields) or fields[position] not in _SSH_KEY_TYPES:
            raise self.fail(path, f"no known SSH key type after the principals; it {usage}")
        key_type, key_b64 = fields[position], fields[position + 1]
        try:
            blob = base64.b64decode(key_b64, validate=True)
        except ValueError as exc:
            raise self.fail(path, f"the {key_type} key is not valid base64") from exc
        embedded = _ssh_string(blob)
        if embedded != key_type.encode():
            raise self.fail(path, f"the key data is not a {key_type} key")
        return ssh_key_fingerprint(f"{key_type} {key_b64}"), raw.strip()

    def ssh_options(self, text: str, path: tuple[str, ...]) -> None:
        for option in _split_options(text):
            name, _, value = option.partition("=")
            if name == "cert-authority":
                raise self.fail(path, "cert-authority entries are not supported: list user keys")
            if name not in _SSH_OPTIONS:
                raise self.fail(
                    path,
                    f"unknown allowed-signers option {name!r} (known: namespaces, "
                    "valid-after, valid-before)",
                )
            if not value:
                raise self.fail(path, f"option {name} needs a value")


def _split_allowed_signers(line: str) -> list[str]:
    """Split an allowed-signers line on blanks, keeping double-quoted option values whole."""
    fields: list[str] = []
    current = ""
    quoted = False
    for char in line.strip():
        if char == '"':
            quoted = not quoted
            current += char
        elif char.isspace() and not quoted:
            if current:
                fields.append(current)
                current = ""
        else:
            current += char
    if quoted:
        raise ValueError("unbalanced double quote")
    if current:
        fields.append(current)
    return fields


def _split_options(text: str) -> list[str]:
    parts: list[str] = []
    current = ""
    quoted = False
    for char in text:
        if char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            parts.append(current)
            current = ""
            continue
        current += char
    parts.append(current)
    return [p.replace('"', "") for p in parts]


def _ssh_string(blob: bytes) -> bytes:
    """Return the first length-prefixed string of an SSH wire-format key (its type)."""
    if len(blob) < 4:
        return b""
    size = int.from_bytes(blob[:4], "big")
    return blob[4 : 4 + size]


def parse_policy(data: bytes, source: str) -> TrustPolicy:
    """Return the policy in `data`; raise PolicyError naming `source` and the line."""
    try:
        text = data.decode()
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise PolicyError(f"{source}:{line}: the file is not UTF-8") from exc
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"at line (\d+)", str(exc))
        where = found.group(1) if found else "1"
        detail = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        raise PolicyError(f"{source}:{where}: invalid TOML: {detail}") from exc
    reader = _Reader(text, source)
    for key in doc:
        if key not in _TOP_KEYS:
            raise reader.fail((key,), f"unknown key (known: {', '.join(_TOP_KEYS)})")
    version = doc.get("version", FORMAT_VERSION)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise reader.fail(
            ("version",), f"must be a whole number, 1 or more, raised by every change: {version!r}"
        )
    threshold = doc.get("policy_threshold", 1)
    if not isinstance(threshold, int) or isinstance(threshold, bool) or threshold < 1:
        raise reader.fail(
            ("policy_threshold",), f"must be a whole number, 1 or more: {threshold!r}"
        )
    raw_signers = doc.get("signers", {})
    if not isinstance(raw_signers, dict):
        raise reader.fail(("signers",), "must be a table of [signers.NAME] tables")
    signers: list[TrustedSigner] = []
    for name, entry in raw_signers.items():
        signer = reader.signer(name, entry)
        twin = next((s for s in signers if s.identity == signer.identity), None)
        if twin is not None:
            raise reader.fail(
                ("signers", name), f"the same key is already listed as signer {twin.name!r}"
            )
        signers.append(signer)
    policy_signers = sum(1 for s in signers if s.covers_operation("policy"))
    if threshold > max(policy_signers, 1):
        raise reader.fail(
            ("policy_threshold",),
            f"{threshold} approvals needed, but only {policy_signers} signer(s) may "
            "approve a policy change (operation 'policy')",
        )
    return TrustPolicy(source, tuple(signers), version, threshold)


# --- loading: the root of trust ------------------------------------------------------------


def policy_ref(repo: Repo) -> str:
    """Return the full name of the ref the policy is read from: `govsnap.trustRef`, else
    the branch HEAD names (HEAD itself when detached). Never a short name: `main` could
    be answered by a tag `refs/tags/main` anyone may push."""
    configured = repo.config_str("govsnap.trustRef")
    if configured:
        if configured != "HEAD" and not configured.startswith("refs/"):
            raise UsageError(
                f"govsnap.trustRef {configured!r} is not a full ref name: write it in full "
                f"(refs/heads/{configured}), which a tag of the same name cannot answer to"
            )
        if configured != "HEAD" and not pygit2.reference_is_valid_name(configured):
            raise UsageError(f"govsnap.trustRef {configured!r} is not a valid ref name")
        return configured
    head = repo.git.references.get("HEAD")
    target = None if head is None else head.target
    return target if isinstance(target, str) else "HEAD"


def require_trust(repo: Repo) -> bool:
    """Return `govsnap.requireTrust` (default true): whether a missing policy fails trust."""
    return repo.config_bool("govsnap.requireTrust", True)


def _ref_commit(repo: Repo, name: str) -> pygit2.Commit | None:
    """Return the commit the ref `name` (a full name, looked up exactly) points at, or
    None when it does not exist (or is an unborn HEAD)."""
    ref = repo.git.references.get(name)
    if ref is None:
        return None
    try:
        target = ref.resolve().target
        return repo.git[target].peel(pygit2.Commit)
    except (KeyError, ValueError, pygit2.GitError, pygit2.InvalidSpecError):
        return None


def _policy_blob(repo: Repo, commit: pygit2.Commit) -> pygit2.Blob | None:
    """Return the policy file committed in `commit`, or None."""
    try:
        entry = commit.tree[POLICY_PATH]
    except KeyError:
        return None
    blob = repo.git[entry.id]
    return blob if isinstance(blob, pygit2.Blob) else None


def policy_blob_of(repo: Repo, commit: pygit2.Commit) -> bytes | None:
    """Return the bytes of the policy file committed in `commit`, or None."""
    blob = _policy_blob(repo, commit)
    return None if blob is None else bytes(blob.data)


def policy_blob(repo: Repo, ref: str | None = None) -> tuple[str, bytes | None]:
    """Return (source, content) of the policy committed at `ref` (default: policy_ref);
    content None when the ref or the file does not exist. The committed version is read,
    never the working-tree file, so an uncommitted edit cannot grant trust."""
    name = ref or policy_ref(repo)
    source = f"{name}:{POLICY_PATH}"
    commit = _ref_commit(repo, name)
    blob = None if commit is None else _policy_blob(repo, commit)
    return source, None if blob is None else blob.data


@dataclass(frozen=True)
class Anchor:
    """What git config pins as the root of trust: keys that signed the policy's first
    version (`govsnap.trustAnchor`) and/or a policy commit (`govsnap.trustAnchorCommit`)."""

    keys: tuple[str, ...] = ()
    commit: str | None = None

    @property
    def pinned(self) -> bool:
        """Return True when something is pinned."""
        return bool(self.keys or self.commit)


def configured_anchor(repo: Repo) -> Anchor:
    """Return the anchor pinned in git config; raise UsageError for values that are not a
    fingerprint (OpenPGP hex, SSH SHA256:...) or a commit id."""
    keys = []
    for value in repo.config_list("govsnap.trustAnchor"):
        identity = _normalise_identity(value)
        if not (
            identity.startswith("SHA256:") or re.fullmatch(r"[0-9A-F]{40}|[0-9A-F]{64}", identity)
        ):
            raise UsageError(
                f"govsnap.trustAnchor {value!r} is not a key fingerprint (40 or 64 hex digits "
                "for OpenPGP, SHA256:... for SSH)"
            )
        keys.append(identity)
    commit = repo.config_str("govsnap.trustAnchorCommit")
    if commit is not None and not re.fullmatch(r"[0-9a-f]{40}", commit.lower()):
        raise UsageError(f"govsnap.trustAnchorCommit {commit!r} is not a commit id (40 hex)")
    return Anchor(tuple(keys), commit.lower() if commit else None)


def _short(oid: pygit2.Oid | str) -> str:
    return str(oid)[:12]


# --- records: what was verified before, only ever to refuse -------------------------------

# Where a server running the hook remembers the policy it accepted (never a ref: refs
# under refs/govsnap-verified/ can arrive with `git clone --mirror` of a forge).
SERVER_RECORD = "policy-record.json"


@dataclass(frozen=True)
class PolicyRecord:
    """A policy commit verified before at a ref, and its version: a rollback to a commit
    that does not hold it, or to a lower version, is refused. A record never makes a
    policy trusted: the history is always checked back to the anchor."""

    ref: str  # the policy ref it was verified at
    commit: str | None
    version: int
    who: str  # "this clone verified" / "this server accepted", for messages
    forget: str  # how to drop the record when a rewrite is intended


def _clone_record(repo: Repo, name: str) -> PolicyRecord | None:
    memory = verified_policy_ref(name)
    known = ref_target(repo, memory)
    if known is None:
        return None
    return PolicyRecord(
        name,
        str(known),
        _version_at(repo, known),
        "this clone verified",
        f"git update-ref -d {memory}",
    )


def _version_at(repo: Repo, oid: pygit2.Oid | str) -> int:
    """Return the policy version committed at `oid` (0 when it cannot be read)."""
    commit = repo.git.get(oid)
    if not isinstance(commit, pygit2.Commit):
        return 0
    blob = _policy_blob(repo, commit)
    try:
        return 0 if blob is None else parse_policy(blob.data, POLICY_PATH).version
    except PolicyError:
        return 0


def _server_record(repo: Repo) -> PolicyRecord | None:
    path = repo.state_dir / SERVER_RECORD
    try:
        data = json.loads(path.read_text())
        ref, commit, version = str(data["ref"]), data["commit"], int(data["version"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise PolicyChainError(
            f"{path} does not parse ({exc}): this server cannot tell which policy version "
            "it accepted last; restore the file, or remove it to start from the anchor"
        ) from exc
    return PolicyRecord(
        ref,
        str(commit) if commit else None,
        version,
        "this server accepted",
        f"remove {path} (the server then starts again from its anchor)",
    )


def record_server_policy(repo: Repo, policy: TrustPolicy) -> None:
    """Remember on a server that it accepted `policy` (its commit and version), unless it
    remembers a higher version already; written atomically."""
    current = _server_record(repo)
    if current is not None and (
        current.version > policy.version or current.commit == policy.commit
    ):
        return
    path = repo.state_dir / SERVER_RECORD
    data = {
        "ref": policy.source.partition(":")[0],
        "commit": policy.commit,
        "version": policy.version,
    }
    # Two pushes may be judged at once: each writes its own file, then renames it.
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=".policy-", delete=False) as fh:
        fh.write(json.dumps(data, sort_keys=True) + "\n")
    os.replace(fh.name, path)


# --- the policy's history, back to the anchor --------------------------------------------


@dataclass(frozen=True)
class Arrival:
    """A push a server receives: the commits its policy ref did not hold (not reachable
    from `known`) are judged at `now`, by the server's own clock: an approval by a key
    that had expired by then does not count, whatever time its signature claims."""

    now: int
    known: pygit2.Oid | None


@dataclass(frozen=True)
class _Version:
    """A policy version as the history justifies it."""

    policy: TrustPolicy
    data: bytes
    intro: pygit2.Commit  # the commit that introduced these bytes
    lineage: frozenset[pygit2.Oid]  # this version's blob and those of all it succeeds
    root: str  # why its first version is believed (the root of trust)


class _History:
    """Verifies the trust policy of ref `name` at a commit: every version on its history,
    back to the anchor, approved by the version before it on *every* parent (so a merge
    cannot bring an older version back), its version grown at each change."""

    def __init__(
        self, repo: Repo, name: str, anchor: Anchor, arrival: Arrival | None, skew: int
    ) -> None:
        self.repo = repo
        self.name = name
        self.anchor = anchor
        self.arrival = arrival
        self.skew = skew
        self.now = arrival.now if arrival is not None else int(time.time())
        self.verifiers: dict[tuple[object, ...], SignatureVerifier] = {}
        self.gathering = False
        # Key material -> (statement, signature) of the OpenPGP approvals to check, and
        # what gpg said of each.
        self.gathered: dict[tuple[object, ...], list[tuple[bytes, bytes]]] = {}
        self.checked: dict[tuple[object, ...], SignatureCheck] = {}
        self.caveats: list[str] = []
        self.parsed: dict[pygit2.Oid, TrustPolicy] = {}
        self.tip: pygit2.Commit | None = None

    def close(self) -> None:
        for verifier in self.verifiers.values():
            verifier.close()

    def verify(self, tip: pygit2.Commit) -> _Version:
        """Return the justified version at `tip`; raise PolicyChainError when it is not."""
        self.tip = tip
        blobs, parents, commits = self._collect(tip)
        order = _parents_first(tip.id, parents)
        # A first pass gathers the OpenPGP approvals the history holds, so that gpg checks
        # them in one run per set of keys; the second pass judges with the results.
        self.gathering = True
        versions: dict[pygit2.Oid, _Version] = {}
        for oid in order:
            versions[oid] = self._version(commits[oid], blobs, parents[oid], versions)
        self.gathering = False
        for material, items in self.gathered.items():
            checks = self.verifiers[material].verify_many(items)
            self.checked.update(
                ((material, *item), check) for item, check in zip(items, checks, strict=True)
            )
        versions = {}
        for oid in order:
            versions[oid] = self._version(commits[oid], blobs, parents[oid], versions)
        return versions[tip.id]

    def _collect(
        self, tip: pygit2.Commit
    ) -> tuple[
        dict[pygit2.Oid, pygit2.Oid],
        dict[pygit2.Oid, list[pygit2.Oid]],
        dict[pygit2.Oid, pygit2.Commit],
    ]:
        """Return the commits of `tip`'s history that carry the policy (stopping at the
        pinned anchor commit), with their policy blob and their parents that carry it."""
        blobs: dict[pygit2.Oid, pygit2.Oid] = {}
        parents: dict[pygit2.Oid, list[pygit2.Oid]] = {}
        commits: dict[pygit2.Oid, pygit2.Commit] = {}
        stack = [tip]
        while stack:
            commit = stack.pop()
            if commit.id in commits:
                continue
            blob = _policy_blob_id(commit)
            assert blob is not None
            commits[commit.id], blobs[commit.id], parents[commit.id] = commit, blob, []
            if self.anchor.commit == str(commit.id):
                continue  # the pinned policy: what came before it is not asked about
            for parent_id in commit.parent_ids:
                parent = self.repo.git.get(parent_id)
                if not isinstance(parent, pygit2.Commit):
                    raise PolicyChainError(
                        f"cannot check the trust policy's history on {self.name}: commit "
                        f"{_short(commit.id)}'s parent {_short(parent_id)} is missing (a "
                        "shallow or partial clone?): fetch the whole history (git fetch "
                        "--unshallow), or pin a policy commit (govsnap.trustAnchorCommit)"
                    )
                if _policy_blob_id(parent) is not None:
                    parents[commit.id].append(parent_id)
                    stack.append(parent)
        return blobs, parents, commits

    def _parse(self, commit: pygit2.Commit, blob: pygit2.Oid) -> tuple[TrustPolicy, bytes]:
        data = self.repo.git[blob].read_raw()
        if blob not in self.parsed:
            assert self.tip is not None
            where = self.name if commit.id == self.tip.id else f"{self.name}@{_short(commit.id)}"
            self.parsed[blob] = parse_policy(data, f"{where}:{POLICY_PATH}")
        return self.parsed[blob], data

    def _version(
        self,
        commit: pygit2.Commit,
        blobs: dict[pygit2.Oid, pygit2.Oid],
        parent_ids: list[pygit2.Oid],
        versions: dict[pygit2.Oid, _Version],
    ) -> _Version:
        blob = blobs[commit.id]
        same = [versions[p] for p in parent_ids if blobs[p] == blob]
        if same and len(same) == len(parent_ids):
            return same[0]  # nothing changed: the common case, checked once
        if self.anchor.commit == str(commit.id):
            policy, data = self._parse(commit, blob)
            root = f"pinned commit {_short(commit.id)} (govsnap.trustAnchorCommit)"
            # Approvals of the next version name the commit that introduced this one,
            # wherever a clone pinned its anchor.
            intro = introduced_at(self.repo, commit)
            return _Version(policy, data, intro, frozenset({blob}), root)
        if not parent_ids:
            return self._first_version(commit, blob)
        policy, data = self._parse(commit, blob)
        lineage: set[pygit2.Oid] = {blob}
        for version in same:
            lineage |= version.lineage
        differing = [versions[p] for p in parent_ids if blobs[p] != blob]
        refused: list[tuple[_Version, str]] = []
        for previous in differing:
            if previous.lineage <= lineage:
                continue  # a version this one already succeeds through another parent
            failure = self._justify(commit, policy, data, previous)
            if failure is None:
                lineage |= previous.lineage
            else:
                refused.append((previous, failure))
        # A parent refused above may hold a version that one accepted later succeeds.
        unresolved = [failure for previous, failure in refused if not previous.lineage <= lineage]
        if unresolved:
            raise PolicyChainError(unresolved[0])
        intro = same[0].intro if same else commit
        root = (same or differing)[0].root
        return _Version(policy, data, intro, frozenset(lineage), root)

    def _first_version(self, commit: pygit2.Commit, blob: pygit2.Oid) -> _Version:
        """Return a version no parent carries: the policy's first, which only an anchor
        can make trusted."""
        anchor = self.anchor
        if anchor.commit:
            raise PolicyChainError(
                f"{self.name} does not descend from the pinned policy commit "
                f"{_short(anchor.commit)} (govsnap.trustAnchorCommit): its history holds a "
                f"trust policy introduced at {_short(commit.id)}"
            )
        policy, data = self._parse(commit, blob)
        if anchor.keys:
            base = str(commit.parent_ids[0]) if commit.parent_ids else None
            approved, refusals = self._approvers(commit, data, policy, None, base)
            pinned = {
                name: how
                for name, how in approved.items()
                if next(s for s in policy.signers if s.name == name).identity in anchor.keys
            }
            if not pinned:
                why = f" ({refusals[0]})" if refusals else ""
                raise PolicyChainError(
                    f"the first version of the trust policy ({_short(commit.id)}) is not signed "
                    f"by a pinned anchor key ({', '.join(anchor.keys)}), allowed 'policy' by it"
                    f"{why}: the policy cannot be trusted"
                )
            root = f"first version signed by pinned key ({', '.join(sorted(pinned.values()))})"
        else:
            root = (
                f"trust on first use of commit {_short(commit.id)}: nothing pinned it (git "
                f"config govsnap.trustAnchorCommit {commit.id})"
            )
        return _Version(policy, data, commit, frozenset({blob}), root)

    def _justify(
        self, commit: pygit2.Commit, policy: TrustPolicy, data: bytes, previous: _Version
    ) -> str | None:
        """Return why `commit`'s policy does not succeed `previous` (a parent's), or None."""
        old, new = previous.policy.version, policy.version
        short = _short(commit.id)
        if new <= old:
            return (
                f"commit {short} changes the trust policy of its parent (version {old}, "
                f"introduced at {_short(previous.intro.id)}) without raising its version "
                f"({old} -> {new}): a version may only grow, so an old policy cannot come back"
            )
        judge = previous.policy
        approved, refusals = self._approvers(commit, data, judge, previous.intro, None)
        if len(approved) >= judge.threshold:
            return None
        allowed = [s.name for s in judge.signers if s.covers_operation("policy")]
        why = f"; not counted: {'; '.join(refusals[:3])}" if refusals else ""
        return (
            f"commit {short} changes the trust policy (version {old} -> {new}) with "
            f"{len(approved)} of the {judge.threshold} approval(s) the previous version "
            f"requires: sign the commit, or add approvals (govsnap trust approve), by "
            f"signers allowed 'policy' ({', '.join(allowed) or 'none'}){why}"
        )

    def _verifier(self, judge: TrustPolicy) -> tuple[tuple[object, ...], SignatureVerifier]:
        """Return a verifier holding `judge`'s keys, and what identifies them: one per set
        of keys, however many versions carry the same (each keyring costs gpg runs)."""
        keys = judge.keys()
        material = (keys.openpgp, keys.ssh_allowed)
        if material not in self.verifiers:
            self.verifiers[material] = judge.verifier(self.repo)
        return material, self.verifiers[material]

    def _is_new(self, commit: pygit2.Commit) -> bool:
        """Return True when a server receives `commit` now (its policy ref did not hold it)."""
        if self.arrival is None:
            return False
        known = self.arrival.known
        if known is None:
            return True
        return not (commit.id == known or self.repo.git.descendant_of(known, commit.id))

    def _approvers(
        self,
        commit: pygit2.Commit,
        data: bytes,
        judge: TrustPolicy,
        previous: pygit2.Commit | None,
        base: str | None,
    ) -> tuple[dict[str, str], list[str]]:
        """Return signer name -> how, for each signer of `judge` allowed `policy` who
        approved `commit`'s policy bytes `data` as the successor of the version
        `previous` introduced (None: as the first version, on `base`), and why other
        approvals did not count. An approval is the commit's own signature, or a signed
        statement in .govsnap/approvals/ naming exactly this change."""
        # No approval can predate the version it changes (or the commit a first version
        # is introduced on): a retired key's back-dated signature lands before it.
        floor_commit = (
            previous
            if previous is not None
            else (self.repo.git.get(base) if base is not None else None)
        )
        floor = floor_commit.committer.time if isinstance(floor_commit, pygit2.Commit) else None
        candidates: list[tuple[str, bytes, bytes, int]] = []
        block, signed = commit.gpg_signature
        if block:
            candidates.append(
                (
                    f"signed commit {_short(commit.id)}",
                    bytes(signed),
                    bytes(block),
                    commit.committer.time,
                )
            )
        try:
            folder = commit.tree[APPROVALS_DIR]
        except KeyError:
            folder = None
        wanted_previous = None if previous is None else str(previous.id)
        old_format: list[str] = []
        if isinstance(folder, pygit2.Tree):
            for entry in folder:
                obj = self.repo.git[entry.id]
                if not isinstance(obj, pygit2.Blob):
                    continue
                approval = ApprovalFile.split(obj.data)
                statement = ApprovalStatement.parse(approval.statement)
                where = f"{APPROVALS_DIR}/{entry.name}"
                if statement is None:
                    old_format.append(where)
                    continue
                if not statement.matches(self.name, data, wanted_previous, base):
                    continue  # approves another change (an earlier one, another ref)
                candidates.append((where, approval.statement, approval.signature, statement.time))
        material, verifier = self._verifier(judge)
        refusals: list[str] = []
        if self.gathering:
            pending = self.gathered.setdefault(material, [])
            pending += [
                (p, s) for _, p, s, _ in candidates if SignedTag(p, s).signature_kind == "openpgp"
            ]
            # Assumed approved for now: the second pass judges.
            allowed = {s.name: "" for s in judge.signers if s.covers_operation("policy")}
            return allowed, []
        found: dict[str, str] = {}
        new = self._is_new(commit)
        for how, payload, signature, claimed in candidates:
            # An SSH key is judged at the time the approval claims, but never before the
            # version it changes existed.
            when = claimed if floor is None else max(claimed, floor)
            check = self.checked.get((material, payload, signature))
            if check is None:
                check = verifier.verify(payload, signature, when)
            if check.valid and new:
                check = verifier.at_arrival(payload, signature, check, self.now)
            if not check.valid:
                refusals.append(f"{how}: {check.reason}")
                continue
            refusal = self._time_refusal(check, claimed, floor)
            if refusal is not None:
                refusals.append(f"{how}: {refusal}")
                continue
            entry_ = judge.find(check.signer)
            if entry_ is None or not entry_.covers_operation("policy"):
                continue
            if entry_.name not in found:
                found[entry_.name] = how
                self._caveat(commit, entry_, how, check, claimed, floor)
        # Last: after an upgrade every later tree still holds such files.
        refusals += [
            f"{where}: not an approval statement (a signature over the file's bytes alone, "
            "as govsnap 0.1 wrote it, counts for nothing: govsnap trust approve)"
            for where in old_format
        ]
        return found, refusals

    def _time_refusal(self, check: SignatureCheck, claimed: int, floor: int | None) -> str | None:
        """Return why an approval's times do not hold, or None."""
        skew = self.skew
        if check.signed_at is not None and claimed - check.signed_at > skew:
            return (
                f"signed {_when(check.signed_at)}, {claimed - check.signed_at}s before the time "
                f"it claims ({_when(claimed)}; more than govsnap.auditSkew, {skew}s): a "
                "back-dated signature"
            )
        if floor is not None and claimed < floor - skew:
            return (
                f"it claims {_when(claimed)}, before the version it changes existed "
                f"({_when(floor)}): a back-dated approval"
            )
        if claimed > self.now + skew:
            return f"it claims {_when(claimed)}, in the future"
        return None

    def _caveat(
        self,
        commit: pygit2.Commit,
        signer: TrustedSigner,
        how: str,
        check: SignatureCheck,
        claimed: int,
        floor: int | None,
    ) -> None:
        """Say what a clone cannot judge: an approval by a key retired since was made
        when it claims only as far as the approver's clock says."""
        if check.expired_at is not None:
            retired = f"a key that expired {_when(check.expired_at)}"
        elif signer.kind == "ssh" and "valid-before" in signer.allowed_signers:
            retired = "an SSH key with a valid-before date"
        else:
            return
        bound = f", after the version it changes existed ({_when(floor)})" if floor else ""
        said = (
            f"the approval of commit {_short(commit.id)} by {signer.name} ({how}) was made "
            f"with {retired}: this clone can tell only that it claims {_when(claimed)}"
            f"{bound}; a server running the hook judged it when it arrived"
        )
        if said not in self.caveats:
            self.caveats.append(said)

    def retired(self, current: _Version) -> tuple[TrustedSigner, ...]:
        """Return the signers of the versions `current` succeeds that it no longer lists."""
        listed = {s.identity for s in current.policy.signers}
        retired: dict[str, TrustedSigner] = {}
        for blob in current.lineage:
            earlier = self.parsed.get(blob)
            if earlier is not None:
                retired.update((s.identity, s) for s in earlier.signers if s.identity not in listed)
        return tuple(retired.values())


def introduced_at(repo: Repo, commit: pygit2.Commit) -> pygit2.Commit:
    """Return the commit that introduced the policy bytes `commit` carries: back along the
    first parent carrying the same bytes, as long as there is one."""
    blob = _policy_blob_id(commit)
    while True:
        same = next((p for p in parents_of(repo, commit) if _policy_blob_id(p) == blob), None)
        if same is None:
            return commit
        commit = same


def parents_of(repo: Repo, commit: pygit2.Commit) -> list[pygit2.Commit]:
    """Return the parents of `commit` present in the object store, in order."""
    found: list[pygit2.Commit] = []
    for oid in commit.parent_ids:
        parent = repo.git.get(oid)
        if isinstance(parent, pygit2.Commit):
            found.append(parent)
    return found


def _policy_blob_id(commit: pygit2.Commit) -> pygit2.Oid | None:
    """Return the id of the policy file committed in `commit`, or None."""
    try:
        entry = commit.tree[POLICY_PATH]
    except KeyError:
        return None
    return entry.id if entry.type_str == "blob" else None


def _parents_first(
    tip: pygit2.Oid, parents: dict[pygit2.Oid, list[pygit2.Oid]]
) -> list[pygit2.Oid]:
    """Return the commits of `parents` reachable from `tip`, every parent before its
    children."""
    order: list[pygit2.Oid] = []
    seen: set[pygit2.Oid] = set()
    stack: list[tuple[pygit2.Oid, bool]] = [(tip, False)]
    while stack:
        oid, expanded = stack.pop()
        if expanded:
            order.append(oid)
            continue
        if oid in seen:
            continue
        seen.add(oid)
        stack.append((oid, True))
        stack.extend((p, False) for p in parents[oid] if p not in seen)
    return order


def _when(epoch: int) -> str:
    try:
        return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(epoch))
    except (OverflowError, OSError, ValueError):
        return f"@{epoch}"


def load_policy(
    repo: Repo,
    ref: str | None = None,
    *,
    remember: bool = True,
    require_anchor: bool = False,
    server: bool = False,
) -> TrustPolicy | None:
    """Return the trust policy at `ref` (default: policy_ref), verified back to its
    anchor, or None when the ref or the file does not exist (and nothing was verified
    there before). Raise PolicyError when a version is malformed, PolicyChainError when
    its history does not hold (see the module docstring). With `remember`, a clone records
    the tip it verified (only ever to refuse a rollback later); `require_anchor` refuses
    trust on first use; `server` (the pre-receive hook) uses the server's own record and
    ignores refs/govsnap-verified/, which a mirror clone could have brought."""
    name = ref or policy_ref(repo)
    return policy_at(
        repo,
        name,
        _ref_commit(repo, name),
        remember=remember,
        require_anchor=require_anchor,
        server=server,
    )


def policy_at(
    repo: Repo,
    name: str,
    tip: pygit2.Commit | None,
    *,
    remember: bool = True,
    require_anchor: bool = False,
    server: bool = False,
    arrival: Arrival | None = None,
) -> TrustPolicy | None:
    """Return the trust policy of ref `name` were it at commit `tip` (None: deleted),
    verified back to its anchor (see load_policy): what a server asks of a push to the
    policy's ref before it lands, judging what the push brings at `arrival`."""
    from govsnap.objects import configured_skew

    record = _server_record(repo) if server else _clone_record(repo, name)
    blob = None if tip is None else _policy_blob(repo, tip)
    if tip is None or blob is None:
        if record is not None:
            what = f"{name} does not exist" if tip is None else f"{name} has no {POLICY_PATH}"
            raise PolicyChainError(
                f"{what}, but {record.who} its trust policy at commit "
                f"{_short(record.commit or '?')} (version {record.version}): the policy was "
                f"deleted or the ref rewritten; restore it"
                + (f" (git update-ref {name} {record.commit})" if record.commit else "")
                + f", or if that is intended, {record.forget}"
            )
        return None
    anchor = configured_anchor(repo)
    if require_anchor and not anchor.pinned:
        raise PolicyChainError(
            f"no trust anchor is pinned, so the first pusher of {name} could define the "
            "policy: git config govsnap.trustAnchor <fingerprint of the policy's first "
            "signer> (or govsnap.trustAnchorCommit <policy commit>)"
        )
    if record is not None:
        _check_record(repo, name, tip, record)
    skew = configured_skew(repo)
    key = (name, str(tip.id), anchor, record, require_anchor, arrival, skew)
    memo = repo.memo.get(("policy", key))
    if isinstance(memo, TrustPolicy):
        return memo
    history = _History(repo, name, anchor, arrival, skew)
    try:
        version = history.verify(tip)
    finally:
        history.close()
    if record is not None and version.policy.version < record.version:
        raise PolicyChainError(
            f"the trust policy of {name} went back from version {record.version}, which "
            f"{record.who} (at {_short(record.commit or '?')}), to version "
            f"{version.policy.version} (commit {_short(tip.id)}): a version may only grow; "
            f"if that is intended, {record.forget}"
        )
    if remember and not server:
        _remember(repo, verified_policy_ref(name), tip.id)
    policy = replace(
        version.policy,
        source=f"{name}:{POLICY_PATH}",
        commit=str(tip.id),
        anchor=version.root,
        retired=history.retired(version),
        caveats=tuple(history.caveats),
    )
    repo.memo[("policy", key)] = policy
    return policy


def _check_record(repo: Repo, name: str, tip: pygit2.Commit, record: PolicyRecord) -> None:
    """Raise PolicyChainError when `tip` no longer holds the commit `record` names."""
    known = record.commit
    if record.ref != name or known is None or known == str(tip.id):
        return  # another ref (a server's policy ref renamed): its version still counts
    if not repo.git.odb.exists(known):
        return
    if repo.git.descendant_of(tip.id, pygit2.Oid(hex=known)):
        return
    raise PolicyChainError(
        f"{name} was rewritten: its history no longer holds commit {_short(known)}, whose "
        f"trust policy (version {record.version}) {record.who} (the policy may have been "
        f"rolled back); restore it (git update-ref {name} {known}), or if the rewrite is "
        f"intended, {record.forget}"
    )


def _remember(repo: Repo, memory: str, tip: pygit2.Oid) -> None:
    """Move this clone's record of the verified policy commit forward to `tip` (never back:
    another process may have verified a newer one meanwhile)."""

    def compute(current: pygit2.Oid | None) -> pygit2.Oid | None:
        if current is None or current == tip or repo.git.descendant_of(tip, current):
            return tip
        return current

    update_ref(repo, memory, compute, message="govsnap: trust policy verified")


def missing_policy(repo: Repo, ref: str | None = None) -> str:
    """Return why there is no policy at `ref` (default: policy_ref) and how to write one."""
    name = ref or policy_ref(repo)
    write = (
        "write one with `govsnap trust init` (or `govsnap trust add-signer NAME --key KEY`), "
        "then git add .govsnap && git commit"
    )
    if _ref_commit(repo, name) is None:
        return (
            f"no trust policy: the policy ref {name} does not exist yet; {write} on it "
            "(or name the policy's branch in full: git config govsnap.trustRef refs/heads/…)"
        )
    return f"no trust policy: {name}:{POLICY_PATH} does not exist; {write}"


def load_policy_file(path: Path) -> TrustPolicy:
    """Return the policy in a file on disk (to check an edit before committing it)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from exc
    return parse_policy(data, str(path))


def decide_local(
    repo: Repo, policy: TrustPolicy, environments: Iterable[str], operation: str
) -> TrustDecision:
    """Return whether the key this clone signs with may perform `operation` in every one
    of `environments` (the first refusal, or the last allowance). The key is identified
    as verification identifies a signer: a probe is signed with it and verified against
    the policy's keys, so a key ID, an e-mail or a subkey in git config is looked up by
    the fingerprint the policy names."""
    signer = signer_for(repo)
    if signer is None:
        return TrustDecision(
            False,
            f"no signing key is configured, and the trust policy {policy.source} "
            f"decides who may {operation}",
        )
    probe = f"govsnap: may this key {operation}?\n".encode()
    signature = signer.sign(probe)
    verifier = policy.verifier(repo)
    try:
        check = verifier.verify(probe, signature.block)
    finally:
        verifier.close()
    if not check.valid:
        if check.unknown_key is not None:
            return TrustDecision(
                False,
                f"this clone's signing key {signature.signer} is not in the trust policy "
                f"{policy.source} (add it: govsnap trust add-signer NAME --key "
                f"{signature.signer} --operation {operation}, and commit)",
            )
        return TrustDecision(False, f"the configured signing key does not verify: {check.reason}")
    decision = TrustDecision(False, f"nothing to {operation}")
    for environment in sorted(set(environments)):
        decision = policy.decide(check.signer, environment, operation)
        if not decision.allowed:
            break
    return decision


@dataclass(frozen=True)
class PolicyStatus:
    """The policy `trust show|check` looked at, and whether the working tree differs."""

    source: str
    policy: TrustPolicy | None
    require_trust: bool
    uncommitted_edit: bool  # the working-tree file differs from the committed one
    absence: str = ""  # why there is no policy, and how to write one

    def as_json(self) -> dict[str, Any]:
        """Return the policy looked at as JSON-ready data."""
        policy = self.policy
        return {
            "source": self.source,
            "present": policy is not None,
            "valid": True,
            "require_trust": self.require_trust,
            "uncommitted_edit": self.uncommitted_edit,
            "version": None if policy is None else policy.version,
            "policy_threshold": None if policy is None else policy.threshold,
            "commit": None if policy is None else policy.commit,
            "anchor": None if policy is None else policy.anchor,
            "caveats": [] if policy is None else list(policy.caveats),
            "signers": [] if policy is None else [s.as_json() for s in policy.signers],
        }

    def check(self) -> None:
        """Raise CheckFailed when there is no policy and one is required."""
        if self.policy is None and self.require_trust:
            raise CheckFailed(f"every snapshot fails the trust check: {self.absence}")


def status(repo: Repo, ref: str | None = None, file: Path | None = None) -> PolicyStatus:
    """Return the policy committed at `ref` (or in `file`), validated (its history back to
    its anchor, and its public keys, too); raise PolicyError when it is malformed,
    PolicyChainError when its history does not hold."""
    if file is not None:
        checked = load_policy_file(file)
        checked.verifier(repo).close()  # the public keys must be the declared ones
        return PolicyStatus(checked.source, checked, require_trust(repo), False)
    source, data = policy_blob(repo, ref)
    policy = load_policy(repo, ref)
    if policy is not None:
        policy.verifier(repo).close()
    edited = False
    if not repo.is_bare:
        on_disk = repo.workdir / POLICY_PATH
        current = on_disk.read_bytes() if on_disk.is_file() else None
        edited = current != data
    absence = "" if policy is not None else missing_policy(repo, ref)
    return PolicyStatus(source, policy, require_trust(repo), edited, absence)
