"""What the AMQP client alone can do on this machine: the floor under RabbitMQ W1.

    python -m bench.amqp_floor [--tasks 20000] [--url amqp://guest:guest@127.0.0.1/]

Publishes N persistent messages the way the RabbitMQ backend does (aio-pika,
publisher confirms, priority queue, 500 in flight), then consumes and acks
them with a prefetch of 48, and does nothing else: no state store, no
worker. Prints messages/s and CPU microseconds per message for this process
and, when the broker runs on this machine (a local `beam.smp`), for the
broker. chronctl's W1 on RabbitMQ cannot beat N / (publish time + consume
time) from this script. The queue gets a unique name and is deleted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import time
import uuid
from pathlib import Path


def _broker_cpu() -> float | None:
    """CPU seconds used so far by a local RabbitMQ (Erlang VM), or None."""
    try:
        pid = subprocess.run(
            ["pgrep", "-o", "beam.smp"], capture_output=True, text=True, check=False
        ).stdout.split()[0]
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat.rsplit(")", 1)[1].split()
    except (IndexError, OSError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(url: str, n: int) -> dict[str, float | None]:
    import aio_pika

    name = f"chronctl-floor-{uuid.uuid4().hex[:8]}"
    connection = await aio_pika.connect_robust(url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        queue = await channel.declare_queue(name, durable=True, arguments={"x-max-priority": 10})
        exchange = channel.default_exchange
        b0, c0, t0 = _broker_cpu(), time.process_time(), time.perf_counter()
        for start in range(0, n, 500):
            await asyncio.gather(
                *(
                    exchange.publish(
                        aio_pika.Message(
                            b'{"id": "%d"}' % i,
                            content_type="application/json",
                            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                            priority=5,
                            message_id=str(i),
                        ),
                        routing_key=name,
                    )
                    for i in range(start, min(n, start + 500))
                )
            )
        b1, c1, t1 = _broker_cpu(), time.process_time(), time.perf_counter()
        consumer_channel = await connection.channel()
        await consumer_channel.set_qos(prefetch_count=48)
        consumer_queue = await consumer_channel.get_queue(name)
        done = asyncio.Event()
        seen = 0

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal seen
            await message.ack()
            seen += 1
            if seen == n:
                done.set()

        tag = await consumer_queue.consume(on_message)
        await done.wait()
        b2, c2, t2 = _broker_cpu(), time.process_time(), time.perf_counter()
        await consumer_queue.cancel(tag)
        await consumer_channel.close()
        await queue.delete(if_unused=False, if_empty=False)
    finally:
        await connection.close()

    def per_msg(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else 1e6 * (b - a) / n

    return {
        "publish_per_s": n / (t1 - t0),
        "publish_cpu_us": per_msg(c0, c1),
        "publish_broker_cpu_us": per_msg(b0, b1),
        "consume_ack_per_s": n / (t2 - t1),
        "consume_cpu_us": per_msg(c1, c2),
        "consume_broker_cpu_us": per_msg(b1, b2),
        "end_to_end_ceiling_per_s": n / (t2 - t0),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.amqp_floor")
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument(
        "--url",
        default=os.environ.get("CHRONCTL_BENCH_AMQP", "amqp://guest:guest@127.0.0.1:5672/%2F"),
    )
    ns = parser.parse_args(argv)
    result = asyncio.run(measure(ns.url, ns.tasks))
    for key, value in result.items():
        print(f"{key:26} {'-' if value is None else f'{value:,.1f}'}")


if __name__ == "__main__":
    main()
