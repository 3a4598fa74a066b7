"""Issue 17 in the engine, on every backend: a running scheduler fires stored schedules
and overrides, applies edits and removals without double or dropped fires, and leaves
orphans stored but unfired. (The CLI and three-process tests are in tests/cli.)"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest

from chronctl import Scheduler
from chronctl.backends.base import QueueBackend
from chronctl.backends.sqlite import SQLiteBackend
from chronctl.events import Event, JobFired
from chronctl.models import Task, iso
from chronctl.schedules import Schedule

T0 = 1_900_000_000.0  # 2030-03-17T17:46:40Z
HOUR = 1_900_000_800.0  # the next whole hour


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make(
    backend: QueueBackend, clock: Clock, *, trigger: bool = False, instances: int = 1
) -> Scheduler:
    s = Scheduler(backend, clock=clock, misfire_grace_time=30, role="scheduler")
    if trigger:
        s.job(name="report", every="1h", max_instances=instances)(lambda **kw: kw)
    else:
        s.job(name="report")(lambda **kw: kw)
    return s


def every(name: str, seconds: float, **fields: object) -> Schedule:
    return Schedule(name=name, job="report", every=seconds, created=T0, updated=T0, **fields)  # type: ignore[arg-type]


async def fired(backend: QueueBackend) -> list[Task]:
    return sorted(
        await backend.list_tasks(job="report", limit=None), key=lambda t: t.fire_time or 0
    )


async def test_a_stored_schedule_fires_its_job_with_its_arguments(backend: QueueBackend) -> None:
    clock = Clock(T0 + 61)
    s = make(backend, clock)
    await backend.put_schedule(
        every("acme", 60, kwargs={"customer": "acme"}, queue="reports", priority=8), create=True
    )
    await s.fire_due()
    [task] = await fired(backend)
    assert (task.job, task.kwargs, task.queue, task.priority) == (
        "report",
        {"customer": "acme"},
        "reports",
        8,
    )
    assert task.fire_time == T0 + 60 and task.key == f"acme@{iso(T0 + 60)}"
    await s.fire_due()  # the same occurrence again: nothing new
    assert len(await fired(backend)) == 1


async def test_each_schedule_of_one_job_fires_even_while_another_runs(
    backend: QueueBackend,
) -> None:
    clock = Clock(T0 + 61)
    s = make(backend, clock)
    for name in ("acme", "globex", "initech"):
        await backend.put_schedule(every(name, 60, kwargs={"customer": name}), create=True)
    await s.fire_due()
    assert sorted(t.kwargs["customer"] for t in await fired(backend)) == [
        "acme",
        "globex",
        "initech",
    ]


async def test_an_edit_moves_the_next_fire_and_never_fires_an_occurrence_twice(
    backend: QueueBackend,
) -> None:
    clock = Clock(T0 + 61)
    s = make(backend, clock)
    await backend.put_schedule(every("acme", 60), create=True)
    await s.fire_due()
    edited = every("acme", 60)
    edited.every, edited.cron = None, "0 * * * *"
    assert await backend.put_schedule(edited, create=False)
    clock.now = T0 + 125  # the old trigger's next occurrence (T0+120) is no longer one
    assert await s.fire_due() == HOUR
    assert [t.fire_time for t in await fired(backend)] == [T0 + 60]
    clock.now = HOUR + 1
    await s.fire_due()
    assert [t.fire_time for t in await fired(backend)] == [T0 + 60, HOUR]


async def test_a_removed_schedule_stops_firing(backend: QueueBackend) -> None:
    clock = Clock(T0 + 61)
    s = make(backend, clock)
    await backend.put_schedule(every("acme", 60), create=True)
    await backend.put_schedule(every("globex", 60), create=True)
    await s.fire_due()
    assert await backend.delete_schedule("acme")
    clock.now = T0 + 121
    await s.fire_due()
    names = [t.key.split("@")[0] for t in await fired(backend) if t.key]
    assert sorted(names) == ["acme", "globex", "globex"]


async def test_an_override_replaces_the_manifest_trigger(backend: QueueBackend) -> None:
    clock = Clock(T0)
    s = make(backend, clock, trigger=True)  # every hour from first seen (T0)
    await s.fire_due()
    override = Schedule(name="report", job="report", every=60, override=True, created=T0)
    await backend.put_schedule(override, create=True)
    clock.now = T0 + 61
    await s.fire_due()
    [task] = await fired(backend)
    assert task.fire_time == T0 + 60 and task.key == f"report@{iso(T0 + 60)}"
    assert await backend.delete_schedule("report")  # `jobs reschedule report --reset`
    clock.now = T0 + 200
    await s.fire_due()
    assert len(await fired(backend)) == 1  # back to hourly: next at T0 + 3600


async def test_an_orphan_is_kept_warned_about_and_never_fired(
    backend: QueueBackend, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock(T0 + 61)
    s = make(backend, clock)
    orphan = Schedule(name="old", job="gone", every=60, created=T0)
    await backend.put_schedule(orphan, create=True)
    with caplog.at_level(logging.WARNING, logger="chronctl.scheduler"):
        await s.fire_due()
        clock.now = T0 + 121
        await s.fire_due()
    assert await backend.list_tasks(job="gone") == []
    assert await backend.get_schedule("old") == orphan
    warnings = [r.getMessage() for r in caplog.records if "orphaned" in r.getMessage()]
    assert len(warnings) == 1 and "gone" in warnings[0]


async def test_a_change_from_another_process_reaches_a_running_loop(tmp_path: Path) -> None:
    """Real time: a second connection to the file adds a schedule; the running fire
    loop picks it up (version check about once a second) and fires it."""
    db = tmp_path / "shared.db"
    s = Scheduler(SQLiteBackend(db), role="scheduler")
    s.job(name="report")(lambda **kw: kw)
    fires: list[Event] = []
    first = asyncio.Event()

    def on_fire(event: Event) -> None:
        fires.append(event)
        first.set()

    s.on("job_fired", on_fire)
    await s.start()
    other = SQLiteBackend(db)
    try:
        await other.connect()
        import time

        now = time.time()
        await other.put_schedule(
            Schedule(name="acme", job="report", every=1.0, created=now, updated=now),
            create=True,
        )
        await asyncio.wait_for(first.wait(), 5.0)
        event = fires[0]
        assert isinstance(event, JobFired) and event.task.key is not None
        assert event.task.key.startswith("acme@")
    finally:
        await other.disconnect()
        await s.stop()


async def test_the_api_stores_schedules_every_scheduler_of_the_backend_fires(
    tmp_path: Path,
) -> None:
    """add_schedule / modify_schedule / reschedule_job / remove_schedule persist: a
    second scheduler on the file (another process, a restart) fires what the first
    stored, and the seed names are aliases of the same calls."""
    import time

    db = tmp_path / "shared.db"
    clock = Clock(time.time())  # the API stamps a schedule with the wall clock
    # No worker runs here: the manifest trigger's max_instances counts every active task
    # of the job, the runtime schedules' ones too.
    producer = make(SQLiteBackend(db), clock, trigger=True, instances=10)
    stored = await producer.add_schedule("acme", "report", every="1m", kwargs={"c": "acme"})
    assert (stored.every, stored.kwargs, stored.override) == (60.0, {"c": "acme"}, False)
    await producer.add_interval_job("globex", "report", "1m", kwargs={"c": "globex"})
    await producer.add_cron_job("initech", "report", "0 * * * *")
    await producer.modify_job("initech", kwargs={"c": "initech"})
    await producer.reschedule_job("report", every="2m")  # an override of the manifest trigger
    assert [s.name for s in await producer.list_schedules()] == [
        "acme",
        "globex",
        "initech",
        "report",
    ]
    assert (await producer.get_schedule("report")) is not None
    await producer.remove_job("globex")  # alias of remove_schedule
    assert await producer.get_schedule("globex") is None
    await producer.stop()

    backend = SQLiteBackend(db)
    worker = make(backend, clock, trigger=True, instances=10)  # a restart: nothing in memory
    clock.now = stored.created + 61
    await worker.fire_due()
    fires = {t.key.split("@")[0]: t for t in await fired(backend) if t.key}
    assert fires["acme"].kwargs == {"c": "acme"} and "globex" not in fires
    for name in ("initech", "report"):  # the hourly cron and the 2-minute override
        [when] = worker.next_fires(name, 1, after=datetime.fromtimestamp(clock.now, UTC))
        clock.now = when.timestamp() + 1
        await worker.fire_due()
    fires = {t.key.split("@")[0]: t for t in await fired(backend) if t.key}
    assert sorted(fires) == ["acme", "initech", "report"]
    assert fires["initech"].kwargs == {"c": "initech"} and fires["report"].kwargs == {}
    await worker.reschedule_job("report", reset=True)
    assert await worker.get_schedule("report") is None
    await worker.stop()


async def test_api_refusals_store_nothing(backend: QueueBackend) -> None:
    from chronctl.errors import TriggerError, UnknownJobError, UsageError

    s = make(backend, Clock(T0))
    with pytest.raises(UnknownJobError):
        await s.add_schedule("acme", "nope", every=60)
    with pytest.raises(TriggerError, match="61"):
        await s.add_schedule("acme", "report", cron="61 * * * *")
    with pytest.raises(UsageError, match="report"):
        await s.add_schedule("report", "report", every=60)  # a manifest job's name
    await s.add_schedule("acme", "report", every=60)
    with pytest.raises(UsageError, match="already"):
        await s.add_schedule("acme", "report", cron="0 9 * * *")
    assert [(x.name, x.every) for x in await s.list_schedules()] == [("acme", 60.0)]
