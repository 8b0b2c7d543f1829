"""Signing snapshot payloads as `git tag -s` does: OpenPGP through python-gnupg, SSH
through `ssh-keygen -Y sign -n git`."""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from govsnap.errors import SigningError, UsageError
from govsnap.repo import Repo

if TYPE_CHECKING:
    import gnupg


@dataclass(frozen=True)
class Signature:
    """A detached signature block and who made it."""

    block: bytes
    kind: str  # "openpgp" or "ssh"
    signer: str  # OpenPGP fingerprint, or SSH key fingerprint "SHA256:..."


class Signer(Protocol):
    """Something that produces a detached signature over a payload."""

    kind: str

    def sign(self, payload: bytes) -> Signature:
        """Return the signature block to append to `payload`."""
        ...


def open_gpg(program: str = "gpg", home: str | None = None) -> gnupg.GPG:
    """Return a python-gnupg handle; raise SigningError if gpg cannot run."""
    import gnupg

    if shutil.which(program) is None:
        raise SigningError(f"{program} is not installed or not on PATH (apt-get install gnupg)")
    try:
        return gnupg.GPG(gpgbinary=program, gnupghome=home)
    except (OSError, ValueError) as exc:
        raise SigningError(f"cannot run {program}: {exc}") from exc


@dataclass
class OpenPGPSigner:
    """Signs with a key from an OpenPGP keyring."""

    key: str
    program: str = "gpg"
    home: str | None = None
    kind: str = "openpgp"

    def sign(self, payload: bytes) -> Signature:
        """Return an armoured detached signature made with `key`."""
        gpg = open_gpg(self.program, self.home)
        # python-gnupg passes the key as --default-key, which gpg silently replaces with
        # another secret key when it has none for it; --local-user makes that an error.
        result = gpg.sign(
            payload,
            keyid=self.key,
            detach=True,
            clearsign=False,
            extra_args=["--local-user", self.key],
        )
        if not result.data or not result.fingerprint:
            reason = result.status or "no signature produced"
            if "No secret key" in (result.stderr or "") or reason in {"invalid signer", None}:
                reason = "no secret key for it in the keyring"
            raise SigningError(f"gpg could not sign with key {self.key}: {reason}")
        return Signature(bytes(result.data), self.kind, str(result.fingerprint))


def ssh_key_fingerprint(public_key: str) -> str:
    """Return OpenSSH's `SHA256:...` fingerprint of a public key line."""
    fields = public_key.split()
    for i, value in enumerate(fields):
        if value.startswith(("ssh-", "ecdsa-", "sk-")) and i + 1 < len(fields):
            try:
                blob = base64.b64decode(fields[i + 1], validate=True)
            except ValueError:
                break
            return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    raise UsageError(f"not an SSH public key: {public_key[:40]!r}")


@dataclass
class SSHSigner:
    """Signs with `ssh-keygen -Y sign -n git`, as git does for gpg.format=ssh."""

    key: str
    program: str = "ssh-keygen"
    kind: str = "ssh"

    def _key_material(self) -> tuple[list[str], str]:
        """Return the ssh-keygen arguments naming the key, and its public key line."""
        if self.key.startswith("key::") or self.key.startswith("ssh-"):
            public = self.key.removeprefix("key::")
            with tempfile.NamedTemporaryFile("w", suffix=".pub", delete=False) as fh:
                fh.write(public + "\n")
            return ["-U", "-f", fh.name], public
        path = Path(self.key).expanduser()
        private = path.with_suffix("") if path.suffix == ".pub" else path
        public_path = private.with_name(private.name + ".pub")
        if not private.is_file():
            raise SigningError(f"SSH signing key {path} does not exist")
        public = public_path.read_text().strip() if public_path.is_file() else ""
        if not public:
            out = self._run(["-y", "-f", str(private)], b"")
            public = out.decode().strip()
        return ["-f", str(private)], public

    def _run(self, args: list[str], data: bytes) -> bytes:
        if shutil.which(self.program) is None:
            raise SigningError(f"{self.program} is not installed (apt-get install openssh-client)")
        proc = subprocess.run([self.program, *args], input=data, capture_output=True, check=False)
        if proc.returncode != 0:
            detail = proc.stderr.decode(errors="replace").strip().splitlines()
            raise SigningError(
                f"{self.program} failed: {detail[-1] if detail else proc.returncode}"
            )
        return proc.stdout

    def sign(self, payload: bytes) -> Signature:
        """Return an SSH signature in the `git` namespace."""
        key_args, public = self._key_material()
        block = self._run(["-Y", "sign", "-n", "git", *key_args], payload)
        return Signature(block, self.kind, ssh_key_fingerprint(public))


def signer_for(repo: Repo) -> Signer | None:
    """Return the signer git config asks for, or None when no signing key is configured."""
    key = repo.config_str("govsnap.signingKey") or repo.config_str("user.signingKey")
    fmt = (repo.config_str("gpg.format") or "openpgp").lower()
    if not key:
        return None
    if fmt == "openpgp":
        program = repo.config_str("gpg.openpgp.program") or repo.config_str("gpg.program") or "gpg"
        return OpenPGPSigner(key, program, repo.config_str("govsnap.gpgHome"))
    if fmt == "ssh":
        return SSHSigner(key, repo.config_str("gpg.ssh.program") or "ssh-keygen")
    if fmt == "x509":
        raise SigningError("gpg.format=x509 signing is not supported yet; use openpgp or ssh")
    raise UsageError(f"gpg.format={fmt} is not a format git knows (openpgp, ssh, x509)")


def generate_openpgp_key(name: str, email: str, home: str | None, program: str = "gpg") -> str:
    """Create a passphrase-less Ed25519 signing key and return its fingerprint."""
    gpg = open_gpg(program, home)
    params = gpg.gen_key_input(
        key_type="EDDSA",
        key_curve="ed25519",
        key_usage="sign",
        name_real=name,
        name_comment="govsnap signing key",
        name_email=email,
        expire_date=0,
        no_protection=True,
    )
    key = gpg.gen_key(params)
    if not key.fingerprint:
        raise SigningError(f"gpg could not generate a key: {key.status or key.stderr}")
    return str(key.fingerprint)
