"""Signature verification (signing.verify_signature / verify_detached / SignatureVerifier)
judged against `git verify-tag` on the same tags: OpenPGP good, bad, unsigned, untrusted,
expired and revoked; SSH good, unknown, revoked and outside its validity window; X.509
through gpgsm when it is installed."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from govsnap.objects import SignedTag
from govsnap.repo import Repo, open_repo
from govsnap.signing import (
    SignatureCheck,
    SignatureVerifier,
    interpret_gpg_status,
    verify_detached,
    verify_signature,
)
from tests.helpers import Cli, Keys, MakeRepo, SSHKey, git, git_bytes
from tests.helpers.tamper import (
    Template,
    copy_template,
    read_raw_tag,
    replace_snapshot,
    snapshot_ref,
    split_tag,
    template,
)


@pytest.fixture(scope="session")
def tpl(isolated_env: Path, keys: Keys) -> Template:
    """The template repository of verify_test, built once per process."""
    return template(isolated_env, keys)


def git_says_valid(repo: Path, ref: str) -> bool:
    """Return stock git's verdict on a tag's signature."""
    proc = subprocess.run(["git", "verify-tag", ref], cwd=repo, capture_output=True, check=False)
    return proc.returncode == 0


def govsnap_check(repo: Path, ref: str) -> SignatureCheck:
    raw = git_bytes(repo, "cat-file", "tag", ref)
    return verify_signature(open_repo(repo), SignedTag.split(raw))


def test_openpgp_verdicts_agree_with_git_verify_tag(
    tpl: Template, tmp_path: Path, keys: Keys
) -> None:
    work = copy_template(tpl, tmp_path / "work")
    payload, signature = split_tag(read_raw_tag(work, tpl.second))
    edited = payload.replace(b"Govsnap-Trigger: manual", b"Govsnap-Trigger: forged")
    bad = replace_snapshot(work, tpl.second, edited + signature)
    unsigned_payload, _ = split_tag(read_raw_tag(work, tpl.good))
    replace_snapshot(work, tpl.good, unsigned_payload)
    cases = {
        "good": (tpl.other, True),  # a good signature; trust is another check
        "payload changed": (bad, False),
        "unsigned": (tpl.good, False),
        "expired before signing": (tpl.expired_before, False),
        "revoked": (tpl.revoked, False),
    }
    for name, (ident, expected) in cases.items():
        ref = snapshot_ref(ident)
        assert git_says_valid(work, ref) is expected, name
        check = govsnap_check(work, ref)
        assert check.valid is expected, (name, check)
        assert check.kind == ("none" if name == "unsigned" else "openpgp")
    assert govsnap_check(work, snapshot_ref(tpl.other)).signer == keys.other


def test_the_one_deliberate_difference_from_git_an_expired_key_that_signed_in_time(
    tpl: Template,
) -> None:
    ref = snapshot_ref(tpl.expired_after)
    # git rejects every signature of a key that has expired since (EXPKEYSIG); the trust
    # model keeps a signature made while the key was valid.
    assert not git_says_valid(tpl.path, ref)
    check = govsnap_check(tpl.path, ref)
    assert check.valid and check.signer == tpl.keys.expired_after


def test_batched_and_single_verification_agree(tpl: Template, tmp_path: Path) -> None:
    work = copy_template(tpl, tmp_path / "work")
    payload, signature = split_tag(read_raw_tag(work, tpl.second))
    items = [
        split_tag(read_raw_tag(work, ident))
        for ident in (
            tpl.good,
            tpl.second,
            tpl.other,
            tpl.expired_after,
            tpl.expired_before,
            tpl.revoked,
        )
    ]
    items.append((payload + b"x", signature))  # bad
    items.append((payload, b""))  # unsigned
    items.append((payload, signature.replace(b"\n=", b"\n=AAAA")))  # damaged armour
    verifier = SignatureVerifier(open_repo(work))
    batched = verifier.verify_many(items)
    single = [verifier.verify(p, s) for p, s in items]
    assert batched == single
    assert [c.valid for c in batched] == [True, True, True, True, False, False, False, False, False]


def test_no_public_key(make_repo: MakeRepo, tmp_path: Path, keys: Keys) -> None:
    repo = make_repo()
    empty_home = tmp_path / "empty-gnupg"
    empty_home.mkdir(mode=0o700)
    git(repo, "config", "govsnap.gpgHome", str(empty_home))
    payload = b"object " + b"0" * 40 + b"\ntype commit\ntag x\ntagger A <a@b> 1 +0000\n\nx\n"
    from tests.helpers.tamper import gpg_sign

    check = verify_detached(open_repo(repo), payload, gpg_sign(payload, keys.trusted))
    subprocess.run(["gpgconf", "--homedir", str(empty_home), "--kill", "all"], check=False)
    assert not check.valid
    assert check.reason == f"cannot check: no public key {keys.trusted} in the keyring"


def test_min_trust_level_is_honoured_like_git(tpl: Template, tmp_path: Path) -> None:
    work = copy_template(tpl, tmp_path / "work")
    ref = snapshot_ref(tpl.other)
    git(work, "config", "gpg.minTrustLevel", "ultimate")
    assert git_says_valid(work, ref) == govsnap_check(work, ref).valid


@pytest.mark.parametrize(
    ("lines", "valid", "reason"),
    [
        ([], False, "gpg found no signature"),
        (
            ["[GNUPG:] NEWSIG", "[GNUPG:] GOODSIG AB Someone", "[GNUPG:] GOODSIG CD Other"],
            False,
            "the signature block holds 2 signatures, not one",
        ),
        (["[GNUPG:] GOODSIG AB Someone"], False, "GOODSIG without VALIDSIG details"),
        (
            ["[GNUPG:] EXPSIG AB x", "[GNUPG:] VALIDSIG F 2026-01-01 100 200 4 0 22 8 00 P"],
            False,
            "the signature by P has expired",
        ),
        (
            ["[GNUPG:] ERRSIG AB 22 8 00 100 4"],
            False,
            "cannot check the signature of key AB",
        ),
    ],
)
def test_status_interpretation(lines: list[str], valid: bool, reason: str) -> None:
    check = interpret_gpg_status(lines, "openpgp")
    assert (check.valid, check.reason) == (valid, reason)


# --- SSH -----------------------------------------------------------------------------------


def _ssh_repo(make_repo: MakeRepo, ssh_key: SSHKey, cli: Cli) -> tuple[Path, str]:
    repo = make_repo()
    git(repo, "config", "gpg.format", "ssh")
    git(repo, "config", "--unset", "govsnap.signingKey")
    git(repo, "config", "user.signingKey", str(ssh_key.private))
    git(repo, "config", "gpg.ssh.allowedSignersFile", str(ssh_key.allowed_signers))
    result = cli(repo, "create", "--json")
    assert result.code == 0, result.err
    import json

    return repo, str(json.loads(result.out)["snapshot"]["id"])


def _fingerprint(public: Path) -> str:
    out = subprocess.run(
        ["ssh-keygen", "-l", "-E", "sha256", "-f", str(public)],
        capture_output=True,
        check=True,
        text=True,
    ).stdout
    return out.split()[1]


def test_ssh_verdicts_agree_with_git_verify_tag(
    make_repo: MakeRepo, ssh_key: SSHKey, cli: Cli, tmp_path: Path
) -> None:
    repo, ident = _ssh_repo(make_repo, ssh_key, cli)
    ref = snapshot_ref(ident)
    fingerprint = _fingerprint(ssh_key.public)
    assert git_says_valid(repo, ref)
    check = govsnap_check(repo, ref)
    assert check == SignatureCheck(
        True, "ssh", fingerprint, f"good ssh signature by {fingerprint} (releaser@example.com)"
    )

    # A key outside the allowed signers file.
    stranger = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    others = tmp_path / "others"
    others.write_text(f"ops@example.com {Path(str(stranger) + '.pub').read_text()}")
    git(repo, "config", "gpg.ssh.allowedSignersFile", str(others))
    assert not git_says_valid(repo, ref)
    check = govsnap_check(repo, ref)
    assert not check.valid
    assert check.reason == f"SSH key {fingerprint} is not in the allowed signers file {others}"

    # The key listed, but only valid before the snapshot was signed.
    window = tmp_path / "window"
    window.write_text(f'releaser@example.com valid-before="20000101" {ssh_key.public.read_text()}')
    git(repo, "config", "gpg.ssh.allowedSignersFile", str(window))
    assert not git_says_valid(repo, ref)
    check = govsnap_check(repo, ref)
    assert not check.valid and "is not valid at the signing time" in check.reason

    # Revoked through gpg.ssh.revocationFile.
    git(repo, "config", "gpg.ssh.allowedSignersFile", str(ssh_key.allowed_signers))
    revoked = tmp_path / "revoked"
    revoked.write_text(ssh_key.public.read_text())
    git(repo, "config", "gpg.ssh.revocationFile", str(revoked))
    assert not git_says_valid(repo, ref)
    check = govsnap_check(repo, ref)
    assert (check.valid, check.reason) == (
        False,
        f"SSH key {fingerprint} is revoked ({revoked})",
    )

    # Payload changed after signing.
    git(repo, "config", "--unset", "gpg.ssh.revocationFile")
    payload, signature = split_tag(read_raw_tag(repo, ident))
    check = verify_detached(open_repo(repo), payload + b"x", signature)
    assert (check.valid, check.reason) == (
        False,
        "BAD SSH signature: the payload changed after signing",
    )


def test_ssh_without_allowed_signers_uses_the_policy(
    make_repo: MakeRepo, ssh_key: SSHKey, cli: Cli
) -> None:
    repo, ident = _ssh_repo(make_repo, ssh_key, cli)
    git(repo, "config", "--unset", "gpg.ssh.allowedSignersFile")
    assert not git_says_valid(repo, snapshot_ref(ident))
    check = govsnap_check(repo, snapshot_ref(ident))
    assert check.reason == "gpg.ssh.allowedSignersFile is not set: cannot check SSH"
    policy = (
        "[signers.releaser]\n"
        f"ssh = 'releaser@example.com {ssh_key.public.read_text().strip()}'\n"
        'environments = ["*"]\noperations = ["create"]\n'
    )
    (repo / ".govsnap").mkdir()
    (repo / ".govsnap" / "trust.toml").write_text(policy)
    git(repo, "add", ".govsnap")
    git(repo, "commit", "-q", "-m", "policy")
    result = cli(repo, "verify", ident)
    assert result.code == 0, result.out


# --- X.509 ---------------------------------------------------------------------------------


def test_x509_verdicts_agree_with_git_verify_tag(
    make_repo: MakeRepo, x509_cert: str, isolated_env: Path
) -> None:
    repo = make_repo()
    home = isolated_env / "x"
    git(repo, "config", "govsnap.gpgHome", str(home))
    env = {**os.environ, "GNUPGHOME": str(home)}

    def stock_git(*args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(["git", *args], cwd=repo, env=env, capture_output=True, check=False)

    signed = stock_git(
        "-c", "gpg.format=x509", "-c", f"user.signingKey={x509_cert}", "tag", "-s", "-m", "x", "t"
    )
    assert signed.returncode == 0, signed.stderr
    raw = stock_git("cat-file", "tag", "t").stdout
    tag = SignedTag.split(raw)
    assert tag.signature_kind == "x509"
    ours = verify_signature(Repo(open_repo(repo).git), tag)
    assert stock_git("verify-tag", "t").returncode == 0
    assert ours.valid and ours.signer == x509_cert, ours
    bad = verify_detached(open_repo(repo), tag.payload + b"x", tag.signature)
    assert not bad.valid
