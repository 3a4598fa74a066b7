"""RQ peer: one `SimpleWorker` (runs jobs in its own process; RQ's default
`Worker` forks a child per job, a few ms each, which no one would benchmark
a no-op with). W1 enqueues through `Queue.enqueue_many` (one pipeline).
Job ids and the queue name carry the run's name so cleanup finds every key.
"""

from __future__ import annotations

import itertools
import logging

from redis import Redis
from rq import Queue
from rq.worker import SimpleWorker

from bench.peers import _common as c

_ids = itertools.count()


def noop() -> None:
    c.RECORDER.record()


def probe(enqueued: float) -> None:
    c.RECORDER.record(enqueued)


def _queue() -> Queue:
    return Queue(c.NS, connection=Redis.from_url(c.URL))


def worker() -> None:
    logging.basicConfig(level=logging.WARNING)
    queue = _queue()
    SimpleWorker([queue], connection=queue.connection, name=f"{c.NS}-worker").work(
        logging_level="WARNING"
    )


def enqueue(n: int) -> None:
    queue = _queue()
    chunk = 5_000
    for start in range(0, n, chunk):
        queue.enqueue_many(
            [
                Queue.prepare_data("bench.peers.rq_peer.noop", job_id=f"{c.NS}-{next(_ids)}")
                for _ in range(min(chunk, n - start))
            ]
        )


_SEND_QUEUE: Queue | None = None


def send_one(ts: float) -> None:
    global _SEND_QUEUE
    if _SEND_QUEUE is None:
        _SEND_QUEUE = _queue()
    _SEND_QUEUE.enqueue("bench.peers.rq_peer.probe", ts, job_id=f"{c.NS}-{next(_ids)}")


if __name__ == "__main__":
    c.main(worker, enqueue, send_one)
