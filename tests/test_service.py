"""Reloading a manifest into a running scheduler."""

from __future__ import annotations

from chronctl.manifest import parse_manifest
from chronctl.scheduler import Scheduler
from chronctl.service import apply_manifest

BASE = """
[jobs.keep]
command = ["true"]
cron = "0 * * * *"

[jobs.change]
command = ["true"]
cron = "0 * * * *"

[jobs.drop]
command = ["true"]
"""


def test_reload_adds_removes_and_changes_jobs() -> None:
    old = parse_manifest(BASE)
    scheduler = Scheduler.from_manifest(old)
    new = parse_manifest(
        BASE.replace('[jobs.drop]\ncommand = ["true"]\n', "").replace(
            '[jobs.change]\ncommand = ["true"]\ncron = "0 * * * *"',
            '[jobs.change]\ncommand = ["true"]\ncron = "30 * * * *"',
        )
        + '\n[jobs.fresh]\ncommand = ["true"]\n[scheduler]\nworkers = 2\n'
    )
    result = apply_manifest(scheduler, old, new)
    assert (result.added, result.removed, result.changed) == (["fresh"], ["drop"], ["change"])
    assert result.restart_needed == ["workers"]
    assert sorted(scheduler.jobs) == ["change", "fresh", "keep"]
    trigger = scheduler.jobs["change"].trigger
    assert trigger is not None and trigger.describe() == "cron 30 * * * *"


def test_reload_of_the_same_manifest_changes_nothing() -> None:
    old = parse_manifest(BASE)
    scheduler = Scheduler.from_manifest(old)
    result = apply_manifest(scheduler, old, parse_manifest(BASE))
    assert (result.added, result.removed, result.changed) == ([], [], [])
