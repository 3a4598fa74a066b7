"""Issue 20, bounded by design, through the `chronctl` command on SQLite, Redis and PostgreSQL:
`max_pending` refuses instead of storing, and a running scheduler applies retention
by itself (old rows go, recent and unfinished ones stay, the newest dead letters
are kept)."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import uuid
from collections.abc import Iterator
from datetime import datetime
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


@pytest.fixture(params=["sqlite", "redis", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A backend URL for the manifest: a SQLite file, a Redis prefix or a PostgreSQL
    schema of this test (RabbitMQ keeps this state in one of those; the retention
    contract suite covers it)."""
    if request.param == "sqlite":
        yield "sqlite:///state.db"
        return
    if request.param == "postgres":
        ok, why = postgres_reachable()
        need_service("PostgreSQL", ok, why)
        schema = postgres_schema()
        yield with_query(POSTGRES_URL, schema=schema)

        async def drop_schema() -> None:
            from chronctl.backends.postgres import PostgresBackend

            async with PostgresBackend(POSTGRES_URL, schema=schema) as backend:
                await backend.drop_schema()

        asyncio.run(drop_schema())
        return
    ok, why = redis_reachable()
    need_service("Redis", ok, why)
    prefix = f"chronctl-test-{uuid.uuid4().hex[:10]}:"
    yield with_query(REDIS_URL, prefix=prefix)

    async def drop() -> None:
        from chronctl.backends.redis import RedisBackend

        async with RedisBackend(REDIS_URL, key_prefix=prefix) as backend:
            await backend.drop_everything()

    asyncio.run(drop())


def write_manifest(project: Path, store: str, scheduler: str = "", rest: str = "") -> None:
    (project / "jobs.toml").write_text(
        f'[scheduler]\nbackend = "{store}"\npythonpath = ["{ROOT}"]\n'
        f'shutdown_timeout = "5s"\n{scheduler}\n'
        '[jobs.echo]\nentrypoint = "tests.cli.jobs_for_cli:echo"\nqueue = "mail"\n\n'
        '[jobs.other]\nentrypoint = "tests.cli.jobs_for_cli:echo"\n\n' + rest
    )


def ok(project: Path, *args: str) -> Any:
    result = chronctl("--json", *args, cwd=project)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def pending(project: Path) -> dict[str, int]:
    """Pending tasks per queue (queues the manifest names but that hold none left out)."""
    return {q["name"]: q["pending"] for q in ok(project, "queues", "list") if q["pending"]}


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0


# -- backpressure ----------------------------------------------------------------


def test_max_pending_refuses_with_exit_1_and_stores_nothing(tmp_path: Path, store: str) -> None:
    write_manifest(tmp_path, store, "max_pending = 5\n", "[queues.mail]\nmax_pending = 2\n")
    for n in (1, 2):
        ok(tmp_path, "enqueue", "echo", "--args", f"[{n}]")
    refused = chronctl("enqueue", "echo", "--args", "[3]", cwd=tmp_path)
    assert refused.returncode == 1
    assert one_error_line(refused) == ("chronctl: queue 'mail' is full: 2 pending (max_pending 2)")
    assert pending(tmp_path) == {"mail": 2}
    # The [scheduler] default holds for every other queue: 5 here.
    lines = "".join(f'{{"job": "other", "args": [{n}]}}\n' for n in range(6))
    (tmp_path / "six.jsonl").write_text(lines)
    refused = chronctl("enqueue", "--from", "six.jsonl", cwd=tmp_path)
    assert refused.returncode == 1
    assert one_error_line(refused) == (
        "chronctl: queue 'default' is full: 0 pending + 6 new would pass max_pending 5; "
        "nothing stored"
    )
    # A file with room in one queue and none in another is refused whole.
    (tmp_path / "mixed.jsonl").write_text('{"job": "other"}\n{"job": "echo"}\n')
    refused = chronctl("enqueue", "--from", "mixed.jsonl", cwd=tmp_path)
    assert refused.returncode == 1
    assert "queue 'mail' is full" in one_error_line(refused)
    assert pending(tmp_path) == {"mail": 2}
    assert len(ok(tmp_path, "tasks", "list", "--status", "pending")) == 2
    (tmp_path / "five.jsonl").write_text("".join(lines.splitlines(True)[:5]))
    assert chronctl("enqueue", "--from", "five.jsonl", cwd=tmp_path).returncode == 0
    assert pending(tmp_path) == {"default": 5, "mail": 2}
    refused = chronctl("trigger", "other", cwd=tmp_path)
    assert refused.returncode == 1
    assert "queue 'default' is full: 5 pending (max_pending 5)" in one_error_line(refused)


def test_a_fire_into_a_full_queue_is_recorded_as_skipped(tmp_path: Path, store: str) -> None:
    write_manifest(
        tmp_path,
        store,
        "",
        "[queues.mail]\nmax_pending = 0\n\n[jobs.tick]\n"
        'entrypoint = "tests.cli.jobs_for_cli:echo"\n'
        'args = ["tick"]\nqueue = "mail"\nevery = "1s"\n',
    )
    log = tmp_path / "run.log"
    proc = spawn("run", "jobs.toml", cwd=tmp_path, log=log)
    try:
        line = poll(
            lambda: next(
                (ln for ln in log.read_text().splitlines() if "skipped job=tick" in ln), None
            ),
            what="a skipped fire in the log",
        )
    finally:
        stop(proc)
    assert "reason=queue 'mail' is full: 0 pending (max_pending 0)" in line
    assert "WARNING" in line
    assert pending(tmp_path) == {}
    assert ok(tmp_path, "history") == []
    # `jobs list`, a process of its own, shows the last skip the scheduler stored.
    jobs = {j["name"]: j for j in ok(tmp_path, "jobs", "list")}
    skip = jobs["tick"]["last_skip"]
    assert skip["reason"] == "queue 'mail' is full: 0 pending (max_pending 0)"
    fire_time = line.split("fire_time=")[1].split()[0]
    assert datetime.fromisoformat(skip["fire_time"]) >= datetime.fromisoformat(fire_time)
    assert jobs["tick"]["last_run"] is None
    assert jobs["echo"]["last_skip"] is None  # no trigger: never skipped
    table = chronctl("jobs", "list", cwd=tmp_path, extra_env={"COLUMNS": "250"})
    assert table.returncode == 0, table.stderr
    assert "LAST SKIP" in table.stdout.splitlines()[0]
    [row] = [ln for ln in table.stdout.splitlines() if ln.startswith("tick ")]
    assert row.rstrip().endswith("ago: queue 'mail' is full: 0 pending (max_pending 0)")


# -- retention ---------------------------------------------------------------------


def test_a_running_scheduler_applies_retention_by_itself(tmp_path: Path, store: str) -> None:
    """keep_history = "2s" and max_dead = 2: old finished tasks and history go, the two
    newest dead letters stay, and pending and running tasks are never touched."""
    write_manifest(
        tmp_path,
        store,
        'workers = 1\nprefetch = 0\nkeep_history = "2s"\nkeep_dead = "forever"\nmax_dead = 2\n',
        '[jobs.fail]\nentrypoint = "tests.cli.jobs_for_cli:fail"\nmax_retries = 0\n\n'
        '[jobs.sleep]\ncommand = ["sleep", "60"]\n',
    )
    for n in range(3):
        ok(tmp_path, "enqueue", "echo", "--args", f"[{n}]")
    dead = [ok(tmp_path, "enqueue", "fail", "--args", f'["boom {n}"]')["id"] for n in range(4)]
    result = chronctl("run", "jobs.toml", "--once", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert len(ok(tmp_path, "tasks", "list", "--status", "succeeded")) == 3
    assert len(ok(tmp_path, "history")) == 7
    later = ok(tmp_path, "enqueue", "echo", "--args", '["later"]', "--in", "1h")["id"]
    sleeper = ok(tmp_path, "enqueue", "sleep")["id"]
    log = tmp_path / "run.log"
    proc = spawn("run", "jobs.toml", cwd=tmp_path, log=log)
    try:
        poll(
            lambda: ok(tmp_path, "tasks", "show", sleeper)["status"] == "running",
            what="the sleeper to run",
        )
        poll(
            lambda: (
                ok(tmp_path, "history") == []
                and ok(tmp_path, "tasks", "list", "--status", "succeeded") == []
                and len(ok(tmp_path, "dlq", "list")) == 2
            ),
            what="retention to remove old history, finished tasks and dead letters",
        )
        assert ok(tmp_path, "tasks", "show", sleeper)["status"] == "running"
        assert ok(tmp_path, "tasks", "show", later)["status"] == "pending"
        assert {t["id"] for t in ok(tmp_path, "dlq", "list")} == set(dead[2:])
        report = poll(lambda: ok(tmp_path, "status")["retention"]["last_pass"])
    finally:
        stop(proc)
    assert report["total_finished"] == 10  # 3 tasks + 7 history rows
    assert report["total_dead"] == 2
    assert "chronctl.retention: removed" in log.read_text()


def test_a_job_kept_longer_or_forever_keeps_its_rows(tmp_path: Path, store: str) -> None:
    """keep_history = "2s" for the backend; `kept` sets "1h" and `fail` keeps its dead
    letters and history forever: the running scheduler removes echo's rows only."""
    write_manifest(
        tmp_path,
        store,
        'workers = 1\nkeep_history = "2s"\nkeep_dead = "2s"\nmax_dead = "forever"\n',
        '[jobs.kept]\nentrypoint = "tests.cli.jobs_for_cli:echo"\nkeep_history = "1h"\n\n'
        '[jobs.fail]\nentrypoint = "tests.cli.jobs_for_cli:fail"\nmax_retries = 0\n'
        'keep_history = "forever"\nkeep_dead = "forever"\n',
    )
    for job in ("echo", "echo", "kept", "kept", "fail"):
        ok(tmp_path, "enqueue", job, "--args", '["x"]')
    result = chronctl("run", "jobs.toml", "--once", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert len(ok(tmp_path, "history")) == 5
    proc = spawn("run", "jobs.toml", cwd=tmp_path, log=tmp_path / "run.log")
    try:
        report = poll(
            lambda: (
                (r := ok(tmp_path, "status")["retention"]["last_pass"])
                and r["total_finished"] >= 4
                and r
            ),
            what="retention to remove echo's two tasks and two history rows",
        )
        status = ok(tmp_path, "status")
    finally:
        stop(proc)
    assert report["total_finished"] == 4 and report["total_dead"] == 0
    assert sorted(r["job"] for r in ok(tmp_path, "history")) == ["fail", "kept", "kept"]
    left = ok(tmp_path, "tasks", "list", "--status", "succeeded")
    assert sorted(t["job"] for t in left) == ["kept", "kept"]
    assert [t["job"] for t in ok(tmp_path, "dlq", "list")] == ["fail"]
    assert status["retention"]["policy"]["jobs"] == {
        "fail": {"keep_history": None, "keep_dead": None},
        "kept": {"keep_history": 3600.0},
    }
