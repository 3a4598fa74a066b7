"""Data an older chronctl stored in Redis (layout 1: a hash per task, st:pending, a set
of active ids per job) is converted when a current process connects, and runs on."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis as sync_redis

from chronctl.backends.redis import RedisBackend
from chronctl.models import Task, TaskStatus

from .conftest import REDIS_URL, need_service, redis_reachable, with_query

pytestmark = pytest.mark.services


@pytest.fixture(params=["redis", "redis-cluster"])
def store(request: pytest.FixtureRequest) -> Iterator[tuple[str, Any]]:
    """(a backend URL with a fresh prefix, a plain client of the same server)."""
    prefix = f"chronctl-test-{uuid.uuid4().hex[:10]}"
    if request.param == "redis":
        ok, why = redis_reachable()
        need_service("Redis", ok, why)
        url = with_query(REDIS_URL, prefix=prefix)
        db: Any = sync_redis.Redis.from_url(REDIS_URL, decode_responses=True)
    else:
        from redis.cluster import ClusterNode, RedisCluster

        from .redis_cluster import cluster_url

        seeds, why = cluster_url()
        need_service("Redis Cluster", seeds is not None, why)
        assert seeds is not None
        url = with_query(seeds, prefix=prefix)
        nodes = [n.split(":") for n in seeds.split("//")[1].split("/")[0].split(",")]
        db = RedisCluster(
            startup_nodes=[ClusterNode(h, int(p)) for h, p in nodes], decode_responses=True
        )
    try:
        yield url, db
    finally:
        for key in list(db.scan_iter(match="{" + prefix + "}*")):
            db.delete(key)
        db.close()


def _old_put(db: Any, p: str, task: dict[str, str], seq: int) -> None:
    """What layout 1's `put` (and a claim, for a running task) wrote, command by command."""
    tid, q, job, status = task["id"], task["queue"], task["job"], task["status"]
    db.hset(f"{p}t:{tid}", mapping={**task, "seq": str(seq)})
    db.set(f"{p}seq", str(seq))
    db.sadd(f"{p}queues", q)
    if status == "running":
        db.zadd(f"{p}lease:{q}", {tid: float(task["lease_until"])})
        db.zadd(f"{p}st:running", {tid: float(task["created_at"])})  # versions before 0.1
    else:
        db.zadd(f"{p}st:{status}", {tid: float(task["created_at"])})
    if status in ("pending", "running"):
        db.sadd(f"{p}active:{job}", tid)
    if status == "pending":
        if float(task["scheduled_at"]) <= time.time():
            score = (9 - int(task["priority"])) * 1e10 + float(task["scheduled_at"])
            db.zadd(f"{p}ready:{q}", {f"{seq:015d}:{tid}": score})
        else:
            db.zadd(f"{p}sched:{q}", {tid: float(task["scheduled_at"])})
        if task.get("key"):
            db.hset(f"{p}keys", task["key"], tid)


def _old(tid: str, status: str, **extra: str) -> dict[str, str]:
    now = time.time()
    fields = {
        "id": tid,
        "job": "j",
        "queue": "q",
        "status": status,
        "priority": "5",
        "attempt": "0",
        "max_retries": "3",
        "deliveries": "0",
        "scheduled_at": repr(now - 5),
        "created_at": repr(now - 5),
        "args": "[]",
        "kwargs": "{}",
    }
    return {**fields, **extra}


async def test_layout_1_data_is_upgraded_on_connect_and_runs(
    store: tuple[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    redis_url, db = store
    now = time.time()
    backend = RedisBackend(redis_url)
    p = backend.prefix
    ready = _old("a" * 24, "pending", args='[1, "x"]', kwargs='{"k": 2.5}', key="K", priority="7")
    later = _old("b" * 24, "pending", scheduled_at=repr(now + 3600), fire_time=repr(now - 60))
    running = _old(
        "c" * 24,
        "running",
        worker="w1",
        deliveries="1",
        started_at=repr(now - 1),
        lease_until=repr(now + 600),
    )
    dead = _old(
        "d" * 24,
        "dead",
        attempt="4",
        error="boom",
        traceback="Traceback ...",
        finished_at=repr(now - 2),
        created_at=repr(now - 9),
    )
    done = _old("e" * 24, "succeeded", result='{"ok": true}', output="hi\n", worker="")
    for seq, task in enumerate((ready, later, running, dead, done), start=1):
        _old_put(db, p, task, seq)
    pipe = db.pipeline(transaction=False)
    for n in range(1500):  # more than one SCAN page: several upgrade steps
        _old_put(
            pipe,
            p,
            _old(f"{n:024x}", "pending", job="bulk", queue="bulk", args=f"[{n}]"),
            10 + n,
        )
    pipe.execute()
    caplog.set_level(logging.INFO, "chronctl.redis")
    async with backend:
        assert "upgraded 1505 task(s) to storage layout 2" in caplog.text
        assert db.get(f"{p}layout") == "3"
        assert list(db.scan_iter(match=f"{p}t:*")) == []
        for gone in ("st:pending", "st:running", "active:j"):
            assert not db.exists(p + gone)
        got = await backend.get_task(ready["id"])
        assert got is not None
        assert (got.args, got.kwargs, got.key, got.priority, got.status) == (
            [1, "x"],
            {"k": 2.5},
            "K",
            7,
            TaskStatus.PENDING,
        )
        assert got.scheduled_at == float(ready["scheduled_at"])
        got_later = await backend.get_task(later["id"])
        assert got_later is not None and got_later.fire_time == float(later["fire_time"])
        got_dead = await backend.get_task(dead["id"])
        assert got_dead is not None
        assert (got_dead.status, got_dead.attempt, got_dead.error, got_dead.traceback) == (
            TaskStatus.DEAD,
            4,
            "boom",
            "Traceback ...",
        )
        assert got_dead.created_at == float(dead["created_at"])
        got_done = await backend.get_task(done["id"])
        assert got_done is not None
        assert (got_done.result, got_done.output) == ({"ok": True}, "hi\n")
        assert await backend.count_active("j") == 3
        assert await backend.count_active("bulk") == 1500
        assert await backend.get_queue_size("bulk") == 1500
        bulk = await backend.list_tasks(status=TaskStatus.PENDING, job="bulk", limit=None)
        assert sorted(t.args[0] for t in bulk) == list(range(1500))
        pending = await backend.list_tasks(status=TaskStatus.PENDING, job="j")
        assert {t.id for t in pending} == {ready["id"], later["id"]}
        assert [t.id for t in await backend.list_tasks(status=TaskStatus.RUNNING)] == [
            running["id"]
        ]
        # the key still holds while its task is active
        again = Task(job="j", queue="q", key="K")
        assert await backend.enqueue(again) == (ready["id"], False)
        [claimed] = await backend.dequeue(5, queues=["q"], worker="w2")
        assert claimed.id == ready["id"] and claimed.args == [1, "x"]
        claimed.finished_at = time.time()
        assert await backend.acknowledge(claimed)
        # the running task's worker still owns it
        [old_run] = [t for t in await backend.list_tasks(status=TaskStatus.RUNNING)]
        assert await backend.extend_leases([old_run], 60) == set()
        old_run.finished_at = time.time()
        assert await backend.acknowledge(old_run)
        assert await backend.count_active("j") == 1
        assert await backend.retry_dead([dead["id"]]) == 1
        [retried] = await backend.dequeue(5, queues=["q"], worker="w3")
        assert retried.id == dead["id"] and retried.attempt == 0
        assert {r.task_id for r in await backend.history()} == {ready["id"], running["id"]}
    # a second connect finds layout 3 and changes nothing
    caplog.clear()
    async with RedisBackend(redis_url) as second:
        assert "upgraded" not in caplog.text and "filed" not in caplog.text
        assert await second.count_active("j") == 2
        assert json.loads(db.hget(f"{p}tp:{later['id'][-3:]}", later["id"]))["j"] == "j"


async def test_layout_2_finished_tasks_are_filed_per_job_on_connect(
    store: tuple[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    """Layout 2 had no done:<status>:<job> sets: a layout 3 process files every finished
    task (several ZSCAN pages) and every job with history, so job-scoped retention
    finds rows stored before the upgrade."""
    redis_url, db = store
    now = time.time()
    backend = RedisBackend(redis_url)
    p = backend.prefix
    async with backend:
        tasks = [
            Task(job="a" if n % 2 else "b", created_at=now - 900 + n, scheduled_at=now - 1)
            for n in range(1200)
        ]
        await backend.enqueue_many(tasks)
        claimed = await backend.dequeue(1200, worker="w")
        for t in claimed:
            t.finished_at = now - 600
            assert await backend.acknowledge(t)
    # What layout 2 stored: the same, without the per-job sets.
    for key in db.scan_iter(match="{" + p[1:-2] + "}:done*"):
        db.delete(key)
    assert list(db.scan_iter(match="{" + p[1:-2] + "}:done*")) == []
    db.set(f"{p}layout", "2")
    caplog.set_level(logging.INFO, "chronctl.redis")
    async with RedisBackend(redis_url) as again:
        assert "filed 1202 finished task(s) and job(s) per job: storage layout 3" in caplog.text
        assert db.get(f"{p}layout") == "3"
        assert db.smembers(f"{p}donejobs") == {"a", "b"}
        assert db.zcard(f"{p}done:succeeded:a") == 600
        removed = await again.cleanup(now - 60, [TaskStatus.SUCCEEDED], job="a")
        assert removed == 600
        left = await again.list_tasks(status=TaskStatus.SUCCEEDED, limit=None)
        assert {t.job for t in left} == {"b"} and len(left) == 600
        assert {r.job for r in await again.history(limit=None)} == {"b"}
