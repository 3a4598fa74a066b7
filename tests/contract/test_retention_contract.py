"""Issue 20 on every backend: limited cleanup/purge steps, the dead count, notes, and
the retention pass with its lease (chronctl/retention.py)."""

from __future__ import annotations

import time

from chronctl.backends.base import QueueBackend
from chronctl.models import Task, TaskStatus
from chronctl.retention import (
    HISTORY_STATUSES,
    RetentionPolicy,
    apply,
    last_report,
    take_lease,
)

DAY = 86400.0


async def finish(backend: QueueBackend, tasks: list[Task], finished: list[float], *, ok: bool):
    """Store `tasks`, claim them, and finish each (succeeded or dead) at its time."""
    await backend.enqueue_many(tasks)
    claimed = {t.id: t for t in await backend.dequeue(len(tasks), worker="w")}
    assert set(claimed) == {t.id for t in tasks}
    for t, at in zip(tasks, finished, strict=True):
        got = claimed[t.id]
        got.finished_at = at
        if ok:
            assert await backend.acknowledge(got)
        else:
            got.error = "boom"
            assert await backend.reject(got, requeue=False)


async def drain(step, limit: int) -> int:  # type: ignore[no-untyped-def]
    total = 0
    while True:
        count = await step()
        assert 0 <= count <= 2 * limit  # one short step: at most `limit` of each kind
        if count == 0:
            return total
        total += count


async def test_limited_cleanup_removes_old_rows_in_steps_and_nothing_else(
    backend: QueueBackend,
) -> None:
    now = time.time()
    old = [Task(job="j", created_at=now - 10 * DAY + i, scheduled_at=now - 1) for i in range(5)]
    recent = [Task(job="j", created_at=now - 60 + i, scheduled_at=now - 1) for i in range(2)]
    await finish(backend, old, [now - 9 * DAY + i for i in range(5)], ok=True)
    await finish(backend, recent, [now - 30, now - 20], ok=True)
    waiting = Task(job="j", created_at=now - 20 * DAY, scheduled_at=now + 3600)
    running = Task(job="j", created_at=now - 20 * DAY, scheduled_at=now - 1)
    await backend.enqueue(running)
    [claimed] = await backend.dequeue(1, worker="w2")
    assert claimed.id == running.id
    await backend.enqueue(waiting)

    removed = await drain(
        lambda: backend.cleanup(now - 7 * DAY, HISTORY_STATUSES, limit=2), limit=2
    )
    assert removed == 10  # five tasks and their five history rows
    for t in old:
        assert await backend.get_task(t.id) is None
    assert {r.task_id for r in await backend.history(limit=None)} == {t.id for t in recent}
    left = {t.id: t.status for t in await backend.list_tasks(limit=None)}
    assert left == {
        recent[0].id: TaskStatus.SUCCEEDED,
        recent[1].id: TaskStatus.SUCCEEDED,
        waiting.id: TaskStatus.PENDING,
        running.id: TaskStatus.RUNNING,
    }


async def test_limited_purge_dead_takes_the_oldest_and_count_dead_counts(
    backend: QueueBackend,
) -> None:
    now = time.time()
    dead = [
        Task(job="j", created_at=now - 100 + i, scheduled_at=now - 1, max_retries=0)
        for i in range(5)
    ]
    await finish(backend, dead, [now - 50 + i for i in range(5)], ok=False)
    assert await backend.count_dead() == 5
    assert await backend.purge_dead(None, limit=2) == 2
    assert await backend.count_dead() == 3
    kept = {t.id for t in await backend.list_tasks(status=TaskStatus.DEAD, limit=None)}
    assert kept == {t.id for t in dead[2:]}  # the newest kept
    assert await backend.purge_dead(now - 47.5, limit=10) == 1  # only dead[2] is older
    assert await backend.count_dead() == 2


async def test_notes_are_stored_and_replaced(backend: QueueBackend) -> None:
    assert await backend.get_note("x") is None
    await backend.set_note("x", '{"a": 1}')
    await backend.set_note("x", '{"a": 2}')
    assert await backend.get_note("x") == '{"a": 2}'


async def test_one_retention_pass_per_slot_and_its_report(backend: QueueBackend) -> None:
    assert await take_lease(backend, 1_000_020.0)
    assert not await take_lease(backend, 1_000_020.0)  # another process: no second pass
    assert not await take_lease(backend, 1_000_000.0)  # an older slot, late: no pass either
    now = time.time()
    done = [Task(job="j", created_at=now - 5 * DAY, scheduled_at=now - 1) for _ in range(3)]
    await finish(backend, done, [now - 4 * DAY] * 3, ok=True)
    dead = [
        Task(job="j", created_at=now - 100 + i, scheduled_at=now - 1, max_retries=0)
        for i in range(4)
    ]
    await finish(backend, dead, [now - 50 + i for i in range(4)], ok=False)
    policy = RetentionPolicy(keep_history=DAY, keep_dead=30 * DAY, max_dead=1)
    report = await apply(backend, policy, by="me")
    assert (report.finished, report.dead, report.passes, report.complete) == (6, 3, 1, True)
    assert [t.id for t in await backend.list_tasks(limit=None)] == [dead[-1].id]
    assert len(await backend.history(limit=None)) == 4  # the dead letters' runs are recent
    again = await apply(backend, policy, by="me")
    assert (again.finished, again.dead, again.total_finished, again.total_dead) == (0, 0, 6, 3)
    stored = await last_report(backend)
    assert stored is not None and (stored.passes, stored.by) == (2, "me")


async def test_a_late_finishing_old_task_does_not_block_older_finished_ones(
    backend: QueueBackend,
) -> None:
    """Created long ago but finished just now (it was delayed): kept, and the step goes
    past it to a task created later that finished long ago."""
    now = time.time()
    late = Task(job="j", created_at=now - 10 * DAY, scheduled_at=now - 1)
    early = Task(job="j", created_at=now - 9 * DAY, scheduled_at=now - 1)
    await finish(backend, [late, early], [now - 1, now - 8 * DAY], ok=True)
    assert await backend.cleanup(now - 7 * DAY, HISTORY_STATUSES, limit=1) == 2
    assert await backend.get_task(early.id) is None
    assert await backend.get_task(late.id) is not None


# -- per-job retention: job= and exclude_jobs= ---------------------------------------


async def finished_of(backend: QueueBackend, job: str, count: int, age: float, *, ok: bool):  # type: ignore[no-untyped-def]
    """`count` tasks of `job` finished `age` seconds ago (dead letters unless `ok`)."""
    now = time.time()
    tasks = [
        Task(job=job, created_at=now - age - 60 + i, scheduled_at=now - 1, max_retries=0)
        for i in range(count)
    ]
    await finish(backend, tasks, [now - age + i for i in range(count)], ok=ok)
    return tasks


async def jobs_left(backend: QueueBackend) -> dict[str, int]:
    """Tasks stored per job (history rows are checked apart)."""
    out: dict[str, int] = {}
    for t in await backend.list_tasks(limit=None):
        out[t.job] = out.get(t.job, 0) + 1
    return out


async def runs_left(backend: QueueBackend) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in await backend.history(limit=None):
        out[r.job] = out.get(r.job, 0) + 1
    return out


async def test_cleanup_scoped_to_one_job_or_all_but_some(backend: QueueBackend) -> None:
    """The default's steps (exclude_jobs) leave kept jobs' old rows alone, even when
    those are the oldest, and a job's own steps (job=) touch nothing else."""
    now = time.time()
    # The kept job's rows are the oldest and many: a step that read the oldest rows
    # first and skipped kept ones would spend itself on them.
    await finished_of(backend, "kept", 12, 20 * DAY, ok=True)
    await finished_of(backend, "short", 3, 10 * DAY, ok=True)
    await finished_of(backend, "other", 4, 10 * DAY, ok=True)
    await finished_of(backend, "other", 2, 60, ok=True)  # recent: stays

    step = lambda: backend.cleanup(  # noqa: E731
        now - 7 * DAY, HISTORY_STATUSES, limit=2, exclude_jobs=("kept", "short")
    )
    first = await step()
    assert first > 0  # the first step already reaches `other`, past the kept rows
    assert first + await drain(step, limit=2) == 8  # other's 4 old tasks + 4 history rows
    assert await jobs_left(backend) == {"kept": 12, "short": 3, "other": 2}
    assert await runs_left(backend) == {"kept": 12, "short": 3, "other": 2}

    removed = await drain(
        lambda: backend.cleanup(now - 7 * DAY, HISTORY_STATUSES, limit=2, job="short"), 2
    )
    assert removed == 6
    assert await jobs_left(backend) == {"kept": 12, "other": 2}
    assert await runs_left(backend) == {"kept": 12, "other": 2}
    # A job-scoped call with a cutoff that keeps everything of that job removes nothing.
    assert await backend.cleanup(now - 30 * DAY, HISTORY_STATUSES, limit=2, job="kept") == 0
    assert await backend.cleanup(now - 7 * DAY, HISTORY_STATUSES, job="kept") == 12
    assert await jobs_left(backend) == {"other": 2}
    assert await runs_left(backend) == {"other": 2}


async def test_purge_dead_scoped_to_one_job_or_all_but_some(backend: QueueBackend) -> None:
    now = time.time()
    kept = await finished_of(backend, "kept", 6, 20 * DAY, ok=False)
    await finished_of(backend, "other", 3, 10 * DAY, ok=False)
    recent = await finished_of(backend, "other", 1, 60, ok=False)
    step = lambda: backend.purge_dead(  # noqa: E731
        now - 7 * DAY, limit=2, exclude_jobs=("kept",)
    )
    assert await step() == 2
    assert await drain(step, limit=2) == 1
    dead = {t.id for t in await backend.list_tasks(status=TaskStatus.DEAD, limit=None)}
    assert dead == {t.id for t in kept + recent}
    assert await backend.purge_dead(now - 30 * DAY, limit=10, job="kept") == 0
    assert await backend.purge_dead(now - 7 * DAY, limit=4, job="kept") == 4
    assert await backend.purge_dead(now - 7 * DAY, job="other") == 0  # recent only
    assert await backend.count_dead() == 3


async def test_a_retention_pass_applies_each_jobs_own_keep(backend: QueueBackend) -> None:
    """keep_history 1 day by default; `long` keeps 30 days, `short` an hour, `always`
    forever; dead letters: `long` keeps them forever against a 1-day default."""
    for job in ("plain", "long", "short", "always"):
        await finished_of(backend, job, 2, 5 * DAY, ok=True)
        await finished_of(backend, job, 1, 2 * 3600, ok=True)
        await finished_of(backend, job, 1, 5 * DAY, ok=False)
    policy = RetentionPolicy(
        keep_history=DAY,
        keep_dead=DAY,
        max_dead=None,
        job_history={"long": 30 * DAY, "short": 3600.0, "always": None},
        job_dead={"long": None},
    )
    report = await apply(backend, policy, by="me")
    assert report.complete
    assert await jobs_left(backend) == {"plain": 1, "long": 4, "always": 3}
    # History rows: plain keeps its recent run and its dead letter's (5 days) is gone;
    # long and always keep all three runs of theirs plus the dead letter's.
    assert await runs_left(backend) == {"plain": 1, "long": 4, "always": 4}
    again = await apply(backend, policy, by="me")
    assert (again.finished, again.dead) == (0, 0)
