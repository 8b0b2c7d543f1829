"""What git runs: the pre-push, post-merge and pre-receive hooks, and the configuration
they act on. Installing them is hooks.py's; the entry point git calls, which reads the
hook's input and shows what is said here, is commands/hook_run.py.

Nothing here prints: each hook tells `say` the lines git shows the user (prefixed
`remote:` for a server hook) and returns the exit code git acts on. The store, signing
and verification code is imported only once a hook has work to do, so a push to a branch
that is not promoted costs little more than starting Python.

An existing hook is never clobbered: it is renamed `<name>.govsnap-chained` and govsnap's
hook runs it first (same arguments, same standard input, git's environment), failing
when it fails.
"""

from __future__ import annotations

import fnmatch
import os
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from govsnap.errors import GovsnapError, UsageError
from govsnap.objects import Trigger
from govsnap.refs import is_govsnap_ref
from govsnap.repo import Repo

if TYPE_CHECKING:
    from govsnap.audit import Operation

CLIENT_HOOKS = (Trigger.PRE_PUSH, Trigger.POST_MERGE)
SERVER_HOOKS = ("pre-receive",)
HOOK_NAMES = CLIENT_HOOKS + SERVER_HOOKS
CHAINED_SUFFIX = ".govsnap-chained"
ZERO_OID = "0" * 40
DEFAULT_PROMOTION = ("main", "master", "release/*")

# A line for the user, which git shows (one call per line).
Say = Callable[[str], None]


class HookFailure(StrEnum):
    """What a client hook does when it cannot take its snapshot (govsnap.hookFailure)."""

    BLOCK = "block"  # fail the push: no promotion without its snapshot
    WARN = "warn"  # say so and let the push through


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


def hook_failure(repo: Repo) -> HookFailure:
    """Return `govsnap.hookFailure`: block (the default) or warn."""
    value = (repo.config_str("govsnap.hookFailure") or HookFailure.BLOCK).lower()
    if value not in set(HookFailure):
        raise UsageError(f"govsnap.hookFailure must be block or warn, not {value!r}")
    return HookFailure(value)


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
    say: Say
    context: dict[str, Any] = field(default_factory=dict)
    snapshots: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    refs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Chained:
    """How the hook govsnap chains to ended: its exit code, and why it could not run."""

    code: int
    problem: str | None = None


def run_chained(hook: Path, args: Sequence[str], stdin: bytes) -> Chained:
    """Run the hook govsnap chains to, as git would have."""
    chained = hook.with_name(hook.name + CHAINED_SUFFIX)
    # git skips a hook that is not executable; so does the chain.
    if not os.path.lexists(chained) or not os.access(chained, os.X_OK):
        return Chained(0)
    try:
        return Chained(subprocess.run([str(chained), *args], input=stdin, check=False).returncode)
    except OSError as exc:
        return Chained(126, f"cannot run the chained hook {chained}: {exc.strerror}")


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
        run.say(f"{trigger}: snapshot {ident} of {source_ref} ({environment})")
    else:
        run.unchanged.append(ident)
        run.say(f"{trigger}: {source_ref} has the content of snapshot {ident} ({environment})")


def _record_failure(op: Operation, run: HookRun, result: str) -> None:
    """Append a failed hook run to the audit trail (a successful one is recorded by the
    create entry of each snapshot); never hide the hook's own outcome."""
    entry = op.entry(
        f"{len(run.errors)} failure(s) snapshotting {', '.join(run.refs)}",
        snapshots=run.snapshots + run.unchanged,
        arguments={"refs": run.refs, "errors": run.errors, **run.context},
        result=result,
    )
    problem = op.fail(entry)
    if problem is not None:
        run.say(f"{run.hook}: could not append to the audit trail: {problem}")


def pre_push(repo: Repo, args: Sequence[str], updates: Sequence[PushUpdate], say: Say) -> int:
    """Snapshot the commits pushed to promotion branches; return the hook's exit code."""
    decisions = [d for d in decide_push(updates, promotion_patterns(repo)) if d.snapshot]
    if not decisions:
        return 0
    from govsnap import audit

    with audit.operation(repo, "pre-push") as op:
        policy = hook_failure(repo)
        remote = args[0] if args else ""
        # A push to a URL names no remote; a URL may carry credentials: it is not recorded.
        known_remote = remote if repo.config_str(f"remote.{remote}.url") else None
        run = HookRun("pre-push", say, {"remote": known_remote, "policy": policy})
        try:
            from govsnap.trust import load_policy

            # A policy branch rolled back, or a policy change nobody approved, fails the
            # push as loudly as a snapshot that cannot be taken.
            load_policy(repo)
        except GovsnapError as exc:
            run.errors.append(f"trust policy: {exc.message}")
        for d in decisions:
            assert d.pattern is not None
            run.refs.append(d.update.remote_ref)
            try:
                environment = environment_for(repo, d.pattern)
                _snapshot(
                    repo,
                    run,
                    Trigger.PRE_PUSH,
                    d.update.local_oid,
                    d.update.remote_ref,
                    environment,
                )
            except GovsnapError as exc:
                run.errors.append(f"{d.update.remote_ref}: {exc.message}")
            except Exception as exc:  # the push policy decides, not the crash
                run.errors.append(f"{d.update.remote_ref}: internal error: {exc!r}")
        blocked = bool(run.errors) and policy == HookFailure.BLOCK
        if run.errors:
            _record_failure(op, run, "blocked" if blocked else "warned")
        for problem in run.errors:
            say(f"pre-push: snapshot failed: {problem}")
        if blocked:
            say(
                "pre-push: push blocked (govsnap.hookFailure=block); fix the problem, or "
                "set govsnap.hookFailure=warn to push without a snapshot"
            )
            return 1
        if run.errors:
            say("pre-push: pushing without a snapshot (govsnap.hookFailure=warn)")
        return 0


def post_merge(repo: Repo, squash: bool, say: Say) -> int:
    """Snapshot the merged HEAD of a promotion branch; post-merge cannot undo the merge,
    so a failure is reported and the exit code is always 0."""
    git = repo.git
    if git.head_is_unborn or git.head_is_detached:
        return 0
    branch_ref = git.head.name
    pattern = promotion_pattern(branch_ref.removeprefix("refs/heads/"), promotion_patterns(repo))
    if pattern is None:
        return 0
    from govsnap import audit

    with audit.operation(repo, "post-merge") as op:
        run = HookRun("post-merge", say, {"squash": squash}, refs=[branch_ref])
        message = "squash merge: the merged changes are staged, not yet in HEAD" if squash else ""
        try:
            environment = environment_for(repo, pattern)
            head = str(git.head.target)
            _snapshot(
                repo,
                run,
                Trigger.POST_MERGE,
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
            say(f"post-merge: snapshot failed: {exc.message}")
        if run.errors:
            _record_failure(op, run, "failed")
    return 0


# --- pre-receive (server side) -----------------------------------------------------------


def pre_receive(repo: Repo, stdin: bytes, env: Mapping[str, str], say: Say) -> int:
    """Judge a push (see receive.py); return 1 (refusing the whole push) if any update of
    govsnap's refs, or of the policy ref, is refused."""
    from govsnap import receive

    updates = receive.parse_receive_lines(stdin)
    if not any(is_govsnap_ref(u.ref) for u in updates) and not _touches_policy(repo, updates):
        return 0
    receive.add_quarantine(repo, env)
    verdicts = [v for v in receive.decide_receive(repo, updates) if v.reason != "not govsnap's"]
    for v in verdicts:
        state = "accepted" if v.accepted else "REFUSED"
        what = receive.describe(repo, v.update)
        say(f"{state} {what} of {v.update.ref}: {v.reason}")
    refused = sum(not v.accepted for v in verdicts)
    if refused:
        say(f"push refused: {refused} ref update(s) failed govsnap's checks")
        return 1
    return 0


def _touches_policy(repo: Repo, updates: Sequence[Any]) -> bool:
    from govsnap.receive import server_policy_ref

    try:
        name = server_policy_ref(repo)
    except GovsnapError:
        return False  # govsnap's own refs are refused, naming the setting
    return name is not None and any(u.ref == name for u in updates)
