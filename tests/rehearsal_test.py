"""rehearse: the real rollback in a throwaway clone; the user's checkout stays untouched."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.helpers import (
    BINARY,
    Cli,
    Keys,
    MakeRepo,
    create_snapshot,
    files_state,
    git,
    govsnap_bin,
    trust_policy,
    write_files,
)


def user_state(repo: Path) -> tuple[object, ...]:
    """Everything a rehearsal must leave alone: files, index, HEAD, non-govsnap refs."""
    refs = [
        line
        for line in git(repo, "for-each-ref", "--format=%(refname) %(objectname)").splitlines()
        if not line.startswith(("refs/govsnap/", "refs/govsnap-verified/", "refs/notes/govsnap"))
    ]
    return (
        files_state(repo),
        (repo / ".git/index").read_bytes(),
        (repo / ".git/HEAD").read_text(),
        refs,
        git(repo, "status", "--porcelain", "--ignored"),
    )


def leftovers() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("govsnap-rehearsal-*")}


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary directory of the test's own: other tests rehearsing at the same time
    (pytest-xdist) leave their clones in the shared one for a while."""
    private = tmp_path / "private-tmp"
    private.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private))
    return private


@pytest.fixture
def repo(make_repo: MakeRepo, keys: Keys) -> Path:
    """A trusted repository with a few dozen files of every kind and a dirty checkout."""
    files: dict[str, str | bytes] = {f"src/m{i:02d}.py": f"print({i})\n" for i in range(30)}
    files.update({".govsnap/trust.toml": trust_policy(keys), "bin/blob.bin": BINARY})
    repo = make_repo(files)
    (repo / "run.sh").write_text("#!/bin/sh\n")
    (repo / "run.sh").chmod(0o755)
    os.symlink("src/m00.py", repo / "link")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "kinds")
    return repo


def dirty(repo: Path) -> None:
    (repo / "src/m01.py").write_text("local edit\n")
    write_files(repo, {"untracked.txt": "mine\n", "staged.txt": "staged\n"})
    git(repo, "add", "staged.txt")


def test_rehearsal_passes_and_leaves_the_checkout_untouched(
    cli: Cli, repo: Path, tmp_path: Path, private_tmp: Path
) -> None:
    ident = create_snapshot(cli, repo)
    dirty(repo)
    before = user_state(repo)

    (tmp_path / "out").mkdir()
    result = cli(repo, "rehearse", ident, "--json", "--report", str(tmp_path / "out/drill"))

    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert report["verdict"] == "pass" and report["failed_gates"] == []
    assert [g["name"] for g in report["gates"]] == [
        "safe-tree",
        "rollback",
        "digest",
        "files",
        "no-stray",
        "index",
        "rto",
    ]
    assert [d["kind"] for d in report["damage"]] == ["delete", "corrupt", "stray", "index"]
    assert all(d["paths"] for d in report["damage"])
    assert report["rollback_seconds"] < report["rto_seconds"] == 300
    assert user_state(repo) == before
    assert leftovers() == set()
    on_disk = json.loads((tmp_path / "out/drill.json").read_text())
    assert on_disk["verdict"] == "pass" and on_disk["snapshot"] == ident
    markdown = (tmp_path / "out/drill.md").read_text()
    assert "**Verdict: PASS**" in markdown and "| files | pass |" in markdown
    note = json.loads(
        git(repo, "notes", "--ref=govsnap", "show", f"refs/govsnap/snapshots/{ident}")
    )
    assert note["rehearsal"]["verdict"] == "pass"
    assert note["rehearsal"]["damage"] == ["delete", "corrupt", "stray", "index"]
    assert "rehearse: rehearsal of" in git(repo, "log", "-1", "--format=%s", "refs/govsnap/audit")
    # Only the note and the audit trail moved among govsnap's refs: no snapshot was added.
    assert git(repo, "for-each-ref", "--format=%(refname)", "refs/govsnap/snapshots/").split() == [
        f"refs/govsnap/snapshots/{ident}"
    ]


@pytest.mark.parametrize("kind", ["delete", "corrupt", "stray", "index"])
def test_each_damage_kind_is_repaired(cli: Cli, repo: Path, kind: str) -> None:
    create_snapshot(cli, repo)
    result = cli(repo, "rehearse", "--damage", kind, "--json")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert [d["kind"] for d in report["damage"]] == [kind]
    assert report["verdict"] == "pass"
    assert report["report_files"][0].startswith(str(repo / ".git/govsnap/rehearsals"))


def test_rehearsal_fails_when_a_blob_is_missing_and_says_which_gates(cli: Cli, repo: Path) -> None:
    write_files(repo, {"lost.bin": b"\x01 this blob is removed from the object store"})
    ident = create_snapshot(cli, repo)
    blob = git(repo, "rev-parse", f"refs/govsnap/snapshots/{ident}:lost.bin").strip()
    (repo / ".git/objects" / blob[:2] / blob[2:]).unlink()
    (repo / "lost.bin").unlink()
    before = user_state(repo)

    result = cli(repo, "rehearse", ident, "--json")

    assert result.code == 1
    assert result.err.startswith(f"govsnap: error: rehearsal of {ident} failed: rollback")
    report = json.loads(result.out)
    gates = {g["name"]: g for g in report["gates"]}
    assert not gates["rollback"]["passed"] and blob in gates["rollback"]["detail"]
    assert not gates["files"]["passed"] and "lost.bin (missing)" in gates["files"]["detail"]
    assert not gates["rto"]["passed"]
    assert report["verdict"] == "fail"
    note = json.loads(
        git(repo, "notes", "--ref=govsnap", "show", f"refs/govsnap/snapshots/{ident}")
    )
    assert note["rehearsal"]["verdict"] == "fail"
    assert "rollback" in note["rehearsal"]["failed_gates"]
    assert user_state(repo) == before
    text = cli(repo, "rehearse", ident).out
    assert "gate   rollback  FAIL" in text


def test_recovery_objective_is_a_gate(cli: Cli, repo: Path) -> None:
    create_snapshot(cli, repo)
    git(repo, "config", "govsnap.rto", "1")
    assert json.loads(cli(repo, "rehearse", "--json").out)["rto_seconds"] == 1
    result = cli(repo, "rehearse", "--rto", "0.000001", "--json")
    assert result.code == 1
    assert json.loads(result.out)["failed_gates"] == ["rto"]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--damage", "fire"], "unknown damage"),
        (["--rto", "0"], "must be positive"),
        (["ffff"], "no snapshot matches"),
    ],
)
def test_bad_input_is_one_line(cli: Cli, repo: Path, args: list[str], needle: str) -> None:
    create_snapshot(cli, repo)
    result = cli(repo, "rehearse", *args)
    assert result.code == 2 and needle in result.err and len(result.err.splitlines()) == 1


def test_a_report_path_whose_directory_does_not_exist_is_refused(
    cli: Cli, repo: Path, tmp_path: Path
) -> None:
    """As git does for `archive -o`: no directories are made where a mistyped path points,
    and nothing is rehearsed (the note and the audit trail are untouched)."""
    ident = create_snapshot(cli, repo)
    audit_before = git(repo, "rev-parse", "refs/govsnap/audit")
    target = tmp_path / "nonexistent" / "dir" / "x"
    result = cli(repo, "rehearse", ident, "--report", str(target))
    assert result.code == 2 and len(result.err.splitlines()) == 1
    assert f"the directory {target.parent} does not exist" in result.err
    assert not (tmp_path / "nonexistent").exists()
    assert git(repo, "rev-parse", "refs/govsnap/audit") == audit_before


def test_interrupted_rehearsal_removes_its_clone(repo: Path, tmp_path: Path, cli: Cli) -> None:
    create_snapshot(cli, repo)
    before = user_state(repo)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    marker = tmp_path / "gpg-started"
    slow_gpg = tmp_path / "slow-gpg"
    # gpg that hangs: the rollback inside the clone blocks while it verifies or signs.
    slow_gpg.write_text(f'#!/bin/sh\ntouch "{marker}"\nsleep 60\nexec gpg "$@"\n')
    slow_gpg.chmod(0o755)
    git(repo, "config", "gpg.program", str(slow_gpg))
    proc = subprocess.Popen(
        [govsnap_bin(), "-C", str(repo), "rehearse"],
        env={**os.environ, "TMPDIR": str(scratch)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not (marker.exists() and list(scratch.glob("govsnap-rehearsal-*/work/.git"))):
            assert time.monotonic() < deadline and proc.poll() is None, proc.stderr
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        # The hanging gpg shares the process group the test started; end it too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == 130, err  # typer's exit code for an interrupted command
    assert list(scratch.iterdir()) == []
    git(repo, "config", "--unset", "gpg.program")
    assert user_state(repo) == before
