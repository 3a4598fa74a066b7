"""`python -m bench`: run W1-W6, print a table, write bench/results/<date>.json.

    python -m bench                          # everything, memory and sqlite (about 6 min)
    python -m bench --quick                  # small N, a smoke run (about 30 s)
    python -m bench --only W1,W4 --backends sqlite --w4-pending 1000000
    python -m bench --peers --backends redis,sqlite,rabbitmq --only W1,W2   # vs other queues

Each throughput/latency workload runs `--repeat` times on a fresh store; the
table shows the median and, in brackets, the best run. Targets are judged on
the median.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import workloads as w
from .harness import BackendChoice, aggregate, choose_backends, machine_info

WORKLOADS = ("W1", "W2", "W3", "W4", "W5", "W6")
RESULTS_DIR = Path(__file__).parent / "results"


@dataclass(frozen=True)
class Sizes:
    w1_tasks: int = 20_000
    w2_tasks: int = 1_000
    w2_rate: float = 200.0
    w3_tasks: int = 500
    w3_ahead: tuple[float, float] = (2.0, 7.0)
    w4_pending: int = 200_000
    w4_tasks: int = 20_000
    w4_memory_tasks: int = 100_000
    w5_jobs: int = 1_000
    w5_seconds: float = 60.0
    w6_repeat: int = 10


QUICK = Sizes(
    w1_tasks=2_000,
    w2_tasks=200,
    w3_tasks=50,
    w3_ahead=(0.5, 1.5),
    w4_pending=20_000,
    w4_tasks=2_000,
    w4_memory_tasks=20_000,
    w5_jobs=100,
    w5_seconds=3.0,
    w6_repeat=3,
)


@dataclass(frozen=True)
class Metric:
    workload: str
    key: str
    label: str
    higher_is_better: bool
    fmt: Callable[[float], str]


def _rate(v: float) -> str:
    return f"{v:,.0f}"


def _ms(v: float) -> str:
    return f"{v:.3f}" if v < 10 else f"{v:.1f}"


def _num(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.2f}"


METRICS = [
    Metric("W1", "enqueue_per_s", "enqueue (bulk), tasks/s", True, _rate),
    Metric("W1", "process_per_s", "processing, tasks/s", True, _rate),
    Metric("W1", "end_to_end_per_s", "end to end, tasks/s", True, _rate),
    Metric("W2", "p50_ms", "start latency p50, ms", False, _ms),
    Metric("W2", "p99_ms", "start latency p99, ms", False, _ms),
    Metric("W2", "max_ms", "start latency max, ms", False, _ms),
    Metric("W3", "p50_ms", "lateness p50, ms", False, _ms),
    Metric("W3", "p99_ms", "lateness p99, ms", False, _ms),
    Metric("W3", "max_ms", "lateness max, ms", False, _ms),
    Metric("W4", "pending", "tasks pending", True, _rate),
    Metric("W4", "prefill_per_s", "prefill (bulk), tasks/s", True, _rate),
    Metric("W4", "process_per_s", "processing, tasks/s", True, _rate),
    Metric("W4", "ratio_to_w1", "processing / W1 processing", True, _num),
    Metric("W4", "bytes_per_pending", "memory per pending task, bytes", False, _rate),
    Metric("W5", "cpu_percent", "idle CPU, % of one core", False, _num),
    Metric("W5", "rss_mb", "idle RSS, MB", False, _num),
    Metric("W6", "version_ms", "`chronctl --version`, ms", False, _ms),
    Metric("W6", "jobs_list_ms", "`chronctl jobs list --json`, ms", False, _ms),
]
_BY_KEY = {(m.workload, m.key): m for m in METRICS}

#: (workload, metric) -> {backend label or "*": (">=" or "<" or "<=", threshold)}
TARGETS: dict[tuple[str, str], dict[str, tuple[str, float]]] = {
    # issue 7's table: W1 is judged end to end (enqueue + processing)
    ("W1", "end_to_end_per_s"): {
        "memory": (">=", 30_000),
        "sqlite": (">=", 10_000),
        "redis": (">=", 15_000),
        "rabbitmq": (">=", 10_000),
    },
    ("W2", "p99_ms"): {
        "memory": ("<", 1.0),
        "sqlite": ("<", 5.0),
        "redis": ("<", 3.0),
        "rabbitmq": ("<", 5.0),
    },
    ("W3", "p99_ms"): {
        "memory": ("<", 5.0),
        "sqlite": ("<", 10.0),
        "redis": ("<", 10.0),
        "rabbitmq": ("<", 10.0),
    },
    ("W4", "ratio_to_w1"): {"*": (">=", 0.8)},
    ("W4", "bytes_per_pending"): {"memory": ("<=", 1536)},
    ("W5", "cpu_percent"): {"*": ("<", 1.0)},
    ("W6", "version_ms"): {"*": ("<", 150.0)},
}


def target_for(workload: str, key: str, backend: str) -> tuple[str, float] | None:
    rule = TARGETS.get((workload, key), {})
    backend = {"amqp": "rabbitmq", "amqps": "rabbitmq", "rediss": "redis"}.get(backend, backend)
    return rule.get(backend, rule.get("*"))


def meets(value: float, target: tuple[str, float]) -> bool:
    op, threshold = target
    return {">=": value >= threshold, "<": value < threshold, "<=": value <= threshold}[op]


# -- running -----------------------------------------------------------------------


def _higher(workload: str) -> Callable[[str], bool]:
    def higher(key: str) -> bool:
        metric = _BY_KEY.get((workload, key))
        return metric.higher_is_better if metric else key.endswith("_per_s")

    return higher


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run_backend(
    choice: BackendChoice,
    only: set[str],
    sizes: Sizes,
    repeat: int,
    workers: int,
    tmp_root: str | None,
) -> dict[str, Any]:
    out: dict[str, Any] = {}

    def repeated(name: str, fn: Callable[[str, Path], Any], times: int = repeat) -> None:
        runs = []
        for i in range(times):
            with tempfile.TemporaryDirectory(prefix="chronctl-bench-", dir=tmp_root) as tmp:
                url = choice.url(Path(tmp))
                _log(f"{choice.label} {name} run {i + 1}/{times}")
                result = fn(url, Path(tmp))
                runs.append(asyncio.run(result) if asyncio.iscoroutine(result) else result)
        out[name] = aggregate(runs, _higher(name))

    with tempfile.TemporaryDirectory(dir=tmp_root) as tmp:
        out["url"] = choice.url(Path(tmp))
    if "W1" in only:
        repeated("W1", lambda url, _: w.w1_throughput(url, n=sizes.w1_tasks, workers=workers))
    if "W2" in only:
        repeated(
            "W2",
            lambda url, _: w.w2_start_latency(
                url, n=sizes.w2_tasks, rate=sizes.w2_rate, workers=workers
            ),
        )
    if "W3" in only:
        repeated(
            "W3",
            lambda url, _: w.w3_schedule_accuracy(
                url, n=sizes.w3_tasks, ahead=sizes.w3_ahead, workers=workers
            ),
        )
    if "W4" in only:
        repeated(
            "W4",
            lambda url, _: w.w4_scale(
                url, pending=sizes.w4_pending, n=sizes.w4_tasks, workers=workers
            ),
        )
        if out["url"].startswith("memory://"):
            _log(f"{choice.label} W4 memory per pending task ({sizes.w4_memory_tasks:,} tasks)")
            mem = asyncio.run(w.w4_memory_per_task(n=sizes.w4_memory_tasks))
            out["W4"]["bytes_per_pending"] = {
                "median": mem["bytes_per_pending"],
                "best": mem["bytes_per_pending"],
                "runs": [mem["bytes_per_pending"]],
                "n": mem["n"],
            }
        w1 = out.get("W1", {}).get("process_per_s")
        if w1:
            w4 = out["W4"]["process_per_s"]
            out["W4"]["ratio_to_w1"] = {
                "median": w4["median"] / w1["median"],
                "best": w4["best"] / w1["best"],
            }
    if "W5" in only:
        repeated(
            "W5",
            lambda url, tmp: w.w5_idle_cpu(tmp, url, jobs=sizes.w5_jobs, seconds=sizes.w5_seconds),
            times=1,
        )
    return out


def judge(results: dict[str, Any]) -> list[dict[str, Any]]:
    verdicts = []
    for label, res in results.items():
        for workload, key in TARGETS:
            target = target_for(workload, key, "sqlite" if label == "cli" else label)
            value = res.get(workload, {}).get(key)
            if target is None or not isinstance(value, dict):
                continue
            verdicts.append(
                {
                    "backend": label,
                    "workload": workload,
                    "metric": key,
                    "target": f"{target[0]} {target[1]:g}",
                    "median": value["median"],
                    "best": value["best"],
                    "met": meets(value["median"], target),
                }
            )
    return verdicts


# -- output ------------------------------------------------------------------------


def _cell(value: Any, metric: Metric, target: tuple[str, float] | None) -> str:
    if not isinstance(value, dict):
        return "-"
    text = metric.fmt(value["median"])
    if value["best"] != value["median"]:
        text += f" ({metric.fmt(value['best'])})"
    if target is not None:
        text += " ok" if meets(value["median"], target) else " MISSED"
    return text


def _target_text(metric: Metric, labels: list[str]) -> str:
    rule = TARGETS.get((metric.workload, metric.key))
    if not rule:
        return ""
    if "*" in rule:
        op, v = rule["*"]
        return f"{op} {metric.fmt(v)}"
    return ", ".join(
        f"{b} {op} {metric.fmt(v)}" for b, (op, v) in rule.items() if b in labels or not labels
    )


def render(results: dict[str, Any], plain: bool) -> None:
    labels = [k for k in results if k != "cli"]
    headers = ["", "metric", *labels, "target"]
    rows = []
    for metric in METRICS:
        if metric.workload == "W6":
            continue
        cells = [results[b].get(metric.workload, {}).get(metric.key) for b in labels]
        if not any(isinstance(c, dict) for c in cells):
            continue
        rows.append(
            [
                metric.workload,
                metric.label,
                *(
                    _cell(c, metric, target_for(metric.workload, metric.key, b))
                    for c, b in zip(cells, labels, strict=True)
                ),
                _target_text(metric, labels),
            ]
        )
    cli_rows = []
    for metric in METRICS:
        value = results.get("cli", {}).get("W6", {}).get(metric.key)
        if metric.workload == "W6" and isinstance(value, dict):
            cli_rows.append(
                [
                    "W6",
                    metric.label,
                    _cell(value, metric, target_for("W6", metric.key, "*")),
                    _target_text(metric, []),
                ]
            )
    _print_table(headers, rows, "median (best run); targets judged on the median", plain)
    if cli_rows:
        _print_table(
            ["", "metric", "median of runs", "target"],
            cli_rows,
            "CLI start, SQLite file with no tasks",
            plain,
        )


def render_peers(
    report: dict[str, Any], results: dict[str, Any], labels: list[str], plain: bool
) -> None:
    from .peers import table

    headers, rows = table(report, results, labels)
    _print_table(
        headers,
        rows,
        "chronctl and its peers, same backends, same run (medians); ratios > 1: chronctl is better",
        plain,
    )
    for v in report["verdicts"]:
        print(
            f"{v['backend']} {v['workload']} {v['metric']}: chronctl "
            f"{'ahead of' if v['ahead'] else 'BEHIND'} the best peer ({v['best_peer']})"
        )


def _print_table(headers: list[str], rows: list[list[str]], title: str, plain: bool) -> None:
    if not rows:
        return
    if plain:
        print(f"\n{title}")
        widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
        for row in [headers, *rows]:
            print("  ".join(str(c).ljust(widths[i]) for i, c in enumerate(row)).rstrip())
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for i, h in enumerate(headers):
        table.add_column(h, justify="right" if 1 < i < len(headers) - 1 else "left")
    for row in rows:
        table.add_row(*row)
    console = Console()
    if not console.is_terminal:
        console.width = 120
    console.print(table)


# -- main --------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--backends",
        default="memory,sqlite",
        help="comma-separated names (memory, sqlite, redis, rabbitmq) or URLs",
    )
    parser.add_argument(
        "--only", default=",".join(WORKLOADS), help="comma-separated workloads, e.g. W1,W2"
    )
    parser.add_argument("--quick", action="store_true", help="small N: a smoke run")
    parser.add_argument(
        "--repeat",
        type=int,
        default=None,
        help="runs per throughput/latency workload (default 3, quick 1)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=8,
        help="Scheduler(workers=N) for W1-W4 (default 8, the default)",
    )
    parser.add_argument("--w1-tasks", type=int, default=None)
    parser.add_argument(
        "--w4-pending",
        type=int,
        default=None,
        help="tasks pending in W4 (default 200,000; the issue's 1,000,000 "
        "takes a few minutes on SQLite)",
    )
    parser.add_argument(
        "--idle-seconds", type=float, default=None, help="W5 measuring window (default 60)"
    )
    parser.add_argument("--tmpdir", default=None, help="where SQLite files go (default: $TMPDIR)")
    parser.add_argument(
        "--out", type=Path, default=None, help="JSON file (default bench/results/<date>.json)"
    )
    parser.add_argument("--plain", action="store_true", help="plain text table")
    parser.add_argument(
        "--peers",
        action="store_true",
        help="also run W1/W2 with Huey, Dramatiq, arq, RQ and Celery on the same "
        "backends (pip install -e '.[bench]'); prints chronctl/peer ratios",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    ns = parse_args(argv)
    sizes = QUICK if ns.quick else Sizes()
    overrides = {
        "w1_tasks": ns.w1_tasks,
        "w4_pending": ns.w4_pending,
        "w5_seconds": ns.idle_seconds,
    }
    sizes = Sizes(**{**sizes.__dict__, **{k: v for k, v in overrides.items() if v is not None}})
    repeat = ns.repeat or (1 if ns.quick else 3)
    only = {x.strip().upper() for x in ns.only.split(",") if x.strip()}
    unknown = only - set(WORKLOADS)
    if unknown:
        raise SystemExit(f"bench: unknown workload(s) {', '.join(sorted(unknown))}")
    choices = choose_backends(ns.backends)
    started = datetime.now(UTC)
    report: dict[str, Any] = {
        "date": started.isoformat(timespec="seconds"),
        "machine": machine_info(),
        "options": {
            "backends": [c.label for c in choices],
            "only": sorted(only),
            "quick": ns.quick,
            "repeat": repeat,
            "workers": ns.workers,
            "sizes": sizes.__dict__,
        },
        "results": {},
    }
    results: dict[str, Any] = report["results"]
    for choice in choices:
        results[choice.label] = run_backend(choice, only, sizes, repeat, ns.workers, ns.tmpdir)
    if "W6" in only:
        _log(f"W6 CLI start ({sizes.w6_repeat} runs per command)")
        with tempfile.TemporaryDirectory(prefix="chronctl-bench-", dir=ns.tmpdir) as tmp:
            w6 = w.w6_cli_start(Path(tmp), repeat=sizes.w6_repeat)
        results["cli"] = {
            "W6": {
                k: {"median": v, "best": w6.get(k.replace("_ms", "_min_ms"), v)}
                for k, v in w6.items()
                if k.endswith("_ms") and not k.endswith("_min_ms")
            }
        }
        results["cli"]["W6"]["repeat"] = w6["repeat"]
    if ns.peers:
        from . import peers

        report["peers"] = peers.run_peers(
            [c.label for c in choices],
            results,
            only,
            w1_tasks=sizes.w1_tasks,
            w2_tasks=sizes.w2_tasks,
            w2_rate=sizes.w2_rate,
            repeat=repeat,
            tmp_root=ns.tmpdir,
        )
    report["machine"]["loadavg_end"] = os.getloadavg()
    report["seconds"] = (datetime.now(UTC) - started).total_seconds()
    report["targets"] = judge(results)
    render(results, ns.plain)
    if ns.peers:
        render_peers(report["peers"], results, [c.label for c in choices], ns.plain)
    out = ns.out or RESULTS_DIR / f"{started.date().isoformat()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    missed = [t for t in report["targets"] if not t["met"]]
    print(
        f"\nwrote {out}; targets met {len(report['targets']) - len(missed)}"
        f"/{len(report['targets'])}; load average {report['machine']['loadavg_start'][0]:.2f}"
        f" at start, {report['machine']['loadavg_end'][0]:.2f} at end"
    )
    return 0
