"""X.509 signing the way git does it: with gpg.format=x509, snapshots and audit entries
are signed through gpg.x509.program with git's own arguments and status protocol (the
same command line as `git tag -s`, recorded side by side), `git verify-tag` and `git
verify-commit` accept them, and the trust policy names X.509 signers by (certificate
identity, issuer) pairs, which govsnap checks itself: a certificate an impostor made
naming the same identity and issuer is refused. All offline with gpgsm and throwaway
self-signed certificates; Sigstore's Fulcio and Rekor are not exercised (gitsign is not
installed here)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from govsnap.objects import SignatureKind
from govsnap.signing import interpret_gpg_status
from govsnap.trust import PolicyError, parse_policy
from tests.helpers import Cli, MakeRepo, create_snapshot, git, run_ok, snapshot_ids
from tests.helpers.tamper import read_raw_tag, snapshot_ref, split_tag, write_raw_tag
from tests.helpers.x509 import X509_DN, X509_EMAIL, make_certificate


def x509_policy(identity: str = X509_EMAIL, issuer: str = X509_DN) -> str:
    """A trust policy letting the certificate (identity, issuer) do everything."""
    return (
        "version = 1\n\n[signers.release]\n"
        f"x509 = {{ identity = {json.dumps(identity)}, issuer = {json.dumps(issuer)} }}\n"
        'environments = ["*"]\noperations = ["*"]\n'
    )


def x509_repo(make_repo: MakeRepo, home: Path, key: str, policy: str) -> Path:
    """A repository signing with certificate `key` through gpgsm in GnuPG home `home`."""
    repo = make_repo({"README.md": "hello\n", ".govsnap/trust.toml": policy}, signed=False)
    git(repo, "config", "gpg.format", "x509")
    git(repo, "config", "user.signingKey", key)
    git(repo, "config", "govsnap.gpgHome", str(home))
    return repo


def stock_git(repo: Path, home: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "GNUPGHOME": str(home)}
    return subprocess.run(["git", *args], cwd=repo, env=env, capture_output=True, check=False)


def test_create_signs_with_gpgsm_and_git_verifies_it(
    make_repo: MakeRepo, cli: Cli, x509_cert: str, isolated_env: Path
) -> None:
    home = isolated_env / "x"
    repo = x509_repo(make_repo, home, x509_cert, x509_policy())
    ident = create_snapshot(cli, repo, "-e", "production")
    ref = f"refs/govsnap/snapshots/{ident}"
    assert b"-----BEGIN SIGNED MESSAGE-----" in stock_git(repo, home, "cat-file", "tag", ref).stdout
    checked = stock_git(repo, home, "verify-tag", "--raw", ref)
    assert checked.returncode == 0, checked.stderr
    assert f"VALIDSIG {x509_cert}".encode() in checked.stderr
    # The audit entry of the create is signed the same way, and git checks it too.
    assert stock_git(repo, home, "verify-commit", "refs/govsnap/audit").returncode == 0

    report = json.loads(run_ok(cli, repo, "verify", "--json", ident))
    (result,) = report["snapshots"]
    identity = f"{X509_EMAIL} (issuer {X509_DN})"
    assert result["verdict"] == "pass" and result["signer"] == identity
    assert "signer release" in result["checks"]["trust"]["message"]
    # A rollback asks the policy whether this clone's certificate may roll back (a probe
    # it signs, verified against the policy) and signs its safety snapshot the same way.
    (repo / "README.md").write_text("changed\n")
    rolled = json.loads(run_ok(cli, repo, "rollback", ident, "--yes", "--json"))
    safety = rolled["safety_snapshot"]
    assert (repo / "README.md").read_text() == "hello\n"
    checked = stock_git(repo, home, "verify-tag", f"refs/govsnap/snapshots/{safety}")
    assert checked.returncode == 0, checked.stderr
    audit = json.loads(run_ok(cli, repo, "audit", "verify", "--json"))
    assert (
        audit["ok"] and audit["unsigned"] == 0 and audit["entries"] == 4
    )  # create, verify, safety create, rollback


def test_govsnap_runs_the_program_as_git_does(
    make_repo: MakeRepo, cli: Cli, x509_cert: str, isolated_env: Path, tmp_path: Path
) -> None:
    """gpg.x509.program is called with git's own arguments: a wrapper that records its
    command line and runs gpgsm is given to `git tag -s` and to `govsnap create`."""
    home = isolated_env / "x"
    log = tmp_path / "calls"
    wrapper = tmp_path / "x509-program"
    wrapper.write_text(f'#!/bin/sh\necho "$*" >> {log}\nexec gpgsm "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    repo = x509_repo(make_repo, home, x509_cert, x509_policy())
    git(repo, "config", "gpg.x509.program", str(wrapper))
    assert stock_git(repo, home, "tag", "-s", "-m", "by git", "t").returncode == 0
    by_git = log.read_text().splitlines()
    log.unlink()
    create_snapshot(cli, repo, "-e", "production")
    by_govsnap = log.read_text().splitlines()
    assert by_git == [f"--status-fd=2 -bsau {x509_cert}"]
    # The snapshot tag, then its audit entry: each signed with git's command line.
    assert by_govsnap == by_git * 2


def test_an_impostor_certificate_naming_the_same_identity_is_refused(
    make_repo: MakeRepo, cli: Cli, x509_cert: str, isolated_env: Path, tmp_path: Path
) -> None:
    """Anyone can make a certificate with the same subject, e-mail and issuer DN; only a
    chain gpgsm trusts makes that name count."""
    home = isolated_env / "x"
    impostor_home = tmp_path / "i"
    impostor = make_certificate(impostor_home, X509_DN, X509_EMAIL, embed=True)
    repo = x509_repo(make_repo, impostor_home, impostor, x509_policy())
    ident = create_snapshot(cli, repo, "-e", "production")
    git(repo, "config", "govsnap.gpgHome", str(home))  # verify as the team does
    result = cli(repo, "verify", "--json", ident)
    assert result.code == 1
    checks = json.loads(result.out)["snapshots"][0]["checks"]
    assert "does not trust its chain" in checks["signature"]["message"]
    assert not checks["trust"]["ok"] and impostor in checks["trust"]["message"]


def test_a_certificate_the_policy_does_not_name_is_not_trusted(
    make_repo: MakeRepo, cli: Cli, x509_cert: str, isolated_env: Path
) -> None:
    home = isolated_env / "x"
    for identity, issuer in (
        ("someone@example.com", X509_DN),
        (X509_EMAIL, "CN=Another CA,O=govsnap test"),
    ):
        repo = x509_repo(make_repo, home, x509_cert, x509_policy(identity, issuer))
        ident = create_snapshot(cli, repo, "-e", "production")
        result = cli(repo, "verify", "--json", ident)
        assert result.code == 1
        trust = json.loads(result.out)["snapshots"][0]["checks"]["trust"]
        assert f"signer {x509_cert} is not in the trust policy" in trust["message"]


def test_signing_failures_are_one_line_and_write_nothing(
    make_repo: MakeRepo, cli: Cli, x509_cert: str, isolated_env: Path
) -> None:
    home = isolated_env / "x"
    repo = x509_repo(make_repo, home, "0" * 40, x509_policy())
    result = cli(repo, "create")
    assert result.code != 0 and len(result.err.strip().splitlines()) == 1
    assert "gpgsm could not sign with 0000000000" in result.err
    git(repo, "config", "gpg.x509.program", "no-such-gitsign")
    result = cli(repo, "create")
    assert result.code != 0 and "no-such-gitsign (gpg.x509.program) is not installed" in result.err
    assert snapshot_ids(repo) == []


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ('{ identity = "a@example.com" }', "needs issuer"),
        ('{ identity = "", issuer = "https://accounts.google.com" }', "needs identity"),
        ('{ identity = "a@example.com", issuer = "x", subject = "y" }', "unknown key"),
        ("42", "must be a string or a table"),
        ('"ABCD"', "not an X.509 certificate fingerprint"),
    ],
)
def test_policy_x509_signers_are_validated(value: str, problem: str) -> None:
    text = f'[signers.bot]\nx509 = {value}\nenvironments = ["*"]\noperations = ["create"]\n'
    with pytest.raises(PolicyError, match=problem):
        parse_policy(text.encode(), "trust.toml")


def test_policy_names_a_sigstore_identity() -> None:
    issuer = "https://token.actions.githubusercontent.com"
    identity = "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main"
    policy = parse_policy(x509_policy(identity, issuer).encode(), "trust.toml")
    (signer,) = policy.signers
    assert signer.identity == f"{identity} (issuer {issuer})"
    assert policy.find(signer.identity) is signer
    assert policy.keys().x509 == ((signer.identity, identity, issuer),)


def test_trust_show_names_a_certificate_signer_by_identity_and_issuer(
    make_repo: MakeRepo, cli: Cli
) -> None:
    """Both X.509 forms in `trust show --json` (held to trust.v1.json): one pinned by
    fingerprint, one named by its certificate's (identity, issuer)."""
    issuer = "https://token.actions.githubusercontent.com"
    identity = "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main"
    pinned = "A" * 40
    policy = x509_policy(identity, issuer) + (
        f'\n[signers.pinned]\nx509 = "{pinned}"\nenvironments = ["*"]\noperations = ["*"]\n'
    )
    repo = make_repo({"README.md": "hello\n", ".govsnap/trust.toml": policy}, signed=False)
    data = json.loads(run_ok(cli, repo, "trust", "show", "--json"))
    signers = {s["name"]: s for s in data["signers"]}
    named = signers["release"]
    assert named["kind"] == "x509" and named["identity"] == f"{identity} (issuer {issuer})"
    assert named["certificate"] == {"identity": identity, "issuer": issuer}
    assert signers["pinned"]["identity"] == pinned and "certificate" not in signers["pinned"]


def test_a_sigstore_shaped_certificate_is_named_by_workflow_and_oidc_issuer(
    make_repo: MakeRepo, cli: Cli, tmp_path: Path
) -> None:
    """A certificate shaped like Fulcio's: the workflow URI as its subject alternative
    name, the OIDC issuer in Sigstore's extension 1.3.6.1.4.1.57264.1.8, embedded in the
    signature as gitsign embeds it. (Made and trusted locally: Fulcio and Rekor are not.)"""
    issuer = "https://token.actions.githubusercontent.com"
    workflow = "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main"
    utf8 = bytes([0x0C, len(issuer)]) + issuer.encode()
    home = tmp_path / "s"
    key = make_certificate(
        home,
        "CN=sigstore-intermediate,O=sigstore.dev",
        "unused@example.com",
        embed=True,
        extra=f"Name-URI: {workflow}\nExtension: 1.3.6.1.4.1.57264.1.8 n {utf8.hex()}\n",
    )
    repo = x509_repo(make_repo, home, key, x509_policy(workflow, issuer))
    ident = create_snapshot(cli, repo, "-e", "production")
    result = json.loads(run_ok(cli, repo, "verify", "--json", ident))["snapshots"][0]
    assert result["signer"] == f"{workflow} (issuer {issuer})"
    # The CA's DN is not the issuer of a Sigstore identity: the OIDC issuer is.
    other = x509_repo(
        make_repo, home, key, x509_policy(workflow, "CN=sigstore-intermediate,O=sigstore.dev")
    )
    ident = create_snapshot(cli, other, "-e", "production")
    assert cli(other, "verify", ident).code == 1


# What gitsign's verification writes on the status fd, as its source does
# (internal/gpg/status.go: EmitGoodSig, EmitTrustFully): no VALIDSIG line.
GITSIGN_GOOD = [
    "[GNUPG:] NEWSIG",
    "[GNUPG:] GOODSIG 5fe6c5b3db4aa79842ab47729f8b578f0a19d6fe CN=sigstore,O=sigstore.dev",
    "[GNUPG:] TRUST_FULLY 0 shell",
]


def test_gitsign_status_lines_read_as_git_reads_them() -> None:
    check = interpret_gpg_status(GITSIGN_GOOD, SignatureKind.X509)
    assert check.valid and check.signer == "5FE6C5B3DB4AA79842AB47729F8B578F0A19D6FE"
    # The same lines from gpg (OpenPGP) still need VALIDSIG, as before.
    assert not interpret_gpg_status(GITSIGN_GOOD, SignatureKind.OPENPGP).valid
    bad = [GITSIGN_GOOD[0], GITSIGN_GOOD[1].replace("GOODSIG", "BADSIG")]
    assert not interpret_gpg_status(bad, SignatureKind.X509).valid


def test_a_rewrapped_copy_of_an_x509_signed_tag_is_refused(
    make_repo: MakeRepo, cli: Cli, x509_cert: str, isolated_env: Path
) -> None:
    """The id does not cover the signature block: a copy whose PEM lines are wrapped
    otherwise is another object under the same id. gpgsm and git accept it; govsnap keeps
    one form (gpgsm's, 64 columns), so nobody can occupy an id with a re-wrapped copy."""
    home = isolated_env / "x"
    repo = x509_repo(make_repo, home, x509_cert, x509_policy())
    ident = create_snapshot(cli, repo, "-e", "production")
    payload, block = split_tag(read_raw_tag(repo, ident))
    lines = block.decode().split("\n")
    body = "".join(lines[1 : lines.index("-----END SIGNED MESSAGE-----")])
    wrapped = [body[i : i + 76] for i in range(0, len(body), 76)]
    rewrapped = "\n".join([lines[0], *wrapped, "-----END SIGNED MESSAGE-----", ""]).encode()
    assert rewrapped != block
    copy = write_raw_tag(repo, payload + rewrapped)
    git(repo, "update-ref", snapshot_ref(ident), copy)
    assert stock_git(repo, home, "verify-tag", snapshot_ref(ident)).returncode == 0
    result = cli(repo, "verify", ident)
    assert result.code != 0
    assert "not in its canonical form" in result.out + result.err
