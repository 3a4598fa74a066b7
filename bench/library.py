"""The "library, in-process" workloads: chronctl as a library in one process.

Why they are kept apart: the enqueuer and the worker share one process and one
event loop, so a W2 wake-up is an in-process event (never the cross-process
path a `chronctl run` worker takes), the jobs are `async def` no-ops and the
worker's start-up is not counted. That is what an application embedding
`Scheduler` sees, not what `chronctl run` users see: these figures are shown
as their own table (`python -m bench --library`) and never feed a ratio or a
target. The real path is `bench/measure.py`.

Latency here is `time.time()` at the first line of the job function minus a
timestamp the task carries in its args.
"""

from __future__ import annotations

import asyncio
import gc
import random
import time
import tracemalloc
from datetime import UTC, datetime
from typing import Any

from chronctl import Scheduler
from chronctl.backends import from_url
from chronctl.scheduler import build_task

from .harness import latency_summary, open_backend

DONE_TIMEOUT = 600.0  # a workload that has not finished by then is broken, not slow


async def _noop() -> None:
    return None


def _counter(n: int) -> tuple[asyncio.Event, Any]:
    """An event set once `n` task_succeeded events have been seen."""
    done = asyncio.Event()
    seen = 0

    def on_succeeded(event: Any) -> None:
        nonlocal seen
        seen += 1
        if seen >= n:
            done.set()

    return done, on_succeeded


async def _fill(backend: Any, spec: Any, n: int, chunk: int = 50_000) -> None:
    """`n` pending no-op tasks through the bulk path, in chunks of `chunk`."""
    for start in range(0, n, chunk):
        await backend.enqueue_many([build_task(spec, [], {}) for _ in range(min(chunk, n - start))])


# -- W1 --------------------------------------------------------------------------


async def w1_throughput(url: str, *, n: int, workers: int) -> dict[str, Any]:
    """Enqueue `n` no-op tasks in bulk, then let one Scheduler run them all."""
    async with open_backend(url) as backend:
        scheduler = Scheduler(backend, workers=workers)
        scheduler.job(name="noop")(_noop)
        spec = scheduler.jobs["noop"]
        done, on_succeeded = _counter(n)
        scheduler.on("task_succeeded", on_succeeded)
        t0 = time.perf_counter()
        await backend.enqueue_many([build_task(spec, [], {}) for _ in range(n)])
        t1 = time.perf_counter()
        await scheduler.start()
        await asyncio.wait_for(done.wait(), DONE_TIMEOUT)
        t2 = time.perf_counter()
        await scheduler.stop()
    return {
        "n": n,
        "enqueue_per_s": n / (t1 - t0),
        "process_per_s": n / (t2 - t1),
        "end_to_end_per_s": n / (t2 - t0),
    }


# -- W2 --------------------------------------------------------------------------


async def w2_start_latency(url: str, *, n: int, rate: float, workers: int) -> dict[str, Any]:
    """An idle worker; `n` tasks enqueued one by one at `rate`/s; started - enqueued."""
    samples: list[float] = []

    async def probe(enqueued: float) -> None:
        samples.append(time.time() - enqueued)

    async with open_backend(url) as backend:
        scheduler = Scheduler(backend, workers=workers)
        scheduler.job(name="probe")(probe)
        done, on_succeeded = _counter(n)
        scheduler.on("task_succeeded", on_succeeded)
        await scheduler.start()
        await asyncio.sleep(0.5)  # the worker is idle, waiting for work
        start = time.perf_counter()
        for i in range(n):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await scheduler.enqueue("probe", args=[time.time()])
        send_s = time.perf_counter() - start
        await asyncio.wait_for(done.wait(), DONE_TIMEOUT)
        await scheduler.stop()
    return {**latency_summary(samples), "sent_per_s": n / send_s if send_s else 0.0}


# -- W3 --------------------------------------------------------------------------


async def w3_schedule_accuracy(
    url: str, *, n: int, ahead: tuple[float, float], workers: int
) -> dict[str, Any]:
    """`n` tasks due `ahead` seconds from now (uniform); started - scheduled time."""
    samples: list[float] = []

    async def probe(due: float) -> None:
        samples.append(time.time() - due)

    rng = random.Random(7)
    async with open_backend(url) as backend:
        scheduler = Scheduler(backend, workers=workers)
        scheduler.job(name="probe")(probe)
        done, on_succeeded = _counter(n)
        scheduler.on("task_succeeded", on_succeeded)
        await scheduler.start()
        for _ in range(n):
            at = datetime.fromtimestamp(time.time() + rng.uniform(*ahead), UTC)
            await scheduler.enqueue("probe", args=[at.timestamp()], at=at)
        await asyncio.wait_for(done.wait(), DONE_TIMEOUT)
        await scheduler.stop()
    return latency_summary(samples)


# -- W4 --------------------------------------------------------------------------


async def w4_scale(url: str, *, pending: int, n: int, workers: int) -> dict[str, Any]:
    """W1's processing rate for the first `n` tasks of a queue `pending` tasks deep."""
    async with open_backend(url) as backend:
        scheduler = Scheduler(backend, workers=workers)
        scheduler.job(name="noop")(_noop)
        t0 = time.perf_counter()
        await _fill(backend, scheduler.jobs["noop"], pending)
        t1 = time.perf_counter()
        done, on_succeeded = _counter(n)
        scheduler.on("task_succeeded", on_succeeded)
        await scheduler.start()
        await asyncio.wait_for(done.wait(), DONE_TIMEOUT)
        t2 = time.perf_counter()
        await scheduler.stop()
    return {
        "pending": pending,
        "n": n,
        "prefill_per_s": pending / (t1 - t0),
        "process_per_s": n / (t2 - t1),
    }


async def w4_memory_per_task(*, n: int) -> dict[str, Any]:
    """Bytes the memory backend holds per pending task (tracemalloc, Python heap)."""
    scheduler = Scheduler(from_url("memory://"))
    scheduler.job(name="noop")(_noop)
    spec = scheduler.jobs["noop"]
    backend = scheduler.backend
    await backend.connect()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        await _fill(backend, spec, n)
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert await backend.get_queue_size() == n
    await backend.disconnect()
    return {"n": n, "bytes_per_pending": (after - before) / n}
