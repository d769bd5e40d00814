"""Several protocols in one run: conservation across them, contagion through shared edges, Black Thursday."""

import tomllib

import pytest
from typer.testing import CliRunner

from defistress.scenarios.registry import builtin_path
from defistress.sim.cli.app import app
from defistress.sim.engine import network
from defistress.sim.experiments.runs import run_scenario

SMALL = [
    'run.duration="6h"',
    "agents.vaults.accounts=800",
    "agents.borrowers.accounts=1200",
    "agents.traders.params.accounts=1200",
]


@pytest.fixture(scope="module")
def contagion_run():
    return run_scenario("defi-contagion", seed=3, overrides=SMALL)


def test_every_protocol_of_the_network_reports_and_the_ledger_is_conserved(contagion_run):
    m = contagion_run.metrics
    assert set(m["protocols"]) == {"lend", "maker", "perps"}
    assert m["conservation_ok"], m["conservation_errors"]
    assert m["liquidations"] > 0


def test_cdp_auction_kicks_count_as_its_liquidations(contagion_run):
    ev, m = contagion_run.events, contagion_run.metrics["protocols"]["maker"]
    kicks = ev[(ev["kind"] == "auction_kick") & (ev["source"] == "maker")]
    assert len(kicks) > 0 and m["liquidations"] == len(kicks)
    # the volume is the kicked tabs at the stablecoin's reference price, which stays within 5% of its peg
    assert 0.95 * kicks["tab"].sum() <= m["liquidation_volume_usd"] <= 1.05 * kicks["tab"].sum()
    assert contagion_run.metrics["contagion"]["first_liquidation_s"]["maker"] is not None


def test_shared_edges_appear_in_the_graph_and_the_contagion_block(contagion_run):
    g = contagion_run.graph
    shared = {(u, v) for u, v, _ in network.edges_of(g, "shared_capital")}
    assert ("protocol:lend", "protocol:perps") in shared
    assert ("protocol:lend", "protocol:maker") in {(u, v) for u, v, _ in network.edges_of(g, "exposure")}
    c = contagion_run.metrics["contagion"]
    assert c["exposure_usd"]["lend->maker"] > 0  # DAI minted by the CDP held as lending collateral
    assert c["cascade_depth_by_protocol"].get("lend") == 1
    assert set(c["first_liquidation_s"]) == {"lend", "maker", "perps"}


def _dai_depeg(shared: bool) -> dict:
    """defi-contagion with no ETH shock and DAI pulled to 0.85 for four hours. With `shared`, lending
    borrowers hold the CDP's DAI as collateral; without, the lending market holds only ETH."""
    raw = tomllib.loads(builtin_path("defi-contagion").read_text())
    raw["run"]["duration"] = "6h"
    raw["shocks"] = [{"at": "1h", "until": "5h", "asset": "DAI", "depeg_to": 0.85}]
    raw["market"]["assets"][0]["volatility"] = 0.05
    for a in raw["agents"]:
        if a["kind"] == "borrowers":
            a["accounts"] = 1500
            a["collateral"] = {"ETH": 0.5, "DAI": 0.5} if shared else {"ETH": 1.0}
            a["health_factor"] = {"distribution": "uniform", "low": 1.03, "high": 1.15}
        if a["kind"] == "vaults":
            a["accounts"] = 800
        if a["kind"] == "traders":
            a["params"]["accounts"] = 800
    return raw


def test_a_stablecoin_depeg_reaches_the_lending_market_only_through_the_shared_collateral_edge():
    shared = run_scenario(_dai_depeg(True), seed=1)
    isolated = run_scenario(_dai_depeg(False), seed=1)
    ev_s, ev_i = shared.events, isolated.events
    dai_liqs_shared = ev_s[
        (ev_s["kind"] == "liquidation") & (ev_s["source"] == "lend") & (ev_s["collateral_asset"] == "DAI")
    ]
    lend_liqs_isolated = ev_i[(ev_i["kind"] == "liquidation") & (ev_i["source"] == "lend")] if len(ev_i) else ev_i
    assert len(dai_liqs_shared) > 0
    assert len(lend_liqs_isolated) == 0
    assert "lend->maker" in shared.metrics["contagion"]["exposure_usd"]
    assert "lend->maker" not in isolated.metrics["contagion"]["exposure_usd"]
    assert shared.metrics["conservation_ok"] and isolated.metrics["conservation_ok"]


@pytest.mark.parametrize("scale, zero_bids", [(1.0, True), (0.05, False)])
def test_zero_bids_appear_with_2020_gas_and_disappear_when_gas_is_cheap(scale, zero_bids):
    r = run_scenario("black-thursday-maker", overrides=["agents.vaults.accounts=1500", f"gas.replay.scale={scale}"])
    maker = r.metrics["protocols"]["maker"]
    assert maker["auctions_settled"] > 100
    if zero_bids:
        assert maker["zero_bid_share"] > 0.05
        assert maker["zero_bid_auctions"] > 0
    else:
        assert maker["zero_bid_auctions"] == 0
    assert [row["key"] for row in r.metrics["scorecard"]][:3] == [
        "zero_bid_share@maker",
        "zero_bid_collateral_usd@maker",
        "bad_debt_usd@maker",
    ]
    assert r.metrics["conservation_ok"]


def test_graph_command_writes_a_png(tmp_path):
    out = tmp_path / "net.png"
    res = CliRunner().invoke(app, ["graph", "defi-contagion", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
