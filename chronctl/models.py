"""The data chronctl stores and passes around: tasks, runs, jobs, job state.

Times are float epoch seconds inside the engine and the backends (cheap to
compare and store); they become ISO 8601 with offset only at the edges
(`--json`, tables).
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from .errors import UsageError

#: A job or queue name's limit in UTF-8 bytes: a RabbitMQ queue name (prefix included)
#: stops at 255, and a name is printed in every table row and log line.
MAX_NAME_BYTES = 200


class TaskStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # a run's outcome in history; a task itself goes back to pending or dead
    DEAD = "dead"
    CANCELLED = "cancelled"


FINISHED = frozenset({TaskStatus.SUCCEEDED, TaskStatus.DEAD, TaskStatus.CANCELLED})
ACTIVE = frozenset({TaskStatus.PENDING, TaskStatus.RUNNING})


def new_task_id() -> str:
    """Time-ordered ids sort like creation order, which keeps listings readable."""
    return f"{int(time.time() * 1000):012x}{uuid.uuid4().hex[:12]}"


def check_name(value: object, what: str) -> str:
    """A job or queue name, checked: 1..200 bytes, printable, no spaces or commas.

    One rule for both kinds of name, wherever one enters (manifest, `--queue`,
    `enqueue --from` lines, the Python API): a name is printed in operators'
    tables and log lines, becomes part of Redis keys and RabbitMQ queue names,
    and `--queues a,b` splits on commas. Raises UsageError (exit 2).
    """
    if not isinstance(value, str) or not value:
        raise UsageError(f"a {what} name must be a non-empty string, not {value!r}")
    size = len(value.encode("utf-8", "surrogatepass"))
    if size > MAX_NAME_BYTES:
        raise UsageError(
            f"{what} name {value[:20]!r}... is {size} bytes long: the limit is {MAX_NAME_BYTES}"
        )
    for char in value:
        if not char.isprintable() or char.isspace() or char == ",":
            raise UsageError(
                f"bad {what} name {value!r}: {char!r} is not allowed "
                "(no control characters, spaces or commas)"
            )
    return value


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat()


@dataclass(slots=True)
class Task:
    """One requested run of a job. Only JSON values travel in args/kwargs."""

    job: str
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    queue: str = "default"
    priority: int = 5
    scheduled_at: float = 0.0
    id: str = field(default_factory=new_task_id)
    status: TaskStatus = TaskStatus.PENDING
    attempt: int = 0
    max_retries: int = 3
    key: str | None = None
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    result: Any = None
    error: str | None = None
    traceback: str | None = None
    output: str | None = None
    lease_until: float | None = None
    worker: str | None = None
    deliveries: int = 0
    fire_time: float | None = None

    def __post_init__(self) -> None:
        if not self.scheduled_at:
            self.scheduled_at = self.created_at
        if not isinstance(self.status, TaskStatus):
            self.status = TaskStatus(self.status)

    @property
    def duration(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return max(0.0, self.finished_at - self.started_at)

    def to_record(self) -> dict[str, Any]:
        """Every field, for backends that store a task as one document."""
        data = asdict(self)
        data["status"] = self.status.value
        return data

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> Task:
        return cls(**{k: v for k, v in data.items() if k in _TASK_FIELDS})

    def to_public(self) -> dict[str, Any]:
        """The SPEC's JSON shape for a task."""
        return {
            "id": self.id,
            "job": self.job,
            "status": self.status.value,
            "queue": self.queue,
            "priority": self.priority,
            "attempt": self.attempt,
            "args": self.args,
            "kwargs": self.kwargs,
            "scheduled_at": iso(self.scheduled_at),
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "duration": self.duration,
            "result": self.result,
            "error": self.error,
        }


_TASK_FIELDS = frozenset(Task.__dataclass_fields__)


def _make_task_copier() -> Any:
    # copy.copy() on a slots dataclass goes through __reduce_ex__ (about 4 us); one
    # generated function assigning each field is ten times cheaper, and the memory
    # backend copies every task it stores and hands out.
    body = "".join(f"    new.{name} = task.{name}\n" for name in Task.__dataclass_fields__)
    namespace: dict[str, Any] = {"_new": object.__new__, "Task": Task}
    exec(f"def copy_task(task):\n    new = _new(Task)\n{body}    return new\n", namespace)
    return namespace["copy_task"]


#: A shallow copy of a task (args/kwargs/result shared), like copy.copy but faster.
copy_task = _make_task_copier()


@dataclass(slots=True)
class Run:
    """One finished execution of a task: the history row."""

    task_id: str
    job: str
    queue: str
    attempt: int
    status: TaskStatus
    started_at: float | None
    finished_at: float
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    priority: int = 5
    scheduled_at: float | None = None
    result: Any = None
    error: str | None = None
    traceback: str | None = None
    output: str | None = None

    @property
    def duration(self) -> float | None:
        if self.started_at is None:
            return None
        return max(0.0, self.finished_at - self.started_at)

    def to_public(self) -> dict[str, Any]:
        return {
            "id": self.task_id,
            "job": self.job,
            "status": TaskStatus(self.status).value,
            "queue": self.queue,
            "priority": self.priority,
            "attempt": self.attempt,
            "args": self.args,
            "kwargs": self.kwargs,
            "scheduled_at": iso(self.scheduled_at),
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "duration": self.duration,
            "result": self.result,
            "error": self.error,
        }

    @classmethod
    def of(cls, task: Task, status: TaskStatus) -> Run:
        return cls(
            task_id=task.id,
            job=task.job,
            queue=task.queue,
            attempt=task.attempt,
            status=status,
            started_at=task.started_at,
            finished_at=task.finished_at or time.time(),
            args=task.args,
            kwargs=task.kwargs,
            priority=task.priority,
            scheduled_at=task.scheduled_at,
            result=task.result,
            error=task.error,
            traceback=task.traceback,
            output=task.output,
        )


@dataclass(slots=True)
class JobState:
    """What the backend remembers of a job between restarts and across processes."""

    name: str
    first_seen: float
    last_fire: float | None = None
    paused: bool = False


#: Seconds between a running process's heartbeats; `status` calls one silent for two
#: beats stale.
HEARTBEAT_INTERVAL = 10.0


@dataclass(slots=True)
class Process:
    """A running `chronctl run` as the backend last heard of it (for `status`)."""

    id: str
    host: str
    pid: int
    role: str
    started: float
    last_beat: float
    queues: list[str] | None = None

    def to_public(
        self, now: float | None = None, stale_after: float = 2 * HEARTBEAT_INTERVAL
    ) -> dict[str, Any]:
        now = time.time() if now is None else now
        return {
            "id": self.id,
            "host": self.host,
            "pid": self.pid,
            "role": self.role,
            "started": iso(self.started),
            "last_beat": iso(self.last_beat),
            "queues": self.queues,
            "alive": now - self.last_beat <= stale_after,
        }


class FireOutcome(StrEnum):
    ENQUEUED = "enqueued"
    DUPLICATE = "duplicate"  # another scheduler already recorded this fire
    SKIPPED = "skipped"  # max_instances reached: recorded, not run
    MISSED = "missed"  # past the misfire grace: recorded, not run
    PAUSED = "paused"  # the job is paused: recorded, not run


def dumps(value: Any) -> str:
    """JSON for storage; refuse anything that is not a JSON value (never pickle)."""
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


def loads(text: str | bytes | None) -> Any:
    if text is None:
        return None
    return json.loads(text)
