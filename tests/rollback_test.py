"""rollback against real repositories, judged by stock git and the filesystem."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pygit2
import pytest
from pygit2.enums import FileMode, ObjectType

from govsnap.safepaths import unsafe_name
from tests.helpers import (
    BINARY,
    Cli,
    Keys,
    MakeRepo,
    all_refs,
    create_snapshot,
    files_state,
    git,
    git_bytes,
    govsnap_bin,
    openpgp_signer,
    snapshot_ids,
    trust_policy,
    write_files,
)


@pytest.fixture
def repo(make_repo: MakeRepo, keys: Keys) -> Path:
    """A repository with one commit, a signing key and a committed trust policy."""
    return make_repo(
        {
            "README.md": "hello\n",
            "src/app.py": "print('v1')\n",
            ".govsnap/trust.toml": trust_policy(keys),
        }
    )


def roll(cli: Cli, repo: Path, *args: str) -> dict[str, object]:
    result = cli(repo, "rollback", "--yes", "--json", *args)
    assert result.code == 0, result.err
    data: dict[str, object] = json.loads(result.out)
    return data


def tree_of(repo: Path, ident: str) -> str:
    return git(repo, "rev-parse", f"refs/govsnap/snapshots/{ident}^{{tree}}").strip()


def dirs_of(root: Path) -> set[str]:
    return {
        Path(d).relative_to(root).as_posix()
        for d, _, _ in os.walk(root)
        if ".git" not in Path(d).relative_to(root).parts
    }


def untracked(repo: Path) -> str:
    return git(repo, "ls-files", "-o", "--exclude-standard")


@pytest.fixture
def rich_repo(make_repo: MakeRepo, keys: Keys) -> Path:
    """A repository whose snapshot holds binary, executable, symlinked, non-ASCII and
    ignored-rule files."""
    repo = make_repo(
        {
            ".govsnap/trust.toml": trust_policy(keys),
            "README.md": "hello\n",
            "bin/data.bin": BINARY,
            "deep/a/b/c.txt": "deep\n",
            "naïve-文件.txt": "unicode\n",
            "run.sh": "#!/bin/sh\necho hi\n",
            ".gitignore": "*.log\n",
        }
    )
    (repo / "run.sh").chmod(0o755)
    os.symlink("deep/a/b/c.txt", repo / "link")
    os.symlink("deep", repo / "dirlink")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "kinds")
    return repo


def damage(repo: Path) -> None:
    """Change every kind of thing a rollback must put back."""
    (repo / "bin/data.bin").write_bytes(b"\0garbage")
    (repo / "run.sh").chmod(0o644)
    (repo / "link").unlink()
    os.symlink("README.md", repo / "link")
    (repo / "dirlink").unlink()
    (repo / "deep/a/b/c.txt").unlink()
    (repo / "naïve-文件.txt").write_text("changed\n")
    write_files(
        repo,
        {
            "stray.txt": "stray\n",
            "newdir/x/y.txt": "in a new directory\n",
            "build.log": "ignored, kept\n",
            "staged.txt": "staged\n",
        },
    )
    git(repo, "add", "staged.txt", "bin/data.bin")


def test_rollback_restores_exactly_and_leaves_head_and_ignored(cli: Cli, rich_repo: Path) -> None:
    repo = rich_repo
    ident = create_snapshot(cli, repo)
    expected = files_state(repo)
    head = git(repo, "rev-parse", "HEAD")
    damage(repo)

    data = roll(cli, repo, ident)

    tree = tree_of(repo, ident)
    git(repo, "diff", "--quiet", tree)  # working tree matches the snapshot, per git
    assert git(repo, "write-tree").strip() == tree  # the index is the snapshot tree
    assert untracked(repo) == ""
    assert git(repo, "rev-parse", "HEAD") == head
    got = files_state(repo)
    assert got.pop("build.log") == ("f", b"ignored, kept\n")
    assert got == expected
    assert not (repo / "newdir").exists()  # emptied directories are removed
    assert data["safety_snapshot"] in snapshot_ids(repo)
    assert data["undo"] == f"govsnap rollback {data['safety_snapshot']}"
    assert "rolled back to" in git(repo, "log", "-1", "--format=%s", "refs/govsnap/audit")
    payload = git(repo, "cat-file", "tag", f"refs/govsnap/snapshots/{data['safety_snapshot']}")
    assert "Govsnap-Trigger: pre-rollback" in payload and "Govsnap-Index: " in payload


def test_undo_restores_the_state_before_byte_for_byte(cli: Cli, rich_repo: Path) -> None:
    repo = rich_repo
    ident = create_snapshot(cli, repo)
    damage(repo)
    (repo / ".gitignore").unlink()  # the rollback restores it; the undo removes it again
    (repo / "README.md").write_text("staged version\n")
    git(repo, "add", "README.md")
    (repo / "README.md").write_text("unstaged on top\n")
    before = files_state(repo)
    staged = git(repo, "ls-files", "-s")
    status = git(repo, "status", "--porcelain", "--ignored")

    safety = roll(cli, repo, ident)["safety_snapshot"]
    assert files_state(repo) != before
    undo = roll(cli, repo, str(safety))

    assert str(undo["index_source"]).startswith("Govsnap-Index ")
    assert files_state(repo) == before
    assert git(repo, "ls-files", "-s") == staged
    assert git(repo, "status", "--porcelain", "--ignored") == status


def test_paths_restores_only_those_paths(cli: Cli, rich_repo: Path) -> None:
    repo = rich_repo
    ident = create_snapshot(cli, repo)
    damage(repo)
    write_files(repo, {"deep/a/extra.txt": "untracked in a restored directory\n"})
    index_before = git(repo, "ls-files", "-s", "--", "staged.txt", "bin/data.bin")

    roll(cli, repo, ident, "--paths", "deep", "run.sh")

    assert (repo / "deep/a/b/c.txt").read_text() == "deep\n"
    assert not (repo / "deep/a/extra.txt").exists()
    assert os.stat(repo / "run.sh").st_mode & stat.S_IXUSR
    # Everything else is as it was.
    assert (repo / "bin/data.bin").read_bytes() == b"\0garbage"
    assert (repo / "stray.txt").exists() and (repo / "newdir/x/y.txt").exists()
    assert os.readlink(repo / "link") == "README.md"
    assert git(repo, "ls-files", "-s", "--", "staged.txt", "bin/data.bin") == index_before
    tree = tree_of(repo, ident)
    git(repo, "diff", "--quiet", tree, "--", "deep", "run.sh")
    git(repo, "diff", "--cached", "--quiet", tree, "--", "deep", "run.sh")


def git_dir_files(repo: Path) -> dict[str, bytes]:
    """Every file below .git with its bytes, but what verification keeps: its caches (a
    digest and a safe-tree cache, which only save work) and the trust policy a clone
    remembers having verified."""
    git_dir = repo / ".git"
    return {
        str(p.relative_to(git_dir)): p.read_bytes()
        for p in git_dir.rglob("*")
        if p.is_file()
        and not p.name.startswith(("digest-cache", "safe-trees"))
        and "govsnap-verified" not in p.parts
    }


def test_dry_run_lists_and_touches_nothing(cli: Cli, rich_repo: Path) -> None:
    repo = rich_repo
    ident = create_snapshot(cli, repo)
    damage(repo)
    (repo / "untracked.bin").write_bytes(os.urandom(100_000))  # git add -A would store it
    before = (files_state(repo), dirs_of(repo), all_refs(repo), git(repo, "ls-files", "-s"))
    index_bytes = (repo / ".git/index").read_bytes()
    inside = git_dir_files(repo)

    result = cli(repo, "rollback", ident, "--dry-run", "--json")

    assert result.code == 0, result.err
    plan = json.loads(result.out)["plan"]
    assert (files_state(repo), dirs_of(repo), all_refs(repo), git(repo, "ls-files", "-s")) == before
    assert (repo / ".git/index").read_bytes() == index_bytes
    # The capture's objects went to a temporary directory: nothing new below .git.
    after = git_dir_files(repo)
    assert after == inside, sorted(set(after.items()) ^ set(inside.items()))[:5]
    assert {"bin/data.bin", "run.sh", "link", "dirlink", "deep/a/b/c.txt"} <= set(plan["write"])
    assert set(plan["remove"]) == {"stray.txt", "newdir/x/y.txt", "staged.txt", "untracked.bin"}
    assert plan["leave"] == ["build.log"]
    text = cli(repo, "rollback", ident, "--dry-run").out
    assert "remove stray.txt" in text and "leave  build.log" in text


def test_commit_moves_the_branch_forward(cli: Cli, rich_repo: Path) -> None:
    repo = rich_repo
    ident = create_snapshot(cli, repo)
    damage(repo)
    git(repo, "commit", "-q", "-am", "bad release")
    bad = git(repo, "rev-parse", "HEAD").strip()

    data = roll(cli, repo, ident, "--commit")

    assert git(repo, "rev-parse", "HEAD").strip() == data["commit"]
    assert git(repo, "rev-parse", "HEAD^").strip() == bad
    assert git(repo, "log", "-1", "--format=%s").strip() == f"Roll back to snapshot {ident}"
    assert git(repo, "rev-parse", "HEAD^{tree}").strip() == tree_of(repo, ident)
    assert git(repo, "symbolic-ref", "HEAD").strip() == "refs/heads/main"
    assert git(repo, "status", "--porcelain") == ""


def test_commit_with_paths_commits_only_those_paths(cli: Cli, repo: Path) -> None:
    ident = create_snapshot(cli, repo)
    (repo / "README.md").write_text("bad\n")
    (repo / "src/app.py").write_text("print('bad')\n")
    git(repo, "commit", "-q", "-am", "bad")
    (repo / "README.md").write_text("work in progress\n")
    git(repo, "add", "README.md")

    roll(cli, repo, ident, "--commit", "--paths", "src")

    assert git(repo, "show", "HEAD:src/app.py") == "print('v1')\n"
    assert git(repo, "show", "HEAD:README.md") == "bad\n"
    assert git(repo, "diff", "--cached", "--name-only").split() == ["README.md"]


def test_refused_during_a_merge_and_in_a_bare_repository(
    cli: Cli, repo: Path, tmp_path: Path
) -> None:
    ident = create_snapshot(cli, repo)
    git(repo, "checkout", "-q", "-b", "other")
    (repo / "README.md").write_text("other\n")
    git(repo, "commit", "-q", "-am", "other")
    git(repo, "checkout", "-q", "main")
    (repo / "README.md").write_text("main\n")
    git(repo, "commit", "-q", "-am", "main")
    subprocess.run(["git", "merge", "other"], cwd=repo, capture_output=True, check=False)
    assert (repo / ".git/MERGE_HEAD").exists()
    before = (files_state(repo), all_refs(repo))

    result = cli(repo, "rollback", ident, "--yes")

    assert result.code == 3 and "a merge is in progress" in result.err
    assert "git merge --abort" in result.err and len(result.err.splitlines()) == 1
    assert (files_state(repo), all_refs(repo)) == before

    bare = tmp_path / "bare.git"
    git(tmp_path, "clone", "-q", "--bare", str(repo), str(bare))
    result = cli(bare, "rollback", ident, "--yes")
    assert result.code == 3 and "bare repository" in result.err


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["ffff"], "no snapshot matches"),
        (["{id}", "src"], "name paths after --paths"),
        (["{id}", "--paths"], "needs at least one path"),
        (["{id}", "--paths", "../outside"], "not a path inside"),
        (["{id}", "--paths", "/etc/passwd"], "outside the working tree"),
        (["{id}", "--paths", "no/such/thing"], "neither in snapshot"),
    ],
)
def test_bad_input_is_one_line_and_changes_nothing(
    cli: Cli, repo: Path, args: list[str], needle: str
) -> None:
    ident = create_snapshot(cli, repo)
    (repo / "README.md").write_text("changed\n")
    before = (files_state(repo), all_refs(repo))
    result = cli(repo, "rollback", "--yes", *(a.replace("{id}", ident) for a in args))
    assert result.code == 2, result.err
    assert needle in result.err and len(result.err.splitlines()) == 1
    assert (files_state(repo), all_refs(repo)) == before


def test_without_yes_and_without_a_terminal_nothing_happens(cli: Cli, repo: Path) -> None:
    ident = create_snapshot(cli, repo)
    (repo / "README.md").write_text("changed\n")
    before = (files_state(repo), all_refs(repo))
    result = cli(repo, "rollback", ident)
    assert result.code == 2 and "pass --yes" in result.err
    assert (files_state(repo), all_refs(repo)) == before


def test_no_safety_snapshot_means_nothing_is_touched(cli: Cli, repo: Path) -> None:
    ident = create_snapshot(cli, repo)
    (repo / "README.md").write_text("changed\n")
    write_files(repo, {"new.txt": "new\n"})
    before = (files_state(repo), all_refs(repo), git(repo, "ls-files", "-s"))
    git(repo, "config", "gpg.program", "/nonexistent/gpg")

    result = cli(repo, "rollback", ident, "--yes", "--no-verify")

    assert result.code == 3 and "cannot take the safety snapshot" in result.err
    assert (files_state(repo), all_refs(repo), git(repo, "ls-files", "-s")) == before


def test_safety_snapshot_of_a_staged_index_cannot_be_committed(cli: Cli, repo: Path) -> None:
    ident = create_snapshot(cli, repo)
    safety = roll(cli, repo, ident)["safety_snapshot"]
    result = cli(repo, "rollback", str(safety), "--yes", "--commit")
    assert result.code == 2 and "without --commit" in result.err


def test_missing_blob_is_found_before_anything_is_written(cli: Cli, repo: Path) -> None:
    write_files(repo, {"lost.txt": "this blob will be deleted\n"})
    ident = create_snapshot(cli, repo)
    blob = git(repo, "rev-parse", f"refs/govsnap/snapshots/{ident}:lost.txt").strip()
    (repo / "lost.txt").unlink()
    (repo / "README.md").write_text("changed\n")
    (repo / ".git/objects" / blob[:2] / blob[2:]).unlink()
    before = files_state(repo)

    result = cli(repo, "rollback", ident, "--yes", "--no-verify")

    assert result.code == 3 and "missing from the object store" in result.err
    assert files_state(repo) == before


def test_corrupt_index_is_kept_aside_and_rebuilt(cli: Cli, repo: Path) -> None:
    ident = create_snapshot(cli, repo)
    (repo / "README.md").write_text("changed\n")
    (repo / ".git/index").write_bytes(b"DIRC garbage, not an index")

    result = cli(repo, "rollback", ident, "--yes", "--json")

    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert "unreadable" in data["warnings"][0]
    kept = list((repo / ".git/govsnap").glob("index.unreadable.*"))
    assert [p.read_bytes() for p in kept] == [b"DIRC garbage, not an index"]
    assert git(repo, "write-tree").strip() == tree_of(repo, ident)
    assert (repo / "README.md").read_text() == "hello\n"


def test_symlinks_in_the_work_tree_are_replaced_not_written_through(
    cli: Cli, repo: Path, tmp_path: Path
) -> None:
    write_files(repo, {"conf/settings.txt": "snapshot settings\n", "key.txt": "snapshot key\n"})
    ident = create_snapshot(cli, repo)
    outside = tmp_path / "outside"
    write_files(outside, {"key.txt": "precious\n"})
    for name in ("conf", "key.txt"):
        path = repo / name
        if path.is_dir():
            (path / "settings.txt").unlink()
            path.rmdir()
        else:
            path.unlink()
    os.symlink(outside, repo / "conf")
    os.symlink(outside / "key.txt", repo / "key.txt")

    roll(cli, repo, ident)

    assert sorted(os.listdir(outside)) == ["key.txt"]
    assert (outside / "key.txt").read_text() == "precious\n"
    assert not (repo / "conf").is_symlink() and not (repo / "key.txt").is_symlink()
    assert (repo / "conf/settings.txt").read_text() == "snapshot settings\n"
    assert (repo / "key.txt").read_text() == "snapshot key\n"


# --- malicious trees -------------------------------------------------------------------


def raw_tree(odb: pygit2.Odb, entries: Sequence[tuple[int, bytes, pygit2.Oid]]) -> pygit2.Oid:
    """Write a tree object byte by byte, so that names git would refuse can be stored
    (entries in git's order: a tree sorts as its name followed by '/')."""
    entries = sorted(entries, key=lambda e: e[1] + (b"/" if e[0] == FileMode.TREE else b""))
    data = b"".join(b"%o %s\0%s" % (mode, name, oid.raw) for mode, name, oid in entries)
    return odb.write(ObjectType.TREE, data)


def hostile_tree(repo: pygit2.Repository, shape: str) -> pygit2.Oid:
    odb = repo.odb
    blob = repo.create_blob(b"pwned\n")
    readme = repo.create_blob(b"hello\n")
    sub = raw_tree(odb, [(FileMode.BLOB, b"evil", blob)])
    top = [(FileMode.BLOB, b"README.md", readme)]
    named = {
        "dotdot": [(FileMode.TREE, b"..", sub)],
        "dot": [(FileMode.TREE, b".", sub)],
        "dotgit": [(FileMode.TREE, b".git", sub)],
        "dotgit-upper": [(FileMode.TREE, b".GiT", sub)],
        "dotgit-ntfs": [(FileMode.TREE, b".git. ", sub)],
        "dotgit-shortname": [(FileMode.TREE, b"GIT~1", sub)],
        "dotgit-hfs": [(FileMode.TREE, ".g\u200cit".encode(), sub)],
        "slash": [(FileMode.BLOB, b"a/../../evil", blob)],
        "absolute": [(FileMode.BLOB, b"/tmp/evil", blob)],
        "drive": [(FileMode.BLOB, b"C:evil", blob)],
        "backslash": [(FileMode.BLOB, b"..\\..\\evil", blob)],
        "gitmodules-link": [(FileMode.LINK, b".gitmodules", blob)],
    }
    if shape in named:
        return raw_tree(odb, top + named[shape])
    target = repo.create_blob(b"/tmp")
    if shape == "symlink-then-dir":
        entries = [(FileMode.LINK, b"a", target), (FileMode.TREE, b"a", sub)]
    elif shape == "symlink-case-collision":
        entries = [(FileMode.LINK, b"A", target), (FileMode.TREE, b"a", sub)]
    else:  # nested: the bad entry sits deep down
        deep = raw_tree(odb, [(FileMode.TREE, b"..", sub)])
        entries = [(FileMode.TREE, b"ok", raw_tree(odb, [(FileMode.TREE, b"d", deep)]))]
    return raw_tree(odb, top + entries)


@pytest.mark.parametrize(
    "shape",
    [
        "dotdot",
        "dot",
        "dotgit",
        "dotgit-upper",
        "dotgit-ntfs",
        "dotgit-shortname",
        "dotgit-hfs",
        "slash",
        "absolute",
        "drive",
        "backslash",
        "gitmodules-link",
        "symlink-then-dir",
        "symlink-case-collision",
        "nested",
    ],
)
def test_malicious_tree_is_refused_before_anything_is_written(
    cli: Cli, make_repo: MakeRepo, shape: str
) -> None:
    repo = make_repo({"README.md": "hello\n", "keep.txt": "mine\n"})
    git_repo = pygit2.Repository(str(repo))
    tree = hostile_tree(git_repo, shape)
    sig = pygit2.Signature("Mallory", "mallory@example.com", 1700000000, 0)
    commit = git_repo.create_commit(None, sig, sig, "hostile\n", tree, [])
    ident = create_snapshot(cli, repo, "--from", str(commit), "--unsigned")
    before = (files_state(repo), dirs_of(repo), snapshot_ids(repo), git(repo, "ls-files", "-s"))
    gitdir_before = {p.relative_to(repo) for p in (repo / ".git").rglob("*") if p.is_file()}

    result = cli(repo, "rollback", ident, "--yes", "--no-verify")

    assert result.code == 1, result.err
    assert "unsafe tree entry" in result.err and len(result.err.splitlines()) == 1
    assert (files_state(repo), dirs_of(repo), snapshot_ids(repo)) == before[:3]
    assert git(repo, "ls-files", "-s") == before[3]
    gitdir_after = {p.relative_to(repo) for p in (repo / ".git").rglob("*") if p.is_file()}
    assert not {p for p in gitdir_after - gitdir_before if "evil" in str(p)}
    assert not Path("/tmp/evil").exists()


@pytest.mark.parametrize(
    ("name", "mode", "bad"),
    [
        (b"README.md", FileMode.BLOB, False),
        (b"gitignore", FileMode.BLOB, False),
        (b".github", FileMode.TREE, False),
        (b".gitmodules", FileMode.BLOB, False),
        (b"..foo", FileMode.BLOB, False),
        (b"a b.txt", FileMode.BLOB, False),
        ("文件".encode(), FileMode.BLOB, False),
        (b"", FileMode.BLOB, True),
        (b"a\0b", FileMode.BLOB, True),
        (b"..", FileMode.TREE, True),
        (b".git::$INDEX_ALLOCATION", FileMode.TREE, True),
        (b"git~1", FileMode.TREE, True),
        (".git\ufeff".encode(), FileMode.TREE, True),
        (b"GITMOD~1", FileMode.LINK, True),
        (b".gitmodules ", FileMode.LINK, True),
        (b"x", 0o100664, True),
    ],
)
def test_unsafe_name_rules(name: bytes, mode: int, bad: bool) -> None:
    assert (unsafe_name(name, mode) is not None) == bad


def test_unverified_target_is_refused_unless_no_verify(cli: Cli, repo: Path) -> None:
    ident = create_snapshot(cli, repo, "--unsigned")
    (repo / "README.md").write_text("changed\n")
    before = (files_state(repo), all_refs(repo))

    refused = cli(repo, "rollback", ident, "--yes")

    assert refused.code == 1 and "failed verification" in refused.err
    assert "--no-verify" in refused.err and len(refused.err.splitlines()) == 1
    assert (files_state(repo), snapshot_ids(repo)) == (before[0], [ident])
    assert "refused" in git(repo, "log", "-1", "--format=%B", "refs/govsnap/audit")

    forced = cli(repo, "rollback", ident, "--yes", "--no-verify")
    assert forced.code == 0 and "NOT verified" in forced.err
    assert (repo / "README.md").read_text() == "hello\n"


def test_files_and_directories_swap_places(cli: Cli, repo: Path) -> None:
    write_files(repo, {"was-file": "a file in the snapshot\n", "was-dir/inner.txt": "inner\n"})
    ident = create_snapshot(cli, repo)
    (repo / "was-file").unlink()
    write_files(repo, {"was-file/untracked.txt": "now a directory\n"})
    (repo / "was-dir/inner.txt").unlink()
    (repo / "was-dir").rmdir()
    (repo / "was-dir").write_text("now a file\n")

    roll(cli, repo, ident)

    assert (repo / "was-file").read_text() == "a file in the snapshot\n"
    assert (repo / "was-dir/inner.txt").read_text() == "inner\n"
    assert git(repo, "write-tree").strip() == tree_of(repo, ident)
    git(repo, "diff", "--quiet")  # work tree = index
    assert untracked(repo) == ""


def test_file_names_that_are_not_utf8_roll_back_and_forth(cli: Cli, repo: Path) -> None:
    # Before, libgit2 was handed such a name as strict UTF-8 and failed half-way through,
    # after removing files, with an internal error that did not name the safety snapshot.
    before = files_state(repo)
    blob = git(repo, "hash-object", "-w", "--stdin", input_text="x\n").strip()
    raw = b"100644 caf\x80\xe9\0" + bytes.fromhex(blob)
    tree = git(repo, "hash-object", "-t", "tree", "-w", "--stdin", input_text=raw).strip()
    commit = git(repo, "commit-tree", tree, "-m", "latin-1 name").strip()
    ident = create_snapshot(cli, repo, "--from", commit)
    safety = roll(cli, repo, ident, "--allow-policy-change")["safety_snapshot"]
    top = os.fsencode(repo)
    assert sorted(os.listdir(top)) == [b".git", b"caf\x80\xe9"]
    assert Path(os.fsdecode(top + b"/caf\x80\xe9")).read_bytes() == b"x\n"
    roll(cli, repo, str(safety), "--allow-policy-change")
    assert files_state(repo) == before


def test_whoever_rolls_back_must_be_allowed_to(cli: Cli, make_repo: MakeRepo, keys: Keys) -> None:
    policy = (
        "version = 1\n"
        + openpgp_signer("releaser", keys.trusted, ["prod"])
        + openpgp_signer("developer", keys.other, ["*"], ["create"])
    )
    repo = make_repo({"app.py": "v1\n", ".govsnap/trust.toml": policy})
    ident = create_snapshot(cli, repo, "--environment", "prod")
    write_files(repo, {"app.py": "v2\n"})
    git(repo, "config", "govsnap.signingKey", keys.other)
    before = files_state(repo)

    refused = cli(repo, "rollback", ident, "--yes")
    assert refused.code == 1, refused.err
    assert refused.err.startswith(
        f"govsnap: error: refusing to roll back to {ident}: signer developer"
    )
    assert "may not rollback" in refused.err and len(refused.err.splitlines()) == 1
    # Nothing written, no safety snapshot; only the refusal is recorded.
    assert files_state(repo) == before
    assert snapshot_ids(repo) == [ident]
    assert "refused: not allowed" in git(repo, "log", "-1", "--format=%s", "refs/govsnap/audit")

    git(repo, "config", "govsnap.signingKey", keys.trusted)
    roll(cli, repo, ident)
    assert (repo / "app.py").read_text() == "v1\n"


# --- the trust policy and the undo (issue 14, item 5) ------------------------------------


def snapshot_without_policy(cli: Cli, repo: Path) -> str:
    """Return a snapshot of a commit older than the trust policy (its tree lacks it)."""
    tree = git(repo, "mktree", input_text=git(repo, "ls-tree", "HEAD", "README.md", "src"))
    commit = git(repo, "commit-tree", tree.strip(), "-m", "before the policy").strip()
    return create_snapshot(cli, repo, "--from", commit)


def test_a_rollback_refuses_to_remove_or_change_the_trust_policy(cli: Cli, repo: Path) -> None:
    old = snapshot_without_policy(cli, repo)
    (repo / "README.md").write_text("work in progress\n")
    before = (files_state(repo), all_refs(repo), git(repo, "ls-files", "-s"))

    refused = cli(repo, "rollback", old, "--yes")
    assert refused.code == 2, refused.err
    assert "would remove the trust policy .govsnap/trust.toml" in refused.err
    assert "--allow-policy-change" in refused.err and len(refused.err.splitlines()) == 1
    committed = cli(repo, "rollback", old, "--yes", "--commit")
    assert committed.code == 2 and "trust policy" in committed.err
    dry = cli(repo, "rollback", old, "--dry-run")
    assert dry.code == 2 and "remove .govsnap/trust.toml" in dry.out
    assert "--allow-policy-change" in dry.err
    assert json.loads(cli(repo, "rollback", old, "--dry-run", "--json").out)["blocked"]
    assert (files_state(repo), all_refs(repo), git(repo, "ls-files", "-s")) == before

    # An edited policy in the working tree counts too.
    (repo / ".govsnap/trust.toml").write_text((repo / ".govsnap/trust.toml").read_text() + "\n")
    latest = create_snapshot(cli, repo)
    (repo / ".govsnap/trust.toml").write_text("version = 1\n")
    changed = cli(repo, "rollback", latest, "--yes")
    assert changed.code == 2 and "would change the trust policy" in changed.err


def test_an_allowed_policy_change_prints_an_undo_that_works(cli: Cli, repo: Path) -> None:
    old = snapshot_without_policy(cli, repo)
    (repo / "README.md").write_text("work in progress\n")
    before = files_state(repo)

    done = roll(cli, repo, old, "--allow-policy-change")

    assert not (repo / ".govsnap").exists()
    undo = str(done["undo"]).split()
    assert undo == ["govsnap", "rollback", str(done["safety_snapshot"]), "--allow-policy-change"]
    roll(cli, repo, *undo[2:])
    assert files_state(repo) == before


def test_a_commit_that_would_leave_no_policy_to_verify_the_undo_is_refused(
    cli: Cli, repo: Path
) -> None:
    old = snapshot_without_policy(cli, repo)
    head = git(repo, "rev-parse", "HEAD")
    before = (files_state(repo), snapshot_ids(repo))

    refused = cli(repo, "rollback", old, "--yes", "--commit", "--allow-policy-change")

    assert refused.code == 2, refused.err
    assert "its undo could not be honoured" in refused.err and len(refused.err.splitlines()) == 1
    assert git(repo, "rev-parse", "HEAD") == head
    assert (files_state(repo), snapshot_ids(repo)) == before


def test_the_undo_of_an_unverified_rollback_by_a_key_outside_the_policy_works(
    cli: Cli, repo: Path, keys: Keys
) -> None:
    ident = create_snapshot(cli, repo)
    write_files(repo, {"README.md": "changed\n", "new.txt": "new\n"})
    before = files_state(repo)
    git(repo, "config", "govsnap.signingKey", keys.other)  # not in the trust policy
    assert cli(repo, "rollback", ident, "--yes").code == 1  # verification refuses the key

    done = roll(cli, repo, ident, "--no-verify")

    safety = str(done["safety_snapshot"])
    assert done["undo"] == f"govsnap rollback {safety} --no-verify"
    # The rule grants nothing: without --no-verify the policy still refuses this key.
    refused = cli(repo, "rollback", safety, "--yes")
    assert refused.code == 1 and "failed verification" in refused.err
    roll(cli, repo, safety, "--no-verify")
    assert files_state(repo) == before


def test_a_rollback_whose_undo_the_policy_would_refuse_writes_nothing(
    cli: Cli, make_repo: MakeRepo, keys: Keys
) -> None:
    # The release bot signs snapshots; the operator may roll back, not create: the
    # safety snapshot the operator's rollback would sign could not be rolled back to.
    policy = (
        "version = 1\n"
        + openpgp_signer("bot", keys.trusted, operations=("create", "rollback"))
        + openpgp_signer("operator", keys.other, operations=("rollback",))
    )
    repo = make_repo({"app.py": "v1\n", ".govsnap/trust.toml": policy})
    ident = create_snapshot(cli, repo)
    write_files(repo, {"app.py": "v2\n"})
    git(repo, "config", "govsnap.signingKey", keys.other)
    before = (files_state(repo), snapshot_ids(repo))

    refused = cli(repo, "rollback", ident, "--yes")

    assert refused.code == 2, refused.err
    assert "its undo could not be honoured" in refused.err and "may not create" in refused.err
    assert (files_state(repo), snapshot_ids(repo)) == before
    dry = cli(repo, "rollback", ident, "--dry-run")
    assert dry.code == 2 and "its undo could not be honoured" in dry.err


def test_a_key_outside_the_policy_gains_nothing_from_a_safety_snapshot_it_made(
    cli: Cli, repo: Path, keys: Keys
) -> None:
    # Anyone can sign a "pre-rollback" snapshot of anything; only the policy makes it
    # restorable without --no-verify.
    git(repo, "config", "govsnap.signingKey", keys.other)
    write_files(repo, {"src/app.py": "print('planted')\n"})
    planted = create_snapshot(cli, repo, "--trigger", "pre-rollback")
    (repo / "src/app.py").write_text("print('v1')\n")
    refused = cli(repo, "rollback", planted, "--yes")
    assert refused.code == 1 and "failed verification" in refused.err
    assert (repo / "src/app.py").read_text() == "print('v1')\n"


# --- what the red team found (issue 12 follow-up) ---------------------------------------


def test_nothing_is_read_through_a_symlink_into_the_safety_snapshot(
    cli: Cli, repo: Path, tmp_path: Path
) -> None:
    """A symlink to a directory outside the work tree that the snapshot replaces by a
    directory: git never looks through it, and the safety snapshot holds nothing read
    through it; its undo restores the symlink and the staged changes."""
    write_files(repo, {"link/file": "in the snapshot\n"})
    ident = create_snapshot(cli, repo)
    outside = tmp_path / "outside"
    write_files(outside, {"file": "SECRET outside the repository\n"})
    (repo / "link/file").unlink()
    (repo / "link").rmdir()
    os.symlink(outside, repo / "link")
    write_files(repo, {"s.txt": "staged\n"})
    git(repo, "add", "-A")
    status = git(repo, "status", "--porcelain=v2")

    done = roll(cli, repo, ident)

    safety = str(done["safety_snapshot"])
    commit = git(repo, "rev-parse", f"refs/govsnap/snapshots/{safety}^{{commit}}").strip()
    recorded = git(repo, "log", "--format=%H %P", "-1", f"{commit}^2").split()
    for oid in recorded[1:]:
        listing = git(repo, "ls-tree", "-r", oid)
        for line in listing.splitlines():
            blob = line.split()[2]
            assert b"SECRET" not in git_bytes(repo, "cat-file", "-p", blob), line
    roll(cli, repo, safety)
    assert os.readlink(repo / "link") == str(outside)
    assert git(repo, "status", "--porcelain=v2") == status
    assert (outside / "file").read_text() == "SECRET outside the repository\n"


def test_with_commit_the_output_says_where_head_went(cli: Cli, repo: Path) -> None:
    ident = create_snapshot(cli, repo)
    (repo / "README.md").write_text("bad\n")
    git(repo, "commit", "-q", "-am", "bad")
    result = cli(repo, "rollback", ident, "--yes", "--commit")
    assert result.code == 0, result.err
    head = git(repo, "rev-parse", "--short=12", "HEAD").strip()
    assert "HEAD unmoved" not in result.out and f"HEAD moved to {head}" in result.out


def test_absolute_paths_through_a_symlinked_checkout(cli: Cli, repo: Path, tmp_path: Path) -> None:
    """As git does, an absolute path that reaches the work tree through a symlink is
    inside it; a symlink inside the work tree names itself, not its target."""
    ident = create_snapshot(cli, repo)
    (repo / "src/app.py").write_text("print('bad')\n")
    alias = tmp_path / "alias"
    os.symlink(repo, alias)
    os.symlink("src", repo / "srclink")
    plan = json.loads(
        cli(alias, "rollback", ident, "--dry-run", "--json", "--paths", f"{alias}/src/app.py").out
    )["plan"]
    assert plan["write"] == ["src/app.py"]
    result = cli(alias, "rollback", ident, "--yes", "--paths", f"{alias}/src/app.py")
    assert result.code == 0, result.err
    assert (repo / "src/app.py").read_text() == "print('v1')\n"
    outside = cli(alias, "rollback", ident, "--dry-run", "--paths", str(tmp_path / "x"))
    assert outside.code == 2 and "outside the working tree" in outside.err


def test_every_listed_name_is_one_escaped_line(cli: Cli, repo: Path) -> None:
    """Names may hold newlines and terminal escapes: the dry run's listing and the
    warnings show each on one line, escaped."""
    ident = create_snapshot(cli, repo)
    for name in (b"two\nlines.txt", b"esc\x1b[31mred.txt"):
        with open(os.fsencode(repo) + b"/" + name, "wb") as fh:
            fh.write(b"x\n")
    result = cli(repo, "rollback", ident, "--dry-run")
    assert result.code == 0, result.err
    removed = [line for line in result.out.splitlines() if line.startswith("remove")]
    assert len(removed) == 2 and "\x1b" not in result.out
    assert any("two\\x0alines.txt" in line for line in removed)


FAILS_ON_RELEASE_1 = """
import os, sys
data = sys.stdin.buffer.read()
if data == b"release 1\\n" and os.path.exists(sys.argv[1]):
    sys.exit(1)
sys.stdout.buffer.write(data)
"""


def test_a_retried_rollback_restores_the_same_snapshot(
    cli: Cli, repo: Path, tmp_path: Path
) -> None:
    """`latest~N` counts release snapshots, not the safety snapshot a failed attempt
    adds: the playbook's "run the rollback again" restores the snapshot asked for."""
    flag = tmp_path / "fail"
    script = tmp_path / "smudge.py"
    script.write_text(FAILS_ON_RELEASE_1)
    git(repo, "config", "filter.f.clean", "cat")
    git(repo, "config", "filter.f.smudge", f"{sys.executable} {script} {flag}")
    git(repo, "config", "filter.f.required", "true")
    write_files(repo, {".gitattributes": "*.bin filter=f\n", "app.bin": "release 1\n"})
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "r1")
    release_1 = create_snapshot(cli, repo, "-l", "release-1")
    (repo / "app.bin").write_text("release 2\n")
    git(repo, "commit", "-q", "-am", "r2")
    create_snapshot(cli, repo, "-l", "release-2")
    (repo / "app.bin").write_text("release 3 (broken)\n")
    git(repo, "commit", "-q", "-am", "r3")
    flag.touch()
    assert cli(repo, "rollback", "latest~1", "--yes").code == 3
    flag.unlink()
    assert roll(cli, repo, "latest~1")["snapshot"] == release_1
    assert (repo / "app.bin").read_text() == "release 1\n"


def test_the_undo_of_a_recursive_rollback_restores_the_submodule(
    cli: Cli, repo: Path, tmp_path: Path
) -> None:
    """`--recurse-submodules` checks the submodule out at the snapshot's commit, detached
    as git leaves it. The printed undo carries the flag, and puts the submodule back on
    the branch it was on (its commit unchanged since)."""
    source = tmp_path / "subsrc"
    git(tmp_path, "init", "-q", "-b", "main", str(source))
    write_files(source, {"s": "s1\n"})
    git(source, "add", "s")
    git(source, "commit", "-q", "-m", "s1")
    write_files(source, {"s": "s2\n"})
    git(source, "commit", "-q", "-am", "s2")
    git(repo, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(source), "sub")
    git(repo / "sub", "checkout", "-q", "HEAD~1")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "submodule at s1")
    ident = create_snapshot(cli, repo)
    git(repo / "sub", "checkout", "-q", "main")
    write_files(repo, {"sub/lc": "local\n"})
    git(repo / "sub", "add", "lc")
    git(repo / "sub", "commit", "-q", "-m", "local commit")
    git(repo, "commit", "-q", "-am", "submodule at the local commit")
    head = git(repo / "sub", "rev-parse", "HEAD")
    status = git(repo, "status", "--porcelain=v2")

    done = roll(cli, repo, ident, "--recurse-submodules")

    assert not (repo / "sub" / "lc").exists()
    undo = str(done["undo"]).split()
    assert undo[2:] == [str(done["safety_snapshot"]), "--recurse-submodules"]
    roll(cli, repo, *undo[2:])
    assert git(repo / "sub", "rev-parse", "HEAD") == head
    assert git(repo / "sub", "symbolic-ref", "HEAD").strip() == "refs/heads/main"
    assert git(repo, "status", "--porcelain=v2") == status
    assert (repo / "sub" / "lc").read_text() == "local\n"


def test_a_fifo_in_a_replaced_directory_is_named(cli: Cli, repo: Path) -> None:
    """git's checkout deletes an ignored directory the snapshot replaces by a file; its
    files and empty directories come back with the undo, a FIFO cannot: the rollback
    says so."""
    write_files(repo, {"build": "a file in the snapshot\n"})
    ident = create_snapshot(cli, repo)
    (repo / "build").unlink()
    write_files(repo, {".gitignore": "build/\n", "build/x.o": "object\n"})
    (repo / "build" / "empty").mkdir()
    os.mkfifo(repo / "build" / "pipe")
    result = cli(repo, "rollback", ident, "--yes", "--json")
    assert result.code == 0, result.err
    assert any("build/pipe" in w for w in json.loads(result.out)["warnings"])
    roll(cli, repo, str(json.loads(result.out)["safety_snapshot"]))
    assert (repo / "build/x.o").read_text() == "object\n" and (repo / "build/empty").is_dir()
    assert not (repo / "build/pipe").exists()


def as_another_user(args: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """Run a command where permission bits apply: directly for a user, in a user
    namespace (mapped to uid 1000) for root; skip the test where neither is possible."""
    if os.geteuid() != 0:
        return subprocess.run(args, capture_output=True, text=True, check=False)
    wrapper = ["unshare", "--user", "--map-user=1000", "--map-group=1000"]
    probe = subprocess.run([*wrapper, "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip("permission bits do not apply to root here (no user namespaces)")
    return subprocess.run([*wrapper, *args], capture_output=True, text=True, check=False)


@pytest.mark.parametrize(
    "where", ["ignored-file", "untracked-in-a-replaced-directory", "directory-in-a-replaced-one"]
)
def test_an_unreadable_file_in_the_way(where: str, cli: Cli, repo: Path) -> None:
    """A file (or directory) the rollback would overwrite or remove but cannot read: one
    line, exit 3, nothing changed (no internal error), from the dry run too."""
    name = "secret.key" if where == "ignored-file" else "sub"
    write_files(repo, {name: "in the snapshot\n"})
    ident = create_snapshot(cli, repo)
    (repo / name).unlink()
    if where == "ignored-file":
        write_files(repo, {".gitignore": "*.key\n", "secret.key": "MY REAL KEY\n"})
        unreadable = repo / "secret.key"
    elif where == "untracked-in-a-replaced-directory":
        write_files(repo, {"sub/x": "x\n", "sub/secret": "UNREADABLE BUT PRECIOUS\n"})
        unreadable = repo / "sub" / "secret"
    else:
        write_files(repo, {"sub/x": "x\n", "sub/secret/file": "UNREADABLE BUT PRECIOUS\n"})
        unreadable = repo / "sub" / "secret"
    unreadable.chmod(0)
    try:
        before = files_state_readable(repo, unreadable)
        done = as_another_user([govsnap_bin(), "-C", str(repo), "rollback", ident, "--yes"])
        assert done.returncode == 3, done.stderr
        assert len(done.stderr.splitlines()) == 1 and "internal error" not in done.stderr
        assert "cannot read" in done.stderr and unreadable.name in done.stderr
        dry = as_another_user([govsnap_bin(), "-C", str(repo), "rollback", ident, "--dry-run"])
        assert "internal error" not in dry.stderr and unreadable.name in dry.stderr
        assert files_state_readable(repo, unreadable) == before
        assert not (repo / ".git" / "index.lock").exists()
    finally:
        unreadable.chmod(0o755 if unreadable.is_dir() else 0o644)


def files_state_readable(repo: Path, unreadable: Path) -> dict[str, tuple[str, bytes]]:
    """files_state with the unreadable file read with its permission restored."""
    unreadable.chmod(0o755 if unreadable.is_dir() else 0o644)
    try:
        return files_state(repo)
    finally:
        unreadable.chmod(0)
