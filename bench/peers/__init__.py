"""`python -m bench --peers`: W1 and W2 for other Python task queues, same machine, same run.

Why: a figure for chronctl alone says little; the same workloads run by Huey,
Dramatiq, arq, RQ and Celery on the same servers minutes apart say whether
chronctl is ahead. The peers come from the optional `bench` extra
(`pip install -e ".[bench]"`); a peer whose library is missing or whose server
is unreachable is reported as skipped, never failing the run.

Each peer is a module `bench/peers/<lib>_peer.py` run in subprocesses (see
`_common.py`): a client process enqueues, a worker process (the library's own
worker, one process) runs the tasks and writes the result file; this module
starts, times and stops them and deletes what they created: Redis keys that
carry the run's name (database 14, never FLUSHDB), a RabbitMQ vhost made for the
peers and deleted afterwards, SQLite files in a temporary directory.

How the figures compare with chronctl's (bench/workloads.py):
- W1: enqueue seconds are timed inside the client (after imports and connecting),
  processing from the first task's start to the N-th task's start in the worker:
  the worker process's start-up and imports are not counted (chronctl's include
  `Scheduler.start()`, a few ms). End to end = N / (enqueue + processing).
- W2: as chronctl's: time.time() on the task's first line minus the timestamp
  taken just before the enqueue call, the worker idle before the first probe.
  chronctl's W2 enqueues from the worker's own process; the peers' from a client
  process, as they are deployed.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import socket
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

from ..harness import AMQP_URL, REDIS_URL, aggregate, latency_summary

ROOT = Path(__file__).resolve().parents[2]  # the directory holding the bench package
WAIT_TIMEOUT = 600.0  # as workloads.DONE_TIMEOUT: a peer that has not finished is broken
STOP_TIMEOUT = 10.0


@dataclass(frozen=True)
class Peer:
    """One row of the peers table: a library on a backend, and how it is configured."""

    name: str
    module: str  # under bench.peers
    backend: str  # redis | sqlite | rabbitmq
    requires: tuple[str, ...]  # importable names the peer needs
    config: str


#: chronctl run by the peers' harness (worker and client in separate processes):
#: a reference row per backend, not a peer (no ratio, no verdict).
CHRONCTL_SPLIT = "chronctl, 2 processes"

PEERS: list[Peer] = [
    *(
        Peer(
            CHRONCTL_SPLIT,
            "chronctl_peer",
            backend,
            (),
            "Scheduler(workers=8) in a worker process, enqueues from a client process",
        )
        for backend in ("redis", "sqlite", "rabbitmq")
    ),
    Peer(
        "Huey", "huey_peer", "redis", ("huey", "redis"), "RedisHuey, 1 consumer process, 8 threads"
    ),
    Peer(
        "Dramatiq",
        "dramatiq_peer",
        "redis",
        ("dramatiq", "redis"),
        "RedisBroker, 1 worker process, 8 threads, default middleware",
    ),
    Peer(
        "arq", "arq_peer", "redis", ("arq",), "1 worker, defaults (max_jobs 10, poll_delay 0.5 s)"
    ),
    Peer(
        "RQ", "rq_peer", "redis", ("rq",), "1 SimpleWorker (no fork per job), enqueue_many for W1"
    ),
    Peer(
        "Celery",
        "celery_peer",
        "redis",
        ("celery", "redis"),
        "1 worker, threads pool x8, no result backend",
    ),
    Peer(
        "Huey",
        "huey_peer",
        "sqlite",
        ("huey",),
        "SqliteHuey, 1 consumer process, 8 threads, default polling",
    ),
    Peer(
        "Dramatiq",
        "dramatiq_peer",
        "rabbitmq",
        ("dramatiq", "pika"),
        "RabbitmqBroker, 1 worker process, 8 threads, default middleware",
    ),
    Peer(
        "Celery",
        "celery_peer",
        "rabbitmq",
        ("celery", "amqp"),
        "1 worker, solo pool (threads pool stalls on pyamqp), no result backend",
    ),
]

#: chronctl's backend label (a name or a URL scheme) -> the peers' backend.
BACKEND_OF_LABEL = {
    "redis": "redis",
    "rediss": "redis",
    "sqlite": "sqlite",
    "rabbitmq": "rabbitmq",
    "amqp": "rabbitmq",
    "amqps": "rabbitmq",
}


class PeerError(RuntimeError):
    """A peer process failed; the message carries the tail of its output."""


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# -- servers ----------------------------------------------------------------------


def _reachable(url: str, default_port: int) -> str | None:
    """None if a TCP connection to the URL's host:port opens, else the reason."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or default_port
    try:
        with socket.create_connection((host, port), timeout=2):
            return None
    except OSError as exc:
        return f"{host}:{port} unreachable ({exc.strerror or exc})"


def _rabbitmqctl(*args: str) -> None:
    result = subprocess.run(
        ["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=120, check=False
    )
    if result.returncode != 0:
        raise PeerError(f"rabbitmqctl {args[0]}: {(result.stderr or result.stdout).strip()}")


class Servers:
    """Connection URLs for the peers, with the RabbitMQ vhost made on first use."""

    def __init__(self) -> None:
        self.vhost: str | None = None
        self.vhost_error: str | None = None

    def url(self, backend: str, tmp: Path) -> str:
        if backend == "sqlite":
            return str(tmp / "peer.db")
        if backend == "redis":
            return REDIS_URL
        assert self.vhost is not None
        return urlunsplit(urlsplit(AMQP_URL)._replace(path=f"/{self.vhost}", query=""))

    def unavailable(self, backend: str) -> str | None:
        if backend == "sqlite":
            return None
        if backend == "redis":
            return _reachable(REDIS_URL, 6379)
        reason = _reachable(AMQP_URL, 5672)
        if reason or self.vhost or self.vhost_error:
            return reason or self.vhost_error
        # A vhost of our own: every queue and exchange a peer declares goes with it.
        vhost = f"chronctl-bench-peers-{uuid.uuid4().hex[:8]}"
        user = urlsplit(AMQP_URL).username or "guest"
        try:
            _rabbitmqctl("add_vhost", vhost)
            self.vhost = vhost
            _rabbitmqctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")
        except (OSError, subprocess.SubprocessError, PeerError) as exc:
            self.vhost_error = f"cannot make a RabbitMQ vhost with rabbitmqctl: {exc}"
        return self.vhost_error

    def close(self) -> None:
        if self.vhost is not None:
            with contextlib.suppress(OSError, subprocess.SubprocessError, PeerError):
                _rabbitmqctl("delete_vhost", self.vhost)
            self.vhost = None


def _drop_redis_keys(ns: str) -> None:
    """Delete the keys a peer run created in database 14: every one carries `ns`,
    except RQ's registries of all workers and queues, whose members do, and RQ's
    `rq:clean_groups` lock (a few minutes' TTL)."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
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


# -- one run ------------------------------------------------------------------------


def _env(peer: Peer, url: str, ns: str, out: Path, n: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        BENCH_PEER_BACKEND=peer.backend,
        BENCH_PEER_URL=url,
        BENCH_PEER_NS=ns,
        BENCH_PEER_OUT=str(out),
        BENCH_PEER_N=str(n),
    )
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def _argv(peer: Peer, *args: str) -> list[str]:
    return [sys.executable, "-m", f"bench.peers.{peer.module}", *args]


def _client(peer: Peer, env: dict[str, str], timeout: float, *args: str) -> dict[str, Any]:
    """Run a client role to completion; its last stdout line is JSON."""
    result = subprocess.run(
        _argv(peer, *args),
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        raise PeerError(
            f"{peer.name} {args[0]} exited {result.returncode}: "
            f"{(result.stderr or result.stdout)[-1500:]}"
        )
    return dict(json.loads(lines[-1]))


@contextlib.contextmanager
def _worker(peer: Peer, env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """The peer's worker in its own session, stopped (SIGTERM, then SIGKILL) on exit,
    with any pool children it forked."""
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            _argv(peer, "worker"),
            env=env,
            cwd=ROOT,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield proc
    finally:
        for sig, wait in ((signal.SIGTERM, STOP_TIMEOUT), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue


def _wait_result(proc: subprocess.Popen[bytes], out: Path, log: Path) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT_TIMEOUT
    while not out.exists():
        if proc.poll() is not None:
            raise PeerError(f"worker exited {proc.returncode}: {log.read_text()[-1500:]}")
        if time.monotonic() > deadline:
            raise PeerError(
                f"worker did not finish in {WAIT_TIMEOUT:.0f} s: {log.read_text()[-1500:]}"
            )
        time.sleep(0.01)
    return dict(json.loads(out.read_text()))


def run_once(
    peer: Peer, workload: str, servers: Servers, *, n: int, rate: float, tmp_root: str | None
) -> dict[str, Any]:
    """One W1 or W2 run of one peer on fresh queues; everything it made is deleted."""
    ns = f"chronctlbench{uuid.uuid4().hex[:10]}"  # alphanumeric: Huey strips other chars
    with tempfile.TemporaryDirectory(prefix="chronctl-bench-peer-", dir=tmp_root) as tmp_s:
        tmp = Path(tmp_s)
        out, log = tmp / "result.json", tmp / "worker.log"
        env = _env(peer, servers.url(peer.backend, tmp), ns, out, n)
        try:
            if workload == "W1":
                enqueued = _client(peer, env, WAIT_TIMEOUT, "enqueue", "--n", str(n))
                with _worker(peer, env, log) as proc:
                    done = _wait_result(proc, out, log)
                enqueue_s = enqueued["seconds"]
                process_s = max(done["last"] - done["first"], 1e-9)
                return {
                    "n": n,
                    "enqueue_per_s": n / enqueue_s,
                    "process_per_s": n / process_s,
                    "end_to_end_per_s": n / (enqueue_s + process_s),
                }
            with _worker(peer, env, log) as proc:
                sent = _client(peer, env, WAIT_TIMEOUT, "send", "--n", str(n), "--rate", str(rate))
                done = _wait_result(proc, out, log)
            return {**latency_summary(done["samples"]), "sent_per_s": n / sent["seconds"]}
        finally:
            if peer.backend == "redis":
                _drop_redis_keys(ns)


def _run_retrying(peer: Peer, workload: str, servers: Servers, **kw: Any) -> dict[str, Any]:
    """run_once, tried a second time after a failure: on a shared machine another
    test suite may restart the broker under a run (a lost run is noise, not a
    result); a second failure is reported."""
    try:
        return run_once(peer, workload, servers, **kw)
    except (PeerError, subprocess.SubprocessError, OSError) as exc:
        _log(
            f"peer {peer.name} on {peer.backend} {workload} failed, trying once more: "
            f"{str(exc).splitlines()[-1] if str(exc) else exc!r}"
        )
        return run_once(peer, workload, servers, **kw)


# -- all peers ------------------------------------------------------------------------

_find_spec = importlib.util.find_spec  # a seam for the smoke test


def _missing(peer: Peer) -> str | None:
    absent = [m for m in peer.requires if _find_spec(m) is None]
    if absent:
        return f"{', '.join(absent)} not installed (pip install -e '.[bench]')"
    return None


def _higher(key: str) -> bool:
    return key.endswith("_per_s")


def run_peers(
    labels: list[str],
    chronctl: dict[str, Any],
    only: set[str],
    *,
    w1_tasks: int,
    w2_tasks: int,
    w2_rate: float,
    repeat: int,
    tmp_root: str | None = None,
) -> dict[str, Any]:
    """Every peer of every backend in `labels`, W1/W2 as in `only`, `repeat` runs each.

    Returns {"rows": [...], "verdicts": [...]}: one row per peer and backend with
    its config, per-workload aggregates (median, best, runs) or why it was
    skipped, and the chronctl/peer ratios against chronctl's figures in `chronctl`
    (its results by backend label).
    """
    workloads = [wl for wl in ("W1", "W2") if wl in only]
    label_of = {BACKEND_OF_LABEL[lb]: lb for lb in labels if lb in BACKEND_OF_LABEL}
    servers = Servers()
    rows: list[dict[str, Any]] = []
    try:
        for peer in PEERS:
            if peer.backend not in label_of:
                continue
            row: dict[str, Any] = {
                "peer": peer.name,
                "backend": peer.backend,
                "config": peer.config,
            }
            rows.append(row)
            reason = _missing(peer) or servers.unavailable(peer.backend)
            if reason is None and not workloads:
                reason = "neither W1 nor W2 selected (--only)"
            if reason is not None:
                row["skipped"] = reason
                _log(f"peer {peer.name} on {peer.backend}: skipped: {reason}")
                continue
            sizes = {"W1": w1_tasks, "W2": w2_tasks}
            for workload in workloads:
                runs = []
                try:
                    for i in range(repeat):
                        _log(f"peer {peer.name} on {peer.backend} {workload} run {i + 1}/{repeat}")
                        runs.append(
                            _run_retrying(
                                peer,
                                workload,
                                servers,
                                n=sizes[workload],
                                rate=w2_rate,
                                tmp_root=tmp_root,
                            )
                        )
                except (PeerError, subprocess.SubprocessError, OSError) as exc:
                    row[f"{workload}_error"] = str(exc)
                    _log(f"peer {peer.name} on {peer.backend} {workload} failed: {exc}")
                if runs:
                    row[workload] = aggregate(runs, _higher)
            if peer.name != CHRONCTL_SPLIT:
                row["ratios"] = ratios(chronctl.get(label_of[peer.backend], {}), row)
    finally:
        servers.close()
    return {"rows": rows, "verdicts": verdicts(rows, chronctl, label_of)}


def _median(results: dict[str, Any], workload: str, key: str) -> float | None:
    value = results.get(workload, {}).get(key)
    return value["median"] if isinstance(value, dict) else None


def ratios(chronctl: dict[str, Any], row: dict[str, Any]) -> dict[str, float | None]:
    """>1 means chronctl is better: throughput chronctl/peer, latency peer/chronctl."""
    out: dict[str, float | None] = {}
    for workload, key, chronctl_over_peer in (
        ("W1", "end_to_end_per_s", True),
        ("W1", "process_per_s", True),
        ("W2", "p50_ms", False),
        ("W2", "p99_ms", False),
    ):
        ours, theirs = _median(chronctl, workload, key), _median(row, workload, key)
        if ours is None or theirs is None or not ours or not theirs:
            out[f"{workload}_{key}"] = None
            continue
        out[f"{workload}_{key}"] = ours / theirs if chronctl_over_peer else theirs / ours
    return out


def verdicts(
    rows: list[dict[str, Any]], chronctl: dict[str, Any], label_of: dict[str, str]
) -> list[dict[str, Any]]:
    """Per backend and figure: is chronctl ahead of the best peer that ran?"""
    out = []
    for backend, label in label_of.items():
        for workload, key, higher in (("W1", "end_to_end_per_s", True), ("W2", "p99_ms", False)):
            ours = _median(chronctl.get(label, {}), workload, key)
            theirs = [
                (r["peer"], _median(r, workload, key)) for r in rows if r["backend"] == backend
            ]
            ran = [(p, v) for p, v in theirs if v is not None and p != CHRONCTL_SPLIT]
            if ours is None or not ran:
                continue
            best = max(ran, key=lambda pv: pv[1]) if higher else min(ran, key=lambda pv: pv[1])
            ahead = ours > best[1] if higher else ours < best[1]
            out.append(
                {
                    "backend": backend,
                    "workload": workload,
                    "metric": key,
                    "chronctl": ours,
                    "best_peer": best[0],
                    "best_peer_value": best[1],
                    "ahead": ahead,
                }
            )
    return out


# -- output ------------------------------------------------------------------------------


def _fmt(value: float | None, kind: str) -> str:
    if value is None:
        return "-"
    if kind == "rate":
        return f"{value:,.0f}"
    if kind == "ratio":
        return f"{value:.2f}x"
    return f"{value:.2f}" if value < 100 else f"{value:,.0f}"


def table(
    report: dict[str, Any], chronctl: dict[str, Any], labels: list[str]
) -> tuple[list[str], list[list[str]]]:
    """Headers and rows: chronctl first on each backend, then its peers."""
    headers = [
        "backend",
        "runner",
        "W1 end to end, tasks/s",
        "chronctl/peer",
        "W2 p99, ms",
        "peer/chronctl",
        "W2 p50, ms",
    ]
    rows: list[list[str]] = []
    for label in labels:
        backend = BACKEND_OF_LABEL.get(label)
        peer_rows = [r for r in report["rows"] if r["backend"] == backend]
        if not peer_rows:
            continue
        ours = chronctl.get(label, {})
        rows.append(
            [
                backend or label,
                "chronctl",
                _fmt(_median(ours, "W1", "end_to_end_per_s"), "rate"),
                "",
                _fmt(_median(ours, "W2", "p99_ms"), "ms"),
                "",
                _fmt(_median(ours, "W2", "p50_ms"), "ms"),
            ]
        )
        for r in peer_rows:
            if "skipped" in r:
                rows.append(["", r["peer"], f"skipped: {r['skipped']}", "", "", "", ""])
                continue
            ratio = r.get("ratios", {})
            rows.append(
                [
                    "",
                    r["peer"],
                    _fmt(_median(r, "W1", "end_to_end_per_s"), "rate")
                    if "W1_error" not in r
                    else "failed",
                    _fmt(ratio.get("W1_end_to_end_per_s"), "ratio"),
                    _fmt(_median(r, "W2", "p99_ms"), "ms") if "W2_error" not in r else "failed",
                    _fmt(ratio.get("W2_p99_ms"), "ratio"),
                    _fmt(_median(r, "W2", "p50_ms"), "ms"),
                ]
            )
    return headers, rows
