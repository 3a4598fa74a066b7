"""`chronctl run`, `stop` and `validate`.

Library imports sit inside the commands: see cli/jobs.py.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ..errors import ManifestError, UsageError
from ..text import shown_path
from . import Options, run_async
from .jobs import stored_states
from .output import console, print_json, relative, table

if TYPE_CHECKING:
    from ..events import Event
    from ..manifest import Manifest
    from ..scheduler import Scheduler


def register(app: typer.Typer) -> None:
    app.command()(run)
    app.command()(stop)
    app.command()(validate)


def run(
    ctx: typer.Context,
    manifest: Annotated[
        Path | None, typer.Argument(help="Manifest file (overrides -f).", show_default=False)
    ] = None,
    daemon: Annotated[
        bool, typer.Option("--daemon", help="Detach, write the pidfile, log to log_file.")
    ] = False,
    workers: Annotated[
        int | None, typer.Option("--workers", min=1, help="Concurrent tasks in this process.")
    ] = None,
    queues: Annotated[
        str | None,
        typer.Option("--queues", help="Comma-separated queues to take tasks from (default: all)."),
    ] = None,
    role: Annotated[
        str,
        typer.Option(
            "--role", help="all, scheduler (fire triggers only) or worker (run tasks only)."
        ),
    ] = "all",
    once: Annotated[
        bool,
        typer.Option(
            "--once", help="Fire what is due now, run every due task, wait for them, exit."
        ),
    ] = False,
    log_format: Annotated[
        str, typer.Option("--log-format", help="text or json (one object per line).")
    ] = "text",
    metrics_port: Annotated[
        int | None,
        typer.Option(
            "--metrics-port",
            min=0,
            max=65535,
            help="Serve Prometheus metrics on this port (needs chronctl\\[metrics]).",
        ),
    ] = None,
    metrics_addr: Annotated[
        str, typer.Option("--metrics-addr", help="Address for --metrics-port.")
    ] = "127.0.0.1",
) -> None:
    """Start the scheduler and workers (Ctrl-C / SIGTERM = graceful stop, SIGHUP = reload)."""
    from ..logs import configure
    from ..manifest import resolve_backend
    from ..scheduler import Scheduler
    from ..service import serve

    opts: Options = ctx.obj
    if log_format not in ("text", "json"):
        raise UsageError(f"bad --log-format '{log_format}': expected text or json")
    path = manifest or opts.manifest
    loaded = checked(opts.load_manifest(path))
    queue_list = [q.strip() for q in queues.split(",") if q.strip()] if queues else None

    def make() -> Scheduler:
        backend = resolve_backend(loaded, opts.backend)
        return Scheduler.from_manifest(
            loaded, backend, workers=workers, queues=queue_list, role=role
        )

    def reload() -> Manifest:
        return checked(opts.load_manifest(path))

    if once:
        if daemon:
            raise UsageError("--once runs in the foreground: drop --daemon")
        configure(opts.verbosity, log_format)
        run_once(make())
        return

    async def serve_with_metrics(
        scheduler: Scheduler, on_started: Callable[[], None] | None = None
    ) -> None:
        if metrics_port is None:
            await serve(scheduler, reload=reload, manifest=loaded, on_started=on_started)
            return
        from ..metrics import Metrics

        async with Metrics(scheduler).serving(metrics_port, metrics_addr):
            await serve(scheduler, reload=reload, manifest=loaded, on_started=on_started)

    if not daemon:
        configure(opts.verbosity, log_format)
        run_async(serve_with_metrics(make()))
        return

    from ..daemon import daemonize

    cfg = loaded.config
    log_file = Path(cfg.log_file)
    workdir = loaded.path.parent if loaded.path else Path.cwd()
    scheduler = make()  # errors in the options surface here, on the terminal

    def start(ready: Callable[[str | None], None]) -> None:
        configure(opts.verbosity, log_format, log_file)
        run_async(serve_with_metrics(scheduler, lambda: ready(None)))

    pid = daemonize(Path(cfg.pidfile), workdir, start)
    if opts.json:
        print_json({"pid": pid, "pidfile": cfg.pidfile, "log_file": cfg.log_file})
    else:
        typer.echo(
            f"chronctl started (pid {pid}); log: {shown_path(cfg.log_file)}; stop: chronctl stop"
        )


def checked(manifest: Manifest) -> Manifest:
    """What `validate` checks beyond loading: a job whose entrypoint does not import would
    otherwise start fine and fail at its first run, maybe at 02:00."""
    from ..manifest import check_entrypoints

    errors = check_entrypoints(manifest)
    if not errors:
        return manifest
    first = errors[0]
    if len(errors) > 1:
        first = ManifestError(f"{first} (and {len(errors) - 1} more: run chronctl validate)")
    raise first


def run_once(scheduler: Scheduler) -> None:
    """`run --once`, saying at -v what it did: silence would look like a hang or a no-op."""
    done = {"job_fired": 0, "task_started": 0}

    def count(event: Event) -> None:
        done[event.name] += 1

    for name in done:
        scheduler.on(name, count)
    run_async(scheduler.run_once())
    log = logging.getLogger("chronctl")
    if not any(done.values()):
        log.debug("run --once: nothing was due (no trigger fired, no task waiting)")
    else:
        log.debug("run --once: %d fire(s), %d task run(s)", done["job_fired"], done["task_started"])


def stop(ctx: typer.Context) -> None:
    """Stop the daemon named by the pidfile: graceful, waits up to shutdown_timeout."""
    from ..daemon import stop_daemon

    opts: Options = ctx.obj
    cfg = opts.load_manifest().config
    pid = stop_daemon(Path(cfg.pidfile), cfg.shutdown_timeout + 5)
    if opts.json:
        print_json({"stopped": True, "pid": pid})
    else:
        typer.echo(f"chronctl stopped (pid {pid})")


def validate(
    ctx: typer.Context,
    manifest: Annotated[
        Path | None, typer.Argument(help="Manifest file (overrides -f).", show_default=False)
    ] = None,
) -> None:
    """Check syntax, keys, triggers, timezones and entrypoints; print each job's next fire."""
    from ..admin import validate_manifest

    opts: Options = ctx.obj
    try:
        loaded = opts.load_manifest(manifest)
    except ManifestError as exc:
        if opts.json:
            print_json({"ok": False, "errors": [str(exc)]})
            raise typer.Exit(2) from exc
        raise
    report = validate_manifest(loaded, stored_states(opts, loaded).states)
    if opts.json:
        print_json(report.to_public())
    else:
        out = console()
        for err in report.errors:
            console(stderr=True).print(f"chronctl: {err}", markup=False, highlight=False)
        if report.ok:
            table(
                ["JOB", "TRIGGER", "ZONE", "NEXT FIRE", ""],
                [
                    (
                        j.name,
                        j.trigger or "(enqueue only)",
                        j.timezone,
                        j.next_fire.isoformat() if j.next_fire else None,
                        relative(j.next_fire) if j.next_fire else "",
                    )
                    for j in report.jobs
                ],
            )
            out.print(f"[green]ok[/]: {len(report.jobs)} job(s) valid")
    if not report.ok:
        raise typer.Exit(2)
