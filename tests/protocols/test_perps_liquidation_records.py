"""What a perp liquidation records: every field of the Liquidated, insurance-payout and BadDebt events, the
protocol's running totals (fees, insurance paid, liquidated notional, count), the per-block limits summed over
several markets of one account, and the small-amount edges of fees, payouts and write-offs (dYdX v4
liquidations.go; mainnet genesis liquidations_config).

Markets: IMF 10%, maintenance fraction 50% -> MMF 5% unless said. The DEX is named "dydx" and the events are
emitted in block 7 so that a field filled from the wrong source shows.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from conftest import track_env

from defistress.protocols.base import Env, FixedPrice, Revert
from defistress.protocols.events import BadDebt, Deleveraged, Generic
from defistress.protocols.perps import PerpDex, PerpDexParams, PerpMarketParams

WHOLE = dict(max_position_portion_liquidated=1.0, max_notional_liquidated_per_block_usd=1e12)
PRICES = {"ETH": 2000.0, "BTC": 50_000.0, "SOL": 100.0, "DOGE": 0.2}


def market(asset: str) -> PerpMarketParams:
    return PerpMarketParams(asset=asset, initial_margin_fraction=0.10, maintenance_fraction=0.5)


def make_dex(assets=("ETH",), fund: float = 10_000.0, block: int = 7, **kw):
    env = Env()
    track_env(env)
    env.clock.block = block
    orc = {a: FixedPrice(PRICES[a]) for a in assets}
    params = PerpDexParams(markets=[market(a) for a in assets], insurance_fund_usd=fund, **kw)
    dex = PerpDex(params, orc, env, id="dydx")
    env.ledger.mint("USDC", "pop", 10_000_000.0, "test")
    env.ledger.mint("USDC", "liq", 10_000_000.0, "test")
    return env, dex, orc


def fields(ev) -> tuple:
    return dataclasses.astuple(ev)


def events(env, kind) -> list:
    return [e for e in env.events if isinstance(e, kind)]


def book_a_long_10(dex, collateral_a: float = 1760.0):
    """A (#0): +10 ETH @2000 with `collateral_a`; V (#1): −10 ETH @2000 with 100,000 USDC."""
    return dex.open_accounts("pop", [collateral_a, 100_000.0], [[10.0], [-10.0]], [[2000.0], [2000.0]])


# --- events ---------------------------------------------------------------------------------------------------
def test_a_fee_paying_liquidation_event_carries_every_field_and_no_insurance_payout_is_announced():
    env, dex, orc = make_dex(**WHOLE)
    book_a_long_10(dex)
    dex.open_accounts("liq", [500_000.0], None)
    orc["ETH"].price = 1900.0
    # A: equity 1760 − 1000 = 760, MMR 19,000·5% = 950, health 0.8; Pb = 1900·(1 − 5%·0.8) = 1824;
    # ABR 0.2, Pf = 1900·(1 − 0.2·1.5·5%) = 1871.5; fund delta 10·47.5 = 475 > fee min(1.5%·18,715, 475) = 280.725;
    # the liquidator gains 10·(1900 − 1871.5) = 285 marked at the oracle
    ev = dex.liquidate(0, "liq")
    expected = (7, "dydx", 0, "liq", "ETH", "USDC", 10.0, 18_715.0, 280.725, 19_000.0, 18_715.0, 285.0, 0.8)
    assert fields(ev)[:6] == expected[:6]
    assert fields(ev)[6:] == pytest.approx(expected[6:], rel=1e-12)
    assert events(env, Generic) == []  # the fund paid nothing: no insurance_payout event
    assert dex.metrics()["insurance_paid_usd"] == 0.0


def test_an_insurance_payout_event_names_the_block_source_account_market_and_amount():
    env, dex, orc = make_dex(**WHOLE)
    book_a_long_10(dex)
    dex.open_accounts("liq", [500_000.0], None)
    orc["ETH"].price = 1800.0
    # A: equity 1760 − 2000 = −240, MMR 900: ABR 1, Pf = 1800·(1 − 1.5·5%) = 1665, Pb = 1800 + 240/10 = 1824;
    # the fund pays 10·(1824 − 1665) = 1,590
    ev = dex.liquidate(0, "liq")
    (pay,) = events(env, Generic)
    assert (pay.block, pay.source, pay.name) == (7, "dydx", "insurance_payout")
    assert pay.detail == {"account": 0, "market": "ETH", "amount_usd": pytest.approx(1590.0, rel=1e-12)}
    assert pay.row() == {"block": 7, "source": "dydx", "kind": "insurance_payout", **pay.detail}
    assert ev.protocol_fee == 0.0 and ev.collateral_seized_usd == pytest.approx(16_650.0, rel=1e-12)


def test_running_totals_add_up_over_two_liquidations():
    env, dex, orc = make_dex(**WHOLE)
    # A and B: +10 ETH @2000 with 1,760 each; V: −20 ETH with 100,000
    dex.open_accounts("pop", [1760.0, 1760.0, 100_000.0], [[10.0], [10.0], [-20.0]], [[2000.0]] * 3)
    dex.open_accounts("liq", [500_000.0], None)
    orc["ETH"].price = 1900.0
    # each: 10 ETH (19,000 notional at the oracle) at a 280.725 fee (see above)
    dex.liquidate(0, "liq")
    dex.liquidate(1, "liq")
    m = dex.metrics()
    assert m["liquidations"] == 2
    assert m["liquidated_notional_usd"] == pytest.approx(38_000.0, rel=1e-12)
    assert m["liquidation_fees_usd"] == pytest.approx(561.45, rel=1e-12)
    assert m["insurance_fund_usd"] == pytest.approx(10_561.45, rel=1e-12)


def test_a_bankrupt_account_deleveraged_by_liquidate_gets_a_full_event():
    # A: +1 ETH @2200, +0.04 BTC @55,000, +20 SOL @110 (2,200 + 2,200 + 2,200 at entry) with 450 USDC;
    # V the other side with 100,000. At the oracle (2,000 / 50,000 / 100) each notional is 2,000 and A's
    # equity 450 − 600 = −150, MMR 3·100 = 300, ratio −0.5.
    env, dex, orc = make_dex(("ETH", "BTC", "SOL"), max_insurance_lost_per_block_usd=400.5, **WHOLE)
    entry = [[2200.0, 55_000.0, 110.0]] * 2
    dex.open_accounts("pop", [450.0, 100_000.0], [[1.0, 0.04, 20.0], [-1.0, -0.04, -20.0]], entry)
    dex.open_accounts("liq", [500_000.0], None)
    # Whole positions, ABR 1: Pf = P·(1 − 1.5·5%), Pb = P·(1 + 5%·0.5): the fund pays PMMR·(1.5 + 0.5) = 200
    # per market. Paid to Pb, A's ratio stays −0.5 (TNC and TMMR both lose the closed market's share).
    # ETH: 200 <= the 400.5 per-block limit, paid. BTC: 200 <= 400.5 − 200, paid (a tally 1 higher, or one
    # that forgot the first payout, would be wrong here or below).
    for asset in ("ETH", "BTC"):
        ev = dex.liquidate(0, "liq", market=asset)
        assert ev.liquidator == "liq" and ev.protocol_fee == 0.0
    assert [g.detail["amount_usd"] for g in events(env, Generic)] == pytest.approx([200.0, 200.0], rel=1e-9)
    assert dex.metrics()["insurance_paid_usd"] == pytest.approx(400.0, rel=1e-9)
    # SOL: 200 > 400.5 − 400 = 0.5 left this block and A's equity is negative: V takes the 20 SOL at
    # Pb = 100·1.025 = 102.5 (ADL); the event names "dydx:adl" and values the 20 SOL at Pb and at the oracle
    ev = dex.liquidate(0, "liq", market="SOL")
    expected = (7, "dydx", 0, "dydx:adl", "SOL", "USDC", 20.0, 2050.0, 0.0, 2000.0, 2050.0, 0.0, -0.5)
    assert fields(ev)[:6] == expected[:6]
    assert fields(ev)[6:] == pytest.approx(expected[6:], rel=1e-9)
    assert [(d.account, d.market, d.size) for d in events(env, Deleveraged)] == [(1, "SOL", 20.0)]
    assert dex.insurance_fund_usd() == pytest.approx(10_000.0 - 400.0, rel=1e-12)
    assert dex.metrics()["liquidations"] == 2  # the deleveraging is counted by adl_count
    assert dex.metrics()["adl_count"] == 1


def test_liquidate_deleverages_the_market_the_preview_picked_not_the_largest():
    env, dex, orc = make_dex(("ETH", "BTC"), max_insurance_lost_per_block_usd=100.0)
    # A: +10 ETH @2000, +0.1 BTC @50,000 with 2,000; V the other side (100,000)
    dex.open_accounts("pop", [2000.0, 100_000.0], [[10.0, 0.1], [-10.0, -0.1]], [[2000.0, 50_000.0]] * 2)
    dex.open_accounts("liq", [500_000.0], None)
    orc["ETH"].price = 1900.0
    # equity 1,000 < MMR 950 + 250: 10% of 19,000 -> 1 ETH (fee, no payout)
    assert dex.liquidate(0, "liq", market="ETH").debt_repaid == pytest.approx(1.0)
    orc["ETH"].price = 1500.0
    # same block: A is bankrupt (about −2,650; MMR 675 + 250). ETH was liquidated this block, so the preview
    # picks BTC: 1,000 USD (0.02 BTC) needs 0.02·50,000·5%·(1.5 − TNC/TMMR) ≈ 218 > 100 -> ADL of the whole
    # BTC position (0.1), although ETH (9 · 1,500 = 13,500) is the larger position
    ev = dex.liquidate(0, "liq")
    assert (ev.liquidator, ev.debt_asset, ev.debt_repaid) == ("dydx:adl", "BTC", pytest.approx(0.1))
    assert [(d.account, d.market, d.size) for d in events(env, Deleveraged)] == [(1, "BTC", 0.1)]
    assert dex.size[0].tolist() == [9.0, 0.0]


# --- per-block limits summed over one account's markets ------------------------------------------------------------
def test_the_per_block_notional_room_counts_every_earlier_market_of_the_account():
    env, dex, orc = make_dex(("ETH", "BTC", "SOL"), max_notional_liquidated_per_block_usd=2500.0)
    # A: 5 ETH, 0.2 BTC, 100 SOL at the oracle (10,000 each) with 1,200 USDC: equity 1,200 < MMR 1,500.
    dex.open_accounts("pop", [1200.0, 100_000.0], [[5.0, 0.2, 100.0], [-5.0, -0.2, -100.0]])
    dex.open_accounts("liq", [500_000.0], None)
    # each market: 10% of 10,000 = 1,000 = the minimum -> 1,000 USD; the room of 2,500 leaves 500 for SOL
    assert dex.liquidate(0, "liq", market="ETH").debt_repaid == pytest.approx(0.5)
    assert dex.liquidate(0, "liq", market="BTC").debt_repaid == pytest.approx(0.02)
    assert dex.liquidate(0, "liq", market="SOL").debt_repaid == pytest.approx(5.0)  # 500 USD at 100
    assert dex.metrics()["liquidated_notional_usd"] == pytest.approx(2500.0)


def test_a_payout_at_the_tolerance_above_the_block_limit_leaves_a_fee_paying_liquidation_alone():
    # The per-block limit is 47 − 1e-8 and a payout is valid up to limit·(1 + 1e-9) + 1e-9 ≈ 47 + 3.8e-8
    # (IsValidInsuranceFundDelta with rounding tolerance): the 47 of the ETH liquidation below is paid and
    # leaves −1e-8 of room. A later liquidation of the same account that pays a fee asks nothing of the fund:
    # it still fills at its fillable price.
    env, dex, orc = make_dex(("ETH", "BTC"), max_insurance_lost_per_block_usd=47.0 - 1e-8, **WHOLE)
    # A: +10 ETH @2000, +0.02 BTC @50,000 with 1,774.2; ETH 1880: TNC = 1774.2 − 1200 = 574.2,
    # TMMR = 940 + 50 = 990, ratio 0.58, ABR 0.42: ETH Pf = 1880·(1 − 0.42·7.5%) = 1820.78,
    # Pb = 1880·(1 − 5%·0.58) = 1825.48 -> payout 10·4.7 = 47
    dex.open_accounts("pop", [1774.2, 100_000.0], [[10.0, 0.02], [-10.0, -0.02]], [[2000.0, 50_000.0]] * 2)
    dex.open_accounts("liq", [500_000.0], None)
    orc["ETH"].price = 1880.0
    pv = dex.preview_liquidation(0, "ETH")
    assert (pv.adl, pv.payout, pv.fill_price) == (False, pytest.approx(47.0), pytest.approx(1820.78))
    dex.liquidate(0, "liq", market="ETH")
    assert dex.insurance_fund_usd() == pytest.approx(10_000.0 - 47.0)
    # paid to Pb the ratio stays 0.58: A holds 0.02 BTC, TMMR 50, TNC 29. 11 USDC more: TNC 40, ratio 0.8:
    # Pb = 50,000·(1 − 4%) = 48,000, Pf = 50,000·(1 − 0.2·7.5%) = 49,250: delta 0.02·1,250 = 25 > 0, fee
    # min(1.5%·985, 25) = 14.775; A keeps 40 − 0.02·750 − 14.775 = 10.225
    dex.deposit("pop", [0], [11.0])
    pv = dex.preview_liquidation(0, "BTC")
    assert (pv.payout, pv.fee, pv.fill_price) == (0.0, pytest.approx(14.775), pytest.approx(49_250.0))
    ev = dex.liquidate(0, "liq", market="BTC")
    assert ev.collateral_seized == pytest.approx(985.0)
    assert dex.collateral[0] == pytest.approx(10.225)


def test_a_payout_exactly_at_the_tolerance_limit_is_paid():
    # 1880 case of one market: A (+10 @2000, 1,760) equity 560, MMR 940, Pb 1824, Pf 1823 -> payout 10.
    # The limit L is set so that L·(1 + 1e-9) + 1e-9 equals that payout to the last bit: still valid (the
    # check refuses only a payout above it)
    env, dex, orc = make_dex(**WHOLE)
    book_a_long_10(dex)
    orc["ETH"].price = 1880.0
    payout = dex.preview_liquidation(0).payout
    assert payout == pytest.approx(10.0, rel=1e-12)
    limit = (payout - 1e-9) / (1 + 1e-9)
    for _ in range(64):  # step to the float whose tolerance bound is exactly the payout
        bound = limit * (1 + 1e-9) + 1e-9
        if bound == payout:
            break
        limit = float(np.nextafter(limit, np.inf if bound < payout else -np.inf))
    assert limit * (1 + 1e-9) + 1e-9 == payout
    env, dex, orc = make_dex(max_insurance_lost_per_block_usd=limit, **WHOLE)
    book_a_long_10(dex)
    orc["ETH"].price = 1880.0
    pv = dex.preview_liquidation(0)
    assert (pv.adl, pv.payout, pv.fill_price) == (False, payout, pytest.approx(1823.0))


# --- small amounts ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "collateral_a, max_fee, fee, payout, left",
    [
        # P 1900, MMR 950: equity E = collateral − 1,000, health h = E/950; Pb = 1900·(1 − 5%·h),
        # Pf = 1900·(1 − (1 − h)·7.5%), fund delta 10·(Pf − Pb) = 19,000·(0.125·h − 0.075) = 2.5·E − 1,425.
        # E 570.2: delta 0.5 -> fee min(1.5%·10·Pf, 0.5) = 0.5, A keeps 0
        (1570.2, 0.015, 0.5, 0.0, 0.0),
        # no fee allowed: A keeps the 0.5 and is not written off
        (1570.2, 0.0, 0.0, 0.0, 0.5),
        # E 569.8: delta −0.5 -> the fund pays 0.5 and A ends at 0
        (1569.8, 0.015, 0.0, 0.5, 0.0),
    ],
)
def test_fees_payouts_and_remainders_under_one_dollar(collateral_a, max_fee, fee, payout, left):
    env, dex, orc = make_dex(max_liquidation_fee=max_fee, **WHOLE)
    book_a_long_10(dex, collateral_a)
    dex.open_accounts("liq", [500_000.0], None)
    orc["ETH"].price = 1900.0
    ev = dex.liquidate(0, "liq")
    assert ev.protocol_fee == pytest.approx(fee, abs=1e-9)
    m = dex.metrics()
    assert m["liquidation_fees_usd"] == pytest.approx(fee, abs=1e-9)
    assert m["insurance_paid_usd"] == pytest.approx(payout, abs=1e-9)
    assert dex.insurance_fund_usd() == pytest.approx(10_000.0 + fee - payout, abs=1e-9)
    assert dex.collateral[0] == pytest.approx(left, abs=1e-9) and dex.size[0, 0] == 0.0
    assert dex.deficit_usd == pytest.approx(0.0, abs=1e-9)
    assert [g.detail["amount_usd"] for g in events(env, Generic)] == (
        [pytest.approx(payout, abs=1e-9)] if payout else []
    )


def test_a_payout_under_the_absolute_tolerance_is_paid_even_with_no_insurance_allowed_this_block():
    # The 1880 case scaled by 5e-11: A +5e-10 ETH @2000 with 8.8e-8; payout 10·5e-11 = 5e-10 USD <= the
    # 1e-9 USD absolute tolerance of a zero per-block limit: the fund pays it, A fills at Pf = 1823
    env, dex, orc = make_dex(max_insurance_lost_per_block_usd=0.0, **WHOLE)
    dex.open_accounts("pop", [1760.0 * 5e-11, 100_000.0], [[5e-10], [-5e-10]], [[2000.0], [2000.0]])
    dex.open_accounts("liq", [500_000.0], None)
    orc["ETH"].price = 1880.0
    pv = dex.preview_liquidation(0)
    assert (pv.adl, pv.payout, pv.fill_price) == (False, pytest.approx(5e-10, rel=1e-6), pytest.approx(1823.0))
    dex.liquidate(0, "liq")
    assert dex.metrics()["insurance_paid_usd"] == pytest.approx(5e-10, rel=1e-6)


def test_the_fillable_price_of_a_sub_dollar_asset_is_not_floored_at_one_dollar():
    # the 1900-case of ETH priced in DOGE units: 100,000 DOGE @0.2 with 1,760; DOGE 0.19: health 0.8,
    # Pf = 0.19·(1 − 0.2·1.5·5%) = 0.187150 (only a negative Pf is clamped, to 0)
    env, dex, orc = make_dex(("DOGE",), **WHOLE)
    dex.open_accounts("pop", [1760.0, 100_000.0], [[100_000.0], [-100_000.0]], [[0.2], [0.2]])
    dex.open_accounts("liq", [500_000.0], None)
    orc["DOGE"].price = 0.19
    ev = dex.liquidate(0, "liq")
    assert ev.collateral_seized == pytest.approx(18_715.0) and ev.protocol_fee == pytest.approx(280.725)


def test_a_position_worth_under_one_dollar_is_still_picked_for_liquidation():
    # A: +0.00025 ETH @2000 (0.5 USD) with 0.02 USDC; at ETH 2000: equity 0.02 < MMR 0.025 (health 0.8)
    env, dex, orc = make_dex(**WHOLE)
    dex.open_accounts("pop", [0.02, 100.0], [[0.00025], [-0.00025]])
    dex.open_accounts("liq", [500_000.0], None)
    ev = dex.liquidate(0, "liq")  # no market named: the only one with a position
    assert (ev.debt_asset, ev.debt_repaid) == ("ETH", 0.00025) and dex.size[0, 0] == 0.0


def test_ties_in_position_size_are_broken_by_the_market_order():
    assets = ("ETH", "BTC", "SOL", "DOGE")
    env, dex, orc = make_dex(assets)
    for a in assets:
        orc[a].price = 1000.0
    # notionals 1,000 / 2,000 / 3,000 / 3,000 with 360 USDC: MMR 450, health 0.8. SOL and DOGE tie for the
    # largest position; the market listed first (SOL) is liquidated first, DOGE next
    dex.open_accounts("pop", [360.0, 100_000.0], [[1.0, 2.0, 3.0, 3.0], [-1.0, -2.0, -3.0, -3.0]])
    dex.open_accounts("liq", [500_000.0], None)
    assert [dex.liquidate(0, "liq").debt_asset for _ in range(2)] == ["SOL", "DOGE"]


def test_a_position_whose_notional_is_the_cap_is_closed_without_dust():
    # 0.317 ETH at 1,900 is 602.3 USD, under the 1,000 minimum: the cap is the whole notional and the whole
    # 0.317 is closed (0.317·1900/1900 rounds to 0.31699999999999995 in floats: dividing back would leave dust)
    env, dex, orc = make_dex()
    dex.open_accounts("pop", [50.0, 100_000.0], [[0.317], [-0.317]], [[2000.0], [2000.0]])
    dex.open_accounts("liq", [500_000.0], None)
    orc["ETH"].price = 1900.0  # equity 50 − 31.7 = 18.3 < MMR 30.115
    ev = dex.liquidate(0, "liq")
    assert ev.debt_repaid == 0.317 and dex.size[0, 0] == 0.0


def test_a_flat_account_never_keeps_a_negative_rounding_balance():
    # ETH 1777: A's equity 1760 − 2230 = −470, MMR 888.5, ABR 1: Pf = 1777·(1 − 7.5%) = 1643.725,
    # Pb = 1777 + 47 = 1824; the fund pays 10·180.275 = 1,802.75 and A ends at 0 up to float rounding.
    # Whatever is below zero is written off (into the deficit, no event at dust size): never a negative balance
    env, dex, orc = make_dex(**WHOLE)
    book_a_long_10(dex)
    dex.open_accounts("liq", [500_000.0], None)
    orc["ETH"].price = 1777.0
    dex.liquidate(0, "liq")
    assert dex.metrics()["insurance_paid_usd"] == pytest.approx(1802.75, rel=1e-12)
    assert dex.size[0, 0] == 0.0 and dex.collateral[0] >= 0.0
    assert 0.0 <= dex.deficit_usd < 1e-9 and events(env, BadDebt) == []


def test_the_liquidators_margin_check_counts_the_discount_it_buys_at():
    # the 1900 case: the liquidator takes 10 ETH at Pf = 1871.5 with the oracle at 1900, IMR after 10·190 = 1,900.
    # With 1,700 USDC its equity after is 1,700 + 10·28.5 = 1,985 >= 1,900: allowed; with 1,600 it is 1,885
    for collateral, ok in ((1700.0, True), (1600.0, False)):
        env, dex, orc = make_dex(**WHOLE)
        book_a_long_10(dex)
        dex.open_accounts("liq", [collateral], None)
        orc["ETH"].price = 1900.0
        if ok:
            assert dex.liquidate(0, "liq").debt_repaid == 10.0
            assert dex.equity()[2] == pytest.approx(1985.0)
        else:
            msg = r"^dydx: fill would leave account #2 below initial margin \(equity 1885 < IMR 1900\)$"
            with pytest.raises(Revert, match=msg):
                dex.liquidate(0, "liq")


# --- write-offs -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("owed, event", [(5.0, True), (1e-6, False)])
def test_a_write_off_records_its_bad_debt_and_emits_an_event_above_dust(owed, event):
    # T: +1 ETH @2000 with no collateral; ETH 2200: equity 200 > MMR 110, so `owed` may be settled out (the quote
    # balance goes to −owed); T then sells its ETH at its entry price 2000 to the vault: flat with −owed USDC.
    env, dex, orc = make_dex(fund=0.0, block=9)
    dex.open_accounts("pop", [0.0, 100_000.0], [[1.0], [-1.0]], [[2000.0], [2000.0]])
    dex.set_vault(1)
    orc["ETH"].price = 2200.0
    assert dex.settle_out(0, owed, "pop") == owed
    dex.trade("pop", [0], "ETH", [-1.0], price=2000.0)
    assert dex.size[0, 0] == 0.0 and dex.collateral[0] == -owed
    # no fund to pay it: all of it is bad debt; the BadDebt event is emitted only above DUST_USD (1e-6)
    assert dex.write_off(0) == owed
    assert dex.collateral[0] == 0.0 and dex.deficit_usd == owed and dex.metrics()["bad_debt_usd"] == owed
    bad = events(env, BadDebt)
    assert [fields(b) for b in bad] == ([(9, "dydx", 0, "USDC", owed, owed)] if event else [])
