"""chronctl's client: a producer process using the public Python API, as a user's
application would: `Scheduler.from_manifest(load_manifest(...))` on the manifest the
worker (`chronctl run`) runs, never started (it only enqueues).

- W1/W4 prefill: `Scheduler.enqueue_many`, BATCH tasks per call (one backend step each).
- W2: `Scheduler.enqueue("task", args=[ref])`, one call per task.
- W3: `Scheduler.enqueue("task", args=[due], at=due)`, one call per task.
"""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime

from chronctl import Scheduler
from chronctl.manifest import load_manifest

BATCH = 10_000


class Client:
    """A sync face on one Scheduler and its own event loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.scheduler = Scheduler.from_manifest(load_manifest(os.environ["BENCH_MANIFEST"]))
        self.loop.run_until_complete(self.scheduler.health_check())  # connects

    async def _many(self, n: int) -> None:
        for start in range(0, n, BATCH):
            await self.scheduler.enqueue_many(["task"] * min(BATCH, n - start))

    def enqueue(self, n: int) -> None:
        self.loop.run_until_complete(self._many(n))

    def send_one(self, ref: float) -> None:
        self.loop.run_until_complete(self.scheduler.enqueue("task", args=[ref]))

    def schedule_one(self, due: float) -> None:
        at = datetime.fromtimestamp(due, UTC)
        self.loop.run_until_complete(self.scheduler.enqueue("task", args=[due], at=at))

    def close(self) -> None:
        self.loop.run_until_complete(self.scheduler.stop())
        self.loop.close()


make_client = Client
