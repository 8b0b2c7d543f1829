"""Completion in the user's shell (commands, options, snapshot ids, environments,
remotes; `git govsnap` through git's own completion), installed where each shell looks,
and never offering what a shell would run."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import Cli, create_snapshot, git, govsnap_bin

GIT_COMPLETION = Path("/usr/share/bash-completion/completions/git")


@functools.cache
def completion_script(shell: str) -> str:
    """Return what `govsnap completion SHELL` prints (once per run of the tests)."""
    return subprocess.run(
        [govsnap_bin(), "completion", shell], capture_output=True, text=True, check=True
    ).stdout


def in_bash(repo: Path, script: str) -> list[str]:
    """Run `script` in a bash without rc files that has sourced govsnap's completion;
    return its output lines."""
    env = {**os.environ, "PATH": f"{Path(govsnap_bin()).parent}:{os.environ['PATH']}"}
    shown = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", completion_script("bash") + "\n" + script],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return shown.stdout.splitlines()


def complete(repo: Path, *words: str) -> list[str]:
    """Return what bash offers for `words` (the last one being completed)."""
    quoted = " ".join(f"'{w}'" for w in words)
    return in_bash(
        repo,
        f"COMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1}; _govsnap_complete; "
        'printf "%s\\n" "${COMPREPLY[@]}"',
    )


def test_bash_completes_commands_ids_environments_and_remotes(cli: Cli, repo: Path) -> None:
    old = create_snapshot(cli, repo, "-e", "staging")
    new = create_snapshot(cli, repo, "-e", "production")
    git(repo, "remote", "add", "upstream", str(repo))
    assert in_bash(repo, "complete -p govsnap git-govsnap") == [
        "complete -o default -F _govsnap_complete govsnap",
        "complete -o default -F _govsnap_complete git-govsnap",
    ]
    assert complete(repo, "govsnap", "sh") == ["show"]
    assert set(complete(repo, "govsnap", "tr")) == {"trust"}
    # Newest first (two snapshots of one second may come either way).
    shown = complete(repo, "govsnap", "show", "")
    assert shown[0] == "latest" and sorted(shown[1:]) == sorted([new, old])
    assert complete(repo, "govsnap", "rollback", old[:3]) == [old]
    assert sorted(complete(repo, "govsnap", "diff", old, "")) == sorted(["latest", new, old])
    assert complete(repo, "govsnap", "list", "-e", "") == ["production", "staging"]
    assert complete(repo, "govsnap", "verify", "--environment", "st") == ["staging"]
    assert complete(repo, "govsnap", "push", "") == ["upstream"]
    assert "--wide" in complete(repo, "govsnap", "list", "--w")
    assert complete(repo, "govsnap", "completion", "") == ["bash", "zsh", "fish"]


@pytest.mark.skipif(
    not GIT_COMPLETION.exists(), reason=f"git's completion is not at {GIT_COMPLETION}"
)
def test_bash_completes_git_govsnap_through_gits_completion(cli: Cli, repo: Path) -> None:
    ident = create_snapshot(cli, repo, "-e", "staging")

    def through_git(*words: str) -> list[str]:
        quoted = " ".join(f"'{w}'" for w in words)
        return in_bash(
            repo,
            f"source {GIT_COMPLETION}; COMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1}; "
            'COMP_LINE="${COMP_WORDS[*]}"; COMP_POINT=${#COMP_LINE}; __git_wrap__git_main; '
            'printf "%s\\n" "${COMPREPLY[@]}"',
        )

    assert through_git("git", "govsnap", "sh") == ["show"]
    assert through_git("git", "-C", ".", "govsnap", "show", "") == ["latest", ident]
    assert through_git("git", "govsnap", "list", "-e", "") == ["staging"]


def test_completion_never_offers_what_a_shell_would_run(cli: Cli, repo: Path) -> None:
    ident = create_snapshot(cli, repo)
    tag = git(repo, "rev-parse", f"refs/govsnap/snapshots/{ident}").strip()
    hostile = "refs/govsnap/snapshots/$(touch${IFS}pwned)"
    git(repo, "update-ref", hostile, tag)
    assert complete(repo, "govsnap", "show", "") == ["latest", ident]
    env = {**os.environ, "_GOVSNAP_COMPLETE": "complete_zsh"}
    zsh = subprocess.run(
        [govsnap_bin(), "show"],
        cwd=repo,
        env={**env, "_TYPER_COMPLETE_ARGS": "govsnap show "},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert ident in zsh and "$(" not in zsh and "pwned" not in zsh
    assert not (repo / "pwned").exists()


def shell_env() -> dict[str, str]:
    return {**os.environ, "PATH": f"{Path(govsnap_bin()).parent}:{os.environ['PATH']}"}


@pytest.mark.skipif(shutil.which("fish") is None, reason="fish is not installed")
def test_fish_completes(cli: Cli, repo: Path, tmp_path: Path) -> None:
    ident = create_snapshot(cli, repo, "-e", "staging")
    (tmp_path / "govsnap.fish").write_text(completion_script("fish"))

    def offered(line: str) -> list[str]:
        shown = subprocess.run(
            [
                "fish",
                "--no-config",
                "-c",
                f"source {tmp_path / 'govsnap.fish'}; complete -C '{line}'",
            ],
            cwd=repo,
            env={**shell_env(), "HOME": str(tmp_path)},
            capture_output=True,
            text=True,
            check=True,
        )
        return [row.split("\t")[0] for row in shown.stdout.splitlines()]

    assert offered("govsnap sh") == ["show"]
    assert sorted(offered("govsnap show ")) == sorted(["latest", ident])
    assert offered("govsnap list -e ") == ["staging"]


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed")
def test_zsh_completes_and_evaluates_nothing_it_was_handed(
    cli: Cli, repo: Path, tmp_path: Path
) -> None:
    # A branch name may hold `$(...)`: the summary of a snapshot taken on it does too.
    git(repo, "checkout", "-q", "-b", "x$(touch${IFS}pwned)")
    ident = create_snapshot(cli, repo)
    (tmp_path / "_govsnap").write_text(completion_script("zsh"))
    # compsys needs a line editor; the stubs print what the completion hands to it.
    stubs = 'compdef() { : }; _arguments() { print -rl -- "$@" }; _files() { print FILES }'

    def offered(*words: str) -> str:
        quoted = " ".join(f"'{w}'" for w in words)
        shown = subprocess.run(
            [
                "zsh",
                "-f",
                "-c",
                f"{stubs}; source {tmp_path / '_govsnap'}; words=({quoted}); "
                f"CURRENT={len(words)}; _govsnap",
            ],
            cwd=repo,
            env=shell_env(),
            capture_output=True,
            text=True,
            check=True,
        )
        return shown.stdout

    assert '"show":"Show everything about one snapshot' in offered("govsnap", "sh")
    listed = offered("govsnap", "show", "")
    assert f'"{ident}":' in listed and '"latest":"the newest snapshot"' in listed
    assert "touch" in listed and "$" not in listed, listed
    assert not (repo / "pwned").exists()


def test_completion_is_installed_where_each_shell_looks(
    cli: Cli, repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("BASH_COMPLETION_USER_DIR", raising=False)
    folder = tmp_path / "data" / "bash-completion" / "completions"
    dry = cli(repo, "completion", "bash", "--install", "--dry-run")
    assert dry.code == 0 and f"would write {folder / 'govsnap'}" in dry.out
    assert not folder.exists()
    done = cli(repo, "completion", "bash", "--install")
    assert done.code == 0 and f"wrote {folder / 'git-govsnap'}" in done.out
    script = cli(repo, "completion", "bash").out
    assert (folder / "govsnap").read_text() == script == (folder / "git-govsnap").read_text()
    fish = cli(repo, "completion", "fish", "--install")
    assert (tmp_path / "config" / "fish" / "completions" / "govsnap.fish").exists(), fish.out
    bad = cli(repo, "completion", "tcsh")
    assert bad.code == 2 and bad.err.startswith("govsnap: error: ")
    (tmp_path / "data").chmod(0o500)
    try:
        if os.geteuid() != 0:
            failed = cli(repo, "completion", "bash", "--install")
            assert failed.code == 3 and "cannot write" in failed.err
    finally:
        (tmp_path / "data").chmod(0o700)
