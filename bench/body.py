"""The task body every system runs, and the completion signal the harness reads.

Why one body: a comparison is fair only when every system runs the same work
and reports completion the same way, outside its own hooks. Each body records
`(started, ref)` where `started` is `time.time()` on its first line and `ref`
the timestamp the task carries (taken just before the enqueue call for W2,
the due time for W3, 0 otherwise). The harness polls the count and reads the
records at the end; no system's event or result machinery is involved.

- `redis_task` (`def`): one pipelined Redis round trip (INCR a counter and RPUSH
  the record) to the signal database, the "small I/O-bound job" a queue runs.
- `redis_atask` (`async def`): the same round trip with redis.asyncio.
- `noop` (`def`): no I/O but appending the 16-byte record to a file, the
  cheapest signal there is: what the queue itself costs per task.
- `hang`: never returns (checks that a workload past its limit is reported).

Configured by environment (workers of every system inherit it):
BENCH_BODY, BENCH_NS, BENCH_SIGNAL_URL, BENCH_SIGNAL_FILE. This module imports
only the standard library and redis-py, so any system's interpreter can load it.
"""

from __future__ import annotations

import asyncio
import os
import struct
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

RECORD = struct.Struct("<dd")  # started, ref
SIGNAL_URL = os.environ.get("BENCH_SIGNAL_URL", "redis://127.0.0.1:6379/13")
NS = os.environ.get("BENCH_NS", "chronctlbench")
SIGNAL_FILE = os.environ.get("BENCH_SIGNAL_FILE", "")
BODIES = ("def", "async", "noop", "hang")
#: Bodies whose record goes to Redis (the others append to BENCH_SIGNAL_FILE).
REDIS_BODIES = ("def", "async")

_lock = threading.Lock()
_sync: dict[int, Any] = {}  # pid -> redis.Redis (a forked child makes its own)
_async: dict[int, Any] = {}  # id(event loop) -> redis.asyncio.Redis
_fd: dict[int, int] = {}  # pid -> the signal file, opened O_APPEND


def count_key(ns: str = NS) -> str:
    return f"{ns}:count"


def records_key(ns: str = NS) -> str:
    return f"{ns}:records"


def _client() -> Any:
    pid = os.getpid()
    client = _sync.get(pid)
    if client is None:
        import redis

        with _lock:
            client = _sync.get(pid) or redis.Redis.from_url(SIGNAL_URL)
            _sync[pid] = client
    return client


def redis_task(ref: float = 0.0) -> None:
    started = time.time()
    pipe = _client().pipeline(transaction=False)
    pipe.incr(count_key())
    pipe.rpush(records_key(), RECORD.pack(started, ref))
    pipe.execute()


async def redis_atask(ref: float = 0.0) -> None:
    started = time.time()
    loop = id(asyncio.get_running_loop())
    client = _async.get(loop)
    if client is None:
        import redis.asyncio

        client = _async[loop] = redis.asyncio.Redis.from_url(SIGNAL_URL)
    pipe = client.pipeline(transaction=False)
    pipe.incr(count_key())
    pipe.rpush(records_key(), RECORD.pack(started, ref))
    await pipe.execute()


def noop(ref: float = 0.0) -> None:
    started = time.time()
    pid = os.getpid()
    fd = _fd.get(pid)
    if fd is None:
        fd = _fd[pid] = os.open(SIGNAL_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.write(fd, RECORD.pack(started, ref))  # one write: atomic with O_APPEND


def hang(ref: float = 0.0) -> None:
    threading.Event().wait()


#: body name -> (sync function or None, async function or None)
FUNCTIONS: dict[
    str, tuple[Callable[[float], None] | None, Callable[[float], Awaitable[None]] | None]
] = {
    "def": (redis_task, None),
    "async": (None, redis_atask),
    "noop": (noop, None),
    "hang": (hang, None),
}
#: body name -> the entrypoint a chronctl manifest names.
ENTRYPOINTS = {
    "def": "bench.body:redis_task",
    "async": "bench.body:redis_atask",
    "noop": "bench.body:noop",
    "hang": "bench.body:hang",
}


def sync_body() -> Callable[[float], None]:
    """The `def` body selected by BENCH_BODY (a peer's task wraps it)."""
    fn = FUNCTIONS[os.environ.get("BENCH_BODY", "def")][0]
    if fn is None:
        raise SystemExit(f"body {os.environ.get('BENCH_BODY')} is not a def")
    return fn


def async_body() -> Callable[[float], Awaitable[None]]:
    fn = FUNCTIONS[os.environ.get("BENCH_BODY", "async")][1]
    if fn is None:
        raise SystemExit(f"body {os.environ.get('BENCH_BODY')} is not an async def")
    return fn


# -- the harness's side -------------------------------------------------------------


class Signal:
    """What the harness reads: how many tasks have started, and their records."""

    def __init__(self, body: str, ns: str, signal_url: str, signal_file: Path) -> None:
        self.body, self.ns, self.file = body, ns, signal_file
        self.redis: Any = None
        if body in REDIS_BODIES:
            import redis

            self.redis = redis.Redis.from_url(signal_url)

    def count(self) -> int:
        if self.redis is not None:
            value = self.redis.get(count_key(self.ns))
            return int(value) if value else 0
        try:
            return self.file.stat().st_size // RECORD.size
        except FileNotFoundError:
            return 0

    def records(self) -> list[tuple[float, float]]:
        if self.redis is not None:
            raw = b"".join(self.redis.lrange(records_key(self.ns), 0, -1))
        else:
            raw = self.file.read_bytes() if self.file.exists() else b""
        return [RECORD.unpack_from(raw, i) for i in range(0, len(raw), RECORD.size)]

    def close(self) -> None:
        if self.redis is not None:
            self.redis.delete(count_key(self.ns), records_key(self.ns))
            self.redis.close()
