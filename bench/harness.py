"""What every workload shares: backends by name or URL, statistics, the machine.

A backend is a URL. `BACKENDS` maps a short name to a function of a fresh
temporary directory that returns the URL; a workload builds the backend with
`chronctl.backends.from_url`. `redis` and `rabbitmq` point at the local
servers (override with CHRONCTL_BENCH_REDIS / CHRONCTL_BENCH_AMQP) under a
key prefix or queue names unique to the run, so a shared server is never
emptied: the run deletes only what it created. `--backends` also accepts a
URL directly.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chronctl.backends import QueueBackend, from_url

#: Redis database 14 is the benchmark's (15 is the test suite's).
REDIS_URL = os.environ.get("CHRONCTL_BENCH_REDIS", "redis://127.0.0.1:6379/14")
AMQP_URL = os.environ.get("CHRONCTL_BENCH_AMQP", "amqp://guest:guest@127.0.0.1:5672/%2F")
#: PostgreSQL's `postgres` database is the benchmark's (`test` is the test suite's); each
#: run works in a schema of its own and drops it.
POSTGRES_URL = os.environ.get(
    "CHRONCTL_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)
#: Where the `def`/`async def` task bodies count and record (bench/body.py): its own database.
SIGNAL_URL = os.environ.get("CHRONCTL_BENCH_SIGNAL", "redis://127.0.0.1:6379/13")


def _run_name(tmp: Path) -> str:
    """A name unique to one run (the temporary directory's), usable as a key prefix."""
    return "chronctl-bench-" + "".join(c for c in tmp.name if c.isalnum())[-12:]


BACKENDS: dict[str, Callable[[Path], str]] = {
    "memory": lambda tmp: "memory://",
    "sqlite": lambda tmp: f"sqlite:///{tmp}/bench.db",  # sqlite:////abs/path.db
    "redis": lambda tmp: f"{REDIS_URL}?prefix={_run_name(tmp)}",
    "rabbitmq": lambda tmp: (
        f"{AMQP_URL}?queue_name={_run_name(tmp)}&exchange_name={_run_name(tmp)}"
    ),
    "postgres": lambda tmp: f"{POSTGRES_URL}?schema={_run_name(tmp).replace('-', '_')}",
}


@dataclass(frozen=True)
class BackendChoice:
    """One column of the report: a label and how to get a fresh store's URL."""

    label: str
    url_for: Callable[[Path], str]

    def url(self, tmp: Path) -> str:
        return self.url_for(tmp)


def choose_backends(spec: str) -> list[BackendChoice]:
    """`memory,sqlite` or URLs (`redis://host:6379/15`) -> report columns."""
    out = []
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        if "://" in item:
            out.append(BackendChoice(item.split("://", 1)[0], lambda tmp, url=item: url))
        elif item in BACKENDS:
            out.append(BackendChoice(item, BACKENDS[item]))
        else:
            raise SystemExit(
                f"bench: unknown backend '{item}': expected one of "
                f"{', '.join(BACKENDS)} or a backend URL"
            )
    return out


@asynccontextmanager
async def open_backend(url: str):  # type: ignore[no-untyped-def]
    """A connected backend with no pending tasks left by an earlier run.

    An amqp:// backend gets its SQLite state store in a temporary directory (the
    default, `chronctl.db` in the working directory, would outlive the run), and
    its broker queues and exchanges are deleted afterwards.
    """
    with contextlib.ExitStack() as stack:
        options: dict[str, Any] = {}
        if url.split("://", 1)[0].lower() in ("amqp", "amqps"):
            state_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="chronctl-bench-"))
            options["state"] = f"sqlite:///{state_dir}/state.db"
        backend: QueueBackend = from_url(url, **options)
        await backend.connect()
        try:
            if backend.shared:
                await backend.clear()
            yield backend
        finally:
            await backend.connect()  # Scheduler.stop() disconnected it; connect is idempotent
            drop = getattr(backend, "drop_everything", None)
            if drop is not None:  # a shared Redis: leave no benchmark keys behind
                await drop()
            from chronctl.backends.postgres import PostgresBackend

            if isinstance(backend, PostgresBackend):  # a shared database: drop the run's schema
                await backend.drop_schema()
            delete_layout = getattr(backend, "delete_layout", None)
            if delete_layout is not None:  # RabbitMQ: leave no queues behind
                await delete_layout()
            await backend.disconnect()


# -- statistics ----------------------------------------------------------------


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (q in 0..1)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def latency_summary(samples_s: Sequence[float]) -> dict[str, float]:
    """p50/p99/max/min in milliseconds."""
    values = sorted(samples_s)
    return {
        "n": len(values),
        "p50_ms": 1000 * percentile(values, 0.50),
        "p99_ms": 1000 * percentile(values, 0.99),
        "max_ms": 1000 * values[-1] if values else math.nan,
        "min_ms": 1000 * values[0] if values else math.nan,
    }


def aggregate(
    runs: list[dict[str, Any]], higher_is_better: Callable[[str], bool]
) -> dict[str, Any]:
    """Per numeric metric: the median and the best over repeated runs."""
    if not runs:
        return {}
    out: dict[str, Any] = {}
    for key, value in runs[0].items():
        if not isinstance(value, int | float) or isinstance(value, bool):
            out[key] = value
            continue
        values = [r[key] for r in runs if isinstance(r.get(key), int | float)]
        best = max(values) if higher_is_better(key) else min(values)
        out[key] = {"median": statistics.median(values), "best": best, "runs": values}
    return out


# -- the machine -----------------------------------------------------------------


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent,
            timeout=5,
            check=False,
        )
    except OSError:
        return None
    return out.stdout.strip() or None


def machine_info() -> dict[str, Any]:
    from chronctl import __version__

    return {
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "chronctl": __version__,
        "commit": _git_commit(),
        "loadavg_start": os.getloadavg(),
    }


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` from /proc (psutil is not a dependency)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def process_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return math.nan
