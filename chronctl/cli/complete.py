"""Shell completion of job, schedule and queue names and task ids (`chronctl --install-completion`).

A completion runs on every Tab press, so it must be quick and silent: names come
from the manifest (a file read), ids from the backend only when it answers within
BUDGET seconds; anything that goes wrong completes nothing rather than print a
traceback into the user's prompt.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from . import Options, run_async

if TYPE_CHECKING:
    from ..backends.base import QueueBackend
    from ..manifest import Manifest

BUDGET = 1.0  # seconds a Tab press may wait for the backend
PROBE_TIMEOUT = 0.3  # seconds to find out a server is not there at all
DEFAULT_PORTS = {
    "redis": 6379,
    "rediss": 6379,
    "redis+sentinel": 26379,
    "amqp": 5672,
    "amqps": 5671,
    "postgresql": 5432,
    "postgres": 5432,
}


def job_names(ctx: typer.Context, incomplete: str) -> list[str]:
    manifest = _manifest(ctx)
    return sorted(n for n in manifest.jobs if n.startswith(incomplete)) if manifest else []


def schedule_names(ctx: typer.Context, incomplete: str) -> list[str]:
    """Stored schedules and overrides, from the backend."""

    async def stored(backend: QueueBackend) -> list[str]:
        return [s.name for s in await backend.list_schedules()]

    found = _from_backend(ctx, _manifest(ctx), stored)
    return sorted(n for n in found if n.startswith(incomplete))


def job_or_schedule_names(ctx: typer.Context, incomplete: str) -> list[str]:
    """What `pause`, `resume`, `trigger`, `jobs next` take: jobs and runtime schedules."""
    manifest = _manifest(ctx)
    names = set(manifest.jobs) if manifest else set()

    async def stored(backend: QueueBackend) -> list[str]:
        return [s.name for s in await backend.list_schedules() if not s.override]

    names.update(_from_backend(ctx, manifest, stored))
    return sorted(n for n in names if n.startswith(incomplete))


def queue_names(ctx: typer.Context, incomplete: str) -> list[str]:
    """The manifest's queues, and those the backend holds tasks in."""
    manifest = _manifest(ctx)
    names = {spec.queue for spec in manifest.jobs.values()} if manifest else set()

    async def stored(backend: QueueBackend) -> list[str]:
        return [q.name for q in await backend.list_queues()]

    names.update(_from_backend(ctx, manifest, stored))
    return sorted(n for n in names if n.startswith(incomplete))


def task_ids(ctx: typer.Context, incomplete: str) -> list[str]:
    return _ids(ctx, incomplete, dead=False)


def dead_task_ids(ctx: typer.Context, incomplete: str) -> list[str]:
    return _ids(ctx, incomplete, dead=True)


def _ids(ctx: typer.Context, incomplete: str, *, dead: bool) -> list[str]:
    from ..models import TaskStatus

    async def recent(backend: QueueBackend) -> list[str]:
        status = TaskStatus.DEAD if dead else None
        return [t.id for t in await backend.list_tasks(status=status, limit=200)]

    found = _from_backend(ctx, _manifest(ctx), recent)
    return [i for i in found if i.startswith(incomplete)]


def _options(ctx: typer.Context) -> Options:
    """-f and --backend as typed so far (parsed into Options wherever they stand)."""
    opts = ctx.find_object(Options)
    return opts if opts is not None else Options()


def _manifest(ctx: typer.Context) -> Manifest | None:
    from ..manifest import load_manifest

    try:
        return load_manifest(_options(ctx).manifest)
    except Exception:
        return None


def _from_backend(
    ctx: typer.Context,
    manifest: Manifest | None,
    read: Callable[[QueueBackend], Awaitable[list[str]]],
) -> list[str]:
    """`read` on the backend, or [] when it is absent, slow or fails.

    It runs in a daemon thread that is abandoned at BUDGET, so a backend that
    hangs cannot hold the shell; the reachability probe first keeps that rare.
    """
    opts = _options(ctx)
    found: list[str] = []

    def work() -> None:
        from ..admin import open_backend

        try:
            url, base = _backend_url(opts, manifest)
            if not _reachable(url, base):
                return
            backend = open_backend(opts.manifest, opts.backend, "completion", manifest)

            async def go() -> list[str]:
                async with backend:
                    return await read(backend)

            found.extend(run_async(go(), BUDGET))
        except Exception:
            return

    thread = threading.Thread(target=work, name="chronctl-completion", daemon=True)
    thread.start()
    thread.join(BUDGET)
    return [] if thread.is_alive() else found


def _backend_url(opts: Options, manifest: Manifest | None) -> tuple[str, Path | None]:
    if opts.backend:
        return opts.backend, Path.cwd()
    if manifest is None:
        raise LookupError("no manifest, no backend")
    url = manifest.config.backend
    if url.split("://", 1)[0].lower() in ("amqp", "amqps"):
        url = manifest.config.state or "sqlite:///chronctl.db"  # task state lives there
    return url, manifest.path.parent if manifest.path else None


def _reachable(url: str, base: Path | None) -> bool:
    """Whether a query could answer at all: a SQLite file that exists (completion never
    creates one), or a server that accepts a connection within PROBE_TIMEOUT."""
    import socket
    from urllib.parse import urlsplit

    from ..backends import sqlite_path

    scheme = url.split("://", 1)[0].lower()
    if scheme == "sqlite":
        return sqlite_path(url, base).exists()
    if scheme not in DEFAULT_PORTS:
        return False
    first = urlsplit(url).netloc.rpartition("@")[2].split(",")[0]
    parts = urlsplit("//" + first)
    address: Any = (parts.hostname or "127.0.0.1", parts.port or DEFAULT_PORTS[scheme])
    try:
        socket.create_connection(address, timeout=PROBE_TIMEOUT).close()
    except OSError:
        return False
    return True
