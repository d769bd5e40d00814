"""The perp liquidator's decision: the profit bound that skips accounts unseen, and its latency bookkeeping."""

from __future__ import annotations

import mesa
import numpy as np
import pytest
from conftest import track_env
from test_traders import crash, make, view

from defistress.agents.perp_liquidator import PerpLiquidator, PerpLiquidatorParams
from defistress.protocols.base import Env, FixedPrice, Revert
from defistress.protocols.perps import PerpDex, PerpDexParams, PerpMarketParams


def two_accounts(fund_usd: float = 1e6):
    """One ETH market (IMF 5%, MMF 3%); account 0 long 10 ETH on 1,000 USD, account 1 short 10 ETH on 1e5 USD."""
    env = Env()
    track_env(env)
    orc = {"ETH": FixedPrice(2000.0)}
    params = PerpDexParams(
        markets=[PerpMarketParams(asset="ETH", initial_margin_fraction=0.05)],
        insurance_fund_usd=fund_usd,
        max_position_portion_liquidated=1.0,
    )
    dex = PerpDex(params, orc, env)
    for holder, usd in (("long", 1000.0), ("short", 1e5)):
        env.ledger.mint("USDC", holder, usd, "test")
    dex.open_accounts(["long", "short"], [1000.0, 1e5], [[10.0], [-10.0]])
    return env, dex, orc


def liquidator(dex, env, **kw) -> PerpLiquidator:
    fields = dict(id="perp-liq", capital_usd=5e6, latency_blocks=0, max_tx_per_block=3, min_profit_usd=1.0)
    fields.update(kw)
    env.ledger.mint("USDC", fields["id"], fields["capital_usd"], "test")
    return PerpLiquidator(mesa.Model(), PerpLiquidatorParams(**fields), dex, eth_price=lambda: 2000.0)


def test_bound_of_a_whole_position_is_its_fillable_price_discount_by_hand():
    # ETH 1950: equity 1000 - 500 = 500 USD, MMR 10·1950·0.03 = 585 USD, ratio 500/585, ABR = 1 - ratio;
    # profit = 10·1950·ABR·1.5·0.03 = 1.5·(585 - 500) = 127.5 USD (the whole position: portion 1, notional < cap)
    env, dex, orc = two_accounts()
    liq = liquidator(dex, env)
    orc["ETH"].price = 1950.0
    assert dex.liquidatable().tolist() == [0]
    assert dex.preview_liquidation(0).liquidator_profit_usd == pytest.approx(127.5, rel=1e-12)
    assert liq._profit_bound(np.array([0]))[0] == pytest.approx(127.5, rel=1e-8)


@pytest.mark.parametrize(("min_profit", "queued"), [(127.0, 1), (128.0, 0)])
def test_accounts_under_the_bound_are_skipped_without_a_preview(min_profit, queued):
    # gas: 500,000 gas x 1e-9 ETH/gwei x 2000 USD/ETH = 1 USD per gwei of base fee; base fee 0 here
    env, dex, orc = two_accounts()
    liq = liquidator(dex, env, min_profit_usd=min_profit)
    orc["ETH"].price = 1950.0
    calls = []
    real = dex.preview_liquidation
    dex.preview_liquidation = lambda a, *args, **kw: calls.append(a) or real(a, *args, **kw)
    txs = liq.submit(view(1, base_fee=0.0))
    assert len(txs) == queued and len(calls) == queued
    # with a base fee of 1 gwei (1 USD of gas) the 127.5 USD discount no longer beats 127 USD: skipped unseen
    calls.clear()
    assert liq.submit(view(2, base_fee=1.0)) == [] and calls == []


def test_bound_holds_at_the_bankruptcy_price_when_the_fund_is_empty():
    # ETH 1920: equity 200, MMR 576, ratio 0.347 < ABR·SMMR = 0.98: the fund would pay, but it is empty and the
    # equity is >= 0, so the liquidator takes the position at the bankruptcy price: profit = equity = 200 USD
    env, dex, orc = two_accounts(fund_usd=0.0)
    liq = liquidator(dex, env)
    orc["ETH"].price = 1920.0
    pv = dex.preview_liquidation(0)
    assert pv.fill_price == pv.bankruptcy_price and pv.liquidator_profit_usd == pytest.approx(200.0, rel=1e-9)
    assert liq._profit_bound(np.array([0]))[0] == pytest.approx(1.5 * (576.0 - 200.0), rel=1e-8)


@pytest.mark.parametrize("fund_usd", [1e6, 2e3, 0.0])
@pytest.mark.parametrize("fall", [0.02, 0.05, 0.12, 0.3])
def test_bound_is_never_below_a_previewed_profit(fall, fund_usd):
    """Every liquidatable account of a two-market book, across crash depths (fillable price, bankruptcy price,
    ADL) and insurance funds: the bound is at least the preview's profit."""
    env, dex, orc, pop = make(n=800)
    env.ledger.transfer("USDC", dex.insurance, "elsewhere", dex.insurance_fund_usd() - fund_usd)
    liq = liquidator(dex, env)
    crash(orc, pop, dex, fall=fall)
    rows = dex.liquidatable()
    assert rows.size > 0
    bound = liq._profit_bound(rows)
    profit = np.zeros(rows.size)
    for k, a in enumerate(rows):
        try:
            profit[k] = dex.preview_liquidation(int(a)).liquidator_profit_usd
        except Revert:
            profit[k] = -np.inf
    assert np.all(bound >= profit) and np.any(profit > 0)
    if fund_usd == 0.0 and fall >= 0.12:
        assert any(dex.preview_liquidation(int(a)).adl for a in rows[np.isfinite(profit)])


def test_latency_restarts_when_an_account_recovers_and_falls_again():
    # latency 1: an account is acted on in the block after the one it was first seen liquidatable; recovering
    # in between forgets the sighting
    env, dex, orc = two_accounts()
    liq = liquidator(dex, env, latency_blocks=1)
    orc["ETH"].price = 1950.0
    assert liq.submit(view(5, base_fee=0.0)) == []  # first seen
    orc["ETH"].price = 2000.0
    assert liq.submit(view(6, base_fee=0.0)) == []  # recovered: forgotten
    orc["ETH"].price = 1950.0
    assert liq.submit(view(7, base_fee=0.0)) == []  # seen anew at block 7
    txs = liq.submit(view(8, base_fee=0.0))
    assert len(txs) == 1 and txs[0].action.args == (0, 0)
    assert liq.first_seen.tolist() == [7, -1, -1]  # account 0 since block 7; the short and the liquidator unseen


def counting(dex) -> list:
    """Record every account `dex.preview_liquidation` is called on."""
    calls: list = []
    real = dex.preview_liquidation
    dex.preview_liquidation = lambda a, *args, **kw: calls.append(a) or real(a, *args, **kw)
    return calls


def test_reads_carry_over_to_the_next_block_while_the_dex_state_is_unchanged():
    # ETH 1950: profit 1.5·(585 − 500) = 127.5 USD; gas 1 USD per gwei, base fee 0: tip = 0.3·127.5 = 38.25 gwei
    env, dex, orc = two_accounts()
    liq = liquidator(dex, env)
    orc["ETH"].price = 1950.0
    calls = counting(dex)
    first = liq.submit(view(1, base_fee=0.0))
    second = liq.submit(view(2, base_fee=0.0))  # a new block, nothing moved: no new preview, the same decision
    assert calls == [0]
    assert [(t.action.args, t.priority_fee_gwei) for t in first] == [((0, 0), pytest.approx(38.25, rel=1e-12))]
    assert [(t.action.args, t.priority_fee_gwei) for t in second] == [((0, 0), pytest.approx(38.25, rel=1e-12))]


def test_a_price_move_between_blocks_is_read_afresh():
    # ETH 1940: equity 1000 − 600 = 400, MMR 10·1940·0.03 = 582: profit 1.5·(582 − 400) = 273 USD, tip 81.9 gwei
    env, dex, orc = two_accounts()
    liq = liquidator(dex, env)
    orc["ETH"].price = 1950.0
    calls = counting(dex)
    liq.submit(view(1, base_fee=0.0))
    orc["ETH"].price = 1940.0
    txs = liq.submit(view(2, base_fee=0.0))
    assert calls == [0, 0]
    assert [t.priority_fee_gwei for t in txs] == [pytest.approx(81.9, rel=1e-12)]


def test_a_position_or_fund_change_between_blocks_is_read_afresh():
    env, dex, orc = two_accounts()
    liq = liquidator(dex, env)
    orc["ETH"].price = 1950.0
    calls = counting(dex)
    liq.submit(view(1, base_fee=0.0))
    # a 500 USD deposit: equity 1000, MMR 585, healthy: nothing to liquidate
    env.ledger.mint("USDC", "long", 500.0, "test")
    dex.deposit("long", [0], [500.0])
    assert liq.submit(view(2, base_fee=0.0)) == [] and calls == [0]
    # the fund drained between blocks (no DEX account changes): the preview is redone
    env2, dex2, orc2 = two_accounts()
    liq2 = liquidator(dex2, env2)
    orc2["ETH"].price = 1950.0
    calls2 = counting(dex2)
    liq2.submit(view(1, base_fee=0.0))
    env2.ledger.transfer("USDC", dex2.insurance, "elsewhere", 1.0)
    liq2.submit(view(2, base_fee=0.0))
    assert calls2 == [0, 0]


def test_an_account_taken_under_a_controller_between_blocks_is_left_alone():
    # a controlled account is not liquidatable by the DEX's own liquidators (the controller liquidates it)
    env, dex, orc = two_accounts()
    liq = liquidator(dex, env)
    orc["ETH"].price = 1950.0
    assert len(liq.submit(view(1, base_fee=0.0))) == 1
    dex.set_controlled([0])
    assert liq.submit(view(2, base_fee=0.0)) == []


def test_latency_counts_over_blocks_where_nothing_moves():
    # latency 2, the DEX state unchanged from block 5 on: first seen at 5, acted on from 7, every block after
    env, dex, orc = two_accounts()
    liq = liquidator(dex, env, latency_blocks=2)
    orc["ETH"].price = 1950.0
    assert liq.submit(view(5, base_fee=0.0)) == []
    assert liq.submit(view(6, base_fee=0.0)) == []
    assert [t.action.args for t in liq.submit(view(7, base_fee=0.0))] == [(0, 0)]
    assert [t.action.args for t in liq.submit(view(8, base_fee=0.0))] == [(0, 0)]
    assert liq.first_seen.tolist() == [5, -1, -1]
    orc["ETH"].price = 2000.0  # recovered: forgotten, and seen anew once it falls again
    assert liq.submit(view(9, base_fee=0.0)) == [] and liq.first_seen.tolist() == [-1, -1, -1]
    orc["ETH"].price = 1950.0
    assert liq.submit(view(10, base_fee=0.0)) == [] and liq.submit(view(11, base_fee=0.0)) == []
    assert [t.action.args for t in liq.submit(view(12, base_fee=0.0))] == [(0, 0)]
