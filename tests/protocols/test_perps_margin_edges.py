"""The perp DEX's margin rules at their edges: the initial-margin check of a fill (price away from the oracle,
growing an existing position, open-interest-scaled IMF after the fill, exact equality), realised PnL of a
one-unit position, funding owed in the per-row equity, float edges (flat and subnormal accounts) that must not
even warn, the cached views, and the deleveraging screen and ranking at their limits (dYdX v4 fills and
liquidity_tier.go; deleveraging.go; Hyperliquid ranking).

ETH market: IMF 10%, maintenance fraction 50% -> MMF 5%; the oracle at 2,000 unless moved.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from conftest import track_env

from defistress.protocols.base import Env, FixedPrice, Revert
from defistress.protocols.events import Deleveraged
from defistress.protocols.perps import PerpDex, PerpDexParams, PerpMarketParams

ETH = PerpMarketParams(asset="ETH", initial_margin_fraction=0.10, maintenance_fraction=0.5)


def make_dex(*markets: PerpMarketParams, fund: float = 0.0, **kw):
    env = Env()
    track_env(env)
    markets = markets or (ETH,)
    orc = {m.asset: FixedPrice(2000.0 if m.asset == "ETH" else 1.0) for m in markets}
    dex = PerpDex(PerpDexParams(markets=list(markets), insurance_fund_usd=fund, **kw), orc, env)
    env.ledger.mint("USDC", "pop", 10_000_000.0, "test")
    return env, dex, orc


def with_vault(dex, collateral, sizes, entry=2000.0):
    """Accounts 0.. with `collateral` and ETH `sizes` at `entry`, then a vault (100,000 USDC) taking the other side."""
    n = len(collateral)
    dex.open_accounts("pop", [*collateral, 100_000.0], [[s] for s in sizes] + [[-sum(sizes)]], [[entry]] * (n + 1))
    dex.set_vault(n)


# --- the initial-margin check of a fill -------------------------------------------------------------------------
def test_a_fill_below_the_oracle_counts_the_gain_and_one_above_it_the_loss():
    env, dex, orc = make_dex()
    with_vault(dex, [150.0], [0.0])
    # T buys 1 ETH at 1,900 with the oracle at 2,000: equity after 150 + 100 = 250 >= IMR 200
    dex.trade("pop", [0], "ETH", [1.0], price=1900.0)
    assert dex.equity()[0] == pytest.approx(250.0)
    env, dex, orc = make_dex()
    with_vault(dex, [150.0], [0.0])
    # at 2,100: equity after 150 − 100 = 50 < IMR 200
    with pytest.raises(
        Revert, match=r"^perps: fill would leave account #0 below initial margin \(equity 50 < IMR 200\)$"
    ):
        dex.trade("pop", [0], "ETH", [1.0], price=2100.0)


def test_growing_a_position_needs_the_initial_margin_of_the_whole_new_position():
    env, dex, orc = make_dex()
    with_vault(dex, [1150.0], [5.0])
    # T: 5 ETH (IMR 1,000) with 1,150; one more makes 6 ETH: IMR 1,200 > 1,150
    with pytest.raises(
        Revert, match=r"^perps: fill would leave account #0 below initial margin \(equity 1150 < IMR 1200\)$"
    ):
        dex.trade("pop", [0], "ETH", [1.0])
    dex.trade("pop", [0], "ETH", [0.75])  # 5.75 ETH: IMR 1,150 = equity, allowed
    assert dex.size[0, 0] == 5.75


def test_reducing_or_not_changing_a_position_is_allowed_below_initial_margin():
    env, dex, orc = make_dex()
    with_vault(dex, [700.0], [5.0])
    # T: 5 ETH, equity 700 between MMR 500 and IMR 1,000. Selling 1 (IMR 800 after) only reduces risk; a zero
    # fill changes nothing: neither is checked against the initial margin
    assert dex.trade("pop", [0], "ETH", [0.0]) == 0.0
    assert dex.trade("pop", [0], "ETH", [-1.0]) == pytest.approx(2000.0)
    assert dex.size[:, 0].tolist() == [4.0, -4.0] and dex.collateral[0] == 700.0


def test_a_fill_ending_exactly_at_the_initial_requirement_is_allowed():
    env, dex, orc = make_dex()
    with_vault(dex, [200.0], [0.0])
    # 1 ETH at the oracle: equity 200 and IMR 1·2000·10% = 200 (dYdX reverts only below)
    dex.trade("pop", [0], "ETH", [1.0])
    assert dex.size[0, 0] == 1.0 and dex.free_collateral()[0] == 0.0


def test_the_initial_margin_of_a_fill_uses_the_open_interest_after_it():
    oimf = PerpMarketParams(
        asset="ETH",
        initial_margin_fraction=0.10,
        maintenance_fraction=0.5,
        open_interest_lower_cap_usd=10_000.0,
        open_interest_upper_cap_usd=30_000.0,
    )
    env, dex, orc = make_dex(oimf)
    with_vault(dex, [5000.0], [2.0])
    # OI 2 ETH (4,000 USD, under the lower cap: IMF 10%). T buying 6 makes the long OI 8 ETH = 16,000 USD:
    # IMF = 0.10 + (16,000 − 10,000)/20,000·0.9 = 0.37, T's IMR 8·2,000·0.37 = 5,920 > equity 5,000
    with pytest.raises(
        Revert, match=r"^perps: fill would leave account #0 below initial margin \(equity 5000 < IMR 5920\)$"
    ):
        dex.trade("pop", [0], "ETH", [6.0])
    # 3 more: OI 5 ETH = 10,000 USD, at the lower cap: IMF 10%, IMR 1,000
    dex.trade("pop", [0], "ETH", [3.0])
    assert dex.open_interest()[0] == 5.0


def test_an_upper_open_interest_cap_under_one_dollar_still_scales_the_margin():
    tiny = PerpMarketParams(
        asset="ETH", initial_margin_fraction=0.10, maintenance_fraction=0.5, open_interest_upper_cap_usd=0.5
    )
    env, dex, orc = make_dex(tiny)
    with_vault(dex, [1000.0], [0.0])
    # any open interest at or above 0.5 USD needs an IMF of 1: 1 ETH needs 2,000
    with pytest.raises(
        Revert, match=r"^perps: fill would leave account #0 below initial margin \(equity 1000 < IMR 2000\)$"
    ):
        dex.trade("pop", [0], "ETH", [1.0])


# --- fills ---------------------------------------------------------------------------------------------------------
def test_selling_half_of_a_one_unit_long_realises_half_its_pnl():
    env, dex, orc = make_dex()
    with_vault(dex, [1000.0], [1.0])
    orc["ETH"].price = 2100.0
    # T: +1 ETH @2000; selling 0.5 at 2,100 realises 0.5·100 = 50 and keeps half the entry notional (1,000)
    dex.trade("pop", [0], "ETH", [-0.5])
    assert dex.collateral[0] == pytest.approx(1050.0) and dex.entry_notional[0, 0] == pytest.approx(1000.0)


def test_flat_zero_and_subnormal_accounts_neither_warn_nor_lose_their_values():
    env, dex, orc = make_dex()
    # F1 flat with 100, F0 flat with 0, S +1e-320 ETH with 1,000, T flat with 1,000, W +1e-310 ETH with 1,000,
    # then the vault: MMR of S is 1e-320·2000·5% (subnormal), so its health overflows to inf
    dex.open_accounts(
        "pop",
        [100.0, 0.0, 1000.0, 1000.0, 1000.0, 100_000.0],
        [[0.0], [0.0], [1e-320], [0.0], [1e-310], [-1e-320 - 1e-310]],
    )
    dex.set_vault(5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 0/0, x/0 and overflow of masked rows must not even warn
        h = dex.health()
        assert h[:5].tolist() == [np.inf] * 5  # flat (also with no collateral) or a vanishing position
        # T opens from flat (x/0) beside F0 with a zero fill (0/0); W's subnormal long grows by 1 (overflow)
        dex.trade("pop", [3, 1], "ETH", [1.0, 0.0])
        dex.trade("pop", [4], "ETH", [1.0])
        assert dex.size[[1, 3], 0].tolist() == [0.0, 1.0] and dex.size[4, 0] == 1.0 + 1e-310
        assert dex.health()[3] == pytest.approx(10.0)  # 1,000 / 100


def test_views_are_computed_once_per_state_and_recomputed_after_any_change():
    env, dex, orc = make_dex()
    with_vault(dex, [1000.0], [1.0])
    first = dex.equity()
    assert dex.equity() is first and dex.health() is dex.health()  # same prices, funding and state: cached
    orc["ETH"].price = 2100.0
    assert dex.equity()[0] == pytest.approx(1100.0)  # a price move is seen
    dex.deposit("pop", [0], [50.0])
    assert dex.equity()[0] == pytest.approx(1150.0)  # a state change is seen


def test_funding_owed_counts_in_the_liquidation_health_and_the_margin_of_a_fill():
    fast = PerpMarketParams(
        asset="ETH", initial_margin_fraction=0.10, maintenance_fraction=0.5, funding_factor_per_second=1e-4
    )
    env, dex, orc = make_dex(fast)
    with_vault(dex, [1700.0], [10.0])
    # the only taker is long: 1e-4/s·28,800 s = 2.88 per 8 h, clamped to 6·(10% − 5%) = 0.3; one hourly tick
    # adds 0.3·(1/8)·2,000 = 75 per ETH to the index: T owes 750 (equity 950), the vault is owed 750
    dex.accrue(3600.0)
    assert dex.funding_index[0] == pytest.approx(75.0)
    assert dex.preview_liquidation(0).health == pytest.approx(950.0 / 1000.0)
    # buying 1 more ETH: IMR 11·200 = 2,200 against the equity of 950 (not 1,700)
    with pytest.raises(
        Revert, match=r"^perps: fill would leave account #0 below initial margin \(equity 950 < IMR 2200\)$"
    ):
        dex.trade("pop", [0], "ETH", [1.0])


# --- deleveraging -----------------------------------------------------------------------------------------------
def test_an_offsetting_account_at_zero_equity_takes_no_place_among_those_tried():
    env, dex, orc = make_dex(max_deleveraging_accounts_to_iterate=1)
    # A +10 @2000 (1,760); Z −5 @1600 (1,000); J −5 @2400 (0): notionals 20,000 − 8,000 − 12,000 = 0.
    # ETH 1800: A's equity −240, Pb 1824; Z's equity 1000 − 1000 = 0 (not an offsetting account: only
    # positive equity counts), J's 3,000. The one account tried is J: it takes 5 (losing 5·24 = 120)
    dex.open_accounts("pop", [1760.0, 1000.0, 0.0], [[10.0], [-5.0], [-5.0]], [[2000.0], [1600.0], [2400.0]])
    orc["ETH"].price = 1800.0
    assert dex.equity()[1] == 0.0
    assert [(f.account, f.size) for f in dex.deleverage(0)] == [(2, 5.0)]


def test_with_hundreds_of_offsetting_accounts_the_cap_keeps_the_best_ranked():
    env, dex, orc = make_dex(max_deleveraging_accounts_to_iterate=1)
    # A +257 @2000 with 45,232: ETH 1800 -> equity 45,232 − 51,400 = −6,168, MMR 23,130, Pb = 1800·(1 + 5%·
    # 6,168/23,130) = 1824. S_j (j = 0..256) −1 @2000 with 100 + 10·(256 − j): equity c + 200, all with the
    # same (entry/mark)·notional, so the lowest equity (the last, 300) ranks first and is the one tried
    n = 257
    coll = [45_232.0] + [100.0 + 10.0 * (256 - j) for j in range(n)]
    dex.open_accounts("pop", coll, [[257.0]] + [[-1.0]] * n, [[2000.0]] * (n + 1))
    orc["ETH"].price = 1800.0
    assert [(f.account, f.size) for f in dex.deleverage(0)] == [(257, 1.0)]


def test_the_screen_of_accrue_deleverages_a_bankrupt_account_whose_requirement_is_under_a_dollar():
    # A +1e-4 ETH @2000 with 0.0155; ETH 1800: equity 0.0155 − 0.02 = −0.0045, MMR 1e-4·1800·5% = 0.009,
    # ratio −0.5: the fund would have to pay PMMR·(1.5 + 0.5) = 0.018 > the fund's 0.015 -> deleveraged
    env, dex, orc = make_dex(fund=0.015)
    dex.open_accounts("pop", [0.0155, 100.0], [[1e-4], [-1e-4]], [[2000.0], [2000.0]])
    orc["ETH"].price = 1800.0
    dex.accrue(0.0)
    assert [(e.account, e.size) for e in env.events if isinstance(e, Deleveraged)] == [(1, pytest.approx(1e-4))]
    assert dex.size[0, 0] == 0.0


def test_a_market_with_a_vanishing_maintenance_fraction_does_not_hide_a_bankrupt_account():
    # a second market with MMF 1e-300·1e-10 (valid parameters) where A holds nothing; A's ETH as in the
    # underwater case: equity −240, MMR 900; 10% (1 ETH) needs 1665 vs Pb 1824: 159 > the fund's 100 -> accrue
    # deleverages A's 10 ETH
    dust = PerpMarketParams(asset="DUST", initial_margin_fraction=1e-300, maintenance_fraction=1e-10)
    env, dex, orc = make_dex(ETH, dust, fund=100.0)
    dex.open_accounts("pop", [1760.0, 100_000.0], [[10.0, 0.0], [-10.0, 0.0]], [[2000.0, 1.0]] * 2)
    orc["ETH"].price = 1800.0
    dex.accrue(0.0)
    assert [(e.account, e.size) for e in env.events if isinstance(e, Deleveraged)] == [(1, 10.0)]
