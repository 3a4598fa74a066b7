"""`chronctl jobs list` and `chronctl jobs next`."""

from __future__ import annotations

from typing import Annotated

import typer

from . import Options, complete
from .output import print_json, relative, status_text, table

jobs_app = typer.Typer(
    help="Jobs of the manifest: triggers, next fires, state.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    app.add_typer(jobs_app, name="jobs")


@jobs_app.command("next")
def next_fires(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Job name.", autocompletion=complete.job_names)],
    count: Annotated[
        int, typer.Option("-n", "--count", min=1, max=10_000, help="How many fire times.")
    ] = 5,
) -> None:
    """The next N fire times of a job (in the job's timezone)."""
    from ..ops import job_next_fires

    opts: Options = ctx.obj
    fires = job_next_fires(opts.load_manifest(), name, count)
    if opts.json:
        print_json([f.isoformat() for f in fires])
        return
    if not fires:
        typer.echo(f"job '{name}' has no upcoming fires")
        return
    table(
        ["#", "FIRE TIME", ""], [(i + 1, f.isoformat(), relative(f)) for i, f in enumerate(fires)]
    )


@jobs_app.command("list")
def list_jobs(ctx: typer.Context) -> None:
    """Jobs with trigger, next fire, paused state and last run."""
    import asyncio

    from ..ops import build_scheduler, jobs_overview

    opts: Options = ctx.obj
    scheduler = build_scheduler(opts.load_manifest(), backend_url=opts.backend)
    rows = asyncio.run(jobs_overview(scheduler))
    if opts.json:
        print_json([r.to_public() for r in rows])
        return
    table(
        ["JOB", "TRIGGER", "ZONE", "NEXT FIRE", "PAUSED", "LAST RUN", "LAST STATUS"],
        [
            (
                r.name,
                r.trigger or "-",
                r.timezone,
                relative(r.next_fire) if r.next_fire else "-",
                "yes" if r.paused else "no",
                relative(r.last_run) if r.last_run else "-",
                status_text(r.last_status),
            )
            for r in rows
        ],
    )
