"""The trust policy: which signers may sign snapshots for which environments and perform
which operations, read from `.govsnap/trust.toml` as committed at a ref (default HEAD)."""

from __future__ import annotations

import base64
import fnmatch
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pygit2

from govsnap.errors import UsageError
from govsnap.repo import Repo
from govsnap.signing import SignatureVerifier, signer_for, ssh_key_fingerprint

POLICY_PATH = ".govsnap/trust.toml"
DEFAULT_REF = "HEAD"
FORMAT_VERSION = 1
OPERATIONS = ("create", "rollback", "prune", "pin")
WILDCARD = "*"
KINDS = ("openpgp", "ssh", "x509")

_TOP_KEYS = ("version", "signers")
_SIGNER_KEYS = (*KINDS, "environments", "operations", "description")
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


class PolicyError(UsageError):
    """The trust policy is malformed; the message names the file and the line."""


@dataclass(frozen=True)
class TrustedSigner:
    """One signer the policy names, with what it may do."""

    name: str
    kind: str  # "openpgp", "ssh" or "x509"
    identity: str  # OpenPGP/X.509 fingerprint (upper-case hex) or SSH "SHA256:..."
    environments: tuple[str, ...]  # names or fnmatch patterns; "*" for all
    operations: tuple[str, ...]  # subset of OPERATIONS, or ("*",)
    line: int
    description: str = ""
    allowed_signers: str = ""  # the SSH allowed-signers line, for ssh-keygen

    def covers_environment(self, environment: str) -> bool:
        """Return True when this signer may act in `environment`."""
        return any(fnmatch.fnmatchcase(environment, p) for p in self.environments)

    def covers_operation(self, operation: str) -> bool:
        """Return True when this signer may perform `operation`."""
        return WILDCARD in self.operations or operation in self.operations


@dataclass(frozen=True)
class TrustDecision:
    """Whether the policy allows something, and why (a sentence for the user)."""

    allowed: bool
    reason: str
    signer: TrustedSigner | None = None


@dataclass(frozen=True)
class TrustPolicy:
    """A parsed, validated trust policy."""

    source: str  # e.g. "HEAD:.govsnap/trust.toml", used in messages
    signers: tuple[TrustedSigner, ...]

    def find(self, signer: str | None) -> TrustedSigner | None:
        """Return the policy entry for a verified signer identity, or None."""
        if not signer:
            return None
        wanted = _normalise_identity(signer)
        return next((s for s in self.signers if s.identity == wanted), None)

    def decide(self, signer: str | None, environment: str, operation: str) -> TrustDecision:
        """Return whether `signer` may perform `operation` in `environment`, with the reason."""
        if operation not in OPERATIONS:
            raise UsageError(f"unknown operation {operation!r} (known: {', '.join(OPERATIONS)})")
        if not signer:
            return TrustDecision(False, "no verified signer to look up in the trust policy")
        entry = self.find(signer)
        if entry is None:
            return TrustDecision(False, f"signer {signer} is not in the trust policy {self.source}")
        who = f"signer {entry.name} ({entry.identity})"
        if not entry.covers_environment(environment):
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
        return "".join(s.allowed_signers + "\n" for s in self.signers if s.kind == "ssh")


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
        kind = kinds[0]
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
        return TrustedSigner(
            name=name,
            kind=kind,
            identity=identity,
            environments=self.names((*path, "environments"), entry["environments"], None),
            operations=self.names((*path, "operations"), entry["operations"], OPERATIONS),
            line=locate(self.text, path),
            description=description,
            allowed_signers=allowed_signers,
        )

    def identity(self, kind: str, raw: str, path: tuple[str, ...]) -> tuple[str, str]:
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
    if version != FORMAT_VERSION:
        raise reader.fail(("version",), f"unsupported version {version!r} (this govsnap reads 1)")
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
    return TrustPolicy(source, tuple(signers))


# --- loading ---------------------------------------------------------------------------------


def policy_ref(repo: Repo) -> str:
    """Return the ref the policy is read from: `govsnap.trustRef`, or HEAD."""
    return repo.config_str("govsnap.trustRef") or DEFAULT_REF


def require_trust(repo: Repo) -> bool:
    """Return `govsnap.requireTrust` (default true): whether a missing policy fails trust."""
    return repo.config_bool("govsnap.requireTrust", True)


def policy_blob(repo: Repo, ref: str | None = None) -> tuple[str, bytes | None]:
    """Return (source, content) of the policy committed at `ref`; content None when absent.

    The committed version is read, never the working-tree file, so an uncommitted edit
    cannot grant trust.
    """
    ref = ref or policy_ref(repo)
    source = f"{ref}:{POLICY_PATH}"
    try:
        commit = repo.git.revparse_single(ref).peel(pygit2.Commit)
    except (KeyError, ValueError, pygit2.GitError, pygit2.InvalidSpecError) as exc:
        if ref == DEFAULT_REF and repo.git.head_is_unborn:
            return source, None
        raise UsageError(f"govsnap.trustRef {ref!r} does not name a commit") from exc
    try:
        entry = commit.tree[POLICY_PATH]
    except KeyError:
        return source, None
    blob = repo.git[entry.id]
    if not isinstance(blob, pygit2.Blob):
        raise PolicyError(f"{source}:1: is not a file")
    return source, blob.data


def load_policy(repo: Repo, ref: str | None = None) -> TrustPolicy | None:
    """Return the policy committed at `ref` (default `govsnap.trustRef` or HEAD), or None
    when there is none; raise PolicyError when it is malformed."""
    source, data = policy_blob(repo, ref)
    return None if data is None else parse_policy(data, source)


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
    as verification identifies a signer: a probe is signed with it and verified, so a key
    ID, an e-mail or a subkey in git config is looked up by the fingerprint the policy
    names."""
    signer = signer_for(repo)
    if signer is None:
        return TrustDecision(
            False,
            f"no signing key is configured, and the trust policy {policy.source} "
            f"decides who may {operation}",
        )
    probe = f"govsnap: may this key {operation}?\n".encode()
    signature = signer.sign(probe)
    check = SignatureVerifier(repo, policy.allowed_signers_text()).verify(probe, signature.block)
    if not check.valid:
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


def status(repo: Repo, ref: str | None = None, file: Path | None = None) -> PolicyStatus:
    """Return the policy committed at `ref` (or in `file`), validated; raise PolicyError
    when it is malformed."""
    if file is not None:
        checked = load_policy_file(file)
        return PolicyStatus(checked.source, checked, require_trust(repo), False)
    source, data = policy_blob(repo, ref)
    policy = None if data is None else parse_policy(data, source)
    edited = False
    if not repo.is_bare:
        on_disk = repo.workdir / POLICY_PATH
        current = on_disk.read_bytes() if on_disk.is_file() else None
        edited = current != data
    return PolicyStatus(source, policy, require_trust(repo), edited)
