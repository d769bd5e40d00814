"""The README says what the code does: its figures for `eth-crash` at seed 1 come from a real run, its table of
built-in scenarios is what `defistress list` prints, the shocks those descriptions state are the shocks the
scenario files schedule, and its performance figures are the ones in `benchmarks/results/` and
`benchmarks/README.md`. When a figure changes, update the README (and the benchmark files) rather than a test.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from defistress.scenarios.loader import load
from defistress.scenarios.registry import builtin_names, describe_builtins
from defistress.sim.cli.app import app

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
BENCH = ROOT / "benchmarks"


def usd(v: float) -> str:
    """The README's short USD format: $1.01M, $79.1M, $451k (three significant figures)."""
    for div, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"${v / div:.3g}{unit}"
    return f"${v:.3g}"


def section(title: str) -> str:
    """The README's text from the heading `## title` to the next `## ` heading."""
    m = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", README, flags=re.M | re.S)
    assert m, f"README has no section '## {title}'"
    return m.group(1)


def test_usd_format_matches_the_readme_convention():
    assert (usd(1_006_628.6), usd(79_123_000), usd(451_200), usd(3_960_000)) == ("$1.01M", "$79.1M", "$451k", "$3.96M")


@pytest.fixture(scope="module")
def eth_crash_seed1():
    from defistress.sim.experiments.runs import run_scenario

    return run_scenario("eth-crash", seed=1).metrics


def test_readme_eth_crash_table_is_what_seed_1_produces(eth_crash_seed1):
    m = eth_crash_seed1
    p = m["protocols"]["lend"]
    rows = {
        "bad debt": f"{usd(m['bad_debt_usd'])} ({m['bad_debt_pct']:.2f}% of debt)",
        "liquidations / volume": (
            f"{m['liquidations']:,} / {usd(m['liquidation_volume_usd'])} ({m['debt_liquidated_pct']:.1f}% of debt)"
        ),
        "peak liquidations per block": f"{m['peak_liquidations_per_block']}",
        "liquidator value leakage (bonus paid by borrowers)": usd(m["liquidator_value_leakage_usd"]),
        "slippage paid by liquidators selling collateral": usd(m["liquidation_slippage_usd"]),
        "ETH drawdown, exogenous / with liquidation impact": (
            f"{100 * m['exogenous_drawdown']:.1f}% / {100 * m['reference_drawdown']:.1f}%"
        ),
        "peak base fee": f"{m['peak_base_fee_gwei']:.0f} gwei",
    }
    assert p["liquidations"] == m["liquidations"]  # the one market carries every liquidation quoted
    text = section("What a run produces")
    for metric, value in rows.items():
        assert f"| {metric} | {value} |" in text, (metric, value)
    # the scheduled shock the paragraph above the table states
    assert f"then drifting to −{-100 * scheduled_move('eth-crash', 'ETH'):.0f}% by 6 h" in text


def _readme_builtin_table() -> dict[str, str]:
    text = section("Built-in scenarios")
    return dict(re.findall(r"^\| `([a-z0-9-]+)` \| (.+?) \|$", text, flags=re.M))


def test_readme_lists_every_builtin_scenario_with_the_description_defistress_list_prints():
    assert _readme_builtin_table() == dict(describe_builtins())
    out = CliRunner().invoke(app, ["list"], env={"COLUMNS": "400"})
    assert out.exit_code == 0, out.output
    for name, desc in describe_builtins():
        assert re.search(rf"{re.escape(name)}\s+.*{re.escape(desc)}", out.output), name


def scheduled_move(name: str, asset: str) -> float:
    """The asset's fall the scenario schedules: every jump and drift compounded (sim.engine.market applies
    log1p(jump) at `at` and log1p(drift_to) spread over the window), as a fraction."""
    s = load(name).scenario
    factor = 1.0
    for shock in s.shocks:
        if shock.asset == asset:
            factor *= (1 + (shock.jump or 0.0)) * (1 + (shock.drift_to or 0.0))
    return factor - 1.0


@pytest.mark.parametrize("name", builtin_names())
def test_a_builtin_description_states_the_shock_its_file_schedules(name):
    desc = dict(describe_builtins())[name]
    stated = re.findall(r"\b([A-Z]{2,5}) -(\d+)%", desc)
    s = load(name).scenario
    if s.market.replay is not None:
        assert not stated, f"{name} replays real prices: its description should not state a scheduled fall"
        return
    for asset, pct in stated:
        move = scheduled_move(name, asset)
        assert abs(100 * -move - int(pct)) <= 0.5, f"{name}: says {asset} -{pct}%, schedules {100 * move:.1f}%"
    if not stated:
        assert all(shock.jump is None and shock.drift_to is None for shock in s.shocks), name


def test_readme_performance_figures_are_the_committed_benchmark_results():
    model = json.loads((BENCH / "results" / "model.json").read_text())
    margin = json.loads((BENCH / "results" / "margin.json").read_text())
    case = {(c["model"], c["accounts"]): c for c in model["cases"]}
    speed = {c["accounts"]: c for c in model["comparison"]}
    v10, v100 = case[("vectorised", 10_000)], case[("vectorised", 100_000)]
    n10, n100 = case[("naive-mesa", 10_000)], case[("naive-mesa", 100_000)]
    assert not n10["extrapolated"] and n100["extrapolated"]
    hours = n100["blocks_measured"] * model["block_seconds"] / 3600
    rows = [
        f"| 10,000 accounts, one day | {v10['wall_s']:.1f} s ({v10['blocks_per_s']:.0f} blocks/s), "
        f"{v10['peak_rss_mb']:.0f} MB | {n10['wall_s']:.0f} s measured | {speed[10_000]['speedup']:.0f}× |",
        f"| 100,000 accounts, one day | {v100['wall_s']:.1f} s ({v100['blocks_per_s']:.0f} blocks/s), "
        f"{v100['peak_rss_mb']:.0f} MB | ≥ {n100['wall_s']:,.0f} s (extrapolated from {hours:.0f} h) | "
        f"≥ {speed[100_000]['speedup']:.0f}× |",
        f"| scenario-grid portfolio margin, {margin['accounts']:,} accounts × "
        f"{margin['positions'] // margin['accounts']} options × {margin['scenarios']} scenarios | "
        f"{margin['seconds']:.2f} s | | |",
    ]
    text = section("Performance")
    for row in rows:
        assert row in text, row
    # benchmarks/README.md's table of latest figures holds the same wall times and speedups
    bench = (BENCH / "README.md").read_text()
    for c in (v10, v100):
        assert f"| vectorised | {c['accounts']:,} | {c['wall_s']:.1f} | {c['cpu_s']:.1f} |" in bench
    assert f"| {n10['wall_s']:.1f} |" in bench and f"≥ {n100['wall_s']:,.0f}" in bench
    assert f"**{speed[10_000]['speedup']:.0f}×**" in bench and f"**≥ {speed[100_000]['speedup']:.0f}×**" in bench
