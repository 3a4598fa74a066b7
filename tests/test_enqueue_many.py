"""`Scheduler.enqueue_many`: the library's bulk enqueue (one backend step per batch)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from chronctl import Scheduler, TaskStatus, UnknownJobError, UsageError
from chronctl.backends.sqlite import SQLiteBackend
from chronctl.events import Event


@pytest.fixture
async def scheduler(tmp_path: Path) -> AsyncIterator[Scheduler]:
    s = Scheduler(SQLiteBackend(tmp_path / "q.db"), workers=4, lease=5, shutdown_timeout=5)
    calls: list[tuple[str, int]] = []
    s.calls = calls  # type: ignore[attr-defined]

    @s.job()
    def send_email(to: str, n: int = 0) -> str:
        calls.append((to, n))
        return to

    @s.job()
    async def ping() -> None:
        calls.append(("ping", 0))

    yield s
    await s.stop()


async def test_every_item_runs_once_with_its_options(scheduler: Scheduler) -> None:
    seen: list[Event] = []
    done = asyncio.Event()

    def on_succeeded(event: Event) -> None:
        seen.append(event)
        if len(seen) == 4:
            done.set()

    scheduler.on("task_succeeded", on_succeeded)
    enqueued: list[Event] = []
    scheduler.on("task_enqueued", enqueued.append)
    ids = await scheduler.enqueue_many(
        [
            ("send_email", {"kwargs": {"to": "a@x"}}),
            ("send_email", {"args": ["b@x", 2], "priority": 9}),
            "ping",
            ("send_email", {"kwargs": {"to": "c@x", "n": 3}, "queue": "mail"}),
        ]
    )
    assert len(ids) == len(set(ids)) == 4
    assert [e.task.id for e in enqueued if e.task] == ids
    tasks = [await scheduler.get_task(i) for i in ids]
    assert [(t.job, t.priority, t.queue) for t in tasks if t] == [
        ("send_email", 5, "default"),
        ("send_email", 9, "default"),
        ("ping", 5, "default"),
        ("send_email", 5, "mail"),
    ]
    await scheduler.start()
    await asyncio.wait_for(done.wait(), 10)
    assert sorted(scheduler.calls) == [("a@x", 0), ("b@x", 2), ("c@x", 3), ("ping", 0)]  # type: ignore[attr-defined]
    for task_id in ids:
        task = await scheduler.get_task(task_id)
        assert task is not None and task.status == TaskStatus.SUCCEEDED


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        (("nope", {}), UnknownJobError),
        (("send_email", {"kwargs": {"to": "x"}, "colour": "red"}), UsageError),
        (("send_email", {"priority": 12}), UsageError),
        (("send_email", {"args": "not a list"}), UsageError),
    ],
)
async def test_a_bad_item_stores_nothing(
    scheduler: Scheduler, bad: tuple[str, dict[str, Any]], error: type[Exception]
) -> None:
    with pytest.raises(error):
        await scheduler.enqueue_many([("send_email", {"kwargs": {"to": "ok@x"}}), bad])
    assert await scheduler.backend.list_tasks() == []


async def test_a_key_that_exists_returns_the_existing_task(scheduler: Scheduler) -> None:
    first = await scheduler.enqueue("send_email", kwargs={"to": "a@x"}, key="k1")
    ids = await scheduler.enqueue_many(
        [("send_email", {"kwargs": {"to": "a@x"}, "key": "k1"}), "ping"]
    )
    assert ids[0] == first and ids[1] != first
    assert len(await scheduler.backend.list_tasks()) == 2


async def test_no_items_is_no_call(scheduler: Scheduler) -> None:
    assert await scheduler.enqueue_many([]) == []
