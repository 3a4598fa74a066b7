"""In-process backend: fast, nothing survives a restart, unreachable from the CLI.

Pending tasks live in two heaps: `_scheduled` ordered by time (not yet due)
and one `_ready` heap per queue ordered by (priority desc, time, FIFO). A
dequeue moves what has come due from the first to the second (a task already
due when stored goes straight to the second), so a far-future high-priority
task never blocks a due one. Heap entries are invalidated
lazily: each push gets a sequence number and only the task's latest one
counts.

Bounded: at most `max_finished` succeeded or cancelled tasks and as many
history rows are kept (the oldest go first, on the spot), so a long-lived
library process stays flat without a retention pass; dead letters are kept
until the scheduler's retention (`keep_dead`, `max_dead`) or `dlq purge`.
"""

from __future__ import annotations

import copy
import heapq
import itertools
import time
from collections import Counter, deque
from collections.abc import Collection, Iterable, Sequence

from ..models import (
    ACTIVE,
    FINISHED,
    FireOutcome,
    JobState,
    Process,
    Run,
    Task,
    TaskStatus,
    copy_task,
)
from ..schedules import Schedule
from .base import LEASE_EXPIRED_ERROR, PROCESS_TTL, BulkProgress, QueueBackend, QueueInfo

#: Finished tasks and history rows a MemoryBackend keeps by default.
MAX_FINISHED = 10_000


class MemoryBackend(QueueBackend):
    shared = False

    def __init__(self, *, max_finished: int | None = MAX_FINISHED) -> None:
        """`max_finished`: succeeded/cancelled tasks and history rows kept, the newest
        (None: all, which grows for as long as the process lives)."""
        super().__init__()
        self.max_finished = max_finished
        # Finished (succeeded/cancelled) task ids, oldest first; may hold ids deleted since.
        self._finished: deque[str] = deque()
        self._notes: dict[str, str] = {}
        self.display_url = "memory://"
        self._tasks: dict[str, Task] = {}
        self._keys: dict[str, str] = {}
        self._seq = itertools.count()
        self._current: dict[str, int] = {}
        self._scheduled: list[tuple[float, int, str]] = []
        self._ready: dict[str, list[tuple[int, float, int, str]]] = {}
        self._running: dict[str, Task] = {}
        self._runs: deque[Run] = deque(maxlen=max_finished)
        self._jobs: dict[str, JobState] = {}
        self._paused: set[str] = set()
        self._active_by_job: Counter[str] = Counter()
        self._queues: Counter[str] = Counter()  # pending per queue
        self._connected = False
        self._processes: dict[str, Process] = {}
        self._schedules: dict[str, str] = {}  # name -> record JSON (a copy, as stored elsewhere)
        self._schedules_version = 0

    async def connect(self) -> None:
        self._connected = True

    async def disconnect(self) -> None:
        self._connected = False

    async def health_check(self) -> bool:
        return True

    # -- internals ---------------------------------------------------------
    def _push(self, task: Task) -> None:
        seq = next(self._seq)
        self._current[task.id] = seq
        if task.scheduled_at <= time.time():
            # Already due: straight to its ready heap, so a backlog of a million due
            # tasks is not moved heap to heap by the first dequeue.
            heapq.heappush(
                self._ready.setdefault(task.queue, []),
                (-task.priority, task.scheduled_at, seq, task.id),
            )
        else:
            heapq.heappush(self._scheduled, (task.scheduled_at, seq, task.id))
        self._queues[task.queue] += 1

    def _valid(self, seq: int, task_id: str) -> Task | None:
        if self._current.get(task_id) != seq:
            return None
        task = self._tasks.get(task_id)
        if task is None or task.status is not TaskStatus.PENDING:
            return None
        return task

    def _leave_pending(self, task: Task) -> None:
        self._current.pop(task.id, None)
        self._queues[task.queue] -= 1

    def _finish(self, task: Task, status: TaskStatus) -> None:
        """Move an active task to a finished status, keeping counters right."""
        if task.status is TaskStatus.PENDING:
            self._leave_pending(task)
        self._running.pop(task.id, None)
        task.status = status
        task.lease_until = None
        self._active_by_job[task.job] -= 1
        if task.key is not None and self._keys.get(task.key) == task.id:
            del self._keys[task.key]
        if status is not TaskStatus.DEAD and self.max_finished is not None:
            self._finished.append(task.id)
            while len(self._finished) > self.max_finished:
                self._forget_finished(self._finished.popleft())

    def _forget_finished(self, task_id: str) -> None:
        task = self._tasks.get(task_id)
        if task is not None and task.status in (TaskStatus.SUCCEEDED, TaskStatus.CANCELLED):
            del self._tasks[task_id]

    def _owned(self, task: Task) -> Task | None:
        stored = self._running.get(task.id)
        if stored is None or stored.worker != task.worker or stored.deliveries != task.deliveries:
            return None
        return stored

    def _store(self, task: Task) -> tuple[str, bool]:
        if task.key is not None:
            existing = self._keys.get(task.key)
            if existing is not None:
                return existing, False
            self._keys[task.key] = task.id
        task = copy_task(task)
        task.status = TaskStatus.PENDING
        self._tasks[task.id] = task
        self._active_by_job[task.job] += 1
        self._push(task)
        return task.id, True

    # -- the queue ---------------------------------------------------------
    async def enqueue(self, task: Task) -> tuple[str, bool]:
        out = self._store(task)
        self.notify()
        return out

    async def enqueue_many(
        self,
        tasks: Sequence[Task],
        *,
        resume: str | None = None,
        progress: BulkProgress | None = None,
    ) -> list[tuple[str, bool]]:
        """All or nothing: no await between the first task and the last, so nothing
        can interrupt the batch halfway (`resume` has nothing to resume)."""
        out = [self._store(t) for t in tasks]
        self.notify()
        if progress is not None:
            progress(len(tasks))
        return out

    async def dequeue(
        self,
        max_items: int = 1,
        *,
        queues: Sequence[str] | None = None,
        lease: float = 30.0,
        worker: str = "",
    ) -> list[Task]:
        now = time.time()
        if self._running:
            self._recover(now)
        scheduled = self._scheduled
        while scheduled and scheduled[0][0] <= now:
            at, seq, task_id = heapq.heappop(scheduled)
            task = self._valid(seq, task_id)
            if task is not None:
                heap = self._ready.setdefault(task.queue, [])
                heapq.heappush(heap, (-task.priority, at, seq, task_id))
        names = [
            q
            for q in (queues if queues is not None else list(self._ready))
            if q not in self._paused and self._ready.get(q)
        ]
        claimed: list[Task] = []
        while len(claimed) < max_items and names:
            best = min(names, key=lambda q: self._ready[q][0]) if len(names) > 1 else names[0]
            heap = self._ready[best]
            _, _, seq, task_id = heapq.heappop(heap)
            if not heap:
                names.remove(best)
            task = self._valid(seq, task_id)
            if task is None:
                continue
            self._leave_pending(task)
            task.status = TaskStatus.RUNNING
            task.started_at = now
            task.lease_until = now + lease
            task.worker = worker
            task.deliveries += 1
            self._running[task.id] = task
            claimed.append(copy_task(task))
        return claimed

    def _recover(self, now: float) -> int:
        expired = [t for t in self._running.values() if t.lease_until and t.lease_until <= now]
        for task in expired:
            del self._running[task.id]
            task.finished_at = now
            task.error = LEASE_EXPIRED_ERROR
            task.traceback = None
            self._runs.append(Run.of(task, TaskStatus.FAILED))
            task.attempt += 1
            task.lease_until = None
            if task.attempt > task.max_retries:
                task.status = TaskStatus.RUNNING  # _finish expects an active task
                self._finish(task, TaskStatus.DEAD)
            else:
                task.status = TaskStatus.PENDING
                task.scheduled_at = now
                self._push(task)
        return len(expired)

    async def recover_expired(self) -> int:
        return self._recover(time.time())

    async def acknowledge(self, task: Task) -> bool:
        stored = self._owned(task)
        if stored is None:
            return False
        stored.result = task.result
        stored.output = task.output
        stored.error = None
        stored.traceback = None
        stored.finished_at = task.finished_at or time.time()
        self._finish(stored, TaskStatus.SUCCEEDED)
        self._runs.append(Run.of(stored, TaskStatus.SUCCEEDED))
        return True

    async def reject(self, task: Task, *, requeue: bool, retry_at: float | None = None) -> bool:
        stored = self._owned(task)
        if stored is None:
            return False
        stored.error = task.error
        stored.traceback = task.traceback
        stored.output = task.output
        stored.finished_at = task.finished_at or time.time()
        self._runs.append(Run.of(stored, TaskStatus.FAILED))
        stored.attempt += 1
        if requeue:
            del self._running[stored.id]
            stored.status = TaskStatus.PENDING
            stored.lease_until = None
            stored.scheduled_at = retry_at if retry_at is not None else time.time()
            self._push(stored)
            self.notify()
        else:
            self._finish(stored, TaskStatus.DEAD)
        return True

    async def release(self, tasks: Iterable[Task], *, at: float | None = None) -> None:
        for task in tasks:
            stored = self._owned(task)
            if stored is None:
                continue
            del self._running[stored.id]
            stored.status = TaskStatus.PENDING
            stored.lease_until = None
            stored.started_at = None
            if at is not None:
                stored.scheduled_at = at
            self._push(stored)
        self.notify()

    async def extend_leases(self, tasks: Sequence[Task], lease: float) -> set[str]:
        lost: set[str] = set()
        until = time.time() + lease
        for task in tasks:
            stored = self._owned(task)
            if stored is None:
                lost.add(task.id)
            else:
                stored.lease_until = until
        return lost

    async def next_due(self, queues: Sequence[str] | None = None) -> float | None:
        if queues is not None and not queues:
            return None
        while self._scheduled and self._valid(self._scheduled[0][1], self._scheduled[0][2]) is None:
            heapq.heappop(self._scheduled)
        if queues is None and not self._paused:
            best = self._scheduled[0][0] if self._scheduled else None
        else:  # a filter or a paused queue: look past the top (rare: a worker per queue)
            best = None
            for at, seq, task_id in self._scheduled:
                task = self._valid(seq, task_id)
                if (
                    task is not None
                    and (queues is None or task.queue in queues)
                    and task.queue not in self._paused
                    and (best is None or at < best)
                ):
                    best = at
        for name, heap in self._ready.items():
            if heap and (queues is None or name in queues) and name not in self._paused:
                best = min(best, heap[0][1]) if best is not None else heap[0][1]
        return best

    async def get_queue_size(self, queue: str = "default") -> int:
        return self._queues[queue]

    async def clear(self, queue: str | None = None) -> int:
        doomed = [
            t
            for t in self._tasks.values()
            if t.status is TaskStatus.PENDING and (queue is None or t.queue == queue)
        ]
        for task in doomed:
            self._finish(task, TaskStatus.CANCELLED)
            del self._tasks[task.id]
        return len(doomed)

    # -- state -------------------------------------------------------------
    async def get_task(self, task_id: str) -> Task | None:
        task = self._tasks.get(task_id)
        return copy_task(task) if task else None

    async def list_tasks(
        self,
        *,
        status: TaskStatus | Sequence[TaskStatus] | None = None,
        job: str | None = None,
        queue: str | None = None,
        limit: int | None = 100,
    ) -> list[Task]:
        statuses = (
            {status} if isinstance(status, TaskStatus | str) else (set(status) if status else None)
        )
        out = []
        for task in reversed(self._tasks.values()):
            if statuses and task.status not in statuses:
                continue
            if (job and task.job != job) or (queue and task.queue != queue):
                continue
            out.append(copy_task(task))
            if limit is not None and len(out) >= limit:
                break
        return out

    async def cancel_task(self, task_id: str) -> bool:
        task = self._tasks.get(task_id)
        if task is None or task.status not in ACTIVE:
            return False
        task.finished_at = time.time()
        self._finish(task, TaskStatus.CANCELLED)
        return True

    async def history(self, job: str | None = None, limit: int | None = 50) -> list[Run]:
        out = []
        for run in reversed(self._runs):
            if job and run.job != job:
                continue
            out.append(run)
            if limit is not None and len(out) >= limit:
                break
        return out

    async def retry_dead(self, task_ids: Sequence[str] | None = None) -> int:
        ids = (
            task_ids
            if task_ids is not None
            else [t.id for t in self._tasks.values() if t.status is TaskStatus.DEAD]
        )
        count = 0
        for task_id in ids:
            task = self._tasks.get(task_id)
            if task is None or task.status is not TaskStatus.DEAD:
                continue
            task.status = TaskStatus.PENDING
            task.attempt = 0
            task.scheduled_at = time.time()
            task.finished_at = None
            task.started_at = None
            self._active_by_job[task.job] += 1
            self._push(task)
            count += 1
        self.notify()
        return count

    async def purge_dead(
        self,
        older_than: float | None = None,
        *,
        limit: int | None = None,
        job: str | None = None,
        exclude_jobs: Collection[str] = (),
    ) -> int:
        dead = [
            t
            for t in self._tasks.values()
            if t.status is TaskStatus.DEAD
            and (older_than is None or (t.finished_at or 0) < older_than)
            and _in_scope(t.job, job, exclude_jobs)
        ]
        if limit is not None:
            dead = heapq.nsmallest(limit, dead, key=lambda t: t.finished_at or t.created_at)
        for task in dead:
            del self._tasks[task.id]
        return len(dead)

    async def cleanup(
        self,
        older_than: float,
        statuses: Sequence[TaskStatus] | None = None,
        *,
        limit: int | None = None,
        job: str | None = None,
        exclude_jobs: Collection[str] = (),
    ) -> int:
        wanted = set(statuses) if statuses else set(FINISHED)
        doomed: list[str] = []
        for t in self._tasks.values():  # oldest first: tasks are stored in creation order
            if limit is not None and (len(doomed) >= limit or t.created_at >= older_than):
                break
            if (
                t.status in wanted
                and (t.finished_at or t.created_at) < older_than
                and _in_scope(t.job, job, exclude_jobs)
            ):
                doomed.append(t.id)
        for task_id in doomed:
            del self._tasks[task_id]
        old = [  # runs: oldest first
            r
            for r in self._runs
            if r.finished_at < older_than and _in_scope(r.job, job, exclude_jobs)
        ]
        runs = [r for r in old if self._run_matches(r, wanted)][:limit]
        if runs:
            gone = {id(r) for r in runs}
            self._runs = deque((r for r in self._runs if id(r) not in gone), self._runs.maxlen)
        return len(doomed) if limit is None else len(doomed) + len(runs)

    async def count_dead(self) -> int:
        return sum(1 for t in self._tasks.values() if t.status is TaskStatus.DEAD)

    async def get_note(self, name: str) -> str | None:
        return self._notes.get(name)

    async def set_note(self, name: str, value: str) -> None:
        self._notes[name] = value

    @staticmethod
    def _run_matches(run: Run, wanted: set[TaskStatus]) -> bool:
        status = TaskStatus(run.status)
        return status in wanted or (status is TaskStatus.FAILED and TaskStatus.DEAD in wanted)

    async def list_queues(self) -> list[QueueInfo]:
        running: Counter[str] = Counter(t.queue for t in self._running.values())
        names = {q for q, n in self._queues.items() if n > 0} | set(running) | self._paused
        return [QueueInfo(q, self._queues[q], running[q], q in self._paused) for q in sorted(names)]

    async def set_queue_paused(self, queue: str, paused: bool) -> None:
        if paused:
            self._paused.add(queue)
        else:
            self._paused.discard(queue)
            self.notify()

    # -- job state ---------------------------------------------------------
    async def job_state(self, job: str, now: float) -> JobState:
        state = self._jobs.get(job)
        if state is None:
            state = self._jobs[job] = JobState(job, first_seen=now)
        return copy.copy(state)

    async def list_job_states(self) -> list[JobState]:
        return [copy.copy(s) for s in self._jobs.values()]

    async def set_job_paused(self, job: str, paused: bool) -> None:
        state = self._jobs.get(job) or JobState(job, first_seen=time.time())
        state.paused = paused
        self._jobs[job] = state

    async def record_fire(
        self, job: str, fire_time: float, task: Task | None, max_instances: int | None
    ) -> FireOutcome:
        state = self._jobs.get(job) or JobState(job, first_seen=fire_time)
        self._jobs[job] = state
        if state.last_fire is not None and fire_time <= state.last_fire:
            return FireOutcome.DUPLICATE
        state.last_fire = fire_time
        if task is None:
            return FireOutcome.MISSED
        if state.paused:
            return FireOutcome.PAUSED
        if max_instances is not None and self._active_by_job[job] >= max_instances:
            return FireOutcome.SKIPPED
        await self.enqueue(task)
        return FireOutcome.ENQUEUED

    # -- stored schedules --------------------------------------------------------
    async def list_schedules(self) -> list[Schedule]:
        return [Schedule.loads(self._schedules[n]) for n in sorted(self._schedules)]

    async def get_schedule(self, name: str) -> Schedule | None:
        text = self._schedules.get(name)
        return None if text is None else Schedule.loads(text)

    async def put_schedule(self, schedule: Schedule, *, create: bool) -> bool:
        if (schedule.name in self._schedules) is create:
            return False
        self._schedules[schedule.name] = schedule.dumps()
        self._schedules_changed()
        return True

    async def delete_schedule(self, name: str) -> bool:
        if self._schedules.pop(name, None) is None:
            return False
        self._schedules_changed()
        return True

    async def schedules_version(self) -> int:
        return self._schedules_version

    def _schedules_changed(self) -> None:
        self._schedules_version += 1
        self.schedules_changed.set()

    # -- processes ---------------------------------------------------------------
    async def beat(self, process: Process) -> None:
        self._processes[process.id] = copy.copy(process)
        cutoff = process.last_beat - PROCESS_TTL
        for pid in [k for k, p in self._processes.items() if p.last_beat < cutoff]:
            del self._processes[pid]

    async def list_processes(self) -> list[Process]:
        return sorted((copy.copy(p) for p in self._processes.values()), key=lambda p: p.started)

    async def forget_process(self, process_id: str) -> None:
        self._processes.pop(process_id, None)

    # -- migration target ----------------------------------------------------
    async def import_tasks(self, tasks: Sequence[Task]) -> int:
        added = 0
        for task in tasks:
            if task.id in self._tasks:
                continue
            if task.status in ACTIVE:
                if task.key is not None and task.key in self._keys:
                    continue
                kept = copy.copy(task)
                self._store(kept)  # pending, indexed and counted like any new task
                stored = self._tasks[kept.id]
                stored.lease_until = None
                stored.worker = None
            else:
                self._tasks[task.id] = copy.copy(task)
            added += 1
        self.notify()
        return added

    async def import_runs(self, runs: Sequence[Run]) -> int:
        seen = {(r.task_id, r.attempt, r.finished_at) for r in self._runs}
        added = 0
        for run in runs:
            if (run.task_id, run.attempt, run.finished_at) not in seen:
                self._runs.append(copy.copy(run))
                added += 1
        return added

    async def import_job_states(self, states: Sequence[JobState]) -> int:
        for state in states:
            mine = self._jobs.get(state.name)
            if mine is None:
                self._jobs[state.name] = copy.copy(state)
                continue
            mine.first_seen = min(mine.first_seen, state.first_seen)
            fires = [f for f in (mine.last_fire, state.last_fire) if f is not None]
            mine.last_fire = max(fires) if fires else None
            mine.paused = mine.paused or state.paused
        return len(states)

    async def count_active(self, job: str) -> int:
        return self._active_by_job[job]


def _in_scope(name: str, job: str | None, exclude_jobs: Collection[str]) -> bool:
    """Whether a row of job `name` is one a job-scoped cleanup may delete."""
    return (job is None or name == job) and name not in exclude_jobs
