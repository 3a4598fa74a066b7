"""SQLite's compact rows (schema 2): what is left out of a row reads back exactly."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from chronctl.backends.sqlite import SQLiteBackend
from chronctl.models import Task, TaskStatus


def stored(db: Path, task_id: str) -> tuple[str, str, float]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(
            "SELECT args, kwargs, created_at FROM tasks WHERE id = ?", (task_id,)
        ).fetchone()
    finally:
        conn.close()


async def test_defaults_are_left_out_of_the_row_and_read_back(tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    plain, later = Task(job="j"), Task(job="j", args=[1], kwargs={"k": 2})
    later.scheduled_at = later.created_at + 3600
    async with SQLiteBackend(db) as backend:
        await backend.enqueue_many([plain, later])
        assert stored(db, plain.id) == ("", "", 0)  # no arguments; created when scheduled
        assert stored(db, later.id) == ("[1]", '{"k":2}', later.created_at)
        got = await backend.get_task(plain.id)
        assert got and (got.args, got.kwargs, got.created_at) == ([], {}, plain.created_at)
        assert got.scheduled_at == plain.created_at
        [claimed] = await backend.dequeue(1, worker="w")
        claimed.error = "boom"
        assert await backend.reject(claimed, requeue=True, retry_at=time.time() + 60)
        moved = await backend.get_task(plain.id)
        # scheduled_at moved: created_at was written out first and stays what it was.
        assert moved and moved.scheduled_at > plain.scheduled_at
        assert moved.created_at == plain.created_at == stored(db, plain.id)[2]
        [run] = await backend.history()
        assert (run.args, run.kwargs, run.status) == ([], {}, TaskStatus.FAILED)


async def test_purge_keeps_new_tasks_whose_created_at_is_left_out(tmp_path: Path) -> None:
    """A dead task with no finish time (imported) ages by created_at, here left out."""
    async with SQLiteBackend(tmp_path / "x.db") as backend:
        task = Task(job="j", status=TaskStatus.DEAD)
        assert await backend.import_tasks([task]) == 1
        assert stored(tmp_path / "x.db", task.id)[2] == 0
        assert await backend.purge_dead(time.time() - 3600) == 0
        assert await backend.cleanup(time.time() - 3600) == 0
        assert await backend.purge_dead(time.time() + 3600) == 1
