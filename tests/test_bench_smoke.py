"""The benchmark harness runs end to end (tiny sizes; no figure is asserted)."""

from __future__ import annotations

import json
from pathlib import Path

from bench.run import main


def test_bench_quick_smoke(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    code = main(["--quick", "--only", "W1,W2,W4", "--backends", "memory,sqlite", "--plain",
                 "--out", str(out), "--tmpdir", str(tmp_path)])
    assert code == 0
    report = json.loads(out.read_text())
    assert set(report["results"]) == {"memory", "sqlite"}
    for backend in ("memory", "sqlite"):
        result = report["results"][backend]
        assert result["W1"]["n"]["median"] == 2_000
        assert result["W2"]["n"]["median"] == 200
        assert result["W4"]["process_per_s"]["median"] > 0
    assert report["results"]["memory"]["W4"]["bytes_per_pending"]["median"] > 0
    assert {t["metric"] for t in report["targets"]} >= {"process_per_s", "p99_ms"}
