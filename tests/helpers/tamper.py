"""Shared material for verification tests: OpenPGP keys that expired or were revoked
(made with real gpg and --faked-system-time), a template repository holding snapshots
signed by each, and stock-git helpers that tamper with snapshots the way an attacker
with write access to the repository could."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

from govsnap.repo import open_repo
from govsnap.store import CreateOptions, create
from tests.helpers import Keys, git, git_bytes, openpgp_signer, write_files

DAY = 86400


def gpg(*args: str, input_data: bytes | None = None) -> bytes:
    """Run the real gpg in the session's GNUPGHOME; fail the test if it fails."""
    proc = subprocess.run(
        ["gpg", "--batch", "--no-tty", *args], input=input_data, capture_output=True, check=False
    )
    if proc.returncode != 0:
        raise AssertionError(f"gpg {' '.join(args)} failed: {proc.stderr.decode()}")
    return proc.stdout


def fingerprint(email: str) -> str:
    """Return the primary fingerprint of the key with this email in the keyring."""
    out = gpg("--with-colons", "--list-keys", f"<{email}>").decode()
    return next(line.split(":")[9] for line in out.splitlines() if line.startswith("fpr:"))


def faked(when: int) -> list[str]:
    """Return gpg's option to act as if it were `when` (the "!" freezes the clock)."""
    return [f"--faked-system-time={when}!"]


def gpg_sign(payload: bytes, key: str, when: int | None = None) -> bytes:
    """Return an armoured detached signature by `key` over `payload`, as `git tag -s` makes."""
    timing = faked(when) if when is not None else []
    return gpg(*timing, "--local-user", key, "--armor", "--detach-sign", input_data=payload)


@dataclass(frozen=True)
class SpecialKeys:
    """Keys whose state changed after they signed."""

    t0: int  # when they were created (ten days ago)
    expired_after: str  # expired one day after creation; signed one hour after creation
    expired_before: str  # signed five days after creation, then given an expiry of one day
    revoked: str  # signed, then revoked


def make_special_keys(root: Path) -> tuple[SpecialKeys, dict[str, int]]:
    """Create the keys; return them and the faked signing time each must sign at."""
    t0 = int(time.time()) - 10 * DAY
    gen = ("--passphrase", "", "--quick-gen-key")
    gpg(*faked(t0), *gen, "Expires Later <expired-after@example.com>", "ed25519", "sign", "1d")
    gpg(*faked(t0), *gen, "Expired Early <expired-before@example.com>", "ed25519", "sign", "never")
    gpg(*gen, "Revoked Key <revoked@example.com>", "ed25519", "sign", "never")
    keys = SpecialKeys(
        t0,
        fingerprint("expired-after@example.com"),
        fingerprint("expired-before@example.com"),
        fingerprint("revoked@example.com"),
    )
    return keys, {keys.expired_after: t0 + 3600, keys.expired_before: t0 + 5 * DAY}


def finish_special_keys(keys: SpecialKeys) -> None:
    """After the keys signed: expire one before its signature, revoke another."""
    # A new self-signature dated t0+1h sets an expiry of t0+1h+1d: four days before the
    # signature it made at t0+5d.
    gpg(*faked(keys.t0 + 3600), "--quick-set-expire", keys.expired_before, "1d")
    home = Path(os.environ["GNUPGHOME"])
    certificate = (home / "openpgp-revocs.d" / f"{keys.revoked}.rev").read_text()
    # gpg stores the certificate with its armour line defused by a leading colon.
    gpg("--import", input_data=certificate.replace(":-----BEGIN", "-----BEGIN").encode())


def gpg_wrapper(root: Path, when: int) -> Path:
    """Return a gpg program that runs gpg at a faked time (for gpg.program)."""
    path = root / f"gpg-at-{when}"
    path.write_text(f'#!/bin/sh\nexec gpg --faked-system-time={when}! "$@"\n')
    path.chmod(0o755)
    return path


@dataclass(frozen=True)
class Template:
    """A repository with a committed trust policy and one snapshot per signing situation."""

    path: Path
    keys: SpecialKeys
    good: str  # signed by the trusted key, production, with a blob only it holds
    second: str  # signed by the trusted key, production, other content
    other: str  # signed by an unrelated key the policy does not list
    expired_after: str  # signed before its key expired
    expired_before: str  # signed after its key had expired
    revoked: str  # signed by a key revoked since
    unique_file: str  # path of the blob only `good` holds


def policy_text(entries: dict[str, tuple[str, list[str], list[str]]], version: int = 1) -> str:
    """Return a trust.toml naming OpenPGP keys of the session's keyring, with their public
    keys: name -> (fingerprint, envs, operations)."""
    parts = [f"version = {version}\n"]
    for name, (fpr, envs, ops) in entries.items():
        parts.append(openpgp_signer(name, fpr, envs, ops))
    return "".join(parts)


def commit_policy(
    repo: Path, text: str, message: str = "trust policy", sign_with: str | None = None
) -> None:
    """Commit `.govsnap/trust.toml` with `text` on the current branch, as the policy's
    rules want a change: the next version, in a commit signed with `sign_with` (default:
    the repository's govsnap.signingKey)."""
    committed = subprocess.run(
        ["git", "show", "HEAD:.govsnap/trust.toml"], cwd=repo, capture_output=True, check=False
    )
    if committed.returncode == 0:
        current = tomllib.loads(committed.stdout.decode()).get("version", 1)
        text = re.sub(r"^version = \d+", f"version = {current + 1}", text, count=1, flags=re.M)
    write_files(repo, {".govsnap/trust.toml": text})
    git(repo, "add", ".govsnap/trust.toml")
    key = sign_with or git(repo, "config", "--default", "", "govsnap.signingKey").strip()
    signing = ["-c", f"user.signingKey={key}", "commit", "-S"] if key else ["commit"]
    git(repo, *signing, "-q", "-m", message)


@functools.cache
def template(root: Path, keys: Keys) -> Template:
    """Build the template repository once per test process."""
    special, sign_times = make_special_keys(root)
    path = root / "verify-template"
    git(root, "init", "-q", "-b", "main", str(path))
    write_files(path, {"README.md": "hello\n", "src/app.py": "print('v1')\n"})
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "initial")
    repo = open_repo(path)

    def snapshot(key: str, message: str) -> str:
        repo.set_config("govsnap.signingKey", key)
        if key in sign_times:
            # Signed in the past, at the time the payload says (gpg and git agree).
            repo.set_config("gpg.program", str(gpg_wrapper(root, sign_times[key])))
            os.environ["GIT_COMMITTER_DATE"] = f"@{sign_times[key]}"
        elif repo.config_str("gpg.program"):
            git(path, "config", "--unset", "gpg.program")
        options = CreateOptions(environment="production", message=message)
        try:
            return create(repo, options).snapshot.id
        finally:
            os.environ.pop("GIT_COMMITTER_DATE", None)

    unique_file = "release/unique.bin"
    write_files(path, {unique_file: os.urandom(64)})
    good = snapshot(keys.trusted, "good")
    (path / unique_file).unlink()
    ids = {
        "second": snapshot(keys.trusted, "second"),
        "other": snapshot(keys.other, "other"),
        "expired_after": snapshot(special.expired_after, "expired after"),
        "expired_before": snapshot(special.expired_before, "expired before"),
        "revoked": snapshot(special.revoked, "revoked"),
    }
    repo.set_config("govsnap.signingKey", keys.trusted)
    finish_special_keys(special)
    everywhere = ["production", "staging"]
    ops = ["create", "rollback"]
    policy_ops = [*ops, "policy"]  # the releaser also approves changes of the policy
    commit_policy(
        path,
        policy_text(
            {
                "releaser": (keys.trusted, everywhere, policy_ops),
                "expires-later": (special.expired_after, everywhere, ops),
                "expired-early": (special.expired_before, everywhere, ops),
                "revoked": (special.revoked, everywhere, ops),
            }
        ),
    )
    return Template(path, special, good, unique_file=unique_file, **ids)


def copy_template(source: Template, dest: Path) -> Path:
    """Return a private copy of the template repository."""
    shutil.copytree(source.path, dest, symlinks=True)
    return dest


# --- tampering with stock git ----------------------------------------------------------


def snapshot_ref(ident: str) -> str:
    """Return the ref of a snapshot id."""
    return f"refs/govsnap/snapshots/{ident}"


def tag_oid(repo: Path, ident: str) -> str:
    """Return the tag object a snapshot ref points at."""
    return git(repo, "rev-parse", snapshot_ref(ident)).strip()


def split_tag(raw: bytes) -> tuple[bytes, bytes]:
    """Return (payload, signature block) of a raw tag, as git splits it."""
    for header in (
        b"-----BEGIN PGP SIGNATURE-----",
        b"-----BEGIN SSH SIGNATURE-----",
        b"-----BEGIN SIGNED MESSAGE-----",
    ):
        at = raw.rfind(b"\n" + header)
        if at >= 0:
            return raw[: at + 1], raw[at + 1 :]
    return raw, b""


def read_raw_tag(repo: Path, ident: str) -> bytes:
    """Return the raw content of a snapshot's tag."""
    return git_bytes(repo, "cat-file", "tag", snapshot_ref(ident))


def write_raw_tag(repo: Path, raw: bytes) -> str:
    """Write a tag object with stock git and return its oid."""
    return git(repo, "hash-object", "-t", "tag", "-w", "--stdin", input_text=raw).strip()


def read_note(repo: Path, obj: str) -> dict[str, object]:
    """Return the JSON note on an object."""
    return dict(json.loads(git(repo, "notes", "--ref=govsnap", "show", obj)))


def write_note(repo: Path, obj: str, data: dict[str, object]) -> None:
    """Replace the note on an object with stock git."""
    text = json.dumps(data, sort_keys=True, indent=2) + "\n"
    git(repo, "notes", "--ref=govsnap", "add", "-f", "-F", "-", obj, input_text=text)


def replace_snapshot(
    repo: Path, ident: str, raw: bytes, note_changes: dict[str, object] | None = None
) -> str:
    """Put a new tag in place of a snapshot the way a careful attacker would: ref renamed
    to the new payload's id, the note copied (with `note_changes`); return the new id."""
    old_tag = tag_oid(repo, ident)
    note = read_note(repo, old_tag)
    new_tag = write_raw_tag(repo, raw)
    payload, _ = split_tag(raw)
    new_id = hashlib.sha256(payload).hexdigest()[:16]
    note.update({"id": new_id, **(note_changes or {})})
    if new_id != ident:
        git(repo, "update-ref", "-d", snapshot_ref(ident))
    git(repo, "update-ref", snapshot_ref(new_id), new_tag)
    write_note(repo, new_tag, note)
    return new_id
