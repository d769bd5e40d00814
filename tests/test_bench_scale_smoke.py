"""Smoke test of benchmarks/bench_scale.py at a tiny size: it writes its JSON with CPU, peak memory and the load
beside every case, and the run it measures is the engine's (same liquidations as a run through the CLI's loader);
no timing is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from defistress.scenarios.loader import load
from defistress.sim.engine.model import StressModel

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def test_bench_scale_writes_cpu_memory_and_load_per_case(tmp_path: Path):
    out = tmp_path / "scale.json"
    cmd = [sys.executable, str(BENCH / "bench_scale.py"), "--accounts", "300", "--blocks", "700", "--out", str(out)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    (case,) = json.loads(out.read_text())["cases"]
    assert case["accounts"] == 300 and case["blocks"] == 700
    assert case["run_cpu_s"] > 0 and case["peak_rss_mib"] >= case["peak_rss_mib_after_build"] > 0
    # the book's arrays: 300 accounts x assets x 8 bytes, twice (scaled collateral and debt)
    model = StressModel(load("eth-crash", ["agents.borrowers.accounts=300", "run.duration=8400"]), 1)
    market = next(p for p in model.protocols.values() if type(p).__name__ == "LendingMarket")
    assert case["book_arrays_mib"] == round(2 * 300 * market.coll_scaled.shape[1] * 8 / 2**20, 3)
    assert len(case["load_before"]) == 3 and len(case["load_after"]) == 3
    model.run()
    assert case["liquidations"] == sum(type(e).__name__ == "Liquidated" for e in model.env.events) > 0
