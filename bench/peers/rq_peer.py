"""RQ: the worker is `rq worker -w rq.worker.SimpleWorker` (jobs run in the worker
process; RQ's default `Worker` forks a child per job, a few ms each, which no one
runs short jobs with). W1 enqueues through `Queue.enqueue_many` (one pipeline per
5,000). Job ids and the queue name carry the run's name so cleanup finds every key.
W3 is not run (RQ's scheduled jobs need `--with-scheduler`); no `async def` row.
"""

from __future__ import annotations

import itertools

from redis import Redis
from rq import Queue

from bench import body
from bench.peers import _common as c

_ids = itertools.count()
BODY = body.sync_body() if c.BODY != "async" else None
FUNC = "bench.peers.rq_peer.task"


def task(ref: float = 0.0) -> None:
    BODY(ref)  # type: ignore[misc]


class Client:
    def __init__(self) -> None:
        self.queue = Queue(c.NS, connection=Redis.from_url(c.URL))

    def _id(self) -> str:
        return f"{c.NS}-{next(_ids)}"

    def enqueue(self, n: int, chunk: int = 5_000) -> None:
        for start in range(0, n, chunk):
            self.queue.enqueue_many(
                [Queue.prepare_data(FUNC, job_id=self._id()) for _ in range(min(chunk, n - start))]
            )

    def send_one(self, ref: float) -> None:
        self.queue.enqueue(FUNC, ref, job_id=self._id())

    def schedule_one(self, due: float) -> None:
        raise SystemExit("RQ's scheduled jobs need `rq worker --with-scheduler`: W3 not run")

    def close(self) -> None:
        self.queue.connection.close()


make_client = Client
