"""What one `chronctl top` snapshot costs beside a large backlog (issue 19).

    python bench/top_snapshot.py --url sqlite:///top-bench.db --tasks 1000000
    python bench/top_snapshot.py --url 'postgresql://postgres@127.0.0.1/test?schema=topbench'

Stores `--tasks` pending tasks in two queues (in steps of 20,000), runs 550 of them
and sends 10 to the dead letters, leaves 40 running, then times each read a
snapshot makes and the whole snapshot, three times each; on PostgreSQL again
after ANALYZE (what autovacuum does shortly after a bulk load). Drops what it
stored (a SQLite file it created is deleted). Numbers depend on the machine: note it
with them.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from chronctl.backends import QueueBackend, from_url
from chronctl.backends.postgres import PostgresBackend
from chronctl.backends.redis import RedisBackend
from chronctl.models import Task, TaskStatus
from chronctl.overview import (
    FAILURE_LIMIT,
    HISTORY_WINDOW,
    RUNNING_LIMIT,
    Throughput,
    read_overview,
)


def timed(label: str, times: list[float]) -> None:
    print(f"{label:14s}", " ".join(f"{t:.3f}s" for t in times), flush=True)


async def three(call: Callable[[], Awaitable[Any]]) -> list[float]:
    out = []
    for _ in range(3):
        start = time.perf_counter()
        await call()
        out.append(time.perf_counter() - start)
    return out


async def measure(backend: QueueBackend) -> None:
    reads: dict[str, Callable[[], Awaitable[Any]]] = {
        "list_queues": backend.list_queues,
        "history": lambda: backend.history(None, limit=HISTORY_WINDOW),
        "running": lambda: backend.list_tasks(status=TaskStatus.RUNNING, limit=RUNNING_LIMIT),
        "dead letters": lambda: backend.list_tasks(status=TaskStatus.DEAD, limit=FAILURE_LIMIT),
        "count_dead": backend.count_dead,
        "processes": backend.list_processes,
    }
    for label, call in reads.items():
        timed(label, await three(call))
    counter = Throughput()
    timed("snapshot", await three(lambda: read_overview(backend, throughput=counter)))


async def main(url: str, tasks: int) -> None:
    sqlite = Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None
    if sqlite is not None and sqlite.exists():
        raise SystemExit(f"{sqlite} exists: give a new file (it is deleted afterwards)")
    backend = from_url(url)
    await backend.connect()
    try:
        start = time.perf_counter()
        for first in range(0, tasks, 20_000):
            await backend.enqueue_many(
                [
                    Task("echo", [i], queue="mail" if i % 4 == 0 else "default")
                    for i in range(first, min(tasks, first + 20_000))
                ]
            )
        print(f"stored {tasks} pending tasks in {time.perf_counter() - start:.1f}s", flush=True)
        claimed = await backend.dequeue(600, worker="bench")
        for task in claimed[:550]:
            task.finished_at = time.time()
            await backend.acknowledge(task)
        for task in claimed[550:560]:
            task.finished_at, task.error = time.time(), "boom"
            await backend.reject(task, requeue=False)
        await measure(backend)
        if isinstance(backend, PostgresBackend):
            # Right after a bulk load the planner has no statistics on the new rows
            # (autovacuum analyzes them within a minute or so): the same reads after.
            import asyncpg

            conn = await asyncpg.connect(backend.dsn)
            try:
                await conn.execute(f'ANALYZE "{backend.schema}".tasks, "{backend.schema}".runs')
            finally:
                await conn.close()
            print("after ANALYZE:", flush=True)
            await measure(backend)
    finally:
        if isinstance(backend, PostgresBackend):
            await backend.drop_schema()
        if isinstance(backend, RedisBackend):
            await backend.drop_everything()
        await backend.disconnect()
        if sqlite is not None:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{sqlite}{suffix}").unlink(missing_ok=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="sqlite:///top-bench.db")
    parser.add_argument("--tasks", type=int, default=1_000_000)
    args = parser.parse_args()
    asyncio.run(main(args.url, args.tasks))
