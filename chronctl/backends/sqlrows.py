"""What the SQL backends (SQLite, PostgreSQL) store alike: arguments as JSON text with
no arguments as '' (no bytes at all), and a history row's values in column order."""

from __future__ import annotations

from typing import Any

from ..models import Run, TaskStatus, dumps


def json_or_empty(value: list[Any] | dict[str, Any]) -> str:
    """No arguments are stored as '', read back as [] or {}."""
    return dumps(value) if value else ""


def run_values(run: Run) -> tuple[Any, ...]:
    """A run in the `runs` table's column order (both backends' RUN_COLUMNS)."""
    return (
        run.task_id,
        run.job,
        run.queue,
        run.priority,
        run.attempt,
        TaskStatus(run.status).value,
        json_or_empty(run.args),
        json_or_empty(run.kwargs),
        run.scheduled_at,
        run.started_at,
        run.finished_at,
        None if run.result is None else dumps(run.result),
        run.error,
        run.traceback,
        run.output,
    )
