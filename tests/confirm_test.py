"""One safety rule for every command that deletes or rewrites: on a terminal it asks,
without one it needs --yes, and a declined confirmation exits 1 alike everywhere,
changing nothing. Run as the installed command, on a real pseudo-terminal."""

from __future__ import annotations

import os
import pty
import shutil
import subprocess
from pathlib import Path

import pytest

from govsnap import prune
from govsnap.remote import push
from govsnap.repo import open_repo
from govsnap.store import CreateOptions, create
from tests.helpers import Keys, all_refs, git, govsnap_bin, write_files
from tests.helpers.tamper import policy_text

NO_TERMINAL = (
    "not on a terminal, so nobody can confirm; pass --yes (--dry-run shows what it would do)"
)
DECLINED = "govsnap: error: declined: nothing was changed\n"


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory, keys: Keys) -> dict[str, Path | str]:
    """A clone with four snapshots, one of them pruned here but still on its remote."""
    root = tmp_path_factory.mktemp("confirm")
    policy = policy_text({"releaser": (keys.trusted, ["*"], ["*"])})
    seed = root / "seed"
    git(root, "init", "-q", "-b", "main", str(seed))
    write_files(seed, {"app.py": "v1\n", ".govsnap/trust.toml": policy})
    git(seed, "add", "-A")
    git(seed, "commit", "-q", "-m", "initial")
    git(root, "clone", "-q", "--bare", str(seed), "remote.git")
    repo = root / "clone"
    git(root, "clone", "-q", "remote.git", str(repo))
    git(repo, "config", "govsnap.signingKey", keys.trusted)
    handle = open_repo(repo)
    ids = []
    for version in ("v1", "v2", "v3", "v4"):
        write_files(repo, {"app.py": f"{version}\n"})
        ids.append(create(handle, CreateOptions(message=version)).snapshot.id)
    push(handle, "origin")
    the_plan = prune.plan(handle, prune.PruneOptions(ids=(ids[0],), gc=False))
    prune.execute(handle, the_plan)
    return {"root": root, "old": ids[1], "new": ids[3]}


@pytest.fixture
def scene(template: dict[str, Path | str], tmp_path: Path) -> dict[str, Path | str]:
    """A copy of the template for one test."""
    root = tmp_path / "scene"
    shutil.copytree(Path(template["root"]), root, symlinks=True)
    repo = root / "clone"
    git(repo, "remote", "set-url", "origin", str(root / "remote.git"))
    return {**template, "repo": repo, "bare": root / "remote.git"}


COMMANDS = {
    "prune": (["prune", "--keep-last", "1", "--no-gc"], "prune would delete 2 snapshot(s)"),
    "purge": (["prune", "--id", "{old}", "--now"], "prune would purge 1 snapshot(s)"),
    "push --prune": (
        ["push", "--prune"],
        "push --prune would delete 1 snapshot(s) on remote 'origin'",
    ),
    "rollback": (["rollback", "{old}"], "rollback rewrites the working tree"),
}


def run(
    scene: dict[str, Path | str], args: list[str], stdin: int | None
) -> subprocess.CompletedProcess[str]:
    argv = [a.format(old=scene["old"]) for a in args]
    return subprocess.run(
        [govsnap_bin(), "-C", str(scene["repo"]), *argv],
        stdin=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def state(scene: dict[str, Path | str]) -> tuple[str, str, str, str]:
    repo, bare = Path(scene["repo"]), Path(scene["bare"])
    status = git(repo, "status", "--porcelain", "--untracked-files=all")
    return all_refs(repo), all_refs(bare), status, (repo / "app.py").read_text()


@pytest.mark.parametrize("name", COMMANDS)
def test_without_a_terminal_yes_is_required(scene: dict[str, Path | str], name: str) -> None:
    args, action = COMMANDS[name]
    before = state(scene)
    result = run(scene, args, subprocess.DEVNULL)
    assert result.returncode == 2, result.stderr
    assert result.stderr == f"govsnap: error: {action}: {NO_TERMINAL}\n"
    assert state(scene) == before


@pytest.mark.parametrize("name", COMMANDS)
def test_a_declined_confirmation_exits_1_everywhere(
    scene: dict[str, Path | str], name: str
) -> None:
    args, _ = COMMANDS[name]
    before = state(scene)
    leader, follower = pty.openpty()
    try:
        os.write(leader, b"n\n")
        result = run(scene, args, follower)
    finally:
        os.close(leader)
        os.close(follower)
    assert result.returncode == 1, result.stderr
    assert result.stderr.endswith(DECLINED) and "[y/N]" in result.stderr
    assert state(scene) == before


def test_push_prune_asks_and_deletes_on_yes(scene: dict[str, Path | str]) -> None:
    leader, follower = pty.openpty()
    try:
        os.write(leader, b"y\n")
        result = run(scene, ["push", "--prune"], follower)
    finally:
        os.close(leader)
        os.close(follower)
    assert result.returncode == 0, result.stderr
    assert "Delete 1 snapshot(s) on remote 'origin'" in result.stderr
    listed = git(Path(scene["bare"]), "for-each-ref", "refs/govsnap/snapshots/")
    assert len(listed.splitlines()) == 3
