"""Soak (issue 20): does a long-running `chronctl run` stay flat with retention on?

The real path: `chronctl run soak.toml` is the worker, as its own process; this
process is the producer (500 tasks/s by default, in batches of 50 every 0.1 s)
and the observer. The manifest has a job firing every second and
`keep_history = "30s"`, so after the first minute or so retention deletes as much
as arrives, and the worker's RSS and the store (SQLite file + WAL, or Redis
`used_memory`) should stop growing. Every 10 s it prints one line; at the end a
summary of the figures after the first minute.

    python -m bench.soak --backend sqlite --minutes 3
    python -m bench.soak --backend redis --minutes 3
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from chronctl.backends import from_url
from chronctl.backends.base import QueueBackend
from chronctl.backends.redis import RedisBackend
from chronctl.models import Task
from chronctl.retention import last_report

from .cli_workloads import chronctl_argv
from .harness import process_rss_mb

REDIS_URL = os.environ.get("CHRONCTL_BENCH_REDIS", "redis://127.0.0.1:6379/15")
BATCH = 50  # tasks per enqueue_many, ten times a second at 500/s


def write_manifest(tmp: Path, url: str, keep: str, workers: int) -> Path:
    (tmp / "soak_tasks.py").write_text("def noop(*args):\n    return None\n")
    path = tmp / "soak.toml"
    path.write_text(
        f'[scheduler]\nbackend = "{url}"\nworkers = {workers}\npythonpath = ["."]\n'
        f'keep_history = "{keep}"\nlog_file = "soak.log"\n\n'
        '[jobs.tick]\nentrypoint = "soak_tasks:noop"\nevery = "1s"\n\n'
        '[jobs.work]\nentrypoint = "soak_tasks:noop"\n'
    )
    return path


async def store_size(backend: QueueBackend, url: str, tmp: Path) -> str:
    """The store's footprint: the SQLite file and its WAL, or Redis used_memory."""
    if url.startswith("sqlite"):
        db, wal = (tmp / "soak.db", tmp / "soak.db-wal")
        sizes = [f.stat().st_size / 1e6 if f.exists() else 0.0 for f in (db, wal)]
        return f"sqlite file {down(sizes[0]):.1f} MB + wal {down(sizes[1]):.1f} MB"
    import redis.asyncio as redis

    client = redis.from_url(url.split("?", 1)[0])
    try:
        info = await client.info("memory")
    finally:
        await client.aclose()
    return f"redis used_memory {down(info['used_memory'] / 1e6):.1f} MB"


async def produce(backend: QueueBackend, rate: int, stop: asyncio.Event) -> int:
    """`rate` tasks a second of job `work`, in batches, on a fixed schedule; how many."""
    interval = BATCH / rate
    next_at = time.monotonic()
    n = 0
    while not stop.is_set():
        await backend.enqueue_many([Task(job="work", args=[n + i]) for i in range(BATCH)])
        n += BATCH
        next_at += interval
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    return n


def down(value: float) -> float:
    """One decimal, rounded down: a printed figure is never above what was measured."""
    return math.floor(value * 10) / 10


async def soak(args: argparse.Namespace) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="chronctl-soak-") as name:
        tmp = Path(name)
        prefix = f"chronctl-soak-{uuid.uuid4().hex[:8]}:"
        url = "sqlite:///soak.db" if args.backend == "sqlite" else f"{REDIS_URL}?prefix={prefix}"
        manifest = write_manifest(tmp, url, args.keep, args.workers)
        backend = from_url(url, base=tmp)
        await backend.connect()
        log = (tmp / "worker.out").open("wb")
        worker = subprocess.Popen(
            [*chronctl_argv(), "run", str(manifest)], cwd=tmp, stdout=log, stderr=subprocess.STDOUT
        )
        stop = asyncio.Event()
        producer = asyncio.create_task(produce(backend, args.rate, stop))
        rows: list[dict[str, Any]] = []
        started = time.monotonic()
        try:
            while time.monotonic() - started < args.minutes * 60:
                await asyncio.sleep(10)
                if worker.poll() is not None:
                    raise SystemExit(f"the worker exited ({worker.returncode}): see {tmp}")
                report = await last_report(backend)
                row = {
                    "t": round(time.monotonic() - started),
                    "rss_mb": down(process_rss_mb(worker.pid)),
                    "store": await store_size(backend, url, tmp),
                    "pending": await backend.get_queue_size("default"),
                    "removed": report.total_finished if report else 0,
                    "load": os.getloadavg()[0],
                }
                rows.append(row)
                print(
                    f"t={row['t']:4d}s  rss={row['rss_mb']:.1f} MB  {row['store']}  "
                    f"pending={row['pending']}  retention removed={row['removed']}  "
                    f"load1={row['load']:.2f}",
                    flush=True,
                )
        finally:
            stop.set()
            [sent] = await asyncio.gather(producer, return_exceptions=True)
            elapsed = time.monotonic() - started
            if isinstance(sent, int):
                print(f"enqueued {sent} tasks in {elapsed:.0f} s: {sent // elapsed:.0f} tasks/s")
            worker.send_signal(signal.SIGTERM)
            worker.wait(60)
            log.close()
            if isinstance(backend, RedisBackend):
                await backend.drop_everything()  # this run's keys
            await backend.disconnect()
        return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("sqlite", "redis"), default="sqlite")
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--rate", type=int, default=500, help="tasks enqueued per second")
    parser.add_argument("--keep", default="30s", help="keep_history")
    parser.add_argument("--workers", type=int, default=8)
    args = parser.parse_args()
    rows = asyncio.run(soak(args))
    after = [r for r in rows if r["t"] >= 60]
    if after:
        rss = [r["rss_mb"] for r in after]
        print(
            f"after the first minute: rss {min(rss):.1f}..{max(rss):.1f} MB; "
            f"store {after[0]['store']} -> {after[-1]['store']}; "
            f"load1 {min(r['load'] for r in after):.2f}..{max(r['load'] for r in after):.2f}"
        )


if __name__ == "__main__":
    main()
