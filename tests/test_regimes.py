"""Margin regimes inside the simulation: the built-in `inter-protocol-pm` scaled down, run under silo and
portfolio margin on the same seed; `defistress compare` end to end; scenario errors for the new tables."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from defistress.scenarios.loader import ScenarioError, load
from defistress.sim.cli.app import app
from defistress.sim.experiments.runs import run_scenario

#: a small, quick version of the built-in: 3 hours, a few hundred accounts per population
SMALL = [
    "run.duration=2h",
    "agents.hedged.accounts=100",
    "agents.borrowers.accounts=150",
    "agents.traders.params.accounts=150",
    "agents.writers.params.accounts=100",
    "agents.delta-hedgers.params.accounts=50",
    "agents.protection-buyers.params.accounts=100",
    "shocks.0.at=20m",
    "shocks.1.at=20m",
    "shocks.1.until=80m",
    "shocks.2.at=20m",
    "shocks.2.until=80m",
]


@pytest.fixture(scope="module")
def runs():
    return {
        r: run_scenario("inter-protocol-pm", seed=3, overrides=[*SMALL, f"margin.regime={r}"])
        for r in ("silo", "portfolio")
    }


def test_both_regimes_conserve_every_token_across_venues(runs):
    for r, res in runs.items():
        assert res.metrics["conservation_ok"], (r, res.metrics["conservation_errors"])


def test_exogenous_path_is_identical_and_reference_identical_until_agents_differ(runs):
    a, b = runs["silo"].timeseries, runs["portfolio"].timeseries
    assert np.array_equal(a["exog_ETH_usd"].to_numpy(), b["exog_ETH_usd"].to_numpy())
    ref_a, ref_b = a["ref_ETH_usd"].to_numpy(), b["ref_ETH_usd"].to_numpy()
    differ = np.flatnonzero(ref_a != ref_b)
    # the reference moves only through agents' net selling, so it can first differ only after the runs'
    # agents first acted differently: a different liquidation volume on a venue or a different pool price
    acts = [c for c in a.columns if c.endswith("_liquidation_volume_usd") or c.startswith("pool_")]
    acted = np.flatnonzero(np.any([a[c].to_numpy() != b[c].to_numpy() for c in acts], axis=0))
    if differ.size:
        assert acted.size and differ[0] > acted[0]
        assert np.array_equal(ref_a[: acted[0] + 1], ref_b[: acted[0] + 1])
    assert np.array_equal(a["oracle_chainlink-eth_usd"].to_numpy()[:5], b["oracle_chainlink-eth_usd"].to_numpy()[:5])


def test_portfolio_regime_requires_less_capital_for_the_same_hedged_books(runs):
    s, p = runs["silo"].metrics["margin"], runs["portfolio"].metrics["margin"]
    assert s["regime"] == "silo" and p["regime"] == "portfolio"
    # identical positions: the silo requirement of the books is the same in both runs
    assert p["capital_required_silo_usd"] == pytest.approx(s["capital_required_silo_usd"], rel=1e-9)
    assert p["capital_required_usd"] < s["capital_required_usd"]
    assert p["capital_posted_usd"] < s["capital_posted_usd"]
    assert p["capital_efficiency"] > 1.0 and s["capital_efficiency"] == pytest.approx(1.0)


def test_silo_regime_liquidates_on_the_venues_and_portfolio_through_the_coordinator(runs):
    s, p = runs["silo"].metrics["margin"], runs["portfolio"].metrics["margin"]
    by_s = {x for v in s["by_venue"].values() for x in v["liquidators"]}
    by_p = {x for v in p["by_venue"].values() for x in v["liquidators"]}
    # under portfolio the venues never liquidate a coordinated row themselves: only the coordinator's keeper does
    assert by_p <= {"coordinator-keeper"}
    assert "coordinator-keeper" not in by_s
    # the crash forces liquidations of the hedged books under the silo rules (the lending legs)
    assert s["liquidations"] > 0 and s["by_venue"]["lend"]["liquidations"] > 0


def test_regime_figures_are_recorded_every_block(runs):
    for res in runs.values():
        ts = res.timeseries
        for c in ("regime_equity_usd", "regime_im_usd", "regime_mm_usd", "regime_shortfall_usd"):
            assert c in ts and ts[c].notna().all()
        assert (ts["regime_mm_usd"] <= ts["regime_im_usd"] + 1e-6).all()


def test_silo_values_the_combined_book_at_the_start_only_unless_asked(runs):
    silo, port = runs["silo"], runs["portfolio"]
    pm_cols = ("regime_pm_mm_usd", "regime_netting_credit_usd", "regime_contingency_usd")
    assert all(c in port.timeseries for c in pm_cols) and not any(c in silo.timeseries for c in pm_cols)
    # the start's netting credit still reaches the summary, and equals the portfolio run's first row (same books)
    start = float(port.timeseries["regime_netting_credit_usd"].iloc[0])
    assert silo.metrics["margin"]["netting_credit_start_usd"] == pytest.approx(start, rel=1e-12) and start > 0
    every = run_scenario(
        "inter-protocol-pm",
        seed=3,
        overrides=[*SMALL, "margin.regime=silo", "run.duration=25m", "margin.silo_pm_figures=every_block"],
    )
    assert all(every.timeseries[c].notna().all() for c in pm_cols)


def test_same_regime_and_seed_give_identical_frames():
    again = run_scenario("inter-protocol-pm", seed=3, overrides=[*SMALL, "margin.regime=portfolio", "run.duration=1h"])
    once = run_scenario("inter-protocol-pm", seed=3, overrides=[*SMALL, "margin.regime=portfolio", "run.duration=1h"])
    pd.testing.assert_frame_equal(again.timeseries, once.timeseries)


def test_compare_cli_writes_side_by_side_files(tmp_path):
    out = tmp_path / "cmp"
    res = CliRunner().invoke(
        app,
        [
            "compare",
            "inter-protocol-pm",
            "--regimes",
            "silo,portfolio",
            "--seeds",
            "1",
            "--out",
            str(out),
            *sum([["--set", s] for s in SMALL + ["run.duration=1h"]], []),
        ],
    )
    assert res.exit_code == 0, res.output
    df = pd.read_csv(out / "compare.csv")
    assert list(df["regime"]) == ["silo", "portfolio"]
    data = json.loads((out / "compare.json").read_text())
    assert data["difference"]["netting_benefit_usd"] > 0
    assert (out / "compare.html").read_text().count("<img") >= 2
    assert (out / "silo-seed1" / "summary.json").exists() and (out / "portfolio-seed1" / "summary.json").exists()


def test_compare_rejects_unknown_regime_and_scenarios_without_multi_venue_accounts(tmp_path):
    res = CliRunner().invoke(app, ["compare", "inter-protocol-pm", "--regimes", "silo,netted", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "allowed" in res.output and "portfolio" in res.output
    res = CliRunner().invoke(app, ["compare", "calm", "--out", str(tmp_path / "c")])
    assert res.exit_code == 2 and "multi_venue" in res.output


@pytest.mark.parametrize(
    "override, needle",
    [
        ("margin.regime=netted", "margin.regime"),
        ("agents.hedged.lending=perps", "agents.hedged.lending"),
        ("margin.coordinator.credit_rate=1.5", "margin.coordinator.credit_rate"),
        ("protocols.options.params.liquidation=auctions", "protocols.options.params.liquidation"),
    ],
)
def test_bad_regime_tables_name_the_key(override, needle):
    with pytest.raises(ScenarioError) as e:
        load("inter-protocol-pm", [override])
    assert needle in str(e.value)


def test_run_report_has_a_margin_regime_section(runs, tmp_path):
    from defistress.sim.experiments.runs import write_run

    out = write_run(runs["portfolio"], tmp_path / "run")
    page = (out / "report.html").read_text()
    assert "Margin regime of the multi-venue accounts" in page and "Capital efficiency" in page
    assert "Liquidation order across venues" in page
