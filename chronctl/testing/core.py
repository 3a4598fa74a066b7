"""The required core of the backend contract: what `chronctl run` relies on.

Every test takes a connected, empty `backend` fixture and uses only the core
methods (connect ... clear, and the wake-up); see `chronctl.testing`.
"""

from __future__ import annotations

import asyncio
import time

from chronctl.backends.base import QueueBackend
from chronctl.models import Task, TaskStatus

__all__ = [
    "test_core_a_stale_delivery_cannot_settle",
    "test_core_acknowledge_settles_once",
    "test_core_batches_never_overlap",
    "test_core_priority_then_time_then_fifo",
    "test_core_queues_filter_count_and_clear",
    "test_core_reject_to_dead_is_never_claimed_again",
    "test_core_reject_with_requeue_counts_an_attempt_and_waits",
    "test_core_release_gives_back_without_an_attempt",
    "test_core_roundtrip_keeps_what_was_enqueued",
    "test_core_wakeup_on_enqueue",
]


def _task(**fields: object) -> Task:
    return Task(job="j", **fields)  # type: ignore[arg-type]  # fields vary per test


async def _claim_all(backend: QueueBackend, **kw: object) -> list[Task]:
    return await backend.dequeue(1000, **kw)  # type: ignore[arg-type]  # dequeue's keywords


async def test_core_roundtrip_keeps_what_was_enqueued(backend: QueueBackend) -> None:
    t = _task(args=[1, "two", [3]], kwargs={"a": {"b": None}}, queue="q", priority=7)
    assert await backend.enqueue(t) == (t.id, True)
    [got] = await backend.dequeue(5, worker="w1")
    assert (got.id, got.args, got.kwargs, got.queue, got.priority) == (
        t.id,
        [1, "two", [3]],
        {"a": {"b": None}},
        "q",
        7,
    )
    assert got.status is TaskStatus.RUNNING and got.worker == "w1" and got.deliveries == 1
    assert await backend.dequeue(5) == []  # claimed once


async def test_core_priority_then_time_then_fifo(backend: QueueBackend) -> None:
    now = time.time()
    low = _task(priority=1, scheduled_at=now - 10)
    high_late = _task(priority=9, scheduled_at=now - 1)
    high_early = _task(priority=9, scheduled_at=now - 5)
    mid_a = _task(priority=5, scheduled_at=now - 3)
    mid_b = _task(priority=5, scheduled_at=now - 3)
    future_top = _task(priority=9, scheduled_at=now + 3600)
    for t in (low, high_late, high_early, mid_a, mid_b, future_top):
        await backend.enqueue(t)
    got = await _claim_all(backend)
    assert [t.id for t in got] == [high_early.id, high_late.id, mid_a.id, mid_b.id, low.id]


async def test_core_batches_never_overlap(backend: QueueBackend) -> None:
    for i in range(50):
        await backend.enqueue(_task(args=[i]))
    batches = await asyncio.gather(*(backend.dequeue(7, worker=f"w{i}") for i in range(10)))
    ids = [t.id for batch in batches for t in batch]
    assert len(ids) == 50 and len(set(ids)) == 50
    assert all(len(b) <= 7 for b in batches)


async def test_core_queues_filter_count_and_clear(backend: QueueBackend) -> None:
    for queue in ("a", "a", "a", "b", "c"):
        await backend.enqueue(_task(queue=queue))
    assert await backend.get_queue_size("a") == 3
    assert [t.queue for t in await _claim_all(backend, queues=["b"])] == ["b"]
    assert await backend.get_queue_size("b") == 0  # running is not pending
    assert await backend.clear("a") == 3
    assert await backend.get_queue_size("a") == 0
    assert await backend.get_queue_size("c") == 1
    assert await backend.clear() == 1
    assert await _claim_all(backend) == []


async def test_core_acknowledge_settles_once(backend: QueueBackend) -> None:
    await backend.enqueue(_task())
    [got] = await backend.dequeue(1, worker="w")
    got.finished_at, got.result = time.time(), {"ok": True}
    assert await backend.acknowledge(got)
    assert not await backend.acknowledge(got)  # settled already
    assert await _claim_all(backend) == []


async def test_core_reject_with_requeue_counts_an_attempt_and_waits(
    backend: QueueBackend,
) -> None:
    t = _task(max_retries=2)
    await backend.enqueue(t)
    [got] = await backend.dequeue(1, worker="w")
    got.error = "ValueError: boom"
    assert await backend.reject(got, requeue=True, retry_at=time.time() + 3600)
    assert await backend.dequeue(1) == []  # not due yet
    assert not await backend.reject(got, requeue=False)  # no longer running: ignored
    assert await backend.get_queue_size() == 1

    other = _task(max_retries=2)
    await backend.enqueue(other)
    [got] = await backend.dequeue(1, worker="w")
    assert await backend.reject(got, requeue=True, retry_at=time.time() - 1)
    [again] = await backend.dequeue(1, worker="w")
    assert (again.id, again.attempt) == (other.id, 1)


async def test_core_reject_to_dead_is_never_claimed_again(backend: QueueBackend) -> None:
    await backend.enqueue(_task(max_retries=0))
    [got] = await backend.dequeue(1, worker="w")
    assert await backend.reject(got, requeue=False)
    assert await _claim_all(backend) == []
    assert await backend.get_queue_size() == 0


async def test_core_release_gives_back_without_an_attempt(backend: QueueBackend) -> None:
    t = _task()
    await backend.enqueue(t)
    await backend.release(await backend.dequeue(1, worker="w"))
    [again] = await backend.dequeue(1, worker="w")
    assert (again.id, again.attempt) == (t.id, 0)

    # Released until later: other work goes first (a rate-limited task steps aside).
    other = _task(priority=1)
    await backend.enqueue(other)
    await backend.release([again], at=time.time() + 60)
    assert [x.id for x in await _claim_all(backend)] == [other.id]


async def test_core_a_stale_delivery_cannot_settle(backend: QueueBackend) -> None:
    """A worker whose task was given back and claimed again must not finish it."""
    await backend.enqueue(_task())
    [first] = await backend.dequeue(1, worker="w1")
    await backend.release([first])
    [second] = await backend.dequeue(1, worker="w2")
    assert second.deliveries == first.deliveries + 1
    assert not await backend.acknowledge(first)
    assert await backend.acknowledge(second)


async def test_core_wakeup_on_enqueue(backend: QueueBackend) -> None:
    waiter = asyncio.create_task(backend.wait_for_work(30))
    await asyncio.sleep(0)
    await backend.enqueue(_task())
    await asyncio.wait_for(waiter, 5)
