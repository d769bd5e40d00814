"""Controller (Euler v2 EVC) entry points of the lending market and the perp DEX, hand-computed."""

from __future__ import annotations

import numpy as np
import pytest

from defistress.protocols.base import Env, FixedPrice, Revert
from defistress.protocols.events import BadDebt, Liquidated
from defistress.protocols.lending import AssetParams, LendingMarket
from defistress.protocols.perps import PerpDex, PerpDexParams, PerpMarketParams

ETH_L = AssetParams("ETH", ltv=0.825, liquidation_threshold=0.86, liquidation_bonus=0.05)
USDC_L = AssetParams("USDC", ltv=0.865, liquidation_threshold=0.885, liquidation_bonus=0.048)
# perps: IMF 10%, maintenance fraction 50% -> MMF 5%
ETH_P = PerpMarketParams(asset="ETH", initial_margin_fraction=0.10, maintenance_fraction=0.5)


# --- lending -------------------------------------------------------------------------------------------
def lending():
    """Account 0: 10 ETH collateral @2000, 16,000 USDC debt (HF = 0.86*20000/16000 = 1.075)."""
    env = Env()
    eth = FixedPrice(2000.0)
    m = LendingMarket("lend", [ETH_L, USDC_L], {"ETH": eth, "USDC": FixedPrice(1.0)}, env)
    led = env.ledger
    led.mint("USDC", "lenders", 1e6, "t")
    m.supply_liquidity("lenders", "USDC", 1e6)
    led.mint("ETH", "user", 10.0, "t")
    led.mint("USDC", "liq", 1e6, "t")
    a = m.add_accounts(1)
    m.supply("user", a, "ETH", np.array([10.0]))
    m.borrow("user", a, "USDC", np.array([16_000.0]))
    return env, m, eth


def test_lending_controlled_rows_are_not_liquidatable_by_the_market():
    env, m, eth = lending()
    eth.price = 1500.0  # HF = 0.86*15000/16000 = 0.80625
    assert list(m.liquidatable()) == [0]
    m.set_controlled([0])
    assert m.controlled.tolist() == [True]
    assert m.liquidatable().size == 0
    with pytest.raises(Revert, match="controlled"):
        m.liquidate(0, "ETH", "USDC", 1000.0, "liq")
    m.set_controlled([0], False)
    assert list(m.liquidatable()) == [0]


def test_lending_controlled_array_grows_with_new_accounts():
    env, m, _ = lending()
    m.set_controlled([0])
    m.add_accounts(2)
    assert m.controlled.tolist() == [True, False, False]


def test_lending_controller_close_repays_fraction_and_seizes_with_penalty():
    env, m, eth = lending()
    m.set_controlled([0])
    eth.price = 1500.0
    ev = m.controller_close(0, 0.5, "liq", penalty=0.02)
    # repay 0.5*16000 = 8000 USDC; seize 8000*1.02 = 8160 USD = 5.44 ETH @1500
    assert isinstance(ev, Liquidated)
    assert ev.debt_repaid == pytest.approx(8000.0) and ev.collateral_seized == pytest.approx(5.44)
    assert ev.bonus_usd == pytest.approx(160.0) and ev.protocol_fee == 0.0
    assert ev.health_before == pytest.approx(0.80625)
    assert m.debt()[0, 1] == pytest.approx(8000.0)
    assert m.collateral()[0, 0] == pytest.approx(4.56)
    assert env.ledger.balance("liq", "ETH") == pytest.approx(5.44)
    assert env.ledger.balance("liq", "USDC") == pytest.approx(1e6 - 8000.0)
    env.ledger.check_conservation()


def test_lending_controller_close_caps_repayment_by_collateral_and_leaves_debt_for_write_off():
    env, m, eth = lending()
    eth.price = 700.0  # collateral 7000 USD < debt 16000
    ev = m.controller_close(0, 1.0, "liq", penalty=0.0)
    # repay only what the collateral pays for: 7000 USDC for all 10 ETH; 9000 USDC debt left
    assert ev.debt_repaid == pytest.approx(7000.0) and ev.collateral_seized == pytest.approx(10.0)
    assert m.collateral()[0, 0] == 0.0
    assert m.debt()[0, 1] == pytest.approx(9000.0)
    assert m.controller_close(0, 1.0, "liq") is None  # nothing left to seize
    bad = m.write_off(0)
    assert bad == pytest.approx(9000.0)
    assert m.debt()[0, 1] == 0.0 and m.deficit[1] == pytest.approx(9000.0)
    assert isinstance(env.events[-1], BadDebt) and env.events[-1].amount_usd == pytest.approx(9000.0)
    env.ledger.check_conservation()


def test_lending_write_off_is_zero_while_collateral_is_left():
    env, m, eth = lending()
    assert m.write_off(0) == 0.0
    assert m.debt()[0, 1] == pytest.approx(16_000.0)


def test_lending_controller_close_reverts_when_liquidator_cannot_pay():
    env, m, _ = lending()
    with pytest.raises(Revert, match="cannot repay"):
        m.controller_close(0, 0.5, "nobody", penalty=0.02)
    assert m.debt()[0, 1] == pytest.approx(16_000.0)
    with pytest.raises(Revert, match="fraction"):
        m.controller_close(0, 0.0, "liq")


def test_lending_settle_out_moves_stable_collateral_capped_by_equity():
    env, m, eth = lending()
    env.ledger.mint("USDC", "user", 3000.0, "t")
    m.supply("user", np.array([0]), "USDC", np.array([3000.0]))
    # equity = 20000 + 3000 - 16000 = 7000; stable collateral 3000 -> at most 3000
    assert m.settle_out(0, 5000.0, "hold") == pytest.approx(3000.0)
    assert env.ledger.balance("hold", "USDC") == pytest.approx(3000.0)
    assert m.collateral()[0, 1] == pytest.approx(0.0)
    assert m.settle_out(0, 100.0, "hold") == 0.0  # ETH is not settled out
    env.ledger.check_conservation()


def test_lending_settle_in_repays_stable_debt():
    env, m, _ = lending()
    env.ledger.mint("USDC", "hold", 20_000.0, "t")
    assert m.settle_in(0, 1000.0, "hold") == pytest.approx(1000.0)
    assert m.debt()[0, 1] == pytest.approx(15_000.0)
    assert m.settle_in(0, 1e9, "hold") == pytest.approx(15_000.0)  # capped at the debt
    env.ledger.check_conservation()


# --- perps ---------------------------------------------------------------------------------------------
def perps(fund=0.0):
    """A: -5 ETH @2000 with 500 USDC (#0); vault +5 ETH with 100,000 (#1); liquidator 'liq' with 100,000 (#2)."""
    env = Env()
    eth = FixedPrice(2000.0)
    dex = PerpDex(PerpDexParams(markets=[ETH_P], insurance_fund_usd=fund), {"ETH": eth}, env)
    env.ledger.mint("USDC", "pop", 1e6, "t")
    env.ledger.mint("USDC", "liq", 1e6, "t")
    dex.open_accounts("pop", [500.0, 100_000.0], [[-5.0], [5.0]], [[2000.0], [2000.0]])
    dex.set_vault(1)
    dex.open_accounts("liq", [100_000.0], None)
    return env, dex, eth


def test_perps_controlled_rows_are_not_liquidatable_or_deleveraged():
    env, dex, eth = perps()
    eth.price = 2200.0  # A equity = 500 - 1000 = -500
    assert 0 in dex.liquidatable()
    dex.set_controlled([0])
    assert 0 not in dex.liquidatable()
    with pytest.raises(Revert, match="controlled"):
        dex.liquidate(0, "liq")
    dex.accrue(12.0)  # auto-deleveraging skips controlled rows
    assert dex.size[0, 0] == -5.0


def test_perps_controller_close_moves_fraction_at_oracle_and_pays_penalty():
    env, dex, eth = perps()
    dex.set_controlled([0])
    ev = dex.controller_close(0, 0.5, "liq", liquidator_row=2, penalty=0.02)
    # 2.5 ETH @2000 = 5000 USD notional; penalty 0.02*5000 = 100 USD from A's collateral to the liquidator
    assert dex.size[0, 0] == pytest.approx(-2.5) and dex.size[2, 0] == pytest.approx(-2.5)  # the short moves over
    assert ev.debt_repaid == pytest.approx(2.5) and ev.debt_repaid_usd == pytest.approx(5000.0)
    assert ev.bonus_usd == pytest.approx(100.0)
    assert dex.equity()[0] == pytest.approx(400.0)
    assert dex.equity()[2] == pytest.approx(100_100.0)
    assert dex.accounting_gap_usd() == pytest.approx(0.0, abs=1e-6)
    env.ledger.check_conservation()


def test_perps_controller_close_penalty_capped_at_positive_equity():
    env, dex, eth = perps()
    eth.price = 2100.0  # A equity = 500 - 500 = 0
    ev = dex.controller_close(0, 1.0, "liq", penalty=0.02)
    assert ev.bonus_usd == 0.0
    assert dex.size[0, 0] == 0.0 and dex.equity()[0] == pytest.approx(0.0, abs=1e-9)
    assert dex.controller_close(0, 1.0, "liq") is None


def test_perps_controller_close_reverts_when_liquidator_below_initial_margin():
    env, dex, eth = perps()
    env.ledger.mint("USDC", "poor", 10.0, "t")
    dex.open_accounts("poor", [10.0], None)  # #3: 10 USDC cannot carry 5 ETH (IM 1000)
    before = (dex.size.copy(), dex.collateral.copy())
    with pytest.raises(Revert, match="initial margin"):
        dex.controller_close(0, 1.0, "poor", penalty=0.0)
    np.testing.assert_array_equal(dex.size, before[0])
    np.testing.assert_array_equal(dex.collateral, before[1])


def test_perps_settle_out_keeps_maintenance_and_settle_in_adds_collateral():
    env, dex, eth = perps()
    eth.price = 1800.0  # A equity = 500 + 1000 = 1500; MMR = 5*1800*0.05 = 450
    assert dex.settle_out(0, 5000.0, "hold") == pytest.approx(1050.0)
    assert dex.equity()[0] == pytest.approx(450.0)
    assert dex.settle_in(0, 200.0, "hold") == pytest.approx(200.0)
    assert dex.equity()[0] == pytest.approx(650.0)
    assert env.ledger.balance("hold", "USDC") == pytest.approx(850.0)
    assert dex.accounting_gap_usd() == pytest.approx(0.0, abs=1e-6)
    env.ledger.check_conservation()


def test_perps_write_off_uses_insurance_fund_then_deficit():
    env, dex, eth = perps(fund=300.0)
    eth.price = 2200.0  # A equity = -500
    assert dex.write_off(0) == 0.0  # positions open: nothing written off
    dex.controller_close(0, 1.0, "liq", penalty=0.02)  # penalty capped at 0 (equity < 0)
    assert dex.collateral[0] == pytest.approx(-500.0)
    # fund pays 300, the remaining 200 is bad debt
    assert dex.write_off(0) == pytest.approx(200.0)
    assert dex.insurance_fund_usd() == pytest.approx(0.0)
    assert dex.deficit_usd == pytest.approx(200.0) and dex.collateral[0] == 0.0
    assert isinstance(env.events[-1], BadDebt)
    assert dex.accounting_gap_usd() == pytest.approx(0.0, abs=1e-6)
    env.ledger.check_conservation()


def perps_two_markets(fund=0.0):
    """A (#0): -5 ETH @2000 and +0.1 BTC @50,000 with 1,000 USDC; vault (#1) the other side; liquidator (#2)."""
    env = Env()
    orc = {"ETH": FixedPrice(2000.0), "BTC": FixedPrice(50_000.0)}
    btc = PerpMarketParams(asset="BTC", initial_margin_fraction=0.05, maintenance_fraction=0.6)  # MMF 3%
    dex = PerpDex(PerpDexParams(markets=[ETH_P, btc], insurance_fund_usd=fund), orc, env)
    env.ledger.mint("USDC", "pop", 1e6, "t")
    env.ledger.mint("USDC", "liq", 1e6, "t")
    dex.open_accounts("pop", [1_000.0, 100_000.0], [[-5.0, 0.1], [5.0, -0.1]])
    dex.open_accounts("liq", [100_000.0, 100_000.0], None)  # #2 and #3
    return env, dex, orc


def test_perps_controller_close_of_two_markets_reports_usd_and_counts_every_close():
    env, dex, orc = perps_two_markets()
    orc["ETH"].price = 2_100.0  # A: 1,000 − 500 = 500 equity; MMR 5·2,100·5% + 0.1·50,000·3% = 525 + 150
    ev = dex.controller_close(0, 0.5, "liq", liquidator_row=3, penalty=0.01)
    # half of each: 2.5 ETH @2,100 + 0.05 BTC @50,000 = 5,250 + 2,500 = 7,750 USD; penalty 77.5 (< equity 500)
    assert (ev.block, ev.source, ev.account, ev.liquidator) == (0, "perps", 0, "liq")
    assert (ev.debt_asset, ev.collateral_asset) == ("ETH+BTC", "USDC")
    assert (ev.debt_repaid, ev.collateral_seized, ev.protocol_fee) == pytest.approx((7_750.0, 7_750.0, 0.0))
    assert (ev.debt_repaid_usd, ev.collateral_seized_usd, ev.bonus_usd) == pytest.approx((7_750.0, 7_750.0, 77.5))
    assert ev.health_before == pytest.approx(500.0 / 675.0)
    assert dex.size[3].tolist() == pytest.approx([-2.5, 0.05]) and dex.size[2].tolist() == [0.0, 0.0]
    assert dex.equity()[3] == pytest.approx(100_077.5) and dex.equity()[0] == pytest.approx(500.0 - 77.5)
    # the rest, without a penalty: both markets again, so the event counts USD
    ev2 = dex.controller_close(0, 1.0, "liq", liquidator_row=3)
    assert dex.size[0].tolist() == [0.0, 0.0]
    assert ev2.debt_repaid == pytest.approx(7_750.0) and ev2.bonus_usd == 0.0
    m = dex.metrics()
    assert m["liquidations"] == 2 and m["liquidated_notional_usd"] == pytest.approx(15_500.0)
    assert dex.accounting_gap_usd() == pytest.approx(0.0, abs=1e-6)
    env.ledger.check_conservation()


def test_perps_controller_close_of_one_market_names_its_units_and_a_flat_account_has_infinite_health():
    env, dex, eth = perps()
    ev = dex.controller_close(0, 0.4, "liq", penalty=0.0)  # 2 of the 5 ETH short
    assert ev.debt_asset == "ETH" and ev.debt_repaid == pytest.approx(2.0) and ev.debt_repaid_usd == 4_000.0
    assert dex.size[0, 0] == pytest.approx(-3.0)
    # health before: equity 500 / MMR (5·2,000·5% = 500) = 1
    assert ev.health_before == pytest.approx(1.0)


@pytest.mark.parametrize("fraction", [0.0, -0.5, 1.0000001, 1.5, 2.0])
def test_perps_controller_close_refuses_a_fraction_outside_0_1(fraction):
    env, dex, eth = perps()
    with pytest.raises(Revert, match=r"fraction must be in \(0, 1\]"):
        dex.controller_close(0, fraction, "liq")


@pytest.mark.parametrize("penalty", [-0.01, 1.0, 1.5])
def test_perps_controller_close_refuses_a_penalty_outside_0_1(penalty):
    env, dex, eth = perps()
    with pytest.raises(Revert, match=r"penalty must be in \[0, 1\)"):
        dex.controller_close(0, 1.0, "liq", penalty=penalty)


def test_perps_controller_close_refuses_self_liquidation_and_uses_the_named_row():
    env, dex, eth = perps()
    with pytest.raises(Revert, match="cannot liquidate itself"):
        dex.controller_close(1, 1.0, "pop", liquidator_row=1)
    env.ledger.mint("USDC", "liq", 1e6, "t")
    dex.open_accounts("liq", [100_000.0], None)  # #3, a second account of the liquidator
    dex.controller_close(0, 1.0, "liq", liquidator_row=3)
    assert dex.size[3, 0] == -5.0 and dex.size[2, 0] == 0.0  # the named row took it, not the first one


def test_perps_write_off_only_flat_negative_accounts_and_counts_the_fund_payouts():
    env, dex, eth = perps(fund=1_000.0)
    assert dex.write_off(0) == 0.0  # an open position
    dex.controller_close(0, 1.0, "liq")  # flat with 500 USDC: nothing to write off
    assert dex.write_off(0) == 0.0 and dex.insurance_fund_usd() == 1_000.0
    # a second book: -5 ETH with 500, the price to 2,200 -> -500 after the close; the fund pays all 500
    env2, dex2, eth2 = perps(fund=1_000.0)
    eth2.price = 2_200.0
    dex2.controller_close(0, 1.0, "liq")
    assert dex2.write_off(0) == 0.0  # covered by the fund: no bad debt
    assert dex2.insurance_fund_usd() == pytest.approx(500.0) and dex2.collateral[0] == 0.0
    assert dex2.metrics()["insurance_paid_usd"] == pytest.approx(500.0)
    # a third: the fund holds 300 of the 500 -> 200 of bad debt, and payouts add up across accounts
    env3, dex3, eth3 = perps(fund=800.0)
    env3.ledger.mint("USDC", "pop", 1e6, "t")
    dex3.open_accounts("pop", [500.0, 100_000.0], [[-5.0], [5.0]], [[2000.0], [2000.0]])  # #3 and #4
    eth3.price = 2_200.0
    for a in (0, 3):
        dex3.controller_close(a, 1.0, "liq")
    assert dex3.write_off(0) == 0.0  # 500 paid: 300 left in the fund
    assert dex3.write_off(3) == pytest.approx(200.0)
    assert dex3.metrics()["insurance_paid_usd"] == pytest.approx(800.0) and dex3.deficit_usd == pytest.approx(200.0)
    assert dex3.accounting_gap_usd() == pytest.approx(0.0, abs=1e-6)
    env3.ledger.check_conservation()


def test_perps_write_off_leaves_open_accounts_alone_even_with_negative_collateral():
    env, dex, eth = perps(fund=1_000.0)
    eth.price = 2_200.0
    dex.controller_close(0, 0.6, "liq")  # realises 3·(2,000 − 2,200) = −600: collateral 500 − 600 = −100, 2 ETH open
    assert dex.collateral[0] == pytest.approx(-100.0) and dex.size[0, 0] == pytest.approx(-2.0)
    assert dex.write_off(0) == 0.0
    assert dex.insurance_fund_usd() == 1_000.0 and dex.collateral[0] == pytest.approx(-100.0)


def test_perps_write_off_takes_even_a_small_fund_first_and_returns_this_write_off_only():
    env, dex, eth = perps(fund=0.5)
    env.ledger.mint("USDC", "pop", 1e6, "t")
    dex.open_accounts("pop", [500.0, 100_000.0], [[-5.0], [5.0]], [[2000.0], [2000.0]])  # #3 and #4
    eth.price = 2_200.0
    for a in (0, 3):
        dex.controller_close(a, 1.0, "liq")  # both flat at −500
    assert dex.write_off(0) == pytest.approx(499.5)  # the fund's 0.5 first
    assert dex.insurance_fund_usd() == 0.0 and dex.metrics()["insurance_paid_usd"] == pytest.approx(0.5)
    assert dex.write_off(3) == pytest.approx(500.0)  # this one alone, not the deficit so far
    assert dex.deficit_usd == pytest.approx(999.5)
    env.ledger.check_conservation()


def test_perps_controller_close_checks_the_liquidator_only_when_its_position_grows():
    env, dex, eth = perps()
    # the liquidator's #2 is long 5 ETH on 300 USDC (IM 1,000: under-margined); taking over A's short closes it
    env.ledger.mint("USDC", "liq", 1e6, "t")
    dex.open_accounts("liq", [300.0, 100_000.0], [[5.0], [-5.0]])  # #3 long, #4 its counterparty
    dex.controller_close(0, 1.0, "liq", liquidator_row=3)
    assert dex.size[3, 0] == 0.0 and dex.size[0, 0] == 0.0


def test_perps_controller_close_health_of_a_tiny_position():
    env, dex, eth = perps()
    env.ledger.mint("USDC", "pop", 1e6, "t")
    dex.open_accounts("pop", [0.2, 100.0], [[-0.005], [0.005]])  # #3: 10 USD short, MMR 0.5, equity 0.2
    ev = dex.controller_close(3, 1.0, "liq")
    assert ev.health_before == pytest.approx(0.4)


def test_perps_auto_deleverage_reaches_tiny_bankrupt_accounts():
    env, dex, eth = perps()
    env.ledger.mint("USDC", "pop", 1e6, "t")
    dex.open_accounts("pop", [0.2, 100.0], [[-0.005], [0.005]])  # #3: 10 USD short, MMR 0.5 < 1 USD
    eth.price = 2_100.0  # #3: 0.2 − 0.5 = −0.3 < 0; the fund (0) cannot cover it
    dex.accrue(12.0)
    assert dex.size[3, 0] == 0.0 and dex.metrics()["adl_count"] >= 1
