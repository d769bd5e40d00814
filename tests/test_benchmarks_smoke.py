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


def test_bench_model_measures_both_models_with_positive_figures(tiny):
    _, data = tiny
    assert sorted(c["model"] for c in data["cases"]) == ["naive-mesa", "vectorised"]
    for c in data["cases"]:
        assert c["accounts"] == 300 and c["blocks"] == 100
        for key in ("wall_s", "blocks_per_s", "s_per_block", "peak_rss_mb"):
            assert c[key] > 0, (c["model"], key)


def test_tiny_naive_case_runs_its_whole_horizon_so_nothing_is_extrapolated(tiny):
    _, data = tiny
    naive = next(c for c in data["cases"] if c["model"] == "naive-mesa")
    assert naive["blocks_measured"] == 100 and naive["extrapolated"] is False


def test_comparison_is_naive_time_over_vectorised_time(tiny):
    _, data = tiny
    [row] = data["comparison"]
    eng = next(c for c in data["cases"] if c["model"] == "vectorised")
    naive = next(c for c in data["cases"] if c["model"] == "naive-mesa")
    assert row["speedup"] == pytest.approx(naive["wall_s"] / eng["wall_s"], rel=0.06, abs=0.06)


def test_naive_model_draws_the_same_book_as_the_vectorised_population():
    """Same scenario, seed and random stream: the one-agent-per-account book equals the engine's arrays."""
    import numpy as np

    from defistress.scenarios.loader import load
    from defistress.sim.engine.model import StressModel

    naive = _load("naive_model").NaiveLendingModel(
        "eth-crash", seed=3, overrides=["agents.borrowers.accounts=200"], n_blocks=1
    )
    engine = StressModel(load("eth-crash", ["agents.borrowers.accounts=200"]), seed=3)
    market = engine.protocols["lend"]
    coll_usd, debt_usd = market.account_usd()
    agents = sorted(naive.borrowers, key=lambda b: b.unique_id)
    np.testing.assert_allclose([b.collateral_usd() for b in agents], coll_usd, rtol=1e-12)
    np.testing.assert_allclose([b.debt_usd() for b in agents], debt_usd, rtol=1e-12)
    np.testing.assert_allclose([b.hf for b in agents], market.health(), rtol=1e-12)
