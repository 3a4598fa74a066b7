"""A task and a run as rows of `tasks` and `runs` (see schema.py), and back."""

from __future__ import annotations

import sqlite3
from typing import Any

from ...models import Run, Task, TaskStatus, dumps, loads
from ..sqlrows import json_or_empty
from .schema import _TASK_COLUMNS


def _task_row(task: Task) -> tuple[Any, ...]:
    return (
        task.id,
        task.job,
        task.queue,
        task.priority,
        task.scheduled_at,
        task.status.value,
        task.attempt,
        task.max_retries,
        task.key,
        0 if task.created_at == task.scheduled_at else task.created_at,
        task.started_at,
        task.finished_at,
        task.lease_until,
        task.worker,
        task.deliveries,
        task.fire_time,
        json_or_empty(task.args),
        json_or_empty(task.kwargs),
        None if task.result is None else dumps(task.result),
        task.error,
        task.traceback,
        task.output,
    )


def _row_task(row: sqlite3.Row) -> Task:
    data = {k: row[k] for k in _TASK_COLUMNS}
    data["args"] = loads(data["args"]) if data["args"] else []
    data["kwargs"] = loads(data["kwargs"]) if data["kwargs"] else {}
    data["created_at"] = data["created_at"] or data["scheduled_at"]
    data["result"] = loads(data["result"])
    data["status"] = TaskStatus(data["status"])
    return Task(**data)


def _row_run(row: sqlite3.Row) -> Run:
    return Run(
        task_id=row["task_id"],
        job=row["job"],
        queue=row["queue"],
        attempt=row["attempt"],
        status=TaskStatus(row["status"]),
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        args=loads(row["args"]) if row["args"] else [],
        kwargs=loads(row["kwargs"]) if row["kwargs"] else {},
        priority=row["priority"],
        scheduled_at=row["scheduled_at"],
        result=loads(row["result"]),
        error=row["error"],
        traceback=row["traceback"],
        output=row["output"],
    )
