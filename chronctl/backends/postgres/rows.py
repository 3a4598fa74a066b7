"""Tasks, runs and processes as rows (see schema.py), and back.

Arguments and results are stored as JSON text, exactly as `dumps` wrote them (jsonb
would reorder keys and cost a parse on every insert); no arguments are stored as ''.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ...models import Process, Run, Task, TaskStatus, dumps, loads
from ..sqlrows import json_or_empty, run_values
from .schema import RUN_COLUMNS, TASK_COLUMNS


def task_values(task: Task) -> tuple[Any, ...]:
    return (
        task.id,
        task.job,
        task.queue,
        task.priority,
        task.scheduled_at,
        TaskStatus(task.status).value,
        task.attempt,
        task.max_retries,
        task.key,
        task.created_at,
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


def columns(rows: Sequence[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Rows turned into one list per column: the arrays an `unnest(...)` insert takes."""
    return [[row[i] for row in rows] for i in range(width)]


def task_columns(tasks: Sequence[Task]) -> list[list[Any]]:
    return columns([task_values(t) for t in tasks], len(TASK_COLUMNS))


def row_task(row: Mapping[str, Any]) -> Task:
    data = {k: row[k] for k in TASK_COLUMNS}
    data["args"] = loads(data["args"]) if data["args"] else []
    data["kwargs"] = loads(data["kwargs"]) if data["kwargs"] else {}
    data["result"] = loads(data["result"])
    data["status"] = TaskStatus(data["status"])
    return Task(**data)


def run_columns(runs: Sequence[Run]) -> list[list[Any]]:
    return columns([run_values(r) for r in runs], len(RUN_COLUMNS))


def row_run(row: Mapping[str, Any]) -> Run:
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


def row_process(row: Mapping[str, Any]) -> Process:
    return Process(
        row["id"],
        row["host"],
        row["pid"],
        row["role"],
        row["started"],
        row["last_beat"],
        loads(row["queues"]),
    )
