"""How the Redis backend stores a task and a run: a task is a compact JSON record
(one-letter keys, string values, defaults left out) that the Lua scripts read and
write field by field, so both sides agree on `RECORD_KEYS` and `DEFAULTS`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ...models import Run, Task, TaskStatus
from .lua import DEFAULTS, RECORD_KEYS


def _num(value: float) -> str:
    return repr(float(value))


_DUMPED = frozenset({"args", "kwargs", "result"})
_FLOATS = frozenset(
    {"scheduled_at", "created_at", "started_at", "finished_at", "lease_until", "fire_time"}
)
_INTS = frozenset({"priority", "attempt", "max_retries", "deliveries"})


def task_record(task: Task) -> dict[str, str]:
    """A task as its stored record: one-letter keys (RECORD_KEYS), string values,
    defaults and an unset created_at (= scheduled_at) left out, no id."""
    from ...models import dumps

    out: dict[str, str] = {}
    for name, key in RECORD_KEYS.items():
        value = getattr(task, name)
        if value is None:
            continue
        if name in _DUMPED:
            text = dumps(value)
        elif name in _FLOATS:
            text = _num(value)
        elif name in _INTS:
            text = str(int(value))
        else:
            text = value.value if isinstance(value, TaskStatus) else str(value)
        if DEFAULTS.get(key) != text:
            out[key] = text
    if out.get("c") == out["a"]:
        del out["c"]
    return out


def _wire(task: Task) -> dict[str, str]:
    """A task as a script receives it: its record and its id."""
    return {"id": task.id, **task_record(task)}


def _json(text: str | None, default: Any) -> Any:
    if text is None:
        return default
    if text == "[]" or text == "{}":  # most tasks: skip the decoder
        return [] if text == "[]" else {}
    return json.loads(text)


def _float(text: str | None) -> float | None:
    return None if text is None else float(text)


def task_from_record(task_id: str, raw: str) -> Task:
    """A task from its stored record (the JSON of task_record, as Lua rewrites it)."""
    r: dict[str, str] = json.loads(raw)
    get = r.get
    scheduled = float(r["a"])
    return Task(
        job=r["j"],
        args=_json(get("A"), []),
        kwargs=_json(get("K"), {}),
        queue=get("q", "default"),
        priority=int(get("p", 5)),
        scheduled_at=scheduled,
        id=task_id,
        status=TaskStatus(get("s", "pending")),
        attempt=int(get("n", 0)),
        max_retries=int(get("m", 3)),
        key=get("k"),
        created_at=float(r["c"]) if "c" in r else scheduled,
        started_at=_float(get("b")),
        finished_at=_float(get("f")),
        result=_json(get("r"), None),
        error=get("e"),
        traceback=get("x"),
        output=get("o"),
        lease_until=_float(get("l")),
        worker=get("w"),
        deliveries=int(get("d", 0)),
        fire_time=_float(get("t")),
    )


def _rows(rows: Sequence[Sequence[str]]) -> list[Task]:
    """A script's claimed tasks: `[id, record]` pairs."""
    return [task_from_record(task_id, raw) for task_id, raw in rows]


def run_from_json(text: str) -> Run:
    raw = json.loads(text)

    def f(name: str) -> float | None:
        return float(raw[name]) if raw.get(name) not in (None, "") else None

    return Run(
        task_id=raw["task_id"],
        job=raw["job"],
        queue=raw["queue"],
        attempt=int(raw.get("attempt", 0)),
        status=TaskStatus(raw["status"]),
        started_at=f("started_at"),
        finished_at=float(raw["finished_at"]),
        args=json.loads(raw.get("args", "[]")),
        kwargs=json.loads(raw.get("kwargs", "{}")),
        priority=int(raw.get("priority", 5)),
        scheduled_at=f("scheduled_at"),
        result=json.loads(raw["result"]) if "result" in raw else None,
        error=raw.get("error"),
        traceback=raw.get("traceback"),
        output=raw.get("output"),
    )


def run_to_json(run: Run) -> str:
    from ...models import dumps

    raw: dict[str, str] = {
        "task_id": run.task_id,
        "job": run.job,
        "queue": run.queue,
        "attempt": str(run.attempt),
        "status": TaskStatus(run.status).value,
        "finished_at": _num(run.finished_at),
        "priority": str(run.priority),
        "args": dumps(run.args),
        "kwargs": dumps(run.kwargs),
    }
    if run.started_at is not None:
        raw["started_at"] = _num(run.started_at)
    if run.scheduled_at is not None:
        raw["scheduled_at"] = _num(run.scheduled_at)
    if run.result is not None:
        raw["result"] = dumps(run.result)
    for name in ("error", "traceback", "output"):
        if getattr(run, name) is not None:
            raw[name] = getattr(run, name)
    return json.dumps(raw, sort_keys=True)
