"""Errors a user can cause, each mapped to an exit code by the CLI.

Keeping them in one module lets the CLI turn any of them into one line on
stderr without knowing where it came from.
"""

from __future__ import annotations


class ChronctlError(Exception):
    """Base for every error chronctl reports to a user; exit code 1."""

    exit_code = 1


class UsageError(ChronctlError):
    """Arguments that do not parse (bad JSON, bad duration): exit code 2."""

    exit_code = 2


class ManifestError(UsageError):
    """A manifest that cannot be used: names file, line, job and key where known."""

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        job: str | None = None,
        key: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.message = message
        self.path = path
        self.line = line
        self.job = job
        self.key = key
        self.hint = hint
        super().__init__(self.render())

    def render(self) -> str:
        where = ""
        if self.path:
            where = self.path + (f":{self.line}" if self.line else "")
        subject = ""
        if self.job and self.key:
            subject = f"job '{self.job}', key '{self.key}': "
        elif self.job:
            subject = f"job '{self.job}': "
        elif self.key:
            subject = f"key '{self.key}': "
        text = f"{where}: {subject}{self.message}" if where else f"{subject}{self.message}"
        if self.hint:
            text += f" (did you mean '{self.hint}'?)"
        # A job or key name may hold any character TOML allows: keep the message one line.
        return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class TriggerError(UsageError):
    """A cron string, interval or date that cannot fire."""


class UnknownJobError(ChronctlError):
    """A task or command names a job the manifest does not define."""

    def __init__(self, job: str, hint: str | None = None) -> None:
        self.job = job
        super().__init__(f"unknown job '{job}'" + (f" (did you mean '{hint}'?)" if hint else ""))


class UnknownQueueError(ChronctlError):
    """A command names a queue that no job uses and that holds no tasks: a typo, most likely."""

    def __init__(self, queue: str, known: list[str], hint: str | None = None) -> None:
        self.queue = queue
        shown = ", ".join(known[:10]) + (f" and {len(known) - 10} more" if len(known) > 10 else "")
        text = f"unknown queue '{queue}'"
        if hint:
            text += f": did you mean '{hint}'?"
        text += f" (known queues: {shown})" if known else " (no queue is known yet)"
        super().__init__(text)


class TaskNotFoundError(ChronctlError):
    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        super().__init__(f"task '{task_id}' not found")


class QueueFull(ChronctlError):
    """An enqueue would take a queue past its `max_pending`: nothing was stored.

    Raised by `Scheduler.enqueue`, `enqueue_many` and the CLI's `enqueue` and
    `trigger`, so a runaway producer meets a refusal it can handle (back off,
    shed load) instead of filling the backend until the server falls over.
    """

    def __init__(self, queue: str, pending: int, limit: int, adding: int = 1) -> None:
        self.queue = queue
        self.pending = pending
        self.limit = limit
        self.adding = adding
        text = f"queue '{queue}' is full: {pending} pending (max_pending {limit})"
        if adding > 1:
            text = (
                f"queue '{queue}' is full: {pending} pending + {adding} new would pass "
                f"max_pending {limit}; nothing stored"
            )
        super().__init__(text)


class BackendError(ChronctlError):
    """The backend failed or cannot be reached; the message never carries credentials."""


class BackendUnavailableError(BackendError):
    pass


class Unsupported(BackendError):
    """A custom backend left out an optional capability (see QueueBackend): one line
    naming the backend and what it cannot do, instead of a NotImplementedError trace."""

    def __init__(self, backend: str, capability: str) -> None:
        super().__init__(f"{backend} does not support {capability}")
        self.capability = capability


def exception_text(exc: BaseException) -> str:
    """`Type: message` for whatever a job raised, even when its `__str__` raises:
    describing a failure must never be what loses it."""
    try:
        message = str(exc)
    except Exception as broken:
        message = f"<str() raised {type(broken).__name__}>"
    return f"{type(exc).__name__}: {message}"
