"""The fast path for plain cron expressions (chronctl/cron_plain.py) gives croniter's
answers exactly: the same verdict at construction, the same next fires.

Random plain expressions (lists, ranges, backwards ranges, steps, names, 5 and 6
fields) are compared with croniter, forced through `CronTrigger._next_fire(...,
fast=False)`, from random instants in 2000-2040 and from instants around each
DST transition of zones that have them (a half-hour one included). The seed is
fixed, so a failure replays.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from chronctl.cron_plain import plain_cron
from chronctl.errors import TriggerError
from chronctl.triggers import CronTrigger

ZONES = ("America/New_York", "Europe/London", "Australia/Lord_Howe", "Asia/Kathmandu", "UTC")
MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
# (lowest, highest, names) per field as written: minute, hour, dom, month, dow; second.
FIELDS = ((0, 59, ()), (0, 23, ()), (1, 31, ()), (1, 12, MONTHS), (0, 7, DAYS))
SECOND = (0, 59, ())


def random_value(rnd: random.Random, low: int, high: int, names: tuple[str, ...]) -> str:
    number = rnd.randint(low, high)
    if names and rnd.random() < 0.4:
        name = names[number - 1] if names is MONTHS else names[number % 7]  # 7 is Sunday
        return rnd.choice((name, name.lower(), name.title()))
    return str(number)


def random_item(rnd: random.Random, low: int, high: int, names: tuple[str, ...]) -> str:
    kind = rnd.random()
    step = str(rnd.choice((1, 2, 3, 4, 5, 6, 7, 10, 13, 15, 30, 45, 100)))
    if kind < 0.3:
        return random_value(rnd, low, high, names)
    if kind < 0.45:
        return f"*/{step}"
    if kind < 0.65:  # a range, backwards or equal ones included
        first = random_value(rnd, low, high, names)
        second = random_value(rnd, low, high, names)
        return f"{first}-{second}" + (f"/{step}" if rnd.random() < 0.5 else "")
    if kind < 0.75:
        return f"{random_value(rnd, low, high, names)}/{step}"
    if kind < 0.8:  # near the field's ends, where croniter's step arithmetic bends
        return f"{high - rnd.randint(0, 2)}-{low + rnd.randint(0, 2)}/{step}"
    return random_value(rnd, low, high, names)


def random_field(rnd: random.Random, low: int, high: int, names: tuple[str, ...]) -> str:
    if rnd.random() < 0.3:
        return "*"
    items = [random_item(rnd, low, high, names) for _ in range(rnd.choice((1, 1, 1, 2, 3)))]
    if rnd.random() < 0.03:
        items.append("*")
    return ",".join(items)


def random_expression(rnd: random.Random) -> str:
    fields = [random_field(rnd, *spec) for spec in FIELDS]
    if rnd.random() < 0.5:  # keep most times few, or fires crowd into seconds apart
        fields[0] = str(rnd.randint(0, 59))
        fields[1] = random_field(rnd, 0, 23, ()) if rnd.random() < 0.5 else str(rnd.randint(0, 23))
    if rnd.random() < 0.25:
        fields.insert(0, random_field(rnd, *SECOND))
    return " ".join(fields)


def transitions(zone: str) -> list[datetime]:
    """UTC instants where the zone's offset changes, 2000-2040 (hour by hour, then
    minute by minute)."""
    if zone == "UTC":
        return []
    tz = ZoneInfo(zone)
    found = []
    instant = datetime(2000, 1, 1, tzinfo=UTC)
    end = datetime(2040, 12, 31, tzinfo=UTC)
    offset = instant.astimezone(tz).utcoffset()
    while instant < end:
        nxt = instant + timedelta(hours=1)
        if nxt.astimezone(tz).utcoffset() != offset:
            offset = nxt.astimezone(tz).utcoffset()
            found.append(nxt)
        instant = nxt
    return found


TRANSITIONS = {zone: transitions(zone) for zone in ZONES}


def random_instant(rnd: random.Random, zone: str) -> datetime:
    if TRANSITIONS[zone] and rnd.random() < 0.5:
        edge = rnd.choice(TRANSITIONS[zone])
        delta = rnd.choice((0, 1, 59, 60, 61, 1800, 3600, 5400, 86_400)) * rnd.choice((1, -1))
        return edge + timedelta(seconds=delta, microseconds=rnd.choice((0, 0, 1, 999_999)))
    start = datetime(2000, 1, 1, tzinfo=UTC).timestamp()
    end = datetime(2040, 12, 31, tzinfo=UTC).timestamp()
    seconds = rnd.uniform(start, end)
    if rnd.random() < 0.5:
        seconds = float(int(seconds) // 60 * 60)  # on a whole minute, as fires are
    return datetime.fromtimestamp(seconds, UTC)


def verdict(expr: str, zone: str, *, fast: bool) -> str | None:
    """The construction error's message (None: accepted), fast or croniter."""
    try:
        trigger = CronTrigger(expr, zone)
    except TriggerError as exc:
        return str(exc)
    if fast:
        return None
    error = trigger._croniter_error()
    return None if error is None else str(error)


def test_random_plain_expressions_fire_as_croniter() -> None:
    rnd = random.Random(20261130)
    compared = plain = 0
    for _ in range(2000):
        expr = random_expression(rnd)
        zone = rnd.choice(ZONES)
        if plain_cron(" ".join(expr.split())) is not None:
            plain += 1
        assert verdict(expr, zone, fast=True) == verdict(expr, zone, fast=False), expr
        try:
            trigger = CronTrigger(expr, zone)
        except TriggerError:
            continue
        for _ in range(3):
            after = random_instant(rnd, zone)
            fast = trigger._next_fire(after, fast=True)
            slow = trigger._next_fire(after, fast=False)
            assert fast == slow, (expr, zone, after)
            assert fast is None or fast.utcoffset() == slow.utcoffset(), (expr, zone, after)
            # and a few fires in a row, the way `jobs next -n` and the loop walk them
            for _ in range(2):
                if fast is None:
                    break
                after = fast
                fast = trigger._next_fire(after, fast=True)
                assert fast == trigger._next_fire(after, fast=False), (expr, zone, after)
            compared += 1
    assert plain > 1700  # the generator mostly makes plain expressions
    assert compared > 4000


def test_far_years_fire_as_croniter() -> None:
    """Outside 1971-2099 croniter's float timestamp rounds the start's microseconds;
    the fast path copies that round trip (see cron_plain.as_croniter_reads)."""
    rnd = random.Random(7)
    for _ in range(150):
        expr = random_expression(rnd)
        zone = rnd.choice(ZONES)
        try:
            trigger = CronTrigger(expr, zone)
        except TriggerError:
            continue
        for _ in range(3):
            year = rnd.choice((rnd.randint(1900, 1970), rnd.randint(2100, 8990)))
            local = datetime(
                year,
                rnd.randint(1, 12),
                rnd.randint(1, 28),
                rnd.randint(0, 23),
                rnd.choice((0, 59, rnd.randint(0, 59))),
                rnd.choice((0, 59, rnd.randint(0, 59))),
                rnd.choice((0, 999_999, 999_990, 500_000, rnd.randint(0, 999_999))),
                tzinfo=ZoneInfo(zone),
            )
            after = local.astimezone(UTC)
            assert trigger._next_fire(after, fast=True) == trigger._next_fire(after, fast=False), (
                expr,
                zone,
                after,
            )


@pytest.mark.parametrize(
    "expr",
    [
        "0 0 30 2 *",  # never
        "0 0 31 4,6,9,11 *",  # never
        "0 0 29 2 *",  # leap years only
        "0 0 30 2 MON",  # Mondays in February: the impossible day adds nothing
        "0 0 1-31 * 1-5",  # every day: the listed days OR a weekday
        "0 0 1-31 * */2",  # "*" in the weekday field: only the weekday restricts
        "0 0 */1 * 0-6",
        "5-5 * * * *",  # an equal range is the whole field
        "59/15 * * * *",  # a start at the field's maximum is that minute only
        "50-10/7 * * * *",  # backwards, the step restarting the way croniter counts
        "0 0 25-5/3 * *",
        "0 0 * NOV-FEB *",
        "0 0 * * FRI-MON",
        "0 0 * * 6-7/2",
        "0 0 * * 7/2",
        "0 0 * * 0-7",
        "0 0 * DEC/3 *",
        "0 0 *,5 * *",
        "0 0 13 * FRI",
        "*/20 30 2 * * *",  # 6 fields: seconds first
        "0 30 2 * * *",
        "0 0-59/7 1-3 * * SUN",
        "30 2 * * *",
        "@daily",
        "@WEEKLY",
        "@monthly",
        "@yearly",
        "@hourly",
    ],
)
def test_known_shapes_fire_as_croniter(expr: str) -> None:
    for zone in ZONES:
        assert verdict(expr, zone, fast=True) == verdict(expr, zone, fast=False)
        try:
            trigger = CronTrigger(expr, zone)
        except TriggerError:
            continue
        for edge in [datetime(2001, 1, 1, tzinfo=UTC), *TRANSITIONS[zone][:16]]:
            after = edge - timedelta(hours=3)
            for _ in range(8):
                fast = trigger._next_fire(after, fast=True)
                assert fast == trigger._next_fire(after, fast=False), (expr, zone, after)
                if fast is None:
                    break
                after = fast


@pytest.mark.parametrize(
    "expr", ["0 0 L * *", "0 0 15W * *", "0 0 * * 5#2", "0 0 ? * MON", "H 0 * * *", "0 0 * * 5L"]
)
def test_extensions_keep_croniter(expr: str) -> None:
    assert plain_cron(expr) is None


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("0 0 30 2 *", "bad cron '0 0 30 2 *': it never fires"),
        ("0 0 31 4,6,9,11 *", "bad cron '0 0 31 4,6,9,11 *': it never fires"),
        ("61 * * * *", "bad cron '61 * * * *': minute 61 is out of range 0-59"),
        ("0 0 * JANUARY *", "bad cron '0 0 * JANUARY *': month: unknown name 'JANUARY'"),
        ("0 0 * * 1/0", "bad cron '0 0 * * 1/0': day of week: bad step '0' in '1/0'"),
    ],
)
def test_errors_at_construction_are_unchanged(expr: str, message: str) -> None:
    with pytest.raises(TriggerError) as caught:
        CronTrigger(expr)
    assert str(caught.value).startswith(message)


def test_every_day_of_every_month_fires_or_not_as_croniter() -> None:
    """'it never fires' comes from the masks on the fast path: each (day, month)
    pair, and each day with a list of months, gets croniter's verdict."""
    for day in range(1, 32):
        for months in [*map(str, range(1, 13)), "2,4", "4,6,9,11", "2-4/2", "*"]:
            expr = f"0 0 {day} {months} *"
            assert verdict(expr, "UTC", fast=True) == verdict(expr, "UTC", fast=False), expr
