"""Git hooks: install / uninstall / status, and what the pre-push, post-merge and
pre-receive hooks do when git runs them.

Installed hooks are small shell scripts that exec `python -m govsnap hook-run <name>`;
`__main__` sends `hook-run` here without loading the command-line framework, and this
module imports the store, signing and verification code only once a hook has work to
do, so a push to a branch that is not promoted costs little more than starting Python.

An existing hook is never clobbered: it is renamed `<name>.govsnap-chained`, govsnap's
hook runs it first (same arguments, same standard input, git's environment) and fails
when it fails; uninstalling renames it back, so the directory is exactly as it was.
"""

from __future__ import annotations

import fnmatch
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from govsnap import render
from govsnap.errors import GovsnapError, UsageError
from govsnap.repo import Repo, open_repo, scrubbed_env

CLIENT_HOOKS = ("pre-push", "post-merge")
SERVER_HOOKS = ("pre-receive",)
HOOK_NAMES = CLIENT_HOOKS + SERVER_HOOKS
MARKER = "# govsnap-hook 1"
CHAINED_SUFFIX = ".govsnap-chained"
ZERO_OID = "0" * 40
DEFAULT_PROMOTION = ("main", "master", "release/*")


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
    state: str  # "absent", "govsnap", "foreign" or "directory"
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
    action: str  # install, update, unchanged, chain, remove, restore, skip
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


def select_hooks(pre_push: bool, post_merge: bool, all_: bool, server: bool) -> list[str]:
    """Return the hooks the flags name; pre-push alone when none is given."""
    names = []
    if pre_push or all_:
        names.append("pre-push")
    if post_merge or all_:
        names.append("post-merge")
    if server:
        names.append("pre-receive")
    return names or ["pre-push"]


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
    hook_failure: str

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


# --- configuration the hooks act on ------------------------------------------------------


def promotion_patterns(repo: Repo) -> list[str]:
    """Return `govsnap.promotionBranches` (space-separated or repeated), or the default."""
    return repo.config_list("govsnap.promotionBranches") or list(DEFAULT_PROMOTION)


def promotion_pattern(branch: str, patterns: Sequence[str]) -> str | None:
    """Return the first pattern matching a branch name (`*` also matches `/`), or None."""
    return next((p for p in patterns if fnmatch.fnmatchcase(branch, p)), None)


def environment_for(repo: Repo, pattern: str) -> str:
    """Return the environment of a promotion pattern.

    `govsnap.environment.<pattern>` for patterns git accepts as a variable name (`main`),
    `govsnap.<pattern>.environment` for any pattern (`[govsnap "release/*"]`), else
    `govsnap.environment`, else 'default'.
    """
    from govsnap.objects import validate_name

    value = None
    if pattern.replace("-", "").isalnum() and pattern[:1].isalpha():
        value = repo.config_str(f"govsnap.environment.{pattern}")
    value = value or repo.config_str(f"govsnap.{pattern}.environment")
    value = value or repo.config_str("govsnap.environment") or "default"
    return validate_name("environment", value)


def hook_failure(repo: Repo) -> str:
    """Return `govsnap.hookFailure`: "block" (the default) or "warn"."""
    value = (repo.config_str("govsnap.hookFailure") or "block").lower()
    if value not in {"block", "warn"}:
        raise UsageError(f"govsnap.hookFailure must be block or warn, not {value!r}")
    return value


# --- running hooks -----------------------------------------------------------------------


@dataclass(frozen=True)
class PushUpdate:
    """One line of pre-push input: what is pushed where."""

    local_ref: str
    local_oid: str
    remote_ref: str
    remote_oid: str

    @property
    def deletion(self) -> bool:
        """Return True when the push deletes the remote ref."""
        return self.local_oid == ZERO_OID


def parse_push_lines(data: bytes) -> list[PushUpdate]:
    """Parse git's pre-push input: `<local ref> <local oid> <remote ref> <remote oid>`."""
    updates = []
    for line in data.decode(errors="surrogateescape").splitlines():
        if not line.strip():
            continue
        parts = line.rsplit(" ", 3)
        if len(parts) != 4:
            raise UsageError(f"pre-push: cannot read input line {line!r}")
        updates.append(PushUpdate(*parts))
    return updates


def framework_updates(env: Mapping[str, str], repo: Repo) -> list[PushUpdate]:
    """Return the one update the pre-commit framework describes in PRE_COMMIT_* variables.

    pre-commit passes the first pushed ref that is not a deletion; when it pushes a new
    branch from its root it sets no TO_REF, so the local ref is resolved instead.
    """
    remote_ref = env.get("PRE_COMMIT_REMOTE_BRANCH")
    if not remote_ref:
        return []
    local_ref = env.get("PRE_COMMIT_LOCAL_BRANCH") or ""
    local_oid = env.get("PRE_COMMIT_TO_REF")
    if not local_oid:
        from govsnap.store import resolve_commit

        local_oid = str(resolve_commit(repo, local_ref)[1].id)
    remote_oid = env.get("PRE_COMMIT_FROM_REF") or ZERO_OID
    return [PushUpdate(local_ref, local_oid, remote_ref, remote_oid)]


@dataclass(frozen=True)
class PushDecision:
    """Whether one pushed ref is snapshotted, and why."""

    update: PushUpdate
    pattern: str | None
    reason: str

    @property
    def snapshot(self) -> bool:
        """Return True when the pushed commit is to be snapshotted."""
        return self.pattern is not None


def decide_push(updates: Sequence[PushUpdate], patterns: Sequence[str]) -> list[PushDecision]:
    """Return, per pushed ref, whether pre-push snapshots it (promotion branches only)."""
    decisions = []
    for u in updates:
        if u.deletion:
            decisions.append(PushDecision(u, None, "deletion"))
        elif not u.remote_ref.startswith("refs/heads/"):
            decisions.append(PushDecision(u, None, "not a branch"))
        else:
            branch = u.remote_ref.removeprefix("refs/heads/")
            pattern = promotion_pattern(branch, patterns)
            reason = "promotion branch" if pattern else "not a promotion branch"
            decisions.append(PushDecision(u, pattern, reason))
    return decisions


@dataclass
class HookRun:
    """What one hook run did: the snapshots it took and the errors it met. `context` goes
    into the audit entry of each snapshot (and of a failed run): remote, policy, squash."""

    hook: str
    context: dict[str, Any] = field(default_factory=dict)
    snapshots: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    refs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def run_chained(hook: Path, args: Sequence[str], stdin: bytes) -> int:
    """Run the hook govsnap chains to, as git would have; return its exit code."""
    chained = hook.with_name(hook.name + CHAINED_SUFFIX)
    # git skips a hook that is not executable; so does the chain.
    if not os.path.lexists(chained) or not os.access(chained, os.X_OK):
        return 0
    try:
        return subprocess.run([str(chained), *args], input=stdin, check=False).returncode
    except OSError as exc:
        render.error(f"cannot run the chained hook {chained}: {exc.strerror}")
        return 126


def _snapshot(
    repo: Repo,
    run: HookRun,
    trigger: str,
    rev: str,
    source_ref: str,
    environment: str,
    *,
    labels: Sequence[str] = (),
    message: str = "",
    if_changed: bool = True,
) -> None:
    """Snapshot commit `rev` as pushed or merged into `source_ref`, recording it in `run`;
    with `if_changed`, content equal to the environment's newest snapshot is not taken
    again (a push retried after the remote refused it, say)."""
    from govsnap.store import CreateOptions, create

    options = CreateOptions(
        trigger=trigger,
        environment=environment,
        labels=list(labels),
        from_rev=rev,
        source_ref=source_ref,
        if_changed=if_changed,
        message=message,
        audit_context={"hook": run.hook, **run.context},
    )
    result = create(repo, options)
    ident = result.snapshot.id
    if result.created:
        run.snapshots.append(ident)
        render.stderr_line(f"{trigger}: snapshot {ident} of {source_ref} ({environment})")
    else:
        run.unchanged.append(ident)
        render.stderr_line(
            f"{trigger}: {source_ref} has the content of snapshot {ident} ({environment})"
        )


def _record_failure(repo: Repo, run: HookRun, result: str, started: float) -> None:
    """Append a failed hook run to the audit trail (a successful one is recorded by the
    create entry of each snapshot); never hide the hook's own outcome."""
    from govsnap import audit

    summary = f"{len(run.errors)} failure(s) snapshotting {', '.join(run.refs)}"
    try:
        audit.append(
            repo,
            run.hook,
            summary,
            snapshots=run.snapshots + run.unchanged,
            identity=repo.committer(),
            arguments={"refs": run.refs, "errors": run.errors, **run.context},
            result=result,
            duration=time.monotonic() - started,
        )
    except GovsnapError as exc:
        render.stderr_line(f"{run.hook}: could not append to the audit trail: {exc.message}")


def pre_push(repo: Repo, args: Sequence[str], updates: Sequence[PushUpdate]) -> int:
    """Snapshot the commits pushed to promotion branches; return the hook's exit code."""
    started = time.monotonic()
    decisions = [d for d in decide_push(updates, promotion_patterns(repo)) if d.snapshot]
    if not decisions:
        return 0
    policy = hook_failure(repo)
    remote = args[0] if args else ""
    # A push to a URL names no remote; a URL may carry credentials, so it is not recorded.
    known_remote = remote if repo.config_str(f"remote.{remote}.url") else None
    run = HookRun("pre-push", {"remote": known_remote, "policy": policy})
    try:
        from govsnap.trust import load_policy

        # A policy branch rolled back, or a policy change nobody approved, fails the push
        # as loudly as a snapshot that cannot be taken.
        load_policy(repo)
    except GovsnapError as exc:
        run.errors.append(f"trust policy: {exc.message}")
    for d in decisions:
        assert d.pattern is not None
        run.refs.append(d.update.remote_ref)
        try:
            environment = environment_for(repo, d.pattern)
            _snapshot(repo, run, "pre-push", d.update.local_oid, d.update.remote_ref, environment)
        except GovsnapError as exc:
            run.errors.append(f"{d.update.remote_ref}: {exc.message}")
        except Exception as exc:  # the push policy decides, not the crash
            run.errors.append(f"{d.update.remote_ref}: internal error: {exc!r}")
    blocked = bool(run.errors) and policy == "block"
    if run.errors:
        _record_failure(repo, run, "blocked" if blocked else "warned", started)
    for problem in run.errors:
        render.stderr_line(f"pre-push: snapshot failed: {problem}")
    if blocked:
        render.stderr_line(
            "pre-push: push blocked (govsnap.hookFailure=block); fix the problem, or "
            "set govsnap.hookFailure=warn to push without a snapshot"
        )
        return 1
    if run.errors:
        render.stderr_line("pre-push: pushing without a snapshot (govsnap.hookFailure=warn)")
    return 0


def post_merge(repo: Repo, squash: bool) -> int:
    """Snapshot the merged HEAD of a promotion branch; post-merge cannot undo the merge,
    so a failure is reported and the exit code is always 0."""
    started = time.monotonic()
    git = repo.git
    if git.head_is_unborn or git.head_is_detached:
        return 0
    branch_ref = git.head.name
    pattern = promotion_pattern(branch_ref.removeprefix("refs/heads/"), promotion_patterns(repo))
    if pattern is None:
        return 0
    run = HookRun("post-merge", {"squash": squash}, refs=[branch_ref])
    message = "squash merge: the merged changes are staged, not yet in HEAD" if squash else ""
    try:
        environment = environment_for(repo, pattern)
        head = str(git.head.target)
        _snapshot(
            repo,
            run,
            "post-merge",
            head,
            branch_ref,
            environment,
            labels=["squash"] if squash else [],
            message=message,
            # A squash merge leaves HEAD where it was: record the event all the same.
            if_changed=not squash,
        )
    except GovsnapError as exc:
        run.errors.append(f"{branch_ref}: {exc.message}")
        render.stderr_line(f"post-merge: snapshot failed: {exc.message}")
    if run.errors:
        _record_failure(repo, run, "failed", started)
    return 0


# --- pre-receive (server side) -----------------------------------------------------------


def pre_receive(repo: Repo, stdin: bytes, env: Mapping[str, str]) -> int:
    """Judge a push (see receive.py); return 1 (refusing the whole push) if any update of
    govsnap's refs, or of the policy ref, is refused."""
    from govsnap import receive

    updates = receive.parse_receive_lines(stdin)
    if not any(receive.is_govsnap_ref(u.ref) for u in updates) and not _touches_policy(
        repo, updates
    ):
        return 0
    receive.add_quarantine(repo, env)
    verdicts = [v for v in receive.decide_receive(repo, updates) if v.reason != "not govsnap's"]
    for v in verdicts:
        state = "accepted" if v.accepted else "REFUSED"
        what = receive.describe(repo, v.update)
        render.stderr_line(f"{state} {what} of {v.update.ref}: {v.reason}")
    refused = sum(not v.accepted for v in verdicts)
    if refused:
        render.stderr_line(f"push refused: {refused} ref update(s) failed govsnap's checks")
        return 1
    return 0


def _touches_policy(repo: Repo, updates: Sequence[Any]) -> bool:
    from govsnap.receive import server_policy_ref

    try:
        name = server_policy_ref(repo)
    except GovsnapError:
        return False  # govsnap's own refs are refused, naming the setting
    return name is not None and any(u.ref == name for u in updates)


def _open_hook_repo(env: Mapping[str, str]) -> Repo:
    """Open the repository git runs the hook for (GIT_DIR, relative to the directory git
    runs the hook in, when git set it)."""
    return open_repo(Path.cwd(), env)


def _scrub_environment() -> None:
    """Drop the GIT_* variables git sets for hooks, so git and libgit2 calls made from
    here act on the repository they are given, not the one these variables point at."""
    kept = scrubbed_env()
    os.environ.clear()
    os.environ.update(kept)


def main(argv: Sequence[str]) -> int:
    """Run `hook-run <name> [--chain <script>] [git's hook arguments...]`; return the exit
    code git acts on. Without --chain it is run by the pre-commit framework or by hand."""
    if not argv or argv[0] not in HOOK_NAMES:
        render.error(f"hook-run needs a hook name: one of {', '.join(HOOK_NAMES)}")
        return 2
    name, rest = argv[0], list(argv[1:])
    script = None
    if rest[:1] == ["--chain"] and len(rest) >= 2:
        script, rest = Path(rest[1]), rest[2:]
    env = dict(os.environ)
    framework = env.get("PRE_COMMIT") == "1"
    stdin = b""
    if name != "post-merge" and not framework:
        stdin = sys.stdin.buffer.read()
    if script is not None:
        code = run_chained(script, rest, stdin)
        if code != 0:
            return code
    try:
        repo = _open_hook_repo(env)
        _scrub_environment()
        if name == "pre-push":
            if framework:
                updates = framework_updates(env, repo)
                rest = rest or [env.get("PRE_COMMIT_REMOTE_NAME", "")]
            else:
                updates = parse_push_lines(stdin)
            return pre_push(repo, rest, updates)
        if name == "post-merge":
            flag = rest[0] if rest else env.get("PRE_COMMIT_IS_SQUASH_MERGE", "0")
            return post_merge(repo, flag == "1")
        return pre_receive(repo, stdin, env)
    except GovsnapError as exc:
        render.error(f"{name}: {exc.message}")
        # A hook that cannot even start must not let a push through unnoticed.
        return 0 if name == "post-merge" else exc.exit_code
    except Exception as exc:  # git shows one line, not a traceback
        render.error(f"{name}: internal error: {type(exc).__name__}: {exc}")
        return 0 if name == "post-merge" else 3
