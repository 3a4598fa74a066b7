"""Plain cron expressions, expanded once and searched without croniter.

Building a croniter costs about half a millisecond (it re-parses the
expression every time), which made listing 10,000 stored schedules take
seconds. Most expressions are plain: numbers, names, ranges and steps. For
those this module expands each field once (cached by field text and by
expression) and finds the next matching wall time from bit masks of the days
a month allows, then the sorted hours, minutes and seconds.

Every result must equal croniter's, quirks included (tests/test_triggers_fast.py
compares both on thousands of random expressions):
- "a-a" (written as an equal range, with or without a step) is the whole field,
  while "a/n" whose start is the field's maximum is that one value;
- a range written backwards wraps ("50-10", "FRI-MON"), and its step restarts
  after the wrap the way croniter counts it;
- day of week 7 is Sunday (0);
- a restricted day of month and a restricted day of week fire when either
  matches (croniter's day_or=True); a field that lists every value counts as
  "*" unless the other day field is written without a "*";
- no match within 50 years of the start means "no next fire".

Anything else (L, W, #, ?, H, R, a bare "*" inside a range) is not plain: the
caller keeps croniter for it, errors included.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import lru_cache

# croniter's field order: minute, hour, day of month, month, day of week, second;
# its bounds (day of week 0-6: 7 is read as 0 before any bound is checked).
_MINUTE, _HOUR, _DOM, _MONTH, _DOW, _SECOND = range(6)
_BOUNDS = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 6), (0, 59))
_COUNT = (60, 24, 31, 12, 7, 60)
_MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_NAMES: tuple[dict[str, int], ...] = (
    {},
    {},
    {},
    {m: i for i, m in enumerate(_MONTH_NAMES, 1)},
    {d: i for i, d in enumerate(_DAY_NAMES)},
    {},
)
_ITEM = re.compile(r"(?:\*|([0-9]+|[a-z]+)(?:-([0-9]+|[a-z]+))?)(?:/([0-9]{1,18}))?", re.ASCII)
_DAYS_IN_MONTH = (0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_EPOCH = datetime(1970, 1, 1)
# Beyond these years the fast path is not used: croniter's float timestamps and
# datetime's limits behave in ways not worth copying for dates no schedule uses.
FIRST_YEAR, LAST_YEAR = 1900, 9000
HORIZON_YEARS = 50  # croniter's max_years_between_matches, as CronTrigger sets it


class _NotPlain(Exception):
    """The expression needs croniter (an extension, or an error croniter words)."""


def _value(token: str, field: int) -> int:
    if token.isdigit():
        number = int(token)
    elif token in _NAMES[field]:
        number = _NAMES[field][token]
    else:
        raise _NotPlain
    return 0 if field == _DOW and number == 7 else number


def _check(number: int, field: int) -> int:
    low, high = _BOUNDS[field]
    if not low <= number <= high:
        raise _NotPlain
    return number


def _expand_item(item: str, field: int) -> list[int]:
    """The values of one comma item, as croniter's `_expand` computes them."""
    match = _ITEM.fullmatch(item)
    if match is None:
        raise _NotPlain
    first, second, step_text = match.groups()
    step = int(step_text) if step_text else 1
    if step == 0:
        raise _NotPlain
    field_low, field_high = _BOUNDS[field]
    if first is None:  # "*/n"
        low, high, start_with_step = field_low, field_high, False
    elif second is not None:  # "a-b", "a-b/n"
        low, high, start_with_step = _value(first, field), _value(second, field), False
    elif step_text:  # "a/n" is "a-max/n"
        low, high, start_with_step = _value(first, field), field_high, True
    else:
        return [_check(_value(first, field), field)]
    if max(low, high) > field_high:
        raise _NotPlain
    if low == high and not start_with_step:
        low, high = field_low, field_high  # "5-5" is the whole field, as croniter reads it
    if start_with_step and low == high:
        values = [low]
    elif low > high:  # backwards: to the end of the field, then from its start
        values = list(range(low, field_high + 1, step))
        to_skip = 0
        last = values[-1]
        already_skipped = field_high - last
        if last - field_low + step > field_high - field_low + 1 and already_skipped < step:
            to_skip = step - already_skipped
        values += range(field_low + to_skip, high + 1, step)
    else:
        values = list(range(low, high + 1, step))
    return [_check(0 if field == _DOW and v == 7 else v, field) for v in values]


@lru_cache(maxsize=4096)
def _expand_field(text: str, field: int) -> tuple[int, ...] | None:
    """The values a field allows, sorted; None for "*" (croniter's ["*"]).

    Cached per field text: across thousands of schedules the same fields recur.
    """
    values: set[int] = set()
    star = False
    for item in text.split(","):
        if item == "*":
            star = True
        else:
            values.update(_expand_item(item, field))
    return None if star else tuple(sorted(values))


def _mask(values: tuple[int, ...]) -> int:
    mask = 0
    for value in values:
        mask |= 1 << value
    return mask


# Bit d of a month's day mask is day d. A weekday mask repeats the week over 42
# bits, so shifting it right by the weekday of the 1st lines it up with any month.
_WEEKS = sum(1 << (7 * week) for week in range(6))
_ALL_DAYS = _mask(tuple(range(1, 32)))
_MONTHS = range(1, 13)
_LONGEST = (0, *(_mask(tuple(range(1, 30 if m == 2 else _DAYS_IN_MONTH[m] + 1))) for m in _MONTHS))


@dataclass(frozen=True, slots=True)
class PlainCron:
    """One plain expression, expanded: times as sorted tuples, dates as bit masks."""

    seconds: tuple[int, ...]
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    months: int  # bit m: month m
    days: int  # bit d: day of month d matches
    weekdays: int  # bit d: day d matches by its weekday in a month whose 1st is a Sunday
    with_seconds: bool

    def ever_fires(self) -> bool:
        """Whether croniter finds a fire from 2000-01-01 (CronTrigger's check).

        A weekday always recurs, and so does a day of month in a month that has
        it (Feb 29 within 8 years); a month that never has the day never fires.
        """
        if self.weekdays:
            return True
        return any(self.months >> month & 1 and self.days & _LONGEST[month] for month in _MONTHS)

    def next_after(self, start: datetime) -> datetime | None:
        """The first matching wall time after the naive `start`, croniter's get_next.

        Like croniter, the search starts at the next whole minute (second with a
        seconds field) and gives up after 50 years (which never decides for an
        expression that fires: its gaps are at most 8 years, Feb 29 alone).
        """
        year, month, day = start.year, start.month, start.day
        # From the next whole minute (or second) on; a minute or second of 60 has
        # no match, so the search moves on to the next hour (or minute) by itself.
        floor: tuple[int, int, int] | None = (
            (start.hour, start.minute, start.second + 1)
            if self.with_seconds
            else (start.hour, start.minute + 1, 0)
        )
        last_year = year + HORIZON_YEARS
        while year <= last_year:
            if self.months >> month & 1:
                last_day = _DAYS_IN_MONTH[month]
                if month == 2 and (year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)):
                    last_day = 29
                allowed = self.days
                if self.weekdays:
                    sunday_first = (date(year, month, 1).weekday() + 1) % 7
                    allowed |= self.weekdays >> sunday_first
                allowed &= (2 << last_day) - (1 << day)  # days `day`..`last_day`
                while allowed:
                    lowest = allowed & -allowed
                    current = lowest.bit_length() - 1
                    if floor is not None and current == day:
                        at = self._time_from(floor)
                    else:
                        at = (self.hours[0], self.minutes[0], self.seconds[0])
                    if at is not None:
                        return datetime(year, month, current, *at)
                    floor = None
                    allowed ^= lowest
            floor = None
            day = 1
            month += 1
            if month == 13:
                month, year = 1, year + 1
        return None

    def _time_from(self, floor: tuple[int, int, int]) -> tuple[int, int, int] | None:
        """The first (hour, minute, second) of the expression at or after `floor`."""
        hour, minute, second = floor
        hours, minutes, seconds = self.hours, self.minutes, self.seconds
        h = bisect_left(hours, hour)
        if h == len(hours):
            return None
        if hours[h] > hour:
            return (hours[h], minutes[0], seconds[0])
        m = bisect_left(minutes, minute)
        if m < len(minutes):
            if minutes[m] > minute:
                return (hour, minutes[m], seconds[0])
            s = bisect_left(seconds, second)
            if s < len(seconds):
                return (hour, minute, seconds[s])
            if m + 1 < len(minutes):
                return (hour, minutes[m + 1], seconds[0])
        if h + 1 < len(hours):
            return (hours[h + 1], minutes[0], seconds[0])
        return None


_ALL = tuple(tuple(range(low, high + 1)) for low, high in _BOUNDS)


@lru_cache(maxsize=16384)
def plain_cron(expression: str) -> PlainCron | None:
    """`expression` (already normalized: macros replaced, single spaces) expanded,
    or None when it is not plain and croniter must handle it."""
    texts = expression.lower().split(" ")
    if len(texts) == 6:
        texts = [*texts[1:], texts[0]]  # croniter's order: the seconds field last
    elif len(texts) != 5:
        return None
    try:
        fields = [_expand_field(text, index) for index, text in enumerate(texts)]
    except _NotPlain:
        return None
    # croniter reads a field listing every value as "*"; the day fields only when the
    # other day field is written with a "*" (else "1-31" OR a weekday is every day).
    for index, values in enumerate(fields):
        if values is not None and len(values) == _COUNT[index]:
            if index == _DOM and "*" not in texts[_DOW]:
                continue
            if index == _DOW and "*" not in texts[_DOM]:
                continue
            fields[index] = None
    minutes, hours, days, months, weekdays = fields[:5]
    seconds = fields[5] if len(fields) == 6 else (0,)
    # Days match by day of month OR by weekday (croniter's day_or); a "*" restricts
    # nothing, so it adds no day unless both are "*".
    if days is None and weekdays is None:
        day_mask, weekday_mask = _ALL_DAYS, 0
    else:
        day_mask = 0 if days is None else _mask(days)
        weekday_mask = 0 if weekdays is None else (_mask(weekdays) << 1) * _WEEKS
    return PlainCron(
        seconds=_ALL[_SECOND] if seconds is None else seconds,
        minutes=_ALL[_MINUTE] if minutes is None else minutes,
        hours=_ALL[_HOUR] if hours is None else hours,
        months=_mask(_ALL[_MONTH] if months is None else months),
        days=day_mask,
        weekdays=weekday_mask,
        with_seconds=len(texts) == 6,
    )


def as_croniter_reads(start: datetime) -> datetime:
    """`start` after croniter's round trip through a float timestamp.

    croniter keeps its position as float seconds since 1970; reading it back
    rounds to the microsecond, which for far dates can move the start. Doing the
    same keeps the two paths equal by construction. Within 1971-2099 the
    timestamp stays under 2**32 s, where a float holds it to 0.24 µs, so the
    round trip gives `start` back and is skipped.
    """
    if 1971 <= start.year <= 2099:
        return start
    seconds = (start - _EPOCH).total_seconds()
    return datetime.fromtimestamp(seconds, UTC).replace(tzinfo=None)
