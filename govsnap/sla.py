"""Service levels: how long each operation may take (`git config govsnap.sla.<operation>`),
and what an audit entry's result means as an outcome a monitor counts.

Defaults follow the product brief (create 30 s, verify 1 min, rollback 5 min); the other
operations get a bound a healthy repository stays well inside. `0` or `off` holds an
operation to no SLA.
"""

from __future__ import annotations

import re
from typing import Literal

from govsnap.errors import UsageError
from govsnap.repo import Repo

DEFAULT_SLA: dict[str, float] = {
    "create": 30,
    "verify": 60,
    "rollback": 300,
    # A rehearsal clones, damages, rolls back and validates: a rollback and then some.
    "rehearse": 600,
    "prune": 600,
    "purge": 600,
    "push": 300,
    "fetch": 300,
    # A hook run snapshots every promotion ref of one push or merge.
    "pre-push": 60,
    "post-merge": 60,
}

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(ms|s|m|h)?$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}

Outcome = Literal["success", "failure"]
# The results an entry of a completed operation records; anything else ("fail",
# "failed: ...", "refused: ...", "blocked", "warned", "problems: ...") fell short.
SUCCESS_RESULTS = frozenset({"ok", "pass"})


def outcome_of(result: str) -> Outcome:
    """Return the outcome an entry's result stands for."""
    return "success" if result in SUCCESS_RESULTS else "failure"


def parse_duration(key: str, text: str) -> float | None:
    """Return seconds for `30`, `30s`, `1.5m`, `2h` or `500ms`; None for `0` or `off`."""
    value = text.strip().lower()
    if value in ("off", "none"):
        return None
    found = _DURATION.match(value)
    if not found:
        raise UsageError(
            f"git config {key} is {text!r}: give seconds (30, 30s), minutes (5m), "
            "hours (1h), or 0/off for no SLA"
        )
    seconds = float(found.group(1)) * _UNIT[found.group(2) or "s"]
    return seconds or None


def threshold(repo: Repo, operation: str) -> float | None:
    """Return the SLA of `operation` in seconds (None: none), from git config or the
    default; refuse a value that does not read as a duration."""
    key = f"govsnap.sla.{operation}"
    configured = repo.config_str(key)
    if configured is None:
        return DEFAULT_SLA.get(operation)
    return parse_duration(key, configured)


def thresholds(repo: Repo) -> dict[str, float]:
    """Return the SLA of every operation that has one (defaults and git config)."""
    found: dict[str, float] = {}
    names = set(DEFAULT_SLA)
    for entry in repo.git.config:
        section, _, rest = entry.name.partition(".")
        sub, _, name = rest.rpartition(".")
        if section.lower() == "govsnap" and sub.lower() == "sla" and name:
            names.add(name.lower())
    for name in sorted(names):
        value = threshold(repo, name)
        if value is not None:
            found[name] = value
    return found
