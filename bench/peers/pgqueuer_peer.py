"""PGQueuer: the worker is PGQueuer's own `pgq run bench.peers.pgqueuer_peer:main
--max-concurrent-tasks 20` (bench/systems.py; its least, twice the batch size:
unlimited, the `async def` body overruns redis-py's connection pool), else its
defaults (batch size 10, LISTEN/NOTIFY plus polling).

Everything lives in the run's PostgreSQL schema (PGQUEUER_SCHEMA = BENCH_NS, set
before pgqueuer is imported; the harness drops the schema after the run). Whoever
connects first installs PGQueuer's tables, under an advisory lock, so the client
(W1 prefill, before the worker) and the worker (W2, before the client) both work.

PGQueuer runs only `async def` entrypoints: the `def` body runs in
`asyncio.to_thread`, as PGQueuer's docs say to wrap blocking code. W1 uses the
list form of `Queries.enqueue` (one statement per BATCH jobs).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from bench import body
from bench.peers import _common as c

os.environ["PGQUEUER_SCHEMA"] = c.NS  # before pgqueuer reads its settings

import asyncpg
from pgqueuer import PgQueuer, Queries
from pgqueuer.db import AsyncpgDriver
from pgqueuer.models import Job

BATCH = 1_000
DSN = c.URL.split("?", 1)[0]
_LOCK = 0x70677175  # "pgqu": serialises the install between client and worker

if c.BODY == "async":
    ABODY = body.async_body()
else:
    BODY = body.sync_body()

    async def ABODY(ref: float) -> None:
        await asyncio.to_thread(BODY, ref)


async def connect() -> tuple[asyncpg.Connection, Queries]:
    conn = await asyncpg.connect(DSN)
    queries = Queries(AsyncpgDriver(conn))
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK)
    try:
        if not await queries.schema_is_installed():
            await queries.install()
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK)
    return conn, queries


@asynccontextmanager
async def main() -> AsyncIterator[PgQueuer]:
    """The factory `pgq run` starts (an async context manager, as PGQueuer requires)."""
    conn, _ = await connect()
    pgq = PgQueuer(AsyncpgDriver(conn))

    @pgq.entrypoint("task")
    async def task(job: Job) -> None:
        await ABODY(float(job.payload or b"0"))

    try:
        yield pgq
    finally:
        await conn.close()


class Client:
    """A sync face on one asyncpg connection and its own event loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.conn, self.queries = self.loop.run_until_complete(connect())

    async def _many(self, n: int) -> None:
        for start in range(0, n, BATCH):
            k = min(BATCH, n - start)
            await self.queries.enqueue(["task"] * k, [None] * k, [0] * k)

    def enqueue(self, n: int) -> None:
        self.loop.run_until_complete(self._many(n))

    def send_one(self, ref: float) -> None:
        self.loop.run_until_complete(self.queries.enqueue("task", repr(ref).encode()))

    def schedule_one(self, due: float) -> None:
        after = timedelta(seconds=max(0.0, due - time.time()))
        self.loop.run_until_complete(
            self.queries.enqueue("task", repr(due).encode(), execute_after=after)
        )

    def close(self) -> None:
        self.loop.run_until_complete(self.conn.close())
        self.loop.close()


make_client = Client
