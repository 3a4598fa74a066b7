"""Celery peer: one worker process, pool and concurrency from POOL below, gossip,
mingle, heartbeats and remote control off (they only talk to other workers), no
result backend (`task_ignore_result`: Celery's fastest path; chronctl always
keeps status and history). On Redis every key gets the run's prefix
(`global_keyprefix`); on RabbitMQ the run has its own vhost. Celery has no bulk
send: W1 calls `apply_async` 20,000 times on one producer.
"""

from __future__ import annotations

import logging
import os

from celery import Celery

from bench.peers import _common as c

#: Redis: "threads" with 8 threads, as chronctl's Scheduler(workers=8), the faster of
#: threads and solo there. RabbitMQ: "solo" (tasks on the consuming thread): with
#: the threads pool, pyamqp's acks from pool threads wait on the consumer's event
#: loop and the worker crawls at about 30 tasks/s once its prefetch (4 x 8) is
#: used up. prefork would add a pipe round trip per task. Override with
#: BENCH_PEER_CELERY_POOL=solo|threads|prefork.
POOL = os.environ.get("BENCH_PEER_CELERY_POOL", "solo" if c.BACKEND == "rabbitmq" else "threads")
CONCURRENCY = {"solo": 1, "prefork": 1}.get(POOL, 8)

app = Celery("chronctl_bench", broker=c.URL)
app.conf.update(
    task_default_queue=c.NS,
    task_ignore_result=True,
    worker_enable_remote_control=False,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)
if c.BACKEND == "redis":
    app.conf.broker_transport_options = {"global_keyprefix": f"{c.NS}:"}


@app.task(name="noop")
def noop() -> None:
    c.RECORDER.record()


@app.task(name="probe")
def probe(enqueued: float) -> None:
    c.RECORDER.record(enqueued)


def worker() -> None:
    logging.basicConfig(level=logging.WARNING)
    app.worker_main(
        [
            "worker",
            "-P",
            POOL,
            "-c",
            str(CONCURRENCY),
            "-Q",
            c.NS,
            "-l",
            "WARNING",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ]
    )


def enqueue(n: int) -> None:
    with app.producer_or_acquire() as producer:
        for _ in range(n):
            noop.apply_async(producer=producer)


def send_one(ts: float) -> None:
    probe.apply_async((ts,))


if __name__ == "__main__":
    c.main(worker, enqueue, send_one)
