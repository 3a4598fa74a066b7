"""Dramatiq: `RedisBroker(namespace=<run>)` or `RabbitmqBroker`, default middleware
(plus Dramatiq's AsyncIO middleware for the `async def` body). The worker is
Dramatiq's own `dramatiq bench.peers.dramatiq_peer -p 1 -t 8` (bench/systems.py).
No bulk send: W1 calls `send()` N times (RabbitMQ without publisher confirms,
Dramatiq's default).
"""

from __future__ import annotations

import time

import dramatiq
from dramatiq.broker import Broker

from bench import body
from bench.peers import _common as c


def make_broker() -> Broker:
    if c.BACKEND == "rabbitmq":
        from dramatiq.brokers.rabbitmq import RabbitmqBroker

        broker: Broker = RabbitmqBroker(url=c.URL)
    else:
        from dramatiq.brokers.redis import RedisBroker

        broker = RedisBroker(url=c.URL, namespace=c.NS)
    if c.BODY == "async":
        from dramatiq.middleware.asyncio import AsyncIO

        broker.add_middleware(AsyncIO())
    return broker


broker = make_broker()
dramatiq.set_broker(broker)

if c.BODY == "async":
    ABODY = body.async_body()

    @dramatiq.actor(actor_name="task", queue_name=c.NS, max_retries=0)
    async def task(ref: float = 0.0) -> None:
        await ABODY(ref)

else:
    BODY = body.sync_body()

    @dramatiq.actor(actor_name="task", queue_name=c.NS, max_retries=0)
    def task(ref: float = 0.0) -> None:
        BODY(ref)


def enqueue(n: int) -> None:
    for _ in range(n):
        task.send()


def send_one(ref: float) -> None:
    task.send(ref)


def schedule_one(due: float) -> None:
    task.send_with_options(args=(due,), delay=max(0, int((due - time.time()) * 1000)))


def make_client() -> c.Client:
    return c.Plain(enqueue, send_one, schedule_one, broker.close)
