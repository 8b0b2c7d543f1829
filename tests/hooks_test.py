"""Client hooks through real `git push` and `git merge`: install / uninstall / status where
git looks for hooks, chaining, pre-push on promotion branches, post-merge, the pre-commit
framework."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from govsnap.hook_run import PushUpdate, decide_push, parse_push_lines, promotion_pattern
from govsnap.hooks import select_hooks
from tests.helpers import Cli, MakeRepo, git, govsnap_bin, snapshot_ids, write_files

ROOT = Path(__file__).resolve().parent.parent
Z = "0" * 40


def push(
    repo: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a real `git push` and return it (it may fail: callers check)."""
    return subprocess.run(
        ["git", "push", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    """An empty bare repository."""
    path = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(path))
    return path


@pytest.fixture
def client(make_repo: MakeRepo, remote: Path, cli: Cli) -> Path:
    """A repository with `origin` = the bare remote, govsnap's pre-push hook installed,
    main promoted to production and release/* to staging."""
    path = make_repo({"README.md": "v1\n", "app.py": "print(1)\n"})
    git(path, "remote", "add", "origin", str(remote))
    git(path, "config", "govsnap.promotionBranches", "main release/*")
    git(path, "config", "govsnap.environment.main", "production")
    git(path, "config", "govsnap.release/*.environment", "staging")
    assert cli(path, "hooks", "install").code == 0
    return path


def snapshots_json(cli: Cli, repo: Path) -> list[dict[str, object]]:
    result = cli(repo, "list", "--json")
    assert result.code == 0, result.err
    data = json.loads(result.out)["snapshots"]
    assert isinstance(data, list)
    return data


# --- pure decisions ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("branch", "patterns", "expected"),
    [
        ("main", ["main", "release/*"], "main"),
        ("release/1.0", ["main", "release/*"], "release/*"),
        ("release/1/hotfix", ["release/*"], "release/*"),
        ("mainline", ["main"], None),
        ("feature/x", ["main", "release/*"], None),
        ("Main", ["main"], None),
    ],
)
def test_promotion_pattern(branch: str, patterns: list[str], expected: str | None) -> None:
    assert promotion_pattern(branch, patterns) == expected


def test_push_lines_and_decisions() -> None:
    a, b = "a" * 40, "b" * 40
    data = (
        f"refs/heads/main {a} refs/heads/main {b}\n"
        f"(delete) {Z} refs/heads/release/1 {b}\n"
        f"refs/tags/v1 {a} refs/tags/v1 {Z}\n"
        f"refs/heads/wip {a} refs/heads/feature {Z}\n"
        f"refs/heads/wip {a} refs/heads/release/2 {Z}\n"
    ).encode()
    updates = parse_push_lines(data)
    assert updates[0] == PushUpdate("refs/heads/main", a, "refs/heads/main", b)
    reasons = [(d.reason, d.pattern) for d in decide_push(updates, ["main", "release/*"])]
    assert reasons == [
        ("promotion branch", "main"),
        ("deletion", None),
        ("not a branch", None),
        ("not a promotion branch", None),
        ("promotion branch", "release/*"),
    ]


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ((False, False, False, False), ["pre-push"]),
        ((False, True, False, False), ["post-merge"]),
        ((False, False, True, False), ["pre-push", "post-merge"]),
        ((False, False, False, True), ["pre-receive"]),
        ((True, True, False, True), ["pre-push", "post-merge", "pre-receive"]),
    ],
)
def test_select_hooks(flags: tuple[bool, bool, bool, bool], expected: list[str]) -> None:
    assert select_hooks(*flags) == expected


# --- install / uninstall / status --------------------------------------------------------


LEGACY = """#!/bin/sh
# the team's own pre-push hook
echo "legacy $* $(cat | tr '\\n' ';')" >> "$(git rev-parse --git-dir)/legacy.log"
exit ${LEGACY_EXIT:-0}
"""


def test_existing_hook_is_chained_runs_first_and_is_restored_exactly(
    cli: Cli, make_repo: MakeRepo, remote: Path
) -> None:
    repo = make_repo()
    git(repo, "remote", "add", "origin", str(remote))
    hook = repo / ".git" / "hooks" / "pre-push"
    hook.write_text(LEGACY)
    hook.chmod(0o750)
    before = (hook.read_bytes(), stat.S_IMODE(hook.stat().st_mode))

    first = cli(repo, "hooks", "install", "--json")
    assert first.code == 0, first.err
    assert json.loads(first.out)["actions"][0]["action"] == "chain"
    second = cli(repo, "hooks", "install", "--json")
    assert json.loads(second.out)["actions"][0]["action"] == "unchanged"
    assert sorted(p.name for p in hook.parent.glob("pre-push*")) == [
        "pre-push",
        "pre-push.govsnap-chained",
        "pre-push.sample",
    ]
    status = json.loads(cli(repo, "hooks", "status", "--json").out)
    state = {h["name"]: h for h in status["hooks"]}["pre-push"]
    assert state["state"] == "govsnap" and state["chained"].endswith("pre-push.govsnap-chained")

    # The chained hook sees git's arguments and standard input, and runs first.
    done = push(repo, "origin", "main")
    assert done.returncode == 0, done.stderr
    log = (repo / ".git" / "legacy.log").read_text()
    head = git(repo, "rev-parse", "HEAD").strip()
    assert f"legacy origin {remote} refs/heads/main {head} refs/heads/main {Z};" in log
    assert len(snapshot_ids(repo)) == 1

    # Its failure fails the push, and govsnap takes no snapshot of a push that fails.
    write_files(repo, {"new.txt": "x\n"})
    git(repo, "add", "new.txt")
    git(repo, "commit", "-q", "-m", "two")
    failed = push(repo, "origin", "main", env={"LEGACY_EXIT": "3"})
    assert failed.returncode != 0
    assert git(remote, "rev-parse", "main").strip() == head
    assert len(snapshot_ids(repo)) == 1

    removed = cli(repo, "hooks", "uninstall")
    assert removed.code == 0 and "restore" in removed.out
    assert (hook.read_bytes(), stat.S_IMODE(hook.stat().st_mode)) == before
    assert not hook.with_name("pre-push.govsnap-chained").exists()
    again = cli(repo, "hooks", "uninstall").out
    assert "pre-push: skip: not govsnap's hook: left alone" in again
    assert again.count("not installed") == 2


def test_non_executable_existing_hook_stays_skipped(cli: Cli, client: Path) -> None:
    assert cli(client, "hooks", "uninstall").code == 0
    hook = client / ".git" / "hooks" / "pre-push"
    hook.write_text("#!/bin/sh\nexit 1\n")
    hook.chmod(0o644)  # git ignores it; so must the chain
    assert cli(client, "hooks", "install").code == 0
    assert push(client, "origin", "main").returncode == 0
    assert len(snapshot_ids(client)) == 1
    assert cli(client, "hooks", "uninstall").code == 0
    assert stat.S_IMODE(hook.stat().st_mode) == 0o644


def test_hooks_path_is_honoured_relative_and_absolute(
    cli: Cli, make_repo: MakeRepo, tmp_path: Path
) -> None:
    repo = make_repo()
    git(repo, "config", "core.hooksPath", ".githooks")
    result = cli(repo, "hooks", "install", "--all")
    assert result.code == 0, result.err
    assert (repo / ".githooks" / "pre-push").is_file()
    assert (repo / ".githooks" / "post-merge").is_file()
    assert not (repo / ".git" / "hooks" / "pre-push").exists()
    shared = tmp_path / "shared-hooks"
    git(repo, "config", "core.hooksPath", str(shared))
    status = json.loads(cli(repo, "hooks", "status", "--json").out)
    assert status["directory"] == str(shared) and status["core_hooks_path"] == str(shared)
    assert {h["state"] for h in status["hooks"]} == {"absent"}
    assert cli(repo, "hooks", "install").code == 0
    assert (shared / "pre-push").is_file()


def test_worktree_installs_in_the_common_directory_and_pushes(
    cli: Cli, client: Path, remote: Path, tmp_path: Path
) -> None:
    worktree = tmp_path / "wt"
    git(client, "worktree", "add", "-q", "-b", "release/1.0", str(worktree))
    expected = git(worktree, "rev-parse", "--path-format=absolute", "--git-path", "hooks")
    status = json.loads(cli(worktree, "hooks", "status", "--json").out)
    assert status["directory"] == str(Path(expected.strip()).resolve())
    assert {h["name"]: h["state"] for h in status["hooks"]}["pre-push"] == "govsnap"
    write_files(worktree, {"wt.txt": "from the worktree\n"})
    git(worktree, "add", "wt.txt")
    git(worktree, "commit", "-q", "-m", "wt")
    # git sets GIT_DIR for this push; the hook must still find the worktree's repository.
    done = push(
        worktree,
        "origin",
        "release/1.0",
        env={"GIT_DIR": git(worktree, "rev-parse", "--absolute-git-dir").strip()},
    )
    assert done.returncode == 0, done.stderr
    snaps = snapshots_json(cli, client)
    assert [s["payload"]["environment"] for s in snaps] == ["staging"]  # type: ignore[index]


def test_conflict_needs_force_and_dry_run_changes_nothing(cli: Cli, make_repo: MakeRepo) -> None:
    repo = make_repo()
    hooks = repo / ".git" / "hooks"
    (hooks / "pre-push").write_text("#!/bin/sh\necho current\n")
    (hooks / "pre-push").chmod(0o755)
    (hooks / "pre-push.govsnap-chained").write_text("#!/bin/sh\necho stale\n")
    listing = sorted((p.name, p.read_bytes()) for p in hooks.iterdir())

    refused = cli(repo, "hooks", "install")
    assert refused.code == 2
    assert "--force" in refused.err and len(refused.err.strip().splitlines()) == 1
    dry = cli(repo, "hooks", "install", "--force", "--dry-run")
    assert dry.code == 0 and "would chain" in dry.out
    assert sorted((p.name, p.read_bytes()) for p in hooks.iterdir()) == listing

    assert cli(repo, "hooks", "install", "--force").code == 0
    assert (hooks / "pre-push.govsnap-chained").read_text() == "#!/bin/sh\necho current\n"
    assert cli(repo, "hooks", "uninstall", "--dry-run").code == 0
    assert (hooks / "pre-push.govsnap-chained").exists()
    assert cli(repo, "hooks", "uninstall").code == 0
    assert (hooks / "pre-push").read_text() == "#!/bin/sh\necho current\n"


def test_bad_input_is_one_line(cli: Cli, client: Path, tmp_path: Path) -> None:
    outside = tmp_path / "not-a-repo"
    outside.mkdir()
    result = cli(outside, "hooks", "status")
    assert result.code == 3 and "not a git repository" in result.err
    (client / ".git" / "hooks" / "post-merge").mkdir()
    result = cli(client, "hooks", "install", "--post-merge")
    assert result.code == 2 and "is a directory" in result.err
    for args, stdin, needle in [
        (["hook-run"], b"", "needs a hook name"),
        (["hook-run", "pre-commit"], b"", "needs a hook name"),
        (["hook-run", "pre-push", "origin", "x"], b"garbage\n", "cannot read input line"),
        (["hook-run", "pre-receive"], b"garbage\n", "cannot read input line"),
    ]:
        proc = subprocess.run(
            [govsnap_bin(), *args], cwd=client, input=stdin, capture_output=True, check=False
        )
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.decode().strip().splitlines()
        assert len(lines) == 1 and needle in lines[0]
    git(client, "config", "govsnap.hookFailure", "sometimes")
    done = push(client, "origin", "main")
    assert done.returncode != 0 and "govsnap.hookFailure must be block or warn" in done.stderr
    assert snapshot_ids(client) == []


# --- pre-push ------------------------------------------------------------------------------


def test_pre_push_snapshots_pushed_commits_of_promotion_branches_only(
    cli: Cli, client: Path, remote: Path
) -> None:
    # A dirty working tree and an untracked file must not leak into the snapshot.
    write_files(client, {"README.md": "edited, not committed\n", "untracked.txt": "x\n"})
    index_before = (client / ".git" / "index").read_bytes()
    head = git(client, "rev-parse", "HEAD").strip()

    assert push(client, "origin", "main:feature").returncode == 0
    assert snapshot_ids(client) == []
    done = push(client, "origin", "main")
    assert done.returncode == 0, done.stderr
    assert "pre-push: snapshot" in done.stderr
    [snap] = snapshots_json(cli, client)
    payload = snap["payload"]
    assert isinstance(payload, dict)
    assert payload["trigger"] == "pre-push" and payload["environment"] == "production"
    assert payload["source"] == {"ref": "refs/heads/main", "commit": head}
    assert payload["tree"] == git(client, "rev-parse", "HEAD^{tree}").strip()
    assert (client / ".git" / "index").read_bytes() == index_before
    git(client, "verify-tag", f"refs/govsnap/snapshots/{snap['id']}")

    # Two promotion branches in one push: one snapshot each, each in its environment.
    git(client, "commit", "-q", "-am", "two")
    git(client, "branch", "release/2.0")
    git(client, "tag", "v2")
    assert push(client, "origin", "main", "release/2.0", "v2").returncode == 0
    envs = sorted(str(s["payload"]["environment"]) for s in snapshots_json(cli, client))  # type: ignore[index]
    assert envs == ["production", "production", "staging"]

    # Deletions and a push of unchanged content take none; the audit shows each run.
    assert push(client, "origin", ":release/2.0").returncode == 0
    assert push(client, "origin", "main:release/3.0").returncode == 0  # same as release/2.0
    assert len(snapshot_ids(client)) == 3
    # Each snapshot's audit entry says which hook took it, for which remote.
    runs = json.loads(cli(client, "audit", "--operation", "create", "--json").out)["entries"]
    assert len(runs) == 3 and all(r["result"] == "ok" for r in runs)
    arguments = runs[0]["body"]["arguments"]
    assert arguments["hook"] == "pre-push" and arguments["remote"] == "origin"
    assert arguments["trigger"] == "pre-push" and arguments["policy"] == "block"
    pushes = json.loads(cli(client, "audit", "--operation", "pre-push", "--json").out)
    assert pushes["entries"] == []


def test_pre_push_failure_blocks_or_warns(cli: Cli, make_repo: MakeRepo, remote: Path) -> None:
    repo = make_repo(signed=False)  # no signing key: a snapshot cannot be made
    git(repo, "remote", "add", "origin", str(remote))
    assert cli(repo, "hooks", "install").code == 0
    blocked = push(repo, "origin", "main")
    assert blocked.returncode != 0
    assert "no signing key" in blocked.stderr and "push blocked" in blocked.stderr
    assert git(remote, "for-each-ref").strip() == ""

    git(repo, "config", "govsnap.hookFailure", "warn")
    warned = push(repo, "origin", "main")
    assert warned.returncode == 0 and "pushing without a snapshot" in warned.stderr
    assert git(remote, "rev-parse", "main").strip() == git(repo, "rev-parse", "HEAD").strip()
    failures = json.loads(cli(repo, "audit", "--json").out)["entries"]
    # Each push records the create that failed and the hook run's outcome.
    assert [(e["operation"], e["result"].split(":")[0]) for e in failures] == [
        ("pre-push", "warned"),
        ("create", "failed"),
        ("pre-push", "blocked"),
        ("create", "failed"),
    ]
    assert "no signing key" in failures[0]["body"]["arguments"]["errors"][0]
    assert "no signing key" in failures[1]["result"]
    assert failures[0]["environments"] == failures[1]["environments"] == ["default"]
    assert failures[1]["body"]["arguments"]["hook"] == "pre-push"


# --- post-merge ----------------------------------------------------------------------------


def test_post_merge_snapshots_the_merged_head_of_promotion_branches(cli: Cli, client: Path) -> None:
    assert cli(client, "hooks", "install", "--post-merge").code == 0
    git(client, "checkout", "-q", "-b", "topic")
    write_files(client, {"topic.txt": "topic\n"})
    git(client, "add", "topic.txt")
    git(client, "commit", "-q", "-m", "topic")
    git(client, "checkout", "-q", "-b", "scratch")
    git(client, "merge", "-q", "--no-ff", "-m", "into scratch", "topic")
    assert snapshot_ids(client) == []  # not a promotion branch

    git(client, "checkout", "-q", "main")
    git(client, "merge", "-q", "--no-ff", "-m", "merge topic", "topic")
    [snap] = snapshots_json(cli, client)
    payload = snap["payload"]
    assert isinstance(payload, dict)
    assert payload["trigger"] == "post-merge" and payload["environment"] == "production"
    assert payload["source"] == {
        "ref": "refs/heads/main",
        "commit": git(client, "rev-parse", "HEAD").strip(),
    }
    assert payload["labels"] == []

    git(client, "checkout", "-q", "-b", "topic2", "HEAD~1")
    write_files(client, {"topic2.txt": "two\n"})
    git(client, "add", "topic2.txt")
    git(client, "commit", "-q", "-m", "topic2")
    git(client, "checkout", "-q", "main")
    git(client, "merge", "-q", "--squash", "topic2")
    squash = snapshots_json(cli, client)[0]["payload"]
    assert isinstance(squash, dict)
    assert squash["labels"] == ["squash"] and "squash merge" in squash["message"]
    entries = json.loads(cli(client, "audit", "--operation", "create", "--json").out)["entries"]
    assert [e["body"]["arguments"]["squash"] for e in entries] == [True, False]
    assert {e["body"]["arguments"]["hook"] for e in entries} == {"post-merge"}


# --- raw scripts and the pre-commit framework ----------------------------------------------


def test_shipped_raw_hook_script_works_from_path(
    cli: Cli, make_repo: MakeRepo, remote: Path
) -> None:
    repo = make_repo()
    git(repo, "remote", "add", "origin", str(remote))
    hook = repo / ".git" / "hooks" / "pre-push"
    shutil.copy(ROOT / "hooks" / "pre-push", hook)
    env_path = f"{Path(govsnap_bin()).parent}{os.pathsep}{os.environ['PATH']}"
    done = push(repo, "origin", "main", env={"PATH": env_path})
    assert done.returncode == 0, done.stderr
    assert len(snapshot_ids(repo)) == 1


def test_pre_commit_framework_runs_the_manifest(
    cli: Cli, make_repo: MakeRepo, remote: Path, tmp_path: Path
) -> None:
    # govsnap's own manifest, served from a local repository (no network).
    hooks_repo = make_repo(
        {".pre-commit-hooks.yaml": (ROOT / ".pre-commit-hooks.yaml").read_text()},
        signed=False,
        name="govsnap-hooks",
    )
    rev = git(hooks_repo, "rev-parse", "HEAD").strip()
    repo = make_repo()
    git(repo, "remote", "add", "origin", str(remote))
    git(repo, "config", "govsnap.environment.main", "production")
    write_files(
        repo,
        {
            ".pre-commit-config.yaml": (
                f"repos:\n- repo: {hooks_repo}\n  rev: {rev}\n  hooks:\n"
                "  - id: govsnap-pre-push\n  - id: govsnap-post-merge\n"
            )
        },
    )
    git(repo, "add", ".pre-commit-config.yaml")
    git(repo, "commit", "-q", "-m", "pre-commit config")
    venv_bin = Path(govsnap_bin()).parent
    env = {
        "PATH": f"{venv_bin}{os.pathsep}{os.environ['PATH']}",
        "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-cache"),
    }
    for hook_type in ("pre-push", "post-merge"):
        subprocess.run(
            [str(venv_bin / "pre-commit"), "install", "--hook-type", hook_type],
            cwd=repo,
            env={**os.environ, **env},
            check=True,
            capture_output=True,
        )
    done = push(repo, "origin", "main", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "govsnap" in done.stdout + done.stderr
    [snap] = snapshots_json(cli, repo)
    assert snap["payload"]["environment"] == "production"  # type: ignore[index]
    assert snap["payload"]["source"]["commit"] == git(repo, "rev-parse", "HEAD").strip()  # type: ignore[index]

    git(repo, "checkout", "-q", "-b", "topic")
    write_files(repo, {"t.txt": "t\n"})
    git(repo, "add", "t.txt")
    git(repo, "commit", "-q", "-m", "t")
    git(repo, "checkout", "-q", "main")
    subprocess.run(
        ["git", "merge", "-q", "--no-ff", "-m", "merge", "topic"],
        cwd=repo,
        env={**os.environ, **env},
        check=True,
        capture_output=True,
    )
    snaps = snapshots_json(cli, repo)
    assert [s["payload"]["trigger"] for s in snaps] == ["post-merge", "pre-push"]  # type: ignore[index]

    # The remote has main now: pre-commit passes PRE_COMMIT_FROM_REF / PRE_COMMIT_TO_REF.
    write_files(repo, {"u.txt": "u\n"})
    git(repo, "add", "u.txt")
    git(repo, "commit", "-q", "-m", "u")
    done = push(repo, "origin", "main", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    newest = snapshots_json(cli, repo)[0]["payload"]
    assert isinstance(newest, dict) and newest["trigger"] == "pre-push"
    assert newest["source"]["commit"] == git(repo, "rev-parse", "HEAD").strip()


def test_pre_push_fails_loudly_on_a_rewritten_audit_trail(cli: Cli, client: Path) -> None:
    """The local chain lost entries this clone wrote (reset with stock git): the hook
    does not build on it, and says how to put it back."""
    for n in (2, 3):
        write_files(client, {"app.py": f"print({n})\n"})
        git(client, "commit", "-qam", f"v{n}")
        assert push(client, "origin", "main").returncode == 0
    recorded = git(client, "rev-parse", "refs/govsnap/audit").strip()
    first = git(client, "rev-list", "--max-parents=0", "refs/govsnap/audit").strip()
    git(client, "update-ref", "refs/govsnap/audit", first)
    write_files(client, {"app.py": "print(4)\n"})
    git(client, "commit", "-qam", "v4")
    blocked = push(client, "origin", "main")
    assert blocked.returncode != 0 and "push blocked" in blocked.stderr
    assert f"refs/govsnap/audit no longer holds entry {recorded}" in blocked.stderr
    assert f"git update-ref refs/govsnap/audit {recorded}" in blocked.stderr
    git(client, "update-ref", "refs/govsnap/audit", recorded)
    assert push(client, "origin", "main").returncode == 0
