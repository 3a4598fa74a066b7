"""Tasks used by jobs.example.toml, so `chronctl run jobs.example.toml` works from a clone."""

from __future__ import annotations

import asyncio
import logging
import shutil
import time

log = logging.getLogger("examples")


async def heartbeat() -> str:
    """An async job: runs on the event loop."""
    stamp = time.strftime("%H:%M:%S")
    log.info("heartbeat at %s", stamp)
    return stamp


def disk_usage(path: str = ".") -> dict[str, float]:
    """A plain function: runs in a worker thread."""
    usage = shutil.disk_usage(path)
    free_pct = round(100 * usage.free / usage.total, 1)
    return {"total_gb": round(usage.total / 1e9, 1), "free_pct": free_pct}


def cleanup_logs(retention_days: int = 30) -> int:
    """Pretends to clean; returns how many files it would delete."""
    log.info("would delete logs older than %d days", retention_days)
    return 0


async def send_email(to: str, subject: str = "hello") -> dict[str, str]:
    """No trigger: runs when enqueued, e.g. from the library or `chronctl enqueue`."""
    if "@" not in to:
        raise ValueError(f"not an email address: {to!r}")
    await asyncio.sleep(0.01)
    return {"to": to, "subject": subject, "status": "queued"}


def fib(n: int = 25) -> int:
    """CPU-bound: the manifest runs it with executor = "process"."""
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a
