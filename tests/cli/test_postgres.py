"""`chronctl` on PostgreSQL as real processes: run in one, enqueue from another, the
operator commands, migrations SQLite -> PostgreSQL -> Redis, and an unreachable server
in one line."""

from __future__ import annotations

import asyncio
import json
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import (
    POSTGRES_URL,
    REDIS_URL,
    need_service,
    postgres_reachable,
    postgres_schema,
    redis_reachable,
    with_query,
)

from .helpers import ROOT, chronctl, one_error_line, poll, spawn


@pytest.fixture
def pg_url() -> Iterator[str]:
    """The test server's URL with a schema of this test's own, dropped afterwards."""
    ok, why = postgres_reachable()
    need_service("PostgreSQL", ok, why)
    url = with_query(POSTGRES_URL, schema=postgres_schema())
    yield url

    async def drop() -> None:
        from chronctl.backends.postgres import PostgresBackend

        async with PostgresBackend(url) as backend:
            await backend.drop_schema()

    asyncio.run(drop())


def project(tmp_path: Path, backend: str) -> Path:
    path = tmp_path / "jobs.toml"
    path.write_text(
        f'[scheduler]\nbackend = "{backend}"\npythonpath = ["{ROOT}"]\n'
        'shutdown_timeout = "5s"\n\n[defaults]\nretry_delay = "0s"\n\n'
        '[jobs.record]\nentrypoint = "tests.cli.jobs_for_cli:record"\n\n'
        '[jobs.fail]\nentrypoint = "tests.cli.jobs_for_cli:fail"\nmax_retries = 0\n\n'
        '[jobs.echo]\nentrypoint = "tests.cli.jobs_for_cli:echo"\n'
    )
    return path


def ok(path: Path, *args: str) -> Any:
    result = chronctl("--json", *args, "-f", str(path), cwd=path.parent)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_run_in_one_process_enqueue_from_another_runs_once(tmp_path: Path, pg_url: str) -> None:
    path = project(tmp_path, pg_url)
    log, ran = tmp_path / "run.log", tmp_path / "ran.txt"
    worker = spawn("run", str(path), cwd=tmp_path, log=log)
    try:
        poll(lambda: "chronctl running" in log.read_text(), what="the worker to start")
        task_id = ok(path, "enqueue", "record", "--args", json.dumps([str(ran), "once"]))["id"]
        dead_id = ok(path, "enqueue", "fail")["id"]

        def finished() -> bool:
            tasks = {t["id"]: t["status"] for t in ok(path, "tasks", "list")}
            return tasks.get(task_id) == "succeeded" and tasks.get(dead_id) == "dead"

        poll(finished, what="both tasks to finish")
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=20) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
    assert ran.read_text() == "once\n"  # exactly once
    [letter] = ok(path, "dlq", "list")
    assert (letter["id"], letter["error"]) == (dead_id, "RuntimeError: boom")
    assert "password" not in log.read_text()


def test_pause_and_resume_a_queue_and_a_job(tmp_path: Path, pg_url: str) -> None:
    path = project(tmp_path, pg_url)
    task_id = ok(path, "enqueue", "echo", "--args", '["x"]')["id"]
    assert ok(path, "pause", "--queue", "default") == {"queue": "default", "paused": True}
    assert chronctl("run", "--once", "-f", str(path), cwd=tmp_path).returncode == 0
    assert ok(path, "tasks", "show", task_id)["status"] == "pending"  # a paused queue waits
    [queue] = ok(path, "queues", "list")
    assert (queue["name"], queue["pending"], queue["paused"]) == ("default", 1, True)
    ok(path, "resume", "--queue", "default")
    assert chronctl("run", "--once", "-f", str(path), cwd=tmp_path).returncode == 0
    assert ok(path, "tasks", "show", task_id)["status"] == "succeeded"
    assert ok(path, "pause", "echo") == {"job": "echo", "paused": True}
    [echo] = [j for j in ok(path, "jobs", "list") if j["name"] == "echo"]
    assert echo["paused"] is True


def test_migrate_sqlite_to_postgres_to_redis_keeps_tasks_and_schedules(
    tmp_path: Path, pg_url: str
) -> None:
    path = project(tmp_path, "sqlite:///state.db")
    pending = ok(path, "enqueue", "echo", "--args", "[7]", "--in", "1h")["id"]
    ok(path, "enqueue", "fail")
    assert chronctl("run", "--once", "-f", str(path), cwd=tmp_path).returncode == 0  # now dead
    ok(path, "pause", "echo")
    ok(path, "schedules", "add", "acme", "--job", "echo", "--cron", "0 9 * * *", "--args", "[42]")
    ok(path, "jobs", "reschedule", "record", "--every", "2h")
    first = ok(path, "migrate", "--to", pg_url)
    assert (first["tasks"], first["runs"], first["jobs"], first["schedules"]) == (2, 1, 1, 2)
    again_pg = ok(path, "migrate", "--to", pg_url)
    assert (again_pg["already_there"], again_pg["schedules_already_there"]) == (2, 2)
    moved = ok(path, "--backend", pg_url, "tasks", "show", pending)
    assert (moved["args"], moved["status"]) == ([7], "pending")
    assert len(ok(path, "--backend", pg_url, "dlq", "list")) == 1
    # ... and on from PostgreSQL to Redis: the same tasks, history and job state.
    reachable, why = redis_reachable()
    need_service("Redis", reachable, why)
    prefix = f"chronctl-test-{uuid.uuid4().hex[:10]}:"
    redis_url = with_query(REDIS_URL, prefix=prefix)
    try:
        second = ok(path, "--backend", pg_url, "migrate", "--to", redis_url)
        assert (second["tasks"], second["runs"], second["jobs"], second["schedules"]) == (
            2,
            1,
            1,
            2,
        )
        rows = {r["name"]: r for r in ok(path, "--backend", redis_url, "schedules", "list")}
        assert (rows["acme"]["source"], rows["acme"]["trigger"]) == ("runtime", "cron 0 9 * * *")
        assert (rows["record"]["source"], rows["record"]["trigger"]) == ("override", "every 2h")
        assert ok(path, "--backend", redis_url, "schedules", "show", "acme")["args"] == [42]
        again = ok(path, "--backend", redis_url, "tasks", "show", pending)
        assert (again["args"], again["status"]) == ([7], "pending")
        assert len(ok(path, "--backend", redis_url, "dlq", "list")) == 1
        assert len(ok(path, "--backend", redis_url, "history")) == 1
        jobs = {j["name"]: j for j in ok(path, "--backend", redis_url, "jobs", "list")}
        assert jobs["echo"]["paused"] is True
    finally:

        async def drop() -> None:
            from chronctl.backends.redis import RedisBackend

            async with RedisBackend(REDIS_URL, key_prefix=prefix) as backend:
                await backend.drop_everything()

        asyncio.run(drop())


def test_an_unreachable_server_is_one_line_without_the_password(tmp_path: Path) -> None:
    url = "postgresql://chronctl:s3cret-pw@127.0.0.1:1/test?schema=nowhere"
    path = project(tmp_path, url)
    result = chronctl("tasks", "list", "-f", str(path), cwd=tmp_path)
    assert result.returncode != 0
    line = one_error_line(result)
    assert "unreachable" in line and "s3cret-pw" not in result.stderr + result.stdout
