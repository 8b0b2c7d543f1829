"""Working-tree states judged by git, differentially.

Each case builds a state A with real git commands and snapshots it, then a state B;
then `govsnap rollback A` from B, its undo, and `govsnap rehearse` of both snapshots.
The judges are git's own (judge.py): the captured trees against `git add -A` +
`git write-tree` on a copy of the index; the state after the rollback against a twin
copy of B in which git checked A's tree out; the state after the undo against B. Each
case says what git does there; the test asserts govsnap does the same.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import pytest

from tests.conformance.judge import (
    BASE,
    PROCESS_FILTER,
    Case,
    Step,
    commit,
    copy_repo,
    create,
    git_capture,
    judge_case,
    lfs_setup,
    nothing,
    pointer_on_disk,
    python_script,
    rehearse_passes,
    rollback,
    run,
    sh,
    state,
    steps,
    twin_rollback,
    write,
)
from tests.helpers import Cli, MakeRepo, git, write_files


def process_filter_setup(repo: Path) -> None:
    command = python_script(repo.parent / f"{repo.name}-rev.py", PROCESS_FILTER)
    git(repo, "config", "filter.rev.process", command)
    git(repo, "config", "filter.rev.required", "true")
    write_files(repo, {".gitattributes": "*.rev filter=rev\n", "secret.rev": "abcdef\n"})
    sh(repo, commit("process filter"))


def submodule_setup(repo: Path) -> None:
    sub = repo.parent / f"{repo.name}-sub"
    git(repo.parent, "init", "-q", "-b", "main", str(sub))
    write_files(sub, {"lib.c": "int one;\n"})
    sh(sub, commit("one") + " && echo 'int two;' > lib.c && " + commit("two"))
    sh(repo, f"git -c protocol.file.allow=always submodule add -q {sub} sub")
    sh(repo, "git -C sub checkout -q HEAD~1 && " + commit("submodule at one"))


def nested_repository(with_commit: bool) -> Step:
    def step(repo: Path) -> None:
        nested = repo / "vendor" / "lib"
        git(repo, "init", "-q", str(nested))
        write_files(nested, {"x.txt": "nested\n"})
        if with_commit:
            sh(nested, commit("nested"))

    return step


def hooks_setup(repo: Path) -> None:
    git(repo, "config", "core.hooksPath", ".husky")
    from govsnap.cli import run as govsnap

    assert govsnap(["-C", str(repo), "hooks", "install"]) == 0


def symlink_out_of_the_tree(name: str) -> Step:
    """Replace directory `name` by a symlink to a directory outside the work tree that
    holds a file of the same name as the one the snapshot has there."""

    def step(repo: Path) -> None:
        outside = repo.parent / f"{repo.name}-outside"
        outside.mkdir()
        (outside / "file").write_text("SECRET outside the work tree\n")
        sh(repo, f"rm -r {name} && ln -s {outside} {name}")

    return step


def raw_name(name: bytes, content: bytes) -> Step:
    def step(repo: Path) -> None:
        with open(os.fsencode(repo) + b"/" + name, "wb") as fh:
            fh.write(content)

    return step


CASES = [
    Case(
        "modified-files",
        "read-tree writes the snapshot's content over files modified since",
        write({"src/app.py": "print('A')\n"}),
        write({"src/app.py": "print('B')\n", "docs/guide.md": "# changed\n"}),
    ),
    Case(
        "untracked-files",
        "git clean removes untracked files the snapshot lacks, and the directories left empty",
        nothing,
        write({"new.txt": "new\n", "newdir/deep/x.txt": "x\n", "src/extra.py": "pass\n"}),
    ),
    Case(
        "deleted-files",
        "read-tree writes back the files deleted since",
        nothing,
        steps("rm docs/guide.md src/lib/util.py"),
    ),
    Case(
        "staged-and-unstaged",
        "read-tree --reset makes index and file the snapshot's; the undo restores the split",
        write({"README.md": "A\n"}),
        steps(
            write({"README.md": "staged\n"}), "git add README.md", write({"README.md": "on top\n"})
        ),
    ),
    Case(
        "file-to-symlink",
        "read-tree replaces a symlink by the snapshot's file (type change T)",
        steps("echo target > t.txt && echo a > a && echo b > b && ln -s t.txt c"),
        steps("rm a && ln -s t.txt a && rm c && echo 'now a file' > c"),
    ),
    Case(
        "symlink-to-file",
        "read-tree replaces a file by the snapshot's symlink",
        steps("ln -s README.md link"),
        steps("rm link && echo 'a file' > link"),
    ),
    Case(
        "file-to-directory",
        "read-tree replaces a directory (with untracked files) by the snapshot's file",
        write({"x": "a file\n"}),
        steps("rm x && mkdir x && echo inner > x/inner.txt"),
    ),
    Case(
        "directory-to-file",
        "read-tree replaces a file by the snapshot's directory",
        write({"d/one.txt": "1\n", "d/two.txt": "2\n"}),
        steps("rm -r d && echo 'now a file' > d"),
    ),
    Case(
        "directory-to-symlink",
        "read-tree replaces a symlink by the snapshot's directory, never writing through it",
        write({"d/one.txt": "1\n"}),
        steps("rm -r d && ln -s src d"),
    ),
    Case(
        "directory-to-symlink-to-a-sibling",
        "read-tree replaces a symlink to a sibling directory holding a file of the same name "
        "by the snapshot's directory; git never looks through the symlink (has_symlinks_or_"
        "noent), and neither may the safety snapshot",
        write({"d/app.py": "in d\n"}),
        steps("rm -r d && ln -s src d"),
    ),
    Case(
        "directory-to-symlink-out-of-the-tree",
        "a staged symlink to a directory outside the work tree is replaced by the snapshot's "
        "directory; nothing outside is read, and the undo restores the symlink and the "
        "staged changes",
        write({"d/file": "in the tree\n"}),
        steps(
            symlink_out_of_the_tree("d"), "git add -A d", write({"s.txt": "s\n"}), "git add s.txt"
        ),
    ),
    Case(
        "symlink-to-directory",
        "read-tree replaces a directory by the snapshot's symlink",
        steps("ln -s src d"),
        steps("rm d && mkdir d && echo x > d/x.txt"),
    ),
    Case(
        "exec-bit",
        "read-tree sets the exec bit the snapshot records",
        steps("chmod +x bin/tool.sh"),
        steps("chmod -x bin/tool.sh && chmod +x README.md"),
    ),
    Case(
        "exec-bit-filemode-false",
        "with core.fileMode=false git records no exec bit change and leaves the bit alone on "
        "files it does not rewrite; the undo puts the bits back",
        write({"src/app.py": "print('A')\n"}),
        steps(
            "chmod +x README.md src/app.py && chmod -x bin/tool.sh", write({"src/app.py": "B\n"})
        ),
        setup=steps("git config core.fileMode false"),
    ),
    Case(
        "intent-to-add",
        "git add -A stages an intent-to-add entry's content; read-tree --reset drops the entry",
        nothing,
        steps(write({"planned.txt": "planned\n"}), "git add -N planned.txt"),
    ),
    Case(
        "intent-to-add-in-snapshot",
        "the snapshot holds the content of an intent-to-add file, as git add -A stages it",
        steps(write({"planned.txt": "planned\n"}), "git add -N planned.txt"),
        write({"planned.txt": "changed\n"}),
    ),
    Case(
        "skip-worktree",
        "git leaves a skip-worktree file's bytes alone; the entry keeps its flag",
        write({"src/app.py": "print('A')\n"}),
        steps("git update-index --skip-worktree README.md", write({"README.md": "local\n"})),
    ),
    Case(
        "skip-worktree-absent",
        "read-tree writes a skip-worktree entry the snapshot changes when there is no "
        "sparse checkout; the undo leaves it absent again",
        write({"src/app.py": "print('A')\n"}),
        steps(
            write({"src/app.py": "print('B')\n"}),
            commit("B committed"),
            "git update-index --skip-worktree src/app.py && rm src/app.py",
        ),
    ),
    Case(
        "assume-unchanged",
        "git's checkout refuses to overwrite a modified file it assumes unchanged ('not "
        "uptodate') until the flag is cleared; govsnap reads the file into the safety "
        "snapshot, then overwrites it as git does once the flag is cleared; the undo brings "
        "the edit and the flag back",
        write({"src/app.py": "print('A')\n"}),
        steps("git update-index --assume-unchanged src/app.py", write({"src/app.py": "mine\n"})),
        twin_prepare="git update-index --no-assume-unchanged src/app.py",
    ),
    Case(
        "sparse-cone",
        "read-tree respects the sparse-checkout cone: files outside it stay unwritten, "
        "skip-worktree set",
        write({"src/app.py": "print('A')\n", "docs/guide.md": "# A\n"}),
        steps(
            commit("A committed"),
            "git sparse-checkout set --cone src",
            write({"src/app.py": "print('B')\n", "src/new.py": "new\n"}),
        ),
    ),
    Case(
        "sparse-with-eol-attributes",
        "entries outside the cone carry attributes too; git writes none of them (git/git "
        "has `*.sh text eol=lf` and a sparse checkout of Documentation)",
        write({"src/app.py": "print('A')\n", "docs/guide.md": "# A\n"}),
        steps(
            commit("A committed"),
            write({"docs/guide.md": "# B\n"}),
            commit("B committed"),
            "git sparse-checkout set --cone src",
            write({"src/app.py": "print('B')\n"}),
        ),
        setup=steps("echo '* text eol=lf' > .gitattributes", commit("attributes")),
    ),
    Case(
        "sparse-files-outside-the-cone",
        "files present outside the sparse cone (an untracked one, a skip-worktree file "
        "written back by hand) are captured as git add -A --sparse stages them",
        write({"src/app.py": "print('A')\n"}),
        steps(
            commit("A committed"),
            "git sparse-checkout set --cone src",
            write({"docs/local-notes.md": "untracked outside\n", "docs/guide.md": "by hand\n"}),
        ),
    ),
    Case(
        "sparse-non-cone",
        "read-tree respects non-cone sparse-checkout patterns",
        write({"README.md": "A\n", "src/app.py": "print('A')\n"}),
        steps(
            commit("A committed"),
            "git sparse-checkout set --no-cone '/*.md' '/docs/'",
            write({"README.md": "B\n", "docs/new.md": "new\n"}),
        ),
    ),
    Case(
        "lfs-clean-smudge-filter",
        "git stores the clean filter's pointer and checkout runs smudge to write the content",
        write({"data.bin": b"\0A" * 6000}),
        write({"data.bin": b"\0B" * 7000, "more.bin": b"\1" * 9000}),
        setup=lfs_setup,
    ),
    Case(
        "lfs-pointer-on-disk",
        "a pointer left unsmudged on disk (GIT_LFS_SKIP_SMUDGE) cleans to itself; git's "
        "checkout of another version smudges; checking the pointer's own blob out would "
        "smudge it too, so the undo writes the pointer back byte for byte",
        write({"data.bin": b"\0A" * 6000}),
        steps(write({"data.bin": b"\0B" * 7000}), commit("B"), pointer_on_disk),
        setup=lfs_setup,
    ),
    Case(
        "process-filter",
        "git runs the long-running filter.<driver>.process for clean and smudge",
        write({"secret.rev": "A content\n"}),
        write({"secret.rev": "B content\n", "other.rev": "more\n"}),
        setup=process_filter_setup,
    ),
    Case(
        "text-auto",
        "text=auto normalises CRLF to LF in the blob; checkout writes the eol git chooses",
        write({"win.txt": b"a\r\nb\r\n"}),
        write({"win.txt": b"c\r\nd\r\n", "new.txt": b"e\r\n"}),
        setup=steps("echo '* text=auto' > .gitattributes", commit("attributes")),
    ),
    Case(
        "eol-crlf",
        "eol=crlf writes CRLF on checkout (blobs hold LF)",
        write({"run.bat": "echo A\n"}),
        write({"run.bat": b"echo B\r\n"}),
        setup=steps(
            "echo '*.bat eol=crlf' > .gitattributes", write({"run.bat": "echo 0\n"}), commit("bat")
        ),
    ),
    Case(
        "autocrlf-true",
        "core.autocrlf=true stores LF and checks out CRLF",
        write({"win.txt": b"A\r\n"}),
        write({"win.txt": b"B\r\n", "README.md": b"B\r\n"}),
        setup=steps("git config core.autocrlf true"),
    ),
    Case(
        "autocrlf-true-lf-files",
        "under core.autocrlf=true an LF file checks out as CRLF: git's checkout would not "
        "give the bytes back, so the undo writes them itself",
        write({"src/app.py": "print('A')\n"}),
        write({"src/app.py": "print('B')\n", "untracked-lf.txt": "lf\n"}),
        setup=steps("git config core.autocrlf true"),
    ),
    Case(
        "autocrlf-input",
        "core.autocrlf=input converts CRLF to LF when adding, never on checkout",
        write({"win.txt": b"A\r\n"}),
        write({"win.txt": b"B\r\n"}),
        setup=steps("git config core.autocrlf input"),
    ),
    Case(
        "text-auto-eol-lf",
        "text=auto eol=lf (as tldr-pages has it) writes LF; a CRLF edit cleans to LF",
        write({"page.md": "A\n"}),
        write({"page.md": b"B\r\n"}),
        setup=steps("echo '* text=auto eol=lf' > .gitattributes", commit("attributes")),
    ),
    Case(
        "attributes-change",
        "checkout applies the snapshot's own .gitattributes to the files it writes",
        write({".gitattributes": "*.txt eol=crlf\n", "notes.txt": "A\n"}),
        steps("rm .gitattributes", write({"notes.txt": "B\n"})),
    ),
    Case(
        "submodule-moved",
        "read-tree moves the gitlink in the index; the submodule's directory is left",
        nothing,
        steps("git mv sub moved"),
        setup=submodule_setup,
    ),
    Case(
        "submodule-dirty",
        "without --recurse-submodules read-tree updates the gitlink only; the submodule's "
        "own changes are left alone",
        steps("git -C sub checkout -q main", commit("submodule at two")),
        steps("git -C sub checkout -q HEAD~1", write({"sub/lib.c": "dirty\n"})),
        setup=submodule_setup,
    ),
    Case(
        "submodule-uninitialised",
        "read-tree updates the gitlink of an uninitialised submodule; nothing is checked out",
        steps("git -C sub checkout -q main", commit("submodule at two")),
        steps("git submodule deinit -q -f sub"),
        setup=submodule_setup,
    ),
    Case(
        "nested-repository",
        "git add -A records an untracked nested repository as a gitlink (with a warning); "
        "git's checkout and clean never touch it",
        write({"src/app.py": "print('A')\n"}),
        steps(nested_repository(with_commit=True), write({"src/app.py": "B\n"})),
    ),
    Case(
        "nested-repository-without-commit",
        "git add -A refuses a nested repository with no commit; a rollback leaves it out "
        "of its safety snapshot and alone",
        write({"src/app.py": "print('A')\n"}),
        steps(nested_repository(with_commit=False), write({"src/app.py": "B\n"})),
    ),
    Case(
        "damaged-gitmodules",
        "git add -A and read-tree ignore a .gitmodules git cannot parse",
        nothing,
        write({".gitmodules": '[submodule "x"\n\tpath = x\n garbage = = =\n[[[\n'}),
    ),
    Case(
        "untracked-symlink-symlinks-false",
        "with core.symlinks=false git checks a symlink out as a file holding its target; "
        "git clean removes an untracked real symlink and the undo brings it back as one",
        write({"src/app.py": "print('A')\n"}),
        steps("ln -s src real-symlink", write({"src/app.py": "B\n"})),
        setup=steps("git config core.symlinks false"),
    ),
    Case(
        "ignored-directory-replaced-by-a-file",
        "git's checkout deletes an ignored directory where the snapshot has a file; the undo "
        "brings back its files and its empty subdirectories",
        write({"build": "a file in A\n"}),
        steps(
            "rm build && echo 'build/' > .gitignore",
            "mkdir -p build/empty/deeper build/out && echo x > build/out/x.o",
        ),
    ),
    Case(
        "tracked-ignored-file",
        "a tracked file matched by .gitignore is tracked all the same",
        steps("echo '*.log' > .gitignore", write({"keep.log": "A\n"}), "git add -f keep.log"),
        write({"keep.log": "B\n"}),
    ),
    Case(
        "ignored-files-kept",
        "ignored files are never removed: git clean without -x keeps them",
        steps("echo '*.log' > .gitignore && echo 'node_modules/' >> .gitignore"),
        write({"build.log": "ignored\n", "node_modules/pkg/index.js": "x\n", "stray.txt": "s\n"}),
    ),
    Case(
        "ignored-by-snapshot-rules",
        "a file the snapshot's .gitignore ignores is left, as git clean leaves ignored files",
        steps("echo '*.tmp' > .gitignore"),
        steps("rm .gitignore", write({"cache.tmp": "cached\n"})),
    ),
    Case(
        "ignored-file-in-the-way",
        "git's checkout overwrites an ignored file where the snapshot has a tracked one",
        write({"out.log": "tracked in A\n"}),
        steps(
            "git rm -q --cached out.log 2>/dev/null || true",
            "echo '*.log' > .gitignore",
            write({"out.log": "ignored in B\n"}),
        ),
    ),
    Case(
        "hooks-path-in-tree",
        "the untracked hooks govsnap installed in an in-tree core.hooksPath are kept",
        write({"src/app.py": "print('A')\n"}),
        write({"src/app.py": "B\n"}),
        setup=hooks_setup,
        keep=(b".husky",),
    ),
    Case(
        "empty-directories",
        "git does not track directories: an empty one it does not know stays",
        nothing,
        steps("mkdir -p empty nested/empty/dir"),
    ),
    Case(
        "directory-emptied",
        "read-tree removes files the snapshot lacks, then the directories they leave empty",
        steps("rm -r docs"),
        write({"docs/more.md": "more\n"}),
    ),
    Case(
        "non-utf8-names",
        "git stores names as bytes; a Latin-1 name is checked out as the same bytes",
        raw_name(b"caf\xe9-A.txt", b"A\n"),
        steps(raw_name(b"caf\xe9-A.txt", b"B\n"), raw_name(b"na\xefve-B.txt", b"B\n")),
    ),
    Case(
        "newline-in-names",
        "a name may hold a newline; git handles it with -z",
        raw_name(b"line\nbreak-A.txt", b"A\n"),
        steps(raw_name(b"line\nbreak-A.txt", b"B\n"), raw_name(b"new\nline-B.txt", b"B\n")),
    ),
    Case(
        "unborn-branch",
        "on an unborn branch there is no HEAD: read-tree works on the index alone",
        write({"src/app.py": "print('A')\n"}),
        write({"src/app.py": "B\n", "new.txt": "n\n"}),
        setup=steps("git checkout -q --orphan fresh && git rm -r -q --cached ."),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_state(case: Case, cli: Cli, make_repo: MakeRepo, tmp_path: Path) -> None:
    repo = make_repo(BASE)
    git(repo, "config", "govsnap.requireTrust", "false")
    (repo / "bin/tool.sh").chmod(0o755)
    sh(repo, commit("executable"))
    case.setup(repo)
    judge_case(cli, repo, case, tmp_path)


@pytest.mark.parametrize("kind", ["shallow", "partial"])
def test_clones(kind: str, cli: Cli, make_repo: MakeRepo, tmp_path: Path) -> None:
    """A shallow clone has no history before its tip; a partial clone lacks blobs git
    fetches on demand (`git archive` and checkout do). A snapshot of an older commit
    (partial) or of the working tree (both) rolls back and undoes as elsewhere."""
    source = make_repo(BASE, name="source")
    for n in range(3):
        write_files(source, {"src/app.py": f"print({n})\n", f"history/{n}.txt": f"{n}\n"})
        sh(source, commit(f"history {n}"))
    git(source, "config", "uploadpack.allowFilter", "true")
    git(source, "config", "uploadpack.allowAnySHA1InWant", "true")
    repo = tmp_path / kind
    option = "--depth=1" if kind == "shallow" else "--filter=blob:none"
    git(tmp_path, "clone", "-q", option, f"file://{source}", str(repo))
    signing_key = git(source, "config", "govsnap.signingKey").strip()
    git(repo, "config", "govsnap.signingKey", signing_key)
    git(repo, "config", "govsnap.requireTrust", "false")
    if kind == "partial":
        missing = run(repo, "rev-list", "--objects", "--missing=print", "HEAD~2")
        assert b"\n?" in b"\n" + missing  # the old blobs are not here
        a, tree = create(cli, repo, "--from", "HEAD~2")
        assert tree == git(repo, "rev-parse", "HEAD~2^{tree}").strip()
        write_files(repo, {"src/app.py": "B\n", "new.txt": "n\n"})
        before = state(repo)
        twin = copy_repo(repo, tmp_path / "twin")
        done = rollback(cli, repo, a)
        twin_rollback(twin, tree)
        assert state(repo) == state(twin), state(repo).differences(state(twin))
        rollback(cli, repo, *shlex.split(str(done["undo"]))[2:])
        assert state(repo) == before, state(repo).differences(before)
        rehearse_passes(cli, repo, a)
        return
    case = Case("shallow", "", write({"src/app.py": "A\n"}), write({"src/app.py": "B\n"}))
    judge_case(cli, repo, case, tmp_path)


def test_linked_worktree(cli: Cli, make_repo: MakeRepo, tmp_path: Path) -> None:
    """A linked worktree (`git worktree add`) has its own index and HEAD in
    .git/worktrees/<name>; git's checkout there leaves the main working tree alone."""
    main = make_repo(BASE, name="main")
    git(main, "config", "govsnap.requireTrust", "false")
    linked = tmp_path / "linked"
    git(main, "worktree", "add", "-q", "-b", "side", str(linked))
    main_before = state(main)
    case = Case(
        "linked-worktree",
        "",
        write({"src/app.py": "A\n"}),
        steps(write({"src/app.py": "B\n", "new.txt": "n\n"}), "git add new.txt"),
        rehearse=True,
    )
    case.target(linked)
    a, tree = create(cli, linked)
    assert tree == git_capture(linked)
    case.current(linked)
    before = state(linked)
    # The twin: copies of both, the linked one pointed at the copied main repository.
    twin_main = copy_repo(main, tmp_path / "twin-main")
    twin = copy_repo(linked, tmp_path / "twin-linked")
    admin = twin_main / ".git" / "worktrees" / "linked"
    (twin / ".git").write_text(f"gitdir: {admin}\n")
    (admin / "gitdir").write_text(f"{twin / '.git'}\n")
    done = rollback(cli, linked, a)
    twin_rollback(twin, tree)
    assert state(linked) == state(twin), state(linked).differences(state(twin))
    assert state(main) == main_before  # the main working tree is not touched
    rollback(cli, linked, *shlex.split(str(done["undo"]))[2:])
    assert state(linked) == before, state(linked).differences(before)
    rehearse_passes(cli, linked, a)


def test_the_rule_is_stated_for_every_case() -> None:
    assert len(CASES) + 3 >= 40
    assert all(case.git_does for case in CASES)
    assert len({case.id for case in CASES}) == len(CASES)
