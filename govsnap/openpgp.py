"""The few OpenPGP packets govsnap reads and writes itself (RFC 4880): an armoured block
holding one detached signature over binary data, and a literal data packet. With them
many detached signatures become signed messages that one `gpg --verify-files` checks
(signing.SignatureVerifier.verify_many), and a signature block has one canonical form
(`canonical_signature`); everything else about OpenPGP is gpg's.
"""

from __future__ import annotations

import base64

SIGNATURE_ARMOR = "-----BEGIN PGP SIGNATURE-----"
_SIGNATURE_END = "-----END PGP SIGNATURE-----"
_SIGNATURE_TAG = 2
_LITERAL_TAG = 11
_BINARY_DOCUMENT = 0x00  # the signature class of a detached signature over bytes
_ARMOR_WIDTH = 64  # gpg's line length
_ISSUER = 16  # subpacket: the 8-byte key id of the signer
_ISSUER_FINGERPRINT = 33  # subpacket: key version + fingerprint of the signer
# How many MPIs each public-key algorithm's signature holds (RSA, RSA sign-only, DSA,
# ECDSA, EdDSA): the algorithms whose signature govsnap can put in canonical form.
_SIGNATURE_MPIS = {1: 1, 3: 1, 17: 2, 19: 2, 22: 2}


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


def canonical_signature(block: bytes) -> bytes | None:
    """Return the one form govsnap accepts of an armoured block holding one version 4
    signature over binary data (class 0x00), or None when the block holds anything else.

    The armour and the packet framing are not signed: armour headers, line breaks, an
    old- or new-format packet header, a longer length encoding, an MPI with leading zero
    bits or extra unhashed subpackets all verify, so each would be another tag object for
    the same payload and id. The canonical form is what gpg 2.2 writes without
    `--emit-version` or `--comment`: an old-format header with the shortest length,
    minimal MPIs, an unhashed area holding nothing or only the issuer key id the hashed
    issuer fingerprint names, no armour header, 64-column base64 and the CRC line.
    """
    packet = _dearmor(block)
    body = _packet_body(packet) if packet is not None else None
    if body is None or not _canonical_body(body):
        return None
    return armor_signature(_old_format(_SIGNATURE_TAG, body))


def armor_signature(packet: bytes) -> bytes:
    """Return `packet` in ASCII armour exactly as gpg writes a detached signature."""
    text = base64.b64encode(packet).decode()
    lines = [text[i : i + _ARMOR_WIDTH] for i in range(0, len(text), _ARMOR_WIDTH)]
    crc = base64.b64encode(crc24(packet)).decode()
    return "\n".join([SIGNATURE_ARMOR, "", *lines, f"={crc}", _SIGNATURE_END, ""]).encode()


def _dearmor(block: bytes) -> bytes | None:
    """Return the binary content of an armoured signature block (headers, any line
    breaks and a missing CRC allowed, as gpg allows them), or None."""
    try:
        text = block.decode("ascii")
    except UnicodeDecodeError:
        return None
    lines = text.split("\n")
    if not lines or lines[0] != SIGNATURE_ARMOR or _SIGNATURE_END not in lines:
        return None
    lines = lines[1 : lines.index(_SIGNATURE_END)]
    while lines and lines[0].strip():
        lines.pop(0)  # armour headers, up to the blank line
    if not lines:
        return None
    body = [line.strip() for line in lines[1:]]
    checksum = body.pop() if body and body[-1].startswith("=") else None
    try:
        packet = base64.b64decode("".join(body), validate=True)
        if checksum is not None and base64.b64decode(checksum[1:], validate=True) != crc24(packet):
            return None
    except ValueError:
        return None
    return packet


def _packet_body(packet: bytes) -> bytes | None:
    """Return the body of `packet` when it is exactly one signature packet, else None."""
    if not is_binary_signature(packet):
        return None
    if packet[0] & 0x40:
        first = packet[1]
        start = 2 if first < 192 else 3 if first < 224 else 6
    else:
        start = 1 + (1 << (packet[0] & 0x03))
    return packet[start:]


def _old_format(tag: int, body: bytes) -> bytes:
    """Return an old-format packet with the shortest length encoding, as gpg writes."""
    size = len(body)
    width, length_type = (1, 0) if size < 0x100 else (2, 1) if size < 0x10000 else (4, 2)
    return bytes([0x80 | tag << 2 | length_type]) + size.to_bytes(width, "big") + body


def _subpackets(area: bytes) -> list[tuple[int, bytes, bytes]] | None:
    """Return (type without the critical bit, data, encoded subpacket) of each subpacket
    in an area, or None if it does not parse or a length is not in its shortest form."""
    found: list[tuple[int, bytes, bytes]] = []
    at = 0
    while at < len(area):
        first = area[at]
        if first < 192:
            head, size = 1, first
        elif first < 255 and at + 1 < len(area):
            head, size = 2, ((first - 192) << 8) + area[at + 1] + 192
        elif first == 255 and at + 5 <= len(area):
            head, size = 5, int.from_bytes(area[at + 1 : at + 5], "big")
        else:
            return None
        shortest = 1 if size < 192 else 2 if size < 8384 else 5
        end = at + head + size
        if head != shortest or size < 1 or end > len(area):
            return None
        found.append((area[at + head] & 0x7F, area[at + head + 1 : end], area[at:end]))
        at = end
    return found


def _canonical_body(body: bytes) -> bool:
    """Return True when a signature packet body is a version 4 signature in the one
    form govsnap accepts (see canonical_signature)."""
    if len(body) < 6 or body[0] != 4 or body[1] != _BINARY_DOCUMENT:
        return False
    mpis = _SIGNATURE_MPIS.get(body[2])
    hashed_end = 6 + int.from_bytes(body[4:6], "big")
    if mpis is None or hashed_end + 2 > len(body):
        return False
    unhashed_end = hashed_end + 2 + int.from_bytes(body[hashed_end : hashed_end + 2], "big")
    hashed = _subpackets(body[6:hashed_end])
    unhashed = _subpackets(body[hashed_end + 2 : unhashed_end])
    if hashed is None or unhashed is None or unhashed_end + 2 > len(body):
        return False
    if unhashed:
        # Only the issuer key id gpg adds; with a hashed fingerprint it is fixed by it.
        if len(unhashed) != 1 or unhashed[0][0] != _ISSUER or unhashed[0][2][:2] != b"\x09\x10":
            return False
        fingerprints = [data for kind, data, _ in hashed if kind == _ISSUER_FINGERPRINT]
        for data in fingerprints:
            key_id = data[-8:] if data[:1] == b"\x04" else data[1:9]
            if unhashed[0][1] != key_id:
                return False
    at = unhashed_end + 2  # the left 16 bits of the hash
    for _ in range(mpis):
        if at + 2 > len(body):
            return False
        bits = int.from_bytes(body[at : at + 2], "big")
        end = at + 2 + (bits + 7) // 8
        if end > len(body) or int.from_bytes(body[at + 2 : end], "big").bit_length() != bits:
            return False
        at = end
    return at == len(body)
