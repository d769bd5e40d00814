"""The perp DEX's liquidation rules on the branches the other tests do not reach (dYdX v4 liquidations.go).

ETH market: IMF 10%, maintenance fraction 50% -> MMF 5%; BTC the same; the insurance fund holds 10,000 USDC.
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
BTC = PerpMarketParams(asset="BTC", initial_margin_fraction=0.10, maintenance_fraction=0.5)


def make_dex(**kw):
    env = Env()
    track_env(env)
    oracles = {"ETH": FixedPrice(2000.0), "BTC": FixedPrice(50_000.0)}
    dex = PerpDex(PerpDexParams(markets=[ETH, BTC], insurance_fund_usd=10_000.0, **kw), oracles, env)
    env.ledger.mint("USDC", "pop", 10_000_000.0, "test")
    env.ledger.mint("USDC", "liq", 10_000_000.0, "test")
    return env, dex, oracles


def test_a_named_market_must_hold_a_position_and_is_liquidated_once_per_block():
    env, dex, orc = make_dex()
    # A: +10 ETH @2000 with 1,760 USDC; V: the other side with 100,000 USDC
    dex.open_accounts("pop", [1760.0, 100_000.0], [[10.0, 0.0], [-10.0, 0.0]], [[2000.0, 0.0], [2000.0, 0.0]])
    dex.open_accounts("liq", [500_000.0], None)
    orc["ETH"].price = 1900.0  # equity 760 < MMR 950
    with pytest.raises(Revert, match=r"^perps: account #0 has no BTC position$"):
        dex.liquidate(0, "liq", market="BTC")
    dex.liquidate(0, "liq", market="ETH")
    with pytest.raises(Revert, match=r"^perps: account #0 ETH already liquidated this block$"):
        dex.liquidate(0, "liq", market="ETH")
    env.ledger.check_conservation()


def test_the_per_block_notional_limit_once_used_up_refuses_the_next_market():
    env, dex, orc = make_dex(max_notional_liquidated_per_block_usd=19_000.0)
    dex.open_accounts("pop", [20_000.0, 1_000_000.0], [[100.0, 2.0], [-100.0, -2.0]])
    dex.open_accounts("liq", [500_000.0], None)
    orc["ETH"].price, orc["BTC"].price = 1900.0, 48_000.0
    # ETH first (190,000 notional): 10% = 19,000 = the whole per-block room -> 10 ETH; nothing left for BTC
    assert dex.liquidate(0, "liq").debt_repaid == pytest.approx(10.0)
    with pytest.raises(Revert, match=r"^perps: account #0 reached the per-block liquidation notional limit$"):
        dex.liquidate(0, "liq", market="BTC")
    env.clock.block += 1  # a new block has a new room
    assert dex.liquidate(0, "liq", market="BTC").debt_asset == "BTC"
    # a room of half a dollar is still room: 0.5 USD of BTC at 48,000 is liquidated
    env, dex, orc = make_dex(max_notional_liquidated_per_block_usd=19_000.5)
    dex.open_accounts("pop", [20_000.0, 1_000_000.0], [[100.0, 2.0], [-100.0, -2.0]])
    dex.open_accounts("liq", [500_000.0], None)
    orc["ETH"].price, orc["BTC"].price = 1900.0, 48_000.0
    assert dex.liquidate(0, "liq").debt_repaid == pytest.approx(10.0)
    assert dex.liquidate(0, "liq", market="BTC").debt_repaid == pytest.approx(0.5 / 48_000.0)


def test_an_account_cannot_liquidate_itself():
    env, dex, orc = make_dex()
    dex.open_accounts("pop", [1760.0, 100_000.0], [[10.0, 0.0], [-10.0, 0.0]], [[2000.0, 0.0], [2000.0, 0.0]])
    orc["ETH"].price = 1900.0
    with pytest.raises(Revert, match=r"^perps: an account cannot liquidate itself$"):
        dex.liquidate(0, "pop", liquidator_account=0)


def test_deleveraging_a_market_without_a_position_reverts_naming_it():
    env, dex, orc = make_dex()
    dex.open_accounts("pop", [1760.0, 100_000.0], [[10.0, 0.0], [-10.0, 0.0]], [[2000.0, 0.0], [2000.0, 0.0]])
    orc["ETH"].price = 1800.0  # equity 1760 − 2000 = −240
    with pytest.raises(Revert, match=r"^perps: account #0 has no BTC position to deleverage$"):
        dex.deleverage(0, "BTC")
    fills = dex.deleverage(0, "ETH")
    assert sum(abs(f.size) for f in fills) == pytest.approx(10.0)


def test_health_exactly_one_is_not_liquidatable_and_the_reason_names_it():
    env, dex, orc = make_dex()
    # A: +10 ETH @2000 with 1,950 USDC; at 1,900 equity = 1950 + 10·(1900 − 2000) = 950 and
    # MMR = 10·1900·5% = 950: health exactly 1 (dYdX liquidates only when TNC < TMMR)
    dex.open_accounts("pop", [1950.0, 100_000.0], [[10.0, 0.0], [-10.0, 0.0]], [[2000.0, 0.0], [2000.0, 0.0]])
    dex.open_accounts("liq", [500_000.0], None)
    orc["ETH"].price = 1900.0
    assert dex.health()[0] == 1.0 and dex.liquidatable().size == 0
    with pytest.raises(Revert, match=r"^perps: account #0 is not liquidatable \(health 1 >= 1\)$"):
        dex.liquidate(0, "liq")
    # one dollar less of equity: 949 / 950 < 1, liquidatable
    orc["ETH"].price = 1899.9  # equity 949, MMR 949.95
    assert dex.liquidatable().tolist() == [0]


def test_with_every_position_liquidated_this_block_the_next_call_names_the_reason():
    env, dex, orc = make_dex()
    dex.open_accounts("pop", [1760.0, 100_000.0], [[10.0, 0.0], [-10.0, 0.0]], [[2000.0, 0.0], [2000.0, 0.0]])
    dex.open_accounts("liq", [500_000.0], None)
    orc["ETH"].price = 1900.0
    # 10% of 19,000 = 1,900 > min 1,000 -> 1 ETH at Pf = 1900·(1 − 0.2·1.5·0.05) = 1871.5, fee
    # min(1.5%·1871.5, 1·(1871.5 − 1824)) = 28.0725: equity 760 − 28.5 − 28.0725 = 703.4275 < MMR 9·95 = 855
    assert dex.liquidate(0, "liq").debt_repaid == pytest.approx(1.0)
    assert dex.equity()[0] == pytest.approx(703.4275)
    with pytest.raises(Revert, match=r"^perps: account #0 has no position left to liquidate this block$"):
        dex.liquidate(0, "liq")


def test_a_liquidator_without_an_account_or_naming_another_holders_account_is_refused_by_name():
    env, dex, orc = make_dex()
    dex.open_accounts("pop", [1760.0, 100_000.0], [[10.0, 0.0], [-10.0, 0.0]], [[2000.0, 0.0], [2000.0, 0.0]])
    orc["ETH"].price = 1900.0
    with pytest.raises(Revert, match=r"^perps: liquidator liq has no account \(open one with collateral first\)$"):
        dex.liquidate(0, "liq")
    with pytest.raises(Revert, match=r"^perps: liq does not own account #1$"):
        dex.liquidate(0, "liq", liquidator_account=1)
    with pytest.raises(Revert, match=r"^perps: account index out of range \[0, 2\)$"):
        dex.liquidate(0, "liq", liquidator_account=2)


def test_deleveraging_an_account_at_exactly_zero_equity_is_refused():
    env, dex, orc = make_dex()
    # A: +10 ETH @2000 with 1,000 USDC; at 1,900 equity = 1000 − 1000 = 0 (TNC < 0 is needed to deleverage)
    dex.open_accounts("pop", [1000.0, 100_000.0], [[10.0, 0.0], [-10.0, 0.0]], [[2000.0, 0.0], [2000.0, 0.0]])
    orc["ETH"].price = 1900.0
    assert dex.equity()[0] == 0.0
    with pytest.raises(Revert, match=r"^perps: account #0 has non-negative equity: nothing to deleverage$"):
        dex.deleverage(0)


def test_a_bankrupt_account_no_offsetting_account_can_take_reverts_by_name():
    env, dex, orc = make_dex(max_insurance_lost_per_block_usd=100.0)
    # A +10 ETH @2000 (1,760); V −10 ETH @2000 and +1 BTC @50,000 (5,000); W −1 BTC (100,000)
    dex.open_accounts(
        "pop",
        [1760.0, 5000.0, 100_000.0],
        [[10.0, 0.0], [-10.0, 1.0], [0.0, -1.0]],
        [[2000.0, 0.0], [2000.0, 50_000.0], [0.0, 50_000.0]],
    )
    orc["ETH"].price, orc["BTC"].price = 1800.0, 40_000.0
    # A: equity 1760 − 2000 = −240, MMR 900, ratio −0.2667 -> ABR 1, Pf = 1800·(1 − 1.5·5%) = 1665,
    # Pb = 1800·(1 + 5%·240/900) = 1824; 10% of 18,000 = 1 ETH: payout 1824 − 1665 = 159 > limit 100 -> ADL.
    # The only short, V, has equity 5000 + 2000 − 10,000 = −3,000: no offsetting account can take it
    assert dex.equity()[1] == pytest.approx(-3000.0)
    pv = dex.preview_liquidation(0)
    assert pv.adl and pv.payout == pytest.approx(159.0) and pv.fill_price == pytest.approx(1824.0)
    with pytest.raises(Revert, match=r"^perps: account #0 needs deleveraging but no offsetting account can take it$"):
        dex.liquidate(0, "liq")
    assert dex.size[0].tolist() == [10.0, 0.0]


def test_accrue_refuses_a_negative_interval_and_accepts_zero():
    env, dex, orc = make_dex()
    with pytest.raises(ValueError, match=r"^dt_seconds must be >= 0, got -1.0$"):
        dex.accrue(-1.0)
    dex.accrue(0.0)
    assert dex.funding_index.tolist() == [0.0, 0.0]


def test_deleveraging_without_a_market_takes_the_largest_position():
    env, dex, orc = make_dex()
    # A: +1 ETH @2000 and +1 BTC @50,000 with 2,000 USDC; V the other side. BTC 47,000: A's equity
    # 2000 − 3000 = −1,000; notionals ETH 2,000 < BTC 47,000, so BTC is closed, at the bankruptcy price
    # Pb = 47,000·(1 + 5%·1,000/2,450) = 47,959.18 (TMMR = 5%·(2,000 + 47,000) = 2,450)
    dex.open_accounts("pop", [2000.0, 100_000.0], [[1.0, 1.0], [-1.0, -1.0]], [[2000.0, 50_000.0]] * 2)
    orc["BTC"].price = 47_000.0
    fills = dex.deleverage(0)
    assert [(f.account, f.market, f.size) for f in fills] == [(1, "BTC", 1.0)]
    assert fills[0].price == pytest.approx(47_000.0 * (1 + 0.05 * 1000.0 / 2450.0))
    assert dex.size[0].tolist() == [1.0, 0.0]


def test_funding_rates_come_from_each_markets_own_taker_imbalance_net_of_a_long_vault():
    env, dex, orc = make_dex()
    # T1 +10 ETH −3 BTC, T2 −4 ETH +1 BTC, vault −6 ETH +2 BTC (nets zero per market). Takers only:
    # ETH long 10, short 4 -> imbalance 6/14; BTC long 1, short 3 -> −0.5 (the vault's long 2 is not counted).
    # GMX v2: R_8h = 2e-8/s · 28,800 s · imbalance = 5.76e-4·imbalance, inside the ±0.3 dYdX clamp
    dex.open_accounts("pop", [100_000.0] * 3, [[10.0, -3.0], [-4.0, 1.0], [-6.0, 2.0]])
    dex.set_vault(2)
    np.testing.assert_allclose(dex.funding_rate_now(), [5.76e-4 * 6 / 14, -5.76e-4 * 0.5], rtol=1e-12)


def test_a_market_without_takers_has_the_default_rate_and_no_warning():
    env, dex, orc = make_dex()
    dex.open_accounts("pop", [100.0], None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 0/0 of an empty market must not even warn
        assert dex.funding_rate_now().tolist() == [0.0, 0.0]


def dex_of(*markets, **kw):
    env = Env()
    track_env(env)
    oracles = {"ETH": FixedPrice(2000.0), "BTC": FixedPrice(50_000.0)}
    dex = PerpDex(PerpDexParams(markets=list(markets), **kw), {m.asset: oracles[m.asset] for m in markets}, env)
    env.ledger.mint("USDC", "pop", 10_000_000.0, "test")
    return env, dex, oracles


def test_funding_ticks_only_in_the_market_whose_interval_has_elapsed_and_volume_adds_up():
    btc2h = PerpMarketParams(
        asset="BTC", initial_margin_fraction=0.10, maintenance_fraction=0.5, funding_interval_seconds=7200.0
    )
    env, dex, orc = dex_of(ETH, btc2h)
    # takers +10 ETH / +1 BTC against the vault: imbalance 1 in both, R_8h = 2e-8·28,800 = 5.76e-4
    dex.open_accounts("pop", [100_000.0, 100_000.0], [[10.0, 1.0], [-10.0, -1.0]])
    dex.set_vault(1)
    dex.accrue(3600.0)
    # ETH ticks once: index += 5.76e-4·(3600/28800)·2000 = 0.144 per ETH; BTC's 2 h interval has not elapsed
    np.testing.assert_allclose(dex.funding_index, [0.144, 0.0], rtol=1e-12, atol=0.0)
    assert (dex.metrics()["funding_rate_8h_ETH"], dex.metrics()["funding_rate_8h_BTC"]) == (pytest.approx(5.76e-4), 0.0)
    dex.accrue(3600.0)
    # ETH again (0.288); BTC now: 5.76e-4·(7200/28800)·50,000 = 7.2 per BTC
    np.testing.assert_allclose(dex.funding_index, [0.288, 7.2], rtol=1e-12)
    # volume = Σ |Δindex|·OI: 0.144·10 + (0.144·10 + 7.2·1) = 10.08
    assert dex.metrics()["funding_volume_usd"] == pytest.approx(10.08, rel=1e-12)
    # a third hour: ETH ticks a third time (0.432), BTC has 1 h of its next 2 h and stays at 7.2
    dex.accrue(3600.0)
    np.testing.assert_allclose(dex.funding_index, [0.432, 7.2], rtol=1e-12)
    m = dex.metrics()  # the last applied rate per market: ETH this hour, BTC an hour ago
    assert (m["funding_rate_8h_ETH"], m["funding_rate_8h_BTC"]) == (pytest.approx(5.76e-4), pytest.approx(5.76e-4))


def test_funding_from_a_taker_position_under_one_unit_and_the_negative_clamp():
    fast = PerpMarketParams(
        asset="ETH", initial_margin_fraction=0.10, maintenance_fraction=0.5, funding_factor_per_second=1e-4
    )
    env, dex, orc = dex_of(ETH)
    # one taker long 0.5 ETH against the vault: imbalance 1, R_8h = 5.76e-4
    dex.open_accounts("pop", [10_000.0, 10_000.0], [[0.5], [-0.5]])
    dex.set_vault(1)
    assert dex.funding_rate_now()[0] == pytest.approx(5.76e-4, rel=1e-12)
    # all takers short at 1e-4/s: −2.88 per 8 h, clamped to −6·(10% − 5%) = −0.3
    env, dex, orc = dex_of(fast)
    dex.open_accounts("pop", [10_000.0, 10_000.0], [[-1.0], [1.0]])
    dex.set_vault(1)
    assert dex.funding_rate_now()[0] == pytest.approx(-0.3)


def test_funding_follows_a_rounding_level_residual_of_an_opened_book():
    env, dex, orc = dex_of(ETH)
    # open_accounts accepts a net residual up to 1e-9 of the gross size: long 1 + 1e-10, short 1, no vault.
    # imbalance = 1e-10 / (2 + 1e-10); R_8h = 5.76e-4 · imbalance = 2.88e-14
    dex.open_accounts("pop", [10_000.0, 10_000.0], [[1.0 + 1e-10], [-1.0]])
    assert dex.funding_rate_now()[0] == pytest.approx(5.76e-4 * 1e-10 / 2.0, rel=1e-5, abs=0.0)


def test_a_flat_account_is_not_liquidatable_with_infinite_health():
    env, dex, orc = make_dex()
    dex.open_accounts("pop", [100.0], None)
    dex.open_accounts("liq", [500_000.0], None)
    with pytest.raises(Revert, match=r"^perps: account #0 is not liquidatable \(health inf >= 1\)$"):
        dex.liquidate(0, "liq")


def test_an_account_at_exactly_zero_equity_the_fund_may_not_pay_for_is_filled_at_the_oracle_price():
    # A: +10 ETH @2000 with 1,000; ETH 1900: equity 0, MMR 950, ratio 0 -> Pb = 1900, ABR 1,
    # Pf = 1900·(1 − 1.5·5%) = 1757.5: the 1 ETH (10%) needs 142.5 from the fund but no insurance may be lost
    # this block. TNC >= 0, so a maker at the bankruptcy price (1900) takes it; nothing is deleveraged
    env, dex, orc = make_dex(max_insurance_lost_per_block_usd=0.0)
    dex.open_accounts("pop", [1000.0, 100_000.0], [[10.0, 0.0], [-10.0, 0.0]], [[2000.0, 0.0], [2000.0, 0.0]])
    dex.open_accounts("liq", [500_000.0], None)
    orc["ETH"].price = 1900.0
    pv = dex.preview_liquidation(0)
    assert (pv.adl, pv.fill_price, pv.bankruptcy_price, pv.payout, pv.fee) == (False, 1900.0, 1900.0, 0.0, 0.0)
    assert pv.fund_delta == 0.0  # the maker at the bankruptcy price leaves the fund untouched
    ev = dex.liquidate(0, "liq")
    assert ev.debt_repaid == pytest.approx(1.0) and ev.liquidator == "liq"
    assert dex.equity()[0] == pytest.approx(0.0, abs=1e-9) and dex.insurance_fund_usd() == 10_000.0


def test_a_payout_equal_to_the_per_block_insurance_limit_is_paid():
    # ETH 1880: A (+10 @2000, 1,760) has equity 560, MMR 940; Pb = 1824, Pf = 1823 (see test_perps): the whole
    # position needs a payout of 10·1 = 10, exactly the per-block limit of 10: the fund pays it
    env, dex, orc = make_dex(
        max_insurance_lost_per_block_usd=10.0,
        max_position_portion_liquidated=1.0,
        max_notional_liquidated_per_block_usd=1e12,
    )
    dex.open_accounts("pop", [1760.0, 100_000.0], [[10.0, 0.0], [-10.0, 0.0]], [[2000.0, 0.0], [2000.0, 0.0]])
    dex.open_accounts("liq", [500_000.0], None)
    orc["ETH"].price = 1880.0
    pv = dex.preview_liquidation(0)
    assert not pv.adl and pv.payout == pytest.approx(10.0) and pv.fill_price == pytest.approx(1823.0)
    assert pv.fund_delta == pytest.approx(-10.0) and pv.fee == 0.0
    dex.liquidate(0, "liq")
    assert dex.insurance_fund_usd() == pytest.approx(10_000.0 - 10.0)


def test_accrue_deleverages_the_market_the_liquidation_preview_picked():
    env, dex, orc = make_dex(max_insurance_lost_per_block_usd=100.0)
    # A: +10 ETH @2000 and +0.1 BTC @50,000 with 2,000; V the other side. ETH 1900: equity 1,000 < MMR
    # 950 + 250; a liquidator takes 1 ETH (10% of 19,000) at a fee, no payout. ETH 1500 in the same block: A is
    # bankrupt (about −2,650, MMR 925). ETH was liquidated this block, so the preview picks BTC: 1,000 USD
    # (0.02 BTC) needs 0.02·50,000·5%·(1.5 − TNC/TMMR) > the 100 allowed -> ADL of the BTC position, not ETH
    dex.open_accounts("pop", [2000.0, 100_000.0], [[10.0, 0.1], [-10.0, -0.1]], [[2000.0, 50_000.0]] * 2)
    dex.open_accounts("liq", [500_000.0], None)
    orc["ETH"].price = 1900.0
    assert dex.liquidate(0, "liq", market="ETH").debt_repaid == pytest.approx(1.0)
    orc["ETH"].price = 1500.0
    dex.accrue(0.0)
    assert [(e.account, e.market, e.size) for e in env.events if isinstance(e, Deleveraged)] == [(1, "BTC", 0.1)]
    assert dex.size[0].tolist() == [9.0, 0.0]
