"""Issue 17 on every backend: stored schedules (put/get/list/delete, the version a
running scheduler watches, and the notification a change raises)."""

from __future__ import annotations

import asyncio

import pytest

from chronctl.backends.base import QueueBackend
from chronctl.schedules import Schedule


def report(name: str, hour: int = 9, **fields: object) -> Schedule:
    return Schedule(
        name=name,
        job="report",
        cron=f"0 {hour} * * *",
        timezone="Europe/Paris",
        kwargs={"customer": name, "text": "é <b>\u2028"},
        created=1000.5,
        updated=1000.5,
        **fields,  # type: ignore[arg-type]
    )


async def test_put_create_stores_once_and_get_returns_every_field(backend: QueueBackend) -> None:
    start = await backend.schedules_version()
    first = report("acme", queue="reports", priority=7, jitter=2.5, args=[1, "a"])
    assert await backend.put_schedule(first, create=True)
    assert not await backend.put_schedule(report("acme", hour=10), create=True)
    got = await backend.get_schedule("acme")
    assert got == first
    assert await backend.get_schedule("nobody") is None
    assert await backend.schedules_version() != start


async def test_put_replace_changes_only_a_stored_schedule(backend: QueueBackend) -> None:
    assert not await backend.put_schedule(report("ghost"), create=False)
    assert await backend.get_schedule("ghost") is None
    await backend.put_schedule(report("acme"), create=True)
    before = await backend.schedules_version()
    edited = report("acme", hour=11)
    edited.updated = 2000.25
    assert await backend.put_schedule(edited, create=False)
    assert await backend.get_schedule("acme") == edited
    assert await backend.schedules_version() != before


async def test_list_returns_every_kind_by_name(backend: QueueBackend) -> None:
    override = Schedule(name="cleanup", job="cleanup", every=90.0, override=True, created=5.0)
    dated = Schedule(name="once", job="report", at="2030-01-02T03:04:05+01:00", created=6.0)
    for schedule in (report("zeta"), override, report("alpha"), dated):
        assert await backend.put_schedule(schedule, create=True)
    listed = await backend.list_schedules()
    assert [s.name for s in listed] == ["alpha", "cleanup", "once", "zeta"]
    assert listed[1] == override and listed[2] == dated


async def test_delete_removes_it_and_moves_the_version(backend: QueueBackend) -> None:
    await backend.put_schedule(report("acme"), create=True)
    await backend.put_schedule(report("globex"), create=True)
    before = await backend.schedules_version()
    assert await backend.delete_schedule("acme")
    assert not await backend.delete_schedule("acme")
    assert [s.name for s in await backend.list_schedules()] == ["globex"]
    after = await backend.schedules_version()
    assert after != before
    assert not await backend.delete_schedule("nobody")
    assert await backend.schedules_version() == after  # nothing changed, nothing to re-read


async def test_a_change_sets_schedules_changed_in_the_changing_process(
    backend: QueueBackend,
) -> None:
    backend.schedules_changed.clear()
    await backend.put_schedule(report("acme"), create=True)
    await asyncio.wait_for(backend.schedules_changed.wait(), 5.0)


async def test_two_concurrent_creates_of_one_name_store_one(backend: QueueBackend) -> None:
    results = await asyncio.gather(
        *(backend.put_schedule(report("acme", hour=h), create=True) for h in range(6))
    )
    assert results.count(True) == 1
    stored = await backend.get_schedule("acme")
    assert stored is not None and stored.cron == f"0 {results.index(True)} * * *"


@pytest.mark.parametrize("count", [300])
async def test_many_schedules_list_in_one_call(backend: QueueBackend, count: int) -> None:
    for i in range(count):
        await backend.put_schedule(report(f"c{i:04d}", hour=i % 24), create=True)
    listed = await backend.list_schedules()
    assert [s.name for s in listed] == [f"c{i:04d}" for i in range(count)]
    assert all(s.cron == f"0 {i % 24} * * *" for i, s in enumerate(listed))
