"""`cleanup`, `migrate` and `status`.

Library imports sit inside the commands: see cli/jobs.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ..errors import UsageError
from . import Options, run_async
from .output import Progress, console, print_json, queue_rows, relative, styled, table

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..admin import StatusReport
    from ..backends.base import QueueBackend


def register(app: typer.Typer) -> None:
    app.command()(cleanup)
    app.command()(migrate)
    app.command()(status)


def cleanup(
    ctx: typer.Context,
    older_than: Annotated[
        str,
        typer.Option(
            "--older-than", help="Delete finished tasks and history older than this, e.g. 7d."
        ),
    ],
    status: Annotated[
        str | None,
        typer.Option("--status", help="Only these finished statuses: succeeded,dead,cancelled."),
    ] = None,
) -> None:
    """Delete finished tasks and their history; prints how many tasks."""
    from ..admin import cleanup as delete_finished
    from ..admin import older_than as cutoff
    from ..admin import parse_statuses
    from ..models import FINISHED

    opts: Options = ctx.obj
    before = cutoff(older_than)
    statuses = parse_statuses(status, sorted(FINISHED))
    with Progress("cleaning up", opts.show_progress):
        count = opts.call("cleanup", lambda b: delete_finished(b, before, statuses))
    if opts.json:
        print_json({"count": count})
    else:
        typer.echo(f"deleted {count} task(s)")


def migrate(
    ctx: typer.Context,
    to: Annotated[str, typer.Option("--to", help="Target backend URL.")],
) -> None:
    """Copy pending tasks, dead letters, job state, history and schedules to another backend.

    Safe to run twice: what is already there is not copied again. Stop the
    schedulers first, then point them at the new backend.
    """
    from ..admin import MigrationReport, open_backend
    from ..admin import migrate as copy_all
    from ..manifest import resolve_backend

    opts: Options = ctx.obj
    source = open_backend(opts.manifest, opts.backend, "migrate")
    target = resolve_backend(None, to)
    if not target.shared:
        raise UsageError("cannot migrate to memory://: it would vanish with this command")

    async def go(bar: Progress) -> MigrationReport:
        async with source, target:
            return await copy_all(source, target, bar.advance, bar.total)

    with Progress("migrating", opts.show_progress) as bar:
        report = run_async(go(bar))
    public = report.to_public()
    if opts.json:
        print_json(public)
    else:
        typer.echo(
            f"copied {public['tasks']} task(s), {public['runs']} history row(s), "
            f"{public['jobs']} job state(s), {public['schedules']} schedule(s) "
            f"to {target.display_url}"
            + (
                f"; {public['already_there']} task(s) were already there"
                if public["already_there"]
                else ""
            )
            + (
                f"; {public['schedules_already_there']} schedule(s) were already there "
                "(left as they are)"
                if public["schedules_already_there"]
                else ""
            )
        )


_STATE_STYLE = {"alive": "green", "stale": "yellow", "dead": "red"}


def _retention_line(report: StatusReport) -> str:
    """What the last retention pass removed and when, then the settings it applies."""
    from ..durations import format_duration

    last = report.retention
    text = "no pass yet"
    if last is not None:
        text = (
            f"last pass {relative(last.at)}: removed {last.finished} finished task/history "
            f"row(s) and {last.dead} dead letter(s); {last.total_finished} and "
            f"{last.total_dead} in {last.passes} pass(es)"
        )
    policy = report.policy
    if policy is not None:
        keep = [
            f"keep_history {_keep(policy.keep_history, format_duration)}",
            f"keep_dead {_keep(policy.keep_dead, format_duration)}",
            f"max_dead {'forever' if policy.max_dead is None else policy.max_dead}",
        ]
        own = sorted(set(policy.job_history) | set(policy.job_dead))
        if own:
            keep.append(f"job(s) with their own: {', '.join(own)}")
        text += "; " + ", ".join(keep)
    return text


def _keep(seconds: float | None, fmt: Callable[[float], str]) -> str:
    return "forever" if seconds is None else fmt(seconds)


def status(ctx: typer.Context) -> None:
    """Daemon state, queue sizes and limits, running tasks, dead letters, retention."""
    from ..admin import manifest_queues
    from ..admin import status as read_status

    opts: Options = ctx.obj
    manifest = None
    pidfile = None
    if opts.manifest.exists() or not opts.backend:
        manifest = opts.load_manifest()
        pidfile = Path(manifest.config.pidfile)

    async def read(backend: QueueBackend) -> StatusReport:
        return await read_status(backend, pidfile, manifest_queues(manifest), manifest)

    report = opts.call("status", read, manifest)
    if opts.json:
        print_json(report.to_public())
        return
    out = console()
    daemon = report.daemon
    uptime = f", up {relative(daemon.started).removesuffix(' ago')}" if daemon.started else ""
    state = (
        f"[green]running[/] (pid {daemon.pid}{uptime})"
        if daemon.running
        else "[dim]not running[/]"
        + (
            f" (stale pidfile: pid {daemon.stale_pid} is not this daemon)"
            if daemon.stale_pid
            else ""
        )
    )
    out.print(f"daemon:       {state}")
    out.print(f"backend:      {report.backend}", markup=False)
    out.print(f"dead letters: {report.dead}")
    out.print(f"retention:    {_retention_line(report)}", markup=False)
    if report.processes:
        out.print()
        table(
            ["PROCESS", "HOST", "PID", "ROLE", "UP", "LAST BEAT", "STATE"],
            [
                (
                    p.id,
                    p.host,
                    p.pid,
                    p.role,
                    relative(p.started).removesuffix(" ago"),
                    relative(p.last_beat),
                    styled(state, _STATE_STYLE[state]),
                )
                for p, state in zip(report.processes, report.process_states, strict=True)
            ],
        )
    if report.queues:
        out.print()
        table(*queue_rows(report.queues))
    if report.running:
        out.print()
        table(
            ["RUNNING TASK", "JOB", "STARTED", "WORKER"],
            [(t.id, t.job, relative(t.started_at), t.worker) for t in report.running],
        )
