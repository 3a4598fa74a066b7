"""Time: skewed clocks and several schedulers never double-fire."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from chronctl import Scheduler
from chronctl.backends.base import QueueBackend
from chronctl.backends.sqlite import SQLiteBackend

pytestmark = pytest.mark.reliability


@pytest.fixture(params=["sqlite", "redis", "postgres"])
def make_backend(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[[], QueueBackend]]:
    """Three handles on one store, as three hosts would have (RabbitMQ fires through its
    state store, so SQLite, Redis and PostgreSQL cover it)."""
    if request.param == "sqlite":
        yield lambda: SQLiteBackend(tmp_path / "state.db")
        return
    if request.param == "postgres":
        from chronctl.backends.postgres import PostgresBackend

        from ..conftest import (
            POSTGRES_URL,
            need_service,
            postgres_reachable,
            postgres_schema,
        )

        ok, why = postgres_reachable()
        need_service("PostgreSQL", ok, why)
        schema = postgres_schema()
        yield lambda: PostgresBackend(POSTGRES_URL, schema=schema)

        async def drop_schema() -> None:
            async with PostgresBackend(POSTGRES_URL, schema=schema) as backend:
                await backend.drop_schema()

        asyncio.run(drop_schema())
        return
    from chronctl.backends.redis import RedisBackend

    from ..conftest import REDIS_URL, need_service, redis_reachable, with_query

    ok, why = redis_reachable()
    need_service("Redis", ok, why)
    url = with_query(REDIS_URL, prefix=f"chronctl-skew-{uuid.uuid4().hex[:8]}")
    yield lambda: RedisBackend(url)

    async def drop() -> None:
        backend = RedisBackend(url)
        async with backend:
            await backend.drop_everything()

    asyncio.run(drop())


def test_skewed_schedulers_fire_each_minute_once(make_backend: Callable[[], QueueBackend]) -> None:
    asyncio.run(_skewed(make_backend))


async def _skewed(make_backend: Callable[[], QueueBackend]) -> None:
    start = 1_800_000_000.0  # a round minute (divisible by 60)
    now = {"t": start}
    offsets = (-30.0, 0.0, 30.0)  # three hosts: one 30 s slow, one 30 s fast
    schedulers = []
    for offset in offsets:
        s = Scheduler(make_backend(), misfire_grace_time=120, clock=lambda o=offset: now["t"] + o)
        s.job(name="minutely", cron="* * * * *", concurrency_policy="allow")(lambda: None)
        await s.backend.connect()
        schedulers.append(s)
    # The job is first seen at `start`; walk ten minutes in 7 s steps, every host waking.
    await schedulers[1].backend.job_state("minutely", start)
    while now["t"] < start + 600:
        now["t"] += 7
        for s in schedulers:
            await s.fire_due()
    tasks = await schedulers[0].backend.list_tasks(job="minutely", limit=None)
    fires = sorted(t.fire_time for t in tasks if t.fire_time is not None)
    assert len(fires) == len(set(fires)), "a minute fired twice"
    # Every minute boundary the fast host reached was fired exactly once.
    assert fires == [start + 60 * i for i in range(1, len(fires) + 1)]
    assert len(fires) >= 10
    for s in schedulers:
        await s.backend.disconnect()
