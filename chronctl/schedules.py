"""Schedules as data: when a manifest job runs, stored in the backend.

The manifest says *what* may run (a job's entrypoint or command); a backend may
also hold *when* (a `Schedule`): a trigger for one manifest job with optional
arguments, queue and priority. A schedule never names code, so whoever can write
to the backend can choose when and with what arguments a job runs, never what
runs. Two kinds share one store and one name space:

- a runtime schedule (`override=False`): its own name, distinct from every job's;
- an override of a manifest job's trigger (`override=True`, name = the job's),
  stored by `jobs reschedule JOB` until `jobs reschedule JOB --reset`.

Every change bumps the store's version; a running scheduler re-reads the
schedules when the version moves (see `Scheduler`), so an add, edit or remove
reaches every process on the backend without a restart.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .durations import parse_duration
from .errors import ChronctlError, TriggerError, UnknownJobError, UsageError
from .jobs import JobSpec
from .models import check_name
from .triggers import CronTrigger, DateTrigger, IntervalTrigger, Trigger, get_timezone, parse_at

#: The keyword arguments that set a schedule's fields (CLI options and API keywords).
FIELDS = (
    "cron",
    "every",
    "at",
    "timezone",
    "args",
    "kwargs",
    "queue",
    "priority",
    "jitter",
)
TRIGGER_FIELDS = ("cron", "every", "at")


class ScheduleNotFound(ChronctlError):
    """No stored schedule has this name (exit 1, as an unknown job)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"no schedule named '{name}'")
        self.name = name


@dataclass(slots=True)
class Schedule:
    """One stored trigger of a manifest job. None fields take the job's value."""

    name: str
    job: str
    cron: str | None = None
    every: float | None = None  # seconds
    at: str | None = None  # ISO 8601 with its offset, fixed when stored
    timezone: str | None = None
    args: list[Any] | None = None
    kwargs: dict[str, Any] | None = None
    queue: str | None = None
    priority: int | None = None
    jitter: float | None = None
    override: bool = False
    created: float = 0.0
    updated: float = 0.0

    def to_record(self) -> dict[str, Any]:
        """What a backend stores: plain JSON values, None fields left out."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    def dumps(self) -> str:
        return json.dumps(self.to_record(), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_record(cls, data: Mapping[str, Any]) -> Schedule:
        """A stored record; keys a newer chronctl added are ignored."""
        if data.keys() <= _FIELD_NAMES:
            return cls(**data)
        return cls(**{k: v for k, v in data.items() if k in _FIELD_NAMES})

    @classmethod
    def loads(cls, text: str | bytes) -> Schedule:
        return cls.from_record(json.loads(text))

    def same_as(self, other: Schedule) -> bool:
        """Whether two versions fire alike (timestamps aside)."""
        return self.to_record() | {"updated": 0} == other.to_record() | {"updated": 0}

    def describe(self) -> str:
        """The trigger as `jobs list` shows one: "cron 0 9 * * *", "every 30m", "at ..."."""
        return trigger_of(self, self.timezone or "UTC").describe()

    def to_public(self) -> dict[str, Any]:
        """The JSON shape `schedules show --json` prints (all fields, None as null)."""
        return dataclasses.asdict(self)


#: Read once: `from_record` runs for each of 10,000 schedules on every re-read.
_FIELD_NAMES = frozenset(f.name for f in dataclasses.fields(Schedule))


def trigger_of(schedule: Schedule, timezone: str) -> Trigger:
    """The schedule's trigger, in its timezone or else `timezone` (its job's)."""
    zone = schedule.timezone or timezone
    if schedule.cron is not None:
        return CronTrigger(schedule.cron, zone)
    if schedule.every is not None:
        return IntervalTrigger(schedule.every)
    if schedule.at is not None:
        return DateTrigger(parse_at(schedule.at, zone))
    raise UsageError(f"schedule '{schedule.name}' has no trigger: give --cron, --every or --at")


def effective_spec(schedule: Schedule, spec: JobSpec) -> JobSpec:
    """The job as this schedule fires it: its trigger, arguments, queue and priority.

    The copy keeps the job's name (the worker runs tasks by job name) and code. A
    runtime schedule fires every occurrence (max_instances = None): each customer's
    report runs at its hour even while another customer's is still running; an
    override keeps the job's own concurrency settings.
    """
    zone = schedule.timezone or spec.timezone
    copy = dataclasses.replace(
        spec,
        trigger=trigger_of(schedule, spec.timezone),
        timezone=zone,
        args=list(schedule.args) if schedule.args is not None else list(spec.args),
        kwargs=dict(schedule.kwargs) if schedule.kwargs is not None else dict(spec.kwargs),
        queue=schedule.queue or spec.queue,
        priority=schedule.priority if schedule.priority is not None else spec.priority,
        jitter=schedule.jitter if schedule.jitter is not None else spec.jitter,
    )
    if not schedule.override:
        copy.max_instances = None
        copy.concurrency_policy = "allow"
    return copy


def build(
    name: str,
    job: str,
    jobs: Mapping[str, JobSpec],
    *,
    override: bool = False,
    base: Schedule | None = None,
    now: float | None = None,
    **changes: Any,
) -> Schedule:
    """A checked schedule from keyword fields (`FIELDS`), on top of `base` when editing.

    Everything a manifest would refuse is refused here with one line, before
    anything is stored: an unknown job (UnknownJobError, exit 1), a name taken by a
    manifest job, no trigger or two, a bad cron (naming the field), an unknown
    timezone, arguments that are not a JSON list/object, a bad queue or priority.
    """
    unknown = set(changes) - set(FIELDS)
    if unknown:
        raise UsageError(
            f"unknown schedule field(s) {', '.join(sorted(unknown))}: expected " + ", ".join(FIELDS)
        )
    check_name(name, "schedule")
    spec = jobs.get(job)
    if spec is None:
        from .manifest import closest

        raise UnknownJobError(job, closest(job, jobs))
    if not override and name in jobs:
        raise UsageError(
            f"'{name}' is the name of a manifest job: give the schedule another name "
            f"(`jobs reschedule {name}` changes that job's own trigger)"
        )
    given = {k: v for k, v in changes.items() if v is not None}
    triggers = [k for k in TRIGGER_FIELDS if k in given]
    if len(triggers) > 1:
        raise UsageError("give one of --cron, --every, --at")
    now = time.time() if now is None else now
    fields: dict[str, Any] = dataclasses.asdict(base) if base is not None else {}
    if triggers:
        for key in TRIGGER_FIELDS:
            fields[key] = None
    fields.update(given)
    fields.update(name=name, job=job, override=override, updated=now)
    fields.setdefault("created", now)
    if base is None:
        fields["created"] = now
    schedule = Schedule(**fields)
    _normalize(schedule, spec)
    return schedule


def _normalize(schedule: Schedule, spec: JobSpec) -> None:
    """Check every field and store it in its one canonical form."""
    if schedule.timezone is not None:
        get_timezone(schedule.timezone)  # TriggerError: unknown timezone 'X'
    zone = schedule.timezone or spec.timezone
    if schedule.every is not None:
        schedule.every = parse_duration(schedule.every, what="--every")
        if schedule.every <= 0:
            raise UsageError("--every must be longer than 0s")
    if schedule.at is not None:
        when = schedule.at if isinstance(schedule.at, datetime) else str(schedule.at)
        schedule.at = parse_at(when, zone).isoformat()
    if schedule.cron is not None:
        schedule.cron = " ".join(str(schedule.cron).split())
    if schedule.jitter is not None:
        schedule.jitter = parse_duration(schedule.jitter, what="--jitter")
    if schedule.args is not None and not isinstance(schedule.args, list):
        raise UsageError("--args must be a JSON list, like '[1, \"a\"]'")
    if schedule.kwargs is not None and not isinstance(schedule.kwargs, dict):
        raise UsageError("--kwargs must be a JSON object, like '{\"customer\": 42}'")
    for value, what in ((schedule.args, "--args"), (schedule.kwargs, "--kwargs")):
        if value is not None:
            try:
                json.dumps(value, allow_nan=False)
            except (TypeError, ValueError) as exc:
                raise UsageError(f"{what} must be JSON values: {exc}") from None
    if schedule.queue is not None:
        check_name(schedule.queue, "queue")
    if schedule.priority is not None and (
        isinstance(schedule.priority, bool)
        or not isinstance(schedule.priority, int)
        or not 0 <= schedule.priority <= 9
    ):
        raise UsageError(f"bad priority {schedule.priority!r}: expected 0 to 9")
    try:
        trigger_of(schedule, spec.timezone)
    except TriggerError as exc:
        raise TriggerError(f"schedule '{schedule.name}': {exc}") from None


__all__ = [
    "FIELDS",
    "Schedule",
    "ScheduleNotFound",
    "build",
    "effective_spec",
    "trigger_of",
]
