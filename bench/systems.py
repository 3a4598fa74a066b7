"""The systems the bench runs, chronctl being one of them: how each worker is started.

Every system is run the same way by `bench/measure.py`: its worker is its own
command line, one process, started the way its documentation starts one
worker process; its client is `python -m bench.peers.client <module>` (a separate
process using the library's public API). Only the worker's argv differs.

`quiet` is the second log level the bench runs: each system's default, then
all quiet (no line per task, where the system has a switch for it).
"""

from __future__ import annotations

import functools
import importlib.util
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ALL_WORKLOADS = frozenset({"W1", "W2", "W3", "W4", "MEM"})


@dataclass(frozen=True)
class Context:
    """What a worker command needs to know about one run."""

    python: str  # the interpreter (its directory holds the console scripts)
    backend: str  # redis | sqlite | rabbitmq | postgres
    url: str  # the system's queue URL for this run
    ns: str  # the run's unique name
    manifest: Path  # chronctl only

    def script(self, name: str) -> str:
        """The console script installed beside the interpreter, else the one on PATH."""
        beside = Path(self.python).parent / name
        return str(beside) if beside.exists() else shutil.which(name) or name


@dataclass(frozen=True)
class System:
    key: str  # what --systems takes
    name: str  # what the tables show
    module: str  # bench.peers.<module>: the client (and the app the worker imports)
    backends: tuple[str, ...]
    requires: tuple[str, ...]  # importable names the system needs
    bodies: tuple[str, ...]  # bench.body bodies it can run
    worker: Callable[[Context, bool], list[str]]
    config: str
    workloads: frozenset[str] = field(default=ALL_WORKLOADS)
    python_option: str | None = None  # a separate interpreter, e.g. "arq"

    def supports(self, workload: str, body: str) -> str | None:
        """None, or why this system does not run `workload` with `body`."""
        if body not in self.bodies:
            kind = "async def" if body == "async" else body
            return f"{self.name} has no {kind} tasks"
        if workload not in self.workloads:
            return f"{self.name}: {workload} not supported by this harness"
        return None


def _chronctl(ctx: Context, quiet: bool) -> list[str]:
    return [ctx.script("chronctl"), *(["-q"] if quiet else []), "run", str(ctx.manifest)]


def _huey(ctx: Context, quiet: bool) -> list[str]:
    argv = [ctx.script("huey_consumer"), "bench.peers.huey_peer.huey", "-w", "8", "-k", "thread"]
    return [*argv, "-q"] if quiet else argv


def _dramatiq(ctx: Context, quiet: bool) -> list[str]:
    argv = [ctx.script("dramatiq"), "bench.peers.dramatiq_peer", "-p", "1", "-t", "8"]
    return [*argv, "--skip-logging"] if quiet else argv


def _celery(ctx: Context, quiet: bool) -> list[str]:
    argv = [ctx.script("celery"), "-A", "bench.peers.celery_peer"]
    argv += ["-q"] if quiet else []
    argv += ["worker", "-P", "threads", "-c", "8", "-Q", ctx.ns]
    return [*argv, "-l", "ERROR"] if quiet else argv


def _rq(ctx: Context, quiet: bool) -> list[str]:
    argv = [ctx.script("rq"), "worker", "-u", ctx.url, "-w", "rq.worker.SimpleWorker"]
    argv += ["-n", f"{ctx.ns}-worker", *(["-q"] if quiet else []), ctx.ns]
    return argv


def _arq(ctx: Context, quiet: bool) -> list[str]:
    if quiet:
        return [ctx.python, "-c", "from bench.peers.arq_peer import quiet_worker; quiet_worker()"]
    return [ctx.script("arq"), "bench.peers.arq_peer.WorkerSettings"]


def _pgqueuer(ctx: Context, quiet: bool) -> list[str]:
    argv = [ctx.script("pgq"), "--schema", ctx.ns, "run", "bench.peers.pgqueuer_peer:main"]
    # its least (2 x batch size); unlimited, the async def body overruns redis-py's pool
    argv += ["--max-concurrent-tasks", "20"]
    return [*argv, "--log-level", "WARNING"] if quiet else argv


def _procrastinate(ctx: Context, quiet: bool) -> list[str]:
    app = "--app=bench.peers.procrastinate_peer.app"
    argv = [ctx.script("procrastinate"), *(["--log-level", "error"] if quiet else []), app]
    return [*argv, "worker", "--concurrency", "8"]


SYSTEMS: list[System] = [
    System(
        "chronctl",
        "chronctl",
        "chronctl_peer",
        ("redis", "sqlite", "rabbitmq", "postgres"),
        (),
        ("def", "async", "noop", "hang"),
        _chronctl,
        "`chronctl run jobs.toml` (default settings: workers 8, prefetch 16); "
        "quiet: `chronctl -q run`; producer: Scheduler.enqueue_many / enqueue",
    ),
    System(
        "huey",
        "Huey",
        "huey_peer",
        ("redis", "sqlite"),
        ("huey",),
        ("def", "noop", "hang"),
        _huey,
        "`huey_consumer ... -w 8 -k thread` (RedisHuey; SqliteHuey polls, Huey's default "
        "backoff); quiet: `-q`; one call per enqueue",
    ),
    System(
        "dramatiq",
        "Dramatiq",
        "dramatiq_peer",
        ("redis", "rabbitmq"),
        ("dramatiq",),
        ("def", "async", "noop", "hang"),
        _dramatiq,
        "`dramatiq ... -p 1 -t 8`, default middleware (+ AsyncIO for async def); "
        "quiet: `--skip-logging`; one send() per task",
    ),
    System(
        "celery",
        "Celery",
        "celery_peer",
        ("redis", "rabbitmq"),
        ("celery",),
        ("def", "noop", "hang"),
        _celery,
        "`celery worker -P threads -c 8`, no result backend; quiet: `-q ... -l ERROR`; "
        "apply_async on one producer",
    ),
    System(
        "rq",
        "RQ",
        "rq_peer",
        ("redis",),
        ("rq",),
        ("def", "noop", "hang"),
        _rq,
        "`rq worker -w rq.worker.SimpleWorker`; quiet: `-q`; Queue.enqueue_many for prefill",
        workloads=frozenset({"W1", "W2", "W4", "MEM"}),
    ),
    System(
        "arq",
        "arq",
        "arq_peer",
        ("redis",),
        ("arq",),
        ("async",),
        _arq,
        "`arq ...WorkerSettings`, arq's defaults (max_jobs 10, poll_delay 0.5 s); "
        "quiet: its worker with logging at WARNING; 50 enqueue_job calls in flight",
        python_option="arq",
    ),
    System(
        "pgqueuer",
        "PGQueuer",
        "pgqueuer_peer",
        ("postgres",),
        ("pgqueuer", "asyncpg"),
        ("def", "async", "noop", "hang"),
        _pgqueuer,
        "`pgq run module:main --max-concurrent-tasks 20`, else PGQueuer's defaults (batch "
        "size 10, LISTEN/NOTIFY); async "
        "entrypoints only (`def` body via asyncio.to_thread); quiet: `--log-level WARNING`; "
        "Queries.enqueue with lists for prefill",
    ),
    System(
        "procrastinate",
        "Procrastinate",
        "procrastinate_peer",
        ("postgres",),
        ("procrastinate",),
        ("def", "async", "noop", "hang"),
        _procrastinate,
        "`procrastinate --app=... worker --concurrency 8` (LISTEN/NOTIFY); quiet: "
        "`--log-level error`; batch_defer_async for prefill",
    ),
]
BY_KEY = {s.key: s for s in SYSTEMS}


@functools.cache
def _importable(python: str, names: tuple[str, ...]) -> str | None:
    """None if `python` imports every name, else the missing ones."""
    if python == sys.executable:
        missing = [n for n in names if importlib.util.find_spec(n) is None]
    else:
        probe = (
            "import importlib.util, sys; print(' '.join("
            "n for n in sys.argv[1:] if importlib.util.find_spec(n) is None))"
        )
        try:
            out = subprocess.run(
                [python, "-c", probe, *names], capture_output=True, text=True, timeout=60
            )
        except (OSError, subprocess.SubprocessError) as exc:
            return f"cannot run {python}: {exc}"
        if out.returncode != 0:
            return f"{python} failed: {out.stderr.strip()[-200:]}"
        missing = out.stdout.split()
    return ", ".join(missing) or None


def missing(system: System, python: str, backend: str) -> str | None:
    """None, or why `system` cannot run here (a library not installed)."""
    needs = system.requires + {"redis": ("redis",), "rabbitmq": ("aio_pika", "pika")}.get(
        backend, ()
    )
    if system.key == "chronctl":
        needs = {"redis": ("redis",), "rabbitmq": ("aio_pika",), "postgres": ("asyncpg",)}.get(
            backend, ()
        )
    absent = _importable(python, needs)
    if absent is None:
        return None
    if system.python_option:
        return (
            f"{absent} not importable by {python} (arq needs redis-py < 6, current Celery "
            f"needs >= 6.4: pip install -e '.[bench-arq]' in a second venv, pass "
            f"--{system.python_option}-python)"
        )
    return f"{absent} not installed (pip install -e '.[bench]')"
