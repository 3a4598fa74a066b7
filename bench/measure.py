"""One measured run: one system, one backend, one workload, one body, one log level.

Every system goes through the same code here (chronctl included): a temporary
directory and a name unique to the run; the worker started as its own process
from its command line; the client (`python -m bench.peers.client <module> ROLE`) as
another; completion read from `bench.body`'s signal, outside both; then the
worker stopped (SIGTERM to its process group, SIGKILL after STOP_TIMEOUT) and
everything the run created deleted.

Times (wall clock, `time.time()`, one machine):
- W1: the client enqueues N tasks with no worker running (enqueue/s is timed in
  the client, after imports and connecting). Then the worker is spawned (t0):
  start-up = first task's start - t0; processing = N / (when the harness saw N
  tasks done - first task's start); end to end = N / (that - t0), start-up included.
- W2: worker up (a warm-up task ran), idle 0.5 s, N tasks at RATE/s, one call
  each from the client: latency = start - timestamp taken just before the call.
- W3: worker up, N tasks due AHEAD s from now (one call each): start - due time.
- W4: the client enqueues PENDING tasks, then W1's processing rate for the first
  N of them.
- MEM: the client enqueues 100 tasks (schemas, keys), the store is measured,
  then N more, measured again: bytes per pending task = growth / N. Redis: INFO
  `used_memory` delta and the sum of MEMORY USAGE over the run's keys (the latter
  is not disturbed by other clients of a shared server); SQLite: the file after a
  TRUNCATE checkpoint. No worker runs.

A run that passes its time limit raises `Failed("... time limit ...")` at once:
every wait below checks the deadline.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .body import ENTRYPOINTS, Signal
from .harness import AMQP_URL, POSTGRES_URL, REDIS_URL, SIGNAL_URL, latency_summary
from .systems import Context, System

ROOT = Path(__file__).resolve().parents[1]  # the directory holding the bench package
STOP_TIMEOUT = 10.0
POLL_S = 0.005  # how often the harness reads the signal
MEM_WARM = 100  # tasks enqueued before the first MEM measurement


class Failed(RuntimeError):
    """A run failed or passed its time limit; the message says which and why."""


@dataclass(frozen=True)
class Spec:
    """What to run."""

    system: System
    backend: str
    workload: str
    body: str
    quiet: bool
    python: str
    n: int
    limit: float
    rate: float = 200.0
    ahead: tuple[float, float] = (2.0, 7.0)
    pending: int = 0


class Deadline:
    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.at = time.monotonic() + spec.limit

    def left(self) -> float:
        left = self.at - time.monotonic()
        if left <= 0:
            raise Failed(f"{self.spec.workload} passed its time limit of {self.spec.limit:.0f} s")
        return left


# -- servers ------------------------------------------------------------------------


def _rabbitmqctl(*args: str, timeout: float = 120) -> str:
    result = subprocess.run(
        ["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        raise Failed(f"rabbitmqctl {args[0]}: {(result.stderr or result.stdout).strip()}")
    return result.stdout


class Servers:
    """The RabbitMQ vhost the bench makes on first use (every queue and exchange
    any system declares lives there and goes with it at the end)."""

    def __init__(self) -> None:
        self.vhost: str | None = None
        self.vhost_error: str | None = None

    def amqp_url(self) -> str:
        self.make_vhost()
        if self.vhost is None:
            raise Failed(self.vhost_error or "no RabbitMQ vhost")
        return urlunsplit(urlsplit(AMQP_URL)._replace(path=f"/{self.vhost}", query=""))

    def make_vhost(self) -> str | None:
        if self.vhost or self.vhost_error:
            return self.vhost_error
        vhost = f"chronctl-bench-{uuid.uuid4().hex[:8]}"
        user = urlsplit(AMQP_URL).username or "guest"
        try:
            _rabbitmqctl("add_vhost", vhost)
            self.vhost = vhost
            _rabbitmqctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")
        except (OSError, subprocess.SubprocessError, Failed) as exc:
            self.vhost_error = f"cannot make a RabbitMQ vhost with rabbitmqctl: {exc}"
        return self.vhost_error

    def drop_queues(self, ns: str) -> None:
        """Delete the run's queues (their messages would hold broker memory)."""
        if self.vhost is None:
            return
        names = [
            q
            for q in _rabbitmqctl("list_queues", "-p", self.vhost, "name", timeout=60).split()
            if ns in q
        ]
        if not names:
            return
        import pika

        conn = pika.BlockingConnection(pika.URLParameters(self.amqp_url()))
        try:
            channel = conn.channel()
            for name in names:
                channel.queue_delete(name)
        finally:
            conn.close()

    def close(self) -> None:
        if self.vhost is not None:
            with contextlib.suppress(OSError, subprocess.SubprocessError, Failed):
                _rabbitmqctl("delete_vhost", self.vhost)
            self.vhost = None


def drop_redis_keys(ns: str, url: str = REDIS_URL) -> None:
    """Delete the keys a run created: every one carries `ns`, except RQ's registries
    of all workers and queues, whose members do, and RQ's `rq:clean_groups` lock."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"*{ns}*", count=1000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start : start + 1000])
        for shared in ("rq:workers", "rq:queues"):
            members = [m for m in client.smembers(shared) if ns.encode() in m]
            if members:
                client.srem(shared, *members)
            if not client.scard(shared):
                client.delete(shared)
        client.delete("rq:clean_groups")
    finally:
        client.close()


def _postgres(ns: str, sql: str) -> Any:
    """One statement on the bench database, `{ns}` being the run's schema."""
    import asyncio

    import asyncpg

    from chronctl.backends.postgres import parse_postgres_url

    async def go() -> Any:
        conn = await asyncpg.connect(parse_postgres_url(POSTGRES_URL)[0])
        try:
            return await conn.fetchval(sql.replace("{ns}", ns))
        finally:
            await conn.close()

    return asyncio.run(go())


def drop_postgres_schema(ns: str) -> None:
    _postgres(ns, 'DROP SCHEMA IF EXISTS "{ns}" CASCADE')


def _postgres_size(ns: str) -> int:
    """Bytes of every table of the run's schema, indexes and TOAST included."""
    return int(
        _postgres(
            ns,
            "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = '{ns}' AND c.relkind = 'r'",
        )
    )


# -- one run ------------------------------------------------------------------------


def _queue_url(spec: Spec, tmp: Path, ns: str, servers: Servers) -> str:
    chronctl = spec.system.key == "chronctl"
    if spec.backend == "sqlite":
        return f"sqlite:///{tmp}/queue.db" if chronctl else str(tmp / "queue.db")
    if spec.backend == "redis":
        return f"{REDIS_URL}?prefix={ns}" if chronctl else REDIS_URL
    if spec.backend == "postgres":  # `ns` is alphanumeric: a valid schema name
        return f"{POSTGRES_URL}?schema={ns}"
    url = servers.amqp_url()
    return f"{url}?queue_name={ns}&exchange_name={ns}" if chronctl else url


def write_manifest(tmp: Path, url: str, body: str) -> Path:
    """The manifest a chronctl user would write: the backend and one job, defaults
    for everything else."""
    path = tmp / "jobs.toml"
    path.write_text(
        "[scheduler]\n"
        f"backend = {json.dumps(url)}\n"
        f"pythonpath = [{json.dumps(str(ROOT))}]\n\n"
        "[jobs.task]\n"
        f"entrypoint = {json.dumps(ENTRYPOINTS[body])}\n"
    )
    return path


def _env(spec: Spec, ctx: Context, tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        BENCH_BACKEND=spec.backend,
        BENCH_URL=ctx.url,
        BENCH_NS=ctx.ns,
        BENCH_BODY=spec.body,
        BENCH_SIGNAL_URL=SIGNAL_URL,
        BENCH_SIGNAL_FILE=str(tmp / "signal.bin"),
        BENCH_MANIFEST=str(ctx.manifest),
        PYTHONUNBUFFERED="1",
    )
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def _tail(path: Path, chars: int = 1500) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def _stop(proc: subprocess.Popen[bytes]) -> None:
    for sig, wait in ((signal.SIGTERM, STOP_TIMEOUT), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _kill(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


class Run:
    """The processes and files of one run."""

    def __init__(self, spec: Spec, tmp: Path, servers: Servers) -> None:
        self.spec, self.tmp = spec, tmp
        self.ns = f"cb{uuid.uuid4().hex[:10]}"  # alphanumeric: Huey strips other chars
        url = _queue_url(spec, tmp, self.ns, servers)
        manifest = write_manifest(tmp, url, spec.body)
        self.ctx = Context(spec.python, spec.backend, url, self.ns, manifest)
        self.env = _env(spec, self.ctx, tmp)
        self.signal = Signal(spec.body, self.ns, SIGNAL_URL, tmp / "signal.bin")
        self.deadline = Deadline(spec)
        self.worker_log = tmp / "worker.log"

    def client(self, role: str, *args: str) -> dict[str, Any]:
        """Run the client role to completion within the deadline; its last line is JSON."""
        argv = [self.spec.python, "-m", "bench.peers.client", self.spec.system.module, role]
        argv += args
        out_path, err_path = self.tmp / f"client-{role}.out", self.tmp / f"client-{role}.err"
        with out_path.open("wb") as out, err_path.open("wb") as err:
            proc = subprocess.Popen(
                argv, env=self.env, cwd=self.tmp, stdout=out, stderr=err, start_new_session=True
            )
        try:
            proc.wait(self.deadline.left())
        except subprocess.TimeoutExpired:
            _kill(proc)
            self.deadline.left()  # raises Failed
        lines = out_path.read_text().strip().splitlines()
        if proc.returncode != 0 or not lines:
            raise Failed(f"client {role} exited {proc.returncode}: {_tail(err_path)}")
        return dict(json.loads(lines[-1]))

    @contextlib.contextmanager
    def worker(self) -> Iterator[subprocess.Popen[bytes]]:
        argv = self.spec.system.worker(self.ctx, self.spec.quiet)
        with self.worker_log.open("wb") as log:
            proc = subprocess.Popen(
                argv,
                env=self.env,
                cwd=self.tmp,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            yield proc
        except BaseException:
            _kill(proc)  # a failed run: no graceful stop waiting on a hung task
            raise
        else:
            _stop(proc)

    def wait_count(self, n: int, proc: subprocess.Popen[bytes] | None) -> float:
        """Block until `n` tasks have started (and signalled); when it was seen."""
        while self.signal.count() < n:
            if proc is not None and proc.poll() is not None:
                raise Failed(f"worker exited {proc.returncode}: {_tail(self.worker_log)}")
            try:
                self.deadline.left()
            except Failed as exc:
                raise Failed(
                    f"{exc} ({self.signal.count()} of {n} tasks done); "
                    f"worker log: {_tail(self.worker_log, 600)}"
                ) from None
            time.sleep(POLL_S)
        return time.time()

    def samples(self) -> list[float]:
        return [started - ref for started, ref in self.signal.records() if ref > 0]


def _w1(run: Run, n: int) -> dict[str, Any]:
    enqueued = run.client("enqueue", "--n", str(n))
    t0 = time.time()
    with run.worker() as proc:
        done = run.wait_count(n, proc)
    first = min(started for started, _ in run.signal.records())
    return {
        "n": n,
        "enqueue_per_s": n / enqueued["seconds"],
        "startup_s": first - t0,
        "process_per_s": n / max(done - first, 1e-9),
        "end_to_end_per_s": n / (done - t0),
    }


def _latency(run: Run, role: str, *args: str) -> dict[str, Any]:
    n = run.spec.n
    with run.worker() as proc:
        sent = run.client(role, "--n", str(n), *args)
        run.wait_count(n + 1, proc)  # and the warm-up task
    return {**latency_summary(run.samples()), "sent_per_s": n / max(sent["seconds"], 1e-9)}


def _w4(run: Run) -> dict[str, Any]:
    spec = run.spec
    enqueued = run.client("enqueue", "--n", str(spec.pending))
    t0 = time.time()
    with run.worker() as proc:
        done = run.wait_count(spec.n, proc)
    first = min(started for started, _ in run.signal.records())
    return {
        "pending": spec.pending,
        "n": spec.n,
        "prefill_per_s": spec.pending / enqueued["seconds"],
        "startup_s": first - t0,
        "process_per_s": spec.n / max(done - first, 1e-9),
    }


def _redis_memory(ns: str) -> tuple[int, int]:
    """(INFO used_memory, sum of MEMORY USAGE over the run's keys) of the bench database."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        used = int(client.info("memory")["used_memory"])
        keys = 0
        for key in client.scan_iter(match=f"*{ns}*", count=1000):
            keys += int(client.memory_usage(key, samples=0) or 0)
        return used, keys
    finally:
        client.close()


def _sqlite_size(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        db.close()
    return path.stat().st_size + sum(
        p.stat().st_size for p in (path.with_name(path.name + "-wal"),) if p.exists()
    )


def _mem(run: Run) -> dict[str, Any]:
    n, backend = run.spec.n, run.spec.backend
    if backend == "rabbitmq":
        raise Failed("MEM is measured on Redis, SQLite and PostgreSQL only")
    run.client("enqueue", "--n", str(MEM_WARM))
    if backend == "postgres":
        size0 = _postgres_size(run.ns)
        run.client("enqueue", "--n", str(n))
        return {"n": n, "bytes_per_pending": (_postgres_size(run.ns) - size0) / n}
    if backend == "redis":
        used0, keys0 = _redis_memory(run.ns)
        run.client("enqueue", "--n", str(n))
        used1, keys1 = _redis_memory(run.ns)
        return {
            "n": n,
            "bytes_per_pending": (keys1 - keys0) / n,
            "used_memory_bytes_per_pending": (used1 - used0) / n,
        }
    path = run.tmp / "queue.db"
    size0 = _sqlite_size(path)
    run.client("enqueue", "--n", str(n))
    return {"n": n, "bytes_per_pending": (_sqlite_size(path) - size0) / n}


def run_once(spec: Spec, servers: Servers, tmp_root: str | None = None) -> dict[str, Any]:
    """One run on fresh queues and keys; everything it made is deleted."""
    with tempfile.TemporaryDirectory(prefix="chronctl-bench-", dir=tmp_root) as tmp_s:
        run = Run(spec, Path(tmp_s), servers)
        try:
            if spec.workload == "W1":
                return _w1(run, spec.n)
            if spec.workload == "W2":
                return _latency(run, "send", "--rate", str(spec.rate))
            if spec.workload == "W3":
                return _latency(run, "schedule", "--ahead", *map(str, spec.ahead))
            if spec.workload == "W4":
                return _w4(run)
            if spec.workload == "MEM":
                return _mem(run)
            raise Failed(f"unknown workload {spec.workload}")
        finally:
            _cleanup(run, servers)


def _cleanup(run: Run, servers: Servers) -> None:
    with contextlib.suppress(Exception):
        run.signal.close()
    try:
        if run.spec.backend == "redis":
            drop_redis_keys(run.ns)
        elif run.spec.backend == "rabbitmq":
            servers.drop_queues(run.ns)
        elif run.spec.backend == "postgres":
            drop_postgres_schema(run.ns)
    except Exception as exc:  # a leftover key is not worth losing the figure over
        print(f"bench: cleanup of {run.ns} failed: {exc}", file=sys.stderr)
