"""The scorecard vocabulary across protocol kinds, on hand-built runs (expected figures computed by hand from
the events below), and the validation of published figures against it."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import pytest

from defistress.protocols.events import AuctionKicked, AuctionSettled, Liquidated
from defistress.scenarios.loader import ScenarioError, load
from defistress.scenarios.schema_scorecard import METRICS, MetricName
from defistress.sim.analysis.scorecard import flat_scorecard, lookup, scorecard_metrics
from defistress.sim.experiments.runs import events_frame


def _liq(block, source, coll, repaid, bonus):
    # Liquidated(block, source, account, liquidator, debt_asset, collateral_asset, debt_repaid, collateral_seized,
    #            protocol_fee, debt_repaid_usd, collateral_seized_usd, bonus_usd, health_before)
    return Liquidated(block, source, 0, "liq", "USDC", coll, repaid, 1.0, 0.0, repaid, repaid + bonus, bonus, 0.9)


def _hand_built():
    """A lending market (ETH and WBTC collateral), a CDP (ETH, chop 1.13) and a perp DEX in one run."""
    events = [
        _liq(1, "lend", "ETH", 1000.0, 50.0),
        _liq(2, "lend", "ETH", 400.0, 20.0),
        _liq(2, "lend", "WBTC", 600.0, 30.0),
        _liq(3, "dex", "USDC", 2000.0, 0.0),
        # AuctionKicked(block, source, auction, account, lot, tab, start_price, keeper, incentive)
        AuctionKicked(1, "cdp", 0, 7, 10.0, 1130.0, 0.0, "k", 0.0),
        AuctionKicked(2, "cdp", 1, 8, 5.0, 565.0, 0.0, "k", 0.0),
        # AuctionSettled(block, source, auction, winner, lot_sold, raised, tab, shortfall, value_usd, zero_bid)
        AuctionSettled(3, "cdp", 0, "k", 10.0, 1130.0, 1130.0, 0.0, 1500.0, False),
        AuctionSettled(3, "cdp", 1, "z", 5.0, 1e-6, 565.0, 565.0, 500.0, True),
    ]
    ts = pd.DataFrame(
        {
            "block": [1, 2, 3],
            "base_fee_gwei": [10.0, 250.0, 40.0],
            "oracle_osm_usd": [150.0, 120.0, 100.0],
            "oracle_cl_usd": [160.0, 110.0, 130.0],
            "ref_DAI_usd": [1.0, 1.0, 1.0],
            "lend_bad_debt_usd": [0.0, 0.0, 75.0],
            "cdp_bad_debt_usd": [0.0, 0.0, 500.0],
            "dex_bad_debt_usd": [0.0, 0.0, 0.0],
        }
    )
    model = SimpleNamespace(
        protocols={
            "lend": SimpleNamespace(),
            "cdp": SimpleNamespace(collateral="ETH", stablecoin="DAI", p=SimpleNamespace(chop=1.13)),
            "dex": SimpleNamespace(),
        },
        protocol_specs={
            "lend": SimpleNamespace(kind="lending", oracles={"ETH": "cl"}),
            "cdp": SimpleNamespace(kind="cdp", oracles={"ETH": "osm"}),
            "dex": SimpleNamespace(kind="perps", oracles={"ETH": "cl"}),
        },
        oracles={"osm": SimpleNamespace(asset="ETH"), "cl": SimpleNamespace(asset="ETH")},
    )
    return scorecard_metrics(model, ts, events_frame(events))


def test_lending_figures_are_sums_of_its_liquidation_calls():
    sm = _hand_built()
    lend = sm["protocols"]["lend"]
    assert lend["liquidation_events"] == 3
    assert lend["debt_repaid_usd"] == pytest.approx(2000.0)  # 1000 + 400 + 600
    assert lend["debt_liquidated_usd"] == pytest.approx(2000.0)
    assert lend["collateral_liquidated_sale_usd"] == pytest.approx(2000.0)  # what the liquidators paid
    assert lend["collateral_liquidated_oracle_usd"] == pytest.approx(2100.0)  # repaid + bonus 50 + 20 + 30
    assert lend["liquidation_bonus_usd"] == pytest.approx(100.0)
    assert lend["auctions"] == 0 and lend["zero_bid_share"] is None  # no auctions: undefined, not 0
    assert lend["bad_debt_usd"] == 75.0
    assert lend["by_asset"]["ETH"]["collateral_liquidated_oracle_usd"] == pytest.approx(1470.0)  # 1050 + 420
    assert lend["by_asset"]["WBTC"]["collateral_liquidated_oracle_usd"] == pytest.approx(630.0)
    assert lend["by_asset"]["USDC"]["debt_repaid_usd"] == pytest.approx(2000.0)  # debt figures: per debt asset
    assert "zero_bid_share" not in lend["by_asset"]["ETH"]
    assert lend["by_asset"]["ETH"]["lowest_oracle_price_usd"] == 110.0  # its oracle `cl`


def test_cdp_figures_count_kicks_as_liquidations_and_value_lots_at_the_kick_oracle_price():
    cdp = _hand_built()["protocols"]["cdp"]
    assert cdp["liquidation_events"] == 2 and cdp["auctions"] == 2 and cdp["auctions_settled"] == 2
    assert cdp["collateral_liquidated_oracle_usd"] == pytest.approx(10 * 150.0 + 5 * 120.0)  # osm at blocks 1, 2
    assert cdp["auction_tab_usd"] == pytest.approx(1695.0)
    assert cdp["debt_liquidated_usd"] == pytest.approx(1500.0)  # due = tab / chop: 1000 + 500
    assert cdp["debt_repaid_usd"] == pytest.approx(1000.0 + 1e-6)  # raised capped at the due
    assert cdp["collateral_liquidated_sale_usd"] == pytest.approx(1130.0 + 1e-6)
    assert cdp["zero_bid_auctions"] == 1
    assert cdp["zero_bid_collateral_usd"] == 500.0
    assert cdp["zero_bid_share"] == pytest.approx(500.0 / 2000.0)
    assert cdp["bad_debt_usd"] == 500.0
    assert cdp["by_asset"]["DAI"]["debt_liquidated_usd"] == pytest.approx(1500.0)  # the debt repaid is DAI
    assert cdp["by_asset"]["ETH"]["zero_bid_share"] == pytest.approx(0.25)
    assert cdp["by_asset"]["ETH"]["lowest_oracle_price_usd"] == 100.0  # its oracle `osm`


def test_perp_liquidations_use_the_same_names_and_totals_add_up():
    sm = _hand_built()
    dex, total = sm["protocols"]["dex"], sm["total"]
    assert dex["liquidation_events"] == 1 and dex["debt_repaid_usd"] == 2000.0 and dex["auctions"] == 0
    assert total["liquidation_events"] == 3 + 2 + 1
    assert total["debt_repaid_usd"] == pytest.approx(2000.0 + 1000.0 + 1e-6 + 2000.0)
    assert total["bad_debt_usd"] == 575.0
    assert total["zero_bid_share"] == pytest.approx(0.25)  # only the CDP has auctions
    assert total["peak_base_fee_gwei"] == 250.0
    assert sm["by_asset"]["ETH"]["lowest_oracle_price_usd"] == 100.0  # the lowest of both ETH oracles


def test_flat_keys_name_metric_protocol_and_asset():
    sm = _hand_built()
    flat = flat_scorecard(sm)
    assert flat["zero_bid_share@cdp"] == pytest.approx(0.25)
    assert flat["debt_repaid_usd@lend:USDC"] == pytest.approx(2000.0)
    assert flat["lowest_oracle_price_usd:ETH"] == 100.0
    assert lookup(sm, "auctions", "cdp") == 2
    assert lookup(sm, "auctions", "cdp", "BTC") is None


def test_the_literal_of_metric_names_is_the_vocabulary():
    assert list(MetricName.__args__) == list(METRICS)  # type: ignore[attr-defined]


def test_an_unknown_published_metric_is_a_keyed_error_listing_the_allowed_names():
    with pytest.raises(ScenarioError) as exc:
        load("black-thursday-maker", {"run.published.0.metric": "maker_zero_bid_share"})
    (line,) = exc.value.errors
    assert line.startswith("run.published.0.metric: invalid value 'maker_zero_bid_share'; allowed:")
    assert all(name in line for name in METRICS)


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("run.published.0.protocol", "makerx", "run.published.0.protocol: unknown protocol 'makerx'"),
        ("run.published.0.asset", "BTC", "run.published.0.asset: unknown asset 'BTC'"),
        ("run.published.1.low", 9e6, "the range [9e+06, 8.32e+06] must contain the value 8.32e+06"),
        ("run.published.2.asset", "ETH", "metric 'bad_debt_usd' has no per-asset figure"),
    ],
)
def test_published_figures_name_existing_protocols_assets_and_coherent_ranges(key, value, expected):
    with pytest.raises(ScenarioError) as exc:
        load("black-thursday-maker", {key: value})
    assert any(expected in e for e in exc.value.errors), exc.value.errors


def test_a_real_run_scores_its_published_figures_from_the_vocabulary():
    from defistress.sim.experiments.runs import run_scenario

    r = run_scenario("black-thursday-maker", 1, ["agents.vaults.accounts=150", "run.block_seconds=120"])
    sm = r.metrics["scorecard_metrics"]
    m = r.metrics["protocols"]["maker"]
    cdp = sm["protocols"]["maker"]
    # independent figures of the same run: the recorder's CDP volume is the auctions' tab, its count the kicks
    assert cdp["auction_tab_usd"] == pytest.approx(m["liquidation_volume_usd"], rel=1e-9)
    assert cdp["liquidation_events"] == m["liquidations"] == cdp["auctions"]
    assert cdp["zero_bid_share"] == pytest.approx(m["zero_bid_share"])
    card = {row["key"]: row for row in r.metrics["scorecard"]}
    assert set(card) == {"zero_bid_share@maker", "zero_bid_collateral_usd@maker", "bad_debt_usd@maker",
                         "auctions@maker", "zero_bid_auctions@maker"}  # fmt: skip
    assert card["auctions@maker"]["simulated"] == cdp["auctions"]
    assert card["bad_debt_usd@maker"]["simulated"] == pytest.approx(m["bad_debt_usd"])
