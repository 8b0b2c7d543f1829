"""Who an X.509 certificate names: its identities (e-mail and URI subject alternative
names, the subject's e-mail, the subject DN) and its issuer (for a Sigstore certificate,
the OIDC issuer Fulcio wrote into it; else the issuing CA's DN), read from the
certificates a CMS signature carries (gitsign always embeds Fulcio's) or from gpgsm's
keybox. The trust policy names X.509 signers by these (identity, issuer) pairs.
"""

from __future__ import annotations

import base64
import binascii
import os
import subprocess
import warnings
from dataclasses import dataclass

# Fulcio's certificate extensions for the OIDC issuer of the token it certified: the
# current one (a DER UTF8String) and the deprecated one (the raw string).
SIGSTORE_ISSUER_V2 = "1.3.6.1.4.1.57264.1.8"
SIGSTORE_ISSUER_V1 = "1.3.6.1.4.1.57264.1.1"
_ARMOR = (b"-----BEGIN SIGNED MESSAGE-----", b"-----BEGIN PKCS7-----")


def pair(identity: str, issuer: str) -> str:
    """Return how a signer named by (certificate identity, issuer) is shown and looked up:
    the trust policy's identity of it, and the signer verification reports."""
    return f"{identity} (issuer {issuer})"


@dataclass(frozen=True)
class Certificate:
    """A signing certificate: its SHA-1 fingerprint (as gpgsm names it), every identity
    it names, and its issuer."""

    fingerprint: str
    identities: tuple[str, ...]
    issuer: str

    def names(self, identity: str, issuer: str) -> bool:
        """Return True when the certificate names `identity` (e-mail addresses compared
        without regard to case) and was issued by `issuer`."""
        if issuer != self.issuer:
            return False
        wanted = identity.lower() if "@" in identity and "=" not in identity else identity
        return any(
            (name.lower() if "@" in name and "=" not in name else name) == wanted
            for name in self.identities
        )


def _der(block: bytes) -> bytes | None:
    """Return the DER bytes of an armoured (or already binary) CMS signature."""
    text = block.strip()
    if not text.startswith(_ARMOR):
        return text or None
    body = b"".join(line for line in text.splitlines()[1:] if not line.startswith(b"-----"))
    try:
        return base64.b64decode(body, validate=False)
    except (binascii.Error, ValueError):
        return None


def _utf8_string(value: bytes) -> str:
    """Return the text of a DER UTF8String, or the bytes as text if they are not one."""
    if len(value) >= 2 and value[0] == 0x0C:
        length, start = value[1], 2
        if length & 0x80:
            size = length & 0x7F
            length, start = int.from_bytes(value[2 : 2 + size], "big"), 2 + size
        return value[start : start + length].decode(errors="replace")
    return value.decode(errors="replace")


def embedded(block: bytes, fingerprint: str) -> Certificate | None:
    """Return the certificate with SHA-1 `fingerprint` that the CMS signature `block`
    carries, or None when it carries none (gpgsm leaves out a self-signed root)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.serialization import pkcs7
    from cryptography.x509.oid import NameOID

    der = _der(block)
    if der is None:
        return None
    try:
        with warnings.catch_warnings():
            # gpgsm writes BER (indefinite lengths), which cryptography reads with a warning.
            warnings.simplefilter("ignore", UserWarning)
            certificates = pkcs7.load_der_pkcs7_certificates(der)
    except ValueError:
        return None
    wanted = fingerprint.replace(":", "").upper()
    for cert in certificates:
        if cert.fingerprint(hashes.SHA1()).hex().upper() != wanted:
            continue
        names: list[str] = []
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            san = None
        if san is not None:
            names += san.get_values_for_type(x509.RFC822Name)
            names += san.get_values_for_type(x509.UniformResourceIdentifier)
        names += [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.EMAIL_ADDRESS)]
        names.append(cert.subject.rfc4514_string())
        issuer = cert.issuer.rfc4514_string()
        for oid, der_encoded in ((SIGSTORE_ISSUER_V2, True), (SIGSTORE_ISSUER_V1, False)):
            try:
                ext = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(oid)).value
            except x509.ExtensionNotFound:
                continue
            raw = getattr(ext, "value", b"")
            if isinstance(raw, bytes) and raw:
                issuer = _utf8_string(raw) if der_encoded else raw.decode(errors="replace")
                break
        return Certificate(wanted, tuple(dict.fromkeys(names)), issuer)
    return None


def in_keybox(program: str, home: str | None, fingerprint: str) -> Certificate | None:
    """Return the certificate `fingerprint` as gpgsm's keybox holds it (identities from
    its `uid` records, the issuer DN from its `crt` record), or None."""
    env = dict(os.environ)
    if home:
        env["GNUPGHOME"] = home
    proc = subprocess.run(
        [program, "--batch", "--with-colons", "--list-keys", fingerprint],
        capture_output=True,
        env=env,
        check=False,
    )
    if proc.returncode != 0:
        return None
    wanted = fingerprint.replace(":", "").upper()
    pending = ""
    issuer: str | None = None
    names: list[str] = []
    current = False
    for line in proc.stdout.decode(errors="replace").splitlines():
        fields = line.split(":")
        if len(fields) < 10:
            continue
        if fields[0] in ("crt", "crs"):
            if issuer is not None:
                break  # the next certificate: the one asked for is complete
            pending, current = fields[9], False
        elif fields[0] == "fpr" and issuer is None:
            current = fields[9].upper() == wanted
            issuer = pending if current else None
        elif fields[0] == "uid" and current and fields[9]:
            value = fields[9]
            names.append(value[1:-1] if value.startswith("<") and value.endswith(">") else value)
    if issuer is None or not names:
        return None
    return Certificate(wanted, tuple(dict.fromkeys(names)), issuer)
