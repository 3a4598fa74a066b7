"""chronctl/schedule_admin.py on the memory backend: the rules the CLI tests check
through the console command, plus what is quicker to see in-process (how many backend
reads a listing takes, that the listing and `jobs next` agree)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import pytest

from chronctl import admin
from chronctl.backends.memory import MemoryBackend
from chronctl.errors import UnknownJobError, UsageError
from chronctl.jobs import JobSpec
from chronctl.manifest import Manifest, SchedulerConfig
from chronctl.models import JobState, Task, TaskStatus
from chronctl.schedule_admin import (
    add_schedule,
    edit_schedule,
    get_schedule,
    remove_schedule,
    reschedule_job,
    schedule_task,
    schedules_overview,
)
from chronctl.schedules import Schedule, ScheduleNotFound
from chronctl.triggers import CronTrigger

NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z


class CountingBackend(MemoryBackend):
    """Counts the reads a listing makes."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter[str] = Counter()

    async def list_schedules(self) -> list[Schedule]:
        self.calls["list_schedules"] += 1
        return await super().list_schedules()

    async def get_schedule(self, name: str) -> Schedule | None:
        self.calls["get_schedule"] += 1
        return await super().get_schedule(name)

    async def list_job_states(self) -> list[JobState]:
        self.calls["list_job_states"] += 1
        return await super().list_job_states()

    async def list_tasks(
        self,
        *,
        status: TaskStatus | Sequence[TaskStatus] | None = None,
        job: str | None = None,
        queue: str | None = None,
        limit: int | None = 100,
    ) -> list[Task]:
        self.calls["list_tasks"] += 1
        return await super().list_tasks(status=status, job=job, queue=queue, limit=limit)

    async def history(self, job: str | None = None, limit: int | None = 50) -> Any:
        self.calls["history"] += 1
        return await super().history(job, limit)


def manifest_jobs() -> dict[str, JobSpec]:
    return {
        "report": JobSpec("report", entrypoint="x:y", kwargs={"customer": 0}, queue="reports"),
        "nightly": JobSpec("nightly", entrypoint="x:y", trigger=CronTrigger("0 2 * * *")),
    }


@pytest.fixture
async def backend() -> Any:
    store = CountingBackend()
    async with store:
        yield store


async def test_add_refuses_taken_names_and_unknown_jobs_storing_nothing(
    backend: CountingBackend,
) -> None:
    jobs = manifest_jobs()
    added = await add_schedule(backend, jobs, "acme", "report", cron="0 9 * * *")
    assert await get_schedule(backend, "acme") == added
    with pytest.raises(UsageError, match="schedule 'acme' already exists"):
        await add_schedule(backend, jobs, "acme", "report", every="5m")
    with pytest.raises(UsageError, match="schedule 'nightly' already exists"):
        await add_schedule(backend, jobs, "nightly", "report", every="5m")
    with pytest.raises(UnknownJobError):
        await add_schedule(backend, jobs, "other", "nope", every="5m")
    with pytest.raises(UsageError, match="minute 61"):
        await add_schedule(backend, jobs, "other", "report", cron="61 * * * *")
    assert [s.name for s in await backend.list_schedules()] == ["acme"]
    assert (await get_schedule(backend, "acme")).cron == "0 9 * * *"


async def test_edit_remove_and_their_refusals(backend: CountingBackend) -> None:
    jobs = manifest_jobs()
    await add_schedule(backend, jobs, "acme", "report", cron="0 9 * * *", kwargs={"c": 1})
    edited = await edit_schedule(backend, jobs, "acme", every="1h")
    assert (edited.cron, edited.every, edited.kwargs) == (None, 3600.0, {"c": 1})
    with pytest.raises(ScheduleNotFound, match="jobs reschedule nightly"):
        await edit_schedule(backend, jobs, "nightly", every="1h")
    await reschedule_job(backend, jobs, "nightly", every="30m")
    with pytest.raises(UsageError, match="--reset"):
        await remove_schedule(backend, "nightly")
    assert (await remove_schedule(backend, "acme")).name == "acme"
    with pytest.raises(ScheduleNotFound):
        await remove_schedule(backend, "acme")


async def test_reschedule_stores_replaces_and_resets_an_override(backend: CountingBackend) -> None:
    jobs = manifest_jobs()
    first = await reschedule_job(backend, jobs, "nightly", cron="0 4 * * *")
    assert first is not None and first.override and first.job == "nightly"
    second = await reschedule_job(backend, jobs, "nightly", every="2h", jitter="10s")
    assert second is not None and (second.cron, second.every, second.jitter) == (None, 7200, 10)
    assert second.created == first.created
    assert await reschedule_job(backend, jobs, "nightly", reset=True) is None
    assert await backend.get_schedule("nightly") is None
    assert await reschedule_job(backend, jobs, "nightly", reset=True) is None  # a no-op
    with pytest.raises(UsageError, match="trigger only"):
        await reschedule_job(backend, jobs, "nightly", kwargs={"a": 1})
    with pytest.raises(UnknownJobError):
        await reschedule_job(backend, jobs, "nope", every="1h")


async def test_overview_shows_sources_overrides_pauses_orphans_and_last_results(
    backend: CountingBackend,
) -> None:
    jobs = manifest_jobs()
    await add_schedule(backend, jobs, "a@b", "report", cron="0 9 * * *", now=NOW - 50)
    await add_schedule(backend, jobs, "gone", "report", every="1h", now=NOW - 50)
    await reschedule_job(backend, jobs, "nightly", every="30m")
    await backend.set_job_paused("a@b", True)
    fired = Task(job="report", key="a@b@2027-01-15T07:00:00+00:00", created_at=NOW - 10)
    by_hand = Task(job="report", key="a@b", created_at=NOW - 5)  # not NAME@FIRE_TIME
    await backend.enqueue_many([fired, by_hand])
    views = {v.name: v for v in await schedules_overview(backend, jobs, NOW)}
    assert views["nightly"].source == "override" and views["nightly"].trigger == "every 30m"
    assert views["a@b"].paused and views["a@b"].last_result == "pending"
    assert views["gone"].last_result is None
    assert views["a@b"].next_fire is not None
    assert views["a@b"].next_fire.isoformat() == "2027-01-15T09:00:00+00:00"

    without = {k: v for k, v in manifest_jobs().items() if k != "report"}
    orphans = {v.name: v for v in await schedules_overview(backend, without, NOW)}
    assert orphans["gone"].orphaned and orphans["gone"].next_fire is None
    taken = {**manifest_jobs(), "gone": JobSpec("gone", entrypoint="x:y")}
    shadowed = [v for v in await schedules_overview(backend, taken, NOW) if v.source == "runtime"]
    assert [(v.name, v.orphaned) for v in shadowed] == [("a@b", False), ("gone", True)]
    with pytest.raises(UsageError, match="schedules remove gone"):
        await reschedule_job(backend, taken, "gone", every="1h")
    with pytest.raises(UnknownJobError):
        await schedule_task(backend, jobs, "nightly")  # an override is no runtime schedule


async def test_overview_reads_the_backend_a_fixed_number_of_times(
    backend: CountingBackend,
) -> None:
    jobs = manifest_jobs()
    for i in range(2_000):
        await add_schedule(
            backend, jobs, f"cust{i}", "report", cron=f"{i % 60} {i % 24} * * *", now=NOW
        )
    backend.calls.clear()
    views = await schedules_overview(backend, jobs, NOW)
    assert len(views) == 2_001
    # One read of schedules and states, one of tasks per job with a schedule: not per schedule.
    assert backend.calls == Counter(list_schedules=1, list_job_states=1, list_tasks=2)


async def test_the_listing_jobs_next_and_a_triggered_task_agree(backend: CountingBackend) -> None:
    jobs = manifest_jobs()
    await add_schedule(
        backend,
        jobs,
        "acme",
        "report",
        every="90m",
        kwargs={"customer": 42},
        priority=9,
        now=NOW - 1000,
    )
    await reschedule_job(backend, jobs, "nightly", cron="15 3 * * *", timezone="Asia/Tokyo")
    views = {v.name: v for v in await schedules_overview(backend, jobs, NOW)}
    stored = await admin.schedules_by_name(backend)
    states = await admin.job_states(backend)
    manifest = Manifest(None, SchedulerConfig(), jobs)
    for name in ("acme", "nightly"):
        fires = admin.job_next_fires(manifest, name, 1, states, NOW, schedules=stored)
        assert fires == [views[name].next_fire]
    task = await schedule_task(backend, jobs, "acme")
    assert (task.job, task.kwargs, task.priority, task.queue) == (
        "report",
        {"customer": 42},
        9,
        "reports",
    )
