"""Smoke tests of benchmarks/bench_speed.py and bench_startup.py at tiny sizes: they run, write their JSON with the
load beside every figure, and the README rows come from that file (no timing is asserted)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_bench_speed_measures_engine_and_floor_and_fits_the_fixed_cost(tmp_path: Path):
    out = tmp_path / "speed.json"
    cmd = [sys.executable, str(BENCH / "bench_speed.py"), "--accounts", "200", "400", "--blocks", "15"]
    subprocess.run([*cmd, "--out", str(out)], check=True, capture_output=True, text=True)
    data = json.loads(out.read_text())
    rows = data["this"]["by_accounts"]
    assert [r["accounts"] for r in rows] == [200, 400] and all(r["blocks"] == 15 for r in rows)
    assert all(r["run_cpu_s_best"] > 0 and r["floor_ms_per_block"] > 0 and r["load_1min"] for r in rows)
    assert set(data["this"]["fit"]) == {"fixed_ms_per_block", "ns_per_account_block"}
    lines = _script("bench_speed").readme_lines(data)
    assert lines[2].startswith("| 200 x 15 |") and lines[3].startswith("| 400 x 15 |")


def test_fit_recovers_a_known_line():
    fit = _script("bench_speed").fit_fixed([{"accounts": n, "ms_per_block": 0.4 + 2e-5 * n} for n in (1e3, 1e4, 1e5)])
    assert abs(fit["fixed_ms_per_block"] - 0.4) < 1e-6 and abs(fit["ns_per_account_block"] - 20.0) < 1e-3


def test_bench_startup_writes_every_case_with_the_load(tmp_path: Path):
    out = tmp_path / "startup.json"
    subprocess.run(
        [sys.executable, str(BENCH / "bench_startup.py"), "--reps", "1", "--out", str(out)],
        check=True,
        capture_output=True,
        text=True,
    )
    data = json.loads(out.read_text())
    best = data["cpu_s_best"]["this"]
    assert set(best) == set(_script("bench_startup").CASES) and all(v > 0 for v in best.values())
    assert data["load_1min"]["max"] >= data["load_1min"]["min"] >= 0
    assert any(r["module"] == "defistress.sim.cli.app" for r in data["top_imports_cli_app"]["this"])


def test_readme_quotes_the_committed_speed_figures():
    data = json.loads((BENCH / "results" / "speed.json").read_text())
    readme = (BENCH.parent / "README.md").read_text()
    for line in _script("bench_speed").readme_lines(data):
        assert line in readme, line
    startup = json.loads((BENCH / "results" / "startup.json").read_text())["cpu_s_best"]
    assert f"costs {startup['this']['defistress --help']:.2f} s of CPU" in readme
    assert f"against {startup['baseline']['defistress --help']:.2f} s for main" in readme


def test_bench_phases_splits_a_block_by_phase_and_part_and_fits_each(tmp_path: Path):
    out = tmp_path / "phases.json"
    cmd = [sys.executable, str(BENCH / "bench_phases.py"), "--accounts", "200", "400", "--blocks", "15"]
    subprocess.run([*cmd, "--out", str(out)], check=True, capture_output=True, text=True)
    data = json.loads(out.read_text())
    cases = data["cases"]
    assert [c["accounts"] for c in cases] == [200, 400] and all(c["blocks"] == 15 for c in cases)
    for c in cases:
        us = c["us_per_block"]
        phases = _script("bench_phases").PHASES
        assert {*phases, "submit:Liquidator", "metrics:lend", "accrue:lend", "pool record", "step (rest)"} <= set(us)
        # the phases and the step's rest make up the run; each phase's parts and its rest make up the phase
        assert abs(sum(us[p] for p in phases) + us["step (rest)"] - c["ms_per_block"] * 1e3) < 1.0
        parts = sum(v for k, v in us.items() if k.startswith("submit:"))
        assert abs(parts + us["phase_decide (rest)"] - us["phase_decide"]) < 0.05  # figures rounded to 0.01 µs
        assert c["calls_per_block"]["phase_market"] == 1.0 and c["load_before"] and c["wrapper_us_per_block"] >= 0
        assert 0 <= c["blocks_with_a_liquidation"] <= c["blocks_with_unhealthy_accounts"] <= c["blocks"]
    assert set(data["fit"]["phase_decide"]) == {"fixed_us_per_block", "ns_per_account_block"}


def test_bench_phases_fit_recovers_a_known_line_per_component():
    cases = [{"accounts": n, "us_per_block": {"a": 300.0 + 0.05 * n, "b": 7.0}} for n in (1e3, 1e4, 1e5)]
    fit = _script("bench_phases").fit_components(cases)
    assert abs(fit["a"]["fixed_us_per_block"] - 300.0) < 1e-6 and abs(fit["a"]["ns_per_account_block"] - 50.0) < 1e-6
    assert abs(fit["b"]["fixed_us_per_block"] - 7.0) < 1e-6 and abs(fit["b"]["ns_per_account_block"]) < 1e-6
