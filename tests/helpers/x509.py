"""Throwaway X.509 signing certificates made by gpgsm itself, each in a GnuPG home of its
own that trusts it as a root (there is no CRL to fetch)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

X509_DN = "CN=Release Signer,O=govsnap test"
X509_EMAIL = "x509@example.com"


def gpgsm(home: Path, *args: str, data: bytes | None = None) -> bytes:
    """Run gpgsm in GnuPG home `home`; fail the test if it fails; return its stdout."""
    return subprocess.run(
        ["gpgsm", "--batch", *args],
        input=data,
        env={**os.environ, "GNUPGHOME": str(home)},
        capture_output=True,
        check=True,
    ).stdout


def make_certificate(
    home: Path, dn: str, email: str, *, embed: bool = False, extra: str = ""
) -> str:
    """Create a self-signed signing certificate for `dn` and `email` in a new GnuPG home
    `home`, trusted there as a root; return its fingerprint. With `embed`, signatures
    made there carry the certificate (gpgsm leaves a root out by default); `extra` adds
    lines to gpgsm's key parameters (Name-URI, Extension)."""
    home.mkdir(mode=0o700)
    params = home / "params"
    params.write_text(
        "Key-Type: RSA\nKey-Length: 2048\nKey-Usage: sign\n"
        f"Name-DN: {dn}\nName-Email: {email}\nSerial: random\n"
        "Not-Before: 2020-01-01\nNot-After: 2040-01-01\n" + extra
    )
    cert = gpgsm(home, "--pinentry-mode", "loopback", "--passphrase", "", "--gen-key", str(params))
    gpgsm(home, "--import", data=cert)
    listing = gpgsm(home, "--with-colons", "--list-keys").decode()
    fpr = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))
    (home / "trustlist.txt").write_text(f"{fpr} S relax\n")
    (home / "gpgsm.conf").write_text(
        "disable-crl-checks\n" + ("include-certs 1\n" if embed else "")
    )
    subprocess.run(["gpgconf", "--homedir", str(home), "--reload", "gpg-agent"], check=False)
    return fpr
