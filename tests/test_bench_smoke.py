"""The benchmark harness runs end to end (tiny sizes; no figure is asserted)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from bench.run import main


def test_bench_quick_smoke(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    code = main(
        [
            "--quick",
            "--only",
            "W1,W2,W4",
            "--backends",
            "memory,sqlite",
            "--plain",
            "--out",
            str(out),
            "--tmpdir",
            str(tmp_path),
        ]
    )
    assert code == 0
    report = json.loads(out.read_text())
    assert set(report["results"]) == {"memory", "sqlite"}
    for backend in ("memory", "sqlite"):
        result = report["results"][backend]
        assert result["W1"]["n"]["median"] == 2_000
        assert result["W2"]["n"]["median"] == 200
        assert result["W4"]["process_per_s"]["median"] > 0
    assert report["results"]["memory"]["W4"]["bytes_per_pending"]["median"] > 0
    assert {t["metric"] for t in report["targets"]} >= {"end_to_end_per_s", "p99_ms"}


def test_bench_peers_not_installed_are_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--peers` without the `bench` extra: every peer is reported skipped, the run
    still succeeds and the JSON says why (the reference chronctl row is left out:
    it needs no extra and would run for real)."""
    from bench import peers

    monkeypatch.setattr(peers, "PEERS", [p for p in peers.PEERS if p.name != peers.CHRONCTL_SPLIT])
    monkeypatch.setattr(peers, "_find_spec", lambda name: None)
    out = tmp_path / "bench.json"
    code = main(
        [
            "--quick",
            "--only",
            "W1",
            "--backends",
            "memory,sqlite",
            "--plain",
            "--peers",
            "--out",
            str(out),
            "--tmpdir",
            str(tmp_path),
        ]
    )
    assert code == 0
    rows = json.loads(out.read_text())["peers"]["rows"]
    assert [(r["peer"], r["backend"]) for r in rows] == [("Huey", "sqlite")]
    assert "huey not installed" in rows[0]["skipped"]


def test_bench_peers_ratios_and_verdicts() -> None:
    """Ratios > 1 mean chronctl is better, for throughput and for latency alike."""
    from bench import peers

    def m(v: float) -> dict[str, float]:
        return {"median": v, "best": v}

    chronctl = {"redis": {"W1": {"end_to_end_per_s": m(4000.0)}, "W2": {"p99_ms": m(2.0)}}}
    rows = [
        {
            "peer": "A",
            "backend": "redis",
            "W1": {"end_to_end_per_s": m(2000.0)},
            "W2": {"p99_ms": m(1.0)},
        },
        {
            "peer": "B",
            "backend": "redis",
            "W1": {"end_to_end_per_s": m(1000.0)},
            "W2": {"p99_ms": m(8.0)},
        },
        {"peer": "C", "backend": "redis", "skipped": "c not installed"},
    ]
    ratios = peers.ratios(chronctl["redis"], rows[0])
    assert ratios["W1_end_to_end_per_s"] == 2.0
    assert ratios["W2_p99_ms"] == 0.5
    verdicts = {v["workload"]: v for v in peers.verdicts(rows, chronctl, {"redis": "redis"})}
    assert verdicts["W1"]["ahead"] and verdicts["W1"]["best_peer"] == "A"
    assert not verdicts["W2"]["ahead"] and verdicts["W2"]["best_peer"] == "A"


async def test_amqp_floor_publishes_and_consumes_every_message() -> None:
    """The RabbitMQ floor script runs against the real broker and cleans up."""
    from bench.amqp_floor import measure

    from .conftest import RABBITMQ_URL, need_service, rabbitmq_reachable

    need_service("RabbitMQ", rabbitmq_reachable(), RABBITMQ_URL.split("@")[-1])
    # it returns only once all 300 messages were consumed and acked
    result = await asyncio.wait_for(measure(RABBITMQ_URL, 300), 60)
    assert (result["publish_per_s"] or 0) > 0 and (result["consume_ack_per_s"] or 0) > 0
    assert (result["publish_cpu_us"] or 0) > 0
