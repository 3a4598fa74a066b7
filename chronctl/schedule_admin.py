"""Schedules as data, for operators: what `chronctl schedules ...` and
`jobs reschedule` do, as library functions `Scheduler` calls too.

The manifest says what may run; these functions store when (chronctl/schedules.py).
Every change is checked in full by `schedules.build` before one atomic backend
call stores it, so a refused command leaves nothing half-stored. A name is
either a manifest job's (its trigger may be overridden) or a runtime schedule's,
never both. Job state (paused, last fire) is kept under the *fire name*: a
runtime schedule's own name, or the job's name for an override.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from . import admin
from .backends import QueueBackend
from .errors import ChronctlError, UnknownJobError, Unsupported, UsageError
from .jobs import JobSpec, build_task
from .manifest import Manifest, closest
from .models import JobState, Task, iso
from .schedules import (
    TRIGGER_FIELDS,
    Schedule,
    ScheduleNotFound,
    build,
    effective_spec,
    trigger_of,
)
from .triggers import Trigger, get_timezone, timeline

#: `jobs reschedule` changes a trigger only: arguments, queue and priority stay the job's.
RESCHEDULE_FIELDS = (*TRIGGER_FIELDS, "timezone", "jitter")

#: How many of a job's newest tasks `schedules list` reads to find each schedule's
#: last result: enough for a few fires of every schedule of the job, bounded so one
#: busy job cannot make the listing slow.
LAST_RESULT_MIN = 200
LAST_RESULT_MAX = 20_000


def _not_found(name: str, jobs: Mapping[str, JobSpec], hint: str = "") -> ScheduleNotFound:
    exc = ScheduleNotFound(name)
    if name in jobs and not hint:
        hint = f"'{name}' is a manifest job: `jobs reschedule {name}` changes its trigger"
    if hint:
        exc.args = (f"{exc}: {hint}",)
    return exc


stored_or_none = admin.stored_schedule


async def add_schedule(
    backend: QueueBackend, jobs: Mapping[str, JobSpec], name: str, job: str, **fields: Any
) -> Schedule:
    """`schedules add`: a new runtime schedule of a manifest job, refused whole if taken."""
    if name in jobs:
        raise UsageError(
            f"schedule '{name}' already exists: it is a manifest job "
            f"(`jobs reschedule {name}` changes its trigger)"
        )
    schedule = build(name, job, jobs, **fields)
    if not await backend.put_schedule(schedule, create=True):
        raise UsageError(f"schedule '{name}' already exists")
    return schedule


async def edit_schedule(
    backend: QueueBackend, jobs: Mapping[str, JobSpec], name: str, **fields: Any
) -> Schedule:
    """`schedules edit`: change the given fields of a runtime schedule; one trigger
    option replaces its trigger, `job` moves it to another manifest job."""
    stored = await stored_or_none(backend, name)
    if stored is None:
        raise _not_found(name, jobs)
    if stored.override:
        raise UsageError(
            f"'{name}' is the trigger override of job '{name}': change it with "
            f"`jobs reschedule {name}`"
        )
    if not any(v is not None for v in fields.values()):
        raise UsageError(f"nothing to change in schedule '{name}': give the options to change")
    job = fields.pop("job", None) or stored.job
    if job not in jobs and job == stored.job:
        raise ChronctlError(orphan_text(stored))
    schedule = build(name, job, jobs, base=stored, **fields)
    if not await backend.put_schedule(schedule, create=False):
        raise _not_found(name, jobs, "it was removed meanwhile")
    return schedule


async def reschedule_job(
    backend: QueueBackend,
    jobs: Mapping[str, JobSpec],
    name: str,
    *,
    reset: bool = False,
    **trigger_fields: Any,
) -> Schedule | None:
    """`jobs reschedule NAME`: override a manifest job's trigger (until `reset`), or
    change a runtime schedule's trigger. Returns what is stored (None after a reset)."""
    unknown = set(trigger_fields) - set(RESCHEDULE_FIELDS)
    if unknown:
        raise UsageError(
            f"`jobs reschedule` changes the trigger only, not {', '.join(sorted(unknown))}"
        )
    given = {k: v for k, v in trigger_fields.items() if v is not None}
    if reset:
        if given:
            raise UsageError("--reset takes no other option: it restores the manifest's trigger")
        await reset_override(backend, jobs, name)
        return None
    if name not in jobs:
        stored = await stored_or_none(backend, name)
        if stored is None or stored.override:
            names = [*jobs, *([stored.name] if stored else [])]
            raise UnknownJobError(name, closest(name, names))
        return await edit_schedule(backend, jobs, name, **given)
    existing = await stored_or_none(backend, name)
    if existing is not None and not existing.override:
        raise UsageError(
            f"a runtime schedule named '{name}' is stored, which the manifest job of that "
            f"name now shadows: `schedules remove {name}` first"
        )
    if not any(k in given for k in TRIGGER_FIELDS) and existing is None:
        raise UsageError(f"give --cron, --every or --at: the new trigger of job '{name}'")
    schedule = build(name, name, jobs, override=True, base=existing, **given)
    if not await backend.put_schedule(schedule, create=existing is None):
        raise ChronctlError(
            f"the override of job '{name}' changed meanwhile: nothing stored, run the command again"
        )
    return schedule


async def reset_override(backend: QueueBackend, jobs: Mapping[str, JobSpec], name: str) -> bool:
    """`jobs reschedule JOB --reset`: the job fires on its manifest trigger again.

    Idempotent: a job with no override is already reset (False, nothing changed),
    so a script may run it any number of times. A job that left the manifest
    may still have its override removed.
    """
    stored = await stored_or_none(backend, name)
    if stored is not None and not stored.override:
        raise UsageError(
            f"'{name}' is a runtime schedule, not an override: `schedules remove {name}` removes it"
        )
    if stored is None:
        if name not in jobs:
            raise UnknownJobError(name, closest(name, jobs))
        return False
    return await backend.delete_schedule(name)


async def remove_schedule(backend: QueueBackend, name: str) -> Schedule:
    """`schedules remove`: delete a runtime schedule (its task history stays)."""
    stored = await stored_or_none(backend, name)
    if stored is None:
        raise ScheduleNotFound(name)
    if stored.override:
        raise UsageError(
            f"'{name}' is the trigger override of job '{name}': `jobs reschedule {name} --reset` "
            "removes it"
        )
    if not await backend.delete_schedule(name):
        raise ScheduleNotFound(name)
    return stored


async def get_schedule(backend: QueueBackend, name: str) -> Schedule:
    """`schedules show`: the stored schedule or override `name`."""
    stored = await stored_or_none(backend, name)
    if stored is None:
        raise ScheduleNotFound(name)
    return stored


async def schedule_task(backend: QueueBackend, jobs: Mapping[str, JobSpec], name: str) -> Task:
    """`trigger NAME` for a runtime schedule: a task of its job now, with the
    schedule's arguments, queue and priority (nothing is stored yet)."""
    stored = await stored_or_none(backend, name)
    if stored is None or stored.override:
        names = [*jobs, *([stored.name] if stored else [])]
        raise UnknownJobError(name, closest(name, names))
    spec = jobs.get(stored.job)
    if spec is None:
        raise ChronctlError(orphan_text(stored))
    return build_task(effective_spec(stored, spec))


async def trigger(backend: QueueBackend, manifest: Manifest, name: str) -> tuple[str, bool]:
    """`trigger NAME`: a manifest job's task now, or a runtime schedule's (its job, with
    its arguments, queue and priority); returns (task id, created)."""
    if name in manifest.jobs:
        task = admin.make_task(manifest, admin.EnqueueRequest(job=name))
    else:
        task = await schedule_task(backend, manifest.jobs, name)
    [(task_id, created)] = await admin.enqueue_tasks(backend, [task], limits=manifest.limits)
    return task_id, created


def orphan_text(schedule: Schedule) -> str:
    return (
        f"schedule '{schedule.name}' is orphaned: its job '{schedule.job}' is not in the "
        "manifest, so it never fires (edit it with --job, or remove it)"
    )


# -- the listing -------------------------------------------------------------------


@dataclass(slots=True)
class ScheduleView:
    """One line of `schedules list`: a manifest job's trigger, overridden or not, or a
    runtime schedule."""

    name: str
    job: str
    source: str  # "manifest", "override" or "runtime"
    trigger: str | None
    timezone: str
    next_fire: datetime | None
    paused: bool
    last_fire: float | None
    last_result: str | None
    orphaned: bool = False  # never fires: its job left the manifest, or a job took its name
    schedule: Schedule | None = None  # what is stored (None for "manifest")

    def to_public(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "job": self.job,
            "source": self.source,
            "trigger": self.trigger,
            "timezone": self.timezone,
            "next_fire": self.next_fire.isoformat() if self.next_fire else None,
            "paused": self.paused,
            "last_fire": iso(self.last_fire),
            "last_result": self.last_result,
            "orphaned": self.orphaned,
        }


async def _all_schedules(backend: QueueBackend) -> list[Schedule]:
    try:
        return await backend.list_schedules()
    except Unsupported:
        return []


async def last_results(
    backend: QueueBackend, wanted: Mapping[str, set[str]]
) -> dict[str, tuple[str, float | None]]:
    """Each fire name's newest fired task: (status, scheduled time).

    `wanted` maps a job to the fire names to look for. A fired task's key is
    `FIRENAME@FIRE_TIME`, so one read of each job's newest tasks answers for
    all its schedules at once. Only that window is read: a schedule whose last
    fired task is older than its job's newest `window` tasks shows no result.
    """
    found: dict[str, tuple[str, float | None]] = {}
    for job, names in wanted.items():
        window = min(LAST_RESULT_MAX, max(LAST_RESULT_MIN, 4 * len(names)))
        for task in await backend.list_tasks(job=job, limit=window):
            if not task.key or "@" not in task.key:
                continue
            fire_name = task.key.rpartition("@")[0]
            if fire_name in names and fire_name not in found:
                found[fire_name] = (task.status.value, task.scheduled_at)
    return found


async def schedules_overview(
    backend: QueueBackend, jobs: Mapping[str, JobSpec], now: float | None = None
) -> list[ScheduleView]:
    """`schedules list`: every manifest job with a trigger (its override's, when one
    is stored), then every runtime schedule, with next fire, paused state and last
    result. Reads schedules, job states and each job's newest tasks once, whatever
    the number of schedules."""
    stored = await _all_schedules(backend)
    states = await admin.job_states(backend)
    views = build_views(jobs, stored, states, now)
    await _add_last_results(backend, views)
    return views


async def schedule_view(
    backend: QueueBackend, jobs: Mapping[str, JobSpec], name: str, now: float | None = None
) -> ScheduleView:
    """`schedules show NAME`: the line of `schedules list` for one stored schedule."""
    stored = await get_schedule(backend, name)
    only = {stored.job: jobs[stored.job]} if stored.job in jobs else {}
    views = build_views(only, [stored], await admin.job_states(backend), now)
    views = [v for v in views if v.name == name]
    if not views:
        raise ScheduleNotFound(name)
    await _add_last_results(backend, views)
    return views[0]


async def _add_last_results(backend: QueueBackend, views: list[ScheduleView]) -> None:
    wanted: dict[str, set[str]] = {}
    for view in views:
        wanted.setdefault(view.job, set()).add(view.name)
    results = await last_results(backend, wanted)
    for view in views:
        result = results.get(view.name)
        view.last_result = result[0] if result else None


def build_views(
    jobs: Mapping[str, JobSpec],
    stored: list[Schedule],
    states: Mapping[str, JobState],
    now: float | None = None,
) -> list[ScheduleView]:
    """The lines of `schedules list` (without last results), from what was read."""
    now = time.time() if now is None else now
    stored = sorted(stored, key=lambda s: s.name)
    overrides = {s.name: s for s in stored if s.override}
    fires = _NextFires(now)
    views: list[ScheduleView] = []
    for spec in jobs.values():
        override = overrides.get(spec.name)
        if spec.trigger is None and override is None:
            continue
        state = states.get(spec.name)
        if override is None:
            trigger, zone = spec.trigger, spec.timezone
        else:
            trigger, zone = fires.trigger(override, spec)
        views.append(
            ScheduleView(
                spec.name,
                spec.name,
                "override" if override else "manifest",
                trigger.describe() if trigger else None,
                zone,
                fires.next(trigger, zone, state),
                bool(state and state.paused),
                state.last_fire if state else None,
                None,
                schedule=override,
            )
        )
    for schedule in stored:
        if schedule.override and schedule.name in jobs:
            continue  # shown above, as its job's line
        state = states.get(schedule.name)
        job = jobs.get(schedule.job)
        # Never fired: its job left the manifest, or (runtime) a manifest job took its name.
        if job is None or (not schedule.override and schedule.name in jobs):
            views.append(
                ScheduleView(
                    schedule.name,
                    schedule.job,
                    "override" if schedule.override else "runtime",
                    _describe(schedule),
                    schedule.timezone or "UTC",
                    None,  # never fires while its job is missing
                    bool(state and state.paused),
                    state.last_fire if state else None,
                    None,
                    orphaned=True,
                    schedule=schedule,
                )
            )
            continue
        trigger, zone = fires.trigger(schedule, job)
        # Never fired: it counts from when it was stored, as the fire loop places it.
        state = state or JobState(schedule.name, first_seen=schedule.created or now)
        views.append(
            ScheduleView(
                schedule.name,
                schedule.job,
                "runtime",
                trigger.describe(),
                zone,
                fires.next(trigger, zone, state),
                state.paused,
                state.last_fire,
                None,
                schedule=schedule,
            )
        )
    return views


class _NextFires:
    """Next fires for many schedules at once, each distinct one computed once.

    Ten thousand customers' "0 9 * * *" share one parsed trigger, and every
    schedule whose last fire is behind `now` has the same next fire as the others
    with its trigger: the answer depends on (trigger, zone, max(after, now)) only.
    The rule is the fire loop's (`JobSpec.timeline`), so the listing agrees with
    `jobs next`.
    """

    def __init__(self, now: float) -> None:
        self.now = now
        self.now_dt = datetime.fromtimestamp(now, UTC)
        self._triggers: dict[tuple[str | None, float | None, str | None, str], Trigger] = {}
        self._fires: dict[tuple[Trigger, str, datetime], datetime | None] = {}

    def trigger(self, schedule: Schedule, spec: JobSpec) -> tuple[Trigger, str]:
        zone = schedule.timezone or spec.timezone
        key = (schedule.cron, schedule.every, schedule.at, zone)
        if key not in self._triggers:
            self._triggers[key] = trigger_of(schedule, spec.timezone)
        return self._triggers[key], zone

    def next(self, trigger: Trigger | None, zone: str, state: JobState | None) -> datetime | None:
        if trigger is None:
            return None
        placed = (
            timeline(trigger, now=self.now)
            if state is None
            else timeline(
                trigger, now=self.now, first_seen=state.first_seen, last_fire=state.last_fire
            )
        )
        start = max(placed.after, self.now_dt)
        key = (placed.trigger, zone, start)
        if key not in self._fires:
            nxt = placed.trigger.next_fire(start)
            self._fires[key] = nxt.astimezone(get_timezone(zone)) if nxt else None
        return self._fires[key]


def _describe(schedule: Schedule) -> str | None:
    try:
        return schedule.describe()
    except ChronctlError:
        return None


def _first(fires: list[datetime]) -> datetime | None:
    return fires[0] if fires else None


__all__ = [
    "RESCHEDULE_FIELDS",
    "ScheduleView",
    "add_schedule",
    "build_views",
    "edit_schedule",
    "get_schedule",
    "last_results",
    "orphan_text",
    "remove_schedule",
    "reschedule_job",
    "reset_override",
    "schedule_task",
    "schedule_view",
    "schedules_overview",
    "stored_or_none",
]
