"""The content digest and its cache."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pygit2
import pytest

from govsnap.digest import CACHE_NAME, DigestCache, digest_tree
from govsnap.errors import CorruptObject
from govsnap.repo import open_repo
from tests.conftest import MakeRepo, git


def test_digest_matches_the_manifest_definition(make_repo: MakeRepo) -> None:
    repo_path = make_repo({"b.txt": "b\n", "a/x.py": "x\n", "a.txt": ""})
    repo = open_repo(repo_path)
    tree = repo.git.revparse_single("HEAD^{tree}").id
    lines = sorted(
        [
            (b"a.txt", b"100644 " + hashlib.sha256(b"").hexdigest().encode() + b" a.txt\n"),
            (b"a/x.py", b"100644 " + hashlib.sha256(b"x\n").hexdigest().encode() + b" a/x.py\n"),
            (b"b.txt", b"100644 " + hashlib.sha256(b"b\n").hexdigest().encode() + b" b.txt\n"),
        ]
    )
    expected = "sha256:" + hashlib.sha256(b"".join(line for _, line in lines)).hexdigest()
    result = digest_tree(repo, tree)
    assert result.digest == expected
    assert (result.files, result.bytes) == (3, 4)
    assert result.kinds[".txt"].count == 2 and result.kinds[".py"].bytes == 2


def test_cache_persists_and_a_torn_record_is_ignored_then_repaired(make_repo: MakeRepo) -> None:
    repo_path = make_repo({f"f{i}": f"{i}\n" for i in range(5)})
    repo = open_repo(repo_path)
    tree = repo.git.revparse_single("HEAD^{tree}").id
    first = digest_tree(repo, tree, DigestCache.for_repo(repo))
    assert first.hashed_blobs == 5
    path = repo.state_dir / CACHE_NAME
    with path.open("ab") as fh:
        fh.write(b"torn!")
    cache = DigestCache.for_repo(repo)
    assert len(cache) == 5 and cache.torn_bytes == 5
    again = digest_tree(repo, tree, cache)
    assert again.hashed_blobs == 0 and again.digest == first.digest
    # The next append cuts the torn tail off first, so records stay aligned.
    (repo_path / "new").write_text("new\n")
    git(repo_path, "add", "new")
    newer = repo.git.index.write_tree()
    assert digest_tree(repo, newer, cache).hashed_blobs == 1
    assert path.stat().st_size == 6 * 60
    assert len(DigestCache.for_repo(repo)) == 6


def test_deep_ignores_a_poisoned_cache(make_repo: MakeRepo) -> None:
    repo_path = make_repo({"f": "real\n"})
    repo = open_repo(repo_path)
    tree = repo.git.revparse_single("HEAD^{tree}").id
    honest = digest_tree(repo, tree).digest
    blob = pygit2.Oid(hex=git(repo_path, "rev-parse", "HEAD:f").strip())
    cache = DigestCache.for_repo(repo)
    cache.put(blob.raw, hashlib.sha256(b"lie").digest(), 3)
    cache.flush()
    assert digest_tree(repo, tree, DigestCache.for_repo(repo)).digest != honest
    assert digest_tree(repo, tree, DigestCache.for_repo(repo), deep=True).digest == honest


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
