"""Chaos: workers killed with -9 at random while 2,000 tasks run; nothing is lost.

Set CHRONCTL_SOAK=N to run N times as many tasks (a longer soak).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from chronctl.backends import from_url
from chronctl.backends.rabbitmq import RabbitMQBackend
from chronctl.backends.redis import RedisBackend
from chronctl.models import Task, TaskStatus

from ..cli.helpers import ROOT, poll, spawn

pytestmark = pytest.mark.reliability
SCALE = int(os.environ.get("CHRONCTL_SOAK", "1"))


def manifest(tmp_path: Path, backend: str, state: str | None = None) -> Path:
    path = tmp_path / "jobs.toml"
    state_line = f'state = "{state}"' if state else ""
    path.write_text(f"""
[scheduler]
backend = "{backend}"
{state_line}
lease = "1s"
workers = 8
shutdown_timeout = "2s"
pythonpath = ["{ROOT}"]

[jobs.record]
entrypoint = "tests.cli.jobs_for_cli:record"
max_retries = 20
retry_delay = "0s"

[jobs.crash]
entrypoint = "tests.cli.jobs_for_cli:kill_my_worker"
max_retries = 2
retry_delay = "0s"
""")
    return path


def _open(url: str):  # type: ignore[no-untyped-def]
    return from_url(url, state=STATE[url]) if url in STATE else from_url(url)


async def _enqueue(url: str, tasks: list[Task]) -> None:
    backend = _open(url)
    async with backend:
        await backend.enqueue_many(tasks)


async def _statuses(url: str) -> Counter[str]:
    backend = _open(url)
    async with backend:
        return Counter(t.status.value for t in await backend.list_tasks(limit=None))


async def _get(url: str, task_id: str) -> Task | None:
    backend = _open(url)
    async with backend:
        return await backend.get_task(task_id)


STATE: dict[str, str] = {}  # url -> state store (RabbitMQ keeps task state elsewhere)


@pytest.fixture(params=["sqlite", "redis", "postgres", "rabbitmq", "rabbitmq-redis"])
def chaos_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'state.db'}"
        return
    if request.param == "postgres":
        from chronctl.backends.postgres import PostgresBackend

        from ..conftest import (
            POSTGRES_URL,
            need_service,
            postgres_reachable,
            postgres_schema,
            with_query,
        )

        ok, why = postgres_reachable()
        need_service("PostgreSQL", ok, why)
        url = with_query(POSTGRES_URL, schema=postgres_schema())
        yield url

        async def drop_schema() -> None:
            async with PostgresBackend(url) as backend:
                await backend.drop_schema()

        asyncio.run(drop_schema())
        return
    if request.param.startswith("rabbitmq"):
        from ..conftest import RABBITMQ_URL, need_rabbitmq, with_query

        need_rabbitmq()
        name = f"chaos-{uuid.uuid4().hex[:8]}"
        url = with_query(RABBITMQ_URL, queue_name=name, exchange_name=name)
        STATE[url] = f"sqlite:///{tmp_path / 'state.db'}"
        if request.param == "rabbitmq-redis":  # the several-hosts deployment
            from ..conftest import REDIS_URL, need_service, redis_reachable

            ok, why = redis_reachable()
            need_service("Redis", ok, why)
            STATE[url] = with_query(REDIS_URL, prefix=name)
        yield url

        async def delete() -> None:
            backend = _open(url)
            async with backend:
                assert isinstance(backend, RabbitMQBackend)
                await backend.delete_layout(["default"])
                if isinstance(backend.state, RedisBackend):
                    await backend.state.drop_everything()

        asyncio.run(delete())
        return
    from ..conftest import REDIS_URL, need_service, redis_reachable, with_query

    ok, why = redis_reachable()
    need_service("Redis", ok, why)
    url = with_query(REDIS_URL, prefix=f"chronctl-chaos-{uuid.uuid4().hex[:8]}")
    yield url

    async def drop() -> None:
        backend = from_url(url)
        async with backend:
            await backend.drop_everything()  # type: ignore[attr-defined]

    asyncio.run(drop())


def test_kill_9_chaos_loses_nothing(tmp_path: Path, chaos_url: str) -> None:
    url = chaos_url
    path = manifest(tmp_path, url, STATE.get(url))
    out = tmp_path / "runs.txt"
    count = 2000 * SCALE
    tasks = [Task(job="record", args=[str(out), f"t{i}"], max_retries=20) for i in range(count)]
    crasher = Task(job="crash", max_retries=2)
    asyncio.run(_enqueue(url, [*tasks, crasher]))

    rng = random.Random(7)
    procs = [
        spawn("run", str(path), "--role", "worker", cwd=tmp_path, log=tmp_path / f"w{i}.log")
        for i in range(2)
    ]
    kills = 0
    deadline = time.monotonic() + 180
    try:
        while True:
            done = asyncio.run(_statuses(url))
            if done["succeeded"] == count and done["dead"] == 1:
                break
            assert time.monotonic() < deadline, f"chaos did not finish: {done}"
            time.sleep(rng.uniform(0.3, 0.7))
            victim = rng.randrange(len(procs))
            procs[victim].send_signal(signal.SIGKILL)
            procs[victim].wait()
            kills += 1
            procs[victim] = spawn(
                "run",
                str(path),
                "--role",
                "worker",
                cwd=tmp_path,
                log=tmp_path / f"w{victim}.{kills}.log",
            )
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()

    runs = Counter(out.read_text().split())
    lost = [t.args[1] for t in tasks if runs[t.args[1]] == 0]
    duplicates = sum(n - 1 for n in runs.values() if n > 1)
    print(
        f"\nchaos {url.split(':')[0]}: tasks={count} kills={kills} lost={len(lost)} "
        f"duplicates={duplicates}"
    )
    assert lost == []
    final = asyncio.run(_statuses(url))
    assert final == Counter({"succeeded": count, "dead": 1})  # nothing stuck running
    dead = asyncio.run(_get(url, crasher.id))
    assert dead is not None and dead.status is TaskStatus.DEAD
    assert dead.attempt == 3  # killed its worker 3 times: bounded, then dead-lettered
    assert "worker lost" in (dead.error or "")
    (tmp_path / "chaos.txt").write_text(f"{count} {kills} {len(lost)} {duplicates}\n")


def test_suspended_process_catches_up_once(tmp_path: Path) -> None:
    """SIGSTOP for 5 s, then SIGCONT: the missed fires coalesce into one run."""
    out = tmp_path / "ticks.txt"
    path = tmp_path / "jobs.toml"
    path.write_text(f"""
[scheduler]
backend = "sqlite:///state.db"
pythonpath = ["{ROOT}"]
[jobs.tick]
entrypoint = "tests.cli.jobs_for_cli:tick"
args = ["{out}"]
every = "1s"
""")
    proc = spawn("run", str(path), cwd=tmp_path, log=tmp_path / "run.log")
    try:
        poll(lambda: out.exists() and len(out.read_text().split()) >= 2, what="ticks")
        proc.send_signal(signal.SIGSTOP)
        stopped_at = time.time()
        time.sleep(5)  # the suspension itself is what is being tested
        proc.send_signal(signal.SIGCONT)
        poll(
            lambda: any(float(t) > stopped_at + 5 for t in out.read_text().split()),
            what="a run after the resume",
        )
        time.sleep(2.5)  # let the regular cadence resume for two more ticks
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    ticks = [float(t) for t in out.read_text().split()]
    during = [t for t in ticks if stopped_at < t < stopped_at + 5]
    after = [t for t in ticks if stopped_at + 5 <= t < stopped_at + 7]
    assert during == []
    # Five fires were missed: coalesced they make one run, plus the regular 1 s cadence
    # (at most two more ticks in these two seconds); one run each would make 7.
    assert 1 <= len(after) <= 3, ticks
    assert after[0] < stopped_at + 5.5  # the catch-up run came right after the resume
