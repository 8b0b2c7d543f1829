"""The approval of a trust policy change: a signed statement, not a signature over the
file's bytes alone.

A signature over the bytes could be replayed: committed later for a proposal that review
rejected, once the policy had moved on, or in another repository whose policy the same
key approves. The statement binds the new bytes to the policy ref and to the commit that
introduced the version it changes (for a first version: the commit it is introduced on),
so that it counts for that change only. docs/format.md describes the file.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

HEADER = "govsnap policy approval 1"
_SIGNATURE_STARTS = (b"-----BEGIN PGP SIGNATURE-----", b"-----BEGIN SSH SIGNATURE-----")
_OID = re.compile(r"^[0-9a-f]{40}$|^[0-9a-f]{64}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


def policy_digest(data: bytes) -> str:
    """Return the `sha256:<hex>` of a policy file's bytes, as a statement names them."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class ApprovalStatement:
    """What an approver signs: these policy bytes, on this ref, as the successor of the
    version `previous` introduced (or, with `previous` None, as the first version,
    introduced on the commit `base`; None for a root commit), at `time` (what the
    approver's clock said: the time an SSH key is judged at, which carries none)."""

    ref: str
    policy: str  # policy_digest of the approved bytes
    previous: str | None
    base: str | None
    time: int

    def to_bytes(self) -> bytes:
        """Return the statement as it is signed."""
        lines = [HEADER, f"ref {self.ref}", f"policy {self.policy}"]
        if self.previous is not None:
            lines.append(f"previous {self.previous}")
        else:
            lines += ["previous none", f"base {self.base or 'none'}"]
        lines.append(f"time {self.time}")
        return ("\n".join(lines) + "\n").encode()

    @classmethod
    def parse(cls, data: bytes) -> ApprovalStatement | None:
        """Return the statement in `data`, or None when it is not one (an approval in the
        format of govsnap 0.1, a signature over the bytes alone, counts for nothing)."""
        try:
            lines = data.decode("ascii").split("\n")
        except UnicodeDecodeError:
            return None
        if not lines or lines[0] != HEADER or lines[-1] != "":
            return None
        fields: dict[str, str] = {}
        for line in lines[1:-1]:
            key, sep, value = line.partition(" ")
            if not sep or key in fields or not value:
                return None
            fields[key] = value
        previous = fields.get("previous")
        base = fields.get("base")
        time = fields.get("time", "")
        expected = {"ref", "policy", "previous", "time"} | (
            {"base"} if previous == "none" else set()
        )
        if set(fields) != expected or not time.isdigit() or not _DIGEST.match(fields["policy"]):
            return None
        if previous == "none":
            if base != "none" and not _OID.match(base or ""):
                return None
            return cls(
                fields["ref"], fields["policy"], None, None if base == "none" else base, int(time)
            )
        if not _OID.match(previous or ""):
            return None
        return cls(fields["ref"], fields["policy"], previous, None, int(time))

    def matches(self, ref: str, data: bytes, previous: str | None, base: str | None) -> bool:
        """Return True when the statement approves exactly this change."""
        return (
            self.ref == ref
            and self.policy == policy_digest(data)
            and self.previous == previous
            and (previous is not None or self.base == base)
        )


@dataclass(frozen=True)
class ApprovalFile:
    """An approval as committed in .govsnap/approvals/: the statement, then its signature
    block (armoured OpenPGP or SSH), as a signed tag carries its payload and signature."""

    statement: bytes
    signature: bytes

    def to_bytes(self) -> bytes:
        """Return the file's content."""
        return self.statement + self.signature

    @classmethod
    def split(cls, data: bytes) -> ApprovalFile:
        """Return a file's statement and signature (an empty signature when none)."""
        for start in _SIGNATURE_STARTS:
            at = data.find(b"\n" + start)
            if at >= 0:
                return cls(data[: at + 1], data[at + 1 :])
            if data.startswith(start):
                return cls(b"", data)
        return cls(data, b"")
