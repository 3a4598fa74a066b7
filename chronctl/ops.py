"""What the CLI does, as library functions: build a scheduler, validate, report.

Kept out of the CLI modules so commands stay argument parsing and printing,
and so the same operations are testable without a subprocess.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .errors import ManifestError, UnknownJobError
from .manifest import Manifest, check_commands, check_entrypoints
from .models import iso
from .scheduler import Scheduler
from .triggers import IntervalTrigger, get_timezone


def build_scheduler(
    manifest: Manifest,
    *,
    backend_url: str | None = None,
    workers: int | None = None,
    queues: list[str] | None = None,
    role: str | None = None,
) -> Scheduler:
    from .backends import from_url

    backend = None
    if backend_url:
        backend = from_url(backend_url, base=Path.cwd(), state=manifest.config.state)
    return Scheduler.from_manifest(manifest, backend, workers=workers, queues=queues, role=role)


@dataclass
class JobReport:
    name: str
    trigger: str | None
    next_fire: datetime | None
    timezone: str = "UTC"


@dataclass
class ValidationReport:
    jobs: list[JobReport] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_public(self) -> dict[str, Any]:
        if not self.ok:
            return {"ok": False, "errors": self.errors}
        return {
            "ok": True,
            "jobs": [
                {
                    "name": j.name,
                    "timezone": j.timezone,
                    "next_fire": j.next_fire.isoformat() if j.next_fire else None,
                }
                for j in self.jobs
            ],
        }


def validate_manifest(manifest: Manifest) -> ValidationReport:
    """Everything load_manifest checks, plus that each entrypoint imports and each
    shell line parses."""
    problems = [*check_entrypoints(manifest), *check_commands(manifest)]
    report = ValidationReport(errors=[str(e) for e in problems])
    now = datetime.now(UTC)
    for spec in manifest.jobs.values():
        trigger = spec.trigger
        if isinstance(trigger, IntervalTrigger) and trigger.anchor == 0.0:
            trigger = trigger.with_anchor(now.timestamp())
        nxt = trigger.next_fire(now) if trigger else None
        if nxt is not None:
            nxt = nxt.astimezone(get_timezone(spec.timezone))
        described = trigger.describe() if trigger else None
        report.jobs.append(JobReport(spec.name, described, nxt, spec.timezone))
    return report


def job_next_fires(manifest: Manifest, name: str, count: int = 5) -> list[datetime]:
    spec = manifest.jobs.get(name)
    if spec is None:
        raise UnknownJobError(name)
    if spec.trigger is None:
        return []
    now = datetime.now(UTC)
    trigger = spec.trigger
    if isinstance(trigger, IntervalTrigger) and trigger.anchor == 0.0:
        trigger = trigger.with_anchor(now.timestamp())
    tz = get_timezone(spec.timezone)
    return [f.astimezone(tz) for f in trigger.fires(now, count)]


@dataclass
class JobOverview:
    name: str
    trigger: str | None
    next_fire: datetime | None
    paused: bool
    last_status: str | None
    last_run: float | None
    timezone: str = "UTC"

    def to_public(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "trigger": self.trigger,
            "timezone": self.timezone,
            "next_fire": self.next_fire.isoformat() if self.next_fire else None,
            "paused": self.paused,
            "last_status": self.last_status,
            "last_run": iso(self.last_run),
        }


async def jobs_overview(scheduler: Scheduler) -> list[JobOverview]:
    backend = scheduler.backend
    await backend.connect()
    try:
        states = {s.name: s for s in await backend.list_job_states()}
        now = datetime.now(UTC)
        out = []
        for spec in scheduler.jobs.values():
            state = states.get(spec.name)
            trigger = spec.trigger
            if isinstance(trigger, IntervalTrigger):
                anchor = state.first_seen if state else time.time()
                trigger = trigger.with_anchor(anchor)
            base = now
            if state and state.last_fire and state.last_fire > now.timestamp():
                base = datetime.fromtimestamp(state.last_fire, UTC)
            nxt = trigger.next_fire(base) if trigger else None
            runs = await backend.history(spec.name, limit=1)
            last = runs[0] if runs else None
            out.append(
                JobOverview(
                    spec.name,
                    trigger.describe() if trigger else None,
                    nxt.astimezone(get_timezone(spec.timezone)) if nxt else None,
                    bool(state and state.paused),
                    last.status.value if last else None,
                    last.finished_at if last else None,
                    spec.timezone,
                )
            )
        return out
    finally:
        await backend.disconnect()


__all__ = [
    "JobOverview",
    "JobReport",
    "ManifestError",
    "ValidationReport",
    "build_scheduler",
    "job_next_fires",
    "jobs_overview",
    "validate_manifest",
]
