"""A snapshot tag has one serialisation (red team 2, finding 14): the signature block is
not hashed into the id, so each other form of a good signature that gpg or ssh-keygen
still accepts would be another object under the same id. Every such form is played here
against real gpg/ssh-keygen (which accept it) and against govsnap (which does not)."""

from __future__ import annotations

import base64
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from govsnap import openpgp
from govsnap.signing import canonical_block
from tests.helpers import Cli, Keys, MakeRepo, SSHKey, create_snapshot, git, openpgp_signer
from tests.helpers.tamper import commit_policy, read_raw_tag, snapshot_ref, split_tag, write_raw_tag

PAYLOAD = b"payload\n"


def gpg_verifies(block: bytes, tmp: Path) -> bool:
    (tmp / "sig").write_bytes(block)
    (tmp / "data").write_bytes(PAYLOAD)
    proc = subprocess.run(
        ["gpg", "--batch", "--status-fd=1", "--verify", str(tmp / "sig"), str(tmp / "data")],
        capture_output=True,
        check=False,
    )
    return b"[GNUPG:] VALIDSIG" in proc.stdout


def _packet(block: bytes) -> bytes:
    lines = block.decode().splitlines()
    return base64.b64decode("".join(lines[2:-2]))


def _body(packet: bytes) -> bytes:
    # gpg writes an old-format header: one tag byte and a 1- or 2-byte length.
    return packet[2:] if packet[0] & 0x03 == 0 else packet[3:]


def _rearmor(packet: bytes) -> bytes:
    return openpgp.armor_signature(packet)


def _with_unhashed(body: bytes, extra: bytes) -> bytes:
    hashed_end = 6 + int.from_bytes(body[4:6], "big")
    size = int.from_bytes(body[hashed_end : hashed_end + 2], "big")
    unhashed = body[hashed_end + 2 : hashed_end + 2 + size] + extra
    return (
        body[:hashed_end]
        + len(unhashed).to_bytes(2, "big")
        + unhashed
        + body[hashed_end + 2 + size :]
    )


def _long_length_issuer(body: bytes) -> bytes:
    """The unhashed issuer subpacket with its length in the 5-byte form."""
    hashed_end = 6 + int.from_bytes(body[4:6], "big")
    size = int.from_bytes(body[hashed_end : hashed_end + 2], "big")
    unhashed = body[hashed_end + 2 : hashed_end + 2 + size]
    assert unhashed[:2] == b"\x09\x10"
    longer = b"\xff" + (9).to_bytes(4, "big") + unhashed[1:]
    return (
        body[:hashed_end] + len(longer).to_bytes(2, "big") + longer + body[hashed_end + 2 + size :]
    )


VARIANTS: dict[str, Callable[[bytes], bytes]] = {
    "an armour Comment header": lambda real: real.replace(
        b"-----\n\n", b"-----\nComment: hi\n\n", 1
    ),
    "a Version header": lambda real: real.replace(b"-----\n\n", b"-----\nVersion: x\n\n", 1),
    "76-column base64": lambda real: b"\n".join(
        [
            b"-----BEGIN PGP SIGNATURE-----",
            b"",
            *(lambda t: [t[i : i + 76] for i in range(0, len(t), 76)])(
                base64.b64encode(_packet(real))
            ),
            b"=" + base64.b64encode(openpgp.crc24(_packet(real))),
            b"-----END PGP SIGNATURE-----",
            b"",
        ]
    ),
    "no CRC line": lambda real: b"\n".join(
        line for line in real.split(b"\n") if not line.startswith(b"=")
    ),
    "a new-format packet header": lambda real: _rearmor(
        bytes([0xC2, len(_body(_packet(real)))]) + _body(_packet(real))
    ),
    "a two-byte old-format length": lambda real: _rearmor(
        bytes([0x89]) + len(_body(_packet(real))).to_bytes(2, "big") + _body(_packet(real))
    ),
    "an extra unhashed subpacket": lambda real: _rearmor(
        (lambda b: bytes([0x88, len(b)]) + b)(
            _with_unhashed(_body(_packet(real)), b"\x05\x14" + b"abcd")
        )
    ),
    "an issuer subpacket with a 5-byte length": lambda real: _rearmor(
        (lambda b: bytes([0x88, len(b)]) + b)(_long_length_issuer(_body(_packet(real))))
    ),
}


@pytest.fixture(scope="module")
def real(keys: Keys) -> bytes:
    proc = subprocess.run(
        ["gpg", "--batch", "--local-user", keys.trusted, "--armor", "--detach-sign"],
        input=PAYLOAD,
        capture_output=True,
        check=True,
    )
    return proc.stdout


def test_what_gpg_writes_is_the_canonical_form(real: bytes) -> None:
    assert canonical_block(real) == real


@pytest.mark.parametrize("case", sorted(VARIANTS))
def test_every_other_form_gpg_accepts_is_refused(real: bytes, case: str, tmp_path: Path) -> None:
    variant = VARIANTS[case](real)
    assert variant != real
    assert gpg_verifies(variant, tmp_path), "the variant must be one gpg accepts (the attack)"
    assert canonical_block(variant) != variant


def test_a_non_minimal_mpi_is_not_canonical(real: bytes) -> None:
    body = _body(_packet(real))
    # The last MPI: 2-byte bit count then its bytes; claim 8 more bits and add a zero byte.
    hashed_end = 6 + int.from_bytes(body[4:6], "big")
    at = hashed_end + 2 + int.from_bytes(body[hashed_end : hashed_end + 2], "big") + 2
    bits = int.from_bytes(body[at : at + 2], "big")
    padded = body[:at] + (bits + 8).to_bytes(2, "big") + b"\0" + body[at + 2 :]
    assert openpgp.canonical_signature(_rearmor(bytes([0x88, len(padded)]) + padded)) is None


def test_ssh_rewrapped_block_is_refused(ssh_key: SSHKey, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.write_bytes(PAYLOAD)
    subprocess.run(
        ["ssh-keygen", "-q", "-Y", "sign", "-n", "git", "-f", str(ssh_key.private), str(data)],
        check=True,
        capture_output=True,
    )
    real = (tmp_path / "data.sig").read_bytes()
    assert canonical_block(real) == real
    lines = real.split(b"\n")
    text = b"".join(lines[1:-2])
    rewrapped = b"\n".join([lines[0], *[text[i : i + 64] for i in range(0, len(text), 64)]])
    rewrapped += b"\n" + lines[-2] + b"\n"
    (tmp_path / "data.sig").write_bytes(rewrapped)
    accepted = subprocess.run(
        ["ssh-keygen", "-Y", "check-novalidate", "-n", "git", "-s", str(tmp_path / "data.sig")],
        input=PAYLOAD,
        capture_output=True,
        check=False,
    )
    assert accepted.returncode == 0, "ssh-keygen accepts the rewrapped block (the attack)"
    assert rewrapped != real and canonical_block(rewrapped) == real


@pytest.fixture
def servers(tmp_path: Path, cli: Cli, keys: Keys, make_repo: MakeRepo) -> tuple[Path, Path, Path]:
    """Two servers running the hook (A and B) and a signer's repository pushed to both."""
    repo = make_repo({"app.txt": "v1\n"})
    commit_policy(
        repo,
        "version = 1\n" + openpgp_signer("releaser", keys.trusted, ["*"], ["*"]),
        sign_with=keys.trusted,
    )
    made = []
    for name in ("a", "b"):
        path = tmp_path / f"{name}.git"
        git(tmp_path, "init", "-q", "--bare", "-b", "main", str(path))
        git(path, "config", "govsnap.trustAnchor", keys.trusted)
        installed = cli(path, "hooks", "install", "--server", "--trust-ref", "refs/heads/main")
        assert installed.code == 0, installed.err
        git(repo, "remote", "add", name, str(path))
        git(repo, "push", "-q", name, "main")
        made.append(path)
    return repo, made[0], made[1]


def test_hook_refuses_a_rearmored_copy_and_the_signer_pushes_the_genuine_tag(
    servers: tuple[Path, Path, Path], cli: Cli, tmp_path: Path
) -> None:
    repo, server_a, server_b = servers
    ident = create_snapshot(cli, repo, "--label", "r1", "--environment", "production")
    assert cli(repo, "push", "a").code == 0
    # Mallory, with no key, reads the tag from A and adds an armour header to its block.
    mallory = tmp_path / "m.git"
    git(tmp_path, "init", "-q", "--bare", str(mallory))
    git(mallory, "fetch", "-q", str(server_a), f"{snapshot_ref(ident)}:{snapshot_ref(ident)}")
    payload, block = split_tag(read_raw_tag(mallory, ident))
    copy = write_raw_tag(
        mallory, payload + block.replace(b"-----\n\n", b"-----\nComment: hi\n\n", 1)
    )
    pushed = subprocess.run(
        ["git", "push", str(server_b), f"{copy}:{snapshot_ref(ident)}"],
        cwd=mallory,
        capture_output=True,
        text=True,
        check=False,
    )
    assert pushed.returncode != 0
    assert "signature: the signature block is not in its canonical form" in pushed.stderr
    assert git(server_b, "for-each-ref", "refs/govsnap/snapshots/") == ""
    # The signer's own push to B still works: the id was not occupied.
    assert cli(repo, "push", "b").code == 0
    assert (
        git(server_b, "rev-parse", snapshot_ref(ident)).strip()
        == git(repo, "rev-parse", snapshot_ref(ident)).strip()
    )


def test_verify_refuses_a_rearmored_copy_in_a_clone(
    servers: tuple[Path, Path, Path], cli: Cli
) -> None:
    repo = servers[0]
    ident = create_snapshot(cli, repo, "--label", "r1")
    payload, block = split_tag(read_raw_tag(repo, ident))
    copy = write_raw_tag(repo, payload + block.replace(b"-----\n\n", b"-----\nComment: x\n\n", 1))
    git(repo, "update-ref", snapshot_ref(ident), copy)
    git(repo, "verify-tag", snapshot_ref(ident))  # git itself accepts it
    result = cli(repo, "verify", ident)
    assert result.code != 0
    assert "not in its canonical form" in result.out + result.err


def test_create_stores_the_canonical_form_whatever_gpg_adds(
    make_repo: MakeRepo, cli: Cli, keys: Keys, tmp_path: Path
) -> None:
    """A gpg.conf with `emit-version` and `comment` makes gpg write armour headers: the
    tag govsnap stores holds the canonical block, which git and govsnap both verify."""
    wrapper = tmp_path / "gpg-with-headers"
    wrapper.write_text('#!/bin/sh\nexec gpg --emit-version --comment "made here" "$@"\n')
    wrapper.chmod(0o755)
    repo = make_repo({"app.txt": "v1\n"})
    commit_policy(
        repo,
        "version = 1\n" + openpgp_signer("releaser", keys.trusted, ["*"], ["*"]),
        sign_with=keys.trusted,
    )
    git(repo, "config", "gpg.program", str(wrapper))
    ident = create_snapshot(cli, repo, "--label", "r1")
    _, block = split_tag(read_raw_tag(repo, ident))
    assert b"Comment:" not in block and b"Version:" not in block
    assert canonical_block(block) == block
    git(repo, "verify-tag", snapshot_ref(ident))
    assert cli(repo, "verify", ident).code == 0
