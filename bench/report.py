"""From the JSON-lines records of a run to figures, ratios, verdicts and tables.

Works on the records alone (`python -m bench --summarize FILE` rebuilds the
report of an interrupted run). Rules:
- a figure is the median over rounds (best run beside it);
- a ratio chronctl/peer is computed within one round (chronctl's run and the
  peer's, minutes apart at most) and the median of those per-round ratios is
  reported; > 1 means chronctl is better (throughput chronctl/peer, latency,
  start-up and memory peer/chronctl);
- "library, in-process" records never feed a ratio, a verdict or a target.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

#: (workload, metric) -> (label, higher is better, format)
METRICS: dict[tuple[str, str], tuple[str, bool, str]] = {
    ("W1", "process_per_s"): ("processing, tasks/s", True, "rate"),
    ("W1", "end_to_end_per_s"): ("end to end incl. start-up, tasks/s", True, "rate"),
    ("W1", "startup_s"): ("worker start-up, s", False, "s"),
    ("W1", "enqueue_per_s"): ("enqueue, tasks/s", True, "rate"),
    ("W2", "p50_ms"): ("start latency p50, ms", False, "ms"),
    ("W2", "p99_ms"): ("start latency p99, ms", False, "ms"),
    ("W2", "max_ms"): ("start latency max, ms", False, "ms"),
    ("W3", "p50_ms"): ("lateness p50, ms", False, "ms"),
    ("W3", "p99_ms"): ("lateness p99, ms", False, "ms"),
    ("W3", "max_ms"): ("lateness max, ms", False, "ms"),
    ("W4", "process_per_s"): ("processing on the backlog, tasks/s", True, "rate"),
    ("W4", "prefill_per_s"): ("prefill, tasks/s", True, "rate"),
    ("W4", "startup_s"): ("worker start-up, s", False, "s"),
    ("MEM", "bytes_per_pending"): (
        "bytes per pending task (the run's keys / the file)",
        False,
        "rate",
    ),
    ("MEM", "used_memory_bytes_per_pending"): (
        "bytes per pending task (INFO used_memory)",
        False,
        "rate",
    ),
    ("W5", "cpu_percent"): ("idle CPU, % of one core", False, "num"),
    ("W5", "rss_mb"): ("idle RSS, MB", False, "num"),
    ("W6", "version_ms"): ("`chronctl --version`, ms", False, "ms"),
    ("W6", "jobs_list_ms"): ("`chronctl jobs list --json`, ms", False, "ms"),
}
#: The figures each ratio and verdict is about.
RATIO_METRICS = {
    "W1": ("process_per_s", "end_to_end_per_s", "startup_s"),
    "W2": ("p50_ms", "p99_ms"),
    "W3": ("p99_ms",),
    "W4": ("process_per_s",),
    "MEM": ("bytes_per_pending",),
}
VERDICT_METRICS = {
    "W1": "process_per_s",
    "W2": "p99_ms",
    "W3": "p99_ms",
    "MEM": "bytes_per_pending",
}

#: Absolute targets on the real path (chronctl, default log level):
#: (workload, body, metric) -> {backend or "*": (op, value)}
TARGETS: dict[tuple[str, str, str], dict[str, tuple[str, float]]] = {
    # issue 15: no-op tasks through a separate `chronctl run` worker
    ("W1", "noop", "process_per_s"): {
        "sqlite": (">=", 5_000),
        "redis": (">=", 8_000),
        "rabbitmq": (">=", 6_000),
        "postgres": (">=", 5_000),  # issue 18
    },
    # issue 7's latency targets, now judged with the enqueue in another process
    ("W2", "*", "p99_ms"): {
        "sqlite": ("<", 5.0),
        "redis": ("<", 3.0),
        "rabbitmq": ("<", 5.0),
        "postgres": ("<", 5.0),  # issue 18
    },
    ("W3", "*", "p99_ms"): {"*": ("<", 10.0)},
    ("W4", "*", "ratio_to_w1"): {"*": (">=", 0.8)},
    ("W5", "*", "cpu_percent"): {"*": ("<", 1.0)},
    ("W6", "*", "version_ms"): {"*": ("<", 150.0)},
}


def higher_is_better(workload: str, metric: str) -> bool:
    known = METRICS.get((workload, metric))
    return known[1] if known else metric.endswith("_per_s")


def fmt(value: float | None, kind: str) -> str:
    if value is None:
        return "-"
    if kind == "rate":
        return f"{value:,.0f}"
    if kind == "ratio":
        return f"{value:.2f}x"
    if kind == "s":
        return f"{value:.2f}"
    return f"{value:.2f}" if abs(value) < 100 else f"{value:,.0f}"


def cell_key(rec: dict[str, Any]) -> tuple[str, str, str, str]:
    return (rec["backend"], rec["workload"], rec.get("body", "-"), rec.get("log", "-"))


def _agg(values: list[float], higher: bool) -> dict[str, Any]:
    return {
        "median": statistics.median(values),
        "best": max(values) if higher else min(values),
        "runs": values,
    }


def summarize(records: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Figures per cell and system, per-round ratios, verdicts and targets."""
    real = [r for r in records if r.get("mode") == "real"]
    cells: dict[tuple[str, str, str, str], dict[str, Any]] = defaultdict(dict)
    by_round: dict[tuple[Any, ...], dict[str, dict[str, Any]]] = defaultdict(dict)
    for rec in real:
        key, system = cell_key(rec), rec["system"]
        entry = cells[key].setdefault(system, {"runs": [], "errors": [], "skipped": None})
        if "skipped" in rec:
            entry["skipped"] = rec["skipped"]
        elif "error" in rec:
            entry["errors"].append(rec["error"])
        else:
            entry["runs"].append(rec["result"])
            by_round[(*key, rec.get("round", 0))][system] = rec["result"]
    figures: dict[str, Any] = {}
    for key, systems in cells.items():
        for entry in systems.values():
            metrics: dict[str, Any] = {}
            for metric in {m for run in entry["runs"] for m in run}:
                values = [
                    run[metric] for run in entry["runs"] if isinstance(run.get(metric), int | float)
                ]
                if values:
                    metrics[metric] = _agg(values, higher_is_better(key[1], metric))
            entry["figures"] = metrics
        figures["|".join(key)] = systems
    ratios = _ratios(by_round)
    return {
        "cells": figures,
        "ratios": ratios,
        "verdicts": _verdicts(cells, ratios),
        "derived": _derived(by_round),
        "targets": _targets(cells, by_round),
    }


def _ratio(ours: float, theirs: float, higher: bool) -> float | None:
    if not ours or not theirs:
        return None
    return ours / theirs if higher else theirs / ours


def _ratios(by_round: dict[tuple[Any, ...], dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """cell -> peer -> metric -> median of per-round chronctl/peer ratios."""
    per: dict[str, dict[str, dict[str, list[float]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list))
    )
    for (*key, _round), systems in by_round.items():
        ours = systems.get("chronctl")
        if ours is None:
            continue
        workload = key[1]
        for system, theirs in systems.items():
            if system == "chronctl":
                continue
            for metric in RATIO_METRICS.get(workload, ()):
                if metric in ours and metric in theirs:
                    r = _ratio(ours[metric], theirs[metric], higher_is_better(workload, metric))
                    if r is not None:
                        per["|".join(key)][system][metric].append(r)
    return {
        cell: {
            system: {m: {"median": statistics.median(v), "rounds": v} for m, v in metrics.items()}
            for system, metrics in systems.items()
        }
        for cell, systems in per.items()
    }


def _verdicts(
    cells: dict[tuple[str, str, str, str], dict[str, Any]], ratios: dict[str, Any]
) -> list[dict[str, Any]]:
    """Per cell: is chronctl ahead of the best peer (best by median), by the median
    of the per-round ratios against that peer?"""
    out = []
    for key, systems in cells.items():
        metric = VERDICT_METRICS.get(key[1])
        ours = systems.get("chronctl", {}).get("figures", {}).get(metric or "")
        if metric is None or ours is None:
            continue
        higher = higher_is_better(key[1], metric)
        peers = [
            (name, e["figures"][metric]["median"])
            for name, e in systems.items()
            if name != "chronctl" and metric in e.get("figures", {})
        ]
        if not peers:
            continue
        best = (max if higher else min)(peers, key=lambda p: p[1])
        ratio = ratios.get("|".join(key), {}).get(best[0], {}).get(metric, {}).get("median")
        out.append(
            {
                "backend": key[0],
                "workload": key[1],
                "body": key[2],
                "log": key[3],
                "metric": metric,
                "chronctl": ours["median"],
                "best_peer": best[0],
                "best_peer_value": best[1],
                "ratio": ratio,
                "ahead": ratio is not None and ratio > 1,
            }
        )
    return out


def _derived(by_round: dict[tuple[Any, ...], dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """Per-round figures across cells: W4 / W1 processing (same body and log), and
    the cost of default logging (W1 default / W1 quiet), per system."""
    out: dict[str, Any] = defaultdict(lambda: defaultdict(list))
    for (backend, workload, body, log, rnd), systems in by_round.items():
        for system, result in systems.items():
            if workload == "W4":
                w1 = by_round.get((backend, "W1", body, log, rnd), {}).get(system)
                if w1 and w1.get("process_per_s"):
                    out[f"{backend}|W4|{body}|{log}"][f"{system} ratio_to_w1"].append(
                        result["process_per_s"] / w1["process_per_s"]
                    )
            if workload == "W1" and log == "default":
                quiet = by_round.get((backend, "W1", body, "quiet", rnd), {}).get(system)
                if quiet and quiet.get("process_per_s"):
                    out[f"{backend}|W1|{body}"][f"{system} default/quiet"].append(
                        result["process_per_s"] / quiet["process_per_s"]
                    )
    return {
        cell: {k: {"median": statistics.median(v), "rounds": v} for k, v in items.items()}
        for cell, items in out.items()
    }


def target_for(workload: str, body: str, metric: str, backend: str) -> tuple[str, float] | None:
    rule = TARGETS.get((workload, body, metric)) or TARGETS.get((workload, "*", metric)) or {}
    return rule.get(backend, rule.get("*"))


def meets(value: float, target: tuple[str, float]) -> bool:
    op, threshold = target
    return {">=": value >= threshold, "<": value < threshold, "<=": value <= threshold}[op]


def _targets(
    cells: dict[tuple[str, str, str, str], dict[str, Any]],
    by_round: dict[tuple[Any, ...], dict[str, dict[str, Any]]],
) -> list[dict[str, Any]]:
    out = []
    derived = _derived(by_round)
    for (backend, workload, body, log), systems in cells.items():
        if log not in ("default", "-"):
            continue
        figures = systems.get("chronctl", {}).get("figures", {})
        values = {m: f["median"] for m, f in figures.items()}
        if workload == "W4":
            ratio = derived.get(f"{backend}|W4|{body}|{log}", {}).get("chronctl ratio_to_w1")
            if ratio:
                values["ratio_to_w1"] = ratio["median"]
        for metric, value in values.items():
            target = target_for(workload, body, metric, backend)
            if target is None:
                continue
            out.append(
                {
                    "backend": backend,
                    "workload": workload,
                    "body": body,
                    "metric": metric,
                    "target": f"{target[0]} {target[1]:g}",
                    "median": value,
                    "met": meets(value, target),
                }
            )
    return out


# -- tables ------------------------------------------------------------------------


def _table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _value(entry: dict[str, Any], workload: str, metric: str) -> str:
    fig = entry.get("figures", {}).get(metric)
    if fig is None:
        return "-"
    kind = METRICS.get((workload, metric), ("", True, "num"))[2]
    text = fmt(fig["median"], kind)
    if len(fig["runs"]) > 1 and fig["best"] != fig["median"]:
        text += f" ({fmt(fig['best'], kind)})"
    return text


#: The headline table's columns: (label, workload, body, log, metric, with the ratio).
HEADLINE = [
    ("W1 `def` processing, tasks/s", "W1", "def", "default", "process_per_s", True),
    ("W1 `def` end to end, tasks/s", "W1", "def", "default", "end_to_end_per_s", False),
    ("W1 `def` quiet, tasks/s", "W1", "def", "quiet", "process_per_s", True),
    ("W1 `async def`, tasks/s", "W1", "async", "default", "process_per_s", True),
    ("W1 `noop`, tasks/s", "W1", "noop", "default", "process_per_s", False),
    ("W2 p50, ms", "W2", "*", "default", "p50_ms", False),
    ("W2 p99, ms", "W2", "*", "default", "p99_ms", True),
]


def _find_cell(summary: dict[str, Any], backend: str, workload: str, body: str, log: str) -> str:
    """The cell's key; body "*" takes whichever body the workload ran with."""
    if body != "*":
        return f"{backend}|{workload}|{body}|{log}"
    for cell in summary["cells"]:
        b, w, _, lg = cell.split("|")
        if (b, w, lg) == (backend, workload, log):
            return cell
    return ""


def render_headline(summary: dict[str, Any]) -> str:
    """One row per backend and system: the figures the README quotes, with the
    median per-round ratio chronctl/peer beside the ones the verdicts are about."""
    backends: dict[str, set[str]] = defaultdict(set)
    for cell, systems in summary["cells"].items():
        if cell.split("|")[1] in ("W1", "W2"):
            backends[cell.split("|")[0]].update(n for n, e in systems.items() if e.get("runs"))
    rows = []
    for backend, names in backends.items():
        for system in sorted(names, key=lambda s: (s != "chronctl", s)):
            row = [backend, system]
            for _label, workload, body, log, metric, with_ratio in HEADLINE:
                cell = _find_cell(summary, backend, workload, body, log)
                entry = summary["cells"].get(cell, {}).get(system, {})
                text = _value(entry, workload, metric) if entry.get("runs") else "-"
                if with_ratio and system != "chronctl" and text != "-":
                    ratio = summary["ratios"].get(cell, {}).get(system, {}).get(metric, {})
                    text += f" ({fmt(ratio.get('median'), 'ratio')})"
                row.append(text)
            rows.append(row)
    if not rows:
        return ""
    headers = ["backend", "system", *(h[0] for h in HEADLINE)]
    return (
        "Medians over rounds, (best run); in brackets after a peer's figure: the median "
        "of the per-round ratios, > 1 = chronctl better\n\n" + _table(headers, rows)
    )


def render(summary: dict[str, Any], systems_config: dict[str, str] | None = None) -> str:
    """Markdown tables: one per cell (backend, workload, body, log level)."""
    parts = []
    for cell, systems in summary["cells"].items():
        backend, workload, body, log = cell.split("|")
        metrics = [m for (w, m) in METRICS if w == workload]
        metrics = [m for m in metrics if any(m in e.get("figures", {}) for e in systems.values())]
        ratio_metrics = [m for m in RATIO_METRICS.get(workload, ()) if m in metrics]
        headers = [
            "system",
            *(METRICS[(workload, m)][0] for m in metrics),
            *(f"chronctl/peer ({METRICS[(workload, m)][0].split(',')[0]})" for m in ratio_metrics),
        ]
        rows = []
        order = sorted(systems, key=lambda s: (s != "chronctl", s))
        for system in order:
            entry = systems[system]
            if entry.get("skipped") and not entry["runs"]:
                rows.append([system, f"skipped: {entry['skipped']}"] + [""] * (len(headers) - 2))
                continue
            if not entry["runs"]:
                err = (entry["errors"] or ["?"])[-1].splitlines()[0][:120]
                rows.append([system, f"FAILED: {err}"] + [""] * (len(headers) - 2))
                continue
            ratio = summary["ratios"].get(cell, {}).get(system, {})
            failed = f" ({len(entry['errors'])} failed)" if entry["errors"] else ""
            rows.append(
                [
                    system + failed,
                    *(_value(entry, workload, m) for m in metrics),
                    *(fmt(ratio.get(m, {}).get("median"), "ratio") for m in ratio_metrics),
                ]
            )
        title = f"**{backend} {workload}**" + (f", body `{body}`" if body != "-" else "")
        title += f", log level {log}" if log != "-" else ""
        parts.append(f"{title}\n\n{_table(headers, rows)}")
    lines = []
    for v in summary["verdicts"]:
        peer = fmt(v["ratio"], "ratio")
        lines.append(
            f"- {v['backend']} {v['workload']} `{v['body']}` ({v['log']} log) {v['metric']}: "
            f"chronctl {'ahead of' if v['ahead'] else 'BEHIND'} the best peer "
            f"{v['best_peer']} ({peer})"
        )
    for cell, items in summary["derived"].items():
        for name, value in items.items():
            lines.append(f"- {cell} {name}: {value['median']:.2f}")
    for t in summary["targets"]:
        lines.append(
            f"- target {t['backend']} {t['workload']} `{t['body']}` {t['metric']} {t['target']}: "
            f"{t['median']:.2f} {'met' if t['met'] else 'MISSED'}"
        )
    if lines:
        parts.append("\n".join(lines))
    if systems_config:
        parts.append(
            _table(["system", "configuration"], [[k, v] for k, v in systems_config.items()])
        )
    return "\n\n".join(parts)


def render_library(records: Iterable[dict[str, Any]]) -> str:
    """The "library, in-process" table: chronctl embedded, one process; no ratios."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for rec in records:
        if rec.get("mode") == "library" and "result" in rec:
            groups[(rec["backend"], rec["workload"])].append(rec["result"])
    rows = []
    for (backend, workload), runs in sorted(groups.items()):
        for metric in sorted({m for r in runs for m in r}):
            values = [r[metric] for r in runs if isinstance(r.get(metric), int | float)]
            if values and metric not in ("n", "pending"):
                rows.append([backend, workload, metric, fmt(statistics.median(values), "num")])
    if not rows:
        return ""
    return (
        "**library, in-process** (enqueuer and worker in one process and one event loop, "
        "async no-op jobs; not what `chronctl run` users get: no ratio, no target)\n\n"
        + _table(["backend", "workload", "metric", "median"], rows)
    )
