"""What every peer's worker and client processes share (no peer library imported here).

A peer module (`bench/peers/<lib>_peer.py`) is run as `python -m bench.peers.<lib>_peer
ROLE`, configured by environment variables that the orchestrator sets:

    BENCH_PEER_BACKEND  redis | sqlite | rabbitmq
    BENCH_PEER_URL      the server URL (Redis database 14, a RabbitMQ vhost) or SQLite path
    BENCH_PEER_NS       a name unique to the run: queue names, key prefixes, job ids
    BENCH_PEER_OUT      the result file the worker writes when it has seen N tasks
    BENCH_PEER_N        how many tasks the worker waits for

Environment rather than arguments because Celery's and Huey's workers import the
task module themselves (and may fork): every process must build the same app.

Roles: `worker` (runs the library's worker until the orchestrator stops it),
`enqueue` (W1: N no-op tasks, the fastest way the library offers, then prints the
seconds it took as JSON), `send` (W2: one warm-up probe, wait until the worker
ran it, idle 0.5 s, then N probes at RATE per second, each carrying time.time()).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

BACKEND = os.environ.get("BENCH_PEER_BACKEND", "redis")
URL = os.environ.get("BENCH_PEER_URL", "redis://127.0.0.1:6379/14")
NS = os.environ.get("BENCH_PEER_NS", "chronctlbenchpeer")
OUT = Path(os.environ.get("BENCH_PEER_OUT", "/dev/null"))
N = int(os.environ.get("BENCH_PEER_N", "0"))
WARMUP = -1.0  # a probe timestamp meaning "tell the sender you are up", not a sample
IDLE_S = 0.5  # as chronctl's W2: the worker is idle, waiting for work, before the first probe


def ready_path(out: Path = OUT) -> Path:
    return out.with_name(out.name + ".ready")


class Recorder:
    """Counts task starts in the worker and writes the result once N have been seen.

    The task body calls `record()` first thing: time.time() there minus the
    enqueue timestamp is the start latency, exactly as chronctl's W2 probe
    measures it. Thread-safe (Huey, Dramatiq and Celery run tasks on threads).
    The file is written by the process that ran the N-th task, so it also works
    when a pool runs tasks outside the worker's main process.
    """

    def __init__(self, out: Path, n: int) -> None:
        self.out, self.n = out, n
        self.lock = threading.Lock()
        self.count = 0
        self.first: float | None = None
        self.samples: list[float] = []

    def record(self, enqueued: float | None = None) -> None:
        now = time.time()
        if enqueued == WARMUP:
            ready_path(self.out).write_text(str(now))
            return
        with self.lock:
            if self.first is None:
                self.first = now
            if enqueued:
                self.samples.append(now - enqueued)
            self.count += 1
            if self.count != self.n:
                return
            result = {
                "n": self.count,
                "first": self.first,
                "last": time.time(),
                "samples": self.samples,
                "pid": os.getpid(),
            }
        tmp = self.out.with_name(self.out.name + ".tmp")
        tmp.write_text(json.dumps(result))
        os.replace(tmp, self.out)  # the orchestrator never sees a half-written file


RECORDER = Recorder(OUT, N)


def wait_ready(timeout: float = 60.0) -> None:
    """Block until the worker has run the warm-up probe (it is up and consuming)."""
    deadline = time.monotonic() + timeout
    path = ready_path()
    while not path.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"the worker did not run the warm-up probe within {timeout:.0f} s")
        time.sleep(0.005)


def paced(n: int, rate: float, send: Callable[[float], Any]) -> float:
    """Call send(time.time()) n times at `rate` per second; returns the seconds taken."""
    start = time.perf_counter()
    for i in range(n):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        send(time.time())
    return time.perf_counter() - start


def main(
    worker: Callable[[], Any],
    enqueue: Callable[[int], Any],
    send_one: Callable[[float], Any],
    *,
    setup: Callable[[], Any] | None = None,
) -> None:
    """The command line of a peer module: dispatch ROLE to the module's functions.

    `enqueue(n)` puts n no-op tasks on the queue; `send_one(ts)` enqueues one
    probe carrying ts; `setup()` (optional) runs once before a client role and
    may return a closer. Client roles print one JSON line for the orchestrator.
    """
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["worker", "enqueue", "send"])
    parser.add_argument("--n", type=int, default=N)
    parser.add_argument("--rate", type=float, default=200.0)
    ns = parser.parse_args()
    if ns.role == "worker":
        worker()
        return
    closer = setup() if setup is not None else None
    try:
        if ns.role == "enqueue":
            t0 = time.perf_counter()
            enqueue(ns.n)
            out = {"seconds": time.perf_counter() - t0}
        else:
            send_one(WARMUP)
            wait_ready()
            time.sleep(IDLE_S)
            out = {"seconds": paced(ns.n, ns.rate, send_one)}
    finally:
        if callable(closer):
            closer()
    print(json.dumps(out), flush=True)
    sys.stdout.flush()


class Client(Protocol):
    """A peer's enqueuing side when it needs its own event loop and connection."""

    def enqueue(self, n: int) -> None: ...
    def send_one(self, ts: float) -> None: ...
    def close(self) -> None: ...


def main_with_client(worker: Callable[[], Any], make_client: Callable[[], Client]) -> None:
    """`main` for a peer whose client roles share one object, made once per process."""
    made: list[Client] = []

    def setup() -> Callable[[], None]:
        made.append(make_client())
        return made[0].close

    main(worker, lambda n: made[0].enqueue(n), lambda ts: made[0].send_one(ts), setup=setup)
