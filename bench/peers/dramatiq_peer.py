"""Dramatiq peer: `RedisBroker(namespace=<run>)` or `RabbitmqBroker`, one worker
process with Dramatiq's default 8 threads and default middleware (what the
`dramatiq` command runs in each of its processes). Dramatiq has no bulk send:
W1 calls `actor.send()` 20,000 times (RabbitMQ: without publisher confirms,
Dramatiq's default; chronctl publishes with confirms).
"""

from __future__ import annotations

import logging
import threading

import dramatiq
from dramatiq.broker import Broker

from bench.peers import _common as c


def make_broker() -> Broker:
    if c.BACKEND == "rabbitmq":
        from dramatiq.brokers.rabbitmq import RabbitmqBroker

        return RabbitmqBroker(url=c.URL)
    from dramatiq.brokers.redis import RedisBroker

    return RedisBroker(url=c.URL, namespace=c.NS)


broker = make_broker()
dramatiq.set_broker(broker)


@dramatiq.actor(actor_name="noop", queue_name=c.NS, max_retries=0)
def noop() -> None:
    c.RECORDER.record()


@dramatiq.actor(actor_name="probe", queue_name=c.NS, max_retries=0)
def probe(enqueued: float) -> None:
    c.RECORDER.record(enqueued)


def worker() -> None:
    logging.basicConfig(level=logging.WARNING)
    dramatiq.Worker(broker, worker_threads=8).start()
    threading.Event().wait()  # the orchestrator stops this process


def enqueue(n: int) -> None:
    for _ in range(n):
        noop.send()


def send_one(ts: float) -> None:
    probe.send(ts)


if __name__ == "__main__":
    c.main(worker, enqueue, send_one, setup=lambda: broker.close)
