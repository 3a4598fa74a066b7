"""Triggers: cron syntax, the OR rule, timezones and DST, intervals, dates.

Every expectation is an exact UTC instant: counting fires would hide a fire
that lands an hour off.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest

from chronctl.errors import TriggerError, UsageError
from chronctl.triggers import (
    CronTrigger,
    DateTrigger,
    IntervalTrigger,
    get_timezone,
    parse_at,
    resolve_wall_time,
)

NY = "America/New_York"
LONDON = "Europe/London"


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def fires(expr: str, after: datetime, count: int, tz: str = "UTC") -> list[datetime]:
    return [f.astimezone(UTC) for f in CronTrigger(expr, tz).fires(after, count)]


def fires_between(expr: str, tz: str, start: datetime, end: datetime) -> list[datetime]:
    trigger = CronTrigger(expr, tz)
    out: list[datetime] = []
    current = start
    while True:
        nxt = trigger.next_fire(current)
        assert nxt is not None
        if nxt >= end:
            return out
        out.append(nxt.astimezone(UTC))
        current = nxt


# -- syntax -------------------------------------------------------------------


def test_five_fields() -> None:
    assert fires("30 2 * * *", utc(2026, 1, 1), 2) == [
        utc(2026, 1, 1, 2, 30),
        utc(2026, 1, 2, 2, 30),
    ]


def test_six_fields_seconds_first() -> None:
    assert fires("15 30 2 * * *", utc(2026, 1, 1), 2) == [
        utc(2026, 1, 1, 2, 30, 15),
        utc(2026, 1, 2, 2, 30, 15),
    ]
    assert fires("*/20 * * * * *", utc(2026, 1, 1, 0, 0, 5), 3) == [
        utc(2026, 1, 1, 0, 0, 20),
        utc(2026, 1, 1, 0, 0, 40),
        utc(2026, 1, 1, 0, 1, 0),
    ]


@pytest.mark.parametrize(
    ("macro", "expected"),
    [
        ("@hourly", [utc(2026, 1, 7, 11), utc(2026, 1, 7, 12)]),
        ("@daily", [utc(2026, 1, 8), utc(2026, 1, 9)]),
        ("@midnight", [utc(2026, 1, 8), utc(2026, 1, 9)]),
        ("@weekly", [utc(2026, 1, 11), utc(2026, 1, 18)]),  # Sundays
        ("@monthly", [utc(2026, 2, 1), utc(2026, 3, 1)]),
        ("@yearly", [utc(2027, 1, 1), utc(2028, 1, 1)]),
        ("@annually", [utc(2027, 1, 1), utc(2028, 1, 1)]),
        ("@DAILY", [utc(2026, 1, 8), utc(2026, 1, 9)]),
    ],
)
def test_macros(macro: str, expected: list[datetime]) -> None:
    # 2026-01-07 is a Wednesday.
    assert fires(macro, utc(2026, 1, 7, 10, 30), 2) == expected


def test_day_and_month_names() -> None:
    # Friday 2026-01-02, then Monday 5 .. Friday 9.
    assert fires("0 9 * * MON-FRI", utc(2026, 1, 2, 10), 5) == [
        utc(2026, 1, 5, 9),
        utc(2026, 1, 6, 9),
        utc(2026, 1, 7, 9),
        utc(2026, 1, 8, 9),
        utc(2026, 1, 9, 9),
    ]
    assert fires("0 0 1 JAN *", utc(2026, 1, 1), 2) == [utc(2027, 1, 1), utc(2028, 1, 1)]
    assert fires("0 0 1 jan,jul *", utc(2026, 1, 1), 2) == [utc(2026, 7, 1), utc(2027, 1, 1)]


def test_day_of_month_or_day_of_week() -> None:
    """Classic cron: both restricted means either matches (every 13th AND every Friday)."""
    assert fires("0 0 13 * 5", utc(2026, 1, 1), 7) == [
        utc(2026, 1, 2),  # Fri
        utc(2026, 1, 9),  # Fri
        utc(2026, 1, 13),  # Tue, the 13th
        utc(2026, 1, 16),  # Fri
        utc(2026, 1, 23),  # Fri
        utc(2026, 1, 30),  # Fri
        utc(2026, 2, 6),  # Fri
    ]
    # Friday the 13th fires once, not twice.
    assert fires("0 0 13 * 5", utc(2026, 2, 12), 2) == [utc(2026, 2, 13), utc(2026, 2, 20)]


def test_only_one_day_field_restricted_is_and() -> None:
    assert fires("0 0 13 * *", utc(2026, 1, 1), 2) == [utc(2026, 1, 13), utc(2026, 2, 13)]
    assert fires("0 0 * * 5", utc(2026, 1, 1), 2) == [utc(2026, 1, 2), utc(2026, 1, 9)]


def test_next_fire_is_strictly_after() -> None:
    trigger = CronTrigger("0 * * * *")
    assert trigger.next_fire(utc(2026, 1, 1, 5)) == utc(2026, 1, 1, 6)
    assert trigger.next_fire(utc(2026, 1, 1, 4, 59, 59, 999999)) == utc(2026, 1, 1, 5)


def test_describe() -> None:
    assert CronTrigger("0 2 * * *").describe() == "cron 0 2 * * *"
    assert IntervalTrigger(1800).describe() == "every 30m"
    assert DateTrigger(utc(2026, 12, 24, 18)).describe() == "at 2026-12-24T18:00:00+00:00"


@pytest.mark.parametrize(
    ("expr", "reason"),
    [
        ("61 * * * *", "out of range"),
        ("0 0 30 2 *", "never fires"),
        ("0 0 31 4 *", "never fires"),
        ("x", "expected 5 fields"),
        ("@weird", "expected 5 fields"),
        ("@reboot", "expected 5 fields"),
        ("* * * *", "expected 5 fields"),
        ("* * * * * * *", "expected 5 fields"),
        ("", "expected 5 fields"),
        ("* 25 * * *", ""),
        ("* * * * FOO", ""),
        ("*/0 * * * *", ""),
    ],
)
def test_invalid_cron(expr: str, reason: str) -> None:
    with pytest.raises(TriggerError) as info:
        CronTrigger(expr)
    message = str(info.value)
    assert f"bad cron '{expr}'" in message
    assert reason in message
    assert isinstance(info.value, UsageError)  # exit code 2


def test_unknown_timezone() -> None:
    with pytest.raises(TriggerError, match="unknown timezone 'Mars/Olympus'"):
        CronTrigger("* * * * *", "Mars/Olympus")
    with pytest.raises(TriggerError, match="unknown timezone"):
        get_timezone("../etc/passwd")
    assert get_timezone("utc") is UTC


# -- timezones and DST --------------------------------------------------------


def test_per_job_timezone() -> None:
    # 02:00 in New York is 07:00 UTC in winter, 06:00 UTC in summer.
    assert fires("0 2 * * *", utc(2026, 1, 1), 1, NY) == [utc(2026, 1, 1, 7)]
    assert fires("0 2 * * *", utc(2026, 7, 1), 1, NY) == [utc(2026, 7, 1, 6)]
    assert fires("0 2 * * *", utc(2026, 1, 1), 1, "Asia/Kolkata") == [utc(2026, 1, 1, 20, 30)]
    fire = CronTrigger("0 2 * * *", NY).next_fire(utc(2026, 1, 1))
    assert fire is not None and fire.utcoffset() == timedelta(hours=-5)


def test_spring_forward_new_york_runs_once_right_after_the_jump() -> None:
    # 2026-03-08: 02:00 EST jumps to 03:00 EDT (07:00 UTC); 02:30 does not exist.
    assert fires("30 2 * * *", utc(2026, 3, 7, 12), 3, NY) == [
        utc(2026, 3, 8, 7),  # 03:00 EDT, the instant of the jump
        utc(2026, 3, 9, 6, 30),  # 02:30 EDT
        utc(2026, 3, 10, 6, 30),
    ]
    fire = CronTrigger("30 2 * * *", NY).next_fire(utc(2026, 3, 7, 12))
    assert fire is not None
    assert (fire.hour, fire.minute) == (3, 0) and fire.utcoffset() == timedelta(hours=-4)


def test_spring_forward_london() -> None:
    # 2026-03-29: 01:00 GMT jumps to 02:00 BST (01:00 UTC); 01:30 does not exist.
    assert fires("30 1 * * *", utc(2026, 3, 28, 12), 3, LONDON) == [
        utc(2026, 3, 29, 1),
        utc(2026, 3, 30, 0, 30),
        utc(2026, 3, 31, 0, 30),
    ]
    fire = CronTrigger("30 1 * * *", LONDON).next_fire(utc(2026, 3, 28, 12))
    assert fire is not None and (fire.hour, fire.minute) == (2, 0)


def test_spring_forward_every_quarter_hour_in_the_gap_fires_once() -> None:
    night = fires_between("*/15 2 * * *", NY, utc(2026, 3, 8, 5), utc(2026, 3, 8, 12))
    assert night == [utc(2026, 3, 8, 7)]
    assert fires("*/15 2 * * *", utc(2026, 3, 8, 5), 3, NY) == [
        utc(2026, 3, 8, 7),
        utc(2026, 3, 9, 6),
        utc(2026, 3, 9, 6, 15),
    ]


def test_spring_forward_does_not_disturb_fires_outside_the_gap() -> None:
    assert fires_between("0 * * * *", NY, utc(2026, 3, 8, 5), utc(2026, 3, 8, 9)) == [
        utc(2026, 3, 8, 6),  # 01:00 EST
        utc(2026, 3, 8, 7),  # 03:00 EDT (02:00 does not exist and maps here: once)
        utc(2026, 3, 8, 8),  # 04:00 EDT
    ]


@pytest.mark.parametrize(
    ("tz", "after", "first", "next_day"),
    [
        # 2026-11-01 New York: 01:30 EDT (05:30 UTC) then 01:30 EST (06:30 UTC).
        (NY, utc(2026, 10, 31, 12), utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)),
        # 2026-10-25 London: 01:30 BST (00:30 UTC) then 01:30 GMT (01:30 UTC).
        (LONDON, utc(2026, 10, 24, 12), utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)),
    ],
)
def test_fall_back_runs_once_at_the_first_occurrence(
    tz: str, after: datetime, first: datetime, next_day: datetime
) -> None:
    assert fires("30 1 * * *", after, 2, tz) == [first, next_day]
    fire = CronTrigger("30 1 * * *", tz).next_fire(after)
    assert fire is not None and fire.fold == 0
    # Asking again from inside the repeated hour (second pass) skips the repeat.
    assert CronTrigger("30 1 * * *", tz).next_fire(first + timedelta(minutes=45)) == next_day


def test_fall_back_half_hourly_is_strictly_increasing_and_never_repeats() -> None:
    got = fires_between("*/30 * * * *", NY, utc(2026, 11, 1, 4), utc(2026, 11, 1, 8, 1))
    assert got == [
        utc(2026, 11, 1, 4, 30),  # 00:30 EDT
        utc(2026, 11, 1, 5),  # 01:00 EDT
        utc(2026, 11, 1, 5, 30),  # 01:30 EDT; the EST repeat of 01:00/01:30 does not fire
        utc(2026, 11, 1, 7),  # 02:00 EST
        utc(2026, 11, 1, 7, 30),
        utc(2026, 11, 1, 8),
    ]
    assert all(a < b for a, b in pairwise(got))
    assert len(set(got)) == len(got)


def test_resolve_wall_time() -> None:
    ny = ZoneInfo(NY)
    assert resolve_wall_time(datetime(2026, 3, 8, 2, 30), ny) == utc(2026, 3, 8, 7)
    assert resolve_wall_time(datetime(2026, 6, 1, 12), ny) == utc(2026, 6, 1, 16)
    # PEP 495: an ambiguous local time never compares == to another zone's
    # datetime, so compare in UTC.
    repeated = resolve_wall_time(datetime(2026, 11, 1, 1, 30), ny)
    assert repeated.fold == 0
    assert repeated.astimezone(UTC) == utc(2026, 11, 1, 5, 30)


# -- interval and date ----------------------------------------------------------


def test_interval_counts_from_its_anchor() -> None:
    anchor = utc(2026, 1, 1).timestamp()
    trigger = IntervalTrigger(1800, anchor)
    # Before the first period: one interval after the anchor.
    assert trigger.next_fire(utc(2025, 12, 31)) == utc(2026, 1, 1, 0, 30)
    assert trigger.next_fire(utc(2026, 1, 1)) == utc(2026, 1, 1, 0, 30)
    # Strictly after: on a fire time, the next one.
    assert trigger.next_fire(utc(2026, 1, 1, 0, 30)) == utc(2026, 1, 1, 1)
    assert trigger.next_fire(utc(2026, 1, 1, 0, 31)) == utc(2026, 1, 1, 1)
    # Restarts do not reset it: the grid stays on the anchor.
    assert trigger.next_fire(utc(2026, 1, 3, 7, 59, 59)) == utc(2026, 1, 3, 8)
    assert trigger.fires(utc(2026, 1, 1, 1), 3) == [
        utc(2026, 1, 1, 1, 30),
        utc(2026, 1, 1, 2),
        utc(2026, 1, 1, 2, 30),
    ]


def test_interval_with_anchor_and_fractional_seconds() -> None:
    base = IntervalTrigger(0.5)
    assert base.anchor == 0.0
    trigger = base.with_anchor(utc(2026, 1, 1).timestamp())
    assert trigger.seconds == 0.5
    got = trigger.fires(utc(2026, 1, 1), 3)
    assert got == [utc(2026, 1, 1) + timedelta(seconds=s) for s in (0.5, 1.0, 1.5)]


@pytest.mark.parametrize("seconds", [0, -1])
def test_interval_must_be_positive(seconds: float) -> None:
    with pytest.raises(TriggerError):
        IntervalTrigger(seconds)


def test_date_trigger_fires_once() -> None:
    when = utc(2026, 12, 24, 18)
    trigger = DateTrigger(when)
    assert trigger.next_fire(utc(2026, 1, 1)) == when
    assert trigger.next_fire(when) is None
    assert trigger.fires(utc(2026, 1, 1), 5) == [when]


def test_parse_at() -> None:
    # Without an offset: the job's timezone.
    assert parse_at("2026-12-24T18:00:00", NY) == utc(2026, 12, 24, 23)
    assert parse_at("2026-12-24T18:00:00") == utc(2026, 12, 24, 18)
    # With one: as written.
    assert parse_at("2026-12-24T18:00:00+01:00", NY) == utc(2026, 12, 24, 17)
    assert parse_at("2026-12-24T18:00:00Z", NY) == utc(2026, 12, 24, 18)
    # Native datetimes, naive or aware.
    assert parse_at(datetime(2026, 12, 24, 18), LONDON) == utc(2026, 12, 24, 18)
    offset = timezone(timedelta(hours=-3))
    assert parse_at(datetime(2026, 12, 24, 18, tzinfo=offset), NY) == utc(2026, 12, 24, 21)
    # In a spring-forward gap: right after the jump, like cron.
    assert parse_at("2026-03-08T02:30:00", NY) == utc(2026, 3, 8, 7)


@pytest.mark.parametrize("value", ["tomorrow", "2026-13-01T00:00:00", "24/12/2026"])
def test_parse_at_refuses(value: str) -> None:
    with pytest.raises(TriggerError, match=f"bad date '{value}'"):
        parse_at(value)


def test_interval_walk_always_advances_despite_float_rounding() -> None:
    """Regression: an anchor with sub-microsecond digits made next_fire return its input."""
    from datetime import UTC, datetime

    from chronctl.triggers import IntervalTrigger

    trigger = IntervalTrigger(0.1, anchor=1763870000.123456789)
    current = datetime.fromtimestamp(1763870000.2, UTC)
    for _ in range(10_000):
        nxt = trigger.next_fire(current)
        assert nxt is not None and nxt > current
        current = nxt
