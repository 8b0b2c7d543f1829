"""The examples run end to end with the installed command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import Cli, Keys, MakeRepo, git, openpgp_signer, write_files
from tests.helpers.tamper import commit_policy

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize("script", ["quickstart.sh", "server-setup.sh"])
def test_example_script_runs(script: str) -> None:
    # The scripts make (and remove) their own temporary directories; pytest's are too
    # deep for gpg-agent's socket path limit.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(
        ["bash", str(EXAMPLES / script)], capture_output=True, text=True, env=env, check=False
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "finished" in proc.stdout
    assert "Traceback" not in proc.stderr


# --- examples/github-actions-verify.yml ------------------------------------------------


def _workflow_steps(contexts: dict[str, str]) -> list[tuple[str, str, dict[str, str]]]:
    """Return (name, script, env) of the workflow's `run:` steps, in order, with the
    `${{ ... }}` expressions of their env replaced from `contexts`. The install step is
    left out: it pip-installs govsnap, which the test's virtualenv already has."""
    import yaml

    workflow = yaml.safe_load((EXAMPLES / "github-actions-verify.yml").read_text())
    found = []
    for step in workflow["jobs"]["verify"]["steps"]:
        if "run" not in step or step.get("name") == "Install govsnap":
            continue
        env = {}
        for key, value in (step.get("env") or {}).items():
            expression = str(value).removeprefix("${{").removesuffix("}}").strip()
            env[key] = contexts[expression]
        found.append((step["name"], step["run"], env))
    return found


def _ci_run(bare: Path, workspace: Path, contexts: dict[str, str], cache: Path) -> list[str]:
    """Run the workflow's steps in a fresh checkout of `bare`, the Actions cache kept in
    `cache`; return the name of the step that failed (empty when all passed) and its output."""
    import shutil

    subprocess.run(["git", "clone", "-q", str(bare), str(workspace)], check=True)
    if cache.exists():
        shutil.copytree(cache, workspace / ".govsnap-ci")
    base = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    for name, script, env in _workflow_steps(contexts):
        proc = subprocess.run(
            ["bash", "-e", "-c", script],
            cwd=workspace,
            capture_output=True,
            text=True,
            env={**base, **env},
            check=False,
        )
        if proc.returncode != 0:
            return [name, proc.stdout + proc.stderr]
    if (workspace / ".govsnap-ci").exists():
        shutil.rmtree(cache, ignore_errors=True)
        shutil.copytree(workspace / ".govsnap-ci", cache)
    return []


def test_the_verify_workflow_passes_then_catches_a_truncated_trail(
    make_repo: MakeRepo, keys: Keys, cli: Cli, tmp_path: Path
) -> None:
    """The workflow's run: steps, in order, against a local bare remote: snapshots of two
    signers pass; after the remote's audit trail is force-pushed to one entry, the next
    run (with what the first one verified, from its cache) fails."""
    seed = make_repo({"app.py": "v1\n"}, name="seed")
    policy = (
        "version = 1\n"
        + openpgp_signer("bot", keys.trusted)
        + openpgp_signer("dev", keys.other, ["staging"], ["create"])
    )
    commit_policy(seed, policy, sign_with=keys.trusted)
    bare = tmp_path / "remote.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(seed), str(bare)], check=True)
    git(seed, "remote", "add", "origin", str(bare))
    signers = [(keys.trusted, "production"), (keys.other, "staging"), (keys.trusted, "production")]
    for key, env in signers:
        git(seed, "config", "govsnap.signingKey", key)
        assert cli(seed, "create", "-e", env).code == 0
    assert cli(seed, "push").code == 0
    contexts = {
        "vars.GOVSNAP_TRUST_ANCHOR": keys.trusted,
        "github.event.repository.default_branch": "main",
    }
    cache = tmp_path / "actions-cache"
    assert _ci_run(bare, tmp_path / "run1", contexts, cache) == []
    first = git(bare, "rev-list", "--max-parents=0", "refs/govsnap/audit").strip()
    git(bare, "update-ref", "refs/govsnap/audit", first)  # a collaborator's force-push
    failed = _ci_run(bare, tmp_path / "run2", contexts, cache)
    assert failed and failed[0] == "Fetch and check the snapshots, notes and audit trail"
    assert "the audit trail of origin was rewritten" in failed[1]
    # Without a pinned anchor the job refuses to run at all.
    no_anchor = {**contexts, "vars.GOVSNAP_TRUST_ANCHOR": ""}
    unpinned = _ci_run(bare, tmp_path / "run3", no_anchor, tmp_path / "none")
    assert unpinned and unpinned[0] == "Pin the root of trust"


def test_the_verify_workflow_catches_what_a_forge_lost_and_a_poisoned_cache_grants_nothing(
    make_repo: MakeRepo, keys: Keys, cli: Cli, tmp_path: Path
) -> None:
    """Red team F6: after a collaborator deletes a snapshot ref and force-pushes an
    unrelated notes history, the next run (with what the first one saw, from its cache)
    fails. F5: a cache bundle holding a record of an unapproved policy commit grants it
    nothing: the run fails as it would without the cache."""
    seed = make_repo({"app.py": "v1\n"}, name="seed")
    commit_policy(
        seed, "version = 1\n" + openpgp_signer("bot", keys.trusted), sign_with=keys.trusted
    )
    bare = tmp_path / "remote.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(seed), str(bare)], check=True)
    git(seed, "remote", "add", "origin", str(bare))
    made = [cli(seed, "create", "--json") for _ in range(2)]
    assert all(m.code == 0 for m in made)
    assert cli(seed, "push").code == 0
    contexts = {
        "vars.GOVSNAP_TRUST_ANCHOR": keys.trusted,
        "github.event.repository.default_branch": "main",
    }
    cache = tmp_path / "actions-cache"
    assert _ci_run(bare, tmp_path / "run1", contexts, cache) == []
    victim = json.loads(made[0].out)["snapshot"]["id"]
    git(bare, "update-ref", "-d", f"refs/govsnap/snapshots/{victim}")
    unrelated = git(bare, "commit-tree", "-m", "x", "4b825dc642cb6eb9a060e54bf8d69288fbee4904")
    git(bare, "update-ref", "refs/notes/govsnap", unrelated.strip())
    failed = _ci_run(bare, tmp_path / "run2", contexts, cache)
    assert failed and failed[0] == "Fetch and check the snapshots, notes and audit trail"
    assert (
        f"are gone from it, and no authorised prune or purge entry names them: {victim}"
        in (failed[1])
    )
    assert "the notes history of origin was rewritten" in failed[1]
    # An unapproved policy change, and a cache that claims this job verified it.
    write_files(seed, {".govsnap/trust.toml": "version = 2\n" + openpgp_signer("x", keys.other)})
    git(seed, "commit", "-qam", "unapproved")
    git(seed, "push", "-q", "origin", "main")
    poisoned = tmp_path / "poisoned"
    record = "refs/govsnap-verified/policy/refs/heads/main"
    git(seed, "update-ref", record, "HEAD")
    (poisoned).mkdir()
    git(seed, "bundle", "create", "-q", str(poisoned / "verified.bundle"), record)
    failed = _ci_run(bare, tmp_path / "run3", contexts, poisoned)
    assert failed and "with 0 of the 1 approval(s)" in failed[1], failed
