"""The payload's bytes: serialise, parse, reject, split signatures."""

from __future__ import annotations

import hashlib
import marshal

import pytest

from govsnap.errors import CorruptObject, UsageError
from govsnap.objects import (
    SignedTag,
    SnapshotPayload,
    Source,
    payload_from_tuple,
    payload_to_tuple,
    snapshot_id,
    validate_name,
)
from govsnap.repo import Identity

PAYLOAD = SnapshotPayload(
    commit="1" * 40,
    tag_name="govsnap/production/20261124T120000Z",
    tagger=Identity("Rel Eng", "rel@example.com", 1_795_000_000, -90),
    summary="govsnap snapshot of main@1111111 (pre-push, production)",
    digest="sha256:" + "a" * 64,
    tree="2" * 40,
    trigger="pre-push",
    environment="production",
    labels=("release-42", "hotfix"),
    source=Source("refs/heads/main", "3" * 40),
    message="first line\nsecond line",
)


def test_payload_bytes_are_exactly_the_documented_layout() -> None:
    assert PAYLOAD.to_bytes().decode() == (
        f"object {'1' * 40}\n"
        "type commit\n"
        "tag govsnap/production/20261124T120000Z\n"
        "tagger Rel Eng <rel@example.com> 1795000000 -0130\n"
        "\n"
        "govsnap snapshot of main@1111111 (pre-push, production)\n"
        "\n"
        "first line\nsecond line\n"
        "\n"
        "Govsnap-Format: 1\n"
        f"Govsnap-Digest: sha256:{'a' * 64}\n"
        f"Govsnap-Tree: {'2' * 40}\n"
        f"Govsnap-Source: refs/heads/main {'3' * 40}\n"
        "Govsnap-Trigger: pre-push\n"
        "Govsnap-Environment: production\n"
        "Govsnap-Label: release-42\n"
        "Govsnap-Label: hotfix\n"
    )
    assert PAYLOAD.id == hashlib.sha256(PAYLOAD.to_bytes()).hexdigest()[:16]


def test_parse_round_trips() -> None:
    assert SnapshotPayload.parse(PAYLOAD.to_bytes()) == PAYLOAD


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (lambda b: b.replace(b"type commit", b"type tree"), "does not point at a commit"),
        (lambda b: b.replace(b"Govsnap-Format: 1", b"Govsnap-Format: 2"), "unsupported"),
        (lambda b: b.replace(b"Govsnap-Trigger: pre-push\n", b""), "Govsnap-Trigger"),
        (lambda b: b + b"Govsnap-Extra: x\n", "unknown trailer"),
        (lambda b: b + b"\n", "canonical"),
        (lambda b: b.replace(b"sha256:aaaa", b"sha256:zzzz"), "malformed"),
        (lambda b: b"\xff" + b, "UTF-8"),
    ],
)
def test_parse_rejects_what_is_not_a_canonical_payload(edit: object, reason: str) -> None:
    with pytest.raises(CorruptObject, match=reason):
        SnapshotPayload.parse(edit(PAYLOAD.to_bytes()))  # type: ignore[operator]


def test_signature_split_takes_the_last_block() -> None:
    body = PAYLOAD.to_bytes()
    sig = b"-----BEGIN SSH SIGNATURE-----\nabc\n-----END SSH SIGNATURE-----\n"
    tag = SignedTag.split(body + sig)
    assert tag.payload == body and tag.signature == sig and tag.signature_kind == "ssh"
    assert SignedTag.split(body).signature_kind == "none"
    assert snapshot_id(tag.payload) == PAYLOAD.id


@pytest.mark.parametrize("bad", ["", "../x", "a b", "-x", "x" * 65, "é"])
def test_names_are_validated(bad: str) -> None:
    with pytest.raises(UsageError):
        validate_name("label", bad)


def test_payload_survives_the_parsed_object_cache_form() -> None:
    values = marshal.loads(marshal.dumps(payload_to_tuple(PAYLOAD)))
    assert payload_from_tuple(values) == PAYLOAD
