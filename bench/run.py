"""`python -m bench`: chronctl and its peers on the path users run, round by round.

    python -m bench --quick                                   # every system, small N (minutes)
    python -m bench                                           # the full run (about an hour)
    python -m bench --backends redis --systems chronctl,huey --only W1 --rounds 5
    python -m bench --library --backends memory,sqlite        # the in-process table
    python -m bench --summarize bench/results/<stamp>.jsonl   # tables of a finished or cut run

Every figure is appended to a JSON-lines file as soon as it is measured
(default bench/results/<stamp>.jsonl), so a run that hangs or is killed keeps
what it measured; a run past its time limit is recorded as failed and the
bench goes on. The summary (figures, per-round ratios, verdicts, targets) is
written beside it as <stamp>.summary.json and printed as Markdown tables.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

from . import measure, report
from .body import REDIS_BODIES
from .harness import AMQP_URL, BACKENDS, POSTGRES_URL, REDIS_URL, SIGNAL_URL, machine_info
from .systems import BY_KEY, SYSTEMS, System, missing

REAL_BACKENDS = ("sqlite", "redis", "rabbitmq", "postgres")
REAL_WORKLOADS = ("W1", "W2", "W3", "W4", "MEM", "W5", "W6")
LIBRARY_WORKLOADS = ("W1", "W2", "W3", "W4")
RESULTS_DIR = Path(__file__).parent / "results"


@dataclass(frozen=True)
class Sizes:
    w1_tasks: int = 20_000
    w2_tasks: int = 1_000
    w2_rate: float = 200.0
    w3_tasks: int = 500
    w3_ahead: tuple[float, float] = (2.0, 7.0)
    w4_pending: int = 1_000_000
    w4_tasks: int = 20_000
    mem_tasks: int = 100_000
    w5_jobs: int = 1_000
    w5_seconds: float = 60.0
    w6_repeat: int = 10


QUICK = Sizes(
    w1_tasks=1_000,
    w2_tasks=100,
    w3_tasks=30,
    w3_ahead=(0.5, 1.5),
    w4_pending=5_000,
    w4_tasks=1_000,
    mem_tasks=2_000,
    w5_jobs=50,
    w5_seconds=2.0,
    w6_repeat=2,
)


def default_limit(workload: str, s: Sizes) -> float:
    """Seconds a run may take before it is recorded as failed: generous for a slow
    system (200 tasks/s), far below the old 10 minutes for a hung one."""
    return {
        "W1": 60 + s.w1_tasks / 200,
        "W2": 60 + 2 * s.w2_tasks / s.w2_rate,
        "W3": 60 + s.w3_ahead[1] + s.w3_tasks / 50,
        "W4": 120 + s.w4_pending / 1_000 + s.w4_tasks / 200,
        "MEM": 60 + s.mem_tasks / 500,
    }[workload]


@dataclass(frozen=True)
class Cell:
    """One comparison: every system runs it once per round."""

    backend: str
    workload: str
    body: str
    log: str


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Sink:
    """The JSON-lines file: one record per measured (or skipped, or failed) run."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.records: list[dict[str, Any]] = []
        self._file: TextIO = path.open("w")

    def write(self, record: dict[str, Any]) -> None:
        now = datetime.now(UTC).isoformat(timespec="seconds")
        record = {"ts": now, "load1": round(os.getloadavg()[0], 2), **record}
        self.records.append(record)
        self._file.write(json.dumps(record, default=str) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


# -- availability ------------------------------------------------------------------


def _reachable(url: str, default_port: int) -> str | None:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or default_port
    try:
        with socket.create_connection((host, port), timeout=2):
            return None
    except OSError as exc:
        return f"{host}:{port} unreachable ({exc.strerror or exc})"


class Availability:
    """Why a system cannot run a cell here, or None (checked once, cached)."""

    def __init__(self, servers: measure.Servers, pythons: dict[str, str]) -> None:
        self.servers, self.pythons = servers, pythons
        self._server: dict[str, str | None] = {}

    def python(self, system: System) -> str:
        return self.pythons.get(system.python_option or "", sys.executable)

    def server(self, name: str) -> str | None:
        if name not in self._server:
            if name == "redis":
                self._server[name] = _reachable(REDIS_URL, 6379)
            elif name == "signal":
                reason = _reachable(SIGNAL_URL, 6379)
                self._server[name] = reason and f"the Redis signal database: {reason}"
            elif name == "rabbitmq":
                self._server[name] = _reachable(AMQP_URL, 5672) or self.servers.make_vhost()
            elif name == "postgres":
                self._server[name] = _reachable(POSTGRES_URL, 5432)
            else:
                self._server[name] = None
        return self._server[name]

    def why_not(self, system: System, cell: Cell) -> str | None:
        return (
            system.supports(cell.workload, cell.body)
            or self.server(cell.backend)
            or (self.server("signal") if cell.body in REDIS_BODIES else None)
            or missing(system, self.python(system), cell.backend)
        )


# -- the real path ------------------------------------------------------------------


def plan(ns: argparse.Namespace) -> list[Cell]:
    """W1 for every body and log level; W2 for every log level with the first body;
    W3, W4 and MEM with the first body at the default log level."""
    body = ns.bodies[0]
    cells = []
    for backend in ns.backends:
        for workload in ns.only:
            if workload == "W1":
                cells += [Cell(backend, "W1", b, lg) for b in ns.bodies for lg in ns.logs]
            elif workload == "W2":
                cells += [Cell(backend, "W2", body, lg) for lg in ns.logs]
            elif workload in ("W3", "W4", "MEM"):
                if workload == "MEM" and backend == "rabbitmq":
                    continue
                cells.append(Cell(backend, workload, body, ns.logs[0]))
    return cells


def _spec(cell: Cell, system: System, python: str, s: Sizes, limit: float | None) -> measure.Spec:
    n = {
        "W1": s.w1_tasks,
        "W2": s.w2_tasks,
        "W3": s.w3_tasks,
        "W4": s.w4_tasks,
        "MEM": s.mem_tasks,
    }[cell.workload]
    return measure.Spec(
        system=system,
        backend=cell.backend,
        workload=cell.workload,
        body=cell.body,
        quiet=cell.log == "quiet",
        python=python,
        n=n,
        limit=limit or default_limit(cell.workload, s),
        rate=s.w2_rate,
        ahead=s.w3_ahead,
        pending=s.w4_pending,
    )


def run_cell(
    cell: Cell,
    systems: list[System],
    avail: Availability,
    sink: Sink,
    ns: argparse.Namespace,
) -> None:
    base = {"mode": "real", **cell.__dict__}
    where = f"{cell.backend} {cell.workload} {cell.body} {cell.log}"
    ready = []
    for system in systems:
        if cell.backend not in system.backends:
            continue
        if cell.workload == "W4" and system.key != "chronctl" and not ns.w4_peers:
            continue  # a million single enqueues take a peer most of an hour: opt in
        reason = avail.why_not(system, cell)
        if reason:
            sink.write({**base, "system": system.name, "skipped": reason})
            _log(f"{where}: {system.name} skipped: {reason}")
        else:
            ready.append(system)
    for rnd in range(ns.rounds):
        # chronctl first in even rounds, last in odd ones: drift during a round cancels
        order = ready if rnd % 2 == 0 else ready[::-1]
        for system in order:
            spec = _spec(cell, system, avail.python(system), ns.sizes, ns.limit)
            label = f"{where} round {rnd + 1}/{ns.rounds}: {system.name}"
            t0 = time.monotonic()
            record: dict[str, Any] = {**base, "system": system.name, "round": rnd}
            try:
                record["result"] = measure.run_once(spec, avail.servers, ns.tmpdir)
                _log(f"{label}: {_brief(cell.workload, record['result'])}")
            except (measure.Failed, OSError, subprocess.SubprocessError, ValueError) as exc:
                record["error"] = str(exc) or repr(exc)
                _log(f"{label}: FAILED: {record['error'].splitlines()[0][:300]}")
            record["seconds"] = round(time.monotonic() - t0, 2)
            sink.write(record)


def _brief(workload: str, result: dict[str, Any]) -> str:
    keys = report.RATIO_METRICS.get(workload, ())
    return ", ".join(f"{k} {result[k]:,.2f}" for k in keys if k in result)


def run_cli_workloads(ns: argparse.Namespace, sink: Sink) -> None:
    """W5 (per backend) and W6: chronctl's own command line, no peers."""
    from . import cli_workloads as cw

    s: Sizes = ns.sizes
    if "W5" in ns.only:
        for backend in ns.backends:
            base = {"mode": "real", "backend": backend, "workload": "W5", "system": "chronctl"}
            try:
                with tempfile.TemporaryDirectory(prefix="chronctl-bench-", dir=ns.tmpdir) as tmp:
                    url = BACKENDS[backend](Path(tmp))
                    _log(f"{backend} W5 idle CPU, {s.w5_jobs} cron jobs, {s.w5_seconds:g} s")
                    result = cw.w5_idle_cpu(Path(tmp), url, jobs=s.w5_jobs, seconds=s.w5_seconds)
                sink.write({**base, "round": 0, "result": result})
            except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
                sink.write({**base, "error": str(exc)})
    if "W6" in ns.only:
        base = {"mode": "real", "backend": "cli", "workload": "W6", "system": "chronctl"}
        _log(f"W6 CLI start, {s.w6_repeat} runs per command")
        try:
            with tempfile.TemporaryDirectory(prefix="chronctl-bench-", dir=ns.tmpdir) as tmp:
                result = cw.w6_cli_start(Path(tmp), repeat=s.w6_repeat)
            sink.write({**base, "round": 0, "result": result})
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            sink.write({**base, "error": str(exc)})


# -- library, in-process ---------------------------------------------------------------


def run_library(ns: argparse.Namespace, sink: Sink) -> None:
    """The in-process workloads (bench/library.py), labelled apart: never a ratio."""
    from . import library as lib
    from .harness import choose_backends

    s: Sizes = ns.sizes
    runs: dict[str, Callable[[str], Any]] = {
        "W1": lambda url: lib.w1_throughput(url, n=s.w1_tasks, workers=8),
        "W2": lambda url: lib.w2_start_latency(url, n=s.w2_tasks, rate=s.w2_rate, workers=8),
        "W3": lambda url: lib.w3_schedule_accuracy(url, n=s.w3_tasks, ahead=s.w3_ahead, workers=8),
        "W4": lambda url: lib.w4_scale(url, pending=s.w4_pending, n=s.w4_tasks, workers=8),
    }
    for choice in choose_backends(",".join(ns.backends)):
        for workload in (w for w in LIBRARY_WORKLOADS if w in ns.only):
            limit = ns.limit or default_limit(workload, s)
            for rnd in range(ns.rounds):
                base = {"mode": "library", "backend": choice.label, "workload": workload}
                with tempfile.TemporaryDirectory(prefix="chronctl-bench-", dir=ns.tmpdir) as tmp:
                    url = choice.url(Path(tmp))
                    _log(f"library {choice.label} {workload} run {rnd + 1}/{ns.rounds}")
                    try:
                        result = asyncio.run(asyncio.wait_for(runs[workload](url), limit))
                        sink.write({**base, "round": rnd, "result": result})
                    except (TimeoutError, OSError, RuntimeError) as exc:
                        sink.write({**base, "round": rnd, "error": str(exc) or repr(exc)})


# -- main --------------------------------------------------------------------------


def _csv(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    p.add_argument(
        "--backends",
        default=",".join(REAL_BACKENDS),
        help="sqlite, redis, rabbitmq, postgres (--library: also memory or a URL)",
    )
    p.add_argument(
        "--systems",
        default=",".join(s.key for s in SYSTEMS),
        help="chronctl and peers: " + ", ".join(BY_KEY),
    )
    p.add_argument(
        "--peers",
        action="store_true",
        help="chronctl and every peer (what --systems defaults to; overrides --systems)",
    )
    p.add_argument(
        "--only", default=",".join(REAL_WORKLOADS), help="workloads: W1,W2,W3,W4,MEM,W5,W6"
    )
    p.add_argument(
        "--bodies",
        default="def,async,noop",
        help="task bodies for W1 (the first is used for W2-W4): def, async, noop, hang",
    )
    p.add_argument(
        "--logs",
        default="default,quiet",
        help="log levels: default, quiet (W1, W2; the first for W3-W4)",
    )
    p.add_argument("--rounds", type=int, default=None, help="rounds (default 3, quick 1)")
    p.add_argument("--quick", action="store_true", help="small N: a smoke run")
    p.add_argument(
        "--limit",
        type=float,
        default=None,
        help="seconds per run before it is recorded as failed (default: per workload)",
    )
    p.add_argument("--w1-tasks", type=int, default=None)
    p.add_argument("--w2-tasks", type=int, default=None)
    p.add_argument("--w3-tasks", type=int, default=None)
    p.add_argument("--w4-tasks", type=int, default=None, help="W4: tasks timed (default 20,000)")
    p.add_argument("--w4-pending", type=int, default=None, help="W4 backlog (default 1,000,000)")
    p.add_argument(
        "--w4-peers", action="store_true", help="run W4 for the peers too (default: chronctl only)"
    )
    p.add_argument("--mem-tasks", type=int, default=None)
    p.add_argument("--idle-seconds", type=float, default=None, help="W5 window (default 60)")
    p.add_argument(
        "--arq-python",
        default=os.environ.get("CHRONCTL_BENCH_ARQ_PYTHON"),
        help="the interpreter of a venv with arq (it needs redis-py < 6)",
    )
    p.add_argument(
        "--library", action="store_true", help="run the in-process library workloads instead"
    )
    p.add_argument(
        "--summarize",
        type=Path,
        default=None,
        help="print the tables of a JSON-lines file and exit",
    )
    p.add_argument("--tmpdir", default=None, help="where SQLite files go (default: $TMPDIR)")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="JSON-lines file (default bench/results/<stamp>.jsonl)",
    )
    ns = p.parse_args(argv)
    sizes = QUICK if ns.quick else Sizes()
    overrides = {
        "w1_tasks": ns.w1_tasks,
        "w2_tasks": ns.w2_tasks,
        "w3_tasks": ns.w3_tasks,
        "w4_tasks": ns.w4_tasks,
        "w4_pending": ns.w4_pending,
        "mem_tasks": ns.mem_tasks,
        "w5_seconds": ns.idle_seconds,
    }
    ns.sizes = replace(sizes, **{k: v for k, v in overrides.items() if v is not None})
    ns.rounds = ns.rounds or (1 if ns.quick else 3)
    ns.backends, ns.only, ns.bodies, ns.logs = map(
        _csv, (ns.backends, ns.only.upper(), ns.bodies, ns.logs)
    )
    ns.systems = _csv(",".join(s.key for s in SYSTEMS) if ns.peers else ns.systems)
    _check(p, ns)
    return ns


def _check(p: argparse.ArgumentParser, ns: argparse.Namespace) -> None:
    known = LIBRARY_WORKLOADS if ns.library else REAL_WORKLOADS
    for name, values, allowed in (
        ("workload", ns.only, known),
        ("system", ns.systems, tuple(BY_KEY)),
        ("body", ns.bodies, ("def", "async", "noop", "hang")),
        ("log level", ns.logs, ("default", "quiet")),
    ):
        bad = [v for v in values if v not in allowed]
        if bad:
            p.error(f"unknown {name} {', '.join(bad)}: expected {', '.join(allowed)}")
    if ns.sizes.w4_pending < ns.sizes.w4_tasks:
        p.error("--w4-pending must be at least --w4-tasks (W4 times tasks taken from the backlog)")
    if not ns.library:
        bad = [b for b in ns.backends if b not in REAL_BACKENDS]
        if bad:
            p.error(
                f"backend {', '.join(bad)}: the real path runs a worker process and a client "
                f"process on {', '.join(REAL_BACKENDS)} (memory is in-process only: --library)"
            )


def _header(ns: argparse.Namespace, started: datetime) -> dict[str, Any]:
    return {
        "mode": "header",
        "date": started.isoformat(timespec="seconds"),
        "machine": machine_info(),
        "options": {
            "backends": ns.backends,
            "systems": ns.systems,
            "only": ns.only,
            "bodies": ns.bodies,
            "logs": ns.logs,
            "rounds": ns.rounds,
            "library": ns.library,
            "sizes": ns.sizes.__dict__,
        },
        "systems": {s.name: s.config for s in SYSTEMS if s.key in ns.systems},
    }


def finish(records: list[dict[str, Any]], out: Path | None) -> dict[str, Any]:
    summary = report.summarize(records)
    header = next((r for r in records if r.get("mode") == "header"), {})
    real = any(r.get("mode") == "real" for r in records)
    print("\n" + report.render(summary, header.get("systems") if real else None))
    headline = report.render_headline(summary)
    if headline:
        print("\n" + headline)
    library = report.render_library(records)
    if library:
        print("\n" + library)
    if out is not None:
        out.write_text(json.dumps({"header": header, **summary}, indent=2, default=str) + "\n")
        print(f"\nwrote {out}")
    return summary


def main(argv: list[str] | None = None) -> int:
    ns = parse_args(argv)
    if ns.summarize is not None:
        records = [json.loads(line) for line in ns.summarize.read_text().splitlines() if line]
        finish(records, None)
        return 0
    started = datetime.now(UTC)
    out = ns.out or RESULTS_DIR / f"{started.strftime('%Y-%m-%dT%H%M%S')}.jsonl"
    sink = Sink(out)
    sink.write(_header(ns, started))
    servers = measure.Servers()
    # absolute, not resolved: a venv's bin/python is a symlink and its bin/ holds the scripts
    pythons = {"arq": os.path.abspath(ns.arq_python)} if ns.arq_python else {}
    avail = Availability(servers, pythons)
    systems = [BY_KEY[k] for k in ns.systems]
    interrupted = False
    try:
        if ns.library:
            run_library(ns, sink)
        else:
            for cell in plan(ns):
                run_cell(cell, systems, avail, sink, ns)
            run_cli_workloads(ns, sink)
    except KeyboardInterrupt:
        interrupted = True
        _log("interrupted: the tables below hold what was measured")
    finally:
        servers.close()
        sink.write({"mode": "footer", "loadavg_end": os.getloadavg()})
        sink.close()
    finish(sink.records, out.with_suffix(".summary.json"))
    print(f"records: {out}; load average {os.getloadavg()[0]:.2f} at the end")
    return 130 if interrupted else 0
