"""The few OpenPGP packets govsnap reads and writes itself (RFC 4880): an armoured block
holding one detached signature over binary data, and a literal data packet. With them
many detached signatures become signed messages that one `gpg --verify-files` checks
(signing.SignatureVerifier.verify_many); everything else about OpenPGP is gpg's.
"""

from __future__ import annotations

import base64

SIGNATURE_ARMOR = "-----BEGIN PGP SIGNATURE-----"
_SIGNATURE_END = "-----END PGP SIGNATURE-----"
_SIGNATURE_TAG = 2
_LITERAL_TAG = 11
_BINARY_DOCUMENT = 0x00  # the signature class of a detached signature over bytes


def dearmor_signature(block: bytes) -> bytes | None:
    """Return the one binary signature packet (class 0x00) in an armoured OpenPGP block,
    or None when the block is anything else (then it is checked the ordinary way)."""
    lines = block.decode("ascii", errors="replace").strip().splitlines()
    if not lines or lines[0] != SIGNATURE_ARMOR:
        return None
    body: list[str] = []
    checksum = None
    in_headers = True
    for line in lines[1:]:
        if in_headers:
            in_headers = bool(line.strip())
            if in_headers and ":" not in line:
                return None
            continue
        if line == _SIGNATURE_END:
            break
        if line.startswith("="):
            checksum = line[1:]
        else:
            body.append(line)
    else:
        return None
    try:
        packet = base64.b64decode("".join(body), validate=True)
        if checksum is not None and base64.b64decode(checksum) != crc24(packet):
            return None
    except ValueError:
        return None
    return packet if is_binary_signature(packet) else None


def crc24(data: bytes) -> bytes:
    """Return the CRC-24 of `data` that ASCII armour checks (RFC 4880, section 6.1)."""
    crc = 0xB704CE
    for byte in data:
        crc ^= byte << 16
        for _ in range(8):
            crc <<= 1
            if crc & 0x1000000:
                crc ^= 0x1864CFB
    return (crc & 0xFFFFFF).to_bytes(3, "big")


def is_binary_signature(packet: bytes) -> bool:
    """Return True when `packet` is exactly one signature packet over binary data."""
    if len(packet) < 2 or not packet[0] & 0x80:
        return False
    if packet[0] & 0x40:
        tag, first = packet[0] & 0x3F, packet[1]
        if first < 192:
            start, size = 2, first
        elif first < 224 and len(packet) > 2:
            start, size = 3, ((first - 192) << 8) + packet[2] + 192
        elif first == 255 and len(packet) > 5:
            start, size = 6, int.from_bytes(packet[2:6], "big")
        else:
            return False
    else:
        tag, length_type = (packet[0] >> 2) & 0x0F, packet[0] & 0x03
        if length_type == 3:
            return False
        width = 1 << length_type
        start, size = 1 + width, int.from_bytes(packet[1 : 1 + width], "big")
    body = packet[start:]
    if tag != _SIGNATURE_TAG or len(body) != size or len(body) < 3:
        return False
    version = body[0]
    if version in (4, 5):
        return body[1] == _BINARY_DOCUMENT
    return version == 3 and body[1] == 5 and body[2] == _BINARY_DOCUMENT


def literal_packet(name: bytes, data: bytes) -> bytes:
    """Return a new-format literal data packet holding `data` in binary mode."""
    body = b"b" + bytes([len(name)]) + name + b"\0\0\0\0" + data
    size = len(body)
    if size < 192:
        length = bytes([size])
    elif size < 8384:
        rest = size - 192
        length = bytes([(rest >> 8) + 192, rest & 0xFF])
    else:
        length = b"\xff" + size.to_bytes(4, "big")
    return bytes([0xC0 | _LITERAL_TAG]) + length + body
