"""chronctl measured the way the peers are: a `Scheduler(workers=8)` in a worker
process of its own, tasks enqueued by a client process (W1: `enqueue_many`;
W2: `Scheduler.enqueue`, one call per probe).

Why, next to chronctl's own W1/W2: those run the enqueuer and the worker in one
process on one event loop, which the peers do not. This row shows what the
process split changes; the ratios use chronctl's own figures.
"""

from __future__ import annotations

import asyncio
import logging

from bench.peers import _common as c
from chronctl import Scheduler
from chronctl.backends import QueueBackend, from_url
from chronctl.scheduler import build_task


def make_backend() -> QueueBackend:
    if c.BACKEND == "sqlite":
        return from_url(f"sqlite:///{c.URL}")
    if c.BACKEND == "rabbitmq":  # the run's vhost; the state store is shared by both processes
        return from_url(
            f"{c.URL}?queue_name={c.NS}&exchange_name={c.NS}",
            state=f"sqlite:///{c.OUT.parent / 'state.db'}",
        )
    return from_url(f"{c.URL}?prefix={c.NS}")


async def noop() -> None:
    c.RECORDER.record()


async def probe(enqueued: float) -> None:
    c.RECORDER.record(enqueued)


def make_scheduler() -> Scheduler:
    scheduler = Scheduler(make_backend(), workers=8)
    scheduler.job(name="noop")(noop)
    scheduler.job(name="probe")(probe)
    return scheduler


async def _work() -> None:
    scheduler = make_scheduler()
    await scheduler.start()
    await asyncio.Event().wait()  # the orchestrator stops this process


def worker() -> None:
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(_work())


class Client:
    """A sync face on one Scheduler (never started: it only enqueues)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.scheduler = make_scheduler()
        self.loop.run_until_complete(self._connect())

    async def _connect(self) -> None:
        await self.scheduler.backend.connect()

    def enqueue(self, n: int) -> None:
        spec = self.scheduler.jobs["noop"]
        self.loop.run_until_complete(
            self.scheduler.backend.enqueue_many([build_task(spec) for _ in range(n)])
        )

    def send_one(self, ts: float) -> None:
        self.loop.run_until_complete(self.scheduler.enqueue("probe", args=[ts]))

    def close(self) -> None:
        self.loop.run_until_complete(self.scheduler.backend.disconnect())
        self.loop.close()


if __name__ == "__main__":
    c.main_with_client(worker, Client)
