"""Backpressure: `max_pending` per queue, so a runaway producer is refused, not stored.

Without a limit a producer that outruns its workers fills the backend until
the server runs out of memory or disk, and everything on it stops. With one,
the producer gets `QueueFull` (exit 1 from the CLI) and a cron fire is
recorded as skipped with the reason, never silently dropped.

The check reads the queue's pending count, then stores: no backend method
changes. Producers that enqueue at the same moment can therefore overshoot
the limit by at most what they have in flight together (one task each, or one
`enqueue --from` file each); the limit bounds growth, it is not an exact quota.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .errors import QueueFull

if TYPE_CHECKING:
    from .backends.base import QueueBackend
    from .models import Task


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
