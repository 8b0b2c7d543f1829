"""The payload's bytes: serialise, parse, reject, split signatures."""

from __future__ import annotations

import hashlib
import marshal
from pathlib import Path

import pygit2
import pytest

from govsnap import objects
from govsnap.errors import ConcurrentUpdate, CorruptObject, UsageError
from govsnap.objects import (
    RefValues,
    SignedTag,
    SnapshotPayload,
    Source,
    payload_from_tuple,
    payload_to_tuple,
    ref_target,
    snapshot_id,
    update_ref,
    update_refs,
    validate_name,
)
from govsnap.repo import Identity, Repo, open_repo
from tests.helpers import git

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
        "Govsnap-Format: 2\n"
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
        (lambda b: b.replace(b"Govsnap-Format: 2", b"Govsnap-Format: 3"), "unsupported"),
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


# --- multi-ref transactions ---------------------------------------------------------------


def _repo_with_commits(tmp_path: Path) -> tuple[Repo, list[pygit2.Oid]]:
    path = tmp_path / "repo"
    git(tmp_path, "init", "-q", str(path))
    repo = open_repo(path)
    sig = pygit2.Signature("A", "a@example.com", 1_795_000_000, 0)
    tree = repo.git.TreeBuilder().write()
    commits = [repo.git.create_commit(None, sig, sig, f"c{n}", tree, []) for n in range(3)]
    return repo, commits


def test_update_refs_changes_every_ref_or_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(objects, "_ATTEMPTS", 3)  # give up on a held lock at once
    repo, (a, b, c) = _repo_with_commits(tmp_path)
    git(repo.cwd, "update-ref", "refs/x/gone", str(a))

    def compute(current: RefValues) -> RefValues:
        assert current == {"refs/x/one": None, "refs/x/two": None, "refs/x/gone": a}
        return {"refs/x/one": b, "refs/x/two": c, "refs/x/gone": None}

    names = ["refs/x/one", "refs/x/two", "refs/x/gone"]
    update_refs(repo, names, compute)
    assert [ref_target(repo, n) for n in names] == [b, c, None]
    # A lock held on one ref (a killed writer's, say): nothing at all changes.
    (repo.commondir / "refs" / "x" / "two.lock").write_text("")
    with pytest.raises(ConcurrentUpdate, match=r"refs/x/two is locked: .*two\.lock exists"):
        update_refs(repo, names, lambda _current: {"refs/x/one": a, "refs/x/two": a})
    assert [ref_target(repo, n) for n in names] == [b, c, None]


def test_update_refs_computes_again_when_a_ref_moved(tmp_path: Path) -> None:
    repo, (a, b, c) = _repo_with_commits(tmp_path)
    seen: list[RefValues] = []

    def compute(current: RefValues) -> RefValues:
        seen.append(dict(current))
        if len(seen) == 1:  # another writer gets in between our read and our write
            git(repo.cwd, "update-ref", "refs/x/one", str(a))
        return {"refs/x/one": c if current["refs/x/one"] == a else b}

    update_refs(repo, ["refs/x/one"], compute)
    assert seen == [{"refs/x/one": None}, {"refs/x/one": a}]
    assert ref_target(repo, "refs/x/one") == c


def test_update_ref_names_a_lock_left_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # It used to say the ref "kept changing under us", which sent people looking for
    # another writer rather than for the lock a killed one left.
    monkeypatch.setattr(objects, "_ATTEMPTS", 3)
    repo, (a, _, _) = _repo_with_commits(tmp_path)
    lock = repo.commondir / "refs" / "notes" / "govsnap.lock"
    lock.parent.mkdir(parents=True)
    lock.write_text("")
    with pytest.raises(ConcurrentUpdate, match=r"refs/notes/govsnap is locked: .*govsnap\.lock"):
        update_ref(repo, "refs/notes/govsnap", lambda _current: a)
