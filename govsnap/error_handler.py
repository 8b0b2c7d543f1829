"""The one place an exception becomes what the user sees: a line and an exit code.

Both edges of the program end here: the command line (cli.run) and git's hooks
(commands/hook_run.py). A GovsnapError carries its own message and code; libgit2 failing
to read the object store is the repository's problem, not govsnap's; anything else is a
bug, whose traceback goes to a log file and whose line says where (as pre-commit's
error_handler does).
"""

from __future__ import annotations

import errno
import os
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from govsnap.errors import EXIT_ENVIRONMENT, EXIT_INTERNAL, EXIT_INTERRUPTED, GovsnapError
from govsnap.schemas import schema_name


@dataclass(frozen=True)
class Failure:
    """What a failed command or hook shows (one line) and exits with."""

    message: str
    exit_code: int
    kind: str = "usage"  # usage, environment, check-failed, declined, internal, interrupted

    def as_json(self) -> dict[str, Any]:
        """Return the error as the document `--json` prints on stderr."""
        return {
            "schema": schema_name("error"),
            "message": self.message,
            "exit_code": self.exit_code,
            "kind": self.kind,
        }


def failure(exc: BaseException) -> Failure:
    """Return the line and exit code of `exc`; log the traceback of an unexpected one."""
    if isinstance(exc, GovsnapError):
        return Failure(exc.message, exc.exit_code, exc.kind)
    import pygit2  # here: `govsnap --help` never needs libgit2

    if isinstance(exc, pygit2.GitError):
        # libgit2 could not read the object store (a damaged pack, a truncated object):
        # the repository, not govsnap, needs repairing.
        return Failure(
            f"cannot read the repository: {exc} (`git fsck --full` names the damaged objects)",
            EXIT_ENVIRONMENT,
            "environment",
        )
    if isinstance(exc, KeyboardInterrupt):
        return Failure("interrupted", EXIT_INTERRUPTED, "interrupted")
    refused = _refused_write(exc)
    if refused is not None:
        return Failure(refused, EXIT_ENVIRONMENT, "environment")
    log = _log_crash()
    where = f" (traceback in {log})" if log else ""
    return Failure(
        f"internal error: {type(exc).__name__}: {exc}{where}", EXIT_INTERNAL, "internal"
    )


# What the system says when a write is refused (libgit2 reports them as text only).
_REFUSED = {
    errno.EROFS: "Read-only file system",
    errno.EACCES: "Permission denied",
    errno.EPERM: "Operation not permitted",
    errno.ENOSPC: "No space left on device",
    errno.EDQUOT: "Disk quota exceeded",
}


def _refused_write(exc: BaseException) -> str | None:
    """Return the line for a write the system refused (a read-only .git, no permission,
    a full disk): the machine's problem, not a bug; None for any other exception."""
    if not isinstance(exc, OSError):
        return None
    reason = _REFUSED.get(exc.errno or 0) or next(
        (text for text in _REFUSED.values() if text in str(exc)), None
    )
    if reason is None:
        return None
    where = f" {exc.filename}" if exc.filename else ""
    if reason in (_REFUSED[errno.ENOSPC], _REFUSED[errno.EDQUOT]):
        return f"cannot write{where}: {reason}"
    return (
        f"cannot write{where}: {reason} (a read-only repository: list, show, diff, "
        "verify --no-record and the other commands that only read work without writing)"
    )


def _log_crash() -> Path | None:
    """Append the traceback being handled to govsnap's log; return the log (None: none)."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "govsnap"
    try:
        base.mkdir(parents=True, exist_ok=True)
        log = base / "govsnap.log"
        with log.open("a") as fh:
            fh.write(traceback.format_exc() + "\n")
        return log
    except OSError:
        return None
