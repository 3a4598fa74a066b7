"""`schedules add/list/show/edit/remove` and `jobs reschedule`: schedules as data.

A thin layer over chronctl/schedule_admin.py. Library imports sit inside the
commands: see cli/jobs.py.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..text import safe
from . import Options, complete
from .output import details, note, print_json, relative, status_text, table

if TYPE_CHECKING:
    from ..backends.base import QueueBackend
    from ..schedule_admin import ScheduleView
    from ..schedules import Schedule

schedules_app = typer.Typer(
    help="Schedules stored in the backend: when a manifest job runs, with what arguments.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    from .jobs import jobs_app

    app.add_typer(schedules_app, name="schedules")
    jobs_app.command("reschedule")(reschedule)


Cron = Annotated[
    str | None, typer.Option("--cron", help="Cron expression, e.g. '0 9 * * MON-FRI'.")
]
Every = Annotated[str | None, typer.Option("--every", help="Interval, e.g. 30m.")]
At = Annotated[str | None, typer.Option("--at", help="Once, at this ISO 8601 time.")]
Zone = Annotated[
    str | None,
    typer.Option("--timezone", help="IANA timezone of the trigger (default: the job's)."),
]
Jitter = Annotated[
    str | None, typer.Option("--jitter", help="Random delay up to this long, e.g. 30s.")
]
Args = Annotated[str | None, typer.Option("--args", help="Positional args, a JSON array.")]
Kwargs = Annotated[str | None, typer.Option("--kwargs", help="Keyword args, a JSON object.")]
Queue = Annotated[
    str | None,
    typer.Option(
        "--queue", help="Queue (default: the job's).", autocompletion=complete.queue_names
    ),
]
Priority = Annotated[
    int | None, typer.Option("--priority", min=0, max=9, help="0..9, higher first.")
]
Name = Annotated[
    str,
    typer.Argument(
        help="Schedule name.", show_default=False, autocompletion=complete.schedule_names
    ),
]


def _fields(**given: Any) -> dict[str, Any]:
    """The options given, as schedule fields (JSON parsed, with the option named on error)."""
    from ..admin import parse_json

    if given.get("args") is not None:
        given["args"] = parse_json(given["args"], "--args", list)
    if given.get("kwargs") is not None:
        given["kwargs"] = parse_json(given["kwargs"], "--kwargs", dict)
    return {k: v for k, v in given.items() if v is not None}


@schedules_app.command("add")
def add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A new name, unlike any job's.", show_default=False)],
    job: Annotated[
        str,
        typer.Option("--job", help="The manifest job it runs.", autocompletion=complete.job_names),
    ],
    cron: Cron = None,
    every: Every = None,
    at: At = None,
    timezone: Zone = None,
    args: Args = None,
    kwargs: Kwargs = None,
    queue: Queue = None,
    priority: Priority = None,
    jitter: Jitter = None,
) -> None:
    """Store a schedule: a trigger for a manifest job, with its own arguments."""
    from ..schedule_admin import add_schedule

    opts: Options = ctx.obj
    manifest = opts.load_manifest()
    fields = _fields(
        cron=cron,
        every=every,
        at=at,
        timezone=timezone,
        args=args,
        kwargs=kwargs,
        queue=queue,
        priority=priority,
        jitter=jitter,
    )
    schedule = opts.call(
        "schedules add",
        lambda b: add_schedule(b, manifest.jobs, name, job, **fields),
        manifest,
    )
    _done(opts, "added", schedule)


@schedules_app.command("edit")
def edit(
    ctx: typer.Context,
    name: Name,
    job: Annotated[
        str | None,
        typer.Option("--job", help="Run another manifest job.", autocompletion=complete.job_names),
    ] = None,
    cron: Cron = None,
    every: Every = None,
    at: At = None,
    timezone: Zone = None,
    args: Args = None,
    kwargs: Kwargs = None,
    queue: Queue = None,
    priority: Priority = None,
    jitter: Jitter = None,
) -> None:
    """Change a schedule's given fields; one of --cron/--every/--at replaces its trigger."""
    from ..schedule_admin import edit_schedule

    opts: Options = ctx.obj
    manifest = opts.load_manifest()
    fields = _fields(
        job=job,
        cron=cron,
        every=every,
        at=at,
        timezone=timezone,
        args=args,
        kwargs=kwargs,
        queue=queue,
        priority=priority,
        jitter=jitter,
    )
    schedule = opts.call(
        "schedules edit", lambda b: edit_schedule(b, manifest.jobs, name, **fields), manifest
    )
    _done(opts, "changed", schedule)


@schedules_app.command("remove")
def remove(ctx: typer.Context, name: Name) -> None:
    """Delete a schedule (its tasks and history stay)."""
    from ..schedule_admin import remove_schedule

    opts: Options = ctx.obj
    schedule = opts.call("schedules remove", lambda b: remove_schedule(b, name))
    if opts.json:
        print_json(schedule.to_public())
    else:
        typer.echo(f"removed schedule {safe(repr(schedule.name))}")


@schedules_app.command("show")
def show(ctx: typer.Context, name: Name) -> None:
    """One stored schedule in full, with its next fire and last result."""
    from ..models import iso
    from ..schedule_admin import schedule_view

    opts: Options = ctx.obj
    manifest = opts.load_manifest()
    view = opts.call("schedules show", lambda b: schedule_view(b, manifest.jobs, name), manifest)
    schedule = view.schedule
    assert schedule is not None  # a stored one, by construction
    if opts.json:
        print_json({**schedule.to_public(), **view.to_public()})
        return
    details(
        [
            ("name", schedule.name),
            ("job", schedule.job),
            ("orphaned", "yes: it never fires" if view.orphaned else "no"),
            ("source", view.source),
            ("trigger", view.trigger),
            ("timezone", view.timezone),
            ("args", None if schedule.args is None else json.dumps(schedule.args)),
            ("kwargs", None if schedule.kwargs is None else json.dumps(schedule.kwargs)),
            ("queue", schedule.queue),
            ("priority", schedule.priority),
            ("jitter", None if schedule.jitter is None else f"{schedule.jitter:g}s"),
            ("next fire", _fire(view)),
            ("paused", "yes" if view.paused else "no"),
            ("last fire", _when(view.last_fire)),
            ("last result", status_text(view.last_result)),
            ("created", iso(schedule.created)),
            ("updated", iso(schedule.updated)),
        ]
    )


@schedules_app.command("list")
def list_schedules(ctx: typer.Context) -> None:
    """Manifest triggers and stored schedules: source, trigger, next fire, paused,
    last result."""
    from ..schedule_admin import schedules_overview

    opts: Options = ctx.obj
    manifest = opts.load_manifest()

    async def read(backend: QueueBackend) -> list[ScheduleView]:
        return await schedules_overview(backend, manifest.jobs)

    views = opts.call("schedules list", read, manifest)
    orphans = [v for v in views if v.orphaned]
    if orphans:
        note(
            f"warning: {len(orphans)} orphaned schedule(s) never fire (their job is not in "
            "the manifest, or a manifest job took their name): "
            + ", ".join(safe(v.name) for v in orphans[:5])
            + (" ..." if len(orphans) > 5 else "")
        )
    if opts.json:
        print_json([v.to_public() for v in views])
        return
    if not views:
        typer.echo("no schedules")
        return
    table(
        ["NAME", "JOB", "SOURCE", "TRIGGER", "ZONE", "NEXT FIRE", "PAUSED", "LAST RESULT"],
        [
            (
                v.name,
                v.job,
                v.source + (" (orphaned)" if v.orphaned else ""),
                v.trigger or "-",
                v.timezone,
                relative(v.next_fire) if v.next_fire else "-",
                "yes" if v.paused else "no",
                status_text(v.last_result),
            )
            for v in views
        ],
    )


def reschedule(
    ctx: typer.Context,
    name: Annotated[
        str,
        typer.Argument(
            help="Job (or schedule) name.",
            show_default=False,
            autocompletion=complete.job_or_schedule_names,
        ),
    ],
    cron: Cron = None,
    every: Every = None,
    at: At = None,
    timezone: Zone = None,
    jitter: Jitter = None,
    reset: Annotated[
        bool, typer.Option("--reset", help="Drop the override: fire on the manifest's trigger.")
    ] = False,
) -> None:
    """Override a job's trigger from the manifest, stored in the backend until --reset."""
    from ..schedule_admin import reschedule_job, reset_override

    opts: Options = ctx.obj
    manifest = opts.load_manifest()
    fields = _fields(cron=cron, every=every, at=at, timezone=timezone, jitter=jitter)
    if reset:
        if fields:
            from ..errors import UsageError

            raise UsageError("--reset takes no other option: it restores the manifest's trigger")
        removed = opts.call(
            "jobs reschedule", lambda b: reset_override(b, manifest.jobs, name), manifest
        )
        if opts.json:
            print_json({"job": name, "reset": removed})
        elif removed:
            typer.echo(f"job {safe(repr(name))} fires on its manifest trigger again")
        else:
            typer.echo(f"job {safe(repr(name))} has no override: it fires on its manifest trigger")
        return
    schedule = opts.call(
        "jobs reschedule", lambda b: reschedule_job(b, manifest.jobs, name, **fields), manifest
    )
    assert schedule is not None  # only a reset stores nothing
    _done(opts, "rescheduled", schedule)


def _done(opts: Options, verb: str, schedule: Schedule) -> None:
    if opts.json:
        print_json(schedule.to_public())
        return
    what = "job" if schedule.override else "schedule"
    zone = f" ({schedule.timezone})" if schedule.timezone else ""
    typer.echo(
        safe(
            f"{verb} {what} '{schedule.name}': {schedule.describe()}{zone}"
            + ("" if schedule.override else f", runs job '{schedule.job}'")
        )
    )


def _fire(view: ScheduleView) -> str | None:
    if view.next_fire is None:
        return None
    return f"{view.next_fire.isoformat()} ({relative(view.next_fire)})"


def _when(ts: float | None) -> str | None:
    from ..models import iso

    return None if ts is None else f"{iso(ts)} ({relative(ts)})"
