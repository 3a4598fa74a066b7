"""Running a scheduler as a service: signals, graceful shutdown, reload.

TERM/INT once = graceful (stop claiming, let runs finish within
shutdown_timeout, return the rest); a second TERM/INT = stop now, still
returning unfinished tasks to the queue. HUP = reload the manifest: added,
removed and changed jobs take effect at once; a manifest that does not load
keeps the running configuration and logs one error.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .jobs import JobSpec
    from .manifest import Manifest
    from .scheduler import Scheduler

log = logging.getLogger("chronctl")


@dataclass
class ReloadResult:
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    restart_needed: list[str] = field(default_factory=list)


def _comparable(spec: JobSpec) -> JobSpec:
    # The imported function is a cache filled on first run, not part of the definition.
    return dataclasses.replace(spec, func=None) if spec.entrypoint else spec


def apply_manifest(scheduler: Scheduler, old: Manifest, new: Manifest) -> ReloadResult:
    """Make the scheduler run `new`'s jobs; report what changed."""
    result = ReloadResult()
    for name in old.jobs.keys() - new.jobs.keys():
        scheduler.unregister_job(name)
        result.removed.append(name)
    for name, spec in new.jobs.items():
        current = scheduler.jobs.get(name)
        if current is None:
            result.added.append(name)
        elif _comparable(current) == _comparable(spec):
            continue
        else:
            result.changed.append(name)
        scheduler.add_job(spec)
    for key in ("backend", "state", "workers", "lease", "queues", "pidfile", "log_file"):
        if getattr(old.config, key) != getattr(new.config, key):
            result.restart_needed.append(key)
    return result


async def serve(
    scheduler: Scheduler,
    *,
    install_signals: bool = True,
    reload: Callable[[], Manifest] | None = None,
    manifest: Manifest | None = None,
    on_started: Callable[[], None] | None = None,
) -> None:
    loop = asyncio.get_running_loop()
    stop_requests = asyncio.Queue[str]()
    current = manifest

    def on_signal(name: str) -> None:
        stop_requests.put_nowait(name)

    def on_hup() -> None:
        nonlocal current
        if reload is None or current is None:
            log.warning("SIGHUP received: no manifest to reload")
            return
        try:
            new = reload()
        except Exception as exc:  # keep running what we have; say why in one line
            log.error("reload failed, keeping the running configuration: %s", exc)
            return
        result = apply_manifest(scheduler, current, new)
        current = new
        log.info(
            "reloaded %s: %d added, %d removed, %d changed%s",
            new.display_path or new.path,
            len(result.added),
            len(result.removed),
            len(result.changed),
            "".join(
                f" {k}={v}"
                for k, v in (
                    ("added", result.added),
                    ("removed", result.removed),
                    ("changed", result.changed),
                )
                if v
            ),
        )
        if result.restart_needed:
            log.warning(
                "[scheduler] %s changed: takes effect after a restart",
                ", ".join(result.restart_needed),
            )

    signals = [signal.SIGTERM, signal.SIGINT]
    if install_signals:
        for sig in signals:
            loop.add_signal_handler(sig, on_signal, sig.name)
        loop.add_signal_handler(signal.SIGHUP, on_hup)
    try:
        await scheduler.start()
        log.info(
            "chronctl running: backend=%s jobs=%d workers=%d role=%s",
            scheduler.backend.display_url,
            len(scheduler.jobs),
            scheduler.workers,
            scheduler.role,
        )
        if on_started is not None:
            on_started()
        waiter = asyncio.create_task(scheduler.wait_stopped())
        getter = asyncio.create_task(stop_requests.get())
        try:
            done, _ = await asyncio.wait([waiter, getter], return_when=asyncio.FIRST_COMPLETED)
            if waiter in done:
                waiter.result()  # a crashed loop: raise it
                return
            log.info(
                "%s received: stopping gracefully (up to %.0fs); send again to stop now",
                getter.result(),
                scheduler.shutdown_timeout,
            )
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
    finally:
        if install_signals:
            for sig in [*signals, signal.SIGHUP]:
                loop.remove_signal_handler(sig)
