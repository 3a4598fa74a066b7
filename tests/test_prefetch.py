"""Prefetch: workers claim beyond their free slots, but never run more than their
slots, never hoard work behind long runs, and hand unstarted tasks back on stop."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import pytest

from chronctl import Scheduler, TaskStatus
from chronctl import worker as worker_mod
from chronctl.backends.base import QueueBackend
from chronctl.models import Task
from chronctl.worker import Worker

from .test_engine import wait, waiter


async def test_runs_never_exceed_the_slots(backend: QueueBackend) -> None:
    s = Scheduler(backend, workers=3, prefetch=6, shutdown_timeout=5)
    running = 0
    peak = 0
    seen: list[int] = []

    @s.job()
    async def step(n: int) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        for _ in range(3):  # let the other slots' runs interleave
            await asyncio.sleep(0)
        seen.append(n)
        running -= 1

    done, _ = waiter(s, "task_succeeded", 40)
    for n in range(40):
        await s.enqueue("step", args=[n])
    async with s:
        await wait(done)
    assert sorted(seen) == list(range(40))  # each exactly once
    assert peak == 3


async def test_prefetched_task_goes_to_an_idle_worker_when_slots_are_held(
    backend: QueueBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(worker_mod, "PREFETCH_WAIT", 0.05)
    s = Scheduler(backend, workers=1, prefetch=2, shutdown_timeout=5)
    long_started, let_long_end, quick_ran = asyncio.Event(), asyncio.Event(), asyncio.Event()

    @s.job(priority=9)
    async def long() -> None:
        long_started.set()
        await let_long_end.wait()

    @s.job(priority=1)
    async def quick() -> None:
        quick_ran.set()

    long_id = await s.enqueue("long")
    quick_id = await s.enqueue("quick")
    async with s:  # one claim takes both: `long` runs, `quick` waits for the slot
        await wait(long_started)
        other = Worker(backend, s.get_job, s._executors, concurrency=1)  # type: ignore[arg-type]
        other_run = asyncio.create_task(other.run())
        try:
            await wait(quick_ran)
            quick_task = await backend.get_task(quick_id)
            long_task = await backend.get_task(long_id)
            assert quick_task is not None and long_task is not None
            # the idle worker ran it while the first one's only slot was still held
            assert long_task.status is TaskStatus.RUNNING
            assert quick_task.worker == other.id
            assert quick_task.attempt == 0  # going back cost no attempt
        finally:
            let_long_end.set()
            await other.stop(timeout=5)
            other_run.cancel()
            await asyncio.gather(other_run, return_exceptions=True)


async def test_stop_hands_back_prefetched_tasks_without_running_them(backend: QueueBackend) -> None:
    s = Scheduler(backend, workers=1, prefetch=2, shutdown_timeout=5)
    long_started, let_long_end = asyncio.Event(), asyncio.Event()
    quick_runs: list[int] = []

    @s.job(priority=9)
    async def long() -> None:
        long_started.set()
        await let_long_end.wait()

    @s.job(priority=1)
    async def quick(n: int) -> None:
        quick_runs.append(n)

    long_id = await s.enqueue("long")
    quick_ids = [await s.enqueue("quick", args=[n]) for n in range(2)]
    released: list[str] = []
    real_release = backend.release

    async def spy(tasks: Iterable[Task], *, at: float | None = None) -> Any:
        tasks = list(tasks)
        await real_release(tasks, at=at)
        released.extend(t.id for t in tasks)
        let_long_end.set()  # the running task finishes only after the hand-back

    backend.release = spy  # type: ignore[method-assign]
    await s.start()
    await wait(long_started)
    await s.stop()
    await backend.connect()
    assert sorted(released) == sorted(quick_ids)
    assert quick_runs == []
    for task_id in quick_ids:
        task = await backend.get_task(task_id)
        assert task is not None and (task.status, task.attempt) == (TaskStatus.PENDING, 0)
    long_task = await backend.get_task(long_id)
    assert long_task is not None and long_task.status is TaskStatus.SUCCEEDED


def test_manifest_prefetch_reaches_the_worker(tmp_path: Any) -> None:
    from chronctl.manifest import parse_manifest

    text = '[scheduler]\nbackend = "memory://"\nworkers = 3\n{}\n'
    zero = Scheduler.from_manifest(parse_manifest(text.format("prefetch = 0"), tmp_path / "m"))
    default = Scheduler.from_manifest(parse_manifest(text.format(""), tmp_path / "m"))
    assert zero._make_worker().prefetch == 0
    assert default._make_worker().prefetch == 6  # twice the workers
