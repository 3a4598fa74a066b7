"""QueueBackend: the one interface every backend implements.

The contract (checked by tests/contract for every backend):

- `enqueue(task)` stores a pending task. With `task.key` set, a second
  enqueue while a task with that key is pending or running returns the first
  task's id and `created=False`.
- `enqueue_many(tasks, resume=, progress=)` is all or nothing (memory,
  SQLite), or, where one atomic step would hold a shared server too long
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
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from ..errors import BackendError
from ..models import FireOutcome, JobState, Process, Run, Task, TaskStatus


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


class QueueBackend(ABC):
    """Base class for a backend; subclass it for a custom store."""

    #: False for backends another process cannot reach (memory).
    shared: bool = True
    #: The URL with credentials masked, for logs and errors.
    display_url: str = ""

    def __init__(self) -> None:
        self._wakeup = asyncio.Event()

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

    @abstractmethod
    async def extend_leases(self, tasks: Sequence[Task], lease: float) -> set[str]:
        """Renew leases; returns the ids this worker no longer owns (cancelled or taken)."""

    @abstractmethod
    async def recover_expired(self) -> int:
        """Return tasks with expired leases to pending (or dead); how many."""

    @abstractmethod
    async def next_due(self, queues: Sequence[str] | None = None) -> float | None:
        """Earliest scheduled_at among pending tasks of the given unpaused queues (None:
        all; [] : none), so idle workers can sleep until then. A broker backend may leave
        out due tasks it has already published: their delivery wakes `wait_for_work`."""

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
    @abstractmethod
    async def get_task(self, task_id: str) -> Task | None: ...

    @abstractmethod
    async def list_tasks(
        self,
        *,
        status: TaskStatus | Sequence[TaskStatus] | None = None,
        job: str | None = None,
        queue: str | None = None,
        limit: int | None = 100,
    ) -> list[Task]:
        """Newest first."""

    @abstractmethod
    async def cancel_task(self, task_id: str) -> bool:
        """Pending or running -> cancelled; False when already finished or absent."""

    @abstractmethod
    async def history(self, job: str | None = None, limit: int | None = 50) -> list[Run]:
        """Finished runs, newest first."""

    @abstractmethod
    async def retry_dead(self, task_ids: Sequence[str] | None = None) -> int:
        """Dead tasks (all when None) -> pending, attempt 0; how many."""

    @abstractmethod
    async def purge_dead(self, older_than: float | None = None, *, limit: int | None = None) -> int:
        """Delete dead tasks finished before `older_than` (epoch; None = all); how many.

        With `limit`, one short step (retention runs it in a loop beside live
        traffic): at most `limit` dead tasks, the oldest first.
        """

    @abstractmethod
    async def cleanup(
        self,
        older_than: float,
        statuses: Sequence[TaskStatus] | None = None,
        *,
        limit: int | None = None,
    ) -> int:
        """Delete finished tasks and history rows older than `older_than`; tasks deleted.

        With `limit`, one short step (no long lock, no long script): at most
        `limit` tasks and `limit` history rows, the oldest first, and the result
        is the rows deleted (tasks plus history), so 0 means nothing older is left.
        """

    async def count_dead(self) -> int:
        """Dead letters stored (`status`, metrics and `max_dead` ask every minute).

        This default lists them; a backend with an index counts it cheaply.
        """
        return len(await self.list_tasks(status=TaskStatus.DEAD, limit=None))

    # -- notes ---------------------------------------------------------------
    @abstractmethod
    async def get_note(self, name: str) -> str | None:
        """A small text value stored beside the tasks (None when unset), for what one
        process reports to every other: the last retention pass, for `status`."""

    @abstractmethod
    async def set_note(self, name: str, value: str) -> None:
        """Store a note (replacing it); a few hundred bytes, written about once a minute."""

    async def cleanup_old_tasks(self, days: float = 7) -> int:
        import time

        return await self.cleanup(time.time() - days * 86400)

    @abstractmethod
    async def list_queues(self) -> list[QueueInfo]: ...

    @abstractmethod
    async def set_queue_paused(self, queue: str, paused: bool) -> None: ...

    # -- job state ---------------------------------------------------------
    @abstractmethod
    async def job_state(self, job: str, now: float) -> JobState:
        """The job's state, created with first_seen=now when absent."""

    @abstractmethod
    async def list_job_states(self) -> list[JobState]: ...

    @abstractmethod
    async def set_job_paused(self, job: str, paused: bool) -> None: ...

    @abstractmethod
    async def record_fire(
        self, job: str, fire_time: float, task: Task | None, max_instances: int | None
    ) -> FireOutcome:
        """Atomically: advance last_fire to fire_time if later, then enqueue `task`.

        `task=None` records a missed fire. A paused job, or one with
        `max_instances` active tasks, has the fire recorded but not enqueued.
        """

    # -- processes (heartbeats for `status`) -------------------------------------
    @abstractmethod
    async def beat(self, process: Process) -> None:
        """Record that `process` is alive now (insert or update by id); forget ones
        silent for a day, so crashed processes do not pile up."""

    @abstractmethod
    async def list_processes(self) -> list[Process]:
        """Every process heard from in the last day, oldest first."""

    @abstractmethod
    async def forget_process(self, process_id: str) -> None:
        """A clean stop removes its row at once."""

    # -- migration target ----------------------------------------------------
    async def import_tasks(self, tasks: Sequence[Task]) -> int:
        """Store tasks exactly as given (status, attempt, id kept); ids already here are
        skipped. One atomic step per call. Returns how many were added."""
        raise BackendError(f"{self.display_url or type(self).__name__} cannot receive a migration")

    async def import_runs(self, runs: Sequence[Run]) -> int:
        """Append history rows not already here (same task, attempt and finish time)."""
        raise BackendError(f"{self.display_url or type(self).__name__} cannot receive a migration")

    async def import_job_states(self, states: Sequence[JobState]) -> int:
        """Merge job state: earliest first_seen, latest last_fire, paused if either is."""
        raise BackendError(f"{self.display_url or type(self).__name__} cannot receive a migration")

    async def count_active(self, job: str) -> int:
        tasks = await self.list_tasks(
            status=[TaskStatus.PENDING, TaskStatus.RUNNING], job=job, limit=None
        )
        return len(tasks)
