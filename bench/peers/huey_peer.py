"""Huey peer: RedisHuey (blocking BRPOP dequeue) or SqliteHuey, one consumer process.

Configuration: `huey.create_consumer(workers=8, worker_type="thread")`, the
consumer's defaults otherwise (SqliteHuey polls with Huey's default backoff:
0.1 s doubling by 1.15 up to 10 s while idle). Eight threads match chronctl's
`Scheduler(workers=8)`. Huey has no bulk enqueue: W1 calls the task 20,000
times. Results of no-op tasks (None) are not stored by Huey.
"""

from __future__ import annotations

import logging

from huey import Huey, RedisHuey, SqliteHuey

from bench.peers import _common as c


def make_huey() -> Huey:
    if c.BACKEND == "sqlite":
        return SqliteHuey(c.NS, filename=c.URL)
    return RedisHuey(c.NS, url=c.URL)  # keys huey.redis.<NS>, huey.schedule.<NS>, ...


huey = make_huey()


@huey.task(name="noop")
def noop() -> None:
    c.RECORDER.record()


@huey.task(name="probe")
def probe(enqueued: float) -> None:
    c.RECORDER.record(enqueued)


def worker() -> None:
    logging.basicConfig(level=logging.WARNING)
    consumer = huey.create_consumer(workers=8, worker_type="thread")
    consumer.run()


def enqueue(n: int) -> None:
    for _ in range(n):
        noop()


if __name__ == "__main__":
    c.main(worker, enqueue, probe)
