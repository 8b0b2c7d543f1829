"""Installing git hooks: install / uninstall / status. What the hooks do when git runs
them is hook_run.py's.

Installed hooks are small shell scripts that exec `python -m govsnap hook-run <name>`;
`__main__` sends `hook-run` to commands/hook_run.py without loading the command-line
framework.

An existing hook is never clobbered: it is renamed `<name>.govsnap-chained`, govsnap's
hook runs it first (same arguments, same standard input, git's environment) and fails
when it fails; uninstalling renames it back, so the directory is exactly as it was.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from govsnap.errors import UsageError
from govsnap.hook_run import (
    CHAINED_SUFFIX,
    HOOK_NAMES,
    HookFailure,
    environment_for,
    hook_failure,
    promotion_patterns,
)
from govsnap.repo import Repo

MARKER = "# govsnap-hook 1"
# What is at a hook's path: nothing, govsnap's script, another hook, a directory.
Presence = Literal["absent", "govsnap", "foreign", "directory"]
# What install and uninstall do to one hook.
Action = Literal["install", "update", "unchanged", "chain", "remove", "restore", "skip"]


# --- where hooks live --------------------------------------------------------------------


def hooks_dir(repo: Repo) -> Path:
    """Return the directory git runs hooks from (core.hooksPath, worktrees, bare repos)."""
    out = repo.git_cmd("rev-parse", "--git-path", "hooks").stdout.decode().strip()
    return (repo.cwd / out).resolve()


def hook_script(name: str, python: str) -> str:
    """Return the text of govsnap's hook `name`, run by `python` (or `govsnap` on PATH)."""
    quoted = shlex.quote(python)
    return (
        "#!/bin/sh\n"
        f"{MARKER}: {name}\n"
        "# Installed by `govsnap hooks install`. `govsnap hooks uninstall` removes it and puts\n"
        f"# back the hook it runs first ({name}{CHAINED_SUFFIX}), if there was one.\n"
        f"if [ -x {quoted} ]; then\n"
        f'    exec {quoted} -I -m govsnap hook-run {name} --chain "$0" "$@"\n'
        "fi\n"
        f'exec govsnap hook-run {name} --chain "$0" "$@"\n'
    )


@dataclass(frozen=True)
class HookState:
    """What is at one hook's path now."""

    name: str
    path: Path
    state: Presence
    executable: bool
    chained: bool  # a `<name>.govsnap-chained` file exists
    chained_executable: bool

    @property
    def chained_path(self) -> Path:
        """Return where the hook govsnap chains to lives."""
        return self.path.with_name(self.name + CHAINED_SUFFIX)

    def as_json(self) -> dict[str, Any]:
        """Return the state as JSON-ready data."""
        return {
            "name": self.name,
            "path": str(self.path),
            "state": self.state,
            "executable": self.executable,
            "chained": str(self.chained_path) if self.chained else None,
            "chained_executable": self.chained_executable if self.chained else None,
        }


def _is_ours(path: Path) -> bool:
    if path.is_symlink() or not path.is_file():
        return False
    with path.open("rb") as fh:
        head = fh.read(200)
    return MARKER.encode() in head


def inspect(directory: Path, name: str) -> HookState:
    """Return the state of hook `name` in `directory`."""
    path = directory / name
    chained = path.with_name(name + CHAINED_SUFFIX)
    state: Presence
    if not os.path.lexists(path):
        state = "absent"
    elif path.is_dir() and not path.is_symlink():
        state = "directory"
    elif _is_ours(path):
        state = "govsnap"
    else:
        state = "foreign"
    return HookState(
        name=name,
        path=path,
        state=state,
        executable=state != "absent" and os.access(path, os.X_OK),
        chained=os.path.lexists(chained),
        chained_executable=os.access(chained, os.X_OK),
    )


# --- install / uninstall -----------------------------------------------------------------


@dataclass(frozen=True)
class HookAction:
    """One change to make (or made) to a hook, and why."""

    name: str
    path: Path
    action: Action
    detail: str
    discard_chained: bool = False  # --force: delete a left-over chained hook first

    def as_json(self) -> dict[str, Any]:
        """Return the action as JSON-ready data."""
        return {
            "hook": self.name,
            "path": str(self.path),
            "action": self.action,
            "detail": self.detail,
            "discard_chained": self.discard_chained,
        }


def plan_install(state: HookState, script: str, force: bool) -> HookAction:
    """Decide how to install govsnap's hook over `state`; raise UsageError on a conflict."""
    name, path = state.name, state.path
    chained = state.chained_path.name
    if state.state == "directory":
        raise UsageError(f"{path} is a directory, not a hook: move it away first")
    if state.state == "govsnap":
        current = path.read_text()
        if current == script:
            return HookAction(name, path, "unchanged", "already installed")
        return HookAction(name, path, "update", "rewritten for this govsnap installation")
    stale = state.chained
    if stale and not force:
        raise UsageError(
            f"{state.chained_path} is left from an earlier install and {name} is not "
            f"govsnap's: restore or remove it, or pass --force to discard it"
        )
    if state.state == "absent":
        return HookAction(name, path, "install", "new hook", discard_chained=stale)
    detail = f"existing hook kept as {chained}; it runs first and its failure fails the hook"
    return HookAction(name, path, "chain", detail, discard_chained=stale)


def plan_uninstall(state: HookState) -> HookAction:
    """Decide how to remove govsnap's hook from `state` and restore what was there."""
    name, path = state.name, state.path
    if state.state == "govsnap":
        if state.chained:
            return HookAction(name, path, "restore", f"{state.chained_path.name} put back")
        return HookAction(name, path, "remove", "removed")
    if state.state == "absent":
        return HookAction(name, path, "skip", "not installed")
    extra = f" ({state.chained_path.name} left as it is)" if state.chained else ""
    return HookAction(name, path, "skip", f"not govsnap's hook: left alone{extra}")


def _write_script(path: Path, script: str) -> None:
    """Write an executable script atomically (a reader never sees half of it)."""
    tmp = path.with_name(f".{path.name}.govsnap-tmp")
    tmp.write_text(script)
    tmp.chmod(0o755)
    os.replace(tmp, path)


def apply_action(action: HookAction, script: str) -> None:
    """Carry out one planned action."""
    chained = action.path.with_name(action.name + CHAINED_SUFFIX)
    if action.discard_chained:
        chained.unlink()
    if action.action in {"install", "update"}:
        action.path.parent.mkdir(parents=True, exist_ok=True)
        _write_script(action.path, script)
    elif action.action == "chain":
        os.rename(action.path, chained)
        try:
            _write_script(action.path, script)
        except OSError:
            os.rename(chained, action.path)
            raise
    elif action.action == "remove":
        action.path.unlink()
    elif action.action == "restore":
        os.replace(chained, action.path)


@dataclass(frozen=True)
class HooksReport:
    """What install or uninstall did (or would do, with --dry-run)."""

    directory: Path
    actions: tuple[HookAction, ...]
    dry_run: bool
    config: tuple[tuple[str, str], ...] = ()  # git config set (the server's policy ref)
    warnings: tuple[str, ...] = ()  # what the installed hooks still need

    def as_json(self) -> dict[str, Any]:
        """Return the report as JSON-ready data."""
        return {
            "directory": str(self.directory),
            "dry_run": self.dry_run,
            "actions": [a.as_json() for a in self.actions],
            "config": [{"key": k, "value": v} for k, v in self.config],
            "warnings": list(self.warnings),
        }


def select_hooks(
    pre_push: bool,
    post_merge: bool,
    all_: bool,
    server: bool,
    *,
    default: Sequence[str] = ("pre-push",),
) -> list[str]:
    """Return the hooks the flags name; `default` when none is given."""
    names = []
    if pre_push or all_:
        names.append("pre-push")
    if post_merge or all_:
        names.append("post-merge")
    if server:
        names.append("pre-receive")
    return names or list(default)


def install(
    repo: Repo,
    names: Sequence[str],
    *,
    force: bool = False,
    dry_run: bool = False,
    trust_ref: str | None = None,
) -> HooksReport:
    """Install govsnap's hooks `names` where git looks for them, chaining to existing ones;
    with `trust_ref`, name it as the server's policy ref (govsnap.trustRef).

    Every decision is taken before anything is changed, so a conflict leaves the
    directory untouched.
    """
    from govsnap.trust import configured_anchor, policy_ref

    if trust_ref is not None and "pre-receive" not in names:
        raise UsageError("--trust-ref names the policy ref of a server: use it with --server")
    if trust_ref is not None and not trust_ref.startswith("refs/"):
        raise UsageError(
            f"--trust-ref {trust_ref!r} is not a full ref name: write it in full "
            f"(refs/heads/{trust_ref}), which a tag of the same name cannot answer to"
        )
    directory = hooks_dir(repo)
    actions = []
    for name in names:
        script = hook_script(name, sys.executable)
        actions.append((plan_install(inspect(directory, name), script, force), script))
    config: list[tuple[str, str]] = []
    warnings: list[str] = []
    if trust_ref is not None and repo.config_str("govsnap.trustRef") != trust_ref:
        config.append(("govsnap.trustRef", trust_ref))
    if "pre-receive" in names:
        if trust_ref is None and repo.config_str("govsnap.trustRef") is None:
            warnings.append(
                "the hook refuses every govsnap ref until this server names its policy ref: "
                "git config govsnap.trustRef refs/heads/<branch> (or hooks install --server "
                "--trust-ref refs/heads/<branch>); HEAD is never taken for it"
            )
        if not configured_anchor(repo).pinned:
            warnings.append(
                "the hook refuses every govsnap ref until a root of trust is pinned: git "
                "config govsnap.trustAnchor <fingerprint of the policy's first signer>"
            )
    if not dry_run:
        for key, value in config:
            repo.set_config(key, value)
        if config:
            policy_ref(repo)  # the value written is one the hook accepts
        for action, script in actions:
            apply_action(action, script)
    return HooksReport(
        directory, tuple(a for a, _ in actions), dry_run, tuple(config), tuple(warnings)
    )


def uninstall(repo: Repo, names: Sequence[str], *, dry_run: bool = False) -> HooksReport:
    """Remove govsnap's hooks `names` (all of them when empty), restoring chained hooks."""
    directory = hooks_dir(repo)
    actions = tuple(plan_uninstall(inspect(directory, name)) for name in names or HOOK_NAMES)
    if not dry_run:
        for action in actions:
            apply_action(action, "")
    return HooksReport(directory, actions, dry_run)


@dataclass(frozen=True)
class HooksStatus:
    """Where hooks are, which are govsnap's, and the configuration they act on."""

    directory: Path
    hooks_path: str | None
    hooks: tuple[HookState, ...]
    promotion_branches: tuple[str, ...]
    environments: Mapping[str, str]
    hook_failure: HookFailure

    def as_json(self) -> dict[str, Any]:
        """Return the status as JSON-ready data."""
        return {
            "directory": str(self.directory),
            "core_hooks_path": self.hooks_path,
            "hooks": [h.as_json() for h in self.hooks],
            "promotion_branches": list(self.promotion_branches),
            "environments": dict(self.environments),
            "hook_failure": self.hook_failure,
        }


def status(repo: Repo) -> HooksStatus:
    """Return the state of every hook govsnap knows, and the configuration they use."""
    directory = hooks_dir(repo)
    patterns = promotion_patterns(repo)
    return HooksStatus(
        directory=directory,
        hooks_path=repo.config_str("core.hooksPath"),
        hooks=tuple(inspect(directory, name) for name in HOOK_NAMES),
        promotion_branches=tuple(patterns),
        environments={p: environment_for(repo, p) for p in patterns},
        hook_failure=hook_failure(repo),
    )
