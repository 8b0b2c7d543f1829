"""The OpenPGP packet codec (govsnap/openpgp.py), table by table: what it takes for one
detached signature over binary data, what it leaves to gpg, and packets gpg reads back."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import pytest

from govsnap import openpgp
from tests.helpers import Keys


def gpg(*args: str, data: bytes = b"") -> bytes:
    proc = subprocess.run(["gpg", "--batch", *args], input=data, capture_output=True, check=True)
    return proc.stdout


def armor(packet: bytes, headers: str = "", checksum: bytes | None = None) -> bytes:
    """Return `packet` in ASCII armour, as gpg writes a signature."""
    body = base64.b64encode(packet).decode()
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    crc = openpgp.crc24(packet) if checksum is None else checksum
    text = "\n".join(
        [
            openpgp.SIGNATURE_ARMOR,
            *headers.splitlines(),
            "",
            *lines,
            "=" + base64.b64encode(crc).decode(),
        ]
    )
    return (text + "\n-----END PGP SIGNATURE-----\n").encode()


@pytest.mark.parametrize(
    ("data", "crc"),
    [
        (b"", 0xB704CE),  # the initial value: nothing folded in
        (b"123456789", 0x21CF02),  # CRC-24/OPENPGP's check value (the CRC catalogue)
    ],
)
def test_crc24(data: bytes, crc: int) -> None:
    assert openpgp.crc24(data) == crc.to_bytes(3, "big")


@pytest.mark.parametrize(
    ("size", "header"),
    [
        (0, b"\xcb\x06"),  # body: b"b", name length 0, four zero date bytes, the data
        (185, b"\xcb\xbf"),  # 191: the largest one-byte length
        (186, b"\xcb\xc0\x00"),  # 192: the smallest two-byte length
        (8377, b"\xcb\xdf\xff"),  # 8383: the largest two-byte length
        (8378, b"\xcb\xff\x00\x00\x20\xc0"),  # 8384: five-byte length
    ],
)
def test_literal_packet_lengths(size: int, header: bytes) -> None:
    packet = openpgp.literal_packet(b"", b"x" * size)
    assert packet.startswith(header)
    assert packet[len(header) :] == b"b\x00\x00\x00\x00\x00" + b"x" * size


def _signature_body(version: int = 4, klass: int = 0x00, length: int = 20) -> bytes:
    """Return a signature packet body's first bytes (version, class, ...), padded."""
    if version == 3:
        return bytes([3, 5, klass]) + b"\0" * (length - 3)
    return bytes([version, klass]) + b"\0" * (length - 2)


BODY = _signature_body()


@pytest.mark.parametrize(
    ("packet", "expected"),
    [
        (bytes([0xC2, len(BODY)]) + BODY, True),  # new format, one-byte length
        (bytes([0xC2, 0xC0, 0x00]) + _signature_body(length=192), True),  # two-byte length
        (b"\xc2\xff" + (300).to_bytes(4, "big") + _signature_body(length=300), True),  # five
        (bytes([0x88, len(BODY)]) + BODY, True),  # old format, one-byte length
        (b"\x89" + len(BODY).to_bytes(2, "big") + BODY, True),  # old format, two bytes
        (bytes([0xC2, 20]) + _signature_body(version=5), True),
        (bytes([0x88, 20]) + _signature_body(version=3), True),
        (bytes([0xC2, 20]) + _signature_body(klass=0x01), False),  # a text signature
        (bytes([0x88, 20]) + _signature_body(version=3, klass=0x01), False),
        (bytes([0xC2, 20]) + _signature_body(version=6), False),  # a version not known
        (bytes([0xC2, 21]) + BODY, False),  # shorter than its length says
        (bytes([0xC2, 20]) + BODY + b"\xc2\x00", False),  # a second packet follows
        (bytes([0xCB, 20]) + BODY, False),  # a literal data packet, not a signature
        (bytes([0x8B, 20]) + BODY, False),  # old-format tag 2 | 0x3: indeterminate length
        (bytes([0xC2, 0xE0]) + BODY, False),  # a partial body length
        (bytes([0x42, 20]) + BODY, False),  # bit 7 unset: not a packet at all
        (b"\xc2", False),
        (b"", False),
    ],
)
def test_is_binary_signature(packet: bytes, expected: bool) -> None:
    assert openpgp.is_binary_signature(packet) is expected


@pytest.fixture(scope="module")
def real(keys: Keys) -> bytes:
    """A detached signature gpg made over bytes, as `git tag -s` makes one (armoured)."""
    return gpg("--local-user", keys.trusted, "--armor", "--detach-sign", data=b"payload\n")


def test_dearmor_gives_the_packet_gpg_wrote(real: bytes, keys: Keys) -> None:
    packet = openpgp.dearmor_signature(real)
    assert packet is not None and openpgp.is_binary_signature(packet)
    # gpg's own checksum line is the CRC-24 of the packet.
    checksum = next(line for line in real.splitlines() if line.startswith(b"="))
    assert base64.b64decode(checksum[1:]) == openpgp.crc24(packet)
    binary = gpg("--local-user", keys.trusted, "--detach-sign", data=b"payload\n")
    assert packet[:2] == binary[:2] and len(packet) == len(binary)


def test_gpg_verifies_the_signed_message_built_from_it(
    real: bytes, tmp_path: Path, keys: Keys
) -> None:
    packet = openpgp.dearmor_signature(real)
    assert packet is not None
    message = tmp_path / "0"
    message.write_bytes(packet + openpgp.literal_packet(b"0", b"payload\n"))
    out = subprocess.run(
        ["gpg", "--batch", "--status-fd=1", "--verify-files", str(message)],
        capture_output=True,
        check=False,
    ).stdout.decode()
    assert f"VALIDSIG {keys.trusted}" in out
    message.write_bytes(packet + openpgp.literal_packet(b"0", b"changed\n"))
    out = subprocess.run(
        ["gpg", "--batch", "--status-fd=1", "--verify-files", str(message)],
        capture_output=True,
        check=False,
    ).stdout.decode()
    assert "BADSIG" in out


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("as gpg wrote it", True),
        ("with an armour header", True),
        ("without a checksum line", True),
        ("with a wrong checksum", False),
        ("without its end line", False),
        ("with a header line that is not one", False),
        ("holding two signatures", False),
        ("as a text signature", False),
        ("as an SSH signature", False),
        ("not armoured", False),
    ],
)
def test_dearmor_signature(real: bytes, keys: Keys, case: str, expected: bool) -> None:
    packet = openpgp.dearmor_signature(real)
    assert packet is not None
    block = {
        "as gpg wrote it": real,
        "with an armour header": armor(packet, "Comment: made by a test"),
        "without a checksum line": b"\n".join(
            line for line in real.splitlines() if not line.startswith(b"=")
        ),
        "with a wrong checksum": armor(packet, checksum=b"\0\0\0"),
        "without its end line": real.replace(b"-----END PGP SIGNATURE-----", b""),
        "with a header line that is not one": armor(packet, "not a header"),
        "holding two signatures": armor(packet + packet),
        "as a text signature": gpg(
            "--local-user", keys.trusted, "--textmode", "--armor", "--detach-sign", data=b"x\n"
        ),
        "as an SSH signature": b"-----BEGIN SSH SIGNATURE-----\nU1NIU0lH\n"
        b"-----END SSH SIGNATURE-----\n",
        "not armoured": packet,
    }[case]
    assert (openpgp.dearmor_signature(block) is not None) is expected
