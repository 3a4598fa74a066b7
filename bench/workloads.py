"""The workloads. Each takes a backend URL (or a temp dir) and returns plain numbers.

Times that a workload reports as latency are taken where a user would see
them: `time.time()` at the first line of the job function minus a timestamp
the task carries in its args (taken just before the enqueue call, or the
time it was scheduled for).
"""

from __future__ import annotations

import asyncio
import gc
import random
import shutil
import signal
import statistics
import subprocess
import sys
import time
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chronctl import Scheduler
from chronctl.backends import from_url
from chronctl.scheduler import build_task

from .harness import latency_summary, open_backend, process_cpu_seconds, process_rss_mb

DONE_TIMEOUT = 600.0  # a workload that has not finished by then is broken, not slow


async def _noop() -> None:
    return None


def _counter(n: int) -> tuple[asyncio.Event, Any]:
    """An event set once `n` task_succeeded events have been seen."""
    done = asyncio.Event()
    seen = 0

    def on_succeeded(event: Any) -> None:
        nonlocal seen
        seen += 1
        if seen >= n:
            done.set()

    return done, on_succeeded


async def _fill(backend: Any, spec: Any, n: int, chunk: int = 50_000) -> None:
    """`n` pending no-op tasks through the bulk path, in chunks of `chunk`."""
    for start in range(0, n, chunk):
        await backend.enqueue_many([build_task(spec, [], {}) for _ in range(min(chunk, n - start))])


# -- W1 --------------------------------------------------------------------------


async def w1_throughput(url: str, *, n: int, workers: int) -> dict[str, Any]:
    """Enqueue `n` no-op tasks in bulk, then let one Scheduler run them all."""
    async with open_backend(url) as backend:
        scheduler = Scheduler(backend, workers=workers)
        scheduler.job(name="noop")(_noop)
        spec = scheduler.jobs["noop"]
        done, on_succeeded = _counter(n)
        scheduler.on("task_succeeded", on_succeeded)
        t0 = time.perf_counter()
        await backend.enqueue_many([build_task(spec, [], {}) for _ in range(n)])
        t1 = time.perf_counter()
        await scheduler.start()
        await asyncio.wait_for(done.wait(), DONE_TIMEOUT)
        t2 = time.perf_counter()
        await scheduler.stop()
    return {
        "n": n,
        "enqueue_per_s": n / (t1 - t0),
        "process_per_s": n / (t2 - t1),
        "end_to_end_per_s": n / (t2 - t0),
    }


# -- W2 --------------------------------------------------------------------------


async def w2_start_latency(url: str, *, n: int, rate: float, workers: int) -> dict[str, Any]:
    """An idle worker; `n` tasks enqueued one by one at `rate`/s; started - enqueued."""
    samples: list[float] = []

    async def probe(enqueued: float) -> None:
        samples.append(time.time() - enqueued)

    async with open_backend(url) as backend:
        scheduler = Scheduler(backend, workers=workers)
        scheduler.job(name="probe")(probe)
        done, on_succeeded = _counter(n)
        scheduler.on("task_succeeded", on_succeeded)
        await scheduler.start()
        await asyncio.sleep(0.5)  # the worker is idle, waiting for work
        start = time.perf_counter()
        for i in range(n):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await scheduler.enqueue("probe", args=[time.time()])
        send_s = time.perf_counter() - start
        await asyncio.wait_for(done.wait(), DONE_TIMEOUT)
        await scheduler.stop()
    return {**latency_summary(samples), "sent_per_s": n / send_s if send_s else 0.0}


# -- W3 --------------------------------------------------------------------------


async def w3_schedule_accuracy(
    url: str, *, n: int, ahead: tuple[float, float], workers: int
) -> dict[str, Any]:
    """`n` tasks due `ahead` seconds from now (uniform); started - scheduled time."""
    samples: list[float] = []

    async def probe(due: float) -> None:
        samples.append(time.time() - due)

    rng = random.Random(7)
    async with open_backend(url) as backend:
        scheduler = Scheduler(backend, workers=workers)
        scheduler.job(name="probe")(probe)
        done, on_succeeded = _counter(n)
        scheduler.on("task_succeeded", on_succeeded)
        await scheduler.start()
        for _ in range(n):
            at = datetime.fromtimestamp(time.time() + rng.uniform(*ahead), UTC)
            await scheduler.enqueue("probe", args=[at.timestamp()], at=at)
        await asyncio.wait_for(done.wait(), DONE_TIMEOUT)
        await scheduler.stop()
    return latency_summary(samples)


# -- W4 --------------------------------------------------------------------------


async def w4_scale(url: str, *, pending: int, n: int, workers: int) -> dict[str, Any]:
    """W1's processing rate for the first `n` tasks of a queue `pending` tasks deep."""
    async with open_backend(url) as backend:
        scheduler = Scheduler(backend, workers=workers)
        scheduler.job(name="noop")(_noop)
        t0 = time.perf_counter()
        await _fill(backend, scheduler.jobs["noop"], pending)
        t1 = time.perf_counter()
        done, on_succeeded = _counter(n)
        scheduler.on("task_succeeded", on_succeeded)
        await scheduler.start()
        await asyncio.wait_for(done.wait(), DONE_TIMEOUT)
        t2 = time.perf_counter()
        await scheduler.stop()
    return {
        "pending": pending,
        "n": n,
        "prefill_per_s": pending / (t1 - t0),
        "process_per_s": n / (t2 - t1),
    }


async def w4_memory_per_task(*, n: int) -> dict[str, Any]:
    """Bytes the memory backend holds per pending task (tracemalloc, Python heap)."""
    scheduler = Scheduler(from_url("memory://"))
    scheduler.job(name="noop")(_noop)
    spec = scheduler.jobs["noop"]
    backend = scheduler.backend
    await backend.connect()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        await _fill(backend, spec, n)
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert await backend.get_queue_size() == n
    await backend.disconnect()
    return {"n": n, "bytes_per_pending": (after - before) / n}


# -- W5 --------------------------------------------------------------------------


def chronctl_argv() -> list[str]:
    """The installed `chronctl` script next to this interpreter, else `python -m chronctl`."""
    script = Path(sys.executable).parent / "chronctl"
    if script.exists():
        return [str(script)]
    found = shutil.which("chronctl")
    return [found] if found else [sys.executable, "-m", "chronctl"]


def write_idle_manifest(tmp: Path, backend_url: str, jobs: int) -> Path:
    """`jobs` cron jobs, all due about 12 hours from now, with an importable no-op."""
    (tmp / "bench_tasks.py").write_text("def noop():\n    return None\n")
    hour = (time.gmtime().tm_hour + 12) % 24
    lines = ["[scheduler]", f'backend = "{backend_url}"', "workers = 8", 'pythonpath = ["."]', ""]
    for i in range(jobs):
        lines += [
            f"[jobs.job{i}]",
            'entrypoint = "bench_tasks:noop"',
            f'cron = "{i % 60} {hour} * * *"',
            "",
        ]
    path = tmp / "idle.toml"
    path.write_text("\n".join(lines))
    return path


async def _drop_store(url: str) -> None:
    async with open_backend(url):  # leaving it drops the run's keys and queues
        pass


def w5_idle_cpu(
    tmp: Path, backend_url: str, *, jobs: int, seconds: float, warmup: float = 3.0
) -> dict[str, Any]:
    """CPU of a real `chronctl run` holding `jobs` cron jobs, none of them due."""
    manifest = write_idle_manifest(tmp, backend_url, jobs)
    log_path = tmp / "idle.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [*chronctl_argv(), "run", str(manifest)], cwd=tmp, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 60
        while b"chronctl running" not in log_path.read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"chronctl run did not start: {log_path.read_text()[-2000:]}")
            time.sleep(0.05)
        time.sleep(warmup)  # the first pass writes every job's state row
        cpu0, wall0 = process_cpu_seconds(proc.pid), time.monotonic()
        time.sleep(seconds)
        cpu1, wall1 = process_cpu_seconds(proc.pid), time.monotonic()
        rss = process_rss_mb(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        asyncio.run(_drop_store(backend_url))  # the job rows it wrote, on a shared server
    used, wall = cpu1 - cpu0, wall1 - wall0
    return {
        "jobs": jobs,
        "seconds": wall,
        "cpu_s": used,
        "cpu_percent": 100 * used / wall,
        "rss_mb": rss,
        "exit_code": proc.returncode,
    }


# -- W6 --------------------------------------------------------------------------

#: Commands timed by W6: label -> argv after `chronctl` ({manifest} is filled in).
#: Global options (-f, --json) go before the subcommand, as the SPEC says.
CLI_COMMANDS: dict[str, list[str]] = {
    "--version": ["--version"],
    "jobs list --json": ["-f", "{manifest}", "--json", "jobs", "list"],
    # "tasks list --json": ["-f", "{manifest}", "--json", "tasks", "list"],
}


def write_cli_manifest(tmp: Path) -> Path:
    """Three jobs on an SQLite file that holds no tasks."""
    (tmp / "cli.db").touch(mode=0o600)
    path = tmp / "cli.toml"
    path.write_text(
        '[scheduler]\nbackend = "sqlite:///cli.db"\n\n'
        '[jobs.a]\ncommand = ["true"]\ncron = "0 2 * * *"\n\n'
        '[jobs.b]\ncommand = ["true"]\nevery = "30m"\n\n'
        '[jobs.c]\ncommand = ["true"]\n'
    )
    return path


def w6_cli_start(tmp: Path, *, repeat: int) -> dict[str, Any]:
    """Wall time of each CLI command: one untimed warm-up, then the median of `repeat`."""
    manifest = write_cli_manifest(tmp)
    out: dict[str, Any] = {"repeat": repeat}
    for label, args in CLI_COMMANDS.items():
        argv = [*chronctl_argv(), *(a.format(manifest=manifest) for a in args)]
        times = []
        for i in range(repeat + 1):
            t0 = time.perf_counter()
            result = subprocess.run(argv, cwd=tmp, capture_output=True, check=False)
            elapsed = time.perf_counter() - t0
            if result.returncode != 0:
                raise RuntimeError(f"{' '.join(argv)} failed: {result.stderr.decode()[-500:]}")
            if i:
                times.append(elapsed)
        key = label.strip("-").replace(" --json", "").replace(" ", "_")
        out[f"{key}_ms"] = 1000 * statistics.median(times)
        out[f"{key}_min_ms"] = 1000 * min(times)
    return out
