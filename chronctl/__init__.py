"""chronctl: a cron replacement and task queue.

Public API (imported lazily so `chronctl --version` stays fast):
Scheduler, Task, TaskStatus, JobSpec and the errors.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .errors import (
        BackendError,
        ChronctlError,
        ManifestError,
        QueueFull,
        TaskNotFoundError,
        UnknownJobError,
        Unsupported,
        UsageError,
    )
    from .events import Event
    from .jobs import JobSpec
    from .models import Run, Task, TaskStatus
    from .scheduler import Scheduler

__all__ = [
    "BackendError",
    "ChronctlError",
    "Event",
    "JobSpec",
    "ManifestError",
    "QueueFull",
    "Run",
    "Scheduler",
    "Task",
    "TaskNotFoundError",
    "TaskStatus",
    "UnknownJobError",
    "Unsupported",
    "UsageError",
    "__version__",
]

_HOMES = {
    "Scheduler": "scheduler",
    "Task": "models",
    "TaskStatus": "models",
    "Run": "models",
    "JobSpec": "jobs",
    "Event": "events",
    "BackendError": "errors",
    "ChronctlError": "errors",
    "ManifestError": "errors",
    "QueueFull": "errors",
    "TaskNotFoundError": "errors",
    "UnknownJobError": "errors",
    "Unsupported": "errors",
    "UsageError": "errors",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(name)
    return getattr(importlib.import_module(f".{home}", __name__), name)
