"""What a claim costs on PostgreSQL with a big backlog (issue 18: O(log n) claims).

    python -m bench.postgres_claims [DUE] [LATER]

Stores DUE due tasks (queues a and b, priority 5) and LATER tasks of a higher priority
due in an hour (the backlog a claim must not read past), straight into the tables of a
schema of its own on CHRONCTL_BENCH_POSTGRES, then times `dequeue(16)` 100 times for all
queues, one named queue and two (each batch acknowledged), and `next_due`. The schema is
dropped at the end.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid

import asyncpg

from bench.harness import POSTGRES_URL
from chronctl.backends.postgres import PostgresBackend, parse_postgres_url

ROWS = (
    "INSERT INTO {s}.tasks (id, job, queue, priority, scheduled_at, status, created_at, "
    "args, kwargs) SELECT '{p}' || g, 'j', {queue}, {priority}, {at}, 'pending', {now}, '', '' "
    "FROM generate_series(1, {n}) g"
)


async def main(due: int, later: int) -> None:
    schema = f"chronctl_claims_{uuid.uuid4().hex[:8]}"
    backend = PostgresBackend(POSTGRES_URL, schema=schema)
    await backend.connect()
    try:
        conn = await asyncpg.connect(parse_postgres_url(POSTGRES_URL)[0])
        now, s = time.time(), f'"{schema}"'
        for prefix, n, queue, priority, at in (
            ("d", due, "CASE WHEN g % 2 = 0 THEN 'a' ELSE 'b' END", 5, f"{now} - 1000 + g * 1e-4"),
            ("f", later, "'a'", 9, f"{now} + 3600 + g * 1e-4"),
        ):
            await conn.execute(
                ROWS.format(s=s, p=prefix, queue=queue, priority=priority, at=at, now=now, n=n)
            )
        await conn.execute(f"VACUUM ANALYZE {s}.tasks")
        await conn.close()
        for label, queues in (("all queues", None), ("queue a", ["a"]), ("queues a,b", ["a", "b"])):
            took = []
            for _ in range(100):
                start = time.perf_counter()
                claimed = await backend.dequeue(16, queues=queues, worker="w")
                took.append(time.perf_counter() - start)
                assert len(claimed) == 16
                for task in claimed:
                    await backend.acknowledge(task)
            took.sort()
            print(
                f"{label}: dequeue(16) median {1000 * took[50]:.2f} ms, "
                f"p90 {1000 * took[90]:.2f} ms"
            )
        start = time.perf_counter()
        await backend.next_due(["b"])
        print(f"next_due(['b']): {1000 * (time.perf_counter() - start):.2f} ms")
    finally:
        await backend.drop_schema()
        await backend.disconnect()


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:3]]
    asyncio.run(main(*(args + [1_000_000, 200_000][len(args) :])))
