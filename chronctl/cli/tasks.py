"""`enqueue`, `trigger`, `pause`/`resume`, `tasks list/show/cancel`, `history`.

Library imports sit inside the commands: see cli/jobs.py.
"""

from __future__ import annotations

import io
import json
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..errors import UsageError
from ..text import safe
from . import Options, complete
from .output import (
    Progress,
    block,
    details,
    note,
    print_json,
    relative,
    short,
    status_text,
    table,
)

if TYPE_CHECKING:
    import asyncio

    from ..backends.base import QueueBackend
    from ..manifest import Manifest
    from ..models import Run, Task

tasks_app = typer.Typer(help="Inspect and cancel tasks.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.command()(enqueue)
    app.command()(trigger)
    app.command()(pause)
    app.command()(resume)
    app.add_typer(tasks_app, name="tasks")
    app.command()(history)


def enqueue(
    ctx: typer.Context,
    job: Annotated[
        str | None,
        typer.Argument(
            help="Job name from the manifest (optional with --from when each line names one).",
            show_default=False,
            autocompletion=complete.job_names,
        ),
    ] = None,
    args: Annotated[
        str | None, typer.Option("--args", help="Positional args, a JSON array.")
    ] = None,
    kwargs: Annotated[
        str | None, typer.Option("--kwargs", help="Keyword args, a JSON object.")
    ] = None,
    at: Annotated[str | None, typer.Option("--at", help="Run at this ISO 8601 time.")] = None,
    in_: Annotated[str | None, typer.Option("--in", help="Run after this delay, e.g. 10m.")] = None,
    priority: Annotated[
        int | None, typer.Option("--priority", min=0, max=9, help="0..9, higher first.")
    ] = None,
    queue: Annotated[
        str | None,
        typer.Option(
            "--queue", help="Queue (default: the job's).", autocompletion=complete.queue_names
        ),
    ] = None,
    key: Annotated[
        str | None,
        typer.Option(
            "--key", help="Idempotency key: while a task with it is unfinished, return its id."
        ),
    ] = None,
    from_file: Annotated[
        Path | None,
        typer.Option(
            "--from",
            help="Bulk: one JSON object per line with job, args, kwargs, at, in, "
            "priority, queue, key ('-' for stdin). All lines are checked, then stored at "
            "once, or on Redis in steps that the same command run again resumes.",
        ),
    ] = None,
) -> None:
    """Create a task of a job defined in the manifest; prints its id."""
    from ..admin import EnqueueRequest, enqueue_tasks, make_task, parse_json
    from ..durations import parse_duration

    opts: Options = ctx.obj
    manifest = opts.load_manifest()
    if from_file is not None:
        if any(v is not None for v in (args, kwargs, at, in_, priority, queue, key)):
            raise UsageError("--from takes every field from its lines; drop the other options")
        _enqueue_bulk(opts, manifest, from_file, job)
        return
    if job is None:
        raise UsageError("missing JOB (or --from FILE)")
    tasks = [
        make_task(
            manifest,
            EnqueueRequest(
                job=job,
                args=parse_json(args, "--args", list),
                kwargs=parse_json(kwargs, "--kwargs", dict),
                at=at,
                delay=parse_duration(in_, what="--in") if in_ is not None else None,
                priority=priority,
                queue=queue,
                key=key,
            ),
        )
    ]
    [(task_id, created)] = opts.call(
        "enqueue", lambda b: enqueue_tasks(b, tasks, limits=manifest.limits), manifest
    )
    if opts.json:
        print_json({"id": task_id, "created": created})
    else:
        typer.echo(task_id)  # only the id: `id=$(chronctl enqueue ...)` works either way
        if not created:
            note(f"key '{key}' belongs to unfinished task {task_id}: nothing new enqueued")


class _Interruptions:
    """Ctrl-C and SIGTERM during a bulk enqueue: count what is stored, then say it.

    While the backend call runs, either signal cancels it (asyncio turns the
    first Ctrl-C into a cancellation; SIGTERM is made to do the same), so the
    step already sent lands and the count is exact. Before and after that call
    (reading the file, connecting), SIGTERM interrupts like Ctrl-C.
    """

    def __init__(self) -> None:
        self.total: int | None = None  # until the file is read
        self.stored = 0
        self.signal: int = signal.SIGINT  # unless SIGTERM says otherwise
        self.task: asyncio.Task[Any] | None = None

    def advance(self, count: int) -> None:
        self.stored += count

    def on_sigterm(self, signum: int, _frame: object) -> None:
        self.signal = signum
        task = self.task
        if task is not None and not task.done():
            task.get_loop().call_soon_threadsafe(task.cancel)
        else:
            raise KeyboardInterrupt

    def error(self) -> Exception:
        from ..admin import BulkInterrupted

        return BulkInterrupted(self.stored, self.total, 128 + self.signal)


def _bulk_name(path: Path, job: str | None) -> str:
    """The batch's name for a resumable backend: the file's content and the JOB
    argument, so the same command run again resumes it and another file does not.
    Standard input is read here once and handed on, so it is named the same way."""
    import hashlib  # lazy: only `enqueue --from` needs it, every command starts the CLI

    if str(path) == "-":
        raw = sys.stdin.buffer.read()
        sys.stdin = io.TextIOWrapper(io.BytesIO(raw), encoding="utf-8")
    else:
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    digest = hashlib.sha256(b"enqueue --from\0" + (job or "").encode() + b"\0" + raw)
    return "file-" + digest.hexdigest()[:32]


def _enqueue_bulk(opts: Options, manifest: Manifest, path: Path, job: str | None) -> None:
    import asyncio  # lazy: see `run_async`; `enqueue --from` needs its task and CancelledError

    from ..admin import enqueue_tasks, read_bulk

    interruptions = _Interruptions()
    previous = signal.signal(signal.SIGTERM, interruptions.on_sigterm)
    try:
        name = _bulk_name(path, job)
        tasks = read_bulk(path, manifest, default_job=job)
        interruptions.total = len(tasks)

        with Progress("enqueueing", opts.show_progress and len(tasks) > 1000) as bar:
            bar.total(len(tasks))

            def advance(count: int) -> None:
                interruptions.advance(count)
                bar.advance(count)

            async def store(backend: QueueBackend) -> list[tuple[str, bool]]:
                interruptions.task = asyncio.current_task()
                try:
                    return await enqueue_tasks(
                        backend, tasks, advance, resume=name, limits=manifest.limits
                    )
                finally:
                    interruptions.task = None

            results = opts.call("enqueue", store, manifest)
    except (KeyboardInterrupt, asyncio.CancelledError):
        raise interruptions.error() from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    if opts.json:
        print_json([{"id": i, "created": c} for i, c in results])
        return
    new = sum(1 for _, c in results if c)
    existing = len(results) - new
    typer.echo(
        f"enqueued {new} task(s)"
        + (f", {existing} already there (stored by an earlier run, or by key)" if existing else "")
    )


def trigger(
    ctx: typer.Context,
    job: Annotated[
        str,
        typer.Argument(
            help="Job or schedule name.",
            show_default=False,
            autocompletion=complete.job_or_schedule_names,
        ),
    ],
) -> None:
    """Run a job now, outside its schedule; a schedule's name runs its job now with the
    schedule's arguments, queue and priority."""
    from ..schedule_admin import trigger as run_now

    opts: Options = ctx.obj
    manifest = opts.load_manifest()
    task_id, created = opts.call("trigger", lambda b: run_now(b, manifest, job), manifest)
    if opts.json:
        print_json({"id": task_id, "created": created})
    else:
        typer.echo(task_id)


def _pause(ctx: typer.Context, job: str | None, queue: str | None, paused: bool) -> None:
    from ..admin import set_job_paused

    opts: Options = ctx.obj
    verb = "pause" if paused else "resume"
    if (job is None) == (queue is None):
        raise UsageError(f"give a JOB or --queue NAME to {verb}")
    if job is not None:
        manifest = opts.load_manifest()
        opts.call(verb, lambda b: set_job_paused(b, manifest.jobs, job, paused), manifest)
        kind = "job" if job in manifest.jobs else "schedule"
        subject: dict[str, Any] = {kind: job}
    else:
        assert queue is not None
        opts.call(verb, lambda b: _pause_queue(b, opts, queue, paused))
        kind, subject = "queue", {"queue": queue}
    if opts.json:
        print_json({**subject, "paused": paused})
    else:
        what = f"{kind} '{job if job is not None else queue}'"
        typer.echo(f"{'paused' if paused else 'resumed'} {safe(what)}")


async def _pause_queue(backend: QueueBackend, opts: Options, queue: str, paused: bool) -> None:
    from ..admin import manifest_queues, optional_manifest, set_queue_paused

    known = manifest_queues(optional_manifest(opts.manifest, opts.backend))
    await set_queue_paused(backend, known, queue, paused)


def pause(
    ctx: typer.Context,
    job: Annotated[
        str | None,
        typer.Argument(
            help="Job or schedule to stop firing.",
            show_default=False,
            autocompletion=complete.job_or_schedule_names,
        ),
    ] = None,
    queue: Annotated[
        str | None,
        typer.Option(
            "--queue", help="Stop workers taking from it.", autocompletion=complete.queue_names
        ),
    ] = None,
) -> None:
    """Stop firing a job's trigger or a schedule (pending tasks stay), or stop a queue
    being worked."""
    _pause(ctx, job, queue, True)


def resume(
    ctx: typer.Context,
    job: Annotated[
        str | None,
        typer.Argument(
            help="Job or schedule to fire again.",
            show_default=False,
            autocompletion=complete.job_or_schedule_names,
        ),
    ] = None,
    queue: Annotated[
        str | None,
        typer.Option(
            "--queue", help="Let workers take from it.", autocompletion=complete.queue_names
        ),
    ] = None,
) -> None:
    """Restart firing a paused job or schedule, or working a paused queue."""
    _pause(ctx, job, queue, False)


def _known_job(opts: Options, job: str) -> None:
    """A job with no runs must at least be in the manifest, else it is a typo (exit 1).

    A job dropped from the manifest keeps its history: only a name with
    neither runs nor a definition is unknown.
    """
    from ..admin import job_named, optional_manifest

    manifest = optional_manifest(opts.manifest, opts.backend)
    if manifest is not None:
        job_named(manifest.jobs, job)


# -- tasks -------------------------------------------------------------------


def task_rows(tasks: list[Task]) -> list[tuple[Any, ...]]:
    return [
        (
            t.id,
            t.job,
            status_text(t.status.value),
            t.queue,
            t.priority,
            t.attempt,
            relative(t.scheduled_at),
            short(t.error, 50),
        )
        for t in tasks
    ]


TASK_COLUMNS = ["ID", "JOB", "STATUS", "QUEUE", "PRI", "ATTEMPT", "SCHEDULED", "ERROR"]


def print_tasks(opts: Options, tasks: list[Task], empty: str) -> None:
    if opts.json:
        print_json([t.to_public() for t in tasks])
    elif not tasks:
        typer.echo(empty)
    else:
        table(TASK_COLUMNS, task_rows(tasks))


def print_task(opts: Options, task: Task) -> None:
    if opts.json:
        print_json(task.to_public())
        return
    details(
        [
            ("id", task.id),
            ("job", task.job),
            ("status", status_text(task.status.value)),
            ("queue", task.queue),
            ("priority", task.priority),
            ("attempt", f"{task.attempt} (max retries {task.max_retries})"),
            ("args", json.dumps(task.args)),
            ("kwargs", json.dumps(task.kwargs)),
            ("key", task.key),
            ("scheduled", _when(task.scheduled_at)),
            ("started", _when(task.started_at)),
            ("finished", _when(task.finished_at)),
            ("duration", f"{task.duration:.3f}s" if task.duration is not None else None),
            ("worker", task.worker),
            ("result", None if task.result is None else json.dumps(task.result)),
            ("error", task.error),
        ]
    )
    if task.traceback:
        block("traceback", task.traceback)
    if task.output:
        block("output (tail)", task.output)


def _when(ts: float | None) -> str | None:
    if ts is None:
        return None
    from ..models import iso

    return f"{iso(ts)} ({relative(ts)})"


@tasks_app.command("list")
def list_tasks(
    ctx: typer.Context,
    status: Annotated[
        str | None,
        typer.Option(
            "--status", help="pending, running, succeeded, dead, cancelled (comma-separated)."
        ),
    ] = None,
    job: Annotated[
        str | None,
        typer.Option("--job", help="Only this job.", autocompletion=complete.job_names),
    ] = None,
    queue: Annotated[
        str | None,
        typer.Option("--queue", help="Only this queue.", autocompletion=complete.queue_names),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most N, newest first.")] = 50,
) -> None:
    """Tasks, newest first."""
    from ..admin import parse_statuses
    from ..models import TaskStatus

    opts: Options = ctx.obj
    allowed = [s for s in TaskStatus if s is not TaskStatus.FAILED]
    statuses = parse_statuses(status, allowed)
    tasks = opts.call(
        "tasks list", lambda b: b.list_tasks(status=statuses, job=job, queue=queue, limit=limit)
    )
    print_tasks(opts, tasks, "no tasks")


@tasks_app.command("show")
def show_task(
    ctx: typer.Context,
    task_id: Annotated[
        str, typer.Argument(metavar="ID", help="Task id.", autocompletion=complete.task_ids)
    ],
) -> None:
    """One task in full: args, times, result or error with traceback, output tail."""
    from ..admin import get_task

    opts: Options = ctx.obj
    print_task(opts, opts.call("tasks show", lambda b: get_task(b, task_id)))


@tasks_app.command("cancel")
def cancel_task(
    ctx: typer.Context,
    task_id: Annotated[
        str, typer.Argument(metavar="ID", help="Task id.", autocompletion=complete.task_ids)
    ],
) -> None:
    """Cancel a pending or running task (a running one is stopped at its next lease renewal)."""
    from ..admin import cancel_task as cancel

    opts: Options = ctx.obj
    task = opts.call("tasks cancel", lambda b: cancel(b, task_id))
    if opts.json:
        print_json(task.to_public())
    else:
        typer.echo(f"cancelled {safe(task.id)}")


def history(
    ctx: typer.Context,
    job: Annotated[
        str | None,
        typer.Argument(
            help="Only this job.", show_default=False, autocompletion=complete.job_names
        ),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most N runs.")] = 50,
) -> None:
    """Finished runs, newest first: job, status, start, duration, attempt, error."""
    opts: Options = ctx.obj

    async def read(backend: QueueBackend) -> list[Run]:
        return await backend.history(job, limit)

    runs = opts.call("history", read)
    if job is not None and not runs:
        _known_job(opts, job)
    if opts.json:
        print_json([r.to_public() for r in runs])
        return
    if not runs:
        typer.echo("no finished runs")
        return
    table(
        ["TASK", "JOB", "STATUS", "STARTED", "DURATION", "ATTEMPT", "ERROR"],
        [
            (
                r.task_id,
                r.job,
                status_text(str(r.status)),
                relative(r.started_at),
                f"{r.duration:.3f}s" if r.duration is not None else "-",
                r.attempt,
                short(r.error, 50),
            )
            for r in runs
        ],
    )
