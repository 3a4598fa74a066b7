"""QueueBackend: the one interface every backend implements.

The contract (checked by tests/contract for every backend):

- `enqueue(task)` stores a pending task. With `task.key` set, a second
  enqueue while a task with that key is pending or running returns the first
  task's id and `created=False`.
- `enqueue_many(tasks, resume=, progress=)` is all or nothing (memory,
  SQLite, PostgreSQL), or, where one atomic step would hold a shared server too long
  (Redis), stores atomic steps in order and records under `resume` which
  lines are stored, so the same call again stores only the rest. Cancelled,
  it stops sending, waits for what was sent, and raises CancelledError with
  `progress` told exactly what is stored, or returns normally if all of it is.
- `dequeue(max_items, queues=, lease=, worker=)` atomically claims up to
  `max_items` due tasks (scheduled_at <= now) from unpaused queues, highest
  priority first, then earliest scheduled_at, then FIFO. A claimed task is
  `running` with `lease_until = now + lease`; before claiming, tasks whose
  lease expired go back to `pending` (their attempt counts as failed, and a
  task out of retries goes `dead`), so a worker killed with -9 loses nothing
  and a task that keeps killing its worker ends in the dead letters.
- `acknowledge(task)` / `reject(task, requeue=, retry_at=)` finish a run and
  append one history row. They only apply while the caller still owns the
  task (same worker and delivery): a run whose lease expired and was taken
  over, or that was cancelled, cannot overwrite the newer state.
- `release(tasks)` gives tasks back as pending without counting an attempt
  (graceful shutdown).
- `record_fire(job, fire_time, task, max_instances)` is the only way a
  trigger creates work: it advances the job's `last_fire` if and only if
  `fire_time` is later, and in the same atomic step enqueues `task` (unless
  the job already has `max_instances` active tasks). This is what lets any
  number of schedulers share a backend without double fires.

Times are float epoch seconds. Everything else (listing, dead letters,
queues, cleanup) exists so the CLI can work on any backend.
"""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, runtime_checkable

from ..errors import Unsupported
from ..models import FireOutcome, JobState, Process, Run, Task, TaskStatus
from ..schedules import Schedule


@dataclass(slots=True)
class QueueInfo:
    name: str
    pending: int = 0
    running: int = 0
    paused: bool = False
    max_pending: int | None = None  # the queue's limit (backpressure), None: unlimited

    def to_public(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "pending": self.pending,
            "running": self.running,
            "paused": self.paused,
            "max_pending": self.max_pending,
        }


LEASE_EXPIRED_ERROR = "worker lost: lease expired before the task finished"

# What a backend may leave out, as `chronctl` names it in "X does not support Y".
TASK_STATE = "task state (tasks, dlq and status)"
RUN_HISTORY = "run history"
DEAD_LETTERS = "dead letters"
CLEANUP = "cleanup of finished tasks"
QUEUES = "listing or pausing queues"
FIRE_RECORDS = "job state and fire records, which cron, every and at jobs need"
HEARTBEATS = "process heartbeats"
MIGRATION = "receiving a migration"
NOTES = "notes (what the last retention pass did, for status)"
SCHEDULES = "stored schedules (schedules add, jobs reschedule)"
PROCESS_TTL = 86400.0  # a process silent this long is forgotten

T = TypeVar("T")
#: `enqueue_many`'s progress callback: told how many more tasks are stored.
BulkProgress = Callable[[int], None]


class StoppedEarly(Exception):
    """A bulk step loop left off because it was asked to (see `settle`)."""


async def settle(work: Awaitable[T], stop: Callable[[], None]) -> T:
    """Await `work` without letting a cancellation cut a write in half.

    A cancelled `await` on a socket or a database thread does not stop the
    write already on its way: it only stops us learning whether it landed. So
    `work` runs shielded; a cancellation calls `stop()` (no further steps), waits
    for the steps already sent, then re-raises the cancellation if `work` left
    off early (it raises StoppedEarly), or returns its result if it finished.
    """
    future = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError as cancelled:
        stop()
        try:
            result = await asyncio.shield(future)  # a second cancellation stops the wait only
        except StoppedEarly:
            raise cancelled from None
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()  # everything is stored: the cancellation came too late to matter
        return result


@runtime_checkable
class SharedRateLimit(Protocol):
    """A backend whose rate limits every worker on it shares (Redis keeps one window per
    job on the server). A backend declares it by subclassing; the worker checks
    `isinstance` once, and keeps a token bucket per process for backends without it."""

    async def acquire_rate(self, job: str, count: int, per: float) -> float:
        """Seconds until `job` may run again within `count` runs per `per` seconds
        (0.0 = run now). It reserves nothing: a caller told to wait asks again."""
        ...


class QueueBackend(ABC):
    """Base class for a backend; subclass it for a custom store.

    The required core is what `chronctl run` needs to execute enqueued tasks:
    connect, disconnect, health_check, enqueue, dequeue, acknowledge, reject,
    release, get_queue_size and clear. Everything else is an optional capability
    with a default: lease renewal and recovery do nothing, `next_due` says "ask
    again later" (workers poll), and the rest raise `Unsupported`, which the CLI
    prints as one line ("spool:///x does not support dead letters"). A backend
    without fire records runs enqueued tasks only; `run` refuses jobs with a
    trigger on it rather than firing them twice from two schedulers.
    """

    #: False for backends another process cannot reach (memory).
    shared: bool = True
    #: The URL with credentials masked, for logs and errors.
    display_url: str = ""

    @property
    def label(self) -> str:
        """How errors name this backend: its URL, else its class."""
        return self.display_url or type(self).__name__

    def __init__(self) -> None:
        self._wakeup = asyncio.Event()
        #: Set when this process hears that the stored schedules changed (its own
        #: change, or another process's through the backend's wake-up path); the fire
        #: loop then re-reads them at once instead of at its next periodic check.
        self.schedules_changed = asyncio.Event()

    # -- lifecycle ---------------------------------------------------------
    @abstractmethod
    async def connect(self) -> None: ...

    @abstractmethod
    async def disconnect(self) -> None: ...

    async def __aenter__(self) -> QueueBackend:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.disconnect()

    @abstractmethod
    async def health_check(self) -> bool: ...

    # -- the queue ---------------------------------------------------------
    @abstractmethod
    async def enqueue(self, task: Task) -> tuple[str, bool]:
        """Store a pending task; returns (id, created)."""

    async def enqueue_many(
        self,
        tasks: Sequence[Task],
        *,
        resume: str | None = None,
        progress: BulkProgress | None = None,
    ) -> list[tuple[str, bool]]:
        """Store `tasks`; one (id, created) per task, in order.

        All or nothing, or resumable (see the module docstring): `resume` names
        this batch (`enqueue --from` derives it from the file's content) so that
        running it again after an interruption stores only what is missing;
        `progress(n)` hears of every n tasks stored, those an earlier run of the
        same batch stored included. This default stores one task at a time and is
        neither: a backend overrides it (the contract suite checks).
        """
        out = []
        for t in tasks:
            out.append(await self.enqueue(t))
            if progress is not None:
                progress(1)
        return out

    @abstractmethod
    async def dequeue(
        self,
        max_items: int = 1,
        *,
        queues: Sequence[str] | None = None,
        lease: float = 30.0,
        worker: str = "",
    ) -> list[Task]: ...

    @abstractmethod
    async def acknowledge(self, task: Task) -> bool:
        """Mark a running task succeeded (task.result, finished_at set by the caller)."""

    @abstractmethod
    async def reject(self, task: Task, *, requeue: bool, retry_at: float | None = None) -> bool:
        """A failed run: back to pending at `retry_at` with attempt+1, or dead."""

    @abstractmethod
    async def release(self, tasks: Iterable[Task], *, at: float | None = None) -> None:
        """Return claimed tasks to pending without counting a failure; with `at`, not
        claimable before then (a rate-limited task steps aside for other work)."""

    async def extend_leases(self, tasks: Sequence[Task], lease: float) -> set[str]:
        """Renew leases; returns the ids this worker no longer owns (cancelled or taken).
        Default: a backend without leases keeps a claimed task claimed."""
        return set()

    async def recover_expired(self) -> int:
        """Return tasks with expired leases to pending (or dead); how many.
        Default: none (a backend without leases has nothing to recover)."""
        return 0

    async def next_due(self, queues: Sequence[str] | None = None) -> float | None:
        """Earliest scheduled_at among pending tasks of the given unpaused queues (None:
        all; [] : none), so idle workers can sleep until then. A broker backend may leave
        out due tasks it has already published: their delivery wakes `wait_for_work`.
        Default None: idle workers poll every `poll_interval`."""
        return None

    async def wait_for_work(self, timeout: float) -> None:
        """Sleep until new work may be there or `timeout` passes (in-process wakeups)."""
        try:
            await asyncio.wait_for(self._wakeup.wait(), timeout)
        except TimeoutError:
            pass
        self._wakeup.clear()

    def notify(self) -> None:
        self._wakeup.set()

    @abstractmethod
    async def get_queue_size(self, queue: str = "default") -> int:
        """Pending tasks in `queue`."""

    @abstractmethod
    async def clear(self, queue: str | None = None) -> int:
        """Delete pending tasks of one queue (or all queues); how many."""

    # -- state -------------------------------------------------------------
    async def get_task(self, task_id: str) -> Task | None:
        raise Unsupported(self.label, TASK_STATE)

    async def list_tasks(
        self,
        *,
        status: TaskStatus | Sequence[TaskStatus] | None = None,
        job: str | None = None,
        queue: str | None = None,
        limit: int | None = 100,
    ) -> list[Task]:
        """Newest first."""
        raise Unsupported(self.label, TASK_STATE)

    async def cancel_task(self, task_id: str) -> bool:
        """Pending or running -> cancelled; False when already finished or absent."""
        raise Unsupported(self.label, TASK_STATE)

    async def history(self, job: str | None = None, limit: int | None = 50) -> list[Run]:
        """Finished runs, newest first."""
        raise Unsupported(self.label, RUN_HISTORY)

    async def retry_dead(self, task_ids: Sequence[str] | None = None) -> int:
        """Dead tasks (all when None) -> pending, attempt 0; how many."""
        raise Unsupported(self.label, DEAD_LETTERS)

    async def purge_dead(
        self,
        older_than: float | None = None,
        *,
        limit: int | None = None,
        job: str | None = None,
        exclude_jobs: Collection[str] = (),
    ) -> int:
        """Delete dead tasks finished before `older_than` (epoch; None = all); how many.

        With `limit`, one short step (retention runs it in a loop beside live
        traffic): at most `limit` dead tasks, the oldest first. `job` and
        `exclude_jobs` scope it as in `cleanup`.
        """
        raise Unsupported(self.label, DEAD_LETTERS)

    async def cleanup(
        self,
        older_than: float,
        statuses: Sequence[TaskStatus] | None = None,
        *,
        limit: int | None = None,
        job: str | None = None,
        exclude_jobs: Collection[str] = (),
    ) -> int:
        """Delete finished tasks and history rows older than `older_than`; tasks deleted.

        With `limit`, one short step (no long lock, no long script): at most
        `limit` tasks and `limit` history rows, the oldest first, and the result
        is the rows deleted (tasks plus history), so 0 means nothing older is left.

        `job` limits it to that job's rows; `exclude_jobs` leaves those jobs' rows
        alone (per-job retention: a job kept longer or shorter than the default is
        cleaned by its own calls). Either way a step reads only rows of the jobs it
        may delete, through a per-job index: rows of a job kept for a year are never
        re-read by the default's steps, which would otherwise stall behind them.
        With `exclude_jobs`, "oldest first" holds within each job.
        """
        raise Unsupported(self.label, CLEANUP)

    async def count_dead(self) -> int:
        """Dead letters stored (`status`, metrics and `max_dead` ask every minute).

        This default lists them; a backend with an index counts it cheaply.
        """
        return len(await self.list_tasks(status=TaskStatus.DEAD, limit=None))

    # -- notes ---------------------------------------------------------------
    async def get_note(self, name: str) -> str | None:
        """A small text value stored beside the tasks (None when unset), for what one
        process reports to every other: the last retention pass, for `status`."""
        raise Unsupported(self.label, NOTES)

    async def set_note(self, name: str, value: str) -> None:
        """Store a note (replacing it); a few hundred bytes, written about once a minute."""
        raise Unsupported(self.label, NOTES)

    async def cleanup_old_tasks(self, days: float = 7) -> int:
        return await self.cleanup(time.time() - days * 86400)

    async def list_queues(self) -> list[QueueInfo]:
        raise Unsupported(self.label, QUEUES)

    async def set_queue_paused(self, queue: str, paused: bool) -> None:
        raise Unsupported(self.label, QUEUES)

    # -- job state ---------------------------------------------------------
    async def job_state(self, job: str, now: float) -> JobState:
        """The job's state, created with first_seen=now when absent."""
        raise Unsupported(self.label, FIRE_RECORDS)

    async def list_job_states(self) -> list[JobState]:
        raise Unsupported(self.label, FIRE_RECORDS)

    async def set_job_paused(self, job: str, paused: bool) -> None:
        raise Unsupported(self.label, FIRE_RECORDS)

    async def record_fire(
        self, job: str, fire_time: float, task: Task | None, max_instances: int | None
    ) -> FireOutcome:
        """Atomically: advance last_fire to fire_time if later, then enqueue `task`.

        `task=None` records a missed fire. A paused job, or one with
        `max_instances` active tasks, has the fire recorded but not enqueued.
        """
        raise Unsupported(self.label, FIRE_RECORDS)

    # -- stored schedules (chronctl/schedules.py) ----------------------------------
    async def list_schedules(self) -> list[Schedule]:
        """Every stored schedule and trigger override, by name."""
        raise Unsupported(self.label, SCHEDULES)

    async def get_schedule(self, name: str) -> Schedule | None:
        raise Unsupported(self.label, SCHEDULES)

    async def put_schedule(self, schedule: Schedule, *, create: bool) -> bool:
        """Store a schedule in one atomic step and bump `schedules_version`.

        `create=True` stores it only if no schedule has its name (False when one
        has: two concurrent adds of one name store one); `create=False` replaces
        a stored one only (False when none has the name: an edit racing a remove
        does not bring the schedule back). Other processes hear of the change
        through the backend's wake-up path where it has one (`schedules_changed`).
        """
        raise Unsupported(self.label, SCHEDULES)

    async def delete_schedule(self, name: str) -> bool:
        """Remove a stored schedule (False when absent) and bump `schedules_version`."""
        raise Unsupported(self.label, SCHEDULES)

    async def schedules_version(self) -> int:
        """A number that changes with every put or delete (0 before any): a running
        scheduler reads it about once a second and re-reads the schedules when it moved,
        so a lost notification delays a change by a second at most."""
        raise Unsupported(self.label, SCHEDULES)

    # -- processes (heartbeats for `status`) -------------------------------------
    async def beat(self, process: Process) -> None:
        """Record that `process` is alive now (insert or update by id); forget ones
        silent for a day, so crashed processes do not pile up."""
        raise Unsupported(self.label, HEARTBEATS)

    async def list_processes(self) -> list[Process]:
        """Every process heard from in the last day, oldest first."""
        raise Unsupported(self.label, HEARTBEATS)

    async def forget_process(self, process_id: str) -> None:
        """A clean stop removes its row at once."""
        raise Unsupported(self.label, HEARTBEATS)

    # -- migration target ----------------------------------------------------
    async def import_tasks(self, tasks: Sequence[Task]) -> int:
        """Store tasks exactly as given (status, attempt, id kept); ids already here are
        skipped. One atomic step per call. Returns how many were added."""
        raise Unsupported(self.label, MIGRATION)

    async def import_runs(self, runs: Sequence[Run]) -> int:
        """Append history rows not already here (same task, attempt and finish time)."""
        raise Unsupported(self.label, MIGRATION)

    async def import_job_states(self, states: Sequence[JobState]) -> int:
        """Merge job state: earliest first_seen, latest last_fire, paused if either is."""
        raise Unsupported(self.label, MIGRATION)

    async def count_active(self, job: str) -> int:
        tasks = await self.list_tasks(
            status=[TaskStatus.PENDING, TaskStatus.RUNNING], job=job, limit=None
        )
        return len(tasks)

    # -- read-only looks -------------------------------------------------------
    def not_created(self) -> bool:
        """Whether opening this backend would create its store (a SQLite file not there
        yet). `validate` and `jobs next` read job state best effort and must not leave a
        new file behind: a store that does not exist holds no state, so they skip it."""
        return False


class BrokerStateStore(QueueBackend):
    """A backend that can keep the state of a message broker's tasks (SQLite, Redis,
    PostgreSQL).

    A broker backend (`RabbitMQBackend`) stores every task here and only publishes
    "task X is due" messages. Publishing is two steps, stamp then confirm, so a
    publisher that dies in between loses nothing: a stamp left unconfirmed for
    `stale` seconds makes the task publishable again (a rare duplicate message is
    dropped at delivery, since the task is no longer pending then). A delivered
    message is turned back into a running task by `claim_ids`.
    """

    async def prepare_for_broker(self) -> None:
        """Called by the broker backend after every `connect`, before any method below:
        start tracking what is unpublished (Redis indexes the tasks already stored, once
        per key prefix). Idempotent. The default needs nothing (SQLite has the columns)."""

    @abstractmethod
    async def claim_for_publish(
        self, now: float, limit: int = 500, *, ids: Sequence[str] | None = None, stale: float = 30.0
    ) -> list[Task]:
        """Atomically stamp up to `limit` tasks as being published, and return them.

        The tasks: pending, `scheduled_at <= now`, publish not confirmed, and either
        never stamped or stamped before `now - stale`; with `ids`, only those ids (an
        empty `ids` claims nothing). Returned by priority (highest first), then
        scheduled_at, then enqueue order. Two callers never get the same task."""

    @abstractmethod
    async def confirm_published(self, ids: Sequence[str]) -> None:
        """The broker confirmed these stamped tasks' messages: they are not published
        again (until `unpublish`, or a retry or release makes them pending anew)."""

    @abstractmethod
    async def unpublish(self, ids: Sequence[str]) -> None:
        """Publishing these failed: clear their stamp, so the next `claim_for_publish`
        takes them at once rather than after `stale` seconds."""

    @abstractmethod
    async def next_publish(
        self, queues: Sequence[str] | None = None, stale: float = 30.0
    ) -> float | None:
        """When `claim_for_publish` next has work among pending, unconfirmed tasks of
        these unpaused queues (None: all; []: none): the earliest scheduled_at of an
        unstamped task, or stamp + `stale` of a stamped one (not before its
        scheduled_at). None when there is nothing to publish."""

    @abstractmethod
    async def claim_ids(
        self,
        ids: Sequence[str],
        *,
        lease: float,
        worker: str,
        lost: Iterable[str] = (),
        lost_error: str = LEASE_EXPIRED_ERROR,
    ) -> tuple[list[Task], list[str]]:
        """Claim the tasks a broker delivered for `worker`, in one atomic step.

        A due pending task becomes running as `dequeue` would make it (lease,
        worker, deliveries + 1). A task in `lost` (its message was redelivered
        because the consumer holding it died) that is still running counts a failed
        attempt with `lost_error` (one history row) and is taken over, or goes dead
        when out of retries. Returns (claimed tasks by priority, then scheduled_at,
        then enqueue order; ids that went dead). Other ids (finished, cancelled,
        absent, not due, running elsewhere) are in neither: their messages are
        dropped."""
