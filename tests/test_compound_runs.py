"""Whole runs of the Compound built-ins at small sizes: the 26 Nov 2020 DAI oracle replay through Compound v2
and its anchored oracle, and an ETH crash on a Comet market with absorbers, capital and flash-loan buyers;
their network graphs; and scenario errors of the new kinds."""

from __future__ import annotations

import copy
import tomllib

import numpy as np
import pytest

from defistress.scenarios.loader import ScenarioError, load
from defistress.scenarios.registry import builtin_names, builtin_path
from defistress.sim.engine import network
from defistress.sim.engine.model import StressModel

SMALL_DAI = [
    "agents.dai-farmers.accounts=60",
    "agents.eth-dai-borrowers.accounts=150",
    "agents.eth-usdc-borrowers.accounts=150",
    "run.block_seconds=60",
    "run.duration=10h",
]
SMALL_COMET = ["agents.borrowers.accounts=400", "run.block_seconds=30", "run.duration=6h"]


def run(name: str, overrides: list[str], seed: int = 1) -> StressModel:
    m = StressModel(load(name, overrides), seed)
    m.run()
    m.env.ledger.check_conservation()
    return m


@pytest.fixture(scope="module")
def dai_run():
    return run("compound-dai-oracle-2020", SMALL_DAI)


def test_the_builtins_are_listed():
    assert {"compound-dai-oracle-2020", "comet-eth-crash"} <= set(builtin_names())


def test_dai_replay_stores_reports_up_to_the_anchor_band_and_guards_the_rest(dai_run):
    m = dai_run
    dai = m.recorder.frame()["oracle_uav-dai_usd"]
    # reporter up to 1.30 against an anchor near 1.00: stored prices stay within anchor / 0.8 = 1.25
    assert 1.2 < dai.max() <= 1.25 * 1.0002
    assert m.oracles["uav-dai"].guarded > 0
    guarded = [e for e in m.env.events if getattr(e, "name", "") == "price_guarded"]
    assert all(e.detail["reporter_price"] / e.detail["anchor_price"] > 1.25 for e in guarded)
    assert dai.iloc[-1] == pytest.approx(1.0, abs=0.02)


def test_dai_replay_liquidates_dai_borrowers_and_scores_against_the_published_figures(dai_run):
    m = dai_run
    c = m.protocols["compound"]
    assert c.metrics()["liquidated_DAI"] > 1e6
    from defistress.sim.analysis.summary import summarize
    from defistress.sim.experiments.runs import events_frame

    s = summarize(m, m.recorder.frame(), events_frame(m.env.events))
    rows = {r["key"]: r for r in s["scorecard"]}
    assert set(rows) == {"debt_repaid_usd@compound", "debt_repaid_usd@compound:DAI", "liquidation_bonus_usd@compound"}
    assert all(r["simulated"] is not None and r["simulated"] > 0 for r in rows.values())
    # the scorecard's names are the run's own figures: debt repaid is the recorder's volume, DAI's part its metric
    p = s["protocols"]["compound"]
    assert rows["debt_repaid_usd@compound"]["simulated"] == pytest.approx(p["liquidation_volume_usd"])
    ev = [e for e in m.env.events if e.kind == "liquidation" and e.source == "compound" and e.debt_asset == "DAI"]
    assert rows["debt_repaid_usd@compound:DAI"]["simulated"] == pytest.approx(sum(e.debt_repaid_usd for e in ev))
    # valued at the anchored oracle's DAI price (up to $1.25 in the spike): at least the DAI tokens repaid
    assert rows["debt_repaid_usd@compound:DAI"]["simulated"] >= c.metrics()["liquidated_DAI"] * 0.999
    assert rows["liquidation_bonus_usd@compound"]["simulated"] == pytest.approx(s["liquidator_value_leakage_usd"])
    assert s["conservation_ok"]


def test_without_the_reporter_spike_the_dai_liquidations_mostly_vanish(dai_run):
    calm = run("compound-dai-oracle-2020", SMALL_DAI + ["oracles.uav-dai.reporter_schedule=[]"])
    with_spike = dai_run.protocols["compound"].metrics()["liquidated_DAI"]
    without = calm.protocols["compound"].metrics()["liquidated_DAI"]
    assert without < 0.2 * with_spike  # what is left comes from ETH's own fall
    assert calm.oracles["uav-dai"].guarded == 0


def test_a_tighter_anchor_caps_the_stored_dai_price_lower():
    tight = run("compound-dai-oracle-2020", SMALL_DAI + ["oracles.uav-dai.anchor_tolerance=0.1"])
    assert tight.recorder.frame()["oracle_uav-dai_usd"].max() <= 1.0 / 0.9 * 1.002


def test_comet_crash_absorbs_buys_collateral_and_repays_every_flash_loan():
    m = run("comet-eth-crash", SMALL_COMET + ["agents.buyer-capital.capital_usd=1"])
    c, led = m.protocols["comet"], m.env.ledger
    mt = c.metrics()
    assert mt["accounts_absorbed"] > 0 and mt["accounts_unhealthy"] == 0
    names = [getattr(e, "name", e.kind) for e in m.env.events]
    assert names.count("buy_collateral") > 0 and names.count("absorb") > 0
    lender = m.flash_lenders["aave-v3"]
    assert lender.loans > 0 and lender.outstanding == 0.0
    lent = led.mint_reasons[("USDC", "flash_loan")]
    assert lent > 0 and led.burn_reasons[("USDC", "flash_loan_repaid")] == pytest.approx(lent)
    assert led.balance(lender.holder, "USDC") > 0  # fees earned
    pts = sum(p.num_absorbed for p in c.points.values())
    assert pts == mt["accounts_absorbed"]
    assert c.reserves() < c.p.target_reserves  # buying was allowed throughout


def test_comet_run_is_reproducible():
    a = run("comet-eth-crash", SMALL_COMET + ["run.duration=3h"], seed=3).recorder.frame()
    b = run("comet-eth-crash", SMALL_COMET + ["run.duration=3h"], seed=3).recorder.frame()
    assert a.equals(b)


def test_reserves_above_target_stop_collateral_sales():
    m = run("comet-eth-crash", SMALL_COMET + ["protocols.comet.reserves_usd=50000000"])
    c = m.protocols["comet"]
    assert c.metrics()["accounts_absorbed"] > 0
    assert not any(getattr(e, "name", "") == "buy_collateral" for e in m.env.events)
    assert c.metrics()["collateral_reserves_usd"] > 0  # absorbed collateral stays on the balance sheet


def test_network_graph_has_edges_for_the_new_kinds():
    g = network.build_graph(load("comet-eth-crash").scenario)
    edges = {(u, v, k) for u, v, k in g.edges(keys=True)}
    assert ("asset:ETH", "protocol:comet", "collateral_of") in edges
    assert ("protocol:comet", "asset:USDC", "lends") in edges
    assert ("protocol:comet", "venue:uni-eth-usdc", "liquidates_into") in edges
    assert ("agent:absorber", "protocol:comet", "acts_on") in edges
    assert ("agent:buyer-flash", "protocol:comet", "acts_on") in edges
    g2 = network.build_graph(load("compound-dai-oracle-2020").scenario)
    edges2 = {(u, v, k) for u, v, k in g2.edges(keys=True)}
    assert ("asset:USDC", "protocol:compound", "collateral_of") in edges2
    assert ("protocol:compound", "asset:DAI", "lends") in edges2
    assert ("protocol:compound", "oracle:uav-dai", "priced_by") in edges2
    assert ("agent:flash-liquidator", "protocol:compound", "acts_on") in edges2


def test_a_buyer_serving_two_comets_links_them_by_shared_capital():
    raw = tomllib.loads(builtin_path("comet-eth-crash").read_text())
    second = copy.deepcopy(raw["protocols"][0])
    second["id"] = "comet-2"
    raw["protocols"].append(second)
    g = network.build_graph(load(raw).scenario)
    shared = {(u, v) for u, v, _ in network.edges_of(g, "shared_capital")}
    assert shared == {("protocol:comet", "protocol:comet-2"), ("protocol:comet-2", "protocol:comet")}


@pytest.mark.parametrize(
    "override, message",
    [
        ("protocols.comet.collateral.ETH.borrow_collateral_factor=0.95", "must be below liquidate_collateral_factor"),
        ("protocols.comet.store_front_price_factor=1.5", "protocols.comet.store_front_price_factor"),
        ("agents.borrowers.debt='ETH'", "lends only its base 'USDC'"),
        ("agents.absorber.shared_with=['nope']", "is not a comet"),
        ("agents.buyer-flash.funding='loan'", "agents.buyer-flash.funding"),
        ("agents.buyer-flash.flash_fee=0.5", "agents.buyer-flash.flash_fee"),
        ("protocols.comet.oracles={USDC='chainlink-usdc', ETH='chainlink-eth'}", "BTC has no oracle"),
    ],
)
def test_comet_scenario_errors_name_the_key(override, message):
    with pytest.raises(ScenarioError, match=message):
        load("comet-eth-crash", [override])


@pytest.mark.parametrize(
    "override, message",
    [
        ("protocols.compound.close_factor=0.95", "protocols.compound.close_factor"),
        ("protocols.compound.assets.ETH.collateral_factor=0.95", "protocols.compound.assets.ETH.collateral_factor"),
        ("oracles.uav-dai.anchor='pool:nowhere'", "oracles.uav-dai.anchor: unknown venue"),
        ("oracles.uav-dai.anchor_tolerance=1.5", "oracles.uav-dai.anchor_tolerance"),
        (
            "oracles.uav-dai.reporter_schedule=[{at='2h', multiplier=1.1}, {at='1h', multiplier=1.0}]",
            "times must not decrease",
        ),
        ("agents.flash-liquidator.funding='credit'", "agents.flash-liquidator.funding"),
        ("agents.dai-farmers.debt='WBTC'", "WBTC"),
    ],
)
def test_compound_scenario_errors_name_the_key(override, message):
    with pytest.raises(ScenarioError, match=message):
        load("compound-dai-oracle-2020", [override])


def test_a_flash_lender_name_with_two_fees_is_an_error():
    overrides = ["agents.liquidator.funding='both'", "agents.liquidator.flash_lender='dydx'"]
    with pytest.raises(ScenarioError, match="agents.flash-liquidator.flash_fee: flash lender 'dydx' lends at 0.0005"):
        load("compound-dai-oracle-2020", overrides)


def test_health_of_every_comet_row_is_finite_or_inf():
    m = StressModel(load("comet-eth-crash", SMALL_COMET), 1)
    h = m.protocols["comet"].health()
    assert not np.any(np.isnan(h)) and np.all(h[np.isfinite(h)] >= 1.0)
