"""The retention policy engine: which snapshots to keep and why, as a pure function.

The semantics are restic's `forget` (internal/data/snapshot_policy.go), matched rule for
rule: snapshots are taken newest first; each period rule keeps the newest snapshot of each
distinct period (hour, day, ISO week, month, year) until its count is used up, and keeps
the oldest snapshot too when the count is not used up ("oldest ..."); `within` durations
are measured back from the newest snapshot that is not in the future; the union of all
rules decides. Periods are computed in UTC. On top of that, govsnap never removes a pinned
snapshot nor the newest snapshot of a group, and an empty policy removes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from govsnap.errors import UsageError
from govsnap.objects import validate_name

UNLIMITED = -1
COUNT_RULES = ("last", "hourly", "daily", "weekly", "monthly", "yearly")
WITHIN_RULES = ("within_hourly", "within_daily", "within_weekly", "within_monthly", "within_yearly")

REASON_PINNED = "pinned"
REASON_NEWEST = "newest snapshot of its group"
REASON_NO_POLICY = "no policy: nothing is removed"


# --- durations -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Duration:
    """A calendar duration as restic writes it (`1y2m3d4h`); months and years are calendar
    units, so their length depends on the date they are counted back from."""

    years: int = 0
    months: int = 0
    days: int = 0
    hours: int = 0

    def __str__(self) -> str:
        """Return the duration as restic prints it: nonzero parts in y, m, d, h order."""
        parts = zip((self.years, self.months, self.days, self.hours), "ymdh", strict=True)
        return "".join(f"{n}{unit}" for n, unit in parts if n)

    @property
    def zero(self) -> bool:
        """Return True when every part is 0 (the rule is not set)."""
        return not (self.years or self.months or self.days or self.hours)

    def before(self, moment: datetime) -> datetime | None:
        """Return `moment` minus this duration, or None when that lies before year 1.

        Go's `AddDate(-y, -m, -d)` is reproduced: the month is normalised first, then a day
        past the month's end runs over into the next month (31 March minus one month is
        3 March, or 2 March in a leap year), then the hours are subtracted.
        """
        months = moment.year * 12 + (moment.month - 1) - self.years * 12 - self.months
        year, month0 = divmod(months, 12)
        if year < 1:
            return None
        ordinal = date(year, month0 + 1, 1).toordinal() + moment.day - 1 - self.days
        if ordinal < 1:
            return None
        clock = moment - datetime.combine(moment.date(), datetime.min.time(), moment.tzinfo)
        try:
            start = datetime.combine(date.fromordinal(ordinal), datetime.min.time(), UTC)
            return start + clock - timedelta(hours=self.hours)
        except OverflowError:
            return None


_NUMBER = re.compile(r"-?[0-9]+")
_UNITS = {"y": "years", "m": "months", "d": "days", "h": "hours"}


def parse_duration(text: str, option: str = "--keep-within") -> Duration:
    """Parse restic's `6y5m234d37h` (any order, a repeated unit overrides); raise UsageError.

    Like `restic forget`, negative parts are refused and an empty text is the zero
    duration (the rule is off).
    """
    rest = text.strip()
    parts: dict[str, int] = {}
    while rest:
        number = _NUMBER.match(rest)
        if number is None:
            raise UsageError(
                f"{option} {text!r}: expected a number at {rest!r} "
                "(write a duration like 1y2m3d4h: years, months, days, hours)"
            )
        rest = rest[number.end() :]
        if not rest:
            raise UsageError(
                f"{option} {text!r}: no unit after {number.group()} (use y, m, d or h)"
            )
        unit = _UNITS.get(rest[0])
        if unit is None:
            raise UsageError(
                f"{option} {text!r}: invalid unit {rest[0]!r} after {number.group()} "
                "(use y, m, d or h)"
            )
        parts[unit] = int(number.group())
        rest = rest[1:]
    if any(value < 0 for value in parts.values()):
        raise UsageError(f"{option} {text!r}: durations with negative values are not allowed")
    return Duration(**parts)


def parse_count(text: str, option: str = "--keep-last") -> int:
    """Parse a keep count: a number >= 0, or `unlimited` / -1 for all; raise UsageError."""
    value = text.strip().lower()
    if value == "unlimited":
        return UNLIMITED
    try:
        count = int(value)
    except ValueError:
        raise UsageError(f"{option} {text!r}: expected a number or 'unlimited'") from None
    if count < UNLIMITED:
        raise UsageError(
            f"{option} {text!r}: negative values other than -1 are not allowed "
            "(use 'unlimited' to keep all)"
        )
    return count


def parse_label_list(text: str, option: str = "--keep-label") -> tuple[str, ...]:
    """Parse `a,b,c` into a label list (spaces around names are dropped); raise UsageError."""
    labels = tuple(dict.fromkeys(part.strip() for part in text.split(",")))
    if labels == ("",):
        raise UsageError(f"{option}: the label list is empty")
    for label in labels:
        validate_name(f"label in {option}", label)
    return labels


def _count_text(count: int) -> str:
    return "unlimited" if count == UNLIMITED else str(count)


# --- the policy ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RetentionPolicy:
    """What to keep: counts per period (-1 = unlimited), durations, label lists."""

    last: int = 0
    hourly: int = 0
    daily: int = 0
    weekly: int = 0
    monthly: int = 0
    yearly: int = 0
    within: Duration = field(default_factory=Duration)
    within_hourly: Duration = field(default_factory=Duration)
    within_daily: Duration = field(default_factory=Duration)
    within_weekly: Duration = field(default_factory=Duration)
    within_monthly: Duration = field(default_factory=Duration)
    within_yearly: Duration = field(default_factory=Duration)
    labels: tuple[tuple[str, ...], ...] = ()

    def __post_init__(self) -> None:
        for rule in COUNT_RULES:
            count = getattr(self, rule)
            if count < UNLIMITED:
                raise UsageError(f"keep-{rule} {count}: negative values other than -1")

    @property
    def empty(self) -> bool:
        """Return True when no rule is set: such a policy keeps everything."""
        return (
            not self.labels
            and all(getattr(self, rule) == 0 for rule in COUNT_RULES)
            and all(getattr(self, rule).zero for rule in ("within", *WITHIN_RULES))
        )

    def describe(self) -> str:
        """Return the policy in words, as `restic forget` prints it."""
        names = {"last": "latest"}
        keeps = [
            f"{'all' if getattr(self, r) == UNLIMITED else getattr(self, r)} {names.get(r, r)}"
            for r in COUNT_RULES
            if getattr(self, r) != 0
        ]
        text = f"{', '.join(keeps)} snapshots" if keeps else ""
        withins = [
            f"{rule.removeprefix('within_')} snapshots within {getattr(self, rule)}"
            for rule in WITHIN_RULES
            if not getattr(self, rule).zero
        ]
        if withins:
            text += (", " if text else "") + ", ".join(withins)
        if self.labels:
            lists = " ".join(_label_list(labels) for labels in self.labels)
            text += (" and " if text else "") + f"all snapshots with labels [{lists}]"
        if not self.within.zero:
            text += (" and " if text else "") + f"all snapshots within {self.within} of the newest"
        return f"keep {text}" if text else "keep everything (no policy)"

    def as_json(self) -> dict[str, Any]:
        """Return the policy as JSON-ready data: counts as numbers (-1 unlimited), durations
        as restic text, label lists as lists; rules that are not set are left out."""
        data: dict[str, Any] = {}
        for rule in COUNT_RULES:
            if getattr(self, rule):
                data[f"keep_{rule}"] = getattr(self, rule)
        for rule in ("within", *WITHIN_RULES):
            if not getattr(self, rule).zero:
                data[f"keep_{rule}"] = str(getattr(self, rule))
        if self.labels:
            data["keep_label"] = [list(labels) for labels in self.labels]
        return data

    def arguments(self) -> list[str]:
        """Return the command-line options that give this policy."""
        args = []
        for rule in COUNT_RULES:
            if getattr(self, rule):
                args += [f"--keep-{rule}", _count_text(getattr(self, rule))]
        for rule in ("within", *WITHIN_RULES):
            if not getattr(self, rule).zero:
                args += [f"--keep-{rule.replace('_', '-')}", str(getattr(self, rule))]
        for labels in self.labels:
            args += ["--keep-label", ",".join(labels)]
        return args


def _label_list(labels: Sequence[str]) -> str:
    return "[" + ", ".join(labels) + "]"


def policy_from_values(
    values: Mapping[str, str],
    labels: Sequence[str],
    option_of: Mapping[str, str],
    label_option: str,
) -> RetentionPolicy:
    """Return the policy given as text (rule name -> count or duration text, label lists);
    `option_of` names each rule as the user wrote it, for error messages."""
    fields: dict[str, Any] = {}
    for rule, text in values.items():
        if rule in COUNT_RULES:
            fields[rule] = parse_count(text, option_of[rule])
        else:
            fields[rule] = parse_duration(text, option_of[rule])
    fields["labels"] = tuple(parse_label_list(text, label_option) for text in labels)
    return RetentionPolicy(**fields)


def parse_policy_text(text: str, where: str) -> RetentionPolicy:
    """Parse a policy written as prune's options (`--keep-within 30d --keep-last 10`,
    `--keep-label a,b`, also `--keep-last=10`); an empty text is the empty policy. Raise
    UsageError naming `where` (the config key it was read from)."""
    import shlex

    example = 'e.g. "--keep-within 30d --keep-last 10"'
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise UsageError(f"{where} {text!r}: {exc}") from None
    values: dict[str, str] = {}
    labels: list[str] = []
    rules = {*COUNT_RULES, "within", *WITHIN_RULES}
    while words:
        option, equals, value = words.pop(0).partition("=")
        rule = option.removeprefix("--keep-").replace("-", "_")
        if not option.startswith("--keep-") or (rule not in rules and rule != "label"):
            raise UsageError(
                f"{where} {text!r}: unknown option {option!r} (write the --keep-* options "
                f"of govsnap prune, {example})"
            )
        if not equals:
            if not words:
                raise UsageError(f"{where} {text!r}: {option} needs a value ({example})")
            value = words.pop(0)
        if rule == "label":
            labels.append(value)
        else:
            values[rule] = value
    option_of = {rule: f"{where} --keep-{rule.replace('_', '-')}" for rule in rules}
    return policy_from_values(values, labels, option_of, f"{where} --keep-label")


# --- the engine ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """A snapshot as the policy sees it: id, creation time, labels, pinned, environment."""

    id: str
    time: datetime
    labels: tuple[str, ...] = ()
    pinned: bool = False
    environment: str = ""


@dataclass(frozen=True)
class KeepReason:
    """Why one snapshot is kept: the rules it matched, and each count left after it
    (as restic reports them; 0 counts are left out, -1 is unlimited)."""

    snapshot: Candidate
    matches: tuple[str, ...]
    counters: tuple[tuple[str, int], ...] = ()

    def as_json(self) -> dict[str, Any]:
        """Return the reason as JSON-ready data."""
        return {
            "id": self.snapshot.id,
            "matches": list(self.matches),
            "counters": dict(self.counters),
        }


PeriodKey = Callable[[datetime, int], object]


def _hour(t: datetime, _nr: int) -> object:
    return (t.year, t.month, t.day, t.hour)


def _day(t: datetime, _nr: int) -> object:
    return (t.year, t.month, t.day)


def _iso_week(t: datetime, _nr: int) -> object:
    iso = t.isocalendar()
    return (iso.year, iso.week)


def _month(t: datetime, _nr: int) -> object:
    return (t.year, t.month)


def _year(t: datetime, _nr: int) -> object:
    return t.year


def _position(_t: datetime, nr: int) -> object:
    return nr


_PERIODS: dict[str, tuple[PeriodKey, str]] = {
    "last": (_position, "last snapshot"),
    "hourly": (_hour, "hourly snapshot"),
    "daily": (_day, "daily snapshot"),
    "weekly": (_iso_week, "weekly snapshot"),
    "monthly": (_month, "monthly snapshot"),
    "yearly": (_year, "yearly snapshot"),
}
_WITHIN_PERIODS: dict[str, tuple[PeriodKey, str]] = {
    "within_hourly": (_hour, "hourly within"),
    "within_daily": (_day, "daily within"),
    "within_weekly": (_iso_week, "weekly within"),
    "within_monthly": (_month, "monthly within"),
    "within_yearly": (_year, "yearly within"),
}
_UNSET = object()


def _utc(t: datetime) -> datetime:
    if t.tzinfo is None:
        raise ValueError(f"snapshot time {t} has no time zone")
    return t.astimezone(UTC)


def _newest_not_after(snaps: Sequence[Candidate], now: datetime | None) -> datetime | None:
    """Return the time `within` rules count back from: the newest snapshot's, ignoring
    snapshots dated in the future (clock skew must not shift everyone's window)."""
    latest: datetime | None = None
    for snap in snaps:
        t = _utc(snap.time)
        if (latest is None or t > latest) and (now is None or t < now):
            latest = t
    return latest


def _is_within(t: datetime, duration: Duration, latest: datetime | None) -> bool:
    if latest is None:
        # restic counts back from Go's zero time (year 1): every snapshot is within.
        return True
    cutoff = duration.before(latest)
    return cutoff is None or t > cutoff


def restic_policy(
    snapshots: Sequence[Candidate], policy: RetentionPolicy, now: datetime | None = None
) -> tuple[list[Candidate], list[Candidate], list[KeepReason]]:
    """Return (keep, remove, reasons) exactly as restic's ApplyPolicy computes them.

    `snapshots` are sorted newest first, stably (equal times keep their given order);
    `keep`, `remove` and `reasons` follow that order. This is the bare restic rule set,
    in which an empty policy removes everything; `apply_policy` is what govsnap uses.
    """
    ordered = sorted(snapshots, key=lambda s: _utc(s.time), reverse=True)
    if not ordered:
        return [], [], []
    now_utc = None if now is None else _utc(now)
    latest = _newest_not_after(ordered, now_utc)
    counts = {rule: getattr(policy, rule) for rule in COUNT_RULES}
    last_period: dict[str, object] = dict.fromkeys([*COUNT_RULES, *WITHIN_RULES], _UNSET)
    oldest = len(ordered) - 1
    keep: list[Candidate] = []
    remove: list[Candidate] = []
    reasons: list[KeepReason] = []
    for nr, snap in enumerate(ordered):
        t = _utc(snap.time)
        matches: list[str] = []
        # Label lists are not counted: every snapshot carrying one of them is kept.
        matches += [
            f"has labels {_label_list(labels)}"
            for labels in policy.labels
            if set(labels) <= set(snap.labels)
        ]
        if not policy.within.zero and _is_within(t, policy.within, latest):
            matches.append(f"within {policy.within}")
        for rule, (period_of, reason) in _PERIODS.items():
            if counts[rule] > 0 or counts[rule] == UNLIMITED:
                period = period_of(t, nr)
                if period != last_period[rule] or nr == oldest:
                    # The oldest snapshot is kept while a count is left: it maximises the
                    # span of history kept. It is "oldest" when its period was kept already.
                    if period == last_period[rule]:
                        reason = f"oldest {reason}"
                    last_period[rule] = period
                    if counts[rule] > 0:
                        counts[rule] -= 1
                    matches.append(reason)
        for rule, (period_of, reason) in _WITHIN_PERIODS.items():
            duration: Duration = getattr(policy, rule)
            if not duration.zero and _is_within(t, duration, latest):
                period = period_of(t, nr)
                if period != last_period[rule] or nr == oldest:
                    if period == last_period[rule]:
                        reason = f"oldest {reason}"
                    last_period[rule] = period
                    matches.append(f"{reason} {duration}")
        if matches:
            keep.append(snap)
            counters = tuple((rule, counts[rule]) for rule in COUNT_RULES if counts[rule])
            reasons.append(KeepReason(snap, tuple(matches), counters))
        else:
            remove.append(snap)
    return keep, remove, reasons


def apply_policy(
    snapshots: Sequence[Candidate], policy: RetentionPolicy, now: datetime | None = None
) -> tuple[list[Candidate], list[Candidate], list[KeepReason]]:
    """Return (keep, remove, reasons) for one group of snapshots, newest first.

    restic's rules decide (see `restic_policy`), then govsnap's guarantees apply: a
    pinned snapshot is kept ("pinned"), the newest snapshot is kept ("newest snapshot of
    its group"), and an empty policy keeps everything ("no policy: nothing is removed").
    `now` is the current time, so that snapshots dated in the future do not move the
    start of `within` windows; None trusts every snapshot's date. Rules still count
    pinned snapshots, as restic's label rule does.
    """
    ordered = sorted(snapshots, key=lambda s: _utc(s.time), reverse=True)
    if policy.empty:
        found: dict[int, KeepReason] = {id(s): KeepReason(s, (REASON_NO_POLICY,)) for s in ordered}
    else:
        found = {id(r.snapshot): r for r in restic_policy(ordered, policy, now)[2]}
    keep: list[Candidate] = []
    remove: list[Candidate] = []
    reasons: list[KeepReason] = []
    for nr, snap in enumerate(ordered):
        reason = found.get(id(snap))
        matches = list(reason.matches) if reason else []
        if snap.pinned:
            matches.insert(0, REASON_PINNED)
        if not matches and nr == 0:
            matches.append(REASON_NEWEST)
        if matches:
            keep.append(snap)
            reasons.append(KeepReason(snap, tuple(matches), reason.counters if reason else ()))
        else:
            remove.append(snap)
    return keep, remove, reasons


GROUP_BY = ("environment", "none")


def group_snapshots(snapshots: Iterable[Candidate], by: str) -> dict[str, list[Candidate]]:
    """Return the snapshots grouped by environment (`by="environment"`) or all in one
    group named "all" (`by="none"`), in their given order; groups sorted by name."""
    if by not in GROUP_BY:
        raise UsageError(f"--group-by {by!r}: use one of {', '.join(GROUP_BY)}")
    groups: dict[str, list[Candidate]] = {}
    for snap in snapshots:
        groups.setdefault(snap.environment if by == "environment" else "all", []).append(snap)
    return dict(sorted(groups.items()))
