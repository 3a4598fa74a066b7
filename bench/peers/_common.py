"""The enqueuing side every system shares (no queue library imported here).

A system module (`bench/peers/<system>_peer.py`) defines its app, a task named
`task` whose body is `bench.body`'s (selected by BENCH_BODY), and `make_client()`;
its worker is the system's own command line, started by the harness
(`bench/systems.py`). `python -m bench.peers.client <system>_peer ROLE` is the
client: a separate process that enqueues through the library's public API,
configured by the environment the harness sets:

    BENCH_BACKEND   redis | sqlite | rabbitmq
    BENCH_URL       the server URL (Redis database 14, the run's RabbitMQ vhost) or SQLite path
    BENCH_NS        a name unique to the run: queue names, key prefixes, job ids
    BENCH_BODY      def | async | noop | hang (see bench/body.py)
    BENCH_MANIFEST  chronctl only: the manifest the worker runs

Roles, each printing one JSON line for the harness:
- `enqueue --n N`: N tasks, the fastest way the library offers (a bulk call
  where it has one); `seconds` is timed after imports and connecting.
- `send --n N --rate R`: W2. One warm-up task, wait until the worker ran it
  (the signal), idle IDLE_S, then N tasks at R per second, one call each, each
  carrying time.time() taken just before the call.
- `schedule --n N --ahead LO HI`: W3. Warm-up as `send`, then N tasks due
  uniformly LO..HI seconds ahead, one call each, each carrying its due time.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

BACKEND = os.environ.get("BENCH_BACKEND", "redis")
URL = os.environ.get("BENCH_URL", "redis://127.0.0.1:6379/14")
NS = os.environ.get("BENCH_NS", "chronctlbench")
BODY = os.environ.get("BENCH_BODY", "def")
WARMUP = -1.0  # a task's ref meaning "the worker is up", not a sample
IDLE_S = 0.5  # the worker is idle, waiting for work, before the first W2/W3 task
WARMUP_TIMEOUT = 120.0


class Client(Protocol):
    """A system's enqueuing side: `schedule_one` is None where W3 is not supported."""

    def enqueue(self, n: int) -> None: ...
    def send_one(self, ref: float) -> None: ...
    def schedule_one(self, due: float) -> None: ...
    def close(self) -> None: ...


class Plain:
    """A Client made of module functions (systems with a sync API)."""

    def __init__(
        self,
        enqueue: Callable[[int], Any],
        send_one: Callable[[float], Any],
        schedule_one: Callable[[float], Any],
        close: Callable[[], Any] | None = None,
    ) -> None:
        self.enqueue, self.send_one, self.schedule_one = enqueue, send_one, schedule_one  # type: ignore[method-assign,assignment]
        self._close = close

    def close(self) -> None:
        if self._close is not None:
            self._close()


def _signal() -> Any:
    from bench.body import Signal

    path = Path(os.environ.get("BENCH_SIGNAL_FILE", "/nonexistent"))
    return Signal(BODY, NS, os.environ.get("BENCH_SIGNAL_URL", ""), path)


def warm_up(client: Client) -> None:
    """One task, then block until the worker ran it: it is up and consuming."""
    client.send_one(WARMUP)
    signal = _signal()
    deadline = time.monotonic() + WARMUP_TIMEOUT
    while signal.count() < 1:
        if time.monotonic() > deadline:
            raise SystemExit(f"the worker did not run the warm-up task in {WARMUP_TIMEOUT:.0f} s")
        time.sleep(0.002)
    if signal.redis is not None:
        signal.redis.close()
    time.sleep(IDLE_S)


def paced(n: int, rate: float, send: Callable[[float], Any]) -> float:
    """send(time.time()) n times at `rate` per second; the seconds it took."""
    start = time.perf_counter()
    for i in range(n):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        send(time.time())
    return time.perf_counter() - start


def scheduled(n: int, ahead: tuple[float, float], schedule: Callable[[float], Any]) -> float:
    rng = random.Random(7)
    start = time.perf_counter()
    for _ in range(n):
        schedule(time.time() + rng.uniform(*ahead))
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    """`python -m bench.peers.client MODULE ROLE ...`: ROLE with MODULE's client.

    The module is imported by its name (never run as `__main__`), so its tasks are
    registered under the names its worker knows them by (Huey uses module paths).
    """
    parser = argparse.ArgumentParser()
    parser.add_argument("module", help="a module under bench.peers, e.g. huey_peer")
    parser.add_argument("role", choices=["enqueue", "send", "schedule"])
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--ahead", type=float, nargs=2, default=(2.0, 7.0))
    ns = parser.parse_args(argv)
    import importlib

    client: Client = importlib.import_module(f"bench.peers.{ns.module}").make_client()
    try:
        if ns.role == "enqueue":
            t0 = time.perf_counter()
            client.enqueue(ns.n)
            out = {"seconds": time.perf_counter() - t0}
        elif ns.role == "send":
            warm_up(client)
            out = {"seconds": paced(ns.n, ns.rate, client.send_one)}
        else:
            warm_up(client)
            out = {"seconds": scheduled(ns.n, tuple(ns.ahead), client.schedule_one)}  # type: ignore[arg-type]
    finally:
        client.close()
    print(json.dumps(out), flush=True)
    sys.stdout.flush()
