"""arq peer: one `arq.worker.Worker` with arq's defaults (max_jobs=10, poll_delay
0.5 s: arq polls its queue sorted set, it is not woken by new jobs). arq has no
bulk enqueue: W1 runs `enqueue_job` with 50 calls in flight on one pool (each
call is a WATCH/MULTI transaction). Job ids and the queue name carry the run's
name so cleanup finds every key (arq:job:<id>, arq:result:<id>, ...).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from typing import Any

from arq import create_pool
from arq.connections import ArqRedis, RedisSettings
from arq.worker import Worker

from bench.peers import _common as c

_ids = itertools.count()
SETTINGS = RedisSettings.from_dsn(c.URL)


async def noop(ctx: dict[str, Any]) -> None:
    c.RECORDER.record()


async def probe(ctx: dict[str, Any], enqueued: float) -> None:
    c.RECORDER.record(enqueued)


def worker() -> None:
    logging.basicConfig(level=logging.WARNING)
    Worker(
        functions=[noop, probe], queue_name=c.NS, redis_settings=SETTINGS, log_results=False
    ).run()


class Client:
    """A sync face on one ArqRedis pool and its own event loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.pool: ArqRedis = self.loop.run_until_complete(
            create_pool(SETTINGS, default_queue_name=c.NS)
        )

    async def _enqueue(self, fn: str, *args: Any) -> None:
        await self.pool.enqueue_job(fn, *args, _job_id=f"{c.NS}-{next(_ids)}")

    async def _many(self, n: int, in_flight: int = 50) -> None:
        for start in range(0, n, in_flight):
            await asyncio.gather(*(self._enqueue("noop") for _ in range(min(in_flight, n - start))))

    def enqueue(self, n: int) -> None:
        self.loop.run_until_complete(self._many(n))

    def send_one(self, ts: float) -> None:
        self.loop.run_until_complete(self._enqueue("probe", ts))

    def close(self) -> None:
        self.loop.run_until_complete(self.pool.aclose())
        self.loop.close()


if __name__ == "__main__":
    c.main_with_client(worker, Client)
