"""Signing snapshot payloads as `git tag -s` does: OpenPGP through python-gnupg, SSH
through `ssh-keygen -Y sign -n git`."""

from __future__ import annotations

import base64
import calendar
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from govsnap import openpgp
from govsnap.errors import SigningError, UsageError
from govsnap.objects import SignatureKind, SignedTag
from govsnap.repo import Repo

if TYPE_CHECKING:
    import gnupg


@dataclass(frozen=True)
class Signature:
    """A detached signature block and who made it."""

    block: bytes
    kind: SignatureKind
    signer: str  # OpenPGP fingerprint, or SSH key fingerprint "SHA256:..."


class Signer(Protocol):
    """Something that produces a detached signature over a payload."""

    kind: SignatureKind

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
    kind: SignatureKind = SignatureKind.OPENPGP

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
    kind: SignatureKind = SignatureKind.SSH

    def _key_material(self, scratch: Path) -> tuple[list[str], str]:
        """Return the ssh-keygen arguments naming the key, and its public key line."""
        if self.key.startswith("key::") or self.key.startswith("ssh-"):
            # A literal public key: the private half is in ssh-agent, as git does it.
            public = self.key.removeprefix("key::")
            literal = scratch / "key.pub"
            literal.write_text(public + "\n")
            return ["-U", "-f", str(literal)], public
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

    def public_key(self) -> str:
        """Return the public key line of the key this signer signs with."""
        with tempfile.TemporaryDirectory(prefix="govsnap-ssh-") as scratch:
            return self._key_material(Path(scratch))[1]

    def sign(self, payload: bytes) -> Signature:
        """Return an SSH signature in the `git` namespace."""
        with tempfile.TemporaryDirectory(prefix="govsnap-ssh-") as scratch:
            key_args, public = self._key_material(Path(scratch))
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


# --- verification ------------------------------------------------------------------------
# Signatures are judged the way `git verify-tag` judges them (gpg-interface.c): the same
# programs, the same allowed-signers file, gpg's status lines rather than its exit code.
# One deliberate difference, required by the trust model: an OpenPGP signature made
# before its key expired stays valid (git reports EXPKEYSIG as bad); one made after the
# key expired is not.

SIGNATURE_TOOLS = {
    SignatureKind.OPENPGP: "gpg",
    SignatureKind.X509: "gpgsm",
    SignatureKind.SSH: "ssh-keygen",
}
# gpg.minTrustLevel values in git's order (gpg-interface.c, enum signature_trust_level).
_TRUST_LEVELS = ("undefined", "never", "marginal", "fully", "ultimate")
_RESULT_KEYWORDS = frozenset({"GOODSIG", "BADSIG", "ERRSIG", "EXPSIG", "EXPKEYSIG", "REVKEYSIG"})


@dataclass(frozen=True)
class SignatureCheck:
    """The verdict on one signature: valid or not, its kind, who signed, and why."""

    valid: bool
    kind: SignatureKind
    signer: str | None  # OpenPGP primary-key / X.509 fingerprint, or SSH "SHA256:..."
    reason: str
    # When the signature says it was made (OpenPGP, X.509); SSH signatures carry no time.
    signed_at: int | None = None
    # The key that made a signature nobody could check for want of its public key: not a
    # bad signature, a missing key (the trust policy should carry it).
    unknown_key: str | None = None
    # When the key expired, for a signature made before it did (gpg's EXPKEYSIG): valid
    # as a record, but only its signer's clock says it was made in time.
    expired_at: int | None = None


def _utc(epoch: int) -> str:
    try:
        return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(epoch))
    except (OverflowError, OSError, ValueError):
        return f"@{epoch}"


def _stamp(text: str) -> int | None:
    """Return an epoch from gpg's seconds or gpgsm's `20261124T132718` form."""
    if text.isdigit():
        return int(text)
    try:
        return calendar.timegm(time.strptime(text, "%Y%m%dT%H%M%S"))
    except ValueError:
        return None


def interpret_gpg_status(
    lines: list[str], kind: SignatureKind, min_trust: str = "undefined"
) -> SignatureCheck:
    """Return the verdict on one signature from gpg's or gpgsm's `[GNUPG:]` status lines."""
    results: list[tuple[str, list[str]]] = []
    validsig: list[str] = []
    expiries: list[int] = []
    trust = "undefined"
    for line in lines:
        if not line.startswith("[GNUPG:] "):
            continue
        keyword, _, rest = line[9:].strip().partition(" ")
        args = rest.split()
        if keyword in _RESULT_KEYWORDS:
            results.append((keyword, args))
        elif keyword == "VALIDSIG":
            validsig = args
        elif keyword == "KEYEXPIRED" and args:
            stamp = _stamp(args[0])
            if stamp is not None:
                expiries.append(stamp)
        elif keyword.startswith("TRUST_"):
            trust = keyword[6:].lower()
    if not results:
        return SignatureCheck(False, kind, None, f"{SIGNATURE_TOOLS[kind]} found no signature")
    if len(results) > 1:
        return SignatureCheck(
            False, kind, None, f"the signature block holds {len(results)} signatures, not one"
        )
    keyword, args = results[0]
    key = args[0] if args else "?"
    signer = None
    if len(validsig) > 9:
        signer = validsig[9]
    elif validsig:
        signer = validsig[0]
    signed_at = _stamp(validsig[2]) if len(validsig) > 2 else None
    if keyword == "BADSIG":
        return SignatureCheck(
            False, kind, None, f"BAD signature from key {key}: the payload changed after signing"
        )
    if keyword == "ERRSIG":
        code = args[5] if len(args) > 5 else ""
        missing = args[6] if len(args) > 6 else key
        if code == "9":
            return SignatureCheck(
                False,
                kind,
                None,
                f"cannot check: no public key {missing} in the keyring",
                unknown_key=missing,
            )
        return SignatureCheck(False, kind, None, f"cannot check the signature of key {key}")
    if not validsig or signer is None:
        return SignatureCheck(False, kind, None, f"{keyword} without VALIDSIG details")
    if keyword == "REVKEYSIG":
        return SignatureCheck(False, kind, signer, f"key {signer} has been revoked")
    if keyword == "EXPSIG":
        return SignatureCheck(False, kind, signer, f"the signature by {signer} has expired")
    reason = f"good {kind} signature by {signer}"
    if keyword == "EXPKEYSIG":
        expired = min(expiries) if expiries else None
        if expired is None or signed_at is None:
            return SignatureCheck(False, kind, signer, f"key {signer} has expired")
        if signed_at >= expired:
            return SignatureCheck(
                False,
                kind,
                signer,
                f"key {signer} had expired ({_utc(expired)}) when it signed ({_utc(signed_at)})",
            )
        reason += f", made before the key expired ({_utc(expired)})"
    wanted = min_trust.lower()
    levels = _TRUST_LEVELS
    if wanted in levels and trust in levels and levels.index(trust) < levels.index(wanted):
        return SignatureCheck(
            False, kind, signer, f"key {signer} has trust {trust}, below gpg.minTrustLevel"
        )
    expired_at = (min(expiries) if expiries else None) if keyword == "EXPKEYSIG" else None
    return SignatureCheck(True, kind, signer, reason, signed_at, expired_at=expired_at)


def payload_time(payload: bytes) -> int | None:
    """Return the tagger (or committer) time in an object's headers, as git does for SSH."""
    for line in payload.split(b"\n\n", 1)[0].split(b"\n"):
        if line.startswith((b"tagger ", b"committer ")):
            fields = line.rsplit(b" ", 2)
            if len(fields) == 3 and fields[1].isdigit():
                return int(fields[1])
    return None


@dataclass(frozen=True)
class KeySet:
    """The public keys a trust policy carries: with one, signatures are checked against
    these keys only (in a temporary keyring), never against the user's keyring or
    allowed-signers file, so that every clone, CI job and server judges alike."""

    source: str  # the policy, for messages ("add it to <source>")
    openpgp: tuple[tuple[str, str, str], ...] = ()  # (signer name, fingerprint, armored key)
    ssh_allowed: str = ""  # allowed-signers lines of the policy's SSH signers


def add_signer_hint(key: str) -> str:
    """Return the fix for a signature by `key` (an OpenPGP fingerprint or an SSH SHA256:
    fingerprint) that the trust policy does not carry: the command that adds it, and what
    a policy change needs besides."""
    where = "THEIR_KEY.pub" if key.startswith("SHA256:") else key
    return f"govsnap trust add-signer NAME --key {where}, then approve and commit the policy"


class KeyringError(UsageError):
    """A public key in the trust policy cannot be used as it is declared."""


class PolicyKeyring:
    """A temporary GnuPG home holding exactly a KeySet's OpenPGP keys; deleted with the
    object (or by close())."""

    def __init__(self, keys: KeySet, program: str) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="govsnap-keys-")
        self.home = self._dir.name
        blocks = [(name, fpr, armored) for name, fpr, armored in keys.openpgp if armored]
        if not blocks:
            return
        if shutil.which(program) is None:
            raise SigningError(f"{program} is not installed or not on PATH (apt-get install gnupg)")
        base = [program, "--homedir", self.home, "--batch", "--no-tty", "--no-autostart"]
        # One import and one listing for all of them (a policy may list many signers).
        data = "".join(armored for _, _, armored in blocks).encode()
        subprocess.run([*base, "--import"], input=data, capture_output=True, check=False)
        listed = subprocess.run(
            [*base, "--with-colons", "--list-keys"], capture_output=True, check=False
        )
        found = set(primary_fingerprints(listed.stdout.decode(errors="replace")))
        for name, fingerprint, _ in blocks:
            if fingerprint not in found:
                raise KeyringError(
                    f"{keys.source}: signers.{name}.public_key does not hold the declared key "
                    f"{fingerprint} (gpg --armor --export {fingerprint})"
                )
        extra = sorted(found - {fingerprint for _, fingerprint, _ in blocks})
        if extra:
            # A key nobody declares would verify signatures the policy does not name.
            raise KeyringError(
                f"{keys.source}: a public_key holds key {extra[0]}, which no signer declares"
            )

    def close(self) -> None:
        """Delete the temporary keyring."""
        self._dir.cleanup()


def primary_fingerprints(colons: str) -> list[str]:
    """Return the fingerprint of each primary key in `gpg --with-colons` output."""
    found: list[str] = []
    primary = False
    for line in colons.splitlines():
        kind = line.split(":", 1)[0]
        if kind in ("pub", "sec"):
            primary = True
        elif kind in ("sub", "ssb"):
            primary = False
        elif kind == "fpr" and primary:
            found.append(line.split(":")[9])
            primary = False
    return found


class SignatureVerifier:
    """Verifies detached signatures with the programs and files git config names, or,
    given a trust policy's KeySet, against that policy's keys only.

    Make one and reuse it for many signatures: `verify_many` checks every OpenPGP
    signature of a batch in a single gpg process.
    """

    def __init__(self, repo: Repo, keys: KeySet | None = None) -> None:
        self.repo = repo
        self.keys = keys
        self.gpg_program = (
            repo.config_str("gpg.openpgp.program") or repo.config_str("gpg.program") or "gpg"
        )
        self.gpg_home = repo.config_str("govsnap.gpgHome")
        # X.509 certificates do not travel in the policy yet: gpgsm uses the keybox of
        # whoever verifies, in both modes.
        self.x509_home = self.gpg_home
        self.x509_program = repo.config_str("gpg.x509.program") or "gpgsm"
        self.ssh_program = repo.config_str("gpg.ssh.program") or "ssh-keygen"
        # The policy decides whom to trust; gpg's own trust database does not.
        minimum = None if keys else repo.config_str("gpg.minTrustLevel")
        self.min_trust = minimum or "undefined"
        allowed = repo.config_str("gpg.ssh.allowedSignersFile")
        self.allowed_signers = self._path(allowed) if allowed and keys is None else None
        # A revocation file only ever makes a verdict stricter: honoured in both modes.
        revocation = repo.config_str("gpg.ssh.revocationFile")
        self.revocation_file = self._path(revocation) if revocation else None
        self._gpg: gnupg.GPG | None = None
        self._keyring: PolicyKeyring | None = None
        if keys is not None:
            self._keyring = PolicyKeyring(keys, self.gpg_program)
            self.gpg_home = self._keyring.home

    def close(self) -> None:
        """Delete the temporary keyring of a policy's keys, if there is one."""
        if self._keyring is not None:
            self._keyring.close()

    def _missing_key(self, key: str) -> str:
        """Return the message for a signature by a key this verifier does not have."""
        if self.keys is not None:
            return (
                f"cannot check: no public key for {key} in {self.keys.source} "
                f"(add it: {add_signer_hint(key)})"
            )
        return f"cannot check: no public key {key} in the keyring"

    def _path(self, value: str) -> Path:
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.repo.cwd / path

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.x509_home:
            env["GNUPGHOME"] = self.x509_home
        return env

    def verify(self, payload: bytes, signature: bytes, when: int | None = None) -> SignatureCheck:
        """Return the verdict on `signature` (an armoured block) over `payload`; an SSH
        key's validity window is judged at `when` (default: the payload's own time, which
        its signer wrote, as git does)."""
        kind = SignedTag(payload, signature).signature_kind
        if kind == SignatureKind.NONE:
            return SignatureCheck(False, kind, None, "unsigned: the tag carries no signature")
        if kind == SignatureKind.SSH:
            return self._verify_ssh(payload, signature, when)
        if kind == SignatureKind.X509:
            return self._verify_x509(payload, signature)
        return self._verify_openpgp(payload, signature)

    def at_arrival(
        self, payload: bytes, signature: bytes, check: SignatureCheck, now: int
    ) -> SignatureCheck:
        """Return `check`, failed when its key was not valid at `now`: when a server, whose
        clock is its own, received the signature. (On a clone, a key is judged at the time
        the signature claims, which its signer's clock sets.)"""
        if not check.valid:
            return check
        if check.expired_at is not None and check.expired_at <= now:
            return replace(
                check,
                valid=False,
                reason=f"key {check.signer} had expired ({_utc(check.expired_at)}) when this "
                f"server received the signature ({_utc(now)})",
            )
        if check.kind == "ssh":
            again = self.verify(payload, signature, now)
            if not again.valid:
                return replace(
                    again, reason=f"{again.reason} (judged at {_utc(now)}, when received)"
                )
        return check

    def verify_many(self, items: list[tuple[bytes, bytes]]) -> list[SignatureCheck]:
        """Return the verdicts on many (payload, signature) pairs, in order."""
        results: list[SignatureCheck | None] = [None] * len(items)
        batch: dict[int, bytes] = {}
        for index, (payload, signature) in enumerate(items):
            packet = openpgp.dearmor_signature(signature) if signature else None
            if packet is not None:
                batch[index] = packet + openpgp.literal_packet(str(index).encode(), payload)
        if len(batch) > 1:
            for index, check in self._verify_openpgp_batch(batch).items():
                results[index] = check
        return [
            check if check is not None else self.verify(*items[index])
            for index, check in enumerate(results)
        ]

    # --- OpenPGP -------------------------------------------------------------------------

    def _verify_openpgp(self, payload: bytes, signature: bytes) -> SignatureCheck:
        if self._gpg is None:
            self._gpg = open_gpg(self.gpg_program, self.gpg_home)
        with tempfile.NamedTemporaryFile(suffix=".sig") as fh:
            fh.write(signature)
            fh.flush()
            result = self._gpg.verify_data(fh.name, payload)
        check = interpret_gpg_status(
            str(result.stderr or "").splitlines(), SignatureKind.OPENPGP, self.min_trust
        )
        return self._explained(check)

    def _explained(self, check: SignatureCheck) -> SignatureCheck:
        """Return `check`, its missing-key message naming where keys come from."""
        if check.unknown_key is None:
            return check
        return replace(check, reason=self._missing_key(check.unknown_key))

    def _verify_openpgp_batch(self, messages: dict[int, bytes]) -> dict[int, SignatureCheck]:
        """Verify signed messages (signature packet + literal packet, the same bytes a
        detached check hashes) with one `gpg --verify-files`; return what gpg finished."""
        if shutil.which(self.gpg_program) is None:
            raise SigningError(f"{self.gpg_program} is not installed or not on PATH")
        args = [self.gpg_program, "--status-fd=1", "--batch", "--no-tty", "--verify-files"]
        if self.gpg_home:
            args[1:1] = ["--homedir", self.gpg_home]
        with tempfile.TemporaryDirectory(prefix="govsnap-verify-") as tmp:
            for index, message in messages.items():
                (Path(tmp) / str(index)).write_bytes(message)
            # File names go on stdin, so a batch of any size fits the command line.
            names = "".join(f"{tmp}/{index}\n" for index in messages).encode()
            proc = subprocess.run(args, input=names, capture_output=True, check=False)
        checks: dict[int, SignatureCheck] = {}
        current: int | None = None
        lines: list[str] = []
        for line in proc.stdout.decode(errors="replace").splitlines():
            if line.startswith("[GNUPG:] FILE_START "):
                name = line.rsplit("/", 1)[-1]
                current = int(name) if name.isdigit() and int(name) in messages else None
                lines = []
            elif line.startswith("[GNUPG:] FILE_DONE") and current is not None:
                check = interpret_gpg_status(lines, SignatureKind.OPENPGP, self.min_trust)
                checks[current] = self._explained(check)
                current = None
            else:
                lines.append(line)
        return checks

    # --- X.509 -----------------------------------------------------------------------------

    def _verify_x509(self, payload: bytes, signature: bytes) -> SignatureCheck:
        if shutil.which(self.x509_program) is None:
            raise SigningError(f"{self.x509_program} is not installed (apt-get install gpgsm)")
        with tempfile.NamedTemporaryFile(suffix=".sig") as fh:
            fh.write(signature)
            fh.flush()
            # The same command line git runs for gpg.format=x509.
            proc = subprocess.run(
                [self.x509_program, "--status-fd=1", "--verify", fh.name, "-"],
                input=payload,
                capture_output=True,
                env=self._env(),
                check=False,
            )
        lines = proc.stdout.decode(errors="replace").splitlines()
        return interpret_gpg_status(lines, SignatureKind.X509, self.min_trust)

    # --- SSH -------------------------------------------------------------------------------

    def _ssh(self, args: list[str], payload: bytes) -> subprocess.CompletedProcess[bytes]:
        if shutil.which(self.ssh_program) is None:
            raise SigningError(
                f"{self.ssh_program} is not installed (apt-get install openssh-client)"
            )
        return subprocess.run(
            [self.ssh_program, *args], input=payload, capture_output=True, check=False
        )

    def _verify_ssh(self, payload: bytes, signature: bytes, at: int | None) -> SignatureCheck:
        with tempfile.TemporaryDirectory(prefix="govsnap-ssh-") as tmp:
            allowed = self.allowed_signers
            if self.keys is not None:
                allowed = Path(tmp) / "allowed_signers"
                allowed.write_text(self.keys.ssh_allowed)
            if allowed is None:
                return SignatureCheck(
                    False,
                    SignatureKind.SSH,
                    None,
                    "gpg.ssh.allowedSignersFile is not set: cannot check SSH",
                )
            if not allowed.is_file():
                return SignatureCheck(
                    False,
                    SignatureKind.SSH,
                    None,
                    f"the allowed signers file {allowed} does not exist",
                )
            sig = Path(tmp) / "payload.sig"
            sig.write_bytes(signature)
            when = at if at is not None else payload_time(payload)
            # Like git: the signing time checks the key's valid-after/valid-before window.
            timing = []
            if when is not None:
                try:
                    stamp = time.strftime("%Y%m%d%H%M%S", time.localtime(when))
                except (ValueError, OverflowError, OSError):
                    stamp = "99991231235959"  # beyond what a date shows: the latest one
                timing = [f"-Overify-time={stamp}"]
            found = self._ssh(
                ["-Y", "find-principals", "-f", str(allowed), "-s", str(sig), *timing], b""
            )
            principals = found.stdout.decode(errors="replace").split()
            if found.returncode != 0 or not principals:
                return self._ssh_unknown(payload, sig, allowed, timing)
            failure = "SSH signature verification failed"
            for principal in principals:
                args = ["-Y", "verify", "-n", "git", "-f", str(allowed), "-I", principal]
                args += ["-s", str(sig), *timing]
                revocation = (
                    [] if self.revocation_file is None else ["-r", str(self.revocation_file)]
                )
                proc = self._ssh([*args, *revocation], payload)
                out = proc.stdout.decode(errors="replace")
                key = re.search(r"key (SHA256:\S+)", out)
                if proc.returncode == 0 and out.startswith("Good") and key:
                    return SignatureCheck(
                        True,
                        SignatureKind.SSH,
                        key.group(1),
                        f"good ssh signature by {key.group(1)} ({principal})",
                    )
                # ssh-keygen says only "Could not verify signature." for a revoked key:
                # if the same check passes without the revocation file, that is why.
                if revocation and self._ssh(args, payload).returncode == 0:
                    fingerprint = self._ssh_fingerprint(payload, sig, timing)
                    return SignatureCheck(
                        False,
                        SignatureKind.SSH,
                        fingerprint,
                        f"SSH key {fingerprint} is revoked ({self.revocation_file})",
                    )
                failure = _last_line(proc.stderr + proc.stdout) or failure
            fingerprint = self._ssh_fingerprint(payload, sig, timing)
            if fingerprint is None:
                return SignatureCheck(
                    False,
                    SignatureKind.SSH,
                    None,
                    "BAD SSH signature: the payload changed after signing",
                )
            return SignatureCheck(
                False, SignatureKind.SSH, fingerprint, f"{failure} (key {fingerprint})"
            )

    def _ssh_fingerprint(self, payload: bytes, sig: Path, timing: list[str]) -> str | None:
        """Return the key that made an SSH signature if it is cryptographically good."""
        proc = self._ssh(["-Y", "check-novalidate", "-n", "git", "-s", str(sig), *timing], payload)
        key = re.search(r"key (SHA256:\S+)", proc.stdout.decode(errors="replace"))
        return key.group(1) if proc.returncode == 0 and key else None

    def _ssh_unknown(
        self, payload: bytes, sig: Path, allowed: Path, timing: list[str]
    ) -> SignatureCheck:
        fingerprint = self._ssh_fingerprint(payload, sig, timing)
        if fingerprint is None:
            return SignatureCheck(
                False,
                SignatureKind.SSH,
                None,
                "BAD SSH signature: the payload changed after signing",
            )
        listed = any(
            _allowed_line_fingerprint(line) == fingerprint
            for line in allowed.read_text(errors="replace").splitlines()
        )
        if listed:
            where = self.keys.source if self.keys is not None else allowed
            return SignatureCheck(
                False,
                SignatureKind.SSH,
                fingerprint,
                f"SSH key {fingerprint} is not valid at the signing time "
                f"(valid-after/valid-before in {where})",
            )
        if self.keys is not None:
            return SignatureCheck(
                False,
                SignatureKind.SSH,
                fingerprint,
                self._missing_key(fingerprint),
                unknown_key=fingerprint,
            )
        return SignatureCheck(
            False,
            SignatureKind.SSH,
            fingerprint,
            f"SSH key {fingerprint} is not in the allowed signers file {allowed}",
            unknown_key=fingerprint,
        )


def _last_line(data: bytes) -> str:
    lines = data.decode(errors="replace").strip().splitlines()
    return lines[-1] if lines else ""


def _allowed_line_fingerprint(line: str) -> str | None:
    fields = line.split()
    for i, value in enumerate(fields[:-1]):
        if value.startswith(("ssh-", "ecdsa-", "sk-")):
            try:
                return ssh_key_fingerprint(f"{value} {fields[i + 1]}")
            except UsageError:
                continue
    return None


def verify_detached(repo: Repo, payload: bytes, signature: bytes) -> SignatureCheck:
    """Return the verdict on a detached signature block over `payload` (tags, signed
    commits), judged with the repository's git configuration."""
    return SignatureVerifier(repo).verify(payload, signature)


def verify_signature(repo: Repo, tag: SignedTag) -> SignatureCheck:
    """Return the verdict on a snapshot tag's signature, as `git verify-tag` judges it."""
    return verify_detached(repo, tag.payload, tag.signature)
