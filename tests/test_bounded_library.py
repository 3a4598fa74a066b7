"""Issue 20 in library use, where the CLI cannot reach (the memory backend): QueueFull,
a memory backend that stays flat, retention in a running Scheduler, and the metrics."""

from __future__ import annotations

import asyncio
import time

import pytest

from chronctl import QueueFull, Scheduler
from chronctl.backends.memory import MemoryBackend
from chronctl.metrics import Metrics
from chronctl.models import Task, TaskStatus
from chronctl.retention import RetentionPolicy, last_report

from .test_metrics import scrape


async def test_enqueue_past_max_pending_raises_queue_full_and_stores_nothing() -> None:
    s = Scheduler(MemoryBackend(), max_pending=2, queue_max_pending={"mail": 1})
    s.job(name="echo")(lambda: None)
    await s.enqueue("echo")
    await s.enqueue("echo")
    with pytest.raises(QueueFull) as full:
        await s.enqueue("echo")
    assert (full.value.queue, full.value.pending, full.value.limit) == ("default", 2, 2)
    assert str(full.value) == "queue 'default' is full: 2 pending (max_pending 2)"
    with pytest.raises(QueueFull, match=r"queue 'mail' is full: 0 pending \+ 2 new"):
        await s.enqueue_many([("echo", {"queue": "mail"}), ("echo", {"queue": "mail"})])
    assert await s.backend.get_queue_size("mail") == 0
    assert [(q.name, q.pending, q.max_pending) for q in await s.list_queues()] == [
        ("default", 2, 2),
        ("mail", 0, 1),
    ]


async def test_a_memory_backend_keeps_max_finished_tasks_and_runs() -> None:
    backend = MemoryBackend(max_finished=50)
    waiting = Task(job="j", scheduled_at=time.time() + 3600)
    await backend.enqueue(waiting)
    for _ in range(10):
        await backend.enqueue_many([Task(job="j") for _ in range(40)])
        for got in await backend.dequeue(100, worker="w"):
            got.finished_at = time.time()
            assert await backend.acknowledge(got)
    done = await backend.list_tasks(status=TaskStatus.SUCCEEDED, limit=None)
    assert len(done) == 50
    assert len(await backend.history(limit=None)) == 50
    assert [t.id for t in await backend.list_tasks(status=TaskStatus.PENDING)] == [waiting.id]
    assert len(backend._tasks) == 51  # the store itself, not only what is listed


async def until(check, what: str, timeout: float = 30.0):  # type: ignore[no-untyped-def]
    """Wait for the scheduler's background pass (no event marks it)."""
    deadline = time.monotonic() + timeout
    while not (value := await check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)
    return value


async def test_a_running_scheduler_applies_retention_and_metrics_show_it() -> None:
    backend = MemoryBackend()
    policy = RetentionPolicy(keep_history=2.0, keep_dead=None, max_dead=1)
    s = Scheduler(backend, workers=1, retention=policy, queue_max_pending={"default": 7})
    s.job(name="fail", max_retries=0)(lambda: 1 / 0)
    old = time.time() - 3600
    finished = [Task(job="gone", created_at=old, finished_at=old) for _ in range(3)]
    for t in finished:
        t.status = TaskStatus.SUCCEEDED
    await backend.import_tasks(finished)
    later = await s.enqueue("fail", delay=3600)
    metrics = Metrics(s, refresh=3600)
    async with s, metrics.serving(0) as port:
        dead = [await s.enqueue("fail") for _ in range(3)]

        async def dead_count() -> bool:
            return await backend.count_dead() == 3

        await until(dead_count, "three dead letters")
        report = await until(lambda: last_report(backend), "a retention pass")
        await until(lambda: _dead_ids(backend, {dead[-1]}), "max_dead to keep the newest")
        await metrics.update_gauges()
        text = await asyncio.to_thread(scrape, port)
    assert report.by and report.passes >= 1
    assert [await backend.get_task(t.id) for t in finished] == [None] * 3
    stored = await backend.get_task(later)
    assert stored is not None and stored.status is TaskStatus.PENDING
    assert 'chronctl_queue_max_pending{queue="default"} 7.0' in text
    assert "chronctl_retention_last_pass_timestamp_seconds" in text
    assert 'chronctl_retention_removed{kind="dead"} 2.0' in text


async def _dead_ids(backend: MemoryBackend, expected: set[str]) -> bool:
    listed = await backend.list_tasks(status=TaskStatus.DEAD, limit=None)
    return {t.id for t in listed} == expected


def test_manifest_limits_and_retention_keys() -> None:
    from chronctl.errors import ManifestError
    from chronctl.manifest import parse_manifest

    m = parse_manifest(
        '[scheduler]\nmax_pending = 10\nkeep_history = "2h"\nkeep_dead = "forever"\n'
        'max_dead = "forever"\n\n[queues.mail]\nmax_pending = 3\n\n'
        '[jobs.a]\ncommand = "true"\n'
    )
    assert (m.limits.max_pending("mail"), m.limits.max_pending("other")) == (3, 10)
    assert (m.config.keep_history, m.config.keep_dead, m.config.max_dead) == (7200.0, None, None)
    defaults = parse_manifest('[jobs.a]\ncommand = "true"\n')
    assert defaults.limits.max_pending("default") is None  # unlimited by default
    assert (defaults.config.keep_history, defaults.config.max_dead) == (30 * 86400.0, 10_000)
    with pytest.raises(ManifestError, match=r"key 'max_pendin': unknown key in \[queues\.mail\]"):
        parse_manifest("[queues.mail]\nmax_pendin = 3\n")
    with pytest.raises(ManifestError, match="key 'max_pending': must be at least 0"):
        parse_manifest("[queues.mail]\nmax_pending = -1\n")
    with pytest.raises(ManifestError, match="key 'keep_history'"):
        parse_manifest('[scheduler]\nkeep_history = "soon"\n')


def test_manifest_per_job_retention_keys() -> None:
    """`[jobs.NAME] keep_history`/`keep_dead` override [scheduler]'s for that job only;
    [defaults] refuses them (the default is [scheduler]'s, which covers every job)."""
    from chronctl.admin import retention_policy
    from chronctl.errors import ManifestError
    from chronctl.manifest import parse_manifest

    m = parse_manifest(
        '[scheduler]\nkeep_history = "1d"\n\n'
        '[jobs.audit]\ncommand = "true"\nkeep_history = "365d"\nkeep_dead = "forever"\n\n'
        '[jobs.noisy]\ncommand = "true"\nkeep_history = "1h"\n\n'
        '[jobs.plain]\ncommand = "true"\n'
    )
    assert (m.jobs["audit"].keep_history, m.jobs["audit"].keep_dead) == (365 * 86400.0, None)
    assert (m.jobs["plain"].keep_history, m.jobs["plain"].keep_dead) == ("default", "default")
    policy = retention_policy(m)
    assert policy.job_history == {"audit": 365 * 86400.0, "noisy": 3600.0}
    assert policy.job_dead == {"audit": None}
    assert policy.to_public()["jobs"] == {
        "audit": {"keep_history": 365 * 86400.0, "keep_dead": None},
        "noisy": {"keep_history": 3600.0},
    }
    # Only forever by default, but one job kept a minute: the pass runs every 30 s.
    quiet = RetentionPolicy(None, None, None, job_history={"x": 60.0})
    assert (quiet.active, quiet.interval) == (True, 30.0)
    assert not RetentionPolicy(None, None, None, job_history={"x": None}).active
    with pytest.raises(ManifestError, match=r"key 'keep_history': the default is \[scheduler\]"):
        parse_manifest('[defaults]\nkeep_history = "1d"\n\n[jobs.a]\ncommand = "true"\n')
    with pytest.raises(ManifestError, match=r"job 'a'.*key 'keep_dead'"):
        parse_manifest('[jobs.a]\ncommand = "true"\nkeep_dead = "0s"\n')


async def test_a_library_job_keeps_its_own_history() -> None:
    """JobSpec.keep_history (library use) is applied by a running Scheduler: the
    default pass (2 s) spares the job kept an hour."""
    from chronctl.jobs import JobSpec

    backend = MemoryBackend()
    s = Scheduler(backend, workers=1, retention=RetentionPolicy(2.0, None, None))
    s.add_job(JobSpec(name="kept", func=lambda: 1, keep_history=3600.0))
    old = time.time() - 60
    rows = [Task(job=job, created_at=old, finished_at=old) for job in ("kept", "gone")]
    for t in rows:
        t.status = TaskStatus.SUCCEEDED
    await backend.import_tasks(rows)
    async with s:
        await until(lambda: last_report(backend), "a retention pass")
    assert await backend.get_task(rows[1].id) is None
    assert await backend.get_task(rows[0].id) is not None


async def test_a_skipped_fire_is_stored_for_every_process_and_in_the_metrics() -> None:
    """A fire into a full queue: the backend note `skip:<job>` (what `jobs list` reads),
    the gauge of its fire time, and one counter label however many are pending."""
    from chronctl.admin import jobs_overview
    from chronctl.backpressure import last_skip

    backend = MemoryBackend()
    s = Scheduler(backend, workers=0, queue_max_pending={"default": 0})
    s.job(name="tick", every=1)(lambda: None)
    skipped = asyncio.Event()
    s.events.on("job_skipped", lambda _: skipped.set())
    metrics = Metrics(s, refresh=3600)
    async with s, metrics.serving(0) as port:
        await asyncio.wait_for(skipped.wait(), 10)
        await metrics.update_gauges()
        text = await asyncio.to_thread(scrape, port)
        skip = await last_skip(backend, "tick")
        [row] = await jobs_overview(backend, s.jobs.values())
    assert skip is not None
    assert skip.reason == "queue 'default' is full: 0 pending (max_pending 0)"
    assert row.last_skip == skip
    assert 'chronctl_fires_skipped_total{job="tick",reason="queue full"}' in text
    [gauge] = [
        line.split()[-1]
        for line in text.splitlines()
        if line.startswith('chronctl_job_last_skip_timestamp_seconds{job="tick"}')
    ]
    assert float(gauge) == skip.fire_time
