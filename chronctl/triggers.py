"""When jobs fire: cron, fixed interval, or once at a date.

Triggers are pure: `next_fire(after)` returns the first fire strictly after
`after` (an aware datetime) or None when the trigger is exhausted. They hold
no state; the scheduler keeps the last fire in the backend.

Cron is evaluated on the job's local wall clock and only then turned into an
instant, which is what makes DST behave like cron users expect:
- spring forward: wall times in the skipped hour do not exist; every such fire
  maps to the first instant after the jump (03:00 in New York), so a job
  scheduled at 02:30 runs once, right after the jump;
- fall back: wall times in the repeated hour exist twice; a fire takes the
  first of them only (fold=0), so it runs once.
"""

from __future__ import annotations

import difflib
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadCronError, CroniterBadDateError, CroniterError, croniter

from .cron_plain import FIRST_YEAR, LAST_YEAR, as_croniter_reads, plain_cron
from .durations import format_duration
from .errors import TriggerError

_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


def get_timezone(name: str) -> tzinfo:
    if name.upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
        raise TriggerError(f"unknown timezone '{name}'") from exc


def _exists(naive: datetime, tz: tzinfo) -> bool:
    aware = naive.replace(tzinfo=tz)
    return aware.astimezone(UTC).astimezone(tz).replace(tzinfo=None) == naive


def resolve_wall_time(naive: datetime, tz: tzinfo) -> datetime:
    """Turn a local wall time into an instant, per the DST rules above."""
    if _exists(naive, tz):
        return naive.replace(tzinfo=tz, fold=0)
    # In a gap: walk back to the last existing minute; the gap starts one
    # minute later, and that wall time read with the pre-jump offset is the
    # instant of the jump.
    probe = naive.replace(second=0, microsecond=0)
    for _ in range(24 * 60):
        probe -= timedelta(minutes=1)
        if _exists(probe, tz):
            gap_start = probe + timedelta(minutes=1)
            return gap_start.replace(tzinfo=tz, fold=0).astimezone(UTC).astimezone(tz)
    return naive.replace(tzinfo=tz)  # pragma: no cover - no zone has a day-long gap


class Trigger:
    """A rule for fire times. `describe()` is the SPEC's `trigger` string."""

    def next_fire(self, after: datetime) -> datetime | None:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def anchored(self, first_seen: float) -> Trigger:
        """This trigger placed on the clock of a job first seen at `first_seen`.

        Only an interval depends on it (it counts from there); cron and dates
        are already absolute.
        """
        return self

    def origin(self, first_seen: datetime) -> datetime:
        """Where a job that never fired starts counting: the moment it was first seen,
        so a restart does not replay old cron fires."""
        return first_seen

    def fires(self, after: datetime, count: int) -> list[datetime]:
        out: list[datetime] = []
        current = after
        while len(out) < count:
            nxt = self.next_fire(current)
            if nxt is None:
                break
            out.append(nxt)
            current = nxt
        return out


# (name, lowest, highest, names) of each cron field; 6 fields put seconds first.
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
_FIELDS: tuple[tuple[str, int, int, tuple[str, ...]], ...] = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _DAYS),
)
_SECOND = ("second", 0, 59, ())
_PLAIN = re.compile(r"\d+|[A-Za-z]+")
_ALL_SPECS = (*_FIELDS, _SECOND)  # indexes keep _field_problem's cache keys small
_SPECS = {5: (0, 1, 2, 3, 4), 6: (5, 0, 1, 2, 3, 4)}


def _fields_problem(fields: list[str]) -> str | None:
    """Name the field and its range, which croniter's own messages do not.

    Only plain numbers, names, ranges and steps are judged here; the extensions
    croniter knows (L, W, #, ?) are left to it.
    """
    specs = _SPECS[6] if len(fields) == 6 else _SPECS[5]
    for text, spec in zip(fields, specs, strict=True):
        problem = _field_problem(text, spec)
        if problem:
            return problem
    return None


@lru_cache(maxsize=4096)
def _field_problem(text: str, spec: int) -> str | None:
    """Cached: thousands of schedules share a few field texts ("*", "0", "MON-FRI")."""
    for item in text.split(","):
        problem = _item_problem(item, *_ALL_SPECS[spec])
        if problem:
            return problem
    return None


def _item_problem(item: str, name: str, low: int, high: int, names: tuple[str, ...]) -> str | None:
    base, slash, step = item.partition("/")
    if slash and not (step.isdigit() and int(step[:9]) > 0):
        return f"{name}: bad step '{step}' in '{item}' (expected a whole number from 1)"
    if base in ("*", "?"):
        return None
    parts = base.split("-")
    if len(parts) > 2 or not all(_PLAIN.fullmatch(p) for p in parts):
        return None  # croniter's extensions, or garbage it will report
    for part in parts:
        if part.isdigit():
            if len(part) > 9 or not low <= int(part) <= high:
                return f"{name} {part} is out of range {low}-{high}"
        elif names and len(part) >= 3:
            if part.upper() not in names:
                hint = difflib.get_close_matches(part.upper(), names, n=1)
                return f"{name}: unknown name '{part}'" + (
                    f" (did you mean '{hint[0]}'?)"
                    if hint
                    else f" (expected {names[0]}-{names[-1]})"
                )
        elif name in ("second", "minute", "hour"):
            return f"{name}: '{part}' is not a number ({low}-{high})"
    return None


@dataclass(frozen=True, slots=True)
class CronTrigger(Trigger):
    expression: str
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        expr = self._normalized()
        fields = expr.split()
        if len(fields) not in (5, 6):
            raise TriggerError(
                f"bad cron '{self.expression}': expected 5 fields (6 with seconds first) "
                "or a macro like @daily"
            )
        get_timezone(self.timezone)
        problem = _fields_problem(fields)
        if problem:
            raise TriggerError(f"bad cron '{self.expression}': {problem}")
        plain = plain_cron(expr)
        if plain is not None:
            if not plain.ever_fires():
                raise TriggerError(f"bad cron '{self.expression}': it never fires")
            return
        error = self._croniter_error()
        if error is not None:
            raise error

    def _croniter_error(self) -> TriggerError | None:
        """croniter's verdict: the expression must yield a fire after 2000-01-01."""
        try:
            itr = self._iter(datetime(2000, 1, 1))
            itr.get_next(datetime)
        except (
            CroniterBadCronError,
            CroniterBadDateError,
            CroniterError,
            ValueError,
            KeyError,
            IndexError,
        ) as exc:
            reason = str(exc).split("\n")[0] or type(exc).__name__
            if isinstance(exc, CroniterBadDateError):
                reason = "it never fires"
            error = TriggerError(f"bad cron '{self.expression}': {reason}")
            error.__cause__ = exc
            return error
        return None

    def _normalized(self) -> str:
        expr = " ".join(self.expression.split())
        return _MACROS.get(expr.lower(), expr)

    def _iter(self, start: datetime) -> croniter:
        expr = self._normalized()
        return croniter(
            expr,
            start,
            day_or=True,  # classic cron: restricted day-of-month OR day-of-week
            second_at_beginning=len(expr.split()) == 6,
            max_years_between_matches=50,
        )

    def _wall_times(self, start: datetime, *, fast: bool) -> Iterator[datetime]:
        """Matching wall times after the naive `start`, in order, until none is left.

        A plain expression is searched by cron_plain (a croniter costs half a
        millisecond to build); croniter gives the same times, and still serves
        every other expression.
        """
        plain = plain_cron(self._normalized()) if fast else None
        if plain is not None and FIRST_YEAR <= start.year <= LAST_YEAR:
            current: datetime | None = as_croniter_reads(start)
            while current is not None:
                current = plain.next_after(current)
                if current is not None:
                    yield current
            return
        itr = self._iter(start)
        while True:
            try:
                yield itr.get_next(datetime)
            except CroniterBadDateError:
                return

    def next_fire(self, after: datetime) -> datetime | None:
        return self._next_fire(after, fast=True)

    def _next_fire(self, after: datetime, *, fast: bool) -> datetime | None:
        """`next_fire`; `fast=False` asks croniter even for a plain expression (tests
        compare the two)."""
        tz = get_timezone(self.timezone)
        local = after.astimezone(tz)
        candidates = self._wall_times(local.replace(tzinfo=None, fold=0), fast=fast)
        for _ in range(10_000):
            candidate = next(candidates, None)
            if candidate is None:
                return None
            instant = resolve_wall_time(candidate, tz)
            if instant > after:
                return instant.astimezone(UTC).astimezone(tz)
        return None  # pragma: no cover

    def describe(self) -> str:
        return f"cron {self.expression}"


@dataclass(frozen=True, slots=True)
class IntervalTrigger(Trigger):
    """Every N seconds from an anchor (the first time any scheduler saw the job)."""

    seconds: float
    anchor: float = 0.0

    def __post_init__(self) -> None:
        if self.seconds <= 0:
            raise TriggerError("'every' must be a positive duration")

    def next_fire(self, after: datetime) -> datetime | None:
        ts = after.timestamp()
        if ts < self.anchor + self.seconds:
            nxt = self.anchor + self.seconds
        else:
            nxt = self.anchor + (int((ts - self.anchor) // self.seconds) + 1) * self.seconds
        # Datetimes hold microseconds, floats do not: step until the rounded value is
        # strictly later, or a caller walking fire after fire would never advance.
        result = datetime.fromtimestamp(nxt, UTC)
        while result <= after:
            nxt += self.seconds
            result = datetime.fromtimestamp(nxt, UTC)
        return result

    def with_anchor(self, anchor: float) -> IntervalTrigger:
        return IntervalTrigger(self.seconds, round(anchor, 6))

    def anchored(self, first_seen: float) -> IntervalTrigger:
        return self.with_anchor(first_seen)

    def describe(self) -> str:
        return f"every {format_duration(self.seconds)}"


@dataclass(frozen=True, slots=True)
class DateTrigger(Trigger):
    when: datetime

    def next_fire(self, after: datetime) -> datetime | None:
        return self.when if self.when > after else None

    def describe(self) -> str:
        return f"at {self.when.isoformat()}"

    def origin(self, first_seen: datetime) -> datetime:
        # A date that passed before the job was first seen is still a fire: within
        # misfire_grace_time it runs, later it is recorded as missed, never dropped silently.
        return _BEGINNING


# A day inside the range datetime can hold, so the instant shows in any timezone.
_EARLIEST = datetime(1, 1, 2, tzinfo=UTC)
_LATEST = datetime(9999, 12, 30, tzinfo=UTC)
_BEGINNING = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Timeline:
    """A job's trigger placed by what the backend remembers of the job: the one rule
    for "when does this job fire next".

    The fire loop, `validate`, `jobs list`, `jobs next` and `Scheduler.next_fires`
    all ask a Timeline, so they cannot drift apart. `trigger` is anchored (an
    interval counts from the moment the job was first seen, so restarts do not
    reset it); fires come strictly after `after`: the last fire, or where a job
    that never fired starts counting (`Trigger.origin`).
    """

    trigger: Trigger
    after: datetime

    def next_fire(self, now: datetime | None = None) -> datetime | None:
        """The first fire after the last one; given `now`, the first one after `now`.

        Without `now` the answer may lie in the past: that is a fire the loop
        still owes (run within misfire_grace_time, else recorded as missed).
        What an operator is shown is the next fire from now on.
        """
        return self.trigger.next_fire(self.after if now is None else max(self.after, now))

    def fires(self, count: int, now: datetime | None = None) -> list[datetime]:
        """The next `count` fires, from `next_fire(now)` on."""
        return self.trigger.fires(self.after if now is None else max(self.after, now), count)


def timeline(
    trigger: Trigger, *, now: float, first_seen: float | None = None, last_fire: float | None = None
) -> Timeline:
    """`trigger` as a job's stored state places it (see Timeline).

    `first_seen` and `last_fire` come from the backend's job state; a job it
    has no state for is one first seen `now`, which is what the fire loop
    records when it meets the job.
    """
    seen = now if first_seen is None else first_seen
    placed = trigger.anchored(seen)
    if last_fire is not None:
        after = datetime.fromtimestamp(last_fire, UTC)
    else:
        after = placed.origin(datetime.fromtimestamp(seen, UTC))
    return Timeline(placed, after)


def parse_at(value: str | datetime, timezone: str = "UTC") -> datetime:
    """ISO 8601; a value without offset is in the job's timezone."""
    if isinstance(value, datetime):
        dt = value
    else:
        try:
            dt = datetime.fromisoformat(str(value).strip())
        except ValueError as exc:
            raise TriggerError(
                f"bad date '{value}': expected ISO 8601 like 2026-12-24T18:00:00"
            ) from exc
    try:
        if dt.tzinfo is None:
            dt = resolve_wall_time(dt, get_timezone(timezone))
        in_range = _EARLIEST <= dt <= _LATEST
    except OverflowError:  # a wall time at the edge of year 1 or 9999, moved by its offset
        in_range = False
    if not in_range:
        raise TriggerError(f"bad date '{value}': out of range (years 1 to 9999 in every timezone)")
    return dt


def jitter_delay(jitter: float) -> float:
    return random.uniform(0.0, jitter) if jitter > 0 else 0.0
