"""examples/github-actions-promote.yml works for a team: its `run:` steps are executed in
order, as GitHub's runner runs them (bash -eo pipefail, the step's `env:`, GITHUB_ENV
carried to later steps), in a fresh "runner" (its own HOME and keyring, govsnap
installed by the workflow's own step), against a local bare remote that snapshots from
two signers reach.

What is GitHub's is provided the way the workflow reads it: `${{ ... }}` appears only in
`env:` values, which are substituted here; the actions (checkout, setup-python,
upload-artifact) are done by the test with git and a virtualenv. `sudo` (installing
system packages) is a no-op here: git and gpg are on this machine, and nothing else in
the workflow runs as root. The virtualenv sees this test run's dependencies (pygit2, ...)
so that pip installs govsnap itself without a network.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from govsnap.cli import app
from tests.helpers import Cli, Keys, git, run_ok, snapshot_ids, write_files
from tests.helpers.team import Keyrings, Member, add_to_policy, keyrings, pin_trust, sign_as

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / "examples" / "github-actions-promote.yml"
EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
ACTIONS = {"actions/checkout", "actions/setup-python", "actions/upload-artifact"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build govsnap's wheel from this working tree (a copy: a build writes into it)."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "govsnap", source / "govsnap", ignore=shutil.ignore_patterns("__pycache__")
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "-w",
            str(root),
            str(source),
        ],
        check=True,
        capture_output=True,
    )
    [built] = root.glob("govsnap-*.whl")
    return built


@dataclass
class Job:
    """The outcome of one run of the workflow's job."""

    failed_step: str | None = None
    log: list[tuple[str, str]] = field(default_factory=list)  # (step name, its output)

    @property
    def ok(self) -> bool:
        return self.failed_step is None

    def output(self, step: str | None = None) -> str:
        return "".join(out for name, out in self.log if step is None or name == step)


class Runner:
    """A fresh GitHub runner: a short HOME (gpg-agent's socket path is limited), a
    workspace, a virtualenv standing in for setup-python, and the default variables."""

    def __init__(self, root: Path, remote: Path) -> None:
        self.remote = remote
        self.workspace = root / "workspace"
        self.temp = root / "runner-temp"
        self.temp.mkdir(parents=True)
        self.python = root / "python"
        subprocess.run(
            [sys.executable, "-m", "venv", "--without-pip", str(self.python)], check=True
        )
        # The test run's own packages (pip, pygit2, ...) stand in for what pip would
        # download; govsnap itself is installed by the workflow.
        purelib = Path(sysconfig.get_paths(vars={"base": str(self.python)})["purelib"])
        (purelib / "test-run.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
        stubs = root / "stubs"
        stubs.mkdir()
        (stubs / "sudo").write_text('#!/bin/sh\necho "(test runner: not run as root: $*)"\n')
        (stubs / "sudo").chmod(0o755)
        self.path = f"{self.python / 'bin'}{os.pathsep}{stubs}{os.pathsep}{os.environ['PATH']}"
        # Last, so that nothing can fail between making it and the caller's close().
        self.home = Path(tempfile.mkdtemp(prefix="gr"))

    def close(self) -> None:
        subprocess.run(
            ["gpgconf", "--homedir", str(self.home / ".gnupg"), "--kill", "all"],
            capture_output=True,
            check=False,
        )
        shutil.rmtree(self.home, ignore_errors=True)

    def env(self) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith(("GNUPG", "XDG_", "GIT_"))}
        sha = git(self.remote, "rev-parse", "refs/heads/main").strip()
        return {
            **base,
            "PATH": self.path,
            "HOME": str(self.home),
            "CI": "true",
            "GITHUB_ACTIONS": "true",
            "GITHUB_REF": "refs/heads/main",
            "GITHUB_SHA": sha,
            "GITHUB_WORKSPACE": str(self.workspace),
            "GITHUB_ENV": str(self.temp / "github_env"),
            "RUNNER_TEMP": str(self.temp),
        }

    def uses(self, step: Mapping[str, Any]) -> None:
        """Do what an action step does."""
        action = str(step["uses"]).split("@")[0]
        assert action in ACTIONS, f"the test does not know {action}"
        if action == "actions/checkout":
            assert step["with"]["fetch-depth"] == 0
            git(self.remote.parent, "clone", "-q", str(self.remote), str(self.workspace))
        elif action == "actions/upload-artifact":
            found = list(self.workspace.glob(step["with"]["path"]))
            assert found, f"nothing to upload at {step['with']['path']}"

    def run(
        self, workflow: Mapping[str, Any], values: Mapping[str, str], overrides: Mapping[str, str]
    ) -> Job:
        """Run the job's steps in order until one fails; return what happened."""
        assert workflow["defaults"]["run"]["shell"] == "bash"
        [job] = workflow["jobs"].values()
        env = self.env()
        result = Job()
        for step in job["steps"]:
            if "uses" in step:
                self.uses(step)
                continue
            name, script = str(step["name"]), str(step["run"])
            assert "${{" not in script, f"{name}: GitHub expressions belong in env:"
            step_env = {
                key: substitute(str(value), values) for key, value in step.get("env", {}).items()
            }
            step_env.update({k: v for k, v in overrides.items() if k in step_env})
            path = self.temp / "step.sh"
            path.write_text(script)
            proc = subprocess.run(
                ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(path)],
                cwd=self.workspace,
                env={**env, **step_env},
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            result.log.append((name, proc.stdout + proc.stderr))
            if proc.returncode != 0:
                result.failed_step = name
                return result
            env.update(github_env(self.temp / "github_env"))
        return result


def substitute(value: str, values: Mapping[str, str]) -> str:
    """Replace each `${{ expr }}` in an env value by what GitHub would put there."""

    def one(match: re.Match[str]) -> str:
        assert match.group(1) in values, f"the test does not provide ${{{{ {match.group(1)} }}}}"
        return values[match.group(1)]

    return EXPRESSION.sub(one, value)


def github_env(path: Path) -> dict[str, str]:
    """Return the NAME=value lines steps appended to GITHUB_ENV."""
    if not path.exists():
        return {}
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


@dataclass(frozen=True)
class Team:
    bare: Path
    bot: Member
    alice: Member  # keeps the trust policy: her key is the root of trust
    rings: Keyrings


@pytest.fixture
def team(tmp_path: Path, cli: Cli, keys: Keys) -> Iterator[Team]:
    """A bare remote whose main holds the policy alice keeps, written as the docs say: she
    may create in production and staging and approve policy changes; the release bot,
    whose key she added from the public key it sent, may create, prune and roll back in
    production. No key is imported anywhere."""
    with keyrings() as rings:
        bot = rings.member("release-bot", keys.trusted)
        alice = rings.member("alice", keys.other)
        seed = tmp_path / "seed"
        git(tmp_path, "init", "-q", "-b", "main", str(seed))
        sign_as(seed, alice)
        write_files(seed, {"app.py": "print('v1')\n"})
        git(seed, "add", "-A")
        git(seed, "commit", "-q", "-m", "app")
        envs = ("-e", "production", "-e", "staging")
        run_ok(cli, seed, "trust", "init", "alice", *envs, "-o", "create", "-o", "policy")
        bot_ops = ("-e", "production", "-o", "create", "-o", "prune", "-o", "rollback")
        bare = tmp_path / "server.git"
        git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
        git(seed, "remote", "add", "origin", str(bare))
        add_to_policy(cli, seed, bot, *bot_ops)
        yield Team(bare, bot, alice, rings)


def clone_as(root: Path, team: Team, member: Member, name: str) -> Path:
    """Return `member`'s clone of the server, with the root of trust pinned."""
    clone = root / name
    git(root, "clone", "-q", str(team.bare), str(clone))
    sign_as(clone, member)
    pin_trust(clone, team.alice)
    return clone


def engineer_pushes(cli: Cli, root: Path, team: Team, member: Member, name: str) -> str:
    """`member` clones the server, snapshots for production and shares it; return its id."""
    clone = clone_as(root, team, member, name)
    made = cli(clone, "create", "-e", "production", "-l", name, "--json")
    assert made.code == 0, made.err
    pushed = cli(clone, "push")
    assert pushed.code == 0, pushed.err
    return str(json.loads(made.out)["snapshot"]["id"])


def run_workflow(root: Path, team: Team, wheel: Path, run_number: int) -> tuple[Job, Runner]:
    secret = subprocess.run(
        [
            "gpg",
            "--homedir",
            str(team.bot.home),
            "--batch",
            "--armor",
            "--export-secret-keys",
            team.bot.fingerprint,
        ],
        capture_output=True,
        check=True,
    ).stdout.decode()
    values = {
        "secrets.GOVSNAP_SIGNING_KEY": secret,
        "secrets.GOVSNAP_SIGNING_FPR": team.bot.fingerprint,
        "vars.GOVSNAP_TRUST_ANCHOR": team.alice.fingerprint,
        "github.run_number": str(run_number),
    }
    workflow = yaml.safe_load(WORKFLOW.read_text())
    runner = Runner(root, team.bare)
    try:
        return runner.run(workflow, values, {"GOVSNAP_PACKAGE": str(wheel)}), runner
    finally:
        runner.close()


def test_the_ci_workflow_verifies_every_trusted_signer_and_fails_on_a_stranger(
    tmp_path: Path, cli: Cli, team: Team, wheel: Path
) -> None:
    alices = engineer_pushes(cli, tmp_path, team, team.alice, "alice")

    job, runner = run_workflow(tmp_path / "run1", team, wheel, 1)
    assert job.ok, f"{job.failed_step}:\n{job.output(job.failed_step)}"
    assert "test runner: not run as root: apt-get update" in job.output()
    # The govsnap the steps ran is the one the workflow's own step installed.
    installed = subprocess.run(
        [str(runner.python / "bin" / "python"), "-c", "import govsnap; print(govsnap.__file__)"],
        cwd=runner.workspace,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert installed.startswith(str(runner.python)), installed
    assert (runner.python / "bin" / "govsnap").exists()
    on_server = set(snapshot_ids(team.bare))
    [deployed] = on_server - {alices}
    assert alices in on_server
    tag = git(team.bare, "cat-file", "tag", f"refs/govsnap/snapshots/{deployed}")
    sha = git(team.bare, "rev-parse", "refs/heads/main").strip()
    assert "Govsnap-Trigger: deploy" in tag and "Govsnap-Label: run-1" in tag
    assert f"Govsnap-Source: refs/heads/main {sha}" in tag
    report = json.loads((runner.workspace / "rehearsal.json").read_text())
    assert report["snapshot"] == deployed and report["verdict"] == "pass"
    verified = job.output(
        "Verify every snapshot and the audit trail (signature, trust, digest, objects)"
    )
    assert "PASS: 2 snapshot(s) verified" in verified, verified

    # A colleague with push access but no key in the policy adds herself to it, without
    # the approval a change needs, and pushes that to main: the server has no hook, so
    # only the workflow stands in the way, and it fails before it fetches anything.
    stranger = team.rings.generate("mallory")
    seed = clone_as(tmp_path, team, stranger, "mallory")
    before_policy = git(seed, "rev-parse", "HEAD").strip()
    add_to_policy(cli, seed, stranger, "-e", "production")  # her approval counts for nothing
    job, _ = run_workflow(tmp_path / "run2", team, wheel, 2)
    assert job.failed_step == (
        "Pin the root of trust (the policy ref and the key that approved its first version)"
    )
    failure = job.output(job.failed_step).strip().splitlines()
    assert failure[-1].startswith("govsnap: error: commit "), failure
    assert "changes the trust policy (version 1 -> 2) with 0 of the 1 approval(s)" in failure[-1]
    assert "govsnap trust approve" in failure[-1] and "(alice)" in failure[-1]
    # The team puts main back (no hook stops a force-push there either).
    git(seed, "push", "-q", "--force", "origin", f"{before_policy}:refs/heads/main")

    # She shares a snapshot signed with her key, after alice shared another.
    alices_second = engineer_pushes(cli, tmp_path, team, team.alice, "alice-again")
    theirs = engineer_pushes(cli, tmp_path, team, stranger, "mallory-clone")

    before = set(snapshot_ids(team.bare))
    job, _ = run_workflow(tmp_path / "run3", team, wheel, 3)
    assert (
        job.failed_step
        == "Bring in the snapshots the team shared (an untrusted one fails the job here)"
    )
    failure = job.output(job.failed_step)
    fix = f"govsnap trust add-signer NAME --key {stranger.fingerprint}"
    [refused] = [line for line in failure.splitlines() if line.startswith("govsnap: unverified")]
    assert refused.startswith(f"govsnap: unverified: {theirs}: signature: cannot check: no ")
    assert f"(add it: {fix}, then approve and commit the policy)" in refused
    last = failure.rstrip().splitlines()[-1]
    assert last.startswith("govsnap: error: the audit trail of origin holds entries")
    assert f"(to trust it: {fix}" in last
    assert last.endswith("1 snapshot(s) from origin not added: unverified"), last
    assert f"added {alices_second}" in failure  # a trusted signer passes
    assert set(snapshot_ids(team.bare)) == before  # nothing deployed, nothing shared


def test_the_workflow_uses_only_documented_options() -> None:
    """Every option the workflow passes to govsnap is a visible option of that command,
    which tests/cli_docs_test.py holds docs/cli.md to (a hidden option such as create
    --source-ref is in neither --help nor the docs)."""
    root = typer.main.get_command(app)
    [job] = yaml.safe_load(WORKFLOW.read_text())["jobs"].values()
    used: list[tuple[str, str]] = []
    for step in job["steps"]:
        script = str(step.get("run", "")).replace("\\\n", " ")
        for line in script.splitlines():
            words = [w for w in re.split(r"[\s$()|;&]+", line) if w]
            while "govsnap" in words:
                words = words[words.index("govsnap") + 1 :]
                command: Any = root
                path = []
                while words and hasattr(command, "commands") and words[0] in command.commands:
                    path.append(words[0])
                    command = command.commands[words.pop(0)]
                visible = {
                    opt
                    for param in getattr(command, "params", [])
                    if not getattr(param, "hidden", False)
                    for opt in getattr(param, "opts", [])
                }
                for word in words:
                    if word == "govsnap":
                        break
                    option = word.split("=", 1)[0]
                    if option.startswith("--") and option != "--version":
                        used.append((" ".join(path), option))
                        assert option in visible, f"govsnap {' '.join(path)} {option}"
    assert ("create", "--from") in used and ("push", "--prune") in used
