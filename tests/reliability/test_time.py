"""Time: skewed clocks and several schedulers never double-fire."""

from __future__ import annotations

from pathlib import Path

import pytest

from chronctl import Scheduler
from chronctl.backends.sqlite import SQLiteBackend

pytestmark = pytest.mark.reliability


async def test_skewed_schedulers_fire_each_minute_once(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    start = 1_800_000_000.0  # a round minute (divisible by 60)
    now = {"t": start}
    offsets = (-30.0, 0.0, 30.0)  # three hosts: one 30 s slow, one 30 s fast
    schedulers = []
    for offset in offsets:
        s = Scheduler(SQLiteBackend(db), misfire_grace_time=120,
                      clock=lambda o=offset: now["t"] + o)
        s.job(name="minutely", cron="* * * * *", concurrency_policy="allow")(lambda: None)
        await s.backend.connect()
        schedulers.append(s)
    # The job is first seen at `start`; walk ten minutes in 7 s steps, every host waking.
    await schedulers[1].backend.job_state("minutely", start)
    while now["t"] < start + 600:
        now["t"] += 7
        for s in schedulers:
            await s.fire_due()
    tasks = await schedulers[0].backend.list_tasks(job="minutely", limit=None)
    fires = sorted(t.fire_time for t in tasks if t.fire_time is not None)
    assert len(fires) == len(set(fires)), "a minute fired twice"
    # Every minute boundary the fast host reached was fired exactly once.
    assert fires == [start + 60 * i for i in range(1, len(fires) + 1)]
    assert len(fires) >= 10
    for s in schedulers:
        await s.backend.disconnect()
