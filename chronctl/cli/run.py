"""`chronctl run` and `chronctl validate`."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from . import Options
from .output import console, print_json


def register(app: typer.Typer) -> None:
    app.command()(run)
    app.command()(validate)


def run(
    ctx: typer.Context,
    manifest: Annotated[Path | None, typer.Argument(
        help="Manifest file (overrides -f).", show_default=False)] = None,
    daemon: Annotated[bool, typer.Option("--daemon", help="Detach and write the pidfile.")
                      ] = False,
    workers: Annotated[int | None, typer.Option(
        "--workers", min=1, help="Concurrent tasks in this process.")] = None,
    queues: Annotated[str | None, typer.Option(
        "--queues", help="Comma-separated queues to take tasks from [default: all].")] = None,
    role: Annotated[str, typer.Option(
        "--role", help="all, scheduler (fire triggers only) or worker (run tasks only).")
    ] = "all",
    once: Annotated[bool, typer.Option(
        "--once", help="Fire what is due now, run every due task, wait for them, exit.")
    ] = False,
) -> None:
    """Start the scheduler and workers in the foreground (Ctrl-C / SIGTERM = graceful stop)."""
    from ..errors import UsageError
    from ..ops import build_scheduler
    from ..service import serve

    opts: Options = ctx.obj
    if daemon:
        raise UsageError("--daemon is not available in this version: run in the foreground "
                         "under systemd or another supervisor (see README)")
    loaded = opts.load_manifest(manifest)
    queue_list = [q.strip() for q in queues.split(",") if q.strip()] if queues else None
    scheduler = build_scheduler(loaded, backend_url=opts.backend, workers=workers,
                                queues=queue_list, role=role)
    if once:
        asyncio.run(scheduler.run_once())
    else:
        asyncio.run(serve(scheduler))


def validate(
    ctx: typer.Context,
    manifest: Annotated[Path | None, typer.Argument(
        help="Manifest file (overrides -f).", show_default=False)] = None,
) -> None:
    """Check syntax, keys, triggers, timezones and entrypoints; print each job's next fire."""
    from ..errors import ManifestError
    from ..ops import validate_manifest

    opts: Options = ctx.obj
    try:
        report = validate_manifest(opts.load_manifest(manifest))
    except ManifestError as exc:
        if opts.json:
            print_json({"ok": False, "errors": [str(exc)]})
            raise typer.Exit(2) from exc
        raise
    if opts.json:
        print_json(report.to_public())
    else:
        out = console()
        for err in report.errors:
            console(stderr=True).print(f"chronctl: {err}", markup=False, highlight=False)
        if report.ok:
            from .output import relative, table

            table(["JOB", "TRIGGER", "NEXT FIRE", ""],
                  [(j.name, j.trigger or "(enqueue only)",
                    j.next_fire.isoformat() if j.next_fire else None,
                    relative(j.next_fire) if j.next_fire else "") for j in report.jobs])
            out.print(f"[green]ok[/]: {len(report.jobs)} job(s) valid")
    if not report.ok:
        raise typer.Exit(2)
