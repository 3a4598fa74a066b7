"""How an idle worker hears of another process's work: LISTEN on a connection of its own.

Every statement that makes work claimable (enqueue, a fire, a retry, a release, a
queue resumed) calls `pg_notify(channel, origin)` in its own transaction, so the
notification goes out at commit, never before the rows are visible. The listener
survives a server restart: it reconnects with backoff and wakes the worker once
when it is back (a notification sent while it was away is lost; the claim after
the wake finds that work). While it is away, `connected` is False and the backend
wakes its workers every second instead.

A change to the stored schedules is announced on the same channel with a payload of
its own (`SCHEDULES` + origin): it tells every process's scheduler to re-read them
(the changing process's too: harmless, it knew already), and wakes no worker, since
no work came with it. One lost in an outage is made up by the scheduler's check of
the schedules' version about once a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
from collections.abc import Callable
from typing import Any

_PING_EVERY = 30.0  # seconds: a connection cut without a FIN (a partition) is found this late
_BACKOFF_MIN, _BACKOFF_MAX = 0.1, 5.0
#: The start of a schedules payload (a work payload is an origin: hex digits only).
SCHEDULES = "s:"


def channel_name(schema: str) -> str:
    """The notification channel of a schema: at most 63 bytes, like any identifier."""
    name = f"{schema}_wake"
    if len(name) <= 63:
        return name
    return f"chronctl_wake_{hashlib.sha256(schema.encode()).hexdigest()[:32]}"


def _set(event: asyncio.Event, _conn: Any) -> None:
    event.set()


class WakeListener:
    """A LISTEN connection kept open in the background; see the module docstring."""

    def __init__(
        self,
        connect: Callable[[], Any],
        channel: str,
        origin: str,
        on_wake: Callable[[], None],
        on_schedules: Callable[[], None] | None = None,
    ) -> None:
        self._connect = connect  # returns an awaitable asyncpg connection
        self.channel = channel
        self._origin = origin  # our own notifications: the local wakeup was already set
        self._on_wake = on_wake
        self._on_schedules = on_schedules
        self._task: asyncio.Task[None] | None = None
        self.connected = False

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="chronctl-postgres-listen")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self.connected = False

    def _message(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        if payload.startswith(SCHEDULES):
            if self._on_schedules is not None:
                self._on_schedules()
        elif payload != self._origin:
            self._on_wake()

    async def _run(self) -> None:
        delay = _BACKOFF_MIN
        while True:
            conn: Any = None
            try:
                conn = await self._connect()
                lost = asyncio.Event()
                conn.add_termination_listener(functools.partial(_set, lost))
                await conn.add_listener(self.channel, self._message)
                self.connected, delay = True, _BACKOFF_MIN
                self._on_wake()  # work may have come while we were not listening
                while not lost.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(lost.wait(), _PING_EVERY)
                    if not lost.is_set():
                        await conn.fetchval("SELECT 1", timeout=5)
            except asyncio.CancelledError:
                raise
            except Exception:  # the server is unreachable: the backend's own calls report it
                pass
            finally:
                self.connected = False
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.shield(conn.close(timeout=1))
            await asyncio.sleep(delay)
            delay = min(delay * 2, _BACKOFF_MAX)
