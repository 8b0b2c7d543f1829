"""`govsnap completion` and `govsnap install-man`: govsnap in the user's shell (Tab
completes commands, options, snapshot ids, environments, remotes) and in `man`
(`git govsnap --help`, `man git-govsnap`)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from govsnap.commands.options import DryRunOpt, feature
from govsnap.render import message

app = feature()


class Shell(StrEnum):
    """The shells govsnap completes in."""

    BASH = "bash"
    ZSH = "zsh"
    FISH = "fish"


# Each script asks `govsnap` itself what to offer (_GOVSNAP_COMPLETE, the framework's
# protocol), so completion follows the installed version's commands and the repository's
# snapshots. bash also completes `git govsnap ...`: git's completion calls _git_govsnap,
# and loads a completion file named git-govsnap for it.
SCRIPTS = {
    Shell.BASH: r"""# bash completion for govsnap and `git govsnap` (govsnap completion bash)
_govsnap_complete() {
    local IFS=$'\n'
    COMPREPLY=( $(env COMP_WORDS="${COMP_WORDS[*]}" COMP_CWORD="$COMP_CWORD" \
        _GOVSNAP_COMPLETE=complete_bash govsnap 2>/dev/null) )
    return 0
}
_git_govsnap() {
    local IFS=$'\n' i at=1
    for ((i = 1; i < cword; i++)); do
        if [[ ${words[i]} == govsnap ]]; then at=$i; break; fi
    done
    local rest=("${words[@]:at+1}")
    COMPREPLY=( $(env COMP_WORDS="govsnap"$'\n'"${rest[*]}" COMP_CWORD=$((cword - at)) \
        _GOVSNAP_COMPLETE=complete_bash govsnap 2>/dev/null) )
}
complete -o default -F _govsnap_complete govsnap
complete -o default -F _govsnap_complete git-govsnap
""",
    Shell.ZSH: r"""#compdef govsnap git-govsnap
# zsh completion for govsnap (govsnap completion zsh)
_govsnap() {
  eval $(env _TYPER_COMPLETE_ARGS="${words[1,$CURRENT]}" _GOVSNAP_COMPLETE=complete_zsh govsnap)
}
compdef _govsnap govsnap git-govsnap
""",
    Shell.FISH: """# fish completion for govsnap (govsnap completion fish)
complete --command govsnap --no-files --arguments "(env _GOVSNAP_COMPLETE=complete_fish \
_TYPER_COMPLETE_FISH_ACTION=get-args _TYPER_COMPLETE_ARGS=(commandline -cp) govsnap)" \
--condition "env _GOVSNAP_COMPLETE=complete_fish _TYPER_COMPLETE_FISH_ACTION=is-args \
_TYPER_COMPLETE_ARGS=(commandline -cp) govsnap"
""",
}


def _data_home() -> Path:
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")


def install_paths(shell: Shell) -> list[Path]:
    """Return where `shell` loads a user's completion for govsnap from, by itself."""
    if shell is Shell.BASH:
        # bash-completion loads completions/<command> on first use; git's completion
        # loads completions/git-govsnap for `git govsnap`.
        base = os.environ.get("BASH_COMPLETION_USER_DIR")
        folder = (Path(base) if base else _data_home() / "bash-completion") / "completions"
        return [folder / "govsnap", folder / "git-govsnap"]
    if shell is Shell.ZSH:
        return [Path.home() / ".zfunc" / "_govsnap"]
    config = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return [config / "fish" / "completions" / "govsnap.fish"]


@app.command("completion")
def completion(
    shell: Annotated[Shell, typer.Argument(help="bash, zsh or fish.")],
    install: Annotated[
        bool, typer.Option("--install", help="Write it where the shell loads it from.")
    ] = False,
    dry_run: DryRunOpt = False,
) -> None:
    """Print the shell completion script (`source <(govsnap completion bash)`), or write
    it where the shell finds it with --install."""
    from govsnap.errors import EnvironmentProblem

    script = SCRIPTS[shell]
    if not install:
        # Written whole, not as lines for people: --quiet does not apply to a script.
        typer.echo(script, nl=False)
        return
    for path in install_paths(shell):
        if dry_run:
            message(f"would write {path}")
            continue
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(script)
        except OSError as exc:
            raise EnvironmentProblem(f"cannot write {path}: {exc.strerror}") from exc
        message(f"wrote {path}")
    if shell is Shell.ZSH:
        message("zsh loads it once ~/.zshrc has: fpath+=~/.zfunc; autoload -Uz compinit; compinit")
    elif shell is Shell.BASH:
        message("bash loads it in new shells (needs the bash-completion package)")
    else:
        message("fish loads it in new shells")


def man_directory() -> Path:
    """Return where `man` finds a page for the govsnap on PATH: man-db searches
    <dir>/../share/man for each PATH directory, so beside that govsnap's bin directory (a
    venv's, pipx's ~/.local/bin, /usr/local/bin)."""
    found = shutil.which("govsnap")
    bin_dir = Path(found).parent if found else Path(sys.executable).parent
    return bin_dir.parent / "share" / "man" / "man1"


@app.command("install-man")
def install_man(
    ctx: typer.Context,
    directory: Annotated[
        Path | None,
        typer.Option(
            "--dir",
            metavar="DIR",
            help="Write into DIR (default: share/man/man1 beside the govsnap on PATH).",
        ),
    ] = None,
    to_stdout: Annotated[
        bool, typer.Option("--print", help="Print the page (roff) instead, for packagers.")
    ] = False,
    dry_run: DryRunOpt = False,
) -> None:
    """Install the manual page git-govsnap(1), made from this --help, where `man
    git-govsnap` and `git govsnap --help` find it."""
    from govsnap.errors import EnvironmentProblem
    from govsnap.manpage import page

    text = page(ctx.find_root().command)
    if to_stdout:
        typer.echo(text, nl=False)
        return
    folder = directory or man_directory()
    for name in ("git-govsnap.1", "govsnap.1"):
        path = folder / name
        if dry_run:
            message(f"would write {path}")
            continue
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        except OSError as exc:
            raise EnvironmentProblem(f"cannot write {path}: {exc.strerror}") from exc
        message(f"wrote {path}")
    if not dry_run and directory is None and not _man_finds(folder / "git-govsnap.1"):
        message(f"man does not search {folder.parent}: add it to MANPATH")


def _man_finds(path: Path) -> bool:
    """Return whether `man -w git-govsnap` finds `path` (False without man)."""
    try:
        proc = subprocess.run(
            ["man", "-w", "git-govsnap"], capture_output=True, text=True, check=False, timeout=30
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return proc.returncode == 0 and Path(proc.stdout.strip()).resolve() == path.resolve()
