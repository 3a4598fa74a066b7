"""What the PostgreSQL backend adds to the contract: its URL, its schema's version, wakeups
across processes (LISTEN/NOTIFY), shared rate limits, keys inside one batch."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from chronctl.backends import from_url
from chronctl.backends.postgres import PostgresBackend, parse_postgres_url
from chronctl.errors import BackendError, UsageError
from chronctl.models import Task, TaskStatus
from tests.conftest import POSTGRES_URL, need_service, postgres_reachable, postgres_schema


def test_url_options_are_taken_out_of_the_dsn() -> None:
    dsn, options = parse_postgres_url(
        "postgresql://u:pw@db:5432/app?schema=jobs&sslmode=require&max_size=4"
    )
    assert dsn == "postgresql://u:pw@db:5432/app?sslmode=require"
    assert options == {"schema": "jobs", "max_size": 4}
    backend = from_url("postgres://u:pw@db/app?schema=jobs&min_size=0")
    assert isinstance(backend, PostgresBackend)
    assert (backend.schema, backend.min_size, backend.display_url) == (
        "jobs",
        0,
        "postgres://***@db/app?schema=jobs&min_size=0",
    )
    assert PostgresBackend("postgresql://db/app").schema == "chronctl"


@pytest.mark.parametrize(
    "query", ["schema=a-b", "schema=1abc", "schema=" + "x" * 64, "max_size=0", "min_size=x"]
)
def test_bad_url_options_are_refused(query: str) -> None:
    with pytest.raises(UsageError):
        PostgresBackend(f"postgresql://db/app?{query}")


@pytest.fixture
async def url() -> AsyncIterator[str]:
    ok, why = postgres_reachable()
    need_service("PostgreSQL", ok, why)
    schema = postgres_schema()
    yield f"{POSTGRES_URL}{'&' if '?' in POSTGRES_URL else '?'}schema={schema}"
    import asyncpg  # directly: a test may leave a schema the backend refuses to open

    conn = await asyncpg.connect(parse_postgres_url(POSTGRES_URL)[0])
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


async def test_a_newer_schema_version_is_refused(url: str) -> None:
    async with PostgresBackend(url) as backend:
        await backend._execute("UPDATE {s}.meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(BackendError, match="newer chronctl"):
        await PostgresBackend(url).connect()


@pytest.mark.parametrize("old", ["1", "2"])
async def test_an_older_schema_gets_the_per_job_retention_indexes_in_place(
    url: str, old: str
) -> None:
    """Schema 3 adds tasks_job_done and runs_job_finished: a schema 1 or 2 is brought up
    to date when a process connects, its rows untouched."""
    async with PostgresBackend(url) as backend:
        task_id, _ = await backend.enqueue(Task(job="j"))
        await backend._execute("DROP INDEX {s}.tasks_job_done")
        await backend._execute("DROP INDEX {s}.runs_job_finished")
        await backend._execute("UPDATE {s}.meta SET value = $1 WHERE key = 'schema_version'", old)
    async with PostgresBackend(url) as again:
        names = {
            r["indexname"]
            for r in await again._fetch(
                "SELECT indexname FROM pg_indexes WHERE schemaname = $1", again.schema
            )
        }
        assert {"tasks_job_done", "runs_job_finished"} <= names
        version = await again._fetchval("SELECT value FROM {s}.meta WHERE key = 'schema_version'")
        assert version == "3"
        assert (await again.get_task(task_id)) is not None


async def test_an_enqueue_in_another_process_wakes_an_idle_worker(url: str) -> None:
    """Two backends are two clients, as two processes would be: the NOTIFY sent in the
    enqueue's statement reaches a listener of the other (an event, not a time bound:
    the safety re-check would end a wait_for_work anyway)."""
    from chronctl.backends.postgres.listen import WakeListener

    async with PostgresBackend(url) as worker, PostgresBackend(url) as client:
        woken = asyncio.Event()
        listener = WakeListener(worker._open_connection, worker.channel, "test", woken.set)
        listener.start()
        try:
            await asyncio.wait_for(woken.wait(), 30)  # connected (it wakes once then)
            woken.clear()
            await client.enqueue(Task(job="j"))
            await asyncio.wait_for(woken.wait(), 30)
        finally:
            await listener.close()
        [got] = await worker.dequeue(1)
        assert got.job == "j"


async def test_rate_limit_is_shared_by_every_client(url: str) -> None:
    async with PostgresBackend(url) as a, PostgresBackend(url) as b:
        assert await a.acquire_rate("mail", 2, 60) == 0.0
        assert await b.acquire_rate("mail", 2, 60) == 0.0
        wait = await a.acquire_rate("mail", 2, 60)
        assert 0 < wait <= 60
        assert await b.acquire_rate("other", 2, 60) == 0.0


async def test_keys_repeated_in_one_batch_and_retried_dead_letters(url: str) -> None:
    async with PostgresBackend(url) as backend:
        first, second = Task(job="j", key="k"), Task(job="j", key="k")
        out = await backend.enqueue_many([first, second, Task(job="j")])
        assert out[:2] == [(first.id, True), (first.id, False)]
        # Two dead letters with one key, retried together: the newest keeps it.
        await backend.cancel_task(first.id)
        dead = [Task(job="j", key="d", status=TaskStatus.DEAD, finished_at=time.time())]
        dead.append(Task(job="j", key="d", status=TaskStatus.DEAD, finished_at=time.time()))
        assert await backend.import_tasks(dead) == 2
        assert await backend.retry_dead() == 2
        keys = {t.id: t.key for t in await backend.list_tasks(status=TaskStatus.PENDING)}
        assert (keys[dead[0].id], keys[dead[1].id]) == (None, "d")


async def test_a_schema_of_version_1_is_upgraded_in_place(url: str) -> None:
    """A schema written before stored schedules (no `schedules` table, version 1) gets
    the table and version 2 when opened, keeping its tasks; it then stores schedules."""
    from chronctl.backends.postgres.schema import SCHEMA_VERSION
    from chronctl.schedules import Schedule

    async with PostgresBackend(url) as old:
        await old._execute("DROP TABLE {s}.schedules")
        await old._execute("UPDATE {s}.meta SET value = '1' WHERE key = 'schema_version'")
        task_id, _ = await old.enqueue(Task(job="kept"))
    async with PostgresBackend(url) as backend:
        version = await backend._fetchval("SELECT value FROM {s}.meta WHERE key = 'schema_version'")
        assert int(version) == SCHEMA_VERSION
        kept = await backend.get_task(task_id)
        assert kept is not None and kept.job == "kept"
        assert await backend.schedules_version() == 0
        assert await backend.list_schedules() == []
        schedule = Schedule(name="nightly", job="report", cron="0 3 * * *", created=1.0)
        assert await backend.put_schedule(schedule, create=True)
        assert await backend.get_schedule("nightly") == schedule
        assert await backend.schedules_version() == 1


async def test_a_schedule_change_in_another_process_sets_schedules_changed(url: str) -> None:
    """Two backends are two clients, as two processes would be: a put, an edit and a
    delete on one each set the other's `schedules_changed` through its LISTEN connection
    (NOTIFY is delivered at the change's commit), and wake none of its workers."""
    from chronctl.schedules import Schedule

    async with PostgresBackend(url) as watcher, PostgresBackend(url) as editor:
        listener = watcher._listener
        assert listener is not None
        # Connected: its first (re)connect wakes the workers once, and LISTEN is on by then.
        await asyncio.wait_for(watcher._wakeup.wait(), 30)
        watcher._wakeup.clear()
        schedule = Schedule(name="acme", job="report", every=60.0, created=1.0)
        for change in (
            editor.put_schedule(schedule, create=True),
            editor.put_schedule(Schedule(name="acme", job="report", every=90.0), create=False),
            editor.delete_schedule("acme"),
        ):
            watcher.schedules_changed.clear()
            assert await change
            await asyncio.wait_for(watcher.schedules_changed.wait(), 2.0)
        assert not watcher._wakeup.is_set()  # a schedules payload is no work
        # An enqueue is: it wakes the watcher's workers, not its scheduler.
        watcher.schedules_changed.clear()
        await editor.enqueue(Task(job="j"))
        await asyncio.wait_for(watcher._wakeup.wait(), 2.0)
        assert not watcher.schedules_changed.is_set()
