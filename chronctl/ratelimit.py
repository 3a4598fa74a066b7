"""Rate limits: when a task of a rate-limited job may run.

A task without a token never waits in a worker slot: the worker gives it
back to the queue until its turn, so due tasks of other jobs run meanwhile.
Where the backend shares one window among all its workers (`SharedRateLimit`,
Redis) that window decides; elsewhere each worker process keeps a token
bucket per job.
"""

from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING

from .backends.base import SharedRateLimit

if TYPE_CHECKING:
    from .backends.base import QueueBackend
    from .jobs import JobSpec
    from .models import Task

MAX_RESERVED = 100_000  # turns remembered; past this they are all forgotten (a task asks anew)


class TokenBucket:
    """`count` runs per `per` seconds in this process, bursts up to `count`."""

    def __init__(self, count: int, per: float) -> None:
        self.rate = count / per
        self.capacity = float(count)
        self.tokens = float(count)
        self.updated = time.monotonic()

    def take(self) -> float:
        """Take a token, possibly a future one: 0.0 = run now, else seconds until the
        token reserved for this caller is due (so waiting tasks get distinct turns)."""
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        self.tokens -= 1
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


class RateLimits:
    """The rate limits one worker enforces, for every job that has one."""

    def __init__(self, backend: QueueBackend, concurrency: int) -> None:
        # Decided once: the backend's class does not change while the worker runs.
        self._shared = backend if isinstance(backend, SharedRateLimit) else None
        self._concurrency = concurrency
        self._buckets: dict[str, TokenBucket] = {}
        self._reserved: dict[str, float] = {}  # task id -> the epoch time of its turn

    async def wait(self, spec: JobSpec, task: Task) -> float:
        """Seconds `task` must step aside before it may run (0.0 = run now)."""
        if spec.rate_limit is None:
            return 0.0
        count, per = spec.rate_limit
        if self._shared is not None:
            # One window for every worker on the backend; it reserves nothing, so a
            # task that stepped aside asks again (with jitter against a thundering herd).
            wait = await self._shared.acquire_rate(spec.name, count, per)
            return wait + random.uniform(0, self._concurrency * per / count) if wait else 0.0
        turn = self._reserved.pop(task.id, None)
        if turn is not None and time.time() >= turn - 0.005:
            return 0.0  # back at the turn reserved for it: its token is already taken
        bucket = self._buckets.get(spec.name)
        if bucket is None:
            bucket = self._buckets[spec.name] = TokenBucket(count, per)
        wait = bucket.take()
        if wait > 0:
            if len(self._reserved) > MAX_RESERVED:
                self._reserved.clear()
            self._reserved[task.id] = time.time() + wait
        return wait
