"""The trust policy: which signers may sign snapshots for which environments and perform
which operations, with their public keys; read from `.govsnap/trust.toml` as committed at
a full ref name, and believed only as far as its history is signed back to an anchor.

The root of trust (DESIGN.md section 6, docs/governance.md): the policy at the tip of
`govsnap.trustRef` counts only if every change of the file along the ref's first-parent
history, back to an anchor, was approved by signers the previous version allows the
`policy` operation (as many as its `policy_threshold`), and its `version` grew with each
change. The anchor is a key (`govsnap.trustAnchor`) that signed the policy's first
version, a commit (`govsnap.trustAnchorCommit`), or the commit this clone verified last
(`refs/govsnap-verified/policy/<ref>`); with none of them, the first version is trusted
on first use, and every report says so.
"""

from __future__ import annotations

import base64
import fnmatch
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pygit2

from govsnap.errors import CheckFailed, UsageError
from govsnap.objects import SignatureKind, ref_target, update_ref
from govsnap.refs import verified_policy_ref
from govsnap.repo import Repo
from govsnap.schemas import schema_name
from govsnap.signing import KeySet, SignatureVerifier, signer_for, ssh_key_fingerprint

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
_ASSIGN = re.compile(r"^\s*(?P<key>[A-Za-z0-9_.\"' -]+?)\s*=")


def _key_parts(text: str) -> tuple[str, ...]:
    return tuple(part.strip().strip("\"'") for part in text.split("."))


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
        where = ".".join(path)
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


def _parse_at(
    repo: Repo, name: str, commit: pygit2.Commit, tip: pygit2.Commit
) -> tuple[TrustPolicy, bytes]:
    """Return the policy committed in `commit` (a version on the history of `tip`)."""
    blob = _policy_blob(repo, commit)
    assert blob is not None
    where = name if commit.id == tip.id else f"{name}@{_short(commit.id)}"
    return parse_policy(blob.data, f"{where}:{POLICY_PATH}"), blob.data


def approvers(repo: Repo, commit: pygit2.Commit, judge: TrustPolicy, data: bytes) -> dict[str, str]:
    """Return signer name -> how, for each signer of `judge` allowed the `policy`
    operation who approved the policy bytes `data` committed in `commit`: by signing the
    commit, or by a detached signature over `data` in .govsnap/approvals/."""
    found: dict[str, str] = {}
    verifier = judge.verifier(repo)
    try:
        block, signed = commit.gpg_signature
        checks: list[tuple[str, bytes, bytes]] = []
        if block:
            checks.append((f"signed commit {_short(commit.id)}", bytes(signed), bytes(block)))
        try:
            folder = commit.tree[APPROVALS_DIR]
        except KeyError:
            folder = None
        if isinstance(folder, pygit2.Tree):
            for entry in folder:
                obj = repo.git[entry.id]
                if isinstance(obj, pygit2.Blob):
                    checks.append((f"{APPROVALS_DIR}/{entry.name}", data, obj.data))
        for how, payload, signature in checks:
            check = verifier.verify(payload, signature)
            entry_ = judge.find(check.signer) if check.valid else None
            if entry_ is not None and entry_.covers_operation("policy"):
                found.setdefault(entry_.name, how)
    finally:
        verifier.close()
    return found


def _first_parent_chain(repo: Repo, tip: pygit2.Commit, stops: set[str]) -> list[pygit2.Commit]:
    """Return the first-parent history of `tip` that holds the policy, oldest first,
    starting at a commit in `stops` or where the policy was introduced."""
    chain = [tip]
    current = tip
    while str(current.id) not in stops and current.parent_ids:
        parent = repo.git[current.parent_ids[0]]
        if not isinstance(parent, pygit2.Commit) or _policy_blob(repo, parent) is None:
            break
        chain.append(parent)
        current = parent
    return chain[::-1]


def load_policy(
    repo: Repo, ref: str | None = None, *, remember: bool = True, require_anchor: bool = False
) -> TrustPolicy | None:
    """Return the trust policy at `ref` (default: policy_ref), verified back to its
    anchor, or None when the ref or the file does not exist (and this clone never
    verified one there). Raise PolicyError when a version is malformed, PolicyChainError
    when its history does not hold (see the module docstring). With `remember`, the tip
    verified is recorded as this clone's new starting point; `require_anchor` (servers)
    refuses trust on first use."""
    name = ref or policy_ref(repo)
    return policy_at(
        repo, name, _ref_commit(repo, name), remember=remember, require_anchor=require_anchor
    )


def policy_at(
    repo: Repo,
    name: str,
    tip: pygit2.Commit | None,
    *,
    remember: bool = True,
    require_anchor: bool = False,
) -> TrustPolicy | None:
    """Return the trust policy of ref `name` were it at commit `tip` (None: deleted),
    verified back to its anchor (see load_policy): what a server asks of a push to the
    policy's ref before it lands."""
    memory = verified_policy_ref(name)
    known = ref_target(repo, memory)
    blob = None if tip is None else _policy_blob(repo, tip)
    if tip is None or blob is None:
        if known is not None:
            what = f"{name} does not exist" if tip is None else f"{name} has no {POLICY_PATH}"
            raise PolicyChainError(
                f"{what}, but this clone verified its trust policy at commit {_short(known)}: "
                f"the policy was deleted or the ref rewritten; restore it (git update-ref "
                f"{name} {known}), or if that is intended, git update-ref -d {memory}"
            )
        return None
    anchor = configured_anchor(repo)
    if require_anchor and not anchor.pinned:
        raise PolicyChainError(
            f"no trust anchor is pinned, so the first pusher of {name} could define the "
            "policy: git config govsnap.trustAnchor <fingerprint of the policy's first "
            "signer> (or govsnap.trustAnchorCommit <policy commit>)"
        )
    stops = {str(known)} if known is not None else set()
    if anchor.commit:
        stops.add(anchor.commit)
    chain = _first_parent_chain(repo, tip, stops)
    base = chain[0]
    base_policy, base_data = _parse_at(repo, name, base, tip)
    if known is not None and str(base.id) != str(known):
        raise PolicyChainError(
            f"{name} was rewritten: its history no longer holds commit {_short(known)}, whose "
            f"trust policy this clone verified (the policy may have been rolled back); "
            f"restore it (git update-ref {name} {known}), or if the rewrite is intended, "
            f"git update-ref -d {memory}"
        )
    if known is not None:
        how = f"verified by this clone before, at {_short(known)}"
    elif anchor.commit and str(base.id) == anchor.commit:
        how = f"pinned commit {_short(base.id)} (govsnap.trustAnchorCommit)"
    elif anchor.commit:
        raise PolicyChainError(
            f"{name} does not descend from the pinned policy commit {_short(anchor.commit)} "
            "(govsnap.trustAnchorCommit) along its first parents"
        )
    elif anchor.keys:
        signed_by = approvers(repo, base, base_policy, base_data)
        pinned = {
            name_: how_
            for name_, how_ in signed_by.items()
            if next(s for s in base_policy.signers if s.name == name_).identity in anchor.keys
        }
        if not pinned:
            raise PolicyChainError(
                f"the first version of the trust policy ({_short(base.id)}) is not signed by "
                f"a pinned anchor key ({', '.join(anchor.keys)}), allowed 'policy' by it: "
                "the policy cannot be trusted"
            )
        how = f"first version signed by pinned key ({', '.join(sorted(pinned.values()))})"
    else:
        how = (
            f"trust on first use of commit {_short(base.id)}: nothing pinned it (git config "
            f"govsnap.trustAnchorCommit {base.id})"
        )
    policy, previous_data = base_policy, base_data
    for commit in chain[1:]:
        data = _policy_blob(repo, commit)
        assert data is not None
        if data.data == previous_data:
            continue
        new, _ = _parse_at(repo, name, commit, tip)
        if new.version <= policy.version:
            raise PolicyChainError(
                f"commit {_short(commit.id)} changes the trust policy without raising its "
                f"version ({policy.version} -> {new.version}): a version may only grow, so "
                "an old policy cannot come back"
            )
        approved = approvers(repo, commit, policy, data.data)
        if len(approved) < policy.threshold:
            allowed = [s.name for s in policy.signers if s.covers_operation("policy")]
            raise PolicyChainError(
                f"commit {_short(commit.id)} changes the trust policy (version {policy.version} "
                f"-> {new.version}) with {len(approved)} of the {policy.threshold} approval(s) "
                f"the previous version requires: sign the commit, or add approvals "
                f"(govsnap trust approve), by signers allowed 'policy' "
                f"({', '.join(allowed) or 'none'})"
            )
        policy, previous_data = new, data.data
    # A clone that cannot be written (a read-only mount) verifies all the same; it only
    # cannot remember what it verified.
    if remember and (known is None or tip.id != known) and repo.writable:
        _remember(repo, memory, tip.id)
    source = f"{name}:{POLICY_PATH}"
    return replace(policy, source=source, commit=str(tip.id), anchor=how)


def with_history(repo: Repo, policy: TrustPolicy) -> TrustPolicy:
    """Return `policy` knowing its retired signers: those of its earlier versions (back to
    the pinned anchor commit, or the first version) that it no longer lists. An audit
    entry such a signer made while listed is a record to keep, not a forgery; it decides
    nothing (decisions are judged against the current policy)."""
    if policy.commit is None:
        return policy
    tip = repo.git.get(policy.commit)
    if not isinstance(tip, pygit2.Commit):
        return policy
    anchor = configured_anchor(repo)
    listed = {s.identity for s in policy.signers}
    retired: dict[str, TrustedSigner] = {}
    seen: set[pygit2.Oid] = set()
    for commit in _first_parent_chain(repo, tip, {anchor.commit} if anchor.commit else set()):
        blob = _policy_blob(repo, commit)
        if blob is None or blob.id in seen:
            continue
        seen.add(blob.id)
        try:
            earlier = parse_policy(blob.data, f"{_short(commit.id)}:{POLICY_PATH}")
        except PolicyError:
            continue
        retired.update((s.identity, s) for s in earlier.signers if s.identity not in listed)
    return replace(policy, retired=tuple(retired.values()))


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
            "schema": schema_name("trust"),
            "source": self.source,
            "present": policy is not None,
            "valid": True,
            "require_trust": self.require_trust,
            "uncommitted_edit": self.uncommitted_edit,
            "version": None if policy is None else policy.version,
            "policy_threshold": None if policy is None else policy.threshold,
            "commit": None if policy is None else policy.commit,
            "anchor": None if policy is None else policy.anchor,
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
