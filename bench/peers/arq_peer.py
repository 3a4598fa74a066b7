"""arq: the worker is arq's own `arq bench.peers.arq_peer.WorkerSettings` with arq's
defaults (max_jobs 10, poll_delay 0.5 s: arq polls its queue, nothing wakes it).
arq runs only `async def` functions, so it has only the async row. No bulk
enqueue: W1 runs `enqueue_job` with 50 calls in flight on one pool. Job ids and
the queue name carry the run's name so cleanup finds every key.

arq needs redis-py < 6, which current Celery refuses: it runs from a second
virtualenv (`--arq-python`).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from typing import Any

from arq import create_pool
from arq.connections import ArqRedis, RedisSettings
from arq.worker import run_worker

from bench import body
from bench.peers import _common as c

_ids = itertools.count()
ABODY = body.async_body() if c.BODY == "async" else None


async def task(ctx: dict[str, Any], ref: float = 0.0) -> None:
    await ABODY(ref)  # type: ignore[misc]


class WorkerSettings:
    functions = [task]
    queue_name = c.NS
    redis_settings = RedisSettings.from_dsn(c.URL)


class Client:
    """A sync face on one ArqRedis pool and its own event loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.pool: ArqRedis = self.loop.run_until_complete(
            create_pool(WorkerSettings.redis_settings, default_queue_name=c.NS)
        )

    async def _one(self, *args: Any, **options: Any) -> None:
        await self.pool.enqueue_job("task", *args, _job_id=f"{c.NS}-{next(_ids)}", **options)

    async def _many(self, n: int, in_flight: int = 50) -> None:
        for start in range(0, n, in_flight):
            await asyncio.gather(*(self._one() for _ in range(min(in_flight, n - start))))

    def enqueue(self, n: int) -> None:
        self.loop.run_until_complete(self._many(n))

    def send_one(self, ref: float) -> None:
        self.loop.run_until_complete(self._one(ref))

    def schedule_one(self, due: float) -> None:
        from datetime import UTC, datetime

        at = datetime.fromtimestamp(due, UTC)
        self.loop.run_until_complete(self._one(due, _defer_until=at))

    def close(self) -> None:
        self.loop.run_until_complete(self.pool.aclose())
        self.loop.close()


def quiet_worker() -> None:
    """`arq` has no quiet option: its worker with logging at WARNING."""
    logging.basicConfig(level=logging.WARNING)
    run_worker(WorkerSettings)  # type: ignore[arg-type]


make_client = Client
