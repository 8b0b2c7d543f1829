"""Writing the trust policy for review: `trust init`, `trust add-signer`, `trust
remove-signer` and `trust approve` edit `.govsnap/trust.toml` (and its approvals) in the
working tree, keeping the file's comments and layout; committing is the user's step.

Every edit is validated as the policy loader will read it before anything is written,
and raises the policy's `version` past the committed one, as a change must.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pygit2
import tomlkit
import tomlkit.items

from govsnap.approval import ApprovalFile, ApprovalStatement, policy_digest
from govsnap.errors import SigningError, UsageError
from govsnap.objects import SignatureKind, validate_name
from govsnap.repo import Repo
from govsnap.signing import SSHSigner, primary_fingerprints, signer_for, ssh_key_fingerprint
from govsnap.trust import (
    APPROVALS_DIR,
    OPERATIONS,
    POLICY_PATH,
    WILDCARD,
    TrustPolicy,
    introduced_at,
    parents_of,
    parse_policy,
    policy_blob,
    policy_blob_of,
    policy_ref,
)

HEADER = """\
# govsnap trust policy: who may sign snapshots for which environments, and do what.
# Read as committed (never from the working tree). A change counts only when signers the
# previous version allows 'policy' approve it (a signed commit, or `govsnap trust approve`)
# and `version` grows. See docs/governance.md.
"""
DEFAULT_ADD_OPERATIONS = ("create",)
ARMORED_PUBLIC_KEY = "-----BEGIN PGP PUBLIC KEY BLOCK-----"
ARMORED_END = "-----END PGP PUBLIC KEY BLOCK-----"


@dataclass(frozen=True)
class SignerKey:
    """A signer's key as the policy records it."""

    kind: SignatureKind  # openpgp or ssh
    identity: str  # fingerprint, or the SSH allowed-signers line
    public_key: str = ""  # armored OpenPGP key


@dataclass(frozen=True)
class PolicyEdit:
    """What an edit wrote (or, with dry_run, would write)."""

    path: Path
    text: str
    policy: TrustPolicy
    created: bool
    dry_run: bool
    approval: Path | None = None

    def as_json(self) -> dict[str, Any]:
        """Return the edit as JSON-ready data."""
        return {
            "path": str(self.path),
            "created": self.created,
            "dry_run": self.dry_run,
            "version": self.policy.version,
            "signers": [s.name for s in self.policy.signers],
            "approval": None if self.approval is None else str(self.approval),
            "text": self.text,
        }


def _gpg(
    repo: Repo, *args: str, input_data: bytes | None = None, home: str | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run the OpenPGP program git is configured with, in `home` (default: the keyring
    govsnap signs with)."""
    program = repo.config_str("gpg.openpgp.program") or repo.config_str("gpg.program") or "gpg"
    home = home or repo.config_str("govsnap.gpgHome")
    command = [program, "--batch", "--no-tty", *(["--homedir", home] if home else []), *args]
    try:
        return subprocess.run(command, input=input_data, capture_output=True, check=False)
    except FileNotFoundError as exc:
        raise SigningError(f"{program} is not installed or not on PATH") from exc


def resolve_key(repo: Repo, key: str, principal: str) -> SignerKey:
    """Return the policy entry of `key`: an SSH public key (a line or a .pub file), an
    exported OpenPGP public key (an armored file, as `gpg --armor --export` writes it) or
    an OpenPGP key of the keyring govsnap signs with (fingerprint, key ID or e-mail)."""
    path = Path(key).expanduser()
    text = key
    if not key.startswith(("ssh-", "ecdsa-", "sk-")) and path.is_file():
        text = path.read_text(errors="replace").strip()
        if text.startswith(ARMORED_PUBLIC_KEY):
            return _exported_key(repo, key, text)
        if not text.startswith(("ssh-", "ecdsa-", "sk-")):
            raise UsageError(
                f"{key} is neither an SSH public key file (ssh-ed25519 AAAA...) nor an "
                "exported OpenPGP public key (gpg --armor --export FINGERPRINT)"
            )
    if text.startswith(("ssh-", "ecdsa-", "sk-")):
        fields = text.split()
        if len(fields) < 2:
            raise UsageError(f"{key!r} is not an SSH public key (ssh-ed25519 AAAA...)")
        ssh_key_fingerprint(text)  # raises for what is not a key
        return SignerKey(SignatureKind.SSH, f"{principal} {fields[0]} {fields[1]}")
    listed = _gpg(repo, "--with-colons", "--list-keys", key)
    primaries = primary_fingerprints(listed.stdout.decode(errors="replace"))
    if listed.returncode != 0 or not primaries:
        raise UsageError(
            f"no OpenPGP key {key!r} in the keyring govsnap signs with (gpg --list-keys), "
            "and it is not an SSH public key; pass the key's export instead (its owner runs "
            f"gpg --armor --export {key} > key.asc; then --key key.asc)"
        )
    if len(primaries) > 1:
        raise UsageError(f"{key!r} names {len(primaries)} OpenPGP keys: give a fingerprint")
    fingerprint = primaries[0]
    exported = _gpg(repo, "--armor", "--export", fingerprint)
    if exported.returncode != 0 or not exported.stdout:
        raise UsageError(f"cannot export the public key {fingerprint}")
    return SignerKey(SignatureKind.OPENPGP, fingerprint, exported.stdout.decode())


def _exported_key(repo: Repo, name: str, armored: str) -> SignerKey:
    """Return the entry of the one OpenPGP public key in an exported file, read through a
    temporary keyring: a key sent for the policy is never imported into the user's."""
    end = armored.rfind(ARMORED_END)
    if end < 0:
        raise UsageError(f"{name}: the armored public key has no {ARMORED_END} line")
    armored = armored[: end + len(ARMORED_END)]
    with tempfile.TemporaryDirectory(prefix="govsnap-key-") as home:
        listed = _gpg(
            repo,
            "--with-colons",
            "--import-options",
            "show-only",
            "--import",
            input_data=armored.encode(),
            home=home,
        )
        primaries = primary_fingerprints(listed.stdout.decode(errors="replace"))
    if listed.returncode != 0 or not primaries:
        raise UsageError(f"{name} holds no OpenPGP public key gpg can read")
    if len(primaries) > 1:
        raise UsageError(
            f"{name} holds {len(primaries)} OpenPGP keys: export one (gpg --armor --export "
            "FINGERPRINT)"
        )
    return SignerKey(SignatureKind.OPENPGP, primaries[0], armored + "\n")


def _policy_path(repo: Repo) -> Path:
    return repo.workdir / POLICY_PATH


def _committed_version(repo: Repo) -> int:
    """Return the version of the committed policy (0 when there is none)."""
    source, data = policy_blob(repo)
    return 0 if data is None else parse_policy(data, source).version


def _signer_table(
    key: SignerKey, environments: Sequence[str], operations: Sequence[str], description: str
) -> tomlkit.items.Table:
    table = tomlkit.table()
    if description:
        table.add("description", description)
    table.add(str(key.kind), key.identity)
    table.add("environments", list(environments))
    table.add("operations", list(operations))
    if key.public_key:
        table.add("public_key", tomlkit.string(key.public_key, literal=True, multiline=True))
    return table


def _names(kind: str, values: Sequence[str], allowed: Sequence[str] | None) -> list[str]:
    out = []
    for value in values:
        for item in re.split(r"[,\s]+", value.strip()):
            if not item:
                continue
            if allowed is not None and item != WILDCARD and item not in allowed:
                raise UsageError(f"unknown {kind} {item!r} (known: {', '.join(allowed)}, or '*')")
            if allowed is None and item != WILDCARD and "*" not in item:
                validate_name(kind, item)
            if item not in out:
                out.append(item)
    return out


def _write(
    repo: Repo, doc: tomlkit.TOMLDocument, created: bool, dry_run: bool, committed: int
) -> PolicyEdit:
    """Validate the edited document, raise its version past the committed one, write it."""
    version = doc.get("version", 1)
    if not isinstance(version, int) or version <= committed:
        doc["version"] = committed + 1
    text = tomlkit.dumps(doc)
    path = _policy_path(repo)
    policy = parse_policy(text.encode(), str(path))
    policy.verifier(repo).close()  # every public key is the key it claims to be
    if not dry_run:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return PolicyEdit(path, text, policy, created, dry_run)


def _load(repo: Repo) -> tuple[tomlkit.TOMLDocument, bool]:
    """Return the working-tree policy to edit (a new one if there is none), and whether
    it is new."""
    path = _policy_path(repo)
    if not path.is_file():
        doc = tomlkit.parse(HEADER)
        doc.add("version", 1)
        doc.add(tomlkit.nl())
        return doc, True
    try:
        return tomlkit.parse(path.read_text()), False
    except (tomlkit.exceptions.ParseError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: cannot edit it: {exc}") from exc


def add_signer(
    repo: Repo,
    name: str,
    key: str,
    *,
    environments: Sequence[str] = (WILDCARD,),
    operations: Sequence[str] = DEFAULT_ADD_OPERATIONS,
    description: str = "",
    principal: str | None = None,
    dry_run: bool = False,
) -> PolicyEdit:
    """Add signer `name` holding `key` (with its public key) to the working-tree policy,
    creating the file if needed; refuse a name or key already listed."""
    doc, created = _load(repo)
    signers = doc.get("signers")
    if signers is None:
        signers = tomlkit.table(is_super_table=True)
        doc.add("signers", signers)
    if name in signers:
        raise UsageError(f"signer {name!r} is already in {POLICY_PATH}: remove it first")
    resolved = resolve_key(repo, key, principal or name)
    envs = _names("environment", environments, None) or [WILDCARD]
    ops = _names("operation", operations, OPERATIONS) or list(DEFAULT_ADD_OPERATIONS)
    signers.add(name, _signer_table(resolved, envs, ops, description))
    return _write(repo, doc, created, dry_run, _committed_version(repo))


def remove_signer(repo: Repo, name: str, *, dry_run: bool = False) -> PolicyEdit:
    """Remove signer `name` from the working-tree policy."""
    doc, created = _load(repo)
    signers = doc.get("signers")
    if created or signers is None or name not in signers:
        raise UsageError(f"there is no signer {name!r} in {POLICY_PATH}")
    del signers[name]
    return _write(repo, doc, False, dry_run, _committed_version(repo))


def own_key(repo: Repo) -> str:
    """Return the key this clone signs with as the policy names it: an SSH public key
    line, or an OpenPGP fingerprint (the one a signature by it reports)."""
    signer = signer_for(repo)
    if signer is None:
        raise SigningError("no signing key is configured: pass --key, or run govsnap init")
    if isinstance(signer, SSHSigner):
        return signer.public_key()
    return signer.sign(b"govsnap trust init\n").signer


def init_policy(
    repo: Repo,
    name: str,
    key: str | None,
    *,
    environments: Sequence[str] = (WILDCARD,),
    operations: Sequence[str] = (WILDCARD,),
    dry_run: bool = False,
) -> PolicyEdit:
    """Write a new policy naming one signer (who may do `operations`, changing the policy
    included by default), and its approval; refuse when a policy file exists. `key`
    None: the key this clone signs with."""
    path = _policy_path(repo)
    if path.exists() or policy_blob(repo)[1] is not None:
        raise UsageError(
            f"{POLICY_PATH} exists already: edit it with `govsnap trust add-signer` and "
            "`govsnap trust remove-signer`"
        )
    edit = add_signer(
        repo,
        name,
        own_key(repo) if key is None else key,
        environments=environments,
        operations=operations,
        description="added by govsnap init",
        dry_run=dry_run,
    )
    if dry_run:
        return edit
    return approve(repo)


def approve(repo: Repo, *, ref: str | None = None, dry_run: bool = False) -> PolicyEdit:
    """Sign an approval of the working-tree policy with this clone's signing key and write
    it to .govsnap/approvals/ (one file per key, replacing its earlier approval), counted
    once committed with the change.

    The approval is a statement (approval.py) binding the file's bytes to the policy ref
    (`ref`, default govsnap.trustRef) and to the commit that introduced the version HEAD
    carries, which the change replaces (when HEAD already carries these bytes: the
    version before them, so that an amended commit counts; a first version is bound to
    the commit it is introduced on), so it counts for this change only."""
    path = _policy_path(repo)
    if not path.is_file():
        raise UsageError(f"there is no {POLICY_PATH} to approve")
    data = path.read_bytes()
    policy = parse_policy(data, str(path))
    signer = signer_for(repo)
    if signer is None:
        raise SigningError("no signing key is configured (govsnap.signingKey or user.signingKey)")
    previous, base = _approved_change(repo, data)
    statement = ApprovalStatement(
        ref or policy_ref(repo),
        policy_digest(data),
        previous,
        base,
        repo.committer().time,
    ).to_bytes()
    signature = signer.sign(statement)
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", signature.signer)
    target = repo.workdir / APPROVALS_DIR / f"{signature.kind}-{safe}.sig"
    if not dry_run:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(ApprovalFile(statement, signature.block).to_bytes())
    return PolicyEdit(path, data.decode(), policy, False, dry_run, target)


def _approved_change(repo: Repo, data: bytes) -> tuple[str | None, str | None]:
    """Return (previous, base) of the change an approval of `data` approves: the commit
    that introduced the version it replaces, or (None, the commit a first version is
    introduced on; None when there is no commit yet)."""
    if repo.git.head_is_unborn:
        return None, None
    head = repo.git.head.peel(pygit2.Commit)
    blob = policy_blob_of(repo, head)
    if blob is None:
        return None, str(head.id)
    change = head
    if blob == data:
        # The change is committed already (the approval will be amended into it): it is
        # the commit that introduced these bytes, replacing the version of its parent.
        change = introduced_at(repo, head)
        parent = next(
            (p for p in parents_of(repo, change) if policy_blob_of(repo, p) is not None), None
        )
        if parent is None:
            return None, str(change.parent_ids[0]) if change.parent_ids else None
        change = parent
    return str(introduced_at(repo, change).id), None
