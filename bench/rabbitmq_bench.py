"""RabbitMQ backend: end-to-end throughput and start latency (needs a broker).

    python bench/rabbitmq_bench.py --tasks 5000 --workers 16 --rate 200 --seconds 10

Throughput: N no-op tasks stored with one enqueue_many (state store + publish
with confirms), then one Scheduler claims, runs and acknowledges them all.
Latency: an idle Scheduler; another backend instance (its own connection, as
another process would) enqueues tasks at --rate per second; the latency is
task_started minus the task's creation time. The state store is a SQLite file
in a temporary directory; queues and exchanges get a unique prefix and are
deleted at the end. Numbers depend on the machine: note it with them.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from chronctl import Scheduler
from chronctl.backends.rabbitmq import RabbitMQBackend
from chronctl.backends.sqlite import SQLiteBackend
from chronctl.events import Event
from chronctl.scheduler import build_task


def backend(url: str, prefix: str, db: Path) -> RabbitMQBackend:
    return RabbitMQBackend(url, queue_name=prefix, exchange_name=prefix, state=SQLiteBackend(db))


async def noop() -> None:
    return None


async def throughput(url: str, tmp: Path, tasks: int, workers: int) -> None:
    prefix = f"chronctl-bench-{uuid.uuid4().hex[:8]}"
    scheduler = Scheduler(backend(url, prefix, tmp / "tp.db"), workers=workers)
    spec = scheduler.job(name="noop")(noop)
    spec = scheduler.jobs["noop"]
    done = asyncio.Event()
    count = 0

    def finished(event: Event) -> None:
        nonlocal count
        count += 1
        if count == tasks:
            done.set()

    scheduler.on("task_succeeded", finished)
    producer = backend(url, prefix, tmp / "tp.db")
    await producer.connect()
    t0 = time.perf_counter()
    await producer.enqueue_many([build_task(spec) for _ in range(tasks)])
    enqueued = time.perf_counter() - t0
    t1 = time.perf_counter()
    await scheduler.start()
    await done.wait()
    ran = time.perf_counter() - t1
    await scheduler.stop()
    await producer.delete_layout(["default"])
    await producer.disconnect()
    print(
        f"throughput: enqueue_many {tasks} tasks in {enqueued:.2f}s "
        f"({tasks / enqueued:.0f}/s); processed by one Scheduler (workers={workers}) in "
        f"{ran:.2f}s = {tasks / ran:.0f} tasks/s end to end"
    )


async def latency(url: str, tmp: Path, rate: float, seconds: float, workers: int) -> None:
    prefix = f"chronctl-bench-{uuid.uuid4().hex[:8]}"
    scheduler = Scheduler(backend(url, prefix, tmp / "lat.db"), workers=workers)
    scheduler.job(name="noop")(noop)
    spec = scheduler.jobs["noop"]
    delays: list[float] = []
    scheduler.on("task_started", lambda e: delays.append(time.time() - e.task.created_at))
    producer = backend(url, prefix, tmp / "lat.db")
    await producer.connect()
    await scheduler.start()
    await asyncio.sleep(1.5)  # idle: the worker waits on its consumer
    total = int(rate * seconds)
    start = time.monotonic()
    for i in range(total):
        await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
        await producer.enqueue(build_task(spec))
    end = time.monotonic() + 10
    while len(delays) < total and time.monotonic() < end:
        await asyncio.sleep(0.05)
    await scheduler.stop()
    await producer.delete_layout(["default"])
    await producer.disconnect()
    ms = sorted(d * 1000 for d in delays)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    print(
        f"latency: {len(ms)}/{total} tasks at {rate:.0f}/s for {seconds:.0f}s; start latency "
        f"p50 {statistics.median(ms):.1f} ms, p99 {p99:.1f} ms, max {ms[-1]:.1f} ms"
    )


async def main(ns: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        await throughput(ns.url, Path(tmp), ns.tasks, ns.workers)
        await latency(ns.url, Path(tmp), ns.rate, ns.seconds, ns.workers)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="amqp://guest:guest@127.0.0.1:5672/%2F")
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    asyncio.run(main(parser.parse_args()))
