"""One picture of a backend: what `chronctl top` draws every second, and what a
`chronctl web` would render, as plain data (`Overview.to_public()` is its JSON).

It is read through the declared backend interface only (the same calls the CLI
makes), so it works on every backend and needs no server of its own. It is
taken every second beside a backend that may hold a million tasks, so no read
may list them; each is bounded by something else:

- `list_queues`: the per-queue counts `queues list` and `status` read: O(queues)
  where the backend keeps counters (Redis), an index count on the SQL backends
  (the one read that grows with pending tasks: about half a second at a million,
  which is why `top` paces its refreshes by how long a snapshot took);
- O(processes): `list_processes`;
- `count_dead`: a count over an index or a counter on the shipped backends (the
  default for a custom backend lists its dead letters);
- O(limit): `list_tasks(status=running, limit=RUNNING_LIMIT)` (Redis reads every
  running task: as many as the workers run at once), `list_tasks(status=dead,
  limit=FAILURE_LIMIT)`, `history(limit=HISTORY_WINDOW)`;
- O(jobs + stored schedules): `list_job_states` and `list_schedules` (next fires
  are computed, each distinct trigger once, as `schedules list` does); then for
  the JOB_LIMIT lines shown, `history(job, limit=1)` for each job whose last run
  is not in the history window already read, and one bounded read of newest
  tasks per job with runtime schedules shown (`schedule_admin.last_results`).

The reads are sent together (then the jobs' `history(job, 1)` together), so over
a distant network a snapshot costs about two round trips. No call lists every
task. What that bounds is said where it shows: per-process task counts come from
the first RUNNING_LIMIT running tasks (queue counts stay exact), and throughput
comes from history windows (see `Throughput`).

A backend may leave optional capabilities out (a custom backend, see
QueueBackend): the panel they feed stays empty and `unsupported` names them,
rather than the whole view failing.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from .admin import list_queues, process_state, schedules_by_name
from .backends import QueueBackend, QueueInfo
from .backends.base import RUN_HISTORY
from .backpressure import UNLIMITED, QueueLimits
from .errors import Unsupported
from .jobs import JobSpec
from .models import JobState, Process, Run, Task, TaskStatus, iso
from .schedule_admin import build_views, last_results
from .schedules import Schedule

T = TypeVar("T")

#: Finished runs read per snapshot (newest first) for throughput, failures and jobs'
#: last results. A live `top` reading every second counts up to this many runs per
#: second exactly; beyond that its counts are lower bounds (and say so).
HISTORY_WINDOW = 500
#: Running tasks listed per snapshot (queue running counts stay exact).
RUNNING_LIMIT = 100
#: Latest failures kept (failed runs from the window, then dead letters).
FAILURE_LIMIT = 10
#: Jobs whose next fire and last result are given, soonest fire first.
JOB_LIMIT = 20
#: The throughput series: BUCKETS buckets of BUCKET seconds, the last one ending now.
BUCKET = 5.0
BUCKETS = 24
#: "Rate in the last minute": runs finished (any outcome) in the last RATE_SPAN seconds.
RATE_SPAN = 60.0


def _run_key(run: Run) -> tuple[str, int, float]:
    """A history row's identity: its task, attempt and finish time (as `migrate` matches)."""
    return (run.task_id, run.attempt, run.finished_at)


class Throughput:
    """Runs finished per queue, counted from successive `history(limit=N)` windows.

    One window alone shows the last N runs: enough for a quiet backend, a lower
    bound for a busy one. Fed again every refresh, runs already counted are
    skipped by their identity, so a running `top` counts every run as long as
    fewer than N finish between two refreshes. When a full window's oldest run
    was not seen before, runs may have been missed before it: counts reaching
    back past that time are lower bounds (`partial_before`). A snapshot taken
    once (`top --once`, a web request) feeds one window and says the same.
    """

    def __init__(self, span: float = BUCKET * BUCKETS) -> None:
        self.span = max(span, RATE_SPAN)
        self._times: dict[str, list[float]] = {}
        self._seen: set[tuple[str, int, float]] = set()
        self.partial_before: float | None = None

    def feed(self, runs: Sequence[Run], now: float, window: int) -> None:
        """Count `runs` (newest first, as `history` returns them) not counted yet."""
        keys = [_run_key(r) for r in runs]
        if runs and len(runs) >= window and keys[-1] not in self._seen:
            edge = runs[-1].finished_at
            self.partial_before = max(self.partial_before or edge, edge)
        horizon = now - self.span
        for run, key in zip(runs, keys, strict=True):
            if key not in self._seen and run.finished_at >= horizon:
                self._times.setdefault(run.queue, []).append(run.finished_at)
        self._seen = set(keys)
        for queue in list(self._times):
            kept = [t for t in self._times[queue] if t >= horizon]
            if kept:
                self._times[queue] = kept
            else:
                del self._times[queue]

    def queues(self) -> list[str]:
        return sorted(self._times)

    def rate(self, queue: str, now: float) -> int:
        """Runs of `queue` finished in the last RATE_SPAN seconds."""
        start = now - RATE_SPAN
        return sum(1 for t in self._times.get(queue, ()) if t >= start)

    def series(self, queue: str, now: float) -> list[int]:
        """Runs finished per BUCKET seconds, oldest bucket first, the last ending now
        (a run stamped a little in the future by another host's clock counts in it)."""
        out = [0] * BUCKETS
        start = now - BUCKETS * BUCKET
        for t in self._times.get(queue, ()):
            if t >= start:
                out[min(BUCKETS - 1, int((t - start) // BUCKET))] += 1
        return out

    def partial(self, now: float, span: float = RATE_SPAN) -> bool:
        """Whether counts over the last `span` seconds may miss runs."""
        return self.partial_before is not None and self.partial_before > now - span


@dataclass(slots=True)
class ProcessView:
    process: Process
    state: str  # alive, stale or dead (see admin.process_state)
    tasks_running: int  # among the running tasks listed (RUNNING_LIMIT)

    def to_public(self, now: float) -> dict[str, Any]:
        return {
            **self.process.to_public(now),
            "state": self.state,
            "tasks_running": self.tasks_running,
        }


@dataclass(slots=True)
class QueueView:
    info: QueueInfo
    rate: int | None  # runs finished in the last RATE_SPAN seconds (None: no history)
    series: list[int]  # runs finished per BUCKET seconds, oldest first ([]: no history)

    def to_public(self) -> dict[str, Any]:
        return {**self.info.to_public(), "finished_last_minute": self.rate, "series": self.series}


@dataclass(slots=True)
class RunningView:
    task: Task
    elapsed: float | None  # seconds since it started (None: no start time stored)
    timeout: float | None  # the job's timeout (None: none, or the job is not in the manifest)

    def to_public(self) -> dict[str, Any]:
        t = self.task
        return {
            "id": t.id,
            "job": t.job,
            "queue": t.queue,
            "attempt": t.attempt,
            "worker": t.worker,
            "started_at": iso(t.started_at),
            "elapsed": self.elapsed,
            "timeout": self.timeout,
        }


@dataclass(slots=True)
class JobView:
    """A line of the JOBS panel: what fires under one name, as `schedules list` has it
    (a manifest job's trigger, or its override's; a runtime schedule of a job), or a
    manifest job without a trigger (`source` "enqueue": it runs when enqueued)."""

    name: str
    job: str
    source: str  # manifest, override, runtime or enqueue
    trigger: str | None
    timezone: str
    next_fire: datetime | None
    paused: bool
    last_status: str | None = None
    last_run: float | None = None  # a job's last finished run; a schedule's last fire
    orphaned: bool = False  # a stored schedule of a job no longer in the manifest

    def to_public(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "job": self.job,
            "source": self.source,
            "trigger": self.trigger,
            "timezone": self.timezone,
            "next_fire": self.next_fire.isoformat() if self.next_fire else None,
            "paused": self.paused,
            "last_status": self.last_status,
            "last_run": iso(self.last_run),
            "orphaned": self.orphaned,
        }


@dataclass(slots=True)
class Failure:
    """A failed run (retried or not) or a dead letter, newest first."""

    task_id: str
    job: str
    queue: str
    status: str  # failed (will be retried) or dead
    attempt: int
    finished_at: float | None
    error: str | None

    def to_public(self) -> dict[str, Any]:
        return {
            "id": self.task_id,
            "job": self.job,
            "queue": self.queue,
            "status": self.status,
            "attempt": self.attempt,
            "finished_at": iso(self.finished_at),
            "error": self.error,
        }


@dataclass(slots=True)
class Overview:
    at: float
    backend: str
    processes: list[ProcessView] = field(default_factory=list)
    queues: list[QueueView] = field(default_factory=list)
    jobs: list[JobView] = field(default_factory=list)
    jobs_total: int = 0
    running: list[RunningView] = field(default_factory=list)
    #: Running tasks in all queues (exact, from the queue counts).
    running_total: int = 0
    failures: list[Failure] = field(default_factory=list)
    dead: int | None = None
    #: Whether throughput counts over the last minute may miss runs (see Throughput).
    rate_partial: bool = False
    #: Capabilities the backend left out; the panels they feed are empty.
    unsupported: list[str] = field(default_factory=list)

    def to_public(self) -> dict[str, Any]:
        return {
            "at": iso(self.at),
            "backend": self.backend,
            "processes": [p.to_public(self.at) for p in self.processes],
            "queues": [q.to_public() for q in self.queues],
            "throughput": {
                "bucket_seconds": BUCKET,
                "rate_seconds": RATE_SPAN,
                "lower_bound": self.rate_partial,
            },
            "jobs": [j.to_public() for j in self.jobs],
            "jobs_total": self.jobs_total,
            "running": [r.to_public() for r in self.running],
            "running_total": self.running_total,
            "failures": [f.to_public() for f in self.failures],
            "dead": self.dead,
            "unsupported": self.unsupported,
        }


async def _nothing() -> list[JobState]:
    return []


async def _no_schedules() -> dict[str, Schedule]:
    return {}


async def _optional(call: Awaitable[T], default: T, missing: list[str]) -> T:
    """`call`'s result, or `default` when the backend does not support it (noted)."""
    try:
        return await call
    except Unsupported as exc:
        if exc.capability not in missing:
            missing.append(exc.capability)
        return default


async def read_overview(
    backend: QueueBackend,
    *,
    jobs: Mapping[str, JobSpec] | None = None,
    known_queues: Iterable[str] = (),
    limits: QueueLimits = UNLIMITED,
    throughput: Throughput | None = None,
    now: float | None = None,
) -> Overview:
    """One snapshot. `jobs`, `known_queues` and `limits` come from the manifest when
    there is one (jobs' next fires and timeouts, queues shown while empty); pass the
    same `throughput` on every refresh to count runs across windows."""
    now = time.time() if now is None else now
    missing: list[str] = []
    throughput = throughput or Throughput()
    specs = dict(jobs or {})
    # The reads are independent: asked together, a snapshot over a distant network
    # costs about one round trip, not one per read.
    reads = asyncio.gather(
        _optional(list_queues(backend, known_queues, limits), [], missing),
        _optional(backend.history(None, limit=HISTORY_WINDOW), [], missing),
        _optional(backend.list_tasks(status=TaskStatus.RUNNING, limit=RUNNING_LIMIT), [], missing),
        _optional(backend.list_tasks(status=TaskStatus.DEAD, limit=FAILURE_LIMIT), [], missing),
        _optional(backend.count_dead(), None, missing),
        _optional(backend.list_processes(), [], missing),
    )
    job_states = _optional(backend.list_job_states(), [], missing) if specs else _nothing()
    stored = schedules_by_name(backend) if specs else _no_schedules()
    (
        (queues, runs, running, dead_letters, dead, processes),
        states,
        schedules,
    ) = await asyncio.gather(reads, job_states, stored)
    throughput.feed(runs, now, HISTORY_WINDOW)

    overview = Overview(at=now, backend=backend.display_url or backend.label)
    overview.queues = _queue_views(queues, throughput, now, RUN_HISTORY not in missing)
    overview.running_total = sum(q.info.running for q in overview.queues)
    overview.rate_partial = throughput.partial(now)
    overview.running = [
        RunningView(
            t,
            None if t.started_at is None else max(0.0, now - t.started_at),
            specs[t.job].timeout if t.job in specs else None,
        )
        for t in running
    ]
    per_worker: dict[str, int] = {}
    for t in running:
        if t.worker:
            per_worker[t.worker] = per_worker.get(t.worker, 0) + 1
    host = socket.gethostname()
    overview.processes = [
        ProcessView(p, process_state(p, now, host), per_worker.get(p.id, 0)) for p in processes
    ]
    overview.failures = _failures(runs, dead_letters)
    overview.dead = dead
    views = _job_views(specs, states, schedules, now)
    overview.jobs_total = len(views)
    overview.jobs = await _last_runs(backend, views[:JOB_LIMIT], runs, missing)
    overview.unsupported = sorted(missing)
    return overview


def _queue_views(
    queues: list[QueueInfo], throughput: Throughput, now: float, counted: bool
) -> list[QueueView]:
    """The queues `queues list` shows, plus any that finished runs in the span (a queue
    not in the manifest drops out of `list_queues` when it empties: its rate does not).
    Without history (`counted` False) a rate is unknown, not zero."""
    infos = {q.name: q for q in queues}
    for name in throughput.queues():
        infos.setdefault(name, QueueInfo(name))
    return [
        QueueView(infos[name], throughput.rate(name, now), throughput.series(name, now))
        if counted
        else QueueView(infos[name], None, [])
        for name in sorted(infos)
    ]


def _failures(runs: Sequence[Run], dead_letters: Sequence[Task]) -> list[Failure]:
    """Failed runs in the history window, then dead letters not among them, newest
    first: a failure older than the window is still seen while its task is dead."""
    out: list[Failure] = []
    seen: set[str] = set()
    dead = {t.id for t in dead_letters}
    for run in runs:
        status = TaskStatus(run.status)
        if status in (TaskStatus.FAILED, TaskStatus.DEAD):
            out.append(
                Failure(
                    run.task_id,
                    run.job,
                    run.queue,
                    # The run failed; its task may since be a dead letter: say so.
                    TaskStatus.DEAD.value if run.task_id in dead else status.value,
                    run.attempt,
                    run.finished_at,
                    run.error,
                )
            )
            seen.add(run.task_id)
    for task in dead_letters:
        if task.id not in seen:
            out.append(
                Failure(
                    task.id,
                    task.job,
                    task.queue,
                    TaskStatus.DEAD.value,
                    task.attempt,
                    task.finished_at,
                    task.error,
                )
            )
    out.sort(key=lambda f: f.finished_at or 0.0, reverse=True)
    return out[:FAILURE_LIMIT]


def _job_views(
    specs: Mapping[str, JobSpec],
    states: Sequence[JobState],
    schedules: Mapping[str, Schedule],
    now: float,
) -> list[JobView]:
    """Every fire name `schedules list` shows (next fires computed, not read: each
    distinct trigger once), plus the manifest's enqueue-only jobs; soonest fire first,
    then those without one, by name."""
    by_name = {s.name: s for s in states}
    views = [
        JobView(
            v.name,
            v.job,
            v.source,
            v.trigger,
            v.timezone,
            v.next_fire,
            v.paused,
            orphaned=v.orphaned,
        )
        for v in build_views(specs, list(schedules.values()), by_name, now)
    ]
    named = {v.name for v in views}
    for name, spec in specs.items():
        if name not in named:
            state = by_name.get(name)
            paused = bool(state and state.paused)
            views.append(JobView(name, name, "enqueue", None, spec.timezone, None, paused))
    views.sort(key=_soonest)
    return views


def _soonest(view: JobView) -> tuple[bool, float, str]:
    fire = view.next_fire
    return (fire is None, fire.timestamp() if fire else 0.0, view.name)


async def _last_runs(
    backend: QueueBackend, views: list[JobView], runs: Sequence[Run], missing: list[str]
) -> list[JobView]:
    """Each shown line's last result. A job's: its newest run in the history window
    already read, else one `history(job, 1)`. A runtime schedule's: its newest fired
    task, from one bounded read of its job's newest tasks (`last_results`)."""
    latest: dict[str, Run] = {}
    for run in runs:
        latest.setdefault(run.job, run)
    jobs = [v for v in views if v.source != "runtime"]
    unseen = [v.name for v in jobs if v.name not in latest]
    if unseen and RUN_HISTORY not in missing:  # not asked per job of a backend without it
        found = await asyncio.gather(
            *(_optional(backend.history(name, limit=1), [], missing) for name in unseen)
        )
        latest.update({name: rows[0] for name, rows in zip(unseen, found, strict=True) if rows})
    for view in jobs:
        last = latest.get(view.name)
        if last is not None:
            view.last_status, view.last_run = TaskStatus(last.status).value, last.finished_at
    wanted: dict[str, set[str]] = {}
    for view in views:
        if view.source == "runtime" and not view.orphaned:
            wanted.setdefault(view.job, set()).add(view.name)
    if wanted:
        fired = await _optional(last_results(backend, wanted), {}, missing)
        for view in views:
            if view.name in fired and view.source == "runtime":
                view.last_status, view.last_run = fired[view.name]
    return views


__all__ = [
    "BUCKET",
    "BUCKETS",
    "FAILURE_LIMIT",
    "HISTORY_WINDOW",
    "JOB_LIMIT",
    "RATE_SPAN",
    "RUNNING_LIMIT",
    "Failure",
    "JobView",
    "Overview",
    "ProcessView",
    "QueueView",
    "RunningView",
    "Throughput",
    "read_overview",
]
