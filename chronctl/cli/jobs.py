"""`chronctl jobs list` and `chronctl jobs next` (`jobs reschedule`: cli/schedules.py).

Library imports sit inside the commands (here and in every command module):
the CLI imports this module to build its help, and the engine behind it
(croniter, the backends) is loaded only by the command that runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from ..text import safe
from . import Options, complete, run_async
from .output import note, print_json, relative, status_text, table

if TYPE_CHECKING:
    from ..admin import JobOverview, StoredStates
    from ..manifest import Manifest

jobs_app = typer.Typer(
    help="Jobs of the manifest: triggers, next fires, state.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    app.add_typer(jobs_app, name="jobs")


@jobs_app.command("next")
def next_fires(
    ctx: typer.Context,
    name: Annotated[
        str,
        typer.Argument(help="Job or schedule name.", autocompletion=complete.job_or_schedule_names),
    ],
    count: Annotated[
        int, typer.Option("-n", "--count", min=1, max=10_000, help="How many fire times.")
    ] = 5,
) -> None:
    """The next N fire times of a job or schedule (in its timezone)."""
    from ..admin import job_next_fires
    from ..admin import stored_states as read

    opts: Options = ctx.obj
    manifest = opts.load_manifest()
    stored = run_async(read(manifest, opts.backend, name))
    fires = job_next_fires(manifest, name, count, stored.states, schedules=stored.schedules)
    if stored.unread:
        note(f"note: next fires assume no stored job state ({stored.unread})")
    if opts.json:
        print_json([f.isoformat() for f in fires])
        return
    if not fires:
        what = "job" if name in manifest.jobs else "schedule"
        typer.echo(f"{what} {safe(repr(name))} has no upcoming fires")
        return
    table(
        ["#", "FIRE TIME", ""], [(i + 1, f.isoformat(), relative(f)) for i, f in enumerate(fires)]
    )


@jobs_app.command("list")
def list_jobs(ctx: typer.Context) -> None:
    """Jobs with trigger, next fire, paused state, last run and last skipped fire."""
    from ..admin import jobs_overview
    from ..manifest import resolve_backend

    opts: Options = ctx.obj
    manifest = opts.load_manifest()
    backend = resolve_backend(manifest, opts.backend)

    async def read() -> list[JobOverview]:
        async with backend:
            return await jobs_overview(backend, manifest.jobs.values())

    rows = run_async(read())
    if opts.json:
        print_json([r.to_public() for r in rows])
        return
    table(
        ["JOB", "TRIGGER", "ZONE", "NEXT FIRE", "PAUSED", "LAST RUN", "LAST STATUS", "LAST SKIP"],
        [
            (
                r.name,
                (r.trigger or "-") + (" (override)" if r.overridden else ""),
                r.timezone,
                relative(r.next_fire) if r.next_fire else "-",
                "yes" if r.paused else "no",
                relative(r.last_run) if r.last_run else "-",
                status_text(r.last_status),
                f"{relative(r.last_skip.fire_time)}: {r.last_skip.reason}" if r.last_skip else "-",
            )
            for r in rows
        ],
    )


def stored_states(opts: Options, manifest: Manifest) -> StoredStates:
    """What the backend remembers of the jobs, so a next fire shown here is the one
    `run` fires; a backend out of reach is said in a note, not an error."""
    from ..admin import stored_states as read

    stored = run_async(read(manifest, opts.backend))
    if stored.unread:
        note(f"note: next fires assume no stored job state ({stored.unread})")
    return stored
