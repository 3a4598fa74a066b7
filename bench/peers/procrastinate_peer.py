"""Procrastinate: the worker is Procrastinate's own
`procrastinate --app=bench.peers.procrastinate_peer.app worker --concurrency 8`
(bench/systems.py), LISTEN/NOTIFY on (its default).

Everything lives in the run's PostgreSQL schema: the connector's connections set
`search_path` to BENCH_NS (the harness drops the schema after the run). Importing
this module applies Procrastinate's schema there once, under an advisory lock,
so whichever of the client (W1 prefill) and the worker (W2) comes first installs
it. A `def` task runs in Procrastinate's thread executor, an `async def` task on
its event loop. W1 uses `batch_defer_async` (one statement per BATCH jobs).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import psycopg
from procrastinate import App, PsycopgConnector
from procrastinate.schema import SchemaManager

from bench import body
from bench.peers import _common as c

BATCH = 1_000
DSN = c.URL.split("?", 1)[0]
OPTIONS = f"-c search_path={c.NS}"  # `ns` is alphanumeric: a valid schema name
_LOCK = 0x70726F63  # "proc": serialises the install between client and worker


def install() -> None:
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK,))
        try:
            row = conn.execute("SELECT to_regclass(%s)", (f"{c.NS}.procrastinate_jobs",))
            if row.fetchone() == (None,):
                conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{c.NS}"')  # type: ignore[arg-type]
                conn.execute(f'SET search_path TO "{c.NS}"')  # type: ignore[arg-type]
                conn.execute(SchemaManager.get_schema())
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK,))


install()
app = App(connector=PsycopgConnector(conninfo=DSN, kwargs={"options": OPTIONS}))

if c.BODY == "async":
    ABODY = body.async_body()

    @app.task(name="task")
    async def task(ref: float = 0.0) -> None:
        await ABODY(ref)

else:
    BODY = body.sync_body()

    @app.task(name="task")
    def task(ref: float = 0.0) -> None:
        BODY(ref)


class Client:
    """A sync face on the opened App and its own event loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.loop.run_until_complete(app.open_async())

    async def _many(self, n: int) -> None:
        for start in range(0, n, BATCH):
            await task.batch_defer_async(*({} for _ in range(min(BATCH, n - start))))

    def enqueue(self, n: int) -> None:
        self.loop.run_until_complete(self._many(n))

    def send_one(self, ref: float) -> None:
        self.loop.run_until_complete(task.defer_async(ref=ref))

    def schedule_one(self, due: float) -> None:
        at = datetime.fromtimestamp(due, UTC)
        self.loop.run_until_complete(task.configure(schedule_at=at).defer_async(ref=due))

    def close(self) -> None:
        self.loop.run_until_complete(app.close_async())
        self.loop.close()


make_client = Client
