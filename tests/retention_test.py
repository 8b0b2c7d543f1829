"""The retention engine, table-driven: restic's own expectations, then govsnap's edges."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone

import pytest

from govsnap.errors import UsageError
from govsnap.retention import (
    REASON_NEWEST,
    REASON_NO_POLICY,
    REASON_PINNED,
    Candidate,
    Duration,
    KeepReason,
    RetentionPolicy,
    apply_policy,
    group_snapshots,
    parse_count,
    parse_duration,
    parse_label_list,
    policy_from_values,
    restic_policy,
)

P = RetentionPolicy
D = parse_duration


def at(text: str) -> datetime:
    """Return a UTC time from `2016-01-18 12:02:03` (fractions allowed)."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def stamp(t: datetime) -> str:
    frac = f".{t.microsecond // 100000}" if t.microsecond else ""
    return t.strftime("%Y-%m-%dT%H:%M:%S") + frac + "Z"


def lines(reasons: Sequence[KeepReason]) -> list[str]:
    """Return each kept snapshot as `time | matches | counters`, restic golden-file style."""
    out = []
    for r in reasons:
        counters = " ".join(f"{k}={v}" for k, v in r.counters)
        line = f"{stamp(r.snapshot.time)} | {'; '.join(r.matches)}"
        out.append(f"{line} | {counters}" if counters else line)
    return out


# restic's TestApplyPolicy snapshots (internal/data/snapshot_policy_test.go), in its order:
# unsorted, with sub-second times, five snapshots in the same second, tags as labels.
RESTIC_SNAPSHOTS = """
2014-09-01 10:20:30|2014-09-02 10:20:30|2014-09-05 10:20:30|2014-09-06 10:20:30
2014-09-08 10:20:30|2014-09-09 10:20:30|2014-09-10 10:20:30|2014-09-11 10:20:30
2014-09-20 10:20:30|2014-09-22 10:20:30|2014-08-08 10:20:30|2014-08-10 10:20:30
2014-08-12 10:20:30|2014-08-13 10:20:30|2014-08-13 10:20:30.1|2014-08-15 10:20:30
2014-08-18 10:20:30|2014-08-20 10:20:30|2014-08-21 10:20:30|2014-08-22 10:20:30
2014-10-01 10:20:30 foo|2014-10-02 10:20:30 foo|2014-10-05 10:20:30 foo
2014-10-06 10:20:30 foo|2014-10-08 10:20:30 foo|2014-10-09 10:20:30 foo
2014-10-10 10:20:30 foo|2014-10-11 10:20:30 foo|2014-10-20 10:20:30 foo
2014-10-22 10:20:30 foo|2014-11-08 10:20:30 foo|2014-11-10 10:20:30 foo
2014-11-12 10:20:30 foo|2014-11-13 10:20:30 foo|2014-11-13 10:20:30.1 bar
2014-11-15 10:20:30 foo,bar|2014-11-18 10:20:30|2014-11-20 10:20:30|2014-11-21 10:20:30
2014-11-22 10:20:30|2015-09-01 10:20:30|2015-09-02 10:20:30|2015-09-05 10:20:30
2015-09-06 10:20:30|2015-09-08 10:20:30|2015-09-09 10:20:30|2015-09-10 10:20:30
2015-09-11 10:20:30|2015-09-20 10:20:30|2015-09-22 10:20:30|2015-08-08 10:20:30
2015-08-10 10:20:30|2015-08-12 10:20:30|2015-08-13 10:20:30|2015-08-13 10:20:30.1
2015-08-15 10:20:30|2015-08-18 10:20:30|2015-08-20 10:20:30|2015-08-21 10:20:30
2015-08-22 10:20:30|2015-10-01 10:20:30|2015-10-02 10:20:30|2015-10-05 10:20:30
2015-10-06 10:20:30|2015-10-08 10:20:30|2015-10-09 10:20:30|2015-10-10 10:20:30
2015-10-11 10:20:30|2015-10-20 10:20:30|2015-10-22 10:20:30|2015-10-22 10:20:30
2015-10-22 10:20:30 foo,bar|2015-10-22 10:20:30 foo,bar|2015-10-22 10:20:30 foo,bar
2015-11-08 10:20:30|2015-11-10 10:20:30|2015-11-12 10:20:30|2015-11-13 10:20:30
2015-11-13 10:20:30.1|2015-11-15 10:20:30|2015-11-18 10:20:30|2015-11-20 10:20:30
2015-11-21 10:20:30|2015-11-22 10:20:30|2016-01-01 01:02:03|2016-01-01 01:03:03
2016-01-01 07:08:03|2016-01-03 07:02:03|2016-01-04 10:23:03|2016-01-04 11:23:03
2016-01-04 12:23:03|2016-01-04 12:24:03|2016-01-04 12:28:03|2016-01-04 12:30:03
2016-01-04 16:23:03|2016-01-05 09:02:03|2016-01-06 08:02:03|2016-01-07 10:02:03
2016-01-08 20:02:03|2016-01-09 21:02:03|2016-01-12 21:02:03|2016-01-12 21:08:03
2016-01-18 12:02:03
"""


def restic_snapshots() -> list[Candidate]:
    snaps = []
    for n, item in enumerate(RESTIC_SNAPSHOTS.replace("\n", "|").strip("|").split("|")):
        day, clock, *tags = item.split()
        labels = tuple(tags[0].split(",")) if tags else ()
        snaps.append(Candidate(f"r{n:03d}", at(f"{day} {clock}"), labels))
    return snaps


def monthly_within(d: str) -> list[str]:
    return [
        f"{t} | monthly within {d}"
        for t in (
            "2016-01-18T12:02:03Z",
            "2015-11-22T10:20:30Z",
            "2015-10-22T10:20:30Z",
            "2015-09-22T10:20:30Z",
            "2015-08-22T10:20:30Z",
            "2014-11-22T10:20:30Z",
        )
    ]


# Expected keeps, with reasons and counters, as restic's golden files
# (internal/data/testdata/policy_keep_snapshots_<N>) record them.
RESTIC_GOLDEN: list[tuple[str, RetentionPolicy, list[str]]] = [
    (
        "7: daily 10",
        P(daily=10),
        [
            "2016-01-18T12:02:03Z | daily snapshot | daily=9",
            "2016-01-12T21:08:03Z | daily snapshot | daily=8",
            "2016-01-09T21:02:03Z | daily snapshot | daily=7",
            "2016-01-08T20:02:03Z | daily snapshot | daily=6",
            "2016-01-07T10:02:03Z | daily snapshot | daily=5",
            "2016-01-06T08:02:03Z | daily snapshot | daily=4",
            "2016-01-05T09:02:03Z | daily snapshot | daily=3",
            "2016-01-04T16:23:03Z | daily snapshot | daily=2",
            "2016-01-03T07:02:03Z | daily snapshot | daily=1",
            "2016-01-01T07:08:03Z | daily snapshot",
        ],
    ),
    (
        "15: daily 2, weekly 2, monthly 6 (a counter runs out mid-way)",
        P(daily=2, weekly=2, monthly=6),
        [
            "2016-01-18T12:02:03Z | daily snapshot; weekly snapshot; monthly snapshot"
            " | daily=1 weekly=1 monthly=5",
            "2016-01-12T21:08:03Z | daily snapshot; weekly snapshot | monthly=5",
            "2015-11-22T10:20:30Z | monthly snapshot | monthly=4",
            "2015-10-22T10:20:30Z | monthly snapshot | monthly=3",
            "2015-09-22T10:20:30Z | monthly snapshot | monthly=2",
            "2015-08-22T10:20:30Z | monthly snapshot | monthly=1",
            "2014-11-22T10:20:30Z | monthly snapshot",
        ],
    ),
    (
        "16: yearly 10 (count not used up: the oldest is kept too)",
        P(yearly=10),
        [
            "2016-01-18T12:02:03Z | yearly snapshot | yearly=9",
            "2015-11-22T10:20:30Z | yearly snapshot | yearly=8",
            "2014-11-22T10:20:30Z | yearly snapshot | yearly=7",
            "2014-08-08T10:20:30Z | oldest yearly snapshot | yearly=6",
        ],
    ),
    (
        "20: label lists [foo] or [bar] (same-second snapshots keep their order)",
        P(labels=(("foo",), ("bar",))),
        ["2015-10-22T10:20:30Z | has labels [foo]; has labels [bar]"] * 3
        + [
            "2014-11-15T10:20:30Z | has labels [foo]; has labels [bar]",
            "2014-11-13T10:20:30.1Z | has labels [bar]",
        ]
        + [
            f"2014-{day}T10:20:30Z | has labels [foo]"
            for day in [
                *("11-13", "11-12", "11-10", "11-08", "10-22", "10-20", "10-11"),
                *("10-10", "10-09", "10-08", "10-06", "10-05", "10-02", "10-01"),
            ]
        ],
    ),
    (
        "27: within 13d23h",
        P(within=D("13d23h")),
        [
            f"{t} | within 13d23h"
            for t in (
                "2016-01-18T12:02:03Z",
                "2016-01-12T21:08:03Z",
                "2016-01-12T21:02:03Z",
                "2016-01-09T21:02:03Z",
                "2016-01-08T20:02:03Z",
                "2016-01-07T10:02:03Z",
                "2016-01-06T08:02:03Z",
                "2016-01-05T09:02:03Z",
                "2016-01-04T16:23:03Z",
            )
        ],
    ),
    ("33: monthly within 1y2m3d3h", P(within_monthly=D("1y2m3d3h")), monthly_within("1y2m3d3h")),
    (
        "35: every within rule (ISO week 2015-W53 spans the new year)",
        P(
            within=D("1h"),
            within_hourly=D("1d"),
            within_daily=D("7d"),
            within_weekly=D("1m"),
            within_monthly=D("1y"),
            within_yearly=D("9999y"),
        ),
        [
            "2016-01-18T12:02:03Z | within 1h; hourly within 1d; daily within 7d; "
            "weekly within 1m; monthly within 1y; yearly within 9999y",
            "2016-01-12T21:08:03Z | daily within 7d; weekly within 1m",
            "2016-01-09T21:02:03Z | weekly within 1m",
            "2016-01-03T07:02:03Z | weekly within 1m",
            "2015-11-22T10:20:30Z | monthly within 1y; yearly within 9999y",
            "2015-10-22T10:20:30Z | monthly within 1y",
            "2015-09-22T10:20:30Z | monthly within 1y",
            "2015-08-22T10:20:30Z | monthly within 1y",
            "2014-11-22T10:20:30Z | yearly within 9999y",
            "2014-08-08T10:20:30Z | oldest yearly within 9999y",
        ],
    ),
    (
        "39: daily 3, weekly 2, monthly and yearly unlimited (two oldest reasons)",
        P(daily=3, weekly=2, monthly=-1, yearly=-1),
        [
            "2016-01-18T12:02:03Z | daily snapshot; weekly snapshot; monthly snapshot; "
            "yearly snapshot | daily=2 weekly=1 monthly=-1 yearly=-1",
            "2016-01-12T21:08:03Z | daily snapshot; weekly snapshot | daily=1 monthly=-1 yearly=-1",
            "2016-01-09T21:02:03Z | daily snapshot | monthly=-1 yearly=-1",
            "2015-11-22T10:20:30Z | monthly snapshot; yearly snapshot | monthly=-1 yearly=-1",
            "2015-10-22T10:20:30Z | monthly snapshot | monthly=-1 yearly=-1",
            "2015-09-22T10:20:30Z | monthly snapshot | monthly=-1 yearly=-1",
            "2015-08-22T10:20:30Z | monthly snapshot | monthly=-1 yearly=-1",
            "2014-11-22T10:20:30Z | monthly snapshot; yearly snapshot | monthly=-1 yearly=-1",
            "2014-10-22T10:20:30Z | monthly snapshot | monthly=-1 yearly=-1",
            "2014-09-22T10:20:30Z | monthly snapshot | monthly=-1 yearly=-1",
            "2014-08-22T10:20:30Z | monthly snapshot | monthly=-1 yearly=-1",
            "2014-08-08T10:20:30Z | oldest monthly snapshot; oldest yearly snapshot"
            " | monthly=-1 yearly=-1",
        ],
    ),
]


@pytest.mark.parametrize(
    ("name", "policy", "expected"), RESTIC_GOLDEN, ids=[c[0] for c in RESTIC_GOLDEN]
)
def test_restic_golden_files(name: str, policy: RetentionPolicy, expected: list[str]) -> None:
    snaps = restic_snapshots()
    keep, remove, reasons = restic_policy(snaps, policy)
    assert lines(reasons) == expected
    assert [r.snapshot for r in reasons] == keep
    assert len(keep) + len(remove) == len(snaps)
    # govsnap's engine decides the same, and keeps the newest when restic would not.
    newest = (
        []
        if expected[0].startswith("2016-01-18T12:02:03Z")
        else [f"2016-01-18T12:02:03Z | {REASON_NEWEST}"]
    )
    assert lines(apply_policy(snaps, policy)[2]) == newest + expected


# Counts restic's test checks (len(keep) <= the policy's sum) and what follows from the data:
# 103 snapshots, 90 distinct hours, 86 distinct days, 9 months, 3 years.
RESTIC_COUNTS = [
    (P(), 0),  # restic's bare ApplyPolicy removes everything under an empty policy
    (P(last=10), 10),
    (P(last=99), 99),
    (P(last=200), 103),
    (P(hourly=-1), 90),
    (P(last=-1), 103),
    (P(last=-1, hourly=-1), 103),
    (P(daily=30), 30),
    (P(monthly=6), 6),
    (P(weekly=4, daily=3), 4),
    (P(labels=(("foo", "bar"),)), 4),
    (P(within=D("1m")), 19),
    (P(within=D("2m2h")), 23),
]


@pytest.mark.parametrize(
    ("policy", "kept"), RESTIC_COUNTS, ids=[p.describe() for p, _ in RESTIC_COUNTS]
)
def test_restic_counts(policy: RetentionPolicy, kept: int) -> None:
    keep, remove, reasons = restic_policy(restic_snapshots(), policy)
    assert (len(keep), len(remove), len(reasons)) == (kept, 103 - kept, kept)


def test_equal_times_are_taken_in_the_given_order() -> None:
    snaps = restic_snapshots()
    keep, _, _ = restic_policy(snaps, P(last=99))
    same_second = [s.id for s in keep if s.time == at("2015-10-22 10:20:30")]
    given = [s.id for s in snaps if s.time == at("2015-10-22 10:20:30")]
    assert same_second == given and len(given) == 5


# --- govsnap's edge cases, each on a small list --------------------------------------------


def snaps_at(*items: str) -> list[Candidate]:
    """Return candidates `s0, s1, ...` from `"2024-01-01 10:00[ label,label][ pinned]"`."""
    out = []
    for n, item in enumerate(items):
        day, clock, *rest = item.split()
        labels = tuple(rest[0].split(",")) if rest and rest[0] != "pinned" else ()
        out.append(Candidate(f"s{n}", at(f"{day} {clock}"), labels, pinned="pinned" in rest))
    return out


def decide(
    snaps: list[Candidate], policy: RetentionPolicy, now: datetime | None = None
) -> dict[str, str]:
    """Return id -> "; ".join(reasons) for kept snapshots, id -> "-" for removed ones."""
    keep, remove, reasons = apply_policy(snaps, policy, now)
    assert [r.snapshot for r in reasons] == keep
    result = {r.snapshot.id: "; ".join(r.matches) for r in reasons}
    result.update({s.id: "-" for s in remove})
    return result


EDGES: list[tuple[str, list[Candidate], RetentionPolicy, dict[str, str]]] = [
    (
        "counter runs out: no oldest reason",
        snaps_at("2024-01-01 10:00", "2024-01-02 10:00", "2024-01-03 10:00", "2024-01-04 10:00"),
        P(daily=2),
        {"s3": "daily snapshot", "s2": "daily snapshot", "s1": "-", "s0": "-"},
    ),
    (
        "counter left: the oldest is kept, 'oldest' when its day was kept already",
        snaps_at("2024-01-01 09:00", "2024-01-01 10:00", "2024-01-02 10:00"),
        P(daily=10),
        {"s2": "daily snapshot", "s1": "daily snapshot", "s0": "oldest daily snapshot"},
    ),
    (
        "counter left: an oldest alone in its period is a plain daily snapshot",
        snaps_at("2024-01-01 09:00", "2024-01-02 10:00"),
        P(daily=10),
        {"s1": "daily snapshot", "s0": "daily snapshot"},
    ),
    (
        "ISO weeks across years: 2020-W53 runs to Sunday 2021-01-03",
        snaps_at(
            "2020-12-27 10:00",  # Sunday of 2020-W52
            "2020-12-28 10:00",  # Monday of 2020-W53
            "2021-01-01 10:00",  # Friday, still 2020-W53
            "2021-01-03 10:00",  # Sunday, still 2020-W53
            "2021-01-04 10:00",  # Monday of 2021-W01
        ),
        P(weekly=2),
        {"s4": "weekly snapshot", "s3": "weekly snapshot", "s2": "-", "s1": "-", "s0": "-"},
    ),
    (
        "ISO weeks across years: Monday 2024-12-30 is already 2025-W01",
        snaps_at("2024-12-29 10:00", "2024-12-30 10:00", "2025-01-02 10:00"),
        P(weekly=1, yearly=2),
        {"s2": "weekly snapshot; yearly snapshot", "s1": "yearly snapshot", "s0": "-"},
    ),
    (
        "several snapshots in the same second: the first given is the newest",
        snaps_at("2024-01-01 10:00", "2024-01-01 10:00", "2024-01-01 10:00"),
        P(last=1, hourly=1),
        {"s0": "last snapshot; hourly snapshot", "s1": "-", "s2": "-"},
    ),
    (
        "within 1m from 31 March is after 2 March (Go's month overflow), not 29 February",
        snaps_at("2016-03-01 13:00", "2016-03-02 12:00", "2016-03-02 12:00:01", "2016-03-31 12:00"),
        P(within=D("1m")),
        {"s3": "within 1m", "s2": "within 1m", "s1": "-", "s0": "-"},
    ),
    (
        "within 1y from 29 February 2016 starts on 1 March 2015",
        snaps_at("2015-02-28 23:00", "2015-03-01 00:00", "2015-03-01 00:00:01", "2016-02-29 00:00"),
        P(within=D("1y")),
        {"s3": "within 1y", "s2": "within 1y", "s1": "-", "s0": "-"},
    ),
    (
        "within counts back from the newest snapshot, not from today",
        snaps_at("2001-01-01 10:00", "2001-01-05 10:00", "2001-01-06 09:00"),
        P(within=D("2d")),
        {"s2": "within 2d", "s1": "within 2d", "s0": "-"},
    ),
    (
        "daily within: newest per day inside the window, oldest kept if inside",
        snaps_at("2024-01-01 10:00", "2024-01-05 08:00", "2024-01-05 09:00", "2024-01-06 10:00"),
        P(within_daily=D("10d")),
        {
            "s3": "daily within 10d",
            "s2": "daily within 10d",
            "s1": "-",
            "s0": "daily within 10d",
        },
    ),
    (
        "unlimited hourly keeps the newest of every hour",
        snaps_at("2024-01-01 10:05", "2024-01-01 10:50", "2024-01-01 11:00"),
        P(hourly=-1),
        {"s2": "hourly snapshot", "s1": "hourly snapshot", "s0": "oldest hourly snapshot"},
    ),
    (
        "label lists: all labels of one list; reasons name every list matched",
        snaps_at(
            "2024-01-01 10:00 a",
            "2024-01-02 10:00 a,b",
            "2024-01-03 10:00 b,c",
            "2024-01-04 10:00 c",
        ),
        P(labels=(("a", "b"), ("b",))),
        {
            "s3": REASON_NEWEST,
            "s2": "has labels [b]",
            "s1": "has labels [a, b]; has labels [b]",
            "s0": "-",
        },
    ),
    (
        "pinned is always kept, and still counts for the rules",
        snaps_at("2024-01-01 10:00 pinned", "2024-01-02 10:00", "2024-01-03 10:00 pinned"),
        P(last=1),
        {"s2": "pinned; last snapshot", "s1": "-", "s0": "pinned"},
    ),
    (
        "the newest of the group is never removed",
        snaps_at("2024-01-01 10:00 keep", "2024-01-02 10:00"),
        P(labels=(("keep",),)),
        {"s1": REASON_NEWEST, "s0": "has labels [keep]"},
    ),
    (
        "an empty policy removes nothing and says why",
        snaps_at("2024-01-01 10:00", "2024-01-02 10:00 pinned"),
        P(),
        {"s1": f"{REASON_PINNED}; {REASON_NO_POLICY}", "s0": REASON_NO_POLICY},
    ),
    (
        "all counts 0 is an empty policy",
        snaps_at("2024-01-01 10:00"),
        P(last=0, within=D("")),
        {"s0": REASON_NO_POLICY},
    ),
]


@pytest.mark.parametrize(("name", "snaps", "policy", "expected"), EDGES, ids=[e[0] for e in EDGES])
def test_edges(
    name: str, snaps: list[Candidate], policy: RetentionPolicy, expected: dict[str, str]
) -> None:
    assert decide(snaps, policy) == expected


def test_future_snapshots_do_not_move_the_within_window() -> None:
    snaps = snaps_at("2024-01-01 10:00", "2024-01-02 10:00", "2030-01-01 10:00")
    now = at("2024-01-03 00:00")
    assert decide(snaps, P(within=D("1d")), now) == {
        "s2": "within 1d",  # after the cutoff, like everything in the future
        "s1": "within 1d",
        "s0": "-",
    }
    # Without `now` the future snapshot is trusted as the newest.
    assert decide(snaps, P(within=D("1d"))) == {"s2": "within 1d", "s1": "-", "s0": "-"}
    # All in the future: restic counts back from year 1, so everything is within.
    assert decide(snaps, P(within=D("1d")), at("2000-01-01 00:00"))["s0"] == "within 1d"


def test_periods_are_utc() -> None:
    east = timezone(timedelta(hours=5))
    snaps = [
        Candidate("new-year-in-utc", datetime(2024, 1, 1, 6, 0, tzinfo=east)),  # 01:00Z
        Candidate("still-2023-in-utc", datetime(2024, 1, 1, 2, 0, tzinfo=east)),  # 21:00Z
    ]
    assert decide(snaps, P(yearly=5)) == {
        "new-year-in-utc": "yearly snapshot",
        "still-2023-in-utc": "yearly snapshot",
    }


def test_empty_list_and_input_left_alone() -> None:
    assert apply_policy([], P(last=1)) == ([], [], [])
    snaps = snaps_at("2024-01-01 10:00", "2024-01-02 10:00")
    before = list(snaps)
    apply_policy(snaps, P(last=1))
    assert snaps == before


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="time zone"):
        apply_policy([Candidate("x", datetime(2024, 1, 1))], P(last=1))


def test_grouping() -> None:
    snaps = [
        Candidate("a", at("2024-01-01 10:00"), environment="prod"),
        Candidate("b", at("2024-01-02 10:00"), environment="dev"),
        Candidate("c", at("2024-01-03 10:00"), environment="prod"),
    ]
    by_env = group_snapshots(snaps, "environment")
    assert {k: [s.id for s in v] for k, v in by_env.items()} == {"dev": ["b"], "prod": ["a", "c"]}
    assert [s.id for s in group_snapshots(snaps, "none")["all"]] == ["a", "b", "c"]
    with pytest.raises(UsageError, match="--group-by 'host'"):
        group_snapshots(snaps, "host")


# --- parsing -------------------------------------------------------------------------------

# restic's TestParseDuration cases, then the forget command's refusal of negative values.
DURATIONS = [
    ("9h", Duration(hours=9), "9h"),
    ("3d", Duration(days=3), "3d"),
    ("4d2h", Duration(days=4, hours=2), "4d2h"),
    ("7m5d", Duration(months=7, days=5), "7m5d"),
    ("6m4d8h", Duration(months=6, days=4, hours=8), "6m4d8h"),
    ("5d7m", Duration(months=7, days=5), "7m5d"),
    ("4h3d9m", Duration(months=9, days=3, hours=4), "9m3d4h"),
    ("1y2m3d4h", Duration(1, 2, 3, 4), "1y2m3d4h"),
    ("  5d  ", Duration(days=5), "5d"),
    ("2d3d", Duration(days=3), "3d"),
    ("", Duration(), ""),
]


@pytest.mark.parametrize(("text", "duration", "shown"), DURATIONS)
def test_parse_duration(text: str, duration: Duration, shown: str) -> None:
    assert parse_duration(text) == duration
    assert str(duration) == shown


BAD_DURATIONS = [
    ("2w", "invalid unit 'w'"),
    ("1y4m3w1d", "invalid unit 'w'"),
    ("s", "expected a number"),
    ("\u07c0d", "expected a number"),  # NKO DIGIT ZERO: only ASCII digits
    ("5", "no unit after 5"),
    ("1.5d", "invalid unit '.'"),
    ("5d 3h", "expected a number"),
    ("-7m5d", "negative"),
    ("1y4m-5d-3h", "negative"),
    ("--5d", "expected a number"),
]


@pytest.mark.parametrize(("text", "problem"), BAD_DURATIONS)
def test_bad_durations(text: str, problem: str) -> None:
    with pytest.raises(UsageError, match=problem) as info:
        parse_duration(text, "--keep-within-daily")
    assert info.value.message.startswith("--keep-within-daily ")


def test_duration_before_is_go_add_date() -> None:
    assert Duration(months=1).before(at("2016-03-31 12:00")) == at("2016-03-02 12:00")
    assert Duration(months=1).before(at("2015-03-31 12:00")) == at("2015-03-03 12:00")
    assert Duration(years=1).before(at("2016-02-29 00:00")) == at("2015-03-01 00:00")
    assert Duration(days=1, hours=25).before(at("2016-03-01 00:30")) == at("2016-02-27 23:30")
    assert Duration(years=9999).before(at("2016-01-01 00:00")) is None
    assert Duration(hours=10**12).before(at("2016-01-01 00:00")) is None


@pytest.mark.parametrize(
    ("text", "count"), [("0", 0), ("7", 7), ("unlimited", -1), ("Unlimited", -1), ("-1", -1)]
)
def test_parse_count(text: str, count: int) -> None:
    assert parse_count(text) == count


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("-2", "negative values other than -1"),
        ("abc", "expected a number"),
        ("1.5", "expected"),
        ("", "expected"),
    ],
)
def test_bad_counts(text: str, problem: str) -> None:
    with pytest.raises(UsageError, match=problem):
        parse_count(text, "--keep-daily")


def test_parse_label_lists() -> None:
    assert parse_label_list("a") == ("a",)
    assert parse_label_list(" a , b,a") == ("a", "b")
    for bad in ("", " ", "a,,b", "a b", "-x"):
        with pytest.raises(UsageError):
            parse_label_list(bad)


def test_policy_from_values_names_the_option_in_errors() -> None:
    option_of = {"daily": "git config govsnap.keepDaily", "within": "--keep-within"}
    policy = policy_from_values({"daily": "unlimited", "within": "1y"}, ["a,b"], option_of, "-l")
    assert policy == P(daily=-1, within=Duration(years=1), labels=(("a", "b"),))
    with pytest.raises(UsageError, match=r"^git config govsnap\.keepDaily 'lots'"):
        policy_from_values({"daily": "lots"}, [], option_of, "-l")
    with pytest.raises(UsageError):
        P(weekly=-3)


def test_policy_in_words_and_as_data() -> None:
    policy = P(
        last=3,
        daily=-1,
        within_weekly=D("1m"),
        labels=(("a", "b"), ("c",)),
        within=D("2d"),
    )
    assert policy.describe() == (
        "keep 3 latest, all daily snapshots, weekly snapshots within 1m and all snapshots "
        "with labels [[a, b] [c]] and all snapshots within 2d of the newest"
    )
    assert policy.as_json() == {
        "keep_last": 3,
        "keep_daily": -1,
        "keep_within": "2d",
        "keep_within_weekly": "1m",
        "keep_label": [["a", "b"], ["c"]],
    }
    assert policy.arguments() == [
        "--keep-last", "3", "--keep-daily", "unlimited", "--keep-within", "2d",
        "--keep-within-weekly", "1m", "--keep-label", "a,b", "--keep-label", "c",
    ]  # fmt: skip
    assert P().describe() == "keep everything (no policy)" and P().empty
