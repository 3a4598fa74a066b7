"""Huey: RedisHuey (blocking BRPOP dequeue) or SqliteHuey. The worker is Huey's own
`huey_consumer bench.peers.huey_peer.huey -w 8 -k thread` (bench/systems.py).

Huey has no bulk enqueue (W1 calls the task N times) and no `async def` tasks.
"""

from __future__ import annotations

import time

from huey import Huey, RedisHuey, SqliteHuey

from bench import body
from bench.peers import _common as c


def make_huey() -> Huey:
    if c.BACKEND == "sqlite":
        return SqliteHuey(c.NS, filename=c.URL)
    return RedisHuey(c.NS, url=c.URL)  # keys huey.redis.<NS>, huey.schedule.<NS>, ...


huey = make_huey()
BODY = body.sync_body() if c.BODY != "async" else None


@huey.task(name="task")
def task(ref: float = 0.0) -> None:
    BODY(ref)  # type: ignore[misc]


def enqueue(n: int) -> None:
    for _ in range(n):
        task()


def schedule_one(due: float) -> None:
    task.schedule(args=(due,), delay=max(0.0, due - time.time()))


def make_client() -> c.Client:
    return c.Plain(enqueue, task, schedule_one)
