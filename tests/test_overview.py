"""The snapshot `chronctl top` draws (chronctl/overview.py), on the memory backend:
what each panel holds, that no read is unbounded, and how throughput is counted
from successive history windows."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Sequence

from chronctl.backends.base import HEARTBEATS, RUN_HISTORY
from chronctl.backends.memory import MemoryBackend
from chronctl.errors import Unsupported
from chronctl.jobs import JobSpec
from chronctl.models import Process, Run, Task, TaskStatus
from chronctl.overview import (
    BUCKET,
    BUCKETS,
    FAILURE_LIMIT,
    HISTORY_WINDOW,
    RUNNING_LIMIT,
    Throughput,
    read_overview,
)
from chronctl.triggers import IntervalTrigger


class Recording(MemoryBackend):
    """A memory backend that remembers the limits it was asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.limits: list[tuple[str, int | None]] = []

    async def list_tasks(
        self,
        *,
        status: TaskStatus | Sequence[TaskStatus] | None = None,
        job: str | None = None,
        queue: str | None = None,
        limit: int | None = 100,
    ) -> list[Task]:
        self.limits.append(("list_tasks", limit))
        return await super().list_tasks(status=status, job=job, queue=queue, limit=limit)

    async def history(self, job: str | None = None, limit: int | None = 50) -> list[Run]:
        self.limits.append(("history", limit))
        return await super().history(job, limit)


class NoHeartbeats(MemoryBackend):
    async def list_processes(self) -> list[Process]:
        raise Unsupported(self.label, HEARTBEATS)


async def _finish(backend: MemoryBackend, worker: str, fail: str | None = None) -> Task:
    [task] = await backend.dequeue(1, worker=worker)
    task.finished_at = time.time()
    if fail is None:
        await backend.acknowledge(task)
    else:
        task.error = fail
        await backend.reject(task, requeue=False)
    return task


async def test_a_snapshot_shows_every_panel() -> None:
    backend = Recording()
    await backend.connect()
    me = f"{socket.gethostname()}:{os.getpid()}:abc"
    now = time.time()
    await backend.beat(Process(me, socket.gethostname(), os.getpid(), "all", now - 5, now))
    jobs = {
        "tick": JobSpec("tick", func=print, trigger=IntervalTrigger(3600.0, anchor=now)),
        "slow": JobSpec("slow", func=print, timeout=60.0),
        "fail": JobSpec("fail", func=print),
    }
    await backend.enqueue(Task("fail", max_retries=0))
    dead = await _finish(backend, me, fail="RuntimeError: \x1b[2J<script>")
    await backend.enqueue(Task("tick"))
    await _finish(backend, me)
    await backend.enqueue(Task("slow"))
    [running] = await backend.dequeue(1, worker=me)
    await backend.set_queue_paused("held", True)
    await backend.enqueue(Task("echo", queue="held"))

    snapshot = await read_overview(backend, jobs=jobs, known_queues=["mail"])

    queues = {q.info.name: q for q in snapshot.queues}
    assert sorted(queues) == ["default", "held", "mail"]
    assert (queues["held"].info.pending, queues["held"].info.paused) == (1, True)
    assert (queues["default"].info.running, queues["default"].rate) == (1, 2)
    assert sum(queues["default"].series) == 2 and len(queues["default"].series) == BUCKETS
    assert snapshot.running_total == 1
    [run] = snapshot.running
    assert (run.task.id, run.timeout) == (running.id, 60.0)
    assert run.elapsed is not None and 0 <= run.elapsed < 30
    [process] = snapshot.processes
    assert (process.state, process.tasks_running) == ("alive", 1)
    [failure] = snapshot.failures
    assert (failure.task_id, failure.status) == (dead.id, "dead")
    assert failure.error == "RuntimeError: \x1b[2J<script>"
    assert snapshot.dead == 1
    # The soonest fire first, then enqueue-only jobs by name; last results from history.
    assert [(j.name, j.last_status) for j in snapshot.jobs] == [
        ("tick", "succeeded"),
        ("fail", "failed"),
        ("slow", None),
    ]
    assert snapshot.jobs[0].next_fire is not None
    assert snapshot.unsupported == []
    public = snapshot.to_public()
    assert set(public) == {
        "at",
        "backend",
        "processes",
        "queues",
        "throughput",
        "jobs",
        "jobs_total",
        "running",
        "running_total",
        "failures",
        "dead",
        "unsupported",
    }
    assert public["processes"][0]["tasks_running"] == 1
    assert public["queues"][0]["name"] == "default"
    assert public["queues"][0]["finished_last_minute"] == 2
    # Every read is bounded: no call asks for all tasks or all history.
    assert backend.limits and all(limit is not None for _, limit in backend.limits)
    assert ("list_tasks", RUNNING_LIMIT) in backend.limits
    assert ("list_tasks", FAILURE_LIMIT) in backend.limits
    assert ("history", HISTORY_WINDOW) in backend.limits


async def test_a_missing_capability_empties_its_panel_only() -> None:
    backend = NoHeartbeats()
    await backend.connect()
    await backend.enqueue(Task("echo"))
    snapshot = await read_overview(backend)
    assert snapshot.unsupported == [HEARTBEATS]
    assert snapshot.processes == []
    assert [(q.info.name, q.info.pending) for q in snapshot.queues] == [("default", 1)]


class NoHistory(MemoryBackend):
    async def history(self, job: str | None = None, limit: int | None = 50) -> list[Run]:
        raise Unsupported(self.label, RUN_HISTORY)


async def test_without_history_a_rate_is_unknown_not_zero() -> None:
    backend = NoHistory()
    await backend.connect()
    await backend.enqueue(Task("echo"))
    jobs = {"echo": JobSpec("echo", func=print)}
    snapshot = await read_overview(backend, jobs=jobs)
    assert snapshot.unsupported == [RUN_HISTORY]  # named once, though every job asked
    [queue] = snapshot.queues
    assert (queue.rate, queue.series) == (None, [])
    assert [(j.name, j.last_status) for j in snapshot.jobs] == [("echo", None)]


def _runs(count: int, start: float, step: float, queue: str = "q") -> list[Run]:
    """`count` runs finished `step` seconds apart from `start`, newest first."""
    out = [
        Run(f"t{i}", "job", queue, 0, TaskStatus.SUCCEEDED, None, start + i * step)
        for i in range(count)
    ]
    return out[::-1]


def test_throughput_counts_each_run_once_across_windows() -> None:
    now = 1_000_000.0
    counter = Throughput()
    first = _runs(10, now - 100, 1.0)  # 10 runs at now-100 .. now-91
    counter.feed(first, now, window=50)
    later = _runs(20, now - 100, 1.0)[:]  # the same 10, then 10 more, newest first
    counter.feed(later, now + 1, window=50)
    assert counter.rate("q", now + 1) == 0  # all over a minute old
    assert sum(counter.series("q", now + 1)) == 20
    assert not counter.partial(now + 1, span=BUCKET * BUCKETS)


def test_a_full_window_that_reaches_nothing_seen_marks_counts_as_lower_bounds() -> None:
    now = 1_000_000.0
    counter = Throughput()
    counter.feed(_runs(5, now - 30, 1.0), now, window=5)  # full at once: older ones unseen
    assert counter.partial(now)
    assert counter.rate("q", now) == 5
    # Two refreshes later, far more than a window finished in between.
    counter = Throughput()
    counter.feed(_runs(3, now - 50, 1.0), now - 40, window=5)
    assert not counter.partial(now - 40)
    fresh = [
        Run(f"n{i}", "job", "q", 0, TaskStatus.SUCCEEDED, None, now - 5 + i) for i in range(5)
    ][::-1]
    counter.feed(fresh, now, window=5)
    assert counter.partial(now)
    assert counter.rate("q", now) == 8
    assert not counter.partial(now + 120)  # once the gap is over a minute old, exact again


def test_series_buckets_end_now_and_drop_what_is_older() -> None:
    now = 1_000_000.0
    counter = Throughput()
    runs: Sequence[Run] = [
        Run("a", "job", "q", 0, TaskStatus.SUCCEEDED, None, now - 0.5),
        Run("b", "job", "q", 0, TaskStatus.FAILED, None, now - BUCKET - 0.5),
        Run("c", "job", "other", 0, TaskStatus.SUCCEEDED, None, now + 3),  # a clock ahead
        Run("d", "job", "q", 0, TaskStatus.SUCCEEDED, None, now - BUCKET * BUCKETS - 1),
    ]
    counter.feed(runs, now, window=100)
    series = counter.series("q", now)
    assert series[-1] == 1 and series[-2] == 1 and sum(series) == 2
    assert counter.series("other", now)[-1] == 1
    assert counter.queues() == ["other", "q"]


async def test_jobs_show_overrides_and_runtime_schedules_as_schedules_list_does() -> None:
    from chronctl.schedules import Schedule

    backend = MemoryBackend()
    await backend.connect()
    now = time.time()
    jobs = {
        "report": JobSpec("report", func=print, trigger=IntervalTrigger(86400.0, anchor=now)),
        "mail": JobSpec("mail", func=print),
    }
    # `jobs reschedule report --every 1h`, and `schedules add nightly --job mail --every 2h`.
    await backend.put_schedule(
        Schedule("report", "report", every=3600.0, override=True, created=now), create=True
    )
    await backend.put_schedule(Schedule("nightly", "mail", every=7200.0, created=now), create=True)
    await backend.put_schedule(Schedule("lost", "gone", every=60.0, created=now), create=True)
    snapshot = await read_overview(backend, jobs=jobs, now=now)
    views = {j.name: j for j in snapshot.jobs}
    assert [j.name for j in snapshot.jobs] == ["report", "nightly", "lost", "mail"]
    assert (views["report"].source, views["report"].trigger) == ("override", "every 1h")
    assert views["report"].next_fire is not None
    assert views["report"].next_fire.timestamp() - now < 3601  # the override's, not 1d
    assert (views["nightly"].source, views["nightly"].job) == ("runtime", "mail")
    assert (views["lost"].orphaned, views["lost"].next_fire) == (True, None)
    assert views["mail"].source == "enqueue"
    assert snapshot.jobs_total == 4
    assert snapshot.to_public()["jobs"][1]["source"] == "runtime"
