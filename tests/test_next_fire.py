"""One rule for "when does this job fire next": the fire loop, `validate`, `jobs list`,
`jobs next` and `Scheduler.next_fires` give the same time, for cron, every and at,
with and without stored job state (issue 16, item 2).

The clock is fixed, so "the same" means equal, not close.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from chronctl import Scheduler
from chronctl.admin import job_next_fires, job_states, jobs_overview, validate_manifest
from chronctl.backends.sqlite import SQLiteBackend
from chronctl.manifest import Manifest, parse_manifest

NOW = datetime(2026, 3, 10, 12, 0, 7, 250000, tzinfo=UTC).timestamp()
FIRST_SEEN = NOW - 1000.4  # an interval counts from here, not from "now"

MANIFEST = """
[scheduler]
backend = "memory://"

[jobs.nightly]
command = ["true"]
cron = "30 2 * * *"
timezone = "America/New_York"

[jobs.beat]
command = ["true"]
every = "20s"

[jobs.launch]
command = ["true"]
at = "2026-03-10T12:30:00+00:00"

[jobs.gone]
command = ["true"]
at = "2026-03-10T11:00:00+00:00"

[jobs.manual]
command = ["true"]
"""


def manifest() -> Manifest:
    return parse_manifest(MANIFEST)


async def loop_next(backend: SQLiteBackend, job: str) -> dict[str, float | None]:
    """What the fire loop waits for next, after firing what it owed (one job per
    scheduler, so `fire_due`'s next wake is that job's next fire), and what that
    scheduler's `next_fires` says once the loop has read the job's state."""
    m = manifest()
    scheduler = Scheduler(backend, clock=lambda: NOW, misfire_grace_time=0.0)
    scheduler.add_job(m.jobs[job])
    woken = await scheduler.fire_due()
    listed = scheduler.next_fires(job, 1, datetime.fromtimestamp(NOW, UTC))
    return {"fire loop": woken, "next_fires": listed[0].timestamp() if listed else None}


async def shown(backend: SQLiteBackend) -> dict[str, dict[str, float | None]]:
    """Each display's next fire per job, as epoch seconds."""
    m = manifest()
    states = await job_states(backend)
    report = validate_manifest(m, states, NOW)
    overview = await jobs_overview(backend, m.jobs.values(), NOW)
    out: dict[str, dict[str, float | None]] = {}
    for job in m.jobs:
        listed = next(r for r in overview if r.name == job)
        validated = next(r for r in report.jobs if r.name == job)
        upcoming = job_next_fires(m, job, 1, states, NOW)
        out[job] = {
            "validate": validated.next_fire.timestamp() if validated.next_fire else None,
            "jobs list": listed.next_fire.timestamp() if listed.next_fire else None,
            "jobs next": upcoming[0].timestamp() if upcoming else None,
        }
    return out


def agreed(views: dict[str, float | None]) -> float | None:
    assert len(set(views.values())) == 1, views
    return next(iter(views.values()))


EXPECTED_NEW = {
    # 02:30 New York (EDT from 8 March) is 06:30 UTC, on the next day.
    "nightly": datetime(2026, 3, 11, 6, 30, tzinfo=UTC).timestamp(),
    "beat": NOW + 20,  # a job first seen now counts from now
    "launch": datetime(2026, 3, 10, 12, 30, tzinfo=UTC).timestamp(),
    "gone": None,
    "manual": None,
}


async def test_without_stored_state_all_agree(tmp_path: Path) -> None:
    backend = SQLiteBackend(tmp_path / "state.db")
    await backend.connect()
    try:
        views = await shown(backend)
        for job, expected in EXPECTED_NEW.items():
            assert agreed(views[job]) == expected, job
        # The loop meets the jobs for the first time now: it records them first seen now.
        for job, expected in EXPECTED_NEW.items():
            assert agreed(await loop_next(backend, job)) == expected, job
    finally:
        await backend.disconnect()


@pytest.mark.parametrize("job", ["nightly", "beat", "launch", "gone"])
async def test_with_stored_state_all_agree(tmp_path: Path, job: str) -> None:
    backend = SQLiteBackend(tmp_path / "state.db")
    await backend.connect()
    try:
        await backend.job_state(job, FIRST_SEEN)
        last = {
            "nightly": datetime(2026, 3, 12, 6, 30, tzinfo=UTC).timestamp(),  # ahead: a skewed peer
            "beat": NOW - 13.0,
            "launch": None,
            "gone": datetime(2026, 3, 10, 11, 0, tzinfo=UTC).timestamp(),  # it fired
        }[job]
        if last is not None:
            await backend.record_fire(job, last, None, None)
        views = (await shown(backend))[job]
        expected = {
            "nightly": datetime(2026, 3, 13, 6, 30, tzinfo=UTC).timestamp(),  # after the last
            # Anchored at first_seen: FIRST_SEEN + 51 * 20 is the first multiple after NOW.
            "beat": FIRST_SEEN + 51 * 20,
            "launch": datetime(2026, 3, 10, 12, 30, tzinfo=UTC).timestamp(),
            "gone": None,
        }[job]
        assert agreed(views) == pytest.approx(expected) if expected else agreed(views) is None
        # The fire loop reads the same state and waits for the same fire.
        assert agreed(await loop_next(backend, job)) == agreed(views)
    finally:
        await backend.disconnect()


async def test_interval_anchor_survives_in_every_view(tmp_path: Path) -> None:
    """The drift the issue found: `validate` said now+20s while `jobs list` said the
    anchored fire. With state, both (and `jobs next`) say the anchored one."""
    backend = SQLiteBackend(tmp_path / "state.db")
    await backend.connect()
    try:
        await backend.job_state("beat", FIRST_SEEN)
        views = (await shown(backend))["beat"]
        fire = agreed(views)
        assert fire is not None and fire != NOW + 20
        assert (fire - FIRST_SEEN) % 20 == pytest.approx(0, abs=1e-6)
    finally:
        await backend.disconnect()
