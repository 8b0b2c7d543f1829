"""Scenarios with several people: each clone signs with its own key from its own GnuPG
home, which holds that key only. Public keys reach other clones in the committed trust
policy, nowhere else: a member sends their exported public key to whoever keeps the
policy, who adds it (`govsnap trust add-signer`), approves the change and commits it
(`add_to_policy`)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.helpers import Cli, git, run_ok


def _gpg(home: Path | None, *args: str, input_data: bytes | None = None) -> bytes:
    """Run the real gpg in `home` (None: the session's GNUPGHOME); fail if it fails."""
    command = ["gpg", "--batch", "--no-tty"]
    if home is not None:
        command += ["--homedir", str(home)]
    proc = subprocess.run([*command, *args], input=input_data, capture_output=True, check=False)
    if proc.returncode != 0:
        raise AssertionError(f"gpg {' '.join(args)} failed: {proc.stderr.decode()}")
    return proc.stdout


@dataclass(frozen=True)
class Member:
    """One person (or bot) of a team: a name, a signing key and a GnuPG home that holds
    that key's secret part and whatever public keys reached it."""

    name: str
    fingerprint: str
    home: Path

    def env(self) -> dict[str, str]:
        """Return the environment in which stock git and gpg see this member's keyring."""
        return {**os.environ, "GNUPGHOME": str(self.home)}


def public_key(member: Member) -> bytes:
    """Return `member`'s armoured public key."""
    return _gpg(member.home, "--armor", "--export", member.fingerprint)


class Keyrings:
    """GnuPG homes under a short temporary directory (gpg-agent's socket path is limited
    to 108 bytes), one per member, each starting with that member's key only; `close`
    stops their agents and removes them."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="gk"))
        self.homes: list[Path] = []

    def _home(self) -> Path:
        home = self.root / str(len(self.homes))
        home.mkdir(mode=0o700)
        self.homes.append(home)
        return home

    def member(self, name: str, fingerprint: str) -> Member:
        """Return a member signing with `fingerprint` (a session key), in a new home that
        knows no other key."""
        home = self._home()
        secret = _gpg(None, "--armor", "--export-secret-keys", fingerprint)
        _gpg(home, "--import", input_data=secret)
        return Member(name, fingerprint, home)

    def generate(self, name: str, created: int | None = None, expire: str = "never") -> Member:
        """Return a member with a new key, known to no other keyring (nor the session's);
        made at the time `created` (gpg --faked-system-time), valid for `expire` ("2d")."""
        home = self._home()
        uid = f"{name} <{name}@example.com>"
        when = [] if created is None else [f"--faked-system-time={created}!"]
        _gpg(home, *when, "--passphrase", "", "--quick-gen-key", uid, "ed25519", "sign", expire)
        listing = _gpg(home, "--with-colons", "--list-keys", uid).decode()
        fingerprint = next(
            line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:")
        )
        return Member(name, fingerprint, home)

    def close(self) -> None:
        for home in self.homes:
            subprocess.run(
                ["gpgconf", "--homedir", str(home), "--kill", "all"],
                capture_output=True,
                check=False,
            )
        shutil.rmtree(self.root, ignore_errors=True)


@contextmanager
def keyrings() -> Iterator[Keyrings]:
    """Yield a Keyrings, closed afterwards."""
    rings = Keyrings()
    try:
        yield rings
    finally:
        rings.close()


def sign_as(clone: Path, member: Member) -> None:
    """Make `clone` sign, and verify, with `member`'s key and keyring only."""
    git(clone, "config", "govsnap.gpgHome", str(member.home))
    git(clone, "config", "govsnap.signingKey", member.fingerprint)
    git(clone, "config", "user.name", member.name)
    git(clone, "config", "user.email", f"{member.name}@example.com")


def make_key_available(clone: Path, member: Member, signer: Member) -> None:
    """Import `signer`'s public key into the keyring of `member` (who works in `clone`):
    what stock `git verify-tag` checks with. govsnap itself checks with the keys the
    trust policy carries, so this grants no trust to govsnap."""
    del clone  # the keyring is the member's, wherever they work
    _gpg(member.home, "--import", input_data=public_key(signer))


def export_public_key(member: Member, directory: Path) -> Path:
    """Write `member`'s armoured public key to `directory`/<name>.asc: what they send to
    whoever keeps the trust policy (nobody imports it)."""
    path = directory / f"{member.name}.asc"
    path.write_bytes(public_key(member))
    return path


def add_to_policy(cli: Cli, keeper: Path, signer: Member, *options: str, push: bool = True) -> None:
    """In `keeper`, a clone whose member may change the trust policy: add `signer` from
    the public key they sent, with `options` (-e/-o), approve the change with the
    keeper's key, commit it, and push it (unless told not to)."""
    key = export_public_key(signer, keeper.parent)
    run_ok(cli, keeper, "trust", "add-signer", signer.name, "--key", str(key), *options)
    run_ok(cli, keeper, "trust", "approve")
    git(keeper, "add", ".govsnap")
    git(keeper, "commit", "-q", "-m", f"trust policy: add {signer.name}")
    if push:
        git(keeper, "push", "-q", "origin", "HEAD")


def pin_trust(clone: Path, anchor: Member) -> None:
    """Pin the root of trust in `clone` as governance.md asks of every clone: the policy
    ref in full, and the key that approved the policy's first version."""
    git(clone, "config", "govsnap.trustRef", "refs/heads/main")
    git(clone, "config", "govsnap.trustAnchor", anchor.fingerprint)
