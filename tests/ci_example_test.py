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
import yaml

from tests.conftest import Cli, Keys, git, snapshot_ids, write_files
from tests.tamper import policy_text
from tests.team import Keyrings, Member, keyrings, make_key_available, public_key, sign_as

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
    alice: Member
    rings: Keyrings


def publish_keys(repo: Path, members: list[Member]) -> None:
    """Commit the signers' public keys where the workflow imports them from. (Once the
    trust policy carries public keys: `govsnap trust add-signer` puts them there.)"""
    write_files(repo, {f".govsnap/keys/{m.name}.asc": public_key(m) for m in members})


@pytest.fixture
def team(tmp_path: Path, keys: Keys) -> Iterator[Team]:
    """A bare remote whose main holds a policy trusting the release bot and alice for
    production, and both public keys."""
    with keyrings() as rings:
        bot = rings.member("release-bot", keys.trusted)
        alice = rings.member("alice", keys.other)
        seed = tmp_path / "seed"
        git(tmp_path, "init", "-q", "-b", "main", str(seed))
        policy = policy_text(
            {
                "release-bot": (bot.fingerprint, ["production"], ["create", "prune", "rollback"]),
                "alice": (alice.fingerprint, ["production", "staging"], ["create"]),
            }
        )
        write_files(seed, {"app.py": "print('v1')\n", ".govsnap/trust.toml": policy})
        publish_keys(seed, [bot, alice])
        git(seed, "add", "-A")
        git(seed, "commit", "-q", "-m", "app, trust policy, public keys")
        bare = tmp_path / "server.git"
        git(tmp_path, "clone", "-q", "--bare", str(seed), str(bare))
        yield Team(bare, bot, alice, rings)


def engineer_pushes(cli: Cli, root: Path, team: Team, member: Member, name: str) -> str:
    """`member` clones the server, snapshots for production and shares it; return its id."""
    clone = root / name
    git(root, "clone", "-q", str(team.bare), str(clone))
    sign_as(clone, member)
    for signer in (team.bot, team.alice):
        make_key_available(clone, member, signer)
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

    # A stranger, whose key anyone could commit, shares a snapshot: the server has no
    # hook, so only the workflow stands in the way.
    stranger = team.rings.generate("mallory")
    seed = tmp_path / "mallory"
    git(tmp_path, "clone", "-q", str(team.bare), str(seed))
    publish_keys(seed, [stranger])
    git(seed, "add", "-A")
    git(
        seed,
        "-c",
        "user.name=mallory",
        "-c",
        "user.email=m@example.com",
        "commit",
        "-q",
        "-m",
        "my key",
    )
    git(seed, "push", "-q", "origin", "main")
    alices_second = engineer_pushes(cli, tmp_path, team, team.alice, "alice-again")
    theirs = engineer_pushes(cli, tmp_path, team, stranger, "mallory-clone")

    before = set(snapshot_ids(team.bare))
    job, _ = run_workflow(tmp_path / "run2", team, wheel, 2)
    assert (
        job.failed_step
        == "Bring in the snapshots the team shared (an untrusted one fails the job here)"
    )
    failure = job.output(job.failed_step)
    assert f"unverified: {theirs}:" in failure
    # The policy carries the trusted keys: a stranger's key is one it does not have.
    assert f"cannot check: no public key for {stranger.fingerprint}" in failure, failure
    # Its audit entries (its create, its fetch) are signed by that key too: not joined.
    assert "holds entries this clone refuses to join" in failure
    assert failure.rstrip().endswith("; 1 snapshot(s) from origin not added: unverified")
    assert f"added {alices_second}" in failure  # a trusted signer passes
    assert set(snapshot_ids(team.bare)) == before  # nothing deployed, nothing shared
