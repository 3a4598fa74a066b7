"""Retention that runs by itself: old finished tasks, history and dead letters go.

A cron replacement runs for years; without this, a job every minute leaves
525,000 tasks and history rows a year and nothing deletes them unless an
operator runs `chronctl cleanup`. A running scheduler (role `all` or
`scheduler`) applies the policy about once a minute:

- `keep_history`: succeeded and cancelled tasks, and history rows (every
  run's row, dead letters' included), finished longer ago than this go;
- `keep_dead`: dead letters finished longer ago than this go;
- `max_dead`: past this many dead letters, the oldest go.

Each is None ("forever" in the manifest) to keep everything. Pending and
running tasks are never touched.

A job may set its own `keep_history` and `keep_dead` (`[jobs.NAME]`): the
default's steps leave that job's rows alone (`exclude_jobs`) and the job's own
steps (`job=`) apply its setting, so a job kept a year loses nothing to the
30-day default, and a noisy job kept a day is trimmed daily. Every backend
reads those rows through a per-job index, so the default's steps never re-read
a kept job's rows. `max_dead` is a cap on the whole backend's dead letters
(what protects the store), so it counts and may remove every job's.

The work is done in small steps (the backends' `cleanup`/`purge_dead` with a
`limit`: no long SQLite transaction, no long Redis script) and one pass stops
after `PASS_BUDGET` seconds, leaving the rest to the next.

Only one process per backend runs a pass per slot: the lease is a fire of the
reserved pseudo-job `chronctl:retention` recorded through `record_fire`, the
same atomic step that makes several schedulers fire a cron occurrence once.
The pass's outcome is stored as a note on the backend, so `status` and the
metrics of any process show what was removed and when.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from .errors import Unsupported
from .models import FireOutcome, TaskStatus, iso

if TYPE_CHECKING:
    from .backends.base import QueueBackend
    from .jobs import JobSpec

log = logging.getLogger("chronctl.retention")

#: The pseudo-job whose fires are the lease (a colon: no manifest job can be named so).
LEASE_JOB = "chronctl:retention"
NOTE = "retention"
#: Rows per step. Measured on the shared 2-core VM at load average 9.4 (README,
#: "Retention and backpressure"): a SQLite step of 500 tasks + 500 history rows spends
#: 4.7 ms median, 11.3 ms at most inside its transaction; a Redis delete script of 500
#: tasks takes 3.25 ms median, 11.96 ms at most, round trip included.
STEP = 500
#: Seconds one pass may work; what is left waits for the next pass.
PASS_BUDGET = 10.0
INTERVAL = 60.0
DAY = 86400.0
#: Statuses `keep_history` deletes: finished tasks (not dead letters) and every history row.
HISTORY_STATUSES = (TaskStatus.SUCCEEDED, TaskStatus.CANCELLED, TaskStatus.FAILED)


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """`[scheduler] keep_history`, `keep_dead`, `max_dead` (None: keep forever), and
    the jobs that set their own `keep_history` / `keep_dead` (job -> seconds or None)."""

    keep_history: float | None = 30 * DAY
    keep_dead: float | None = 180 * DAY
    max_dead: int | None = 10_000
    job_history: Mapping[str, float | None] = field(default_factory=dict)
    job_dead: Mapping[str, float | None] = field(default_factory=dict)

    def with_jobs(self, jobs: Iterable[JobSpec]) -> RetentionPolicy:
        """This policy plus the `keep_history`/`keep_dead` the jobs set themselves (a
        job the policy already names keeps the policy's value)."""
        history = {j.name: j.keep_history for j in jobs if not isinstance(j.keep_history, str)}
        dead = {j.name: j.keep_dead for j in jobs if not isinstance(j.keep_dead, str)}
        history.update(self.job_history)
        dead.update(self.job_dead)
        return replace(self, job_history=history, job_dead=dead)

    def _keeps(self) -> list[float | None]:
        return [
            self.keep_history,
            self.keep_dead,
            *self.job_history.values(),
            *self.job_dead.values(),
        ]

    @property
    def active(self) -> bool:
        return self.max_dead is not None or any(k is not None for k in self._keeps())

    @property
    def interval(self) -> float:
        """Seconds between passes: a minute, or half the shortest keep (at least 1 s) so
        that `keep_history = "2s"` (tests, soaks) is applied within seconds."""
        keeps = [k for k in self._keeps() if k is not None]
        return max(1.0, min([INTERVAL, *(k / 2 for k in keeps)]))

    def to_public(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "keep_history": self.keep_history,
            "keep_dead": self.keep_dead,
            "max_dead": self.max_dead,
        }
        jobs: dict[str, dict[str, float | None]] = {}
        for key, table in (("keep_history", self.job_history), ("keep_dead", self.job_dead)):
            for name, keep in table.items():
                jobs.setdefault(name, {})[key] = keep
        out["jobs"] = {name: jobs[name] for name in sorted(jobs)}
        return out


FOREVER = RetentionPolicy(None, None, None)


@dataclass(slots=True)
class RetentionReport:
    """The last pass on a backend, and totals since the note was first written."""

    at: float  # when the last pass ended
    by: str  # the process that ran it
    seconds: float  # how long it took
    finished: int  # finished tasks plus history rows removed by it
    dead: int  # dead letters removed by it
    total_finished: int = 0
    total_dead: int = 0
    passes: int = 0
    complete: bool = True  # False: the pass ran out of budget and left old rows

    def to_public(self) -> dict[str, Any]:
        out = asdict(self)
        out["at"] = iso(self.at)
        return out

    @classmethod
    def parse(cls, text: str | None) -> RetentionReport | None:
        if not text:
            return None
        try:
            return cls(**json.loads(text))
        except (ValueError, TypeError):
            return None  # a note written by another version: shown as none, rewritten next pass


async def last_report(backend: QueueBackend) -> RetentionReport | None:
    """What the last pass on this backend removed, and when (None: never ran)."""
    return RetentionReport.parse(await backend.get_note(NOTE))


async def take_lease(backend: QueueBackend, slot: float) -> bool:
    """Whether this process runs the pass of `slot` (one process per backend per slot)."""
    outcome = await backend.record_fire(LEASE_JOB, slot, None, None)
    return outcome is FireOutcome.MISSED  # recorded by us; DUPLICATE: someone else's


async def _drain(step: Callable[[], Any], deadline: float) -> tuple[int, bool]:
    """Repeat a limited delete until it finds nothing or the budget runs out."""
    removed = 0
    while True:
        count = await step()
        removed += count
        if count == 0:
            return removed, True
        if time.monotonic() > deadline:
            return removed, False
        await asyncio.sleep(0)  # let the worker's claims and acks in between


Scope = tuple[float, str | None, tuple[str, ...]]


def _scopes(default: float | None, jobs: Mapping[str, float | None]) -> list[Scope]:
    """(keep, job, exclude_jobs) per step loop: the default for every job without a
    setting of its own, then each job that has one (none for "forever")."""
    own = tuple(sorted(jobs))
    out: list[Scope] = [] if default is None else [(default, None, own)]
    return out + [(keep, name, ()) for name, keep in sorted(jobs.items()) if keep is not None]


def _history_scopes(policy: RetentionPolicy) -> list[Scope]:
    return _scopes(policy.keep_history, policy.job_history)


def _dead_scopes(policy: RetentionPolicy) -> list[Scope]:
    return _scopes(policy.keep_dead, policy.job_dead)


async def apply(
    backend: QueueBackend,
    policy: RetentionPolicy,
    *,
    now: float | None = None,
    by: str = "",
    budget: float = PASS_BUDGET,
) -> RetentionReport:
    """One pass of `policy` now, in small steps; records and returns the report."""
    now = time.time() if now is None else now
    started = time.monotonic()
    deadline = started + budget
    finished = dead = 0
    complete = True
    for keep, job, own in _history_scopes(policy):
        history_cutoff = now - keep

        def history_step(
            cutoff: float = history_cutoff, job: str | None = job, own: tuple[str, ...] = own
        ) -> Any:
            return backend.cleanup(cutoff, HISTORY_STATUSES, limit=STEP, job=job, exclude_jobs=own)

        count, done = await _drain(history_step, deadline)
        finished += count
        complete &= done
    for keep, job, own in _dead_scopes(policy):
        dead_cutoff = now - keep

        def dead_step(
            cutoff: float = dead_cutoff, job: str | None = job, own: tuple[str, ...] = own
        ) -> Any:
            return backend.purge_dead(cutoff, limit=STEP, job=job, exclude_jobs=own)

        count, done = await _drain(dead_step, deadline)
        dead += count
        complete &= done
    if policy.max_dead is not None:
        excess = await backend.count_dead() - policy.max_dead
        while excess > 0:
            count = await backend.purge_dead(None, limit=min(excess, STEP))
            if count == 0:
                break
            dead += count
            excess -= count
            if time.monotonic() > deadline:
                complete = False
                break
    previous = await last_report(backend)
    report = RetentionReport(
        at=time.time(),
        by=by,
        seconds=round(time.monotonic() - started, 3),
        finished=finished,
        dead=dead,
        total_finished=(previous.total_finished if previous else 0) + finished,
        total_dead=(previous.total_dead if previous else 0) + dead,
        passes=(previous.passes if previous else 0) + 1,
        complete=complete,
    )
    await backend.set_note(NOTE, json.dumps(asdict(report)))
    if finished or dead:
        log.info(
            "removed %d finished task/history row(s) and %d dead letter(s) in %.2fs%s",
            finished,
            dead,
            report.seconds,
            "" if complete else " (more next pass)",
        )
    return report


async def run_forever(
    backend: QueueBackend,
    policy: RetentionPolicy,
    *,
    by: str,
    clock: Callable[[], float] = time.time,
) -> None:
    """Apply `policy` once per slot (`policy.interval`) while the process runs.

    The first pass comes at least one interval after start, so a scheduler started for a
    moment (tests, `run --once`) never deletes anything. A failed pass is logged
    and retried at the next slot.
    """
    if not policy.active:
        return
    interval = policy.interval
    next_slot = math.ceil((clock() + interval) / interval) * interval
    while True:
        await asyncio.sleep(max(0.0, next_slot - clock()))
        slot = math.floor(clock() / interval) * interval
        next_slot = slot + interval
        try:
            if await take_lease(backend, slot):
                await apply(backend, policy, by=by)
        except Unsupported as exc:  # a custom backend without fire records or cleanup
            log.info("retention is off: %s", exc)
            return
        except Exception as exc:  # a failed pass must not stop the scheduler; the next retries
            log.warning("retention pass failed: %s; trying again next pass", exc)
