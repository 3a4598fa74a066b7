"""The engine: a job registry, a firing loop, and the worker, on one backend.

One data path: every fire becomes a task through `backend.record_fire`, the
atomic step that makes several schedulers on one backend fire each
occurrence once. The firing loop sleeps until the earliest next fire and is
woken early when jobs change; it never polls.

Misfires: when the loop (or a restarted process) finds fires in the past,
those within `misfire_grace_time` run — once when `coalesce` — and the older
ones are recorded as missed (`job_missed`), never run.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import os
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar, overload

from . import admin, schedule_admin
from .backends import QueueBackend, QueueInfo
from .backends.memory import MemoryBackend
from .backpressure import QueueLimits, check_room, full_reason, record_skip
from .durations import parse_duration
from .errors import ChronctlError, Unsupported, UsageError
from .events import Event, EventBus, Handler
from .executors import Executors
from .jobs import JobSpec, RetryPolicy, build_task
from .manifest import resolve_backend
from .models import (
    HEARTBEAT_INTERVAL,
    FireOutcome,
    JobState,
    Process,
    Task,
    TaskStatus,
    check_name,
    iso,
)
from .retention import RetentionPolicy
from .retention import run_forever as run_retention
from .schedules import Schedule, effective_spec
from .text import safe
from .triggers import (
    CronTrigger,
    DateTrigger,
    IntervalTrigger,
    Trigger,
    jitter_delay,
    parse_at,
)
from .worker import Worker

if TYPE_CHECKING:
    from .manifest import Manifest
    from .models import Run

log = logging.getLogger("chronctl.scheduler")

#: Seconds between looks at the stored schedules' version (the safety net under the
#: backend's change notification: a change reaches every scheduler within this).
SCHEDULES_RECHECK = 1.0
MAX_CATCHUP = 10_000  # fires examined per job per wake before skipping ahead
# catchup = "skip": a fire this late is still "now" (the loop wakes a little after it).
CATCHUP_SKIP_TOLERANCE = 1.0
#: What `enqueue_many` accepts per item: the keyword options of `enqueue`.
_ENQUEUE_OPTIONS = frozenset({"args", "kwargs", "delay", "at", "priority", "queue", "key"})
E = TypeVar("E", bound=Event)

__all__ = ["HEARTBEAT_INTERVAL", "Scheduler", "build_task"]


class Scheduler:
    """Jobs, the loop that fires their triggers, and a worker, on one backend.

    Every fire and every `enqueue` becomes a task in the backend; the worker
    (role "all" or "worker") claims and runs them. Several schedulers may share
    one backend: each fire is recorded atomically, so it runs once.
    """

    def __init__(
        self,
        backend: QueueBackend | None = None,
        *,
        timezone: str = "UTC",
        workers: int = 8,
        misfire_grace_time: float = 60.0,
        coalesce: bool = True,
        shutdown_timeout: float = 30.0,
        lease: float = 30.0,
        queues: list[str] | None = None,
        role: str = "all",
        default_max_retries: int = 3,
        clock: Callable[[], float] = time.time,
        prefetch: int | None = None,
        max_pending: int | None = None,
        queue_max_pending: Mapping[str, int] | None = None,
        retention: RetentionPolicy | None = None,
    ) -> None:
        """
        Args:
            backend: where tasks, job state and history live. The default, a
                `MemoryBackend`, is private to this process and lost on exit: use
                `SQLiteBackend` (or Redis, RabbitMQ) to keep tasks across restarts
                or share them between processes.
            timezone: the zone of `cron`/`at` triggers of `@job`s that give none.
            workers: tasks run at once by this process; plain `def` jobs run in
                a thread pool of this size, `executor="process"` jobs in a process
                pool of up to 4.
            misfire_grace_time: seconds a fire may be late and still run (after a
                restart, or a busy loop); older fires are recorded as missed
                (`job_missed`), never run. A job's own setting wins.
            coalesce: several late fires of one job within the grace time run
                once, not once each. A job's own setting wins.
            shutdown_timeout: seconds `stop()` lets running tasks finish before it
                cancels them and returns them to the queue.
            lease: seconds a claimed task stays claimed without a heartbeat; a
                worker that dies loses its tasks to another after this long.
            queues: the queues this worker takes tasks from (default: all).
            role: "all", "scheduler" (fire triggers only) or "worker" (run tasks
                only), to scale the two apart.
            default_max_retries: retries of a failed task of an `@job` that sets
                none, before it becomes a dead letter.
            clock: when triggers are due, as epoch seconds; injectable so tests
                can run one scheduler's clock ahead of another's.
            prefetch: tasks claimed beyond the free slots, so the next one is
                ready when a run ends (default: twice `workers`).
            max_pending: pending tasks a queue may hold before `enqueue` raises
                QueueFull and a fire is skipped (default: unlimited);
                `queue_max_pending` sets it per queue name.
            retention: what a running scheduler deletes by itself, about once a
                minute (default: finished tasks and history after 30 days, dead
                letters after 180 days or past 10,000); `retention.FOREVER` keeps all.
        """
        if role not in ("all", "scheduler", "worker"):
            raise UsageError(f"bad role '{role}': expected all, scheduler or worker")
        self.backend: QueueBackend = backend if backend is not None else MemoryBackend()
        self.timezone = timezone
        self.workers = workers
        self.prefetch = prefetch
        self.misfire_grace_time = misfire_grace_time
        self.coalesce = coalesce
        self.shutdown_timeout = shutdown_timeout
        self.lease = lease
        self.queues = queues
        self.role = role
        self.default_max_retries = default_max_retries
        self.clock = clock
        self.limits = QueueLimits(max_pending, dict(queue_max_pending or {}))
        self.retention = retention if retention is not None else RetentionPolicy()
        self.jobs: dict[str, JobSpec] = {}
        self.events = EventBus()
        # What fires, by fire name: each job with a trigger (an override stored in the
        # backend replaces it) and each stored runtime schedule of a known job.
        self._firing: dict[str, JobSpec] = {}
        self._firing_from: dict[str, object] = {}  # what each entry was built from
        self._firing_stale = True  # jobs or stored schedules changed: rebuild _firing
        self._stored: dict[str, Schedule] = {}  # stored schedules and overrides, by name
        self._stored_version: int | None = None
        self._stored_checked = -SCHEDULES_RECHECK  # monotonic time of the last version read
        self._stored_supported = True
        self._orphans: set[str] = set()  # stored schedules already warned about
        # The fire loop's cursor per fire name (its next fire), the job state it started
        # from, its anchored trigger; a heap of next fires, and names not yet placed on it.
        self._next: dict[str, datetime | None] = {}
        self._states: dict[str, JobState] = {}
        self._triggers: dict[str, Trigger] = {}
        self._heap: list[tuple[float, str]] = []
        self._unplaced: set[str] = set()
        self._wake = asyncio.Event()
        self._connected = False
        self._started = False
        self._stopped = asyncio.Event()
        self._fire_task: asyncio.Task[None] | None = None
        self._worker_task: asyncio.Task[None] | None = None
        self._worker: Worker | None = None
        self._executors: Executors | None = None
        self._process: Process | None = None
        self._beat_task: asyncio.Task[None] | None = None
        self._retention_task: asyncio.Task[None] | None = None

    @classmethod
    def from_manifest(
        cls, manifest: Manifest, backend: QueueBackend | None = None, **overrides: Any
    ) -> Scheduler:
        """A scheduler with the manifest's `[scheduler]` settings and jobs.

        `backend` replaces the manifest's (default: the one it names); keyword
        `overrides` replace settings (None leaves a setting as the manifest has it).
        """
        cfg = manifest.config
        options: dict[str, Any] = dict(
            timezone=cfg.timezone,
            workers=cfg.workers,
            misfire_grace_time=cfg.misfire_grace_time,
            coalesce=cfg.coalesce,
            shutdown_timeout=cfg.shutdown_timeout,
            lease=cfg.lease,
            queues=cfg.queues,
            prefetch=cfg.prefetch,
            max_pending=cfg.max_pending,
            queue_max_pending=manifest.queue_max_pending,
            retention=admin.retention_policy(manifest),
        )
        options.update({k: v for k, v in overrides.items() if v is not None})
        scheduler = cls(backend or resolve_backend(manifest), **options)
        for spec in manifest.jobs.values():
            scheduler.add_job(spec)
        return scheduler

    # -- jobs --------------------------------------------------------------
    def add_job(self, spec: JobSpec) -> JobSpec:
        """Register (or replace) a job; the fire loop picks up its trigger at once."""
        check_name(spec.name, "job")
        check_name(spec.queue, "queue")
        self.jobs[spec.name] = spec
        self._forget_fires(spec.name)
        return spec

    def unregister_job(self, name: str) -> None:
        """Stop firing and accepting tasks of a job in this process (a manifest reload
        that drops it); its stored tasks and schedules stay."""
        self.jobs.pop(name, None)
        self._forget_fires(name)

    def _forget_fires(self, name: str) -> None:
        self._firing_stale = True
        self._forget_cursor(name)
        self._wake.set()

    def _forget_cursor(self, name: str) -> None:
        """Read this fire name's state again and place it anew (its heap entry goes stale)."""
        self._next.pop(name, None)
        self._states.pop(name, None)
        self._triggers.pop(name, None)
        self._unplaced.add(name)

    def job(
        self,
        name: str | None = None,
        *,
        cron: str | None = None,
        every: float | str | None = None,
        at: str | datetime | None = None,
        timezone: str | None = None,
        **options: Any,
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator: register a function as a job, optionally with a trigger.

        At most one of `cron` ("0 2 * * *"), `every` (seconds or "30m") and `at`
        (ISO 8601, or a datetime). `options` are the manifest's job keys:
        max_retries, retry_backoff, retry_delay, retry_max_delay, timeout,
        jitter, misfire_grace_time, queue, priority, max_instances, executor,
        coalesce, on_failure, concurrency_policy, catchup, ... An unknown one
        is an error, not ignored.
        """

        def register(func: Callable[..., Any]) -> Callable[..., Any]:
            tz = timezone or self.timezone
            spec = JobSpec(
                name=name or func.__name__,
                func=func,
                timezone=tz,
                trigger=_make_trigger(cron, every, at, tz),
            )
            spec.retry = RetryPolicy(max_retries=self.default_max_retries)
            for key, value in options.items():
                _set_option(spec, key, value)
            self.add_job(spec)
            return func

        return register

    def get_job(self, name: str) -> JobSpec | None:
        """The registered job `name`, or None (the worker looks jobs up this way only)."""
        return self.jobs.get(name)

    def _job(self, name: str) -> JobSpec:
        return admin.job_named(self.jobs, name)

    # -- lifecycle ---------------------------------------------------------
    async def _connect(self) -> None:
        if not self._connected:
            await self.backend.connect()
            self._connected = True

    async def start(self) -> None:
        """Start firing triggers and running tasks in the background of this loop."""
        if self._started:
            return
        await self._connect()
        firing = self.role in ("all", "scheduler")
        if firing and any(spec.trigger is not None for spec in self.jobs.values()):
            # Before anything starts: a backend without fire records (a custom one)
            # cannot keep two schedulers from firing twice, so say so and fire nothing.
            await self.backend.list_job_states()
        self._started = True
        self._stopped.clear()
        if firing:
            self._fire_task = asyncio.create_task(self._fire_loop(), name="chronctl-fire-loop")
        if self.role in ("all", "worker"):
            worker = self._worker = self._make_worker()
            self._worker_task = asyncio.create_task(worker.run(), name="chronctl-worker")
        process = self._describe_process()
        try:
            await self.backend.beat(process)
        except Unsupported:
            log.info(
                "%s keeps no process heartbeats: `status` will not list this one",
                self.backend.label,
            )
        else:
            self._process = process
            self._beat_task = asyncio.create_task(self._beat_loop(), name="chronctl-heartbeat")
        if self.role in ("all", "scheduler"):
            self._retention_task = asyncio.create_task(
                run_retention(
                    self.backend,
                    self.retention.with_jobs(self.jobs.values()),
                    by=process.id,
                    clock=self.clock,
                ),
                name="chronctl-retention",
            )

    def _describe_process(self) -> Process:
        now = time.time()
        ident = (
            self._worker.id
            if self._worker is not None
            else (f"{socket.gethostname()}:{os.getpid()}:{id(self):x}")
        )
        return Process(
            id=ident,
            host=socket.gethostname(),
            pid=os.getpid(),
            role=self.role,
            started=now,
            last_beat=now,
            queues=self.queues,
        )

    async def _beat_loop(self) -> None:
        """Tell the backend we are alive, for `chronctl status` on any host."""
        while True:
            await asyncio.sleep(HEARTBEAT_INTERVAL)
            if self._process is None:
                return
            self._process.last_beat = time.time()
            try:
                await self.backend.beat(self._process)
            except Exception as exc:  # a missed beat is cosmetic; the next one retries
                log.warning("heartbeat not recorded: %s", exc)

    def _make_worker(self) -> Worker:
        if self._executors is None:
            self._executors = Executors(threads=self.workers, processes=min(self.workers, 4))
        return Worker(
            self.backend,
            self.get_job,
            self._executors,
            concurrency=self.workers,
            queues=self.queues,
            lease=self.lease,
            events=self.events,
            prefetch=self.prefetch,
        )

    async def stop(self, *, now: bool = False) -> None:
        """Graceful: stop firing and claiming, let runs finish, return the rest.

        Runs still going after `shutdown_timeout` (at once with `now=True`) are
        cancelled and their tasks returned to the queue, never lost.
        """
        for background in (self._beat_task, self._retention_task):
            if background is not None:
                background.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await background
        self._beat_task = self._retention_task = None
        if self._fire_task is not None:
            self._fire_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._fire_task
            self._fire_task = None
        if self._worker is not None:
            await self._worker.stop(self.shutdown_timeout, now=now)
            if self._worker_task is not None:
                await asyncio.gather(self._worker_task, return_exceptions=True)
            self._worker = self._worker_task = None
        if self._executors is not None:
            await self._executors.shutdown(wait=not now)
            self._executors = None
        if self._connected:
            if self._process is not None:
                with contextlib.suppress(Exception):
                    await self.backend.forget_process(self._process.id)
                self._process = None
            await self.backend.disconnect()
            self._connected = False
        self._started = False
        self._stopped.set()

    async def wait_stopped(self) -> None:
        """Block until stop(); surfaces a crash of the worker or fire loop."""
        waiters = [t for t in (self._fire_task, self._worker_task) if t is not None]
        stopped = asyncio.create_task(self._stopped.wait())
        try:
            done, _ = await asyncio.wait([stopped, *waiters], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
        for task in done:
            if task is not stopped and not task.cancelled():
                crash = task.exception()
                if crash is not None:
                    raise crash

    async def __aenter__(self) -> Scheduler:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def run_once(self) -> None:
        """Fire what is due now, run every due task, wait for them; retries later are left."""
        await self._connect()
        try:
            if self.role in ("all", "scheduler"):
                await self.fire_due()
            if self.role in ("all", "worker"):
                worker = self._make_worker()
                await worker.run_until_idle()
                await worker.stop(self.shutdown_timeout)
        finally:
            if self._executors is not None:
                await self._executors.shutdown(wait=True)
                self._executors = None
            await self.backend.disconnect()
            self._connected = False

    # -- events ------------------------------------------------------------
    @overload
    def on(self, event: type[E], handler: Callable[[E], Any]) -> Callable[[E], Any]: ...
    @overload
    def on(self, event: str, handler: Handler) -> Handler: ...
    def on(self, event: str | type[Event], handler: Handler) -> Handler:
        """Call `handler(event)` on each event of this name or class; see `chronctl.events`.

        "task_failed" and `TaskFailed` subscribe alike; the handler gets the typed
        event (sync or async). An exception in a handler is logged, never raised.
        """
        return self.events.on(event, handler)

    # -- firing ------------------------------------------------------------
    async def _read_schedules(self) -> None:
        """Re-read the stored schedules when their version moved: at once when the
        backend says they changed (`schedules_changed`), else about once a second, so a
        change made anywhere reaches this loop within a second without a restart."""
        if not self._stored_supported:
            return
        changed = self.backend.schedules_changed
        if not changed.is_set() and time.monotonic() - self._stored_checked < SCHEDULES_RECHECK:
            return
        changed.clear()
        self._stored_checked = time.monotonic()
        try:
            version = await self.backend.schedules_version()
            if version == self._stored_version:
                return
            stored = {s.name: s for s in await self.backend.list_schedules()}
        except Unsupported:
            self._stored_supported = False  # a custom backend: manifest triggers only
            return
        self._stored_version = version
        if stored != self._stored:
            self._stored = stored
            self._firing_stale = True

    def _rebuild_firing(self) -> None:
        """What fires now: manifest triggers (overridden where an override is stored)
        and runtime schedules whose job the manifest defines. A schedule of a job the
        manifest no longer has is an orphan: warned about once, kept, never fired."""
        firing: dict[str, JobSpec] = {}
        sources: dict[str, object] = {}
        orphans: set[str] = set()
        for spec in self.jobs.values():
            override = self._stored.get(spec.name)
            if override is not None and override.override:
                built = self._built(override, spec)
                if built is not None:
                    firing[spec.name], sources[spec.name] = built, (spec, override.dumps())
                    continue
            if spec.trigger is not None:
                firing[spec.name], sources[spec.name] = spec, spec
        for schedule in self._stored.values():
            job_spec = self.jobs.get(schedule.job)
            if job_spec is None:
                orphans.add(schedule.name)
                if schedule.name not in self._orphans:
                    log.warning(
                        "schedule %s names job %s, which the manifest does not define: "
                        "not fired (it stays stored; `schedules list` shows it orphaned)",
                        safe(schedule.name),
                        safe(schedule.job),
                    )
                continue
            if schedule.override or schedule.name in self.jobs:
                continue  # an override (above), or a name a manifest job took since
            built = self._built(schedule, job_spec)
            if built is not None:
                firing[schedule.name] = built
                sources[schedule.name] = (job_spec, schedule.dumps())
        self._orphans = orphans
        for name in set(self._firing_from) | set(sources):
            if name not in sources:
                self._forget_cursor(name)
                self._unplaced.discard(name)
            elif self._firing_from.get(name) != sources[name]:
                self._forget_cursor(name)  # new, or its trigger or job changed
        self._firing, self._firing_from = firing, sources
        self._firing_stale = False

    @staticmethod
    def _built(schedule: Schedule, spec: JobSpec) -> JobSpec | None:
        """The job as a stored schedule fires it; None (with a warning) when the record
        no longer makes sense here (a timezone this host lacks, say)."""
        try:
            return effective_spec(schedule, spec)
        except ChronctlError as exc:
            log.warning("schedule %s not fired: %s", safe(schedule.name), safe(str(exc)))
            return None

    async def _place(self, names: Iterable[str], now: float) -> None:
        """Compute the next fire of each name from its stored state, and heap it.

        One read of every job state serves many names (10,000 stored schedules start
        in one call, not 10,000). A manifest job without state gets one created (its
        first_seen anchors an `every` trigger for every scheduler); a stored schedule's
        anchor is the moment it was stored, so it needs no write.
        """
        todo = [n for n in names if n in self._firing]
        known: dict[str, JobState] = {}
        if len(todo) > 1:
            known = await admin.job_states(self.backend)
        for name in todo:
            spec = self._firing[name]
            state = self._states.get(name) or known.get(name)
            if state is None:
                schedule = self._stored.get(name)
                if schedule is not None and not schedule.override:
                    state = JobState(name, first_seen=schedule.created or now)
                else:
                    state = await self.backend.job_state(name, now)
            self._states[name] = state
            timeline = spec.timeline(state, now)
            if timeline is None:
                continue
            self._triggers[name] = timeline.trigger
            nxt = self._next[name] = timeline.next_fire()
            if nxt is not None:
                heapq.heappush(self._heap, (nxt.timestamp(), name))
        self._unplaced.difference_update(names)

    def _current(self, ts: float, name: str) -> bool:
        """Whether a heap entry is still the name's next fire (edits leave stale ones)."""
        nxt = self._next.get(name)
        return nxt is not None and nxt.timestamp() == ts and name in self._firing

    async def fire_due(self) -> float | None:
        """Fire every due occurrence of every trigger and stored schedule; returns the
        next wake time. Only due entries are touched: an idle loop over 10,000 stored
        schedules costs a heap peek, not a pass over all of them."""
        now = self.clock()
        await self._read_schedules()
        if self._firing_stale:
            self._rebuild_firing()
        if self._unplaced:
            await self._place(sorted(self._unplaced), now)
        heap = self._heap
        while heap and heap[0][0] <= now:
            ts, name = heapq.heappop(heap)
            if not self._current(ts, name):
                continue
            due = self._next[name]
            assert due is not None  # _current checked it
            nxt = await self._fire_job(name, self._firing[name], self._triggers[name], due, now)
            self._next[name] = nxt
            if nxt is not None:
                heapq.heappush(heap, (nxt.timestamp(), name))
        while heap and not self._current(*heap[0]):
            heapq.heappop(heap)
        if len(heap) > 2 * len(self._firing) + 64:  # many edits: drop the stale entries
            self._heap = heap = [e for e in heap if self._current(*e)]
            heapq.heapify(heap)
        return heap[0][0] if heap else None

    async def _fire_job(
        self, name: str, spec: JobSpec, trigger: Trigger, first: datetime, now: float
    ) -> datetime | None:
        """Fire `name` (a job's or a stored schedule's fire name; `spec` is the job as it
        fires) from `first` up to `now`, by the misfire rules; returns the next fire."""
        grace = (
            spec.misfire_grace_time
            if spec.misfire_grace_time is not None
            else (self.misfire_grace_time)
        )
        coalesce = spec.coalesce if spec.coalesce is not None else self.coalesce
        if spec.catchup == "skip":  # only the fire that is due now, nothing missed
            grace, coalesce = min(grace, CATCHUP_SKIP_TOLERANCE), True
        elif spec.catchup is not None:
            coalesce = spec.catchup == "once"
        missed: list[datetime] = []
        on_time: list[datetime] = []
        current: datetime | None = first
        while current is not None and current.timestamp() <= now:
            if now - current.timestamp() <= grace:
                on_time.append(current)
            else:
                missed.append(current)
                if len(missed) >= MAX_CATCHUP:
                    # Far behind (every second, down for days): skip to the grace window.
                    current = trigger.next_fire(datetime.fromtimestamp(now - grace, UTC))
                    continue
            current = trigger.next_fire(current)
        if missed:
            outcome = await self.backend.record_fire(name, missed[-1].timestamp(), None, None)
            if outcome is FireOutcome.MISSED:
                log.warning(
                    "job %s missed %d fire(s), last at %s (grace %.0fs)",
                    _fired_as(name, spec),
                    len(missed),
                    missed[-1].isoformat(),
                    grace,
                )
                await self.events.emit(
                    "job_missed", job=spec.name, count=len(missed), fire_time=missed[-1]
                )
        for fire in on_time[-1:] if coalesce else on_time:
            await self._fire_one(name, spec, fire, coalesced=len(on_time) if coalesce else 1)
        return current

    async def _fire_one(self, name: str, spec: JobSpec, fire: datetime, coalesced: int = 1) -> None:
        fire_ts = fire.timestamp()
        full = await full_reason(self.backend, self.limits, spec.queue)
        if full is not None:
            await self._skip_full(name, spec, fire, full)
            return
        task = self._new_task(
            spec,
            scheduled_at=max(fire_ts, self.clock()) + jitter_delay(spec.jitter),
            key=f"{name}@{iso(fire_ts)}",
        )
        task.fire_time = fire_ts
        replace = spec.concurrency_policy == "replace"
        outcome = await self.backend.record_fire(
            name, fire_ts, task, None if replace else spec.effective_max_instances
        )
        if outcome is FireOutcome.ENQUEUED and replace:
            await self._replace_older(spec, task)
        if outcome is FireOutcome.ENQUEUED:
            log.info(
                "fired job=%s fire_time=%s task=%s",
                _fired_as(name, spec),
                fire.isoformat(),
                task.id,
            )
            await self.events.emit(
                "job_fired", job=spec.name, task=task, fire_time=fire, coalesced=coalesced
            )
            await self.events.emit("task_enqueued", task=task)
        elif outcome in (FireOutcome.SKIPPED, FireOutcome.PAUSED):
            reason = "paused" if outcome is FireOutcome.PAUSED else "max_instances reached"
            log.info(
                "skipped job=%s fire_time=%s reason=%s",
                _fired_as(name, spec),
                fire.isoformat(),
                reason,
            )
            if outcome is FireOutcome.SKIPPED:  # a paused job says so in `jobs list` already
                await record_skip(self.backend, name, fire_ts, reason)
            await self.events.emit("job_skipped", job=spec.name, fire_time=fire, reason=reason)

    async def _skip_full(self, name: str, spec: JobSpec, fire: datetime, reason: str) -> None:
        """A fire into a full queue: recorded (so no scheduler fires it again), not run."""
        outcome = await self.backend.record_fire(name, fire.timestamp(), None, None)
        if outcome is FireOutcome.DUPLICATE:
            return  # another scheduler recorded this fire first
        log.warning(
            "skipped job=%s fire_time=%s reason=%s", _fired_as(name, spec), fire.isoformat(), reason
        )
        await record_skip(self.backend, name, fire.timestamp(), reason)
        await self.events.emit("job_skipped", job=spec.name, fire_time=fire, reason=reason)

    async def _replace_older(self, spec: JobSpec, newest: Task) -> None:
        """concurrency_policy = "replace": the new fire cancels the runs still going."""
        active = await self.backend.list_tasks(
            status=[TaskStatus.PENDING, TaskStatus.RUNNING], job=spec.name, limit=None
        )
        for task in active:
            if task.id != newest.id and await self.backend.cancel_task(task.id):
                log.info("replaced job=%s task=%s by task=%s", spec.name, task.id, newest.id)

    async def _fire_loop(self) -> None:
        backoff = 0.0
        while True:
            self._wake.clear()
            try:
                next_wake = await self.fire_due()
                if backoff:
                    log.info("firing triggers again: the backend is back")
                backoff = 0.0
            except ChronctlError as exc:
                if not backoff:  # one warning per outage, not one per retry
                    log.warning("firing triggers failed: %s; retrying with backoff", exc)
                backoff = min(max(backoff * 2, 0.1), 5.0)
                next_wake = self.clock() + backoff
            timeout = 3600.0 if next_wake is None else max(0.0, next_wake - self.clock())
            if self._stored_supported:  # the next look at the stored schedules' version
                timeout = min(timeout, SCHEDULES_RECHECK)
            await self._sleep(min(timeout, 3600.0))

    async def _sleep(self, timeout: float) -> None:
        """Until the timeout, a local change (`_wake`) or news that the stored schedules
        changed (`schedules_changed`, set by the backend's wake-up path)."""
        waits = [asyncio.ensure_future(self._wake.wait())]
        if self._stored_supported:
            waits.append(asyncio.ensure_future(self.backend.schedules_changed.wait()))
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()

    def next_fires(
        self, name: str, count: int = 5, after: datetime | None = None
    ) -> list[datetime]:
        """The next `count` fires of a job from `after` (default: now), in its timezone.

        Before the fire loop has read the job's state it assumes none (a job
        first seen now), as `validate` does for a new backend.
        """
        now = (after or datetime.now(UTC)).timestamp()
        spec = self._firing.get(name) or self._job(name)
        return admin.next_fires(spec, self._states.get(name), count, now)

    # -- tasks -------------------------------------------------------------
    def _new_task(self, spec: JobSpec, **fields: Any) -> Task:
        return Task(
            job=spec.name,
            args=list(spec.args),
            kwargs=dict(spec.kwargs),
            queue=spec.queue,
            priority=spec.priority,
            max_retries=spec.retry.max_retries,
            **fields,
        )

    async def submit(
        self,
        job: str,
        args: list[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        *,
        delay: float | None = None,
        at: datetime | str | None = None,
        priority: int | None = None,
        queue: str | None = None,
        key: str | None = None,
    ) -> tuple[str, bool]:
        """Like enqueue(), also telling whether `key` found an existing task."""
        spec = self._job(job)
        task = build_task(
            spec, args, kwargs, delay=delay, at=at, priority=priority, queue=queue, key=key
        )
        await self._connect()
        await check_room(self.backend, self.limits, [task])
        task_id, created = await self.backend.enqueue(task)
        if created:
            await self.events.emit("task_enqueued", task=task)
        return task_id, created

    async def enqueue(
        self,
        job: str,
        args: list[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        **options: Any,
    ) -> str:
        """Store a task of `job`; returns its id. A worker of this backend runs it.

        Options: `delay` (seconds) or `at` (ISO 8601 / datetime) for later,
        `priority` 0..9 (higher first), `queue`, and `key`: while a task with
        that key is unfinished, its id is returned and nothing new is stored.
        args and kwargs must be JSON values. Raises QueueFull (nothing stored)
        when the queue holds `max_pending` tasks already.
        """
        task_id, _ = await self.submit(job, args, kwargs, **options)
        return task_id

    async def enqueue_many(self, items: Iterable[tuple[str, Mapping[str, Any]] | str]) -> list[str]:
        """Many tasks in one backend step: one round trip per batch instead of one per
        task, which is what a producer of thousands of tasks needs.

        Each item is a job name or `(job, options)` with the options of `enqueue`
        (`args`, `kwargs`, `delay`, `at`, `priority`, `queue`, `key`). Every item is
        checked before any is stored, so a bad one stores nothing. Returns the ids in
        order; an item whose `key` found an existing task gets that task's id.
        """
        tasks = [self._task_of(item) for item in items]
        if not tasks:
            return []
        await self._connect()
        results = await admin.enqueue_tasks(self.backend, tasks, limits=self.limits)
        if self.events.has("task_enqueued"):
            for task, (_, created) in zip(tasks, results, strict=True):
                if created:
                    await self.events.emit("task_enqueued", task=task)
        return [task_id for task_id, _ in results]

    def _task_of(self, item: tuple[str, Mapping[str, Any]] | str) -> Task:
        job, options = (item, {}) if isinstance(item, str) else item
        if not isinstance(job, str) or not isinstance(options, Mapping):
            raise UsageError("enqueue_many takes job names or (job, options) pairs")
        unknown = set(options) - _ENQUEUE_OPTIONS
        if unknown:
            raise UsageError(
                f"unknown enqueue option(s) {', '.join(sorted(unknown))}: expected "
                f"{', '.join(sorted(_ENQUEUE_OPTIONS))}"
            )
        return build_task(self._job(job), **options)

    async def trigger(self, job: str) -> tuple[str, bool]:
        """Run a job now, outside its schedule; returns (task id, created)."""
        return await self.submit(job)

    async def get_task(self, task_id: str) -> Task | None:
        """The task as stored now, or None when no task has this id."""
        await self._connect()
        return await self.backend.get_task(task_id)

    async def cancel_task(self, task_id: str) -> Task:
        """Cancel a pending or running task (a running one stops at its next lease
        renewal); returns it as stored after the cancel, as `tasks cancel` prints it.

        Raises TaskNotFoundError for an unknown id and ChronctlError for a task
        that already finished: nothing was cancelled.
        """
        await self._connect()
        return await admin.cancel_task(self.backend, task_id)

    async def pause_job(self, name: str) -> None:
        """Stop firing the job's trigger on every scheduler of this backend; tasks
        already stored still run."""
        await self._connect()
        await admin.set_job_paused(self.backend, self.jobs, name, True)

    async def resume_job(self, name: str) -> None:
        """Fire the job's trigger again (fires missed while paused follow misfire rules)."""
        await self._connect()
        await admin.set_job_paused(self.backend, self.jobs, name, False)
        self._wake.set()

    # -- stored schedules: persisted, shared by every scheduler on the backend ------
    async def add_schedule(
        self,
        name: str,
        job: str,
        *,
        cron: str | None = None,
        every: float | str | None = None,
        at: str | datetime | None = None,
        timezone: str | None = None,
        args: list[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        queue: str | None = None,
        priority: int | None = None,
        jitter: float | str | None = None,
    ) -> Schedule:
        """Store a schedule of a registered job (one of cron=, every=, at=), as
        `schedules add` does: every scheduler on the backend fires it within about a
        second, and it survives restarts. The job's code is not stored, only when and
        with what arguments it runs. Raises UnknownJobError for an unknown job and
        UsageError for a bad field or a name already taken (nothing is stored)."""
        await self._connect()
        return await schedule_admin.add_schedule(
            self.backend,
            self.jobs,
            name,
            job,
            cron=cron,
            every=every,
            at=at,
            timezone=timezone,
            args=args,
            kwargs=kwargs,
            queue=queue,
            priority=priority,
            jitter=jitter,
        )

    async def modify_schedule(self, name: str, **fields: Any) -> Schedule:
        """Change fields of a stored schedule (`schedules edit`): one of cron=, every=,
        at= replaces its trigger; timezone, args, kwargs, queue, priority, jitter as in
        `add_schedule`. Raises ScheduleNotFound for an unknown name."""
        await self._connect()
        return await schedule_admin.edit_schedule(self.backend, self.jobs, name, **fields)

    async def reschedule_job(
        self,
        name: str,
        *,
        cron: str | None = None,
        every: float | str | None = None,
        at: str | datetime | None = None,
        timezone: str | None = None,
        jitter: float | str | None = None,
        reset: bool = False,
    ) -> Schedule | None:
        """Give a job another trigger on every scheduler of the backend, until
        `reset=True` puts its own back (`jobs reschedule`); for a stored schedule's
        name, change that schedule's trigger. Returns the stored override (None after
        a reset)."""
        await self._connect()
        return await schedule_admin.reschedule_job(
            self.backend,
            self.jobs,
            name,
            reset=reset,
            cron=cron,
            every=every,
            at=at,
            timezone=timezone,
            jitter=jitter,
        )

    async def remove_schedule(self, name: str) -> Schedule:
        """Delete a stored schedule everywhere (`schedules remove`); returns it.
        Raises ScheduleNotFound for an unknown name."""
        await self._connect()
        return await schedule_admin.remove_schedule(self.backend, name)

    async def get_schedule(self, name: str) -> Schedule | None:
        """The stored schedule or override named `name`, or None."""
        await self._connect()
        return await self.backend.get_schedule(name)

    async def list_schedules(self) -> list[Schedule]:
        """Every stored schedule and override, by name (manifest triggers are `jobs`)."""
        await self._connect()
        return await self.backend.list_schedules()

    # The names of the job stores we come from (APScheduler), as aliases.
    async def add_cron_job(self, name: str, job: str, cron: str, **fields: Any) -> Schedule:
        """Alias: `add_schedule(name, job, cron=cron, ...)`."""
        return await self.add_schedule(name, job, cron=cron, **fields)

    async def add_interval_job(
        self, name: str, job: str, every: float | str, **fields: Any
    ) -> Schedule:
        """Alias: `add_schedule(name, job, every=every, ...)`."""
        return await self.add_schedule(name, job, every=every, **fields)

    async def modify_job(self, name: str, **fields: Any) -> Schedule:
        """Alias: `modify_schedule`."""
        return await self.modify_schedule(name, **fields)

    async def remove_job(self, name: str) -> Schedule:
        """Alias: `remove_schedule` (to stop running a registered job in this process
        only, `unregister_job`)."""
        return await self.remove_schedule(name)

    async def dead_letters(self, limit: int | None = 100) -> list[Task]:
        """Tasks out of retries, newest first (`dlq list`)."""
        await self._connect()
        return await admin.dead_letters(self.backend, limit=limit)

    async def retry_dead_letter(self, task_id: str) -> bool:
        """Put a dead task back to pending (same id, attempt 0), as `dlq retry ID` does.

        Raises TaskNotFoundError for an unknown id and ChronctlError for a task
        that is not a dead letter.
        """
        await self._connect()
        return await admin.retry_dead(self.backend, [task_id]) == 1

    async def history(self, job: str | None = None, limit: int | None = 50) -> list[Run]:
        """Finished runs (every attempt), newest first; one job's or all."""
        await self._connect()
        return await self.backend.history(job, limit)

    async def queue_info(self, queue: str = "default") -> QueueInfo:
        """One queue as `list_queues` shows it; a name it does not show is
        UnknownQueueError (a typo), as for `queues purge`."""
        await self._connect()
        return await admin.known_queue(self.backend, self._queue_names(), queue, self.limits)

    async def list_queues(self) -> list[QueueInfo]:
        """What `queues list` shows: the queues the jobs use and this worker takes
        from (at zero when empty), and every queue with tasks or paused."""
        await self._connect()
        return await admin.list_queues(self.backend, self._queue_names(), self.limits)

    def _queue_names(self) -> set[str]:
        return admin.queue_names(self.jobs.values(), self.queues)

    async def purge_queue(self, queue: str = "default") -> int:
        """Delete a queue's pending tasks (running ones finish); returns how many.
        An unknown queue is UnknownQueueError, as for `queues purge`."""
        await self._connect()
        return await admin.purge_queue(self.backend, self._queue_names(), queue)

    async def health_check(self) -> bool:
        """Whether the backend answers (connecting first if needed)."""
        await self._connect()
        return await self.backend.health_check()

    async def cleanup(
        self, older_than: timedelta | float, statuses: list[TaskStatus] | None = None
    ) -> int:
        """Delete finished tasks (and their history) older than `older_than` (seconds
        or a timedelta); `statuses` narrows it to some finished statuses."""
        seconds = older_than.total_seconds() if isinstance(older_than, timedelta) else older_than
        await self._connect()
        return await admin.cleanup(self.backend, time.time() - seconds, statuses)


def _fired_as(name: str, spec: JobSpec) -> str:
    """How log lines name a fire: the job, and the stored schedule when it is one."""
    if name == spec.name:
        return spec.name
    return f"{spec.name} schedule={safe(name)}"


_RETRY_OPTIONS = {
    "max_retries": "max_retries",
    "retry_backoff": "backoff",
    "retry_delay": "delay",
    "retry_max_delay": "max_delay",
}


#: The keywords that set a JobSpec field of the same name.
_SPEC_FIELDS = frozenset(f.name for f in fields(JobSpec))


def _set_option(spec: JobSpec, key: str, value: Any) -> None:
    """One keyword of `@scheduler.job(...)`, named as in the manifest."""
    if key in _RETRY_OPTIONS:
        if key in ("retry_delay", "retry_max_delay"):
            value = parse_duration(value)
        setattr(spec.retry, _RETRY_OPTIONS[key], value)
    elif key in ("timeout", "jitter", "misfire_grace_time"):
        setattr(spec, key, parse_duration(value) if value is not None else None)
    elif key in _SPEC_FIELDS and key not in ("name", "func", "trigger"):
        setattr(spec, key, value)
    else:
        raise UsageError(f"job '{spec.name}': unknown option '{key}'")


def _make_trigger(
    cron: str | None, every: float | str | None, at: str | datetime | None, tz: str
) -> Trigger | None:
    given = [x for x in (cron, every, at) if x is not None]
    if len(given) > 1:
        raise UsageError("give at most one of cron=, every=, at=")
    if cron is not None:
        return CronTrigger(cron, tz)
    if every is not None:
        return IntervalTrigger(parse_duration(every))
    if at is not None:
        return DateTrigger(parse_at(at, tz))
    return None
