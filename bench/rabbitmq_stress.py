"""Many in-process W1 runs on RabbitMQ, each under a watchdog (issue 15).

Why it exists: one W1 run in about 14 hung with every task `succeeded` in
the state store and the broker queue empty, while fewer `task_succeeded`
events than tasks reached the handler. A single run rarely shows it, so this
repeats the run and, when one does not finish within `--timeout` seconds,
reports it as stalled with the three counts that tell the cases apart:

- state store `succeeded`: how many tasks were really acknowledged;
- events: for how many tasks the handler saw `task_succeeded` (and how many
  tasks it saw twice, which must stay 0);
- broker: messages ready in the broker queue (0 = nothing left to deliver).

A short `--lease` makes the lease heartbeat (every lease/3) beat many times
per run, so the race between renewal and acknowledgement shows up in a few
runs instead of dozens. Each run uses its own broker queue and exchange
names and state file, so runs (and other users of the broker) never mix.

    python -m bench.rabbitmq_stress --runs 20 --tasks 20000 --lease 0.3
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from chronctl import Scheduler
from chronctl.backends import from_url
from chronctl.backends.rabbitmq import RabbitMQBackend
from chronctl.errors import BackendUnavailableError
from chronctl.models import TaskStatus
from chronctl.scheduler import build_task

from .harness import AMQP_URL

AMQP_PORT = urlsplit(AMQP_URL).port or 5672


async def _noop() -> None:
    return None


@dataclass
class Outcome:
    """One run: finished, or stalled with the counts that say where tasks got stuck."""

    run: int
    seconds: float
    stalled: bool
    succeeded: int
    events: int
    duplicates: int
    broker_ready: int
    #: succeeded tasks whose event never came, by (attempt, deliveries): attempt > 0 means
    #: the task was recovered (its lease ran out) and ran again
    missing: dict[tuple[int, int], int]
    outages: int  # broker connection warnings during the run (someone restarted it)
    dropped: int  # connections the broker closed on purpose (--drop-connection-after)


async def _broker_ready(url: str, queue: str) -> int:
    """Messages ready in `queue`, from a connection of our own (passive declare)."""
    import aio_pika

    conn = await aio_pika.connect(url)
    try:
        channel = await conn.channel()
        declared = await channel.declare_queue(queue, passive=True)
        return declared.declaration_result.message_count or 0
    finally:
        await conn.close()


class _Outages(logging.Handler):
    """Counts aio-pika/aiormq warnings: a lost or refused broker connection."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


def _own_connections() -> list[str]:
    """RabbitMQ's names ("127.0.0.1:port -> 127.0.0.1:5672") of this process's connections."""
    out = subprocess.run(
        ["ss", "-tnpH", f"dport = :{AMQP_PORT}"], capture_output=True, text=True, check=True
    ).stdout
    mine = f"pid={os.getpid()},"
    names = []
    for line in out.splitlines():
        fields = line.split()
        if mine in line and len(fields) >= 5:
            names.append(f"{fields[3]} -> {fields[4]}")
    return names


async def _drop_connections(after: float) -> int:
    """After `after` seconds, have the broker close this process's connections (as a broker
    restart would, but for us alone: other users of the broker are left alone); how many."""
    await asyncio.sleep(after)
    mine = set(_own_connections())
    listed = await asyncio.to_thread(
        subprocess.run,
        ["rabbitmqctl", "-q", "list_connections", "name", "pid"],
        capture_output=True,
        text=True,
        check=False,
    )
    closed = 0
    for line in listed.stdout.splitlines():
        name, _, pid = line.rpartition("\t")
        if name in mine:
            done = await asyncio.to_thread(
                subprocess.run,
                ["rabbitmqctl", "-q", "close_connection", pid, "stress: dropped on purpose"],
                capture_output=True,
                check=False,
            )
            closed += done.returncode == 0
    return closed


async def one_run(
    run: int, *, tasks: int, workers: int, lease: float, timeout: float, drop: float | None
) -> Outcome:
    """Enqueue `tasks` no-ops in bulk, let one Scheduler run them, wait at most `timeout`."""
    tag = uuid.uuid4().hex[:8]
    sep = "&" if "?" in AMQP_URL else "?"
    url = f"{AMQP_URL}{sep}queue_name=stress-{tag}&exchange_name=stress-{tag}"
    with tempfile.TemporaryDirectory(prefix="chronctl-stress-") as state_dir:
        backend = from_url(url, state=f"sqlite:///{state_dir}/state.db")
        assert isinstance(backend, RabbitMQBackend)
        await backend.connect()
        scheduler = Scheduler(backend, workers=workers, lease=lease)
        scheduler.job(name="noop")(_noop)
        spec = scheduler.jobs["noop"]
        seen: set[str] = set()
        duplicates = 0
        done = asyncio.Event()

        def on_succeeded(event: Any) -> None:
            nonlocal duplicates
            duplicates += event.task.id in seen
            seen.add(event.task.id)
            if len(seen) >= tasks:
                done.set()

        scheduler.on("task_succeeded", on_succeeded)
        outages = _Outages()
        for name in ("aio_pika", "aiormq"):
            logging.getLogger(name).addHandler(outages)
        t0 = time.perf_counter()
        try:
            await backend.enqueue_many([build_task(spec, [], {}) for _ in range(tasks)])
            await scheduler.start()
            dropper = asyncio.create_task(_drop_connections(drop)) if drop is not None else None
            try:
                await asyncio.wait_for(done.wait(), timeout)
                stalled = False
            except TimeoutError:
                stalled = True
            dropped = 0
            if dropper is not None:
                dropper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    dropped = await dropper
            seconds = time.perf_counter() - t0
            await backend.connect()  # still connected unless stop() ran: idempotent
            rows = await backend.state.list_tasks(status=TaskStatus.SUCCEEDED, limit=None)
            ready = await _broker_ready(AMQP_URL, backend.broker_queue("default"))
            events = len(seen)
            missing = Counter((t.attempt, t.deliveries) for t in rows if t.id not in seen)
        finally:
            for name in ("aio_pika", "aiormq"):
                logging.getLogger(name).removeHandler(outages)
            await scheduler.stop()
            await backend.connect()
            await backend.delete_layout()
            await backend.disconnect()
    return Outcome(
        run,
        seconds,
        stalled,
        len(rows),
        events,
        duplicates,
        ready,
        dict(missing),
        outages.count,
        dropped,
    )


def _line(o: Outcome, tasks: int) -> str:
    state = "STALLED" if o.stalled else "ok"
    line = (
        f"run {o.run:3d}: {state:7s} {o.seconds:6.1f}s  state-store succeeded={o.succeeded}/"
        f"{tasks}  events={o.events}/{tasks} (twice: {o.duplicates})  broker ready={o.broker_ready}"
    )
    if o.missing:
        line += f"  no event, by (attempt, deliveries): {o.missing}"
    if o.outages:
        line += f"  broker connection warnings: {o.outages}"
    if o.dropped:
        line += f"  connections dropped on purpose: {o.dropped}"
    return line


async def main_async(args: argparse.Namespace) -> int:
    stalls = 0
    for run in range(1, args.runs + 1):
        try:
            outcome = await one_run(
                run,
                tasks=args.tasks,
                workers=args.workers,
                lease=args.lease,
                timeout=args.timeout,
                drop=args.drop_connection_after,
            )
        except BackendUnavailableError as exc:
            # Down at the start or the end of a run (a shared broker being restarted): the
            # run says nothing about stalls; not counted.
            print(f"run {run:3d}: not counted: {exc}", flush=True)
            await asyncio.sleep(5)
            continue
        stalls += outcome.stalled or outcome.duplicates > 0
        print(_line(outcome, args.tasks), flush=True)
        if outcome.stalled and args.stop_on_stall:
            break
    print(f"{stalls} stalled (or with a duplicate event) of {run} run(s)", flush=True)
    return 1 if stalls else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.rabbitmq_stress", description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument(
        "--lease", type=float, default=0.3, help="seconds; the heartbeat renews every lease/3"
    )
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="seconds before a run counts as stalled"
    )
    parser.add_argument(
        "--drop-connection-after",
        type=float,
        default=None,
        help="seconds into each run when the broker closes this process's connections "
        "(rabbitmqctl close_connection: needs the broker on this host)",
    )
    parser.add_argument("--stop-on-stall", action="store_true", help="stop at the first stall")
    return asyncio.run(main_async(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
