"""Celery: no result backend (`task_ignore_result`, Celery's fastest path; chronctl
always keeps status and history). On Redis every key gets the run's prefix
(`global_keyprefix`); on RabbitMQ the run uses the bench's vhost. The worker is
Celery's own `celery -A bench.peers.celery_peer worker -P threads -c 8 -Q <run>`
(bench/systems.py). No bulk send: W1 calls `apply_async` N times on one producer.
No `async def` tasks.
"""

from __future__ import annotations

import time

from celery import Celery

from bench import body
from bench.peers import _common as c

app = Celery("chronctl_bench", broker=c.URL)
app.conf.update(
    task_default_queue=c.NS,
    task_ignore_result=True,
    broker_connection_retry_on_startup=True,
)
if c.BACKEND == "redis":
    app.conf.broker_transport_options = {"global_keyprefix": f"{c.NS}:"}
BODY = body.sync_body() if c.BODY != "async" else None


@app.task(name="task")
def task(ref: float = 0.0) -> None:
    BODY(ref)  # type: ignore[misc]


def enqueue(n: int) -> None:
    with app.producer_or_acquire() as producer:
        for _ in range(n):
            task.apply_async(producer=producer)


def send_one(ref: float) -> None:
    task.apply_async((ref,))


def schedule_one(due: float) -> None:
    task.apply_async((due,), countdown=max(0.0, due - time.time()))


def make_client() -> c.Client:
    return c.Plain(enqueue, send_one, schedule_one)
