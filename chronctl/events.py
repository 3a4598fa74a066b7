"""Events: what happened to tasks and jobs, for library users, metrics and the CLI.

Each event is a frozen dataclass (`TaskFailed`, `JobFired`, ...) whose fields
a type checker knows. `scheduler.on("task_failed", handler)` subscribes by
name, `scheduler.on(TaskFailed, handler)` by class; either way the handler
gets the typed object. `event.name`, `event.job`, `event.task` and
`event.data` (the other fields as a dict) read as they did when there was
one untyped `Event`, so older handlers keep working.

Emitters call `emit(name, **fields)`: the object is built only when someone
listens, so an event nobody subscribed to costs one dict lookup.

Handlers are observers: an exception in one is logged and never breaks the
worker or the scheduler.
"""

from __future__ import annotations

import inspect
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, ClassVar, TypeVar, overload

from .models import Task

log = logging.getLogger("chronctl.events")


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Base of every event; `job` defaults to the task's job."""

    name: ClassVar[str] = ""
    job: str | None = None
    task: Task | None = None

    def __post_init__(self) -> None:
        if self.job is None and self.task is not None:
            object.__setattr__(self, "job", self.task.job)

    @property
    def data(self) -> dict[str, Any]:
        """The fields beyond `job` and `task`, e.g. `{"retry_at": ...}` for task_failed."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _COMMON}


_COMMON = frozenset({"job", "task"})


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskEnqueued(Event):
    """A task was stored: by `enqueue`, a fire, `trigger` or an `on_failure` follow-up."""

    name: ClassVar[str] = "task_enqueued"
    task: Task


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskStarted(Event):
    """A worker claimed the task and is about to run it."""

    name: ClassVar[str] = "task_started"
    task: Task


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskSucceeded(Event):
    """A run returned; `task.result` holds its JSON result."""

    name: ClassVar[str] = "task_succeeded"
    task: Task


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskFailed(Event):
    """A run failed; `retry_at` is when it runs again, None when it went dead."""

    name: ClassVar[str] = "task_failed"
    task: Task
    retry_at: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskDead(Event):
    """A task ran out of retries and is now a dead letter."""

    name: ClassVar[str] = "task_dead"
    task: Task


@dataclass(frozen=True, slots=True, kw_only=True)
class JobFired(Event):
    """A trigger fired and stored `task`; `coalesced` fires were folded into it."""

    name: ClassVar[str] = "job_fired"
    job: str
    task: Task
    fire_time: datetime
    coalesced: int = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class JobMissed(Event):
    """`count` fires were older than misfire_grace_time: recorded, not run."""

    name: ClassVar[str] = "job_missed"
    job: str
    count: int
    fire_time: datetime  # the last one missed


@dataclass(frozen=True, slots=True, kw_only=True)
class JobSkipped(Event):
    """A fire stored no task: the job is paused, or max_instances are running."""

    name: ClassVar[str] = "job_skipped"
    job: str
    fire_time: datetime
    reason: str


EVENT_TYPES: dict[str, type[Event]] = {
    cls.name: cls
    for cls in (
        TaskEnqueued,
        TaskStarted,
        TaskSucceeded,
        TaskFailed,
        TaskDead,
        JobFired,
        JobMissed,
        JobSkipped,
    )
}
EVENTS = frozenset(EVENT_TYPES)

E = TypeVar("E", bound=Event)
Handler = Callable[[Any], Awaitable[None] | None]


class EventBus:
    def __init__(self) -> None:
        self._handlers: dict[str, list[Handler]] = defaultdict(list)

    @overload
    def on(
        self, event: type[E], handler: Callable[[E], Awaitable[None] | None]
    ) -> Callable[[E], Awaitable[None] | None]: ...
    @overload
    def on(self, event: str, handler: Handler) -> Handler: ...
    def on(self, event: str | type[Event], handler: Handler) -> Handler:
        """Call `handler(event)` for each event of this name or class ("*": every event)."""
        name = event if isinstance(event, str) else event.name
        if name not in EVENTS and name != "*":
            raise ValueError(f"unknown event '{name}': expected one of {', '.join(sorted(EVENTS))}")
        self._handlers[name].append(handler)
        return handler

    def off(self, event: str | type[Event], handler: Handler) -> None:
        name = event if isinstance(event, str) else event.name
        if handler in self._handlers.get(name, []):
            self._handlers[name].remove(handler)

    def has(self, name: str) -> bool:
        """Whether anyone listens: lets an emitter skip work done only for the event."""
        return bool(self._handlers.get(name) or self._handlers.get("*"))

    async def emit(self, name: str, **fields: Any) -> None:
        """Build the event `name` from `fields` and hand it to its handlers, if any."""
        handlers = self._handlers.get(name, []) + self._handlers.get("*", [])
        if not handlers:
            return
        event = EVENT_TYPES[name](**fields)
        for handler in handlers:
            try:
                out = handler(event)
                if inspect.isawaitable(out):
                    await out
            except Exception:
                log.exception("event handler %r for %s failed", handler, name)
