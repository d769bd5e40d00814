"""The crvusd-aug5 built-in and the Curve scenario kinds: listed, validated, wired into the graph, run small."""

import copy
import tomllib

import pytest

from defistress.scenarios.loader import ScenarioError, load
from defistress.scenarios.registry import builtin_path
from defistress.sim.engine import network
from defistress.sim.engine.model import StressModel
from defistress.sim.experiments.runs import run_scenario

RAW = tomllib.loads(builtin_path("crvusd-aug5").read_text())


def _raw(**run):
    raw = copy.deepcopy(RAW)
    raw["run"].update(run)
    return raw


def test_the_builtin_says_it_is_a_real_book_under_a_historic_shock():
    desc = RAW["run"]["description"]
    assert "real book under a historic shock" in desc and "not a replay" in desc


def test_graph_has_the_edges_contagion_metrics_walk():
    g = network.build_graph(load("crvusd-aug5").scenario)
    edges = {(u, v, k) for u, v, k in g.edges(keys=True)}
    assert ("asset:ETH", "protocol:crvusd-weth", "collateral_of") in edges
    assert ("asset:wstETH", "protocol:crvusd-wsteth", "collateral_of") in edges
    assert ("protocol:crvusd-weth", "asset:crvUSD", "issues") in edges
    assert ("protocol:crvusd-weth", "oracle:eth-usd", "priced_by") in edges
    assert ("oracle:eth-usd", "asset:ETH", "sources") in edges
    assert ("protocol:pk-usdc", "venue:crvusd-usdc", "pegs") in edges
    assert ("venue:crvusd-usdc", "asset:crvUSD", "trades") in edges
    assert ("agent:hard-liquidator", "protocol:crvusd-wsteth", "acts_on") in edges
    assert ("protocol:crvusd-weth", "protocol:crvusd-wsteth", "shared_capital") in edges


def test_a_short_calm_run_loads_both_books_and_conserves_every_token():
    result = run_scenario(load(_raw(duration="30m")))
    summary, ts = result.metrics, result.timeseries
    assert summary["conservation_ok"], summary["conservation_errors"]
    weth, wsteth = summary["protocols"]["crvusd-weth"], summary["protocols"]["crvusd-wsteth"]
    assert weth["end_loans_open"] == 255 and wsteth["end_loans_open"] == 240
    assert weth["initial_debt_usd"] == pytest.approx(19.82e6, rel=0.01)  # the book's borrowers at the block
    assert "soft_liquidation_loss_usd" in summary and "soft_liquidation_loss_by_borrower_usd" in weth
    assert ts["crvusd-weth_rate_annual"].iloc[-1] > 0


def test_a_crash_moves_collateral_through_the_bands_and_costs_borrowers():
    raw = _raw(duration="90m")
    raw["market"].pop("replay")  # a scheduled 25 % fall instead of the replayed path
    for a in raw["market"]["assets"]:
        if a["symbol"] in ("ETH", "wstETH"):
            a["volatility"] = 0.0
    raw["shocks"] = [
        {"at": "10m", "until": "70m", "asset": "ETH", "drift_to": -0.25},
        {"at": "10m", "until": "70m", "asset": "wstETH", "drift_to": -0.25},
    ]
    model = StressModel(load(raw))
    weth = model.protocols["crvusd-weth"]
    band0, in_sl0 = weth.amm.active_band, int(weth.in_soft_liquidation().sum())
    model.run()
    model.env.ledger.check_conservation()
    assert weth.amm.active_band >= band0 + 20  # a 25 % fall is about 29 bands of 1 %
    assert int(weth.in_soft_liquidation().sum()) > in_sl0
    assert weth.loss_usd.sum() > 0
    # the AMM followed the oracle: arbitrage kept its price within a few fees of the oracle's
    assert weth.amm.get_p() == pytest.approx(weth.amm.price_oracle(), rel=0.03)


def test_unknown_book_is_named_with_the_allowed_books():
    raw = _raw()
    raw["protocols"][0]["book"] = "crvusd-doge"
    with pytest.raises(ScenarioError, match=r"protocols\.crvusd-weth.*crvusd-doge.*crvusd-wbtc"):
        load(raw)


def test_stableswap_venue_needs_balances_or_a_book():
    raw = _raw()
    raw["venues"][0].pop("book")
    with pytest.raises(ScenarioError, match=r"venues\.crvusd-usdc.*balances"):
        load(raw)


def test_peg_keeper_on_a_constant_product_venue_is_refused_at_build():
    raw = _raw()
    raw["venues"].append({"id": "cp", "pair": ["USDC", "crvUSD"], "depth_usd": 1e6})
    raw["protocols"][2]["pool"] = "cp"
    raw["protocols"][2]["debt"] = 0.0
    raw["protocols"][2]["ceiling"] = 1e6
    with pytest.raises(ValueError, match=r"protocols\.pk-usdc\.pool.*not a stableswap venue.*crvusd-usdc"):
        StressModel(load(raw))


def test_an_oracle_can_read_a_stableswap_pools_ema():
    raw = _raw(duration="2m")
    raw["oracles"].append({"id": "crvusd-ema", "asset": "crvUSD", "source": "twap:crvusd-usdc", "deviation": 0.0})
    raw["protocols"][0]["price_oracle"] = "crvusd-ema"
    model = StressModel(load(raw))
    model.run()
    pool = model.pools["crvusd-usdc"]
    assert model.oracles["crvusd-ema"].price == pytest.approx(pool.price_oracle(), rel=1e-9)
