"""Smoke test of benchmarks/bench_model.py on a tiny case, in-process: it runs both models and writes
the results JSON with every figure present and positive. No timing is asserted (speed goes to benchmarks/)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "model.json"
    result = _load("bench_model").main(
        ["--accounts", "300", "--blocks", "100", "--in-process", "--naive-budget-s", "120", "--out", str(out)]
    )
    return result, json.loads(out.read_text())


def test_bench_model_writes_json_with_machine_info_and_date(tiny):
    _, data = tiny
    assert {"date", "machine", "cases", "comparison", "targets", "memory", "timing"} <= set(data)
    assert {"platform", "cpu_count", "python", "numpy"} <= set(data["machine"])
    assert data["machine"]["cpu_count"] > 0


def test_bench_model_measures_every_model_with_positive_figures(tiny):
    _, data = tiny
    assert sorted(c["model"] for c in data["cases"]) == ["mesa-per-account", "plain-per-account", "vectorised"]
    for c in data["cases"]:
        assert c["accounts"] == 300 and c["blocks"] == 100
        for key in ("wall_s", "cpu_s", "blocks_per_s", "s_per_block", "peak_rss_mb"):
            assert c[key] > 0, (c["model"], key)


def test_tiny_per_account_cases_run_their_whole_horizon_so_nothing_is_extrapolated(tiny):
    _, data = tiny
    for c in data["cases"]:
        assert c["blocks_measured"] == 100 and c["extrapolated"] is False, c["model"]


def test_comparison_is_baseline_cpu_over_engine_cpu(tiny):
    _, data = tiny
    eng = next(c for c in data["cases"] if c["model"] == "vectorised")
    assert sorted(r["baseline"] for r in data["comparison"]) == ["mesa-per-account", "plain-per-account"]
    for row in data["comparison"]:
        other = next(c for c in data["cases"] if c["model"] == row["baseline"])
        assert row["ratio_day"] == pytest.approx(other["cpu_s"] / eng["cpu_s"], rel=0.06, abs=0.06)
