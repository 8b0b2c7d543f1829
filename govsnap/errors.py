"""Errors users see: each carries a one-line message and the exit code to leave with."""

from __future__ import annotations

# Exit codes, as in STYLE.md: 0 success, 1 a check failed (or a confirmation was
# declined), 2 usage or input error, 3 an environment problem (or a bug, as pre-commit
# exits), 130 interrupted (as a shell reports SIGINT).
EXIT_CHECK_FAILED = 1
EXIT_USAGE = 2
EXIT_ENVIRONMENT = 3
EXIT_INTERNAL = 3
EXIT_INTERRUPTED = 130


class GovsnapError(Exception):
    """An error with a message meant for the user; the CLI prints it as one line."""

    exit_code = EXIT_USAGE
    kind = "usage"  # what `--json` calls it (docs/schemas/error.v1.json)

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UsageError(GovsnapError):
    """The user asked for something that cannot be done as asked."""


class SnapshotNotFound(UsageError):
    """No snapshot answers to the given name."""


class AmbiguousSnapshot(UsageError):
    """Several snapshots answer to the given name."""


class InvalidRevision(UsageError):
    """A revision given by the user does not name a commit."""


class EnvironmentProblem(GovsnapError):
    """The machine or the repository is not in a state govsnap can work in."""

    exit_code = EXIT_ENVIRONMENT
    kind = "environment"


class NotAttempted(EnvironmentProblem):
    """The repository's state rules the operation out before it starts (no working tree,
    a merge in progress): nothing was tried, so the audit trail records no failure."""


class NotARepository(NotAttempted):
    """The path is not inside a git repository."""


class BareRepository(NotAttempted):
    """The operation needs a working tree and the repository has none."""


class SigningError(EnvironmentProblem):
    """Signing is not possible: no key, no gpg, or the signer refused."""


class ConcurrentUpdate(EnvironmentProblem):
    """A ref kept changing under us; the operation gave up after retrying."""


class CheckFailed(GovsnapError):
    """A check (verification, rehearsal) ran and did not pass."""

    exit_code = EXIT_CHECK_FAILED
    kind = "check-failed"


class CorruptObject(CheckFailed):
    """A govsnap object is missing or does not parse."""


class SnapshotConflict(CheckFailed):
    """A remote holds another object under a snapshot id this clone has."""


class Declined(GovsnapError):
    """The user answered no when asked to confirm; nothing was changed. Every command
    that asks exits the same way (like typer's own Abort)."""

    exit_code = EXIT_CHECK_FAILED
    kind = "declined"


class HistoryRewritten(CheckFailed):
    """A history this clone recorded (the audit chain, the trust policy) was rewritten,
    truncated or deleted; the message says how to restore it from this clone."""
