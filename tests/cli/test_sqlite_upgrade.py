"""A SQLite file written by the previous layout (schema 1) opens with this code: it is
upgraded in place (schema 2: indexes only) and every task, run and job state reads back,
through the library and through `chronctl migrate`."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from pathlib import Path

from chronctl.backends.sqlite import SCHEMA_VERSION, SQLiteBackend
from chronctl.models import Task, TaskStatus

from .helpers import ROOT, chronctl

V1 = ROOT / "tests" / "data" / "sqlite_schema_v1.sql"
NOW = time.time()
COLUMNS = (
    "id, job, queue, priority, scheduled_at, status, attempt, max_retries, key, created_at, "
    "finished_at, args, kwargs, error"
)
A, B, C = "a" * 24, "b" * 24, "c" * 24
TASKS = [  # as chronctl 1 stored them
    (A, "echo", "default", 5, NOW - 5, "pending", 0, 3, None, NOW - 9, None, "[7]", "{}", None),
    (B, "echo", "mail", 9, NOW + 3600, "pending", 1, 3, "k1", NOW - 8, None, "[]", '{"x":1}', "x"),
    (C, "fail", "default", 5, NOW - 7, "dead", 2, 1, None, NOW - 7, NOW - 6, "[]", "{}", "nope"),
]


def write_v1(db: Path) -> None:
    conn = sqlite3.connect(db)
    try:
        conn.executescript(V1.read_text())
        conn.executemany(f"INSERT INTO tasks ({COLUMNS}) VALUES ({', '.join('?' * 14)})", TASKS)
        conn.execute(
            "INSERT INTO runs (task_id, job, queue, priority, attempt, status, args, kwargs, "
            "scheduled_at, started_at, finished_at, error) VALUES "
            "(?, 'fail', 'default', 5, 1, 'failed', '[\"nope\"]', '{}', ?, ?, ?, 'boom')",
            (C, NOW - 7, NOW - 6.5, NOW - 6.2),
        )
        conn.execute("INSERT INTO jobs (name, first_seen, paused) VALUES ('nightly', ?, 1)", (NOW,))
        conn.execute("INSERT INTO queues (name, paused) VALUES ('mail', 1)")
        conn.commit()
    finally:
        conn.close()


def layout(db: Path) -> tuple[str, set[str]]:
    conn = sqlite3.connect(db)
    try:
        version = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        names = conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'").fetchall()
        return version[0], {n for (n,) in names if not n.startswith("sqlite_")}
    finally:
        conn.close()


def test_a_version_1_file_is_upgraded_on_open_and_reads_back(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    write_v1(db)

    async def read() -> None:
        async with SQLiteBackend(db) as backend:
            a, b, c = [await backend.get_task(row[0]) for row in TASKS]
            assert a and (a.job, a.args, a.status, a.priority) == ("echo", [7], "pending", 5)
            assert b and (b.queue, b.key, b.kwargs, b.attempt, b.error) == (
                "mail",
                "k1",
                {"x": 1},
                1,
                "x",
            )
            assert c and (c.status, c.max_retries, c.finished_at) == ("dead", 1, NOW - 6)
            assert [t.id for t in await backend.list_tasks()] == [C, B, A]  # newest first
            [run] = await backend.history()
            assert (run.task_id, run.status, run.error) == (C, "failed", "boom")
            queues = {q.name: q for q in await backend.list_queues()}
            assert queues["mail"].paused and queues["mail"].pending == 1
            assert queues["default"].pending == 1
            [job] = await backend.list_job_states()
            assert (job.name, job.paused) == ("nightly", True)
            assert await backend.next_due() == NOW - 5  # `mail` is paused
            [claimed] = await backend.dequeue(5, worker="w")
            assert claimed.id == A and claimed.status == TaskStatus.RUNNING
            # The idempotency key of the pending task still holds.
            again = await backend.enqueue(Task(job="echo", key="k1"))
            assert again == (B, False)

    asyncio.run(read())
    version, indexes = layout(db)
    assert version == str(SCHEMA_VERSION) == "2"
    assert {"tasks_next", "tasks_job", "tasks_done", "tasks_key", "tasks_lease"} <= indexes
    assert {"tasks_job_done", "runs_job_finished"} <= indexes  # per-job retention
    assert not indexes & {"tasks_claim", "tasks_pending", "tasks_created", "tasks_publish"}


def test_migrate_copies_a_version_1_file(tmp_path: Path) -> None:
    write_v1(tmp_path / "state.db")
    (tmp_path / "jobs.toml").write_text(
        f'[scheduler]\nbackend = "sqlite:///state.db"\npythonpath = ["{ROOT}"]\n\n'
        '[jobs.echo]\nentrypoint = "tests.cli.jobs_for_cli:echo"\n\n'
        '[jobs.fail]\nentrypoint = "tests.cli.jobs_for_cli:fail"\n\n'
        '[jobs.nightly]\ncommand = ["true"]\ncron = "0 2 * * *"\n'
    )
    target = f"sqlite:///{tmp_path / 'new.db'}"
    result = chronctl("--json", "migrate", "--to", target, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "tasks": 3,
        "runs": 1,
        "jobs": 1,
        "already_there": 0,
        "schedules": 0,
        "schedules_already_there": 0,
    }
    shown = chronctl("--json", "--backend", target, "tasks", "show", B, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    moved = json.loads(shown.stdout)
    assert (moved["queue"], moved["kwargs"], moved["status"]) == ("mail", {"x": 1}, "pending")
    assert layout(tmp_path / "state.db")[0] == "2"
