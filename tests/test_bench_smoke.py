"""The benchmark harness runs end to end at tiny sizes (no figure is asserted, only
that each workload measured what it says, through real worker processes)."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import time
from pathlib import Path
from typing import Any

import pytest

from bench import report, systems
from bench.run import main

TINY = ["--w1-tasks", "40", "--w2-tasks", "10", "--w4-pending", "200", "--w4-tasks", "40"]
TINY += ["--mem-tasks", "200", "--rounds", "1", "--logs", "default"]


def _bench(tmp_path: Path, *args: str) -> list[dict[str, Any]]:
    out = tmp_path / "bench.jsonl"
    code = main(["--quick", *TINY, *args, "--out", str(out), "--tmpdir", str(tmp_path)])
    assert code == 0
    assert (tmp_path / "bench.summary.json").exists()
    return [json.loads(line) for line in out.read_text().splitlines()]


def _results(records: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (r["system"], r["workload"]): r.get("result") or r
        for r in records
        if r.get("mode") == "real"
    }


def test_chronctl_real_path_on_sqlite(tmp_path: Path) -> None:
    """`chronctl run` in its own process, tasks from a client process: W1, W2, W4, MEM."""
    records = _bench(
        tmp_path,
        *("--systems", "chronctl", "--backends", "sqlite", "--bodies", "noop"),
        *("--only", "W1,W2,W4,MEM"),
    )
    got = _results(records)
    w1 = got[("chronctl", "W1")]
    assert w1["n"] == 40 and w1["process_per_s"] > 0 and w1["startup_s"] > 0
    assert w1["end_to_end_per_s"] < w1["process_per_s"]  # start-up is counted
    assert got[("chronctl", "W2")]["n"] == 10  # ten latency samples, the warm-up left out
    assert got[("chronctl", "W4")]["pending"] == 200
    assert got[("chronctl", "MEM")]["bytes_per_pending"] > 0
    assert records[0]["mode"] == "header" and records[-1]["mode"] == "footer"


def test_a_hung_workload_is_reported_failed_within_its_limit(tmp_path: Path) -> None:
    t0 = time.monotonic()
    records = _bench(
        tmp_path,
        *("--systems", "chronctl", "--backends", "sqlite", "--bodies", "hang"),
        *("--only", "W1", "--limit", "3"),
    )
    failed = _results(records)[("chronctl", "W1")]
    assert "passed its time limit of 3 s" in failed["error"]
    assert failed["seconds"] < 10 and time.monotonic() - t0 < 20


@pytest.mark.skipif(importlib.util.find_spec("huey") is None, reason="huey not installed")
def test_a_peer_runs_through_the_same_harness(tmp_path: Path) -> None:
    """SqliteHuey by its own `huey_consumer`, in the same round as chronctl, with a ratio."""
    records = _bench(
        tmp_path,
        *("--systems", "chronctl,huey", "--backends", "sqlite", "--bodies", "noop"),
        *("--only", "W1"),
    )
    got = _results(records)
    assert got[("Huey", "W1")]["n"] == got[("chronctl", "W1")]["n"] == 40
    summary = json.loads((tmp_path / "bench.summary.json").read_text())
    ratio = summary["ratios"]["sqlite|W1|noop|default"]["Huey"]["process_per_s"]
    assert len(ratio["rounds"]) == 1 and ratio["median"] > 0


def test_missing_peers_are_skipped_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        systems, "_importable", lambda python, names: ", ".join(n for n in names if n == "huey")
    )
    records = _bench(
        tmp_path,
        *("--systems", "huey", "--backends", "sqlite", "--bodies", "noop", "--only", "W1"),
    )
    assert "huey not installed" in _results(records)[("Huey", "W1")]["skipped"]


def test_ratios_come_from_one_round_and_verdicts_from_the_best_peer() -> None:
    """> 1 means chronctl is better, for throughput and latency alike; the median
    of per-round ratios, not the ratio of medians."""

    def rec(system: str, rnd: int, workload: str, **result: float) -> dict[str, Any]:
        cell = {"backend": "redis", "workload": workload, "body": "def", "log": "default"}
        return {"mode": "real", **cell, "system": system, "round": rnd, "result": result}

    records = [
        rec("chronctl", 0, "W1", process_per_s=1000.0),
        rec("A", 0, "W1", process_per_s=500.0),
        rec("B", 0, "W1", process_per_s=2000.0),
        rec("chronctl", 1, "W1", process_per_s=3000.0),
        rec("A", 1, "W1", process_per_s=1000.0),
        rec("B", 1, "W1", process_per_s=2000.0),
        rec("chronctl", 0, "W4", process_per_s=900.0),
        rec("chronctl", 0, "W2", p99_ms=2.0),
        rec("A", 0, "W2", p99_ms=1.0),
        {"mode": "real", "backend": "redis", "workload": "W1", "body": "def", "log": "default",
         "system": "C", "skipped": "c not installed"},
        {"mode": "library", "backend": "redis", "workload": "W1", "result": {"process_per_s": 1e9}},
    ]  # fmt: skip
    summary = report.summarize(records)
    ratios = summary["ratios"]["redis|W1|def|default"]
    assert ratios["A"]["process_per_s"]["rounds"] == [2.0, 3.0]
    assert ratios["B"]["process_per_s"]["rounds"] == [0.5, 1.5]
    assert summary["ratios"]["redis|W2|def|default"]["A"]["p99_ms"]["median"] == 0.5
    verdicts = {v["workload"]: v for v in summary["verdicts"]}
    assert verdicts["W1"]["best_peer"] == "B" and verdicts["W1"]["ratio"] == 1.0
    assert not verdicts["W1"]["ahead"]
    assert verdicts["W2"]["best_peer"] == "A" and not verdicts["W2"]["ahead"]
    assert "C" not in summary["ratios"]["redis|W1|def|default"]
    w4 = summary["derived"]["redis|W4|def|default"]["chronctl ratio_to_w1"]
    assert w4["rounds"] == [0.9]  # W4 over W1 of the same round
    assert any(t["metric"] == "ratio_to_w1" and t["met"] for t in summary["targets"])


async def test_amqp_floor_publishes_and_consumes_every_message() -> None:
    """The RabbitMQ floor script runs against the real broker and cleans up."""
    from bench.amqp_floor import measure

    from .conftest import RABBITMQ_URL, need_service, rabbitmq_reachable

    need_service("RabbitMQ", rabbitmq_reachable(), RABBITMQ_URL.split("@")[-1])
    # it returns only once all 300 messages were consumed and acked
    result = await asyncio.wait_for(measure(RABBITMQ_URL, 300), 60)
    assert (result["publish_per_s"] or 0) > 0 and (result["consume_ack_per_s"] or 0) > 0
    assert (result["publish_cpu_us"] or 0) > 0


def test_schedules_at_scale_runs_end_to_end_on_sqlite(tmp_path: Path) -> None:
    """bench.schedules at tiny sizes: stores the schedules, measures a real `chronctl run`
    idle, and sees a schedule stored afterwards fire (a task of it in the store)."""
    from bench import schedules as bench_schedules

    out = tmp_path / "schedules.json"
    code = bench_schedules.main(
        [
            *("--backends", "sqlite", "--count", "20", "--seconds", "1", "--repeat", "1"),
            *("--out", str(out), "--tmpdir", str(tmp_path)),
        ]
    )
    assert code == 0
    report = json.loads(out.read_text())
    (result,) = report["results"]
    assert result["count"] == 20 and result["store_s"] > 0
    assert result["startup_settled"] and result["idle_seconds"] >= 1
    assert result["cpu_percent"] >= 0 and result["rss_mb"] > 0
    assert "list_ms" in result or result["list"] == "not measured: command not merged yet"
    assert result["adds"] == 1 and result["propagation_ms"] > 0
    assert result["exit_code"] == 0
    assert report["uptime_start"] and report["machine"]["cpus"]
