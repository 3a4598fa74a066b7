"""A small event bus: task_* and job_* events for library users and the CLI.

Handlers are observers: an exception in one is logged and never breaks the
worker or the scheduler.
"""

from __future__ import annotations

import inspect
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from .models import Task

log = logging.getLogger("chronctl.events")

EVENTS = frozenset(
    {
        "task_enqueued",
        "task_started",
        "task_succeeded",
        "task_failed",
        "task_dead",
        "job_missed",
        "job_skipped",
        "job_fired",
    }
)


@dataclass(slots=True)
class Event:
    name: str
    job: str | None = None
    task: Task | None = None
    data: dict[str, Any] = field(default_factory=dict)


Handler = Callable[[Event], Awaitable[None] | None]


class EventBus:
    def __init__(self) -> None:
        self._handlers: dict[str, list[Handler]] = defaultdict(list)

    def on(self, name: str, handler: Handler) -> Handler:
        if name not in EVENTS and name != "*":
            raise ValueError(f"unknown event '{name}': expected one of {', '.join(sorted(EVENTS))}")
        self._handlers[name].append(handler)
        return handler

    def off(self, name: str, handler: Handler) -> None:
        if handler in self._handlers.get(name, []):
            self._handlers[name].remove(handler)

    def has(self, name: str) -> bool:
        return bool(self._handlers.get(name) or self._handlers.get("*"))

    async def emit(
        self, name: str, *, job: str | None = None, task: Task | None = None, **data: Any
    ) -> None:
        handlers = self._handlers.get(name, []) + self._handlers.get("*", [])
        if not handlers:
            return
        event = Event(name, job if job is not None else (task.job if task else None), task, data)
        for handler in handlers:
            try:
                out = handler(event)
                if inspect.isawaitable(out):
                    await out
            except Exception:
                log.exception("event handler %r for %s failed", handler, name)
