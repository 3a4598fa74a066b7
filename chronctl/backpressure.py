"""Backpressure: `max_pending` per queue, so a runaway producer is refused, not stored.

Without a limit a producer that outruns its workers fills the backend until
the server runs out of memory or disk, and everything on it stops. With one,
the producer gets `QueueFull` (exit 1 from the CLI) and a cron fire is
recorded as skipped with the reason, never silently dropped.

A skipped fire is also stored as a note on the backend (`skip:<job>`: when,
and why), the one place every process can read, so `jobs list` and the metrics
of any host show a job's last skip beside its last run.

The check reads the queue's pending count, then stores: no backend method
changes. Producers that enqueue at the same moment can therefore overshoot
the limit by at most what they have in flight together (one task each, or one
`enqueue --from` file each); the limit bounds growth, it is not an exact quota.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import ChronctlError, QueueFull, Unsupported
from .models import iso

if TYPE_CHECKING:
    from .backends.base import QueueBackend
    from .models import Task


log = logging.getLogger("chronctl.backpressure")

#: The note holding a job's last skipped fire is this plus the job's name.
SKIP_NOTE = "skip:"


@dataclass(frozen=True, slots=True)
class SkippedFire:
    """A job's last fire that stored no task: its fire time and the reason."""

    fire_time: float
    reason: str

    def to_public(self) -> dict[str, Any]:
        return {"fire_time": iso(self.fire_time), "reason": self.reason}


async def record_skip(backend: QueueBackend, job: str, fire_time: float, reason: str) -> None:
    """Store `job`'s last skipped fire for every process (best effort: a backend
    without notes, or one that fails now, still has the log line and the event)."""
    value = json.dumps({"fire_time": fire_time, "reason": reason})
    try:
        await backend.set_note(SKIP_NOTE + job, value)
    except Unsupported:
        pass
    except ChronctlError as exc:
        log.debug("cannot store the skipped fire of %s: %s", job, exc)


async def last_skip(backend: QueueBackend, job: str) -> SkippedFire | None:
    """`job`'s last skipped fire, as any process stored it (None: none, or no notes)."""
    try:
        text = await backend.get_note(SKIP_NOTE + job)
    except Unsupported:
        return None
    if not text:
        return None
    try:
        data = json.loads(text)
        return SkippedFire(float(data["fire_time"]), str(data["reason"]))
    except (ValueError, TypeError, KeyError):
        return None  # written by another version: shown as none, replaced by the next skip


@dataclass(frozen=True, slots=True)
class QueueLimits:
    """`[scheduler] max_pending` (every queue) and `[queues.NAME] max_pending` (one)."""

    default: int | None = None
    per_queue: Mapping[str, int] = field(default_factory=dict)

    def max_pending(self, queue: str) -> int | None:
        """The queue's limit; None is unlimited (the default)."""
        return self.per_queue.get(queue, self.default)

    @property
    def any(self) -> bool:
        return self.default is not None or bool(self.per_queue)


UNLIMITED = QueueLimits()


async def check_room(backend: QueueBackend, limits: QueueLimits, tasks: Sequence[Task]) -> None:
    """Raise QueueFull when storing `tasks` would take a queue past its limit.

    Every queue is checked before anything is stored, so a bulk enqueue is
    refused whole. A task whose key finds an existing one is counted too (it
    may not), which errs on the side of refusing.
    """
    if not limits.any:
        return
    for queue, adding in Counter(t.queue for t in tasks).items():
        limit = limits.max_pending(queue)
        if limit is None:
            continue
        pending = await backend.get_queue_size(queue)
        if pending + adding > limit:
            raise QueueFull(queue, pending, limit, adding)


async def full_reason(backend: QueueBackend, limits: QueueLimits, queue: str) -> str | None:
    """Why a fire into `queue` is skipped (the QueueFull message), or None if there is room."""
    limit = limits.max_pending(queue)
    if limit is None:
        return None
    pending = await backend.get_queue_size(queue)
    return str(QueueFull(queue, pending, limit)) if pending >= limit else None
