"""`dlq list/show/retry/purge` and `queues list/purge`.

Library imports sit inside the commands: see cli/jobs.py.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from ..errors import UsageError
from ..text import safe
from . import Options, complete
from .output import Progress, confirm, print_json, queue_rows, table
from .tasks import print_task, print_tasks

dlq_app = typer.Typer(help="The dead letter queue: tasks out of retries.", no_args_is_help=True)
queues_app = typer.Typer(help="Queues with pending and running counts.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(dlq_app, name="dlq")
    app.add_typer(queues_app, name="queues")


@dlq_app.command("list")
def dlq_list(
    ctx: typer.Context,
    job: Annotated[
        str | None,
        typer.Option("--job", help="Only this job.", autocompletion=complete.job_names),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most N, newest first.")] = 100,
) -> None:
    """Dead letters, newest first, with their last error."""
    from ..admin import dead_letters

    opts: Options = ctx.obj
    tasks = opts.call("dlq list", lambda b: dead_letters(b, job, limit))
    print_tasks(opts, tasks, "the dead letter queue is empty")


@dlq_app.command("show")
def dlq_show(
    ctx: typer.Context,
    task_id: Annotated[
        str, typer.Argument(metavar="ID", help="Task id.", autocompletion=complete.dead_task_ids)
    ],
) -> None:
    """One dead letter: error, traceback tail and output."""
    from ..admin import get_dead

    opts: Options = ctx.obj
    print_task(opts, opts.call("dlq show", lambda b: get_dead(b, task_id)))


@dlq_app.command("retry")
def dlq_retry(
    ctx: typer.Context,
    task_ids: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="ID...",
            help="Dead tasks to retry.",
            show_default=False,
            autocompletion=complete.dead_task_ids,
        ),
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Retry every dead letter.")] = False,
) -> None:
    """Put dead tasks back to pending: same id, attempt 0, earlier runs kept in history."""
    from ..admin import retry_dead

    opts: Options = ctx.obj
    if bool(task_ids) == all_:
        raise UsageError("give task ids or --all")
    with Progress("retrying", opts.show_progress and all_) as bar:
        count = opts.call(
            "dlq retry", lambda b: retry_dead(b, None if all_ else task_ids, bar.advance, bar.total)
        )
    if opts.json:
        print_json({"count": count})
    else:
        typer.echo(f"retried {count} task(s)")


YES = typer.Option("--yes", "-y", help="Do not ask for confirmation on a terminal.")


@dlq_app.command("purge")
def dlq_purge(
    ctx: typer.Context,
    older_than: Annotated[
        str | None,
        typer.Option("--older-than", help="Only those dead for longer than this, e.g. 7d."),
    ] = None,
    yes: Annotated[bool, YES] = False,
) -> None:
    """Delete dead letters (all, or those older than a duration).

    Deleting all of them asks first on a terminal (not with --yes, nor when
    stdin is not a terminal).
    """
    from ..admin import count_dead
    from ..admin import older_than as cutoff

    opts: Options = ctx.obj
    before = cutoff(older_than) if older_than else None
    if before is None and not yes and sys.stdin.isatty():
        dead = opts.call("dlq purge", count_dead)
        confirm(f"Delete all {dead} dead letter(s)?", yes)
    count = opts.call("dlq purge", lambda b: b.purge_dead(before))
    if opts.json:
        print_json({"count": count})
    else:
        typer.echo(f"purged {count} dead letter(s)")


@queues_app.command("list")
def queues_list(ctx: typer.Context) -> None:
    """Every queue the manifest uses or that holds tasks or is paused, with counts."""
    from ..admin import list_queues, manifest_queues, optional_manifest
    from ..backpressure import UNLIMITED

    opts: Options = ctx.obj
    manifest = optional_manifest(opts.manifest, opts.backend)
    known = manifest_queues(manifest)
    limits = manifest.limits if manifest else UNLIMITED
    queues = opts.call("queues list", lambda b: list_queues(b, known, limits), manifest)
    if opts.json:
        print_json([q.to_public() for q in queues])
        return
    if not queues:
        typer.echo("no queues yet")
        return
    table(*queue_rows(queues))


@queues_app.command("purge")
def queues_purge(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Queue name.", autocompletion=complete.queue_names)],
    yes: Annotated[bool, YES] = False,
) -> None:
    """Delete a queue's pending tasks (running ones finish); asks first on a terminal."""
    from ..admin import known_queue, manifest_queues, optional_manifest

    opts: Options = ctx.obj
    manifest = optional_manifest(opts.manifest, opts.backend)
    known = manifest_queues(manifest)
    info = opts.call("queues purge", lambda b: known_queue(b, known, name), manifest)
    confirm(f"Delete the {info.pending} pending task(s) of queue '{name}'?", yes)
    count = opts.call("queues purge", lambda b: b.clear(name), manifest)
    if opts.json:
        print_json({"count": count})
    else:
        typer.echo(f"purged {count} pending task(s) from '{safe(name)}'")
