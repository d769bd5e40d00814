"""OptionLiquidator: starts auctions, bids when the discount pays, unwinds to the market maker, partial mode."""

import mesa
import numpy as np
import pytest
from pydantic import ValidationError

from defistress.agents.option_liquidator import OptionLiquidator, OptionLiquidatorParams
from defistress.agents.tx import BlockView
from defistress.protocols.base import Env, FixedPrice, Revert
from defistress.protocols.options import OptionsVenue, OptionsVenueParams
from defistress.protocols.vol import VolSurfaceParams

DAY = 86_400.0
FROZEN = VolSurfaceParams(skew=0.0, curvature=0.0, level_coupling=0.0, skew_coupling=0.0)


def setup(mode="auction", min_profit=1.0, unwind=True):
    env = Env()
    oracle = FixedPrice(2000.0)
    for h in ("mm", "alice", "liq"):
        env.ledger.mint("USDC", h, 1e7, "test")
    v = OptionsVenue(OptionsVenueParams(vol=FROZEN, liquidation=mode), {"ETH": oracle}, env)
    v.set_market_maker(int(v.open_accounts("mm", [1e6])[0]))
    rows = v.open_accounts("alice", [1100.0])
    put = v.list_instrument("ETH", "put", 1800.0, 7 * DAY)
    v.trade("alice", rows, put, [-4.0])
    agent = OptionLiquidator(
        mesa.Model(),
        OptionLiquidatorParams(id="liq", capital_usd=100_000.0, min_profit_usd=min_profit, unwind=unwind),
        v,
        lambda: 2000.0,
    )
    return v, env, oracle, int(rows[0]), put, agent


def run_block(v, env, agent, seconds=12.0, base_fee=0.0):
    env.clock.block += int(round(seconds / env.clock.block_seconds))
    v.accrue(seconds)
    txs = agent.submit(BlockView(env.clock.block, env.clock.seconds, base_fee, {}))
    for tx in txs:
        try:
            tx.action()
        except Revert:
            pass
    return txs


def test_starts_auction_then_bids_and_unwinds_to_market_maker():
    v, env, oracle, a, put, agent = setup()
    oracle.price = 1700.0
    txs = run_block(v, env, agent)  # first seen this block: latency 1 -> nothing yet
    assert txs == []
    txs = run_block(v, env, agent)
    assert [t.label for t in txs] == [f"start_auction:{v.id}"] and v.auction_state(a).phase == "fast"
    eq0 = v.equity()[agent.row]
    txs = run_block(v, env, agent)
    assert [t.label for t in txs] == [f"bid:{v.id}"]
    assert agent.liquidations == 1
    assert np.allclose(v.qty[agent.row], 0.0)  # unwound at mark in the same transaction
    assert v.equity()[agent.row] > eq0  # the discount was realised
    assert v.auction_state(a).phase == "none"
    env.ledger.check_conservation()
    assert abs(v.accounting_gap_usd()) < 1e-6


def test_no_bid_when_gas_eats_the_discount():
    v, env, oracle, a, put, agent = setup(min_profit=1.0)
    oracle.price = 1700.0
    run_block(v, env, agent)
    run_block(v, env, agent)
    st = v.auction_state(a)
    profit = st.max_fraction * st.equity_usd * (1 - st.discount)
    # gas cost = 600,000 gas x base fee x 1e-9 ETH/gwei x 2000 USD/ETH; pick a base fee worth more than the profit
    base_fee = 2 * profit / (600_000 * 1e-9 * 2000.0)
    txs = run_block(v, env, agent, base_fee=base_fee)
    assert not [t for t in txs if t.label.startswith("bid")]


def test_partial_mode_liquidates_without_auction():
    v, env, oracle, a, put, agent = setup(mode="partial")
    oracle.price = 1700.0
    run_block(v, env, agent)
    txs = run_block(v, env, agent)
    assert [t.label for t in txs] == [f"liquidate:{v.id}"]
    assert v.qty[a, put] == pytest.approx(-3.0)
    assert np.allclose(v.qty[agent.row], 0.0)
    env.ledger.check_conservation()
    assert abs(v.accounting_gap_usd()) < 1e-6


def test_keeps_inventory_without_unwind():
    v, env, oracle, a, put, agent = setup(mode="partial", unwind=False)
    oracle.price = 1700.0
    run_block(v, env, agent)
    run_block(v, env, agent)
    assert v.qty[agent.row, put] == pytest.approx(-1.0)


def test_bad_params_name_the_field():
    with pytest.raises(ValidationError, match="capital_usd"):
        OptionLiquidatorParams(capital_usd=-1.0)
    with pytest.raises(ValidationError, match="bid_fraction"):
        OptionLiquidatorParams(capital_usd=1.0, bid_fraction=2.0)
