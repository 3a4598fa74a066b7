"""The backend contract (chronctl/backends/base.py), one suite for every backend."""

from __future__ import annotations

import asyncio
import time

import pytest

from chronctl.backends.base import LEASE_EXPIRED_ERROR, QueueBackend
from chronctl.models import FireOutcome, Task, TaskStatus


def task(job: str = "j", **fields: object) -> Task:
    return Task(job=job, **fields)  # type: ignore[arg-type]


async def claim_all(backend: QueueBackend, **kw: object) -> list[Task]:
    return await backend.dequeue(1000, **kw)  # type: ignore[arg-type]


async def test_roundtrip_keeps_args_and_kwargs(backend: QueueBackend) -> None:
    t = task(args=[1, "two", [3]], kwargs={"a": {"b": None}}, queue="q", priority=7)
    task_id, created = await backend.enqueue(t)
    assert created and task_id == t.id
    [got] = await backend.dequeue(5, worker="w1")
    assert (got.id, got.args, got.kwargs, got.queue, got.priority) == (
        t.id,
        [1, "two", [3]],
        {"a": {"b": None}},
        "q",
        7,
    )
    assert got.status is TaskStatus.RUNNING and got.worker == "w1" and got.deliveries == 1
    assert await backend.dequeue(5) == []


async def test_running_tasks_are_listed_by_status_queue_and_job(backend: QueueBackend) -> None:
    now = time.time()
    a1 = task("ja", queue="qa", created_at=now - 3, priority=9)
    b1 = task("jb", queue="qb", created_at=now - 2, priority=9)
    waiting = task("ja", queue="qa", created_at=now - 1, priority=1)
    for t in (a1, b1, waiting):
        await backend.enqueue(t)
    claimed = await backend.dequeue(2, worker="w")
    assert {t.id for t in claimed} == {a1.id, b1.id}
    running = await backend.list_tasks(status=TaskStatus.RUNNING)
    assert [t.id for t in running] == [b1.id, a1.id]  # newest first
    assert all(t.status is TaskStatus.RUNNING and t.worker == "w" for t in running)
    assert [t.id for t in await backend.list_tasks(status=TaskStatus.RUNNING, queue="qa")] == [
        a1.id
    ]
    assert [t.id for t in await backend.list_tasks(status=TaskStatus.RUNNING, job="jb")] == [b1.id]
    assert [t.id for t in await backend.list_tasks()] == [waiting.id, b1.id, a1.id]
    by_id = {t.id: t for t in claimed}
    by_id[a1.id].finished_at = time.time()
    assert await backend.acknowledge(by_id[a1.id])
    assert [t.id for t in await backend.list_tasks(status=TaskStatus.RUNNING)] == [b1.id]
    assert [
        t.id for t in await backend.list_tasks(status=[TaskStatus.RUNNING, TaskStatus.SUCCEEDED])
    ] == [b1.id, a1.id]


async def test_priority_then_time_then_fifo(backend: QueueBackend) -> None:
    now = time.time()
    low = task(priority=1, scheduled_at=now - 10)
    high_late = task(priority=9, scheduled_at=now - 1)
    high_early = task(priority=9, scheduled_at=now - 5)
    mid_a = task(priority=5, scheduled_at=now - 3)
    mid_b = task(priority=5, scheduled_at=now - 3)
    future_top = task(priority=9, scheduled_at=now + 3600)
    for t in (low, high_late, high_early, mid_a, mid_b, future_top):
        await backend.enqueue(t)
    got = await claim_all(backend)
    assert [t.id for t in got] == [high_early.id, high_late.id, mid_a.id, mid_b.id, low.id]
    assert await backend.next_due() == pytest.approx(future_top.scheduled_at)


async def test_next_due_tells_an_idle_worker_when_to_come_back(backend: QueueBackend) -> None:
    assert await backend.next_due() is None
    now = time.time()
    await backend.enqueue(task(queue="later", scheduled_at=now + 60))
    await backend.enqueue(task(queue="later", scheduled_at=now + 30))
    assert await backend.next_due() == pytest.approx(now + 30)
    await backend.enqueue(task(queue="held"))  # due now, but its queue is paused
    await backend.enqueue(task(queue="held", scheduled_at=now + 10))
    await backend.set_queue_paused("held", True)
    # a paused queue's tasks cannot be claimed: they do not count (resume wakes workers)
    assert await backend.next_due() == pytest.approx(now + 30)
    await backend.enqueue(task(queue="other", scheduled_at=now + 20))
    assert await backend.next_due() == pytest.approx(now + 20)
    assert await backend.next_due(["later"]) == pytest.approx(now + 30)
    assert await backend.next_due([]) is None
    await backend.set_queue_paused("held", False)
    # due now (RabbitMQ: its delivery wakes the worker; the next publish is at now + 10)
    assert (await backend.next_due() or 0) <= now + 10 + 0.01
    assert await backend.next_due(["later", "other"]) == pytest.approx(now + 20)


async def test_batches_never_overlap(backend: QueueBackend) -> None:
    await backend.enqueue_many([task(args=[i]) for i in range(50)])
    batches = await asyncio.gather(*(backend.dequeue(7, worker=f"w{i}") for i in range(10)))
    ids = [t.id for batch in batches for t in batch]
    assert len(ids) == 50 and len(set(ids)) == 50
    assert all(len(b) <= 7 for b in batches)


async def test_key_is_idempotent_while_active(backend: QueueBackend) -> None:
    first = task(key="k1")
    assert await backend.enqueue(first) == (first.id, True)
    assert await backend.enqueue(task(key="k1")) == (first.id, False)
    [got] = await backend.dequeue(1)
    assert await backend.enqueue(task(key="k1")) == (first.id, False)
    got.result = {"ok": True}
    assert await backend.acknowledge(got)
    again = task(key="k1")
    assert await backend.enqueue(again) == (again.id, True)


BULK = 5000  # five steps where a backend stores a big batch in steps (Redis: 1,000 each)


async def stored_args(backend: QueueBackend) -> list[int]:
    return sorted(t.args[0] for t in await backend.list_tasks(limit=None))


@pytest.mark.parametrize("cut", ["at-once", "after-a-step"])
async def test_interrupted_bulk_enqueue_then_the_same_batch_again_stores_each_task_once(
    backend: QueueBackend, cut: str
) -> None:
    """All or nothing, or resumable: a cancelled `enqueue_many` has stored exactly what
    `progress` heard of (nothing, on an atomic backend), and the same batch again,
    built afresh as a rerun of `enqueue --from` builds it, stores only the rest."""
    stored = 0
    stepped = asyncio.Event()

    def progress(count: int) -> None:
        nonlocal stored
        stored += count
        stepped.set()

    lines = [task(args=[i]) for i in range(BULK)]
    run = asyncio.ensure_future(backend.enqueue_many(lines, resume="batch-1", progress=progress))
    if cut == "at-once":
        await asyncio.sleep(0)
    else:
        await asyncio.wait(
            [run, asyncio.ensure_future(stepped.wait())], timeout=30, return_when="FIRST_COMPLETED"
        )
    run.cancel()
    try:
        first = await run
    except asyncio.CancelledError:
        first = None
    assert len(await stored_args(backend)) == stored
    if first is not None:  # finished before the cancellation could stop it
        assert stored == BULK and len(first) == BULK
        return
    assert stored < BULK
    again = [task(args=[i]) for i in range(BULK)]
    out = await backend.enqueue_many(again, resume="batch-1")
    assert await stored_args(backend) == list(range(BULK))  # each line once
    assert len(out) == BULK and sum(created for _, created in out) == BULK - stored
    assert {task_id for task_id, _ in out} == {t.id for t in await backend.list_tasks(limit=None)}


async def test_a_completed_batch_sent_again_is_a_new_batch(backend: QueueBackend) -> None:
    """Only an unfinished batch resumes; once complete, the same batch again is stored
    again, as on a backend that stores a batch in one transaction."""
    for _ in range(2):
        out = await backend.enqueue_many([task(args=[i]) for i in range(1500)], resume="b2")
        assert all(created for _, created in out)
    assert await stored_args(backend) == sorted(list(range(1500)) * 2)


async def test_a_cancelled_single_step_is_waited_for(backend: QueueBackend) -> None:
    """A step already sent cannot be recalled: a cancellation waits for its answer, so
    the caller learns the truth (here: stored) instead of guessing."""
    lines = [task(args=[i]) for i in range(200)]
    run = asyncio.ensure_future(backend.enqueue_many(lines))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    run.cancel()
    try:
        out = await run
    except asyncio.CancelledError:
        out = None
    assert len(await stored_args(backend)) == (0 if out is None else 200)


async def test_acknowledge_records_success_and_history(backend: QueueBackend) -> None:
    t = task(args=[2])
    await backend.enqueue(t)
    [got] = await backend.dequeue(1)
    got.result = [4, "four"]
    assert await backend.acknowledge(got)
    stored = await backend.get_task(t.id)
    assert stored is not None
    assert stored.status is TaskStatus.SUCCEEDED and stored.result == [4, "four"]
    assert stored.attempt == 0 and stored.finished_at is not None
    [run] = await backend.history()
    assert (run.task_id, run.status, run.attempt, run.result) == (
        t.id,
        TaskStatus.SUCCEEDED,
        0,
        [4, "four"],
    )


async def test_concurrent_acknowledgements_each_get_their_own_answer(backend: QueueBackend) -> None:
    # Backends may commit acknowledgements together; each caller still gets its own outcome.
    await backend.enqueue_many([task(args=[i]) for i in range(5)])
    claimed = await claim_all(backend)
    stale = Task.from_record({**claimed[0].to_record(), "deliveries": 99})
    for i, t in enumerate(claimed):
        t.result = i
    outcomes = await asyncio.gather(
        backend.acknowledge(stale), *(backend.acknowledge(t) for t in claimed[1:])
    )
    assert outcomes == [False, True, True, True, True]
    assert not await backend.acknowledge(claimed[1])  # already finished
    runs = await backend.history(limit=None)
    assert sorted(r.task_id for r in runs) == sorted(t.id for t in claimed[1:])
    assert {r.task_id: r.result for r in runs} == {t.id: t.result for t in claimed[1:]}
    first = await backend.get_task(claimed[0].id)
    assert first is not None and first.status is TaskStatus.RUNNING


async def test_reject_with_requeue_waits_for_retry_at(backend: QueueBackend) -> None:
    t = task(max_retries=1)
    await backend.enqueue(t)
    [got] = await backend.dequeue(1)
    got.error = "ValueError: boom"
    retry_at = time.time() + 3600
    assert await backend.reject(got, requeue=True, retry_at=retry_at)
    stored = await backend.get_task(t.id)
    assert stored is not None
    assert (stored.status, stored.attempt, stored.error) == (
        TaskStatus.PENDING,
        1,
        "ValueError: boom",
    )
    assert stored.scheduled_at == pytest.approx(retry_at)
    assert await backend.dequeue(1) == []  # not due yet
    assert not await backend.reject(got, requeue=False)  # no longer running: ignored
    assert (await backend.get_task(t.id)).status is TaskStatus.PENDING  # type: ignore[union-attr]


async def test_dead_letter_then_retry_keeps_id_and_history(backend: QueueBackend) -> None:
    t = task(max_retries=0)
    await backend.enqueue(t)
    [got] = await backend.dequeue(1)
    got.error = "RuntimeError: always"
    got.traceback = "Traceback: ..."
    assert await backend.reject(got, requeue=False)
    [letter] = await backend.list_tasks(status=TaskStatus.DEAD)
    assert (letter.id, letter.attempt, letter.error) == (t.id, 1, "RuntimeError: always")
    assert await backend.retry_dead([t.id, "no-such-id"]) == 1
    again = await backend.get_task(t.id)
    assert again is not None and (again.status, again.attempt) == (TaskStatus.PENDING, 0)
    [run] = await backend.history()
    assert (run.task_id, run.status, run.error) == (t.id, TaskStatus.FAILED, "RuntimeError: always")
    assert [x.id for x in await backend.dequeue(1)] == [t.id]


async def test_retry_all_dead_and_purge(backend: QueueBackend) -> None:
    ids = []
    for i in range(3):
        t = task(args=[i], max_retries=0)
        ids.append(t.id)
        await backend.enqueue(t)
    for got in await claim_all(backend):
        got.error = "x"
        await backend.reject(got, requeue=False)
    assert len(await backend.list_tasks(status=TaskStatus.DEAD)) == 3
    assert await backend.retry_dead([ids[0]]) == 1
    assert await backend.purge_dead(older_than=time.time() - 3600) == 0
    assert await backend.purge_dead() == 2
    assert await backend.retry_dead() == 0
    assert [t.id for t in await backend.list_tasks(status=TaskStatus.PENDING)] == [ids[0]]


async def test_expired_lease_comes_back_then_dead_letters(backend: QueueBackend) -> None:
    t = task(max_retries=1)
    await backend.enqueue(t)
    [first] = await backend.dequeue(1, lease=0, worker="crashed")
    assert await backend.recover_expired() == 1
    stored = await backend.get_task(t.id)
    assert stored is not None
    assert (stored.status, stored.attempt, stored.error) == (
        TaskStatus.PENDING,
        1,
        LEASE_EXPIRED_ERROR,
    )
    [second] = await backend.dequeue(1, lease=0, worker="crashed-again")
    assert second.deliveries == 2
    # The first worker's late outcome must not overwrite the newer delivery.
    first.result = "late"
    assert not await backend.acknowledge(first)
    assert await backend.recover_expired() == 1
    final = await backend.get_task(t.id)
    assert final is not None and final.status is TaskStatus.DEAD and final.attempt == 2
    assert [r.error for r in await backend.history()] == [LEASE_EXPIRED_ERROR] * 2


async def test_extend_lease_keeps_task_and_reports_lost(backend: QueueBackend) -> None:
    a, b = task(), task()
    await backend.enqueue_many([a, b])
    got = await backend.dequeue(2, lease=0, worker="w")
    assert await backend.extend_leases(got, 60) == set()
    assert await backend.recover_expired() == 0
    assert await backend.cancel_task(a.id)
    assert await backend.extend_leases(got, 60) == {a.id}
    assert (await backend.get_task(a.id)).status is TaskStatus.CANCELLED  # type: ignore[union-attr]


async def test_release_returns_without_counting_a_failure(backend: QueueBackend) -> None:
    t = task()
    await backend.enqueue(t)
    got = await backend.dequeue(1, worker="w")
    await backend.release(got)
    stored = await backend.get_task(t.id)
    assert stored is not None and (stored.status, stored.attempt) == (TaskStatus.PENDING, 0)
    assert [x.id for x in await backend.dequeue(1)] == [t.id]


async def test_release_until_lets_other_work_go_first(backend: QueueBackend) -> None:
    limited, other = task(priority=9), task(priority=1)
    await backend.enqueue(limited)
    [got] = await backend.dequeue(1, worker="w")
    await backend.enqueue(other)
    await backend.release([got], at=time.time() + 60)
    assert [x.id for x in await claim_all(backend)] == [other.id]
    stored = await backend.get_task(limited.id)
    assert stored is not None and (stored.status, stored.attempt) == (TaskStatus.PENDING, 0)


async def test_cancel_pending_is_never_claimed(backend: QueueBackend) -> None:
    t = task()
    await backend.enqueue(t)
    assert await backend.cancel_task(t.id)
    assert not await backend.cancel_task(t.id)
    assert not await backend.cancel_task("no-such-id")
    assert await backend.dequeue(10) == []
    assert (await backend.get_task(t.id)).status is TaskStatus.CANCELLED  # type: ignore[union-attr]


async def test_paused_queue_is_not_claimed(backend: QueueBackend) -> None:
    a, b = task(queue="mail"), task(queue="default")
    await backend.enqueue_many([a, b])
    await backend.set_queue_paused("mail", True)
    assert [t.id for t in await claim_all(backend)] == [b.id]
    queues = {q.name: q for q in await backend.list_queues()}
    assert (queues["mail"].pending, queues["mail"].paused) == (1, True)
    assert (queues["default"].running, queues["default"].paused) == (1, False)
    await backend.set_queue_paused("mail", False)
    assert [t.id for t in await claim_all(backend, queues=["mail"])] == [a.id]


async def test_list_queues_counts_active_tasks_and_keeps_paused_queues(
    backend: QueueBackend,
) -> None:
    """Listed: queues with pending (due, later, awaiting a retry) or running tasks, and
    paused ones, by name; a queue left with finished tasks only, or resumed while empty,
    is not (`queues list` adds the manifest's queues at zero)."""
    now = time.time()
    later, retried = task(queue="mail", scheduled_at=now + 60), task(queue="retry", max_retries=1)
    busy, done, cancelled = task(queue="work"), task(queue="done"), task(queue="gone")
    await backend.enqueue_many([task(queue="mail"), later, retried, busy, done, cancelled])
    claimed = {t.queue: t for t in await claim_all(backend, queues=["retry", "work", "done"])}
    assert await backend.reject(claimed["retry"], requeue=True, retry_at=now + 3600)
    assert await backend.acknowledge(claimed["done"])
    assert await backend.cancel_task(cancelled.id)
    await backend.set_queue_paused("idle", True)
    await backend.set_queue_paused("was", True)
    await backend.set_queue_paused("was", False)
    assert [q.to_public() for q in await backend.list_queues()] == [
        {"name": "idle", "pending": 0, "running": 0, "paused": True, "max_pending": None},
        {"name": "mail", "pending": 2, "running": 0, "paused": False, "max_pending": None},
        {"name": "retry", "pending": 1, "running": 0, "paused": False, "max_pending": None},
        {"name": "work", "pending": 0, "running": 1, "paused": False, "max_pending": None},
    ]


async def test_claim_from_several_named_queues_keeps_the_order(backend: QueueBackend) -> None:
    now = time.time()
    tasks = [task(queue=q, scheduled_at=now - 10 + i) for i, q in enumerate("abab")]
    await backend.enqueue_many([*tasks, task(queue="c", scheduled_at=now - 20)])
    claimed = await claim_all(backend, queues=["a", "b"])
    assert [t.id for t in claimed] == [t.id for t in tasks]


async def test_queue_filter_size_and_clear(backend: QueueBackend) -> None:
    await backend.enqueue_many([task(queue="a") for _ in range(3)] + [task(queue="b")])
    assert await backend.get_queue_size("a") == 3
    assert [t.queue for t in await claim_all(backend, queues=["b"])] == ["b"]
    assert await backend.clear("a") == 3
    assert await backend.get_queue_size("a") == 0


async def test_record_fire_is_exactly_once(backend: QueueBackend) -> None:
    fire = time.time() - 1
    outcomes = await asyncio.gather(
        *(
            backend.record_fire("cronjob", fire, task("cronjob", key=f"cronjob@{fire}"), 1)
            for _ in range(5)
        )
    )
    assert sorted(outcomes) == sorted([FireOutcome.ENQUEUED] + [FireOutcome.DUPLICATE] * 4)
    assert await backend.record_fire("cronjob", fire - 60, task("cronjob"), 1) is (
        FireOutcome.DUPLICATE
    )
    # The first fire's task is still pending: max_instances=1 skips the next one.
    assert await backend.record_fire("cronjob", fire + 60, task("cronjob"), 1) is (
        FireOutcome.SKIPPED
    )
    assert await backend.record_fire("cronjob", fire + 120, None, 1) is FireOutcome.MISSED
    await backend.set_job_paused("cronjob", True)
    assert await backend.record_fire("cronjob", fire + 180, task("cronjob"), None) is (
        FireOutcome.PAUSED
    )
    assert len(await backend.list_tasks(job="cronjob")) == 1
    state = await backend.job_state("cronjob", time.time())
    assert state.paused and state.last_fire == pytest.approx(fire + 180)


async def test_job_state_first_seen_is_kept(backend: QueueBackend) -> None:
    first = await backend.job_state("j", 1000.0)
    again = await backend.job_state("j", 2000.0)
    assert first.first_seen == again.first_seen == 1000.0
    await backend.set_job_paused("j", True)
    [state] = [s for s in await backend.list_job_states() if s.name == "j"]
    assert state.paused and state.first_seen == 1000.0


async def test_list_tasks_filters_newest_first(backend: QueueBackend) -> None:
    a = task(job="a", created_at=100.0)
    b = task(job="b", created_at=200.0, queue="q")
    c = task(job="a", created_at=300.0)
    await backend.enqueue_many([a, b, c])
    assert [t.id for t in await backend.list_tasks()] == [c.id, b.id, a.id]
    assert [t.id for t in await backend.list_tasks(job="a")] == [c.id, a.id]
    assert [t.id for t in await backend.list_tasks(queue="q")] == [b.id]
    assert [t.id for t in await backend.list_tasks(limit=1)] == [c.id]
    assert await backend.list_tasks(status=TaskStatus.DEAD) == []


async def test_cleanup_removes_old_finished_only(backend: QueueBackend) -> None:
    done, waiting = task(), task(scheduled_at=time.time() + 3600)
    await backend.enqueue_many([done, waiting])
    [got] = await backend.dequeue(1)
    got.finished_at = time.time() - 10 * 86400
    await backend.acknowledge(got)
    assert await backend.cleanup(time.time() - 7 * 86400) == 1
    assert await backend.get_task(done.id) is None
    assert await backend.history() == []
    assert await backend.get_task(waiting.id) is not None


async def test_wakeup_on_enqueue(backend: QueueBackend) -> None:
    waiter = asyncio.create_task(backend.wait_for_work(30))
    await asyncio.sleep(0)
    await backend.enqueue(task())
    await asyncio.wait_for(waiter, 5)


async def test_import_is_idempotent_and_keeps_state(backend: QueueBackend) -> None:
    """The migration target side: tasks keep id/status/attempt; a second import adds nothing."""
    from chronctl.models import JobState, Run

    pending = task(args=[1], priority=7, key="k1")
    dead = task(status=TaskStatus.DEAD, attempt=3, error="boom")
    run = Run(
        task_id=dead.id,
        job="j",
        queue="default",
        attempt=3,
        status=TaskStatus.FAILED,
        started_at=10.0,
        finished_at=11.0,
        error="boom",
    )
    state = JobState("nightly", first_seen=100.0, last_fire=500.0, paused=True)
    for _ in range(2):
        assert await backend.import_tasks([pending, dead]) in (2, 0)
        assert await backend.import_runs([run]) in (1, 0)
        await backend.import_job_states([state])
    assert len(await backend.list_tasks(limit=None)) == 2
    [got_dead] = await backend.list_tasks(status=TaskStatus.DEAD)
    assert (got_dead.id, got_dead.attempt, got_dead.error) == (dead.id, 3, "boom")
    assert [(r.task_id, r.error) for r in await backend.history()] == [(dead.id, "boom")]
    [js] = [s for s in await backend.list_job_states() if s.name == "nightly"]
    assert (js.first_seen, js.last_fire, js.paused) == (100.0, 500.0, True)
    # The imported pending task is claimable and its key still deduplicates.
    assert (await backend.enqueue(task(key="k1")))[0] == pending.id
    [claimed] = await backend.dequeue(10)
    assert (claimed.id, claimed.args, claimed.priority) == (pending.id, [1], 7)


async def test_process_heartbeats(backend: QueueBackend) -> None:
    from chronctl.models import Process

    a = Process("a", "host1", 11, "all", 100.0, 100.0, None)
    b = Process("b", "host2", 22, "worker", 200.0, 200.0, ["mail"])
    await backend.beat(a)
    await backend.beat(b)
    b.last_beat = 260.0
    await backend.beat(b)
    got = await backend.list_processes()
    assert [(p.id, p.host, p.pid, p.role, p.last_beat, p.queues) for p in got] == [
        ("a", "host1", 11, "all", 100.0, None),
        ("b", "host2", 22, "worker", 260.0, ["mail"]),
    ]
    await backend.forget_process("a")
    assert [p.id for p in await backend.list_processes()] == ["b"]
    # A day of silence: forgotten at the next beat of anyone.
    await backend.beat(Process("c", "h", 3, "all", 200.0 + 90_000, 200.0 + 90_000, None))
    assert [p.id for p in await backend.list_processes()] == ["c"]
