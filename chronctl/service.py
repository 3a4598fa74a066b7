"""Running a scheduler as a service: signals and graceful shutdown.

TERM/INT once = graceful (stop claiming, let runs finish within
shutdown_timeout, return the rest); a second TERM/INT = stop now, still
returning unfinished tasks to the queue.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .scheduler import Scheduler

log = logging.getLogger("chronctl")


async def serve(scheduler: Scheduler, *, install_signals: bool = True) -> None:
    loop = asyncio.get_running_loop()
    stop_requests = asyncio.Queue[str]()

    def on_signal(name: str) -> None:
        stop_requests.put_nowait(name)

    if install_signals:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal, sig.name)
    await scheduler.start()
    log.info("chronctl running: backend=%s jobs=%d workers=%d role=%s",
             scheduler.backend.display_url, len(scheduler.jobs), scheduler.workers,
             scheduler.role)
    waiter = asyncio.create_task(scheduler.wait_stopped())
    getter = asyncio.create_task(stop_requests.get())
    try:
        done, _ = await asyncio.wait([waiter, getter], return_when=asyncio.FIRST_COMPLETED)
        if waiter in done:
            waiter.result()  # a crashed loop: raise it
            return
        log.info("%s received: stopping gracefully (up to %.0fs); send again to stop now",
                 getter.result(), scheduler.shutdown_timeout)
        graceful = asyncio.create_task(scheduler.stop())
        second = asyncio.create_task(stop_requests.get())
        done, _ = await asyncio.wait([graceful, second], return_when=asyncio.FIRST_COMPLETED)
        if second in done:
            log.info("%s received again: stopping now", second.result())
            graceful.cancel()
            await asyncio.gather(graceful, return_exceptions=True)
            await scheduler.stop(now=True)
        else:
            second.cancel()
            graceful.result()
        log.info("chronctl stopped")
    finally:
        waiter.cancel()
        getter.cancel()
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
