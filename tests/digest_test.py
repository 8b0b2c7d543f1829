"""The content digest and its cache."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pygit2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from govsnap.digest import CACHE_NAME, DigestCache, digest_tree
from govsnap.errors import CorruptObject
from govsnap.repo import Repo, open_repo
from tests.helpers import MakeRepo, git


def test_digest_matches_the_manifest_definition(make_repo: MakeRepo) -> None:
    repo_path = make_repo({"b.txt": "b\n", "a/x.py": "x\n", "a.txt": ""})
    repo = open_repo(repo_path)
    tree = repo.git.revparse_single("HEAD^{tree}").id

    def record(path: bytes, content: bytes, end: bytes) -> bytes:
        return b"100644 " + hashlib.sha256(content).hexdigest().encode() + b" " + path + end

    # Format 2: NUL-terminated records, directories included, sorted by path bytes.
    records = [
        b"040000 - a/\0",
        record(b"a.txt", b"", b"\0"),
        record(b"a/x.py", b"x\n", b"\0"),
        record(b"b.txt", b"b\n", b"\0"),
    ]
    records.sort(key=lambda r: r.split(b" ", 2)[2])
    result = digest_tree(repo, tree)
    assert result.digest == "sha256:" + hashlib.sha256(b"".join(records)).hexdigest()
    assert (result.files, result.bytes, result.format) == (3, 4, 2)
    assert result.kinds[".txt"].count == 2 and result.kinds[".py"].bytes == 2
    # Format 1: one line per file.
    lines = sorted(
        [
            record(b"a.txt", b"", b"\n"),
            record(b"a/x.py", b"x\n", b"\n"),
            record(b"b.txt", b"b\n", b"\n"),
        ],
        key=lambda r: r.split(b" ", 2)[2],
    )
    expected_1 = "sha256:" + hashlib.sha256(b"".join(lines)).hexdigest()
    assert digest_tree(repo, tree, fmt=1).digest == expected_1


def test_cache_spares_unchanged_trees_and_blobs(make_repo: MakeRepo) -> None:
    repo_path = make_repo({f"d{i}/f{j}": f"{i}.{j}\n" for i in range(3) for j in range(4)})
    repo = open_repo(repo_path)
    tree = repo.git.revparse_single("HEAD^{tree}").id
    first = digest_tree(repo, tree, DigestCache.for_repo(repo))
    assert first.hashed_blobs == 12
    cached = digest_tree(repo, tree, DigestCache.for_repo(repo))
    uncached = digest_tree(repo, tree)
    assert cached.hashed_blobs == 0 and uncached.hashed_blobs == 12
    assert (cached.digest, cached.files, cached.bytes, cached.kinds) == (
        uncached.digest,
        uncached.files,
        uncached.bytes,
        uncached.kinds,
    )
    (repo_path / "d1" / "f0").write_text("changed\n")
    git(repo_path, "add", "-A")
    git(repo_path, "commit", "-qm", "change")
    newer = repo.git.revparse_single("HEAD^{tree}").id
    second = digest_tree(repo, newer, DigestCache.for_repo(repo))
    assert second.hashed_blobs == 1
    assert second.digest == digest_tree(repo, newer).digest


def test_a_corrupt_cache_file_is_ignored_reported_and_reset(make_repo: MakeRepo) -> None:
    repo_path = make_repo({"f": "x\n"})
    repo = open_repo(repo_path)
    tree = repo.git.revparse_single("HEAD^{tree}").id
    honest = digest_tree(repo, tree).digest
    path = repo.state_dir / CACHE_NAME
    path.write_bytes(b"this is not an sqlite database" * 100)
    cache = DigestCache.for_repo(repo)
    assert digest_tree(repo, tree, cache).digest == honest
    assert cache.problem() is not None
    cache.reset()
    assert cache.problem() is None
    assert digest_tree(repo, tree, DigestCache.for_repo(repo)).hashed_blobs == 1
    assert DigestCache.for_repo(repo).problem() is None


def test_deep_ignores_a_poisoned_cache(make_repo: MakeRepo) -> None:
    repo_path = make_repo({"f": "real\n"})
    repo = open_repo(repo_path)
    tree = repo.git.revparse_single("HEAD^{tree}").id
    honest = digest_tree(repo, tree).digest
    blob = pygit2.Oid(hex=git(repo_path, "rev-parse", "HEAD:f").strip())
    cache = DigestCache.for_repo(repo)
    cache.put_blob(blob.raw, hashlib.sha256(b"lie").digest(), 3)
    cache.flush()
    assert digest_tree(repo, tree, DigestCache.for_repo(repo)).digest != honest
    assert digest_tree(repo, tree, DigestCache.for_repo(repo), deep=True).digest == honest


def test_unsorted_tree_is_corrupt(make_repo: MakeRepo) -> None:
    repo_path = make_repo({"f": "x\n"})
    blob = git(repo_path, "rev-parse", "HEAD:f").strip()
    raw = b"".join(b"100644 " + name + b"\0" + bytes.fromhex(blob) for name in (b"b", b"a"))
    tree = git(
        repo_path, "hash-object", "-t", "tree", "-w", "--literally", "--stdin", input_text=raw
    ).strip()
    with pytest.raises(CorruptObject, match="not sorted"):
        digest_tree(open_repo(repo_path), tree)


def test_missing_blob_is_reported_not_crashed(make_repo: MakeRepo) -> None:
    repo_path = make_repo({"f": "gone\n"})
    blob = git(repo_path, "rev-parse", "HEAD:f").strip()
    loose = Path(repo_path, ".git", "objects", blob[:2], blob[2:])
    loose.chmod(0o644)
    loose.unlink()
    repo = open_repo(repo_path)
    tree = repo.git.revparse_single("HEAD^{tree}").id
    with pytest.raises(CorruptObject, match="is missing"):
        digest_tree(repo, tree)


def test_a_tree_libgit2_cannot_parse_is_a_corrupt_object(make_repo: MakeRepo) -> None:
    # A file mode libgit2 does not know makes it refuse the whole tree (an internal
    # error before); written raw, as an attacker with write access could.
    repo = open_repo(make_repo())
    blob = repo.git.create_blob(b"x\n")
    tree = repo.git.odb.write(pygit2.enums.ObjectType.TREE, b"777777 f\0" + blob.raw)
    with pytest.raises(CorruptObject, match="is malformed"):
        digest_tree(repo, tree)


# --- format 2 is injective ---------------------------------------------------------------

Node = tuple[str, object]  # ("file", (mode, content)), ("gitlink", oid hex), ("tree", {...})
_NAME_BYTES = st.sampled_from([b"a", b"b", b"\n", b" ", b"-", b".", b"0", b"100644 ", b"\xff"])
_NAMES = (
    st.lists(_NAME_BYTES, min_size=1, max_size=4)
    .map(b"".join)
    .filter(lambda n: n not in (b".", b"..") and n.lower() != b".git")
)
_FILES = st.tuples(
    st.sampled_from([0o100644, 0o100755, 0o120000]), st.sampled_from([b"", b"X", b"Y"])
)
_NODES: st.SearchStrategy[Node] = st.recursive(
    st.one_of(
        _FILES.map(lambda f: ("file", f)),
        st.sampled_from(["1" * 40, "2" * 40]).map(lambda o: ("gitlink", o)),
    ),
    lambda children: st.dictionaries(_NAMES, children, max_size=4).map(lambda d: ("tree", d)),
    max_leaves=8,
)
_TREES = st.dictionaries(_NAMES, _NODES, max_size=4)


def write_raw_tree(repo: pygit2.Repository, entries: dict[bytes, Node]) -> pygit2.Oid:
    """Write a tree object holding `entries`, in git's canonical order, byte for byte."""
    rows = []
    for name, (kind, value) in entries.items():
        if kind == "tree":
            assert isinstance(value, dict)
            rows.append((name + b"/", b"40000", name, write_raw_tree(repo, value).raw))
        elif kind == "gitlink":
            rows.append((name, b"160000", name, bytes.fromhex(str(value))))
        else:
            mode, content = value  # type: ignore[misc]
            rows.append((name, b"%o" % mode, name, repo.create_blob(content).raw))
    raw = b"".join(mode + b" " + name + b"\0" + oid for _, mode, name, oid in sorted(rows))
    return repo.odb.write(pygit2.enums.ObjectType.TREE, raw)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Repo:
    path = tmp_path_factory.mktemp("injective")
    pygit2.init_repository(str(path), bare=True)
    return open_repo(path)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(first=_TREES, second=_TREES)
def test_distinct_trees_never_share_a_format_2_digest(
    scratch: Repo, first: dict[bytes, Node], second: dict[bytes, Node]
) -> None:
    one, two = write_raw_tree(scratch.git, first), write_raw_tree(scratch.git, second)
    if one != two:
        assert digest_tree(scratch, one).digest != digest_tree(scratch, two).digest


def test_the_newline_collision_gives_two_digests_in_format_2(scratch: Repo) -> None:
    """One file named `a\\n100644 <sha256 of Y> b` holding X has the format-1 manifest of
    two files a = X and b = Y; format 2 tells them apart (issue 13, attack 5)."""
    forged_name = b"a\n100644 " + hashlib.sha256(b"Y").hexdigest().encode() + b" b"
    forged = write_raw_tree(scratch.git, {forged_name: ("file", (0o100644, b"X"))})
    honest = write_raw_tree(
        scratch.git, {b"a": ("file", (0o100644, b"X")), b"b": ("file", (0o100644, b"Y"))}
    )
    assert digest_tree(scratch, forged, fmt=1).digest == digest_tree(scratch, honest, fmt=1).digest
    assert digest_tree(scratch, forged).digest != digest_tree(scratch, honest).digest
    assert digest_tree(scratch, forged).newline_in_path


def test_an_empty_directory_changes_the_format_2_digest(scratch: Repo) -> None:
    bare = write_raw_tree(scratch.git, {b"f": ("file", (0o100644, b"X"))})
    with_dir = write_raw_tree(scratch.git, {b"f": ("file", (0o100644, b"X")), b"d": ("tree", {})})
    assert digest_tree(scratch, bare, fmt=1).digest == digest_tree(scratch, with_dir, fmt=1).digest
    assert digest_tree(scratch, bare).digest != digest_tree(scratch, with_dir).digest


def test_working_tree_files_stand_in_for_blobs_only_when_git_would_store_their_bytes(
    make_repo: MakeRepo,
) -> None:
    files: dict[str, str | bytes] = {f"d/f{n}.txt": f"file {n}\n" for n in range(12)}
    repo_path = make_repo({**files, "same.txt": "same\n", "edited.txt": "old\n", "fifo": "x\n"})
    (repo_path / "link").symlink_to("same.txt")
    git(repo_path, "add", "link")
    git(repo_path, "commit", "-q", "-m", "link")
    repo = open_repo(repo_path)
    tree = repo.git.revparse_single("HEAD^{tree}").id
    honest = digest_tree(repo, tree)
    # After the capture the working tree moved on: a file edited, one become a FIFO (which
    # must not block the read), and the link's target is not its blob.
    (repo_path / "edited.txt").write_text("new\n")
    (repo_path / "fifo").unlink()
    os.mkfifo(repo_path / "fifo")
    from_files = digest_tree(repo, tree, workdir=repo_path)
    assert (from_files.digest, from_files.files, from_files.bytes, from_files.kinds) == (
        honest.digest,
        honest.files,
        honest.bytes,
        honest.kinds,
    )
    assert from_files.hashed_blobs == honest.hashed_blobs == 16
    # The file that still holds its blob's bytes is read instead of the object store.
    blob = git(repo_path, "rev-parse", "HEAD:d/f3.txt").strip()
    (repo_path / ".git" / "objects" / blob[:2] / blob[2:]).unlink()
    assert digest_tree(repo, tree, workdir=repo_path).digest == honest.digest
    with pytest.raises(CorruptObject, match="is missing"):
        digest_tree(repo, tree)
