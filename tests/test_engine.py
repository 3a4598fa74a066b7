"""The engine end to end in one process: tasks run, retry, dead-letter, fire once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from chronctl import Scheduler, TaskStatus
from chronctl.backends.base import QueueBackend
from chronctl.backends.sqlite import SQLiteBackend
from chronctl.errors import ChronctlError, TaskNotFoundError, UnknownQueueError
from chronctl.events import Event, TaskEnqueued, TaskFailed
from chronctl.models import FireOutcome, Task, iso


@pytest.fixture
async def scheduler(backend: QueueBackend) -> AsyncIterator[Scheduler]:
    s = Scheduler(backend, workers=4, lease=5, shutdown_timeout=5)
    yield s
    await s.stop()


def waiter(s: Scheduler, name: str, count: int = 1) -> tuple[asyncio.Event, list[Event]]:
    """An asyncio.Event set once `count` events named `name` arrived."""
    done = asyncio.Event()
    seen: list[Event] = []

    def handler(event: Event) -> None:
        seen.append(event)
        if len(seen) >= count:
            done.set()

    s.on(name, handler)
    return done, seen


async def wait(event: asyncio.Event, timeout: float = 10) -> None:
    await asyncio.wait_for(event.wait(), timeout)


async def test_enqueued_task_runs_once_with_args(scheduler: Scheduler) -> None:
    calls: list[tuple[Any, ...]] = []

    @scheduler.job()
    async def add(a: int, b: int, *, scale: int = 1) -> int:
        calls.append((a, b, scale))
        return (a + b) * scale

    done, _ = waiter(scheduler, "task_succeeded")
    await scheduler.start()
    task_id = await scheduler.enqueue("add", args=[2, 3], kwargs={"scale": 10})
    await wait(done)
    task = await scheduler.get_task(task_id)
    assert task is not None
    assert (task.status, task.result, task.attempt) == (TaskStatus.SUCCEEDED, 50, 0)
    assert calls == [(2, 3, 10)]


async def test_sync_job_runs_in_a_thread(scheduler: Scheduler) -> None:
    import threading

    @scheduler.job()
    def where() -> str:
        return threading.current_thread().name

    done, seen = waiter(scheduler, "task_succeeded")
    await scheduler.start()
    await scheduler.enqueue("where")
    await wait(done)
    assert seen[0].task is not None
    assert seen[0].task.result != threading.main_thread().name


async def test_retries_then_succeeds(scheduler: Scheduler) -> None:
    attempts: list[int] = []

    @scheduler.job(max_retries=3, retry_delay=0)
    async def flaky() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise RuntimeError(f"failure {len(attempts)}")
        return "ok"

    done, _ = waiter(scheduler, "task_succeeded")
    failed, _ = waiter(scheduler, "task_failed", 2)
    await scheduler.start()
    task_id = await scheduler.enqueue("flaky")
    await wait(done)
    await wait(failed)
    task = await scheduler.get_task(task_id)
    assert task is not None and (task.status, task.attempt, task.result) == (
        TaskStatus.SUCCEEDED,
        2,
        "ok",
    )
    runs = await scheduler.history("flaky")
    assert [(r.status, r.attempt, r.error) for r in reversed(runs)] == [
        (TaskStatus.FAILED, 0, "RuntimeError: failure 1"),
        (TaskStatus.FAILED, 1, "RuntimeError: failure 2"),
        (TaskStatus.SUCCEEDED, 2, None),
    ]


async def test_exhausted_retries_dead_letter_then_retry(scheduler: Scheduler) -> None:
    fail = True

    @scheduler.job(max_retries=1, retry_delay=0)
    def broken(x: int) -> int:
        if fail:
            raise ValueError(f"bad {x}")
        return x

    dead, _ = waiter(scheduler, "task_dead")
    await scheduler.start()
    task_id = await scheduler.enqueue("broken", args=[7])
    await wait(dead)
    [letter] = await scheduler.dead_letters()
    assert (letter.id, letter.status, letter.attempt, letter.error) == (
        task_id,
        TaskStatus.DEAD,
        2,
        "ValueError: bad 7",
    )
    assert letter.traceback and "ValueError: bad 7" in letter.traceback
    # The traceback starts at the job's own frame: the engine's frames are noise.
    assert "in broken" in letter.traceback and "chronctl/worker.py" not in letter.traceback
    fail = False
    done, _ = waiter(scheduler, "task_succeeded")
    assert await scheduler.retry_dead_letter(task_id)
    await wait(done)
    task = await scheduler.get_task(task_id)
    assert task is not None and (task.status, task.result, task.attempt) == (
        TaskStatus.SUCCEEDED,
        7,
        0,
    )
    assert len(await scheduler.history("broken")) == 3


async def test_timeout_fails_with_clear_error(scheduler: Scheduler) -> None:
    @scheduler.job(max_retries=0, timeout=0.2)
    async def slow() -> None:
        await asyncio.sleep(60)

    dead, _ = waiter(scheduler, "task_dead")
    await scheduler.start()
    task_id = await scheduler.enqueue("slow")
    await wait(dead)
    task = await scheduler.get_task(task_id)
    assert task is not None and task.error == "timed out after 0.2s"


async def test_priority_order_with_one_worker(backend: QueueBackend) -> None:
    s = Scheduler(backend, workers=1)
    order: list[str] = []

    @s.job()
    async def record(name: str) -> None:
        order.append(name)

    for name, priority in (("low", 1), ("mid", 5), ("high", 9), ("mid2", 5)):
        await s.enqueue("record", args=[name], priority=priority)
    done, _ = waiter(s, "task_succeeded", 4)
    await s.start()
    await wait(done)
    await s.stop()
    assert order == ["high", "mid", "mid2", "low"]


async def test_delayed_task_waits_for_its_time(scheduler: Scheduler) -> None:
    @scheduler.job()
    async def noop() -> float:
        return time.time()

    done, seen = waiter(scheduler, "task_succeeded")
    await scheduler.start()
    enqueued = time.time()
    await scheduler.enqueue("noop", delay=0.3)
    await wait(done)
    assert seen[0].task is not None and seen[0].task.result >= enqueued + 0.3


async def test_unknown_job_is_refused_and_dead_lettered(
    scheduler: Scheduler, backend: QueueBackend
) -> None:

    dead, _ = waiter(scheduler, "task_dead")
    await scheduler.start()
    await backend.enqueue(Task(job="os.system", args=["touch /tmp/pwned"]))
    await wait(dead)
    [letter] = await scheduler.dead_letters()
    assert letter.error == "unknown job 'os.system': not defined in the manifest"


async def test_cron_fire_runs_with_its_fire_key(scheduler: Scheduler) -> None:
    @scheduler.job(cron="* * * * * *")  # every second
    async def tick() -> str:
        return "tick"

    done, seen = waiter(scheduler, "task_succeeded")
    await scheduler.start()
    await wait(done)
    task = seen[0].task
    assert task is not None and task.fire_time is not None
    assert task.key == f"tick@{iso(task.fire_time)}"


def _minutes_ago(n: int) -> float:
    """A second past the minute n minutes back: exactly n cron minutes are due since then."""
    return (int(time.time() // 60) - n) * 60 + 1.0


async def _prime(backend: QueueBackend, job: str, last_fire: float) -> None:
    await backend.connect()
    await backend.job_state(job, last_fire - 3600)
    assert await backend.record_fire(job, last_fire, None, None) is FireOutcome.MISSED


async def test_misfires_in_grace_coalesce_into_one_run(backend: QueueBackend) -> None:
    s = Scheduler(backend, misfire_grace_time=600, coalesce=True)
    s.job(name="minutely", cron="* * * * *")(lambda: None)
    await _prime(backend, "minutely", _minutes_ago(5))
    await s.fire_due()
    assert len(await backend.list_tasks(job="minutely")) == 1


async def test_misfires_without_coalesce_run_each(backend: QueueBackend) -> None:
    s = Scheduler(backend, misfire_grace_time=600, coalesce=False)
    s.job(name="minutely", cron="* * * * *", max_instances=100)(lambda: None)
    await _prime(backend, "minutely", _minutes_ago(5))
    await s.fire_due()
    assert len(await backend.list_tasks(job="minutely")) == 5


async def test_fires_past_grace_are_missed_not_run(backend: QueueBackend) -> None:
    s = Scheduler(backend, misfire_grace_time=90, coalesce=True)
    s.job(name="minutely", cron="* * * * *")(lambda: None)
    missed, seen = waiter(s, "job_missed")
    await _prime(backend, "minutely", _minutes_ago(10))
    await s.fire_due()
    assert missed.is_set() and seen[0].data["count"] >= 8
    assert len(await backend.list_tasks(job="minutely")) == 1  # the one inside the grace


async def test_overlapping_fire_is_skipped(backend: QueueBackend) -> None:
    # No worker: the first fire's task stays pending, so later fires must be skipped.
    s = Scheduler(backend, role="scheduler")
    s.job(name="often", every=0.05)(lambda: None)
    skipped, seen = waiter(s, "job_skipped", 2)
    await s.start()
    await wait(skipped)
    await s.stop()
    await backend.connect()
    assert len(await backend.list_tasks(job="often")) == 1
    assert seen[0].data["reason"] == "max_instances reached"


async def test_paused_job_does_not_fire(backend: QueueBackend) -> None:
    s = Scheduler(backend, misfire_grace_time=600)
    s.job(name="minutely", cron="* * * * *")(lambda: None)
    skipped, seen = waiter(s, "job_skipped")
    await _prime(backend, "minutely", _minutes_ago(2))
    await s.pause_job("minutely")
    await s.fire_due()
    assert await backend.list_tasks(job="minutely") == []
    assert skipped.is_set() and seen[0].data["reason"] == "paused"


async def test_two_schedulers_on_one_sqlite_file_fire_once(tmp_path: Path) -> None:
    db = tmp_path / "shared.db"
    schedulers = [Scheduler(SQLiteBackend(db), misfire_grace_time=600) for _ in range(3)]
    for s in schedulers:
        s.job(name="minutely", cron="* * * * *")(lambda: None)
    await _prime(schedulers[0].backend, "minutely", _minutes_ago(3))
    for s in schedulers:
        await s.backend.connect()
    await asyncio.gather(*(s.fire_due() for s in schedulers))
    tasks = await schedulers[0].backend.list_tasks(job="minutely")
    assert len(tasks) == 1
    for s in schedulers:
        await s.backend.disconnect()


async def test_graceful_stop_returns_unfinished_tasks(backend: QueueBackend) -> None:
    s = Scheduler(backend, workers=2, shutdown_timeout=0.1)
    started = asyncio.Event()

    @s.job()
    async def forever() -> None:
        started.set()
        await asyncio.sleep(3600)

    await s.start()
    task_id = await s.enqueue("forever")
    await wait(started)
    await s.stop()
    await backend.connect()
    task = await backend.get_task(task_id)
    assert task is not None and (task.status, task.attempt) == (TaskStatus.PENDING, 0)


async def test_rate_limit_holds_and_does_not_starve_other_jobs(backend: QueueBackend) -> None:
    s = Scheduler(backend, workers=2, lease=5, shutdown_timeout=5)
    starts: list[float] = []
    order: list[str] = []

    @s.job(rate_limit=(5, 1.0), priority=9)  # outranks `other`, and always has work due
    async def limited() -> None:
        starts.append(time.monotonic())
        order.append("limited")

    @s.job(priority=1)
    async def other() -> None:
        order.append("other")

    done, _ = waiter(s, "task_succeeded", 13)
    async with s:
        for _ in range(12):
            await s.enqueue("limited")
        await s.enqueue("other")
        await wait(done, timeout=20)
    # Token bucket: a burst of 5, then 5 per second.
    for k, at in enumerate(starts):
        assert at - starts[0] >= (k - 5) / 5 - 0.02, (k, at - starts[0])
    # The limited job waited in the queue, not in the worker slots: `other` was not starved.
    assert order.index("other") <= 7, order


async def test_handlers_get_typed_events_by_name_or_class(scheduler: Scheduler) -> None:
    @scheduler.job(max_retries=1, retry_delay=0)
    def broken() -> None:
        raise ValueError("boom")

    by_class: list[TaskFailed] = []
    by_name: list[Event] = []
    every: list[Event] = []
    scheduler.on(TaskFailed, by_class.append)
    scheduler.on("task_failed", by_name.append)
    scheduler.on("*", every.append)
    dead, _ = waiter(scheduler, "task_dead")
    failed, _ = waiter(scheduler, "task_failed", 2)
    await scheduler.start()
    task_id = await scheduler.enqueue("broken")
    await wait(dead)
    await wait(failed)  # the retry may fail before the first failure's event is out
    assert by_class == by_name and [type(e) for e in by_class] == [TaskFailed, TaskFailed]
    first, last = sorted(by_class, key=lambda e: e.retry_at is None)
    assert (first.name, first.job, first.task.id) == ("task_failed", "broken", task_id)
    assert first.retry_at is not None and last.retry_at is None  # the second one went dead
    assert first.data == {"retry_at": first.retry_at}  # the untyped Event's view still reads
    assert sorted(type(e).__name__ for e in every) == sorted(
        ["TaskEnqueued", "TaskStarted", "TaskFailed", "TaskStarted", "TaskFailed", "TaskDead"]
    )
    # A broker may hand the task to this process's worker before enqueue() emits, so
    # only the enqueued event's task is checked, not its place in the order.
    (enqueued,) = [e for e in every if isinstance(e, TaskEnqueued)]
    assert enqueued.task.id == task_id
    with pytest.raises(ValueError, match="unknown event 'task_exploded'"):
        scheduler.on("task_exploded", every.append)


async def test_library_cancel_agrees_with_the_cli(scheduler: Scheduler) -> None:
    """`Scheduler.cancel_task` and `chronctl tasks cancel` call one function: a finished
    task is an error in both, not a quiet False in one of them."""

    @scheduler.job()
    def quick() -> int:
        return 1

    done, _ = waiter(scheduler, "task_succeeded")
    await scheduler.start()
    finished = await scheduler.enqueue("quick")
    await wait(done)
    with pytest.raises(ChronctlError, match="is already succeeded: nothing to cancel"):
        await scheduler.cancel_task(finished)
    with pytest.raises(TaskNotFoundError):
        await scheduler.cancel_task("no-such-task")
    later = await scheduler.enqueue("quick", delay=3600)
    cancelled = await scheduler.cancel_task(later)
    assert (cancelled.id, cancelled.status) == (later, TaskStatus.CANCELLED)
    with pytest.raises(ChronctlError, match="not in the dead letter queue"):
        await scheduler.retry_dead_letter(finished)  # as `dlq retry ID` refuses it


async def test_library_lists_the_queues_the_cli_lists(backend: QueueBackend) -> None:
    """The jobs' queues and the worker's show at zero; `queue_info` and `purge_queue`
    refuse a name the list does not show, as `queues purge` does."""
    s = Scheduler(backend, queues=["mail", "urgent"])

    @s.job(queue="mail")
    def send() -> None:
        pass

    try:
        await s.enqueue("send", queue="adhoc", delay=3600)
        listed = {q.name: (q.pending, q.running) for q in await s.list_queues()}
        assert listed == {"adhoc": (1, 0), "mail": (0, 0), "urgent": (0, 0)}
        assert (await s.queue_info("urgent")).pending == 0
        with pytest.raises(UnknownQueueError, match="did you mean 'mail'"):
            await s.purge_queue("mial")
        assert await s.purge_queue("adhoc") == 1
    finally:
        await s.stop()
