"""The Aave-v3-like lending market: hand-computed health, close factor, seizure, bad debt and interest,
and hypothesis properties of liquidation (docs/margin-methods.md 5.1)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from defistress.protocols.base import Env, FixedPrice, Revert
from defistress.protocols.events import BadDebt, Liquidated
from defistress.protocols.lending import SECONDS_PER_YEAR, AssetParams, LendingMarket

# Aave v3 Ethereum initial parameters (docs/margin-methods.md 5.1), bonus as a fraction (10500 bps = 0.05)
ETH = AssetParams("ETH", ltv=0.825, liquidation_threshold=0.86, liquidation_bonus=0.05, protocol_fee=0.10)
BTC = AssetParams("BTC", ltv=0.72, liquidation_threshold=0.82, liquidation_bonus=0.05, protocol_fee=0.10)
USDC = AssetParams("USDC", ltv=0.865, liquidation_threshold=0.885, liquidation_bonus=0.048)
DAI = AssetParams("DAI", ltv=0.765, liquidation_threshold=0.89, liquidation_bonus=0.043)
START_PRICES = {"ETH": 2_000.0, "BTC": 60_000.0, "USDC": 1.0, "DAI": 1.0}
LIQ = "liquidator"


def make_market(rule: str = "aave-v3.3", assets=(ETH, BTC, USDC, DAI)):
    """A market with 100M of each stablecoin supplied by lenders and a liquidator holding 100M of each."""
    env = Env()
    oracles = {a.symbol: FixedPrice(START_PRICES[a.symbol], f"oracle-{a.symbol}") for a in assets}
    m = LendingMarket("lend", list(assets), oracles, env, rule)
    for s in ("USDC", "DAI"):
        if s in m.idx:
            env.ledger.mint(s, "lenders", 1e8, "genesis")
            m.supply_liquidity("lenders", s, 1e8)
            env.ledger.mint(s, LIQ, 1e8, "genesis")
    return m, oracles


def open_account(m: LendingMarket, coll: dict[str, float], debt: dict[str, float]) -> int:
    """Deposit collateral and borrow (within LTV, at current prices) for one new account."""
    a = m.add_accounts(1)
    for s, amount in coll.items():
        m.env.ledger.mint(s, "user", amount, "genesis")
        m.supply("user", a, s, np.array([amount]))
    for s, amount in debt.items():
        m.borrow("user", a, s, np.array([amount]))
    return int(a[0])


def state(m: LendingMarket) -> tuple:
    return (
        m.coll_scaled.copy(),
        m.debt_scaled.copy(),
        m.deficit.copy(),
        {t: dict(b) for t, b in m.env.ledger.snapshot().items() if b},
    )


def assert_same_state(a: tuple, b: tuple) -> None:
    for x, y in zip(a[:3], b[:3]):
        np.testing.assert_array_equal(x, y)
    assert a[3] == b[3]


# --- health factor and borrowing ----------------------------------------------------------------------
def test_health_factor_of_a_two_collateral_account():
    m, _ = make_market()
    a = open_account(m, {"ETH": 10.0, "BTC": 0.5}, {"USDC": 30_000.0})
    # weighted collateral = 10·2000·0.86 + 0.5·60000·0.82 = 17,200 + 24,600 = 41,800 USD
    # HF = 41,800 / 30,000 = 1.393333...
    assert m.health()[a] == pytest.approx(41_800 / 30_000, rel=1e-12)
    coll, debt = m.account_usd()
    assert coll[a] == pytest.approx(50_000.0) and debt[a] == pytest.approx(30_000.0)
    assert not m.liquidatable().size
    m.env.ledger.check_conservation()


def test_account_without_debt_has_infinite_health():
    m, _ = make_market()
    a = open_account(m, {"ETH": 1.0}, {})
    assert np.isinf(m.health()[a])


def test_borrow_beyond_ltv_reverts_and_changes_nothing():
    m, _ = make_market()
    a = open_account(m, {"ETH": 10.0, "BTC": 0.5}, {"USDC": 30_000.0})
    # borrow limit = 10·2000·0.825 + 0.5·60000·0.72 = 16,500 + 21,600 = 38,100 USD; 30,000 drawn
    before = state(m)
    with pytest.raises(Revert, match="LTV"):
        m.borrow("user", np.array([a]), "DAI", np.array([8_200.0]))  # 38,200 > 38,100
    assert_same_state(before, state(m))
    m.borrow("user", np.array([a]), "DAI", np.array([8_000.0]))  # 38,000 <= 38,100
    assert m.debt()[a, m.idx["DAI"]] == pytest.approx(8_000.0)
    m.env.ledger.check_conservation()


# --- close factor -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "eth_price, hf, max_repay",
    [
        # 10 ETH, 15,000 USDC debt. At 1,700: HF = 17,000·0.86/15,000 = 0.974667 > 0.95 -> 50% = 7,500
        (1_700.0, 14_620 / 15_000, 7_500.0),
        # at 1,600: HF = 16,000·0.86/15,000 = 0.917333 <= 0.95 -> 100% = 15,000
        (1_600.0, 13_760 / 15_000, 15_000.0),
    ],
)
def test_close_factor_v30_is_half_above_hf_095_and_full_at_or_below(eth_price, hf, max_repay):
    m, oracles = make_market("aave-v3.0")
    a = open_account(m, {"ETH": 10.0}, {"USDC": 15_000.0})
    oracles["ETH"].price = eth_price
    assert m.health()[a] == pytest.approx(hf)
    assert m.max_debt_to_cover(a, "USDC") == pytest.approx(max_repay)


@pytest.mark.parametrize("rule", ["aave-v3.0", "aave-v3.3"])
def test_close_factor_at_exactly_hf_095_allows_the_full_debt(rule):
    # 10 ETH, 12,900 USDC debt. At ETH 1,425: weighted collateral 14,250·0.86 = 12,255 and HF = 12,255/12,900
    # = 0.95 exactly (in float too). Aave: 50% only when HF > 0.95, so at 0.95 the whole 12,900 may be repaid
    # (v3.3: collateral 14,250 and debt 12,900 are both >= $2,000, so only the HF decides)
    m, oracles = make_market(rule)
    a = open_account(m, {"ETH": 10.0}, {"USDC": 12_900.0})
    oracles["ETH"].price = 1_425.0
    assert m.health()[a] == 0.95
    assert m.max_debt_to_cover(a, "USDC") == 12_900.0
    assert m.preview(a, "ETH", "USDC", 1e9).debt_to_repay == 12_900.0
    # one cent of ETH price higher: HF = 14,250.1·0.86/12,900 = 0.9500067 > 0.95 -> 50% = 6,450
    oracles["ETH"].price = 1_425.01
    assert m.health()[a] > 0.95
    assert m.max_debt_to_cover(a, "USDC") == pytest.approx(6_450.0)


def test_close_factor_v33_threshold_is_inclusive_at_2000_usd_of_debt_and_of_collateral():
    # debt exactly $2,000: 2.3 ETH at 1,000 -> HF = 2,300·0.86/2,000 = 0.989 > 0.95, collateral 2,300 >= 2,000,
    # reserve debt 2,000 >= 2,000 -> 50% of the total debt = 1,000 (below 2,000 it would be 100%)
    m, oracles = make_market("aave-v3.3")
    a = open_account(m, {"ETH": 2.3}, {"USDC": 2_000.0})
    oracles["ETH"].price = 1_000.0
    assert m.health()[a] == pytest.approx(0.989)
    assert m.max_debt_to_cover(a, "USDC") == pytest.approx(1_000.0)
    # collateral reserve exactly $2,000: 2 ETH at 1,000 beside 1 BTC at 60,000; debt 30,000 USDC.
    # HF = (2,000·0.86 + 60,000·0.82)/30,000 = 50,920/30,000 = 1.697; at BTC 35,000: (1,720 + 28,700)/30,000
    # = 1.014; at BTC 34,000: (1,720 + 27,880)/30,000 = 0.98667 in (0.95, 1)
    m, oracles = make_market("aave-v3.3")
    a = open_account(m, {"ETH": 2.0, "BTC": 1.0}, {"USDC": 30_000.0})
    oracles["ETH"].price, oracles["BTC"].price = 1_000.0, 34_000.0
    assert m.health()[a] == pytest.approx(29_600 / 30_000)
    # seizing ETH: the ETH reserve holds 2,000 USD >= 2,000 -> 50% of 30,000 = 15,000
    assert m.max_debt_to_cover(a, "USDC", "ETH") == pytest.approx(15_000.0)
    # one dollar less of ETH collateral (ETH at 999.5: 1,999 USD < 2,000) -> 100% = 30,000
    oracles["ETH"].price = 999.5
    assert m.max_debt_to_cover(a, "USDC", "ETH") == pytest.approx(30_000.0)


def test_close_factor_v30_is_per_reserve_and_v33_is_half_of_total_debt():
    # 10 ETH; debt 9,000 USDC + 3,000 DAI = 12,000 USD. At ETH 1,350: HF = 13,500·0.86/12,000 = 0.9675 > 0.95
    results = {}
    for rule in ("aave-v3.0", "aave-v3.3"):
        m, oracles = make_market(rule)
        a = open_account(m, {"ETH": 10.0}, {"USDC": 9_000.0, "DAI": 3_000.0})
        oracles["ETH"].price = 1_350.0
        assert m.health()[a] == pytest.approx(0.9675)
        results[rule] = (m.max_debt_to_cover(a, "USDC"), m.max_debt_to_cover(a, "DAI"))
    # v3.0: 50% of each reserve's debt: 4,500 USDC and 1,500 DAI
    assert results["aave-v3.0"] == pytest.approx((4_500.0, 1_500.0))
    # v3.3: USDC reserve 9,000 > 50% of total 6,000 -> capped at 6,000; DAI reserve 3,000 >= $2,000 and
    # below the 6,000 cap -> all 3,000
    assert results["aave-v3.3"] == pytest.approx((6_000.0, 3_000.0))


def test_close_factor_v33_allows_full_repay_below_the_2000_usd_threshold():
    # 2 ETH, 1,900 USDC debt. At ETH 1,070: collateral 2,140 USD, HF = 2,140·0.86/1,900 = 0.968632 > 0.95
    for rule, expected in (("aave-v3.0", 950.0), ("aave-v3.3", 1_900.0)):
        m, oracles = make_market(rule)
        a = open_account(m, {"ETH": 2.0}, {"USDC": 1_900.0})
        oracles["ETH"].price = 1_070.0
        assert m.health()[a] == pytest.approx(2_140 * 0.86 / 1_900)
        # v3.0: 50% of 1,900 = 950; v3.3: reserve debt 1,900 < $2,000 -> 100%
        assert m.max_debt_to_cover(a, "USDC") == pytest.approx(expected)


def test_close_factor_v33_threshold_uses_the_collateral_reserve_being_liquidated():
    # Aave v3.3 LiquidationLogic compares the *collateral reserve* being liquidated with $2,000
    # (userReserveCollateralInBaseCurrency), not the account's total collateral.
    # 10 ETH + 0.05 BTC, 12,000 USDC debt; ETH at 1,250 and BTC at 30,000: ETH reserve 12,500 USD,
    # BTC reserve 0.05·30,000 = 1,500 USD < 2,000, so a BTC liquidation may repay 100% of the reserve debt.
    m, oracles = make_market("aave-v3.3")
    a = open_account(m, {"ETH": 10.0, "BTC": 0.05}, {"USDC": 12_000.0})
    oracles["ETH"].price, oracles["BTC"].price = 1_250.0, 30_000.0
    # HF = (12,500·0.86 + 1,230) / 12,000 = (10,750 + 1,230) / 12,000 = 0.998333 in (0.95, 1)
    assert m.health()[a] == pytest.approx(11_980 / 12_000)
    assert m.max_debt_to_cover(a, "USDC", "ETH") == pytest.approx(6_000.0)  # ETH reserve 12,500 >= 2,000: 50%
    assert m.max_debt_to_cover(a, "USDC", "BTC") == pytest.approx(12_000.0)  # BTC reserve 1,500 < 2,000: 100%
    # the preview of a BTC liquidation is then capped by the BTC balance, not by the close factor:
    # seized = min(12,000/30,000·1.05, 0.05) = 0.05 BTC -> debt = 0.05·30,000/1.05 = 1,428.571 USDC
    assert m.preview(a, "BTC", "USDC", 12_000.0).debt_to_repay == pytest.approx(1_500 / 1.05)


def test_v33_partial_liquidation_must_not_leave_dust():
    # 2 ETH, 2,500 USDC debt. At ETH 1,350: collateral 2,700, HF = 2,700·0.86/2,500 = 0.9288 <= 0.95 -> 100%
    m, oracles = make_market("aave-v3.3")
    a = open_account(m, {"ETH": 2.0}, {"USDC": 2_500.0})
    oracles["ETH"].price = 1_350.0
    assert m.health()[a] == pytest.approx(0.9288)
    before = state(m)
    # repaying 2,000 seizes 2,000·1.05/1,350 = 1.555556 ETH (2,100 USD): 500 USD of debt and 600 USD of
    # collateral would remain, both under MIN_LEFTOVER_BASE = 1,000 USD -> MustNotLeaveDust
    with pytest.raises(Revert, match="MustNotLeaveDust"):
        m.liquidate(a, "ETH", "USDC", 2_000.0, LIQ)
    assert_same_state(before, state(m))
    # repaying all 2,500 leaves no debt: allowed (collateral left: 2 - 2,625/1,350 = 0.055556 ETH)
    ev = m.liquidate(a, "ETH", "USDC", 2_500.0, LIQ)
    assert ev.debt_repaid == pytest.approx(2_500.0)
    assert m.debt()[a].sum() == 0.0
    assert m.collateral()[a, m.idx["ETH"]] == pytest.approx(2.0 - 2_625 / 1_350)
    m.env.ledger.check_conservation()


def test_v33_dust_rule_refuses_when_only_the_debt_left_is_under_1000_usd():
    # 10 ETH, 12,900 USDC; ETH 1,425: HF = 0.95 exactly -> 100% may be repaid. Repaying 12,000 seizes
    # 12,000·1.05/1,425 = 8.842105 ETH (12,600 USD): 900 USD of debt would remain (< 1,000) beside
    # 14,250 − 12,600 = 1,650 USD of collateral (>= 1,000). One leftover under $1,000 is enough to refuse.
    m, oracles = make_market("aave-v3.3")
    a = open_account(m, {"ETH": 10.0}, {"USDC": 12_900.0})
    oracles["ETH"].price = 1_425.0
    before = state(m)
    with pytest.raises(Revert, match="MustNotLeaveDust"):
        m.liquidate(a, "ETH", "USDC", 12_000.0, LIQ)
    assert_same_state(before, state(m))
    # repaying 11,900 leaves exactly 1,000 USD of debt (not under 1,000) and 14,250 − 12,495 = 1,755 of
    # collateral: allowed
    ev = m.liquidate(a, "ETH", "USDC", 11_900.0, LIQ)
    assert ev.debt_repaid == 11_900.0
    assert m.debt()[a, m.idx["USDC"]] == pytest.approx(1_000.0)
    assert m.collateral()[a, m.idx["ETH"]] * 1_425.0 == pytest.approx(1_755.0)
    m.env.ledger.check_conservation()


def test_v33_dust_rule_refuses_when_only_the_collateral_left_is_under_1000_usd():
    # 10 ETH, 12,900 USDC; ETH 1,300: HF = 13,000·0.86/12,900 = 0.866667 -> 100%. Repaying 11,500 seizes
    # 11,500·1.05 = 12,075 USD of ETH: 925 USD of collateral would remain (< 1,000) beside 1,400 USD of debt.
    m, oracles = make_market("aave-v3.3")
    a = open_account(m, {"ETH": 10.0}, {"USDC": 12_900.0})
    oracles["ETH"].price = 1_300.0
    before = state(m)
    with pytest.raises(Revert, match="MustNotLeaveDust"):
        m.liquidate(a, "ETH", "USDC", 11_500.0, LIQ)
    assert_same_state(before, state(m))
    # v3.0 has no such rule: the same call goes through and leaves 1,400 USDC of debt
    m, oracles = make_market("aave-v3.0")
    a = open_account(m, {"ETH": 10.0}, {"USDC": 12_900.0})
    oracles["ETH"].price = 1_300.0
    assert m.liquidate(a, "ETH", "USDC", 11_500.0, LIQ).debt_repaid == 11_500.0
    assert m.debt()[a, m.idx["USDC"]] == pytest.approx(1_400.0)


def test_v30_has_no_dust_rule():
    m, oracles = make_market("aave-v3.0")
    a = open_account(m, {"ETH": 2.0}, {"USDC": 2_500.0})
    oracles["ETH"].price = 1_350.0
    ev = m.liquidate(a, "ETH", "USDC", 2_000.0, LIQ)  # HF 0.9288 <= 0.95: 100% allowed, 500 USD left is fine
    assert ev.debt_repaid == pytest.approx(2_000.0)
    assert m.debt()[a, m.idx["USDC"]] == pytest.approx(500.0)


# --- seizure ----------------------------------------------------------------------------------------
def test_seized_collateral_includes_bonus_and_protocol_fee():
    m, oracles = make_market("aave-v3.3")
    a = open_account(m, {"ETH": 10.0}, {"USDC": 15_000.0})
    oracles["ETH"].price = 1_700.0  # HF 0.974667 > 0.95: at most 50% = 7,500
    usdc0, eth0 = m.env.ledger.balance(LIQ, "USDC"), m.env.ledger.balance(LIQ, "ETH")
    ev = m.liquidate(a, "ETH", "USDC", 1e9, LIQ)
    # base = 7,500/1,700 = 4.411765 ETH; seized = base·1.05 = 4.632353 ETH
    # bonus = seized − base = 0.220588 ETH; protocol fee = 10% of it = 0.0220588 ETH
    # liquidator gets 4.632353 − 0.022059 = 4.610294 ETH
    base = 7_500 / 1_700
    seized = base * 1.05
    fee = (seized - base) * 0.10
    assert isinstance(ev, Liquidated)
    assert ev.debt_repaid == pytest.approx(7_500.0)
    assert ev.collateral_seized == pytest.approx(seized - fee) and ev.collateral_seized == pytest.approx(
        4.610294, abs=1e-6
    )
    assert ev.protocol_fee == pytest.approx(fee) and fee == pytest.approx(0.0220588, abs=1e-7)
    assert ev.health_before == pytest.approx(14_620 / 15_000)
    led = m.env.ledger
    assert usdc0 - led.balance(LIQ, "USDC") == pytest.approx(7_500.0)
    assert led.balance(LIQ, "ETH") - eth0 == pytest.approx(seized - fee)
    assert led.balance(m.treasury, "ETH") == pytest.approx(fee)
    assert m.collateral()[a, m.idx["ETH"]] == pytest.approx(10.0 - seized)
    assert m.debt()[a, m.idx["USDC"]] == pytest.approx(7_500.0)
    # the borrower loses 4.632353·1,700 − 7,500 = 375 USD of value (5% bonus on 7,500)
    assert ev.bonus_usd == pytest.approx(375.0)
    led.check_conservation()


def test_seizure_capped_by_collateral_reduces_the_debt_repaid():
    m, oracles = make_market("aave-v3.3")
    a = open_account(m, {"ETH": 1.0}, {"USDC": 1_600.0})
    oracles["ETH"].price = 1_700.0
    # HF = 1,700·0.86/1,600 = 0.91375 <= 0.95 -> 100%. Repaying 1,600 would seize 1,600/1,700·1.05 =
    # 0.988235 ETH < 1: not capped. Drop to ETH 1,500: HF = 1,290/1,600 = 0.80625, repaying 1,600 wants
    # 1,600/1,500·1.05 = 1.12 ETH > 1 -> seized = 1 ETH, debt = 1·1,500/1.05 = 1,428.571 USDC
    oracles["ETH"].price = 1_500.0
    ev = m.liquidate(a, "ETH", "USDC", 1_600.0, LIQ)
    fee = (1.0 - 1.0 / 1.05) * 0.10  # 0.0047619 ETH
    assert ev.debt_repaid == pytest.approx(1_500 / 1.05)
    assert ev.collateral_seized + ev.protocol_fee == pytest.approx(1.0)
    assert ev.protocol_fee == pytest.approx(fee)
    assert m.collateral()[a].sum() == 0.0
    m.env.ledger.check_conservation()


def test_v33_burns_remaining_debt_into_the_deficit_when_collateral_is_gone():
    m, oracles = make_market("aave-v3.3")
    a = open_account(m, {"ETH": 1.0}, {"USDC": 1_600.0})
    oracles["ETH"].price = 1_500.0
    m.liquidate(a, "ETH", "USDC", 1_600.0, LIQ)
    # left after the capped seizure: 1,600 − 1,428.571 = 171.429 USDC, no collateral -> written off
    shortfall = 1_600 - 1_500 / 1.05
    assert m.debt()[a].sum() == 0.0
    assert m.deficit[m.idx["USDC"]] == pytest.approx(shortfall)
    bad = [e for e in m.env.events if isinstance(e, BadDebt)]
    assert len(bad) == 1 and bad[0].amount == pytest.approx(shortfall) and bad[0].account == a
    met = m.metrics()
    assert met["deficit_usd"] == pytest.approx(shortfall)
    assert met["bad_debt_usd"] == pytest.approx(shortfall)
    m.env.ledger.check_conservation()


def test_v30_leaves_the_shortfall_on_the_account():
    m, oracles = make_market("aave-v3.0")
    a = open_account(m, {"ETH": 1.0}, {"USDC": 1_600.0})
    oracles["ETH"].price = 1_500.0
    m.liquidate(a, "ETH", "USDC", 1_600.0, LIQ)
    shortfall = 1_600 - 1_500 / 1.05  # 171.429 USDC, no collateral behind it
    assert m.debt()[a, m.idx["USDC"]] == pytest.approx(shortfall)
    assert m.deficit.sum() == 0.0
    assert not [e for e in m.env.events if isinstance(e, BadDebt)]
    assert m.metrics()["bad_debt_usd"] == pytest.approx(shortfall)
    assert m.metrics()["deficit_usd"] == 0.0
    # the account stays liquidatable but there is nothing to seize
    with pytest.raises(Revert, match="COLLATERAL_CANNOT_BE_LIQUIDATED"):
        m.liquidate(a, "ETH", "USDC", 100.0, LIQ)


def test_healthy_account_cannot_be_liquidated():
    m, oracles = make_market()
    a = open_account(m, {"ETH": 10.0}, {"USDC": 15_000.0})  # HF = 17,200/15,000 = 1.146667
    before = state(m)
    with pytest.raises(Revert, match="HEALTH_FACTOR_NOT_BELOW_THRESHOLD"):
        m.liquidate(a, "ETH", "USDC", 1_000.0, LIQ)
    assert_same_state(before, state(m))
    assert not m.env.events


def test_liquidator_without_funds_reverts_and_changes_nothing():
    m, oracles = make_market()
    a = open_account(m, {"ETH": 10.0}, {"USDC": 15_000.0})
    oracles["ETH"].price = 1_700.0
    before = state(m)
    with pytest.raises(Revert, match="cannot pay"):
        m.liquidate(a, "ETH", "USDC", 7_500.0, "broke-liquidator")
    assert_same_state(before, state(m))


# --- interest ---------------------------------------------------------------------------------------
RATE_USDC = AssetParams(
    "USDC", 0.865, 0.885, 0.048, reserve_factor=0.15, base_rate=0.0, slope1=0.04, slope2=0.60, optimal_utilisation=0.90
)


@pytest.mark.parametrize(
    "borrowed, utilisation, rate",
    [
        # below the kink: 0 + 0.04·0.45/0.90 = 0.02
        (450_000.0, 0.45, 0.02),
        # above: 0 + 0.04 + 0.60·(0.95 − 0.90)/(1 − 0.90) = 0.04 + 0.30 = 0.34
        (950_000.0, 0.95, 0.34),
    ],
)
def test_kinked_borrow_rate_below_and_above_the_kink(borrowed, utilisation, rate):
    env = Env()
    m = LendingMarket("lend", [ETH, RATE_USDC], {"ETH": FixedPrice(2_000.0), "USDC": FixedPrice(1.0)}, env)
    env.ledger.mint("USDC", "lenders", 1_000_000.0, "genesis")
    m.supply_liquidity("lenders", "USDC", 1_000_000.0)
    open_account(m, {"ETH": 1_000.0}, {"USDC": borrowed})  # limit 1,000·2,000·0.825 = 1.65M
    j = m.idx["USDC"]
    assert m.utilisation()[j] == pytest.approx(utilisation)
    assert m.borrow_rate()[j] == pytest.approx(rate)
    assert m.borrow_rate()[m.idx["ETH"]] == 0.0  # nothing borrowed: utilisation 0, base 0


def test_index_accrual_over_one_year():
    env = Env()
    m = LendingMarket("lend", [ETH, RATE_USDC], {"ETH": FixedPrice(2_000.0), "USDC": FixedPrice(1.0)}, env)
    env.ledger.mint("USDC", "lenders", 1_000_000.0, "genesis")
    m.supply_liquidity("lenders", "USDC", 1_000_000.0)
    a = open_account(m, {"ETH": 1_000.0}, {"USDC": 450_000.0})
    hf0 = m.health()[a]
    m.accrue(SECONDS_PER_YEAR)
    j = m.idx["USDC"]
    # borrow index: 1 + 0.02·1 year = 1.02 -> debt 450,000·1.02 = 459,000
    assert m.borrow_index[j] == pytest.approx(1.02)
    assert m.debt()[a, j] == pytest.approx(459_000.0)
    # liquidity index: supply rate = 0.02·0.45·(1 − 0.15) = 0.00765 -> 1.00765
    assert m.liq_index[j] == pytest.approx(1.00765)
    assert m.liq_index[m.idx["ETH"]] == 1.0
    # the account's health falls with its debt: HF1 = HF0 / 1.02
    assert m.health()[a] == pytest.approx(hf0 / 1.02)
    # interest changes claims, not token balances
    env.ledger.check_conservation()


# --- properties -------------------------------------------------------------------------------------
collateral_eth = st.floats(min_value=0.05, max_value=5_000.0)
use_of_limit = st.floats(min_value=0.05, max_value=1.0)  # debt as a share of the LTV borrow limit
price_move = st.floats(min_value=0.2, max_value=1.5)  # new ETH price / start price
repay_share = st.floats(min_value=0.0, max_value=2.0)
rules = st.sampled_from(["aave-v3.0", "aave-v3.3"])


def price_for_health(c: float, debt: float, hf: float) -> float:
    """ETH price (USD) that gives an account of `c` ETH and `debt` USDC the health factor `hf`:
    HF = c·P·0.86 / debt  ->  P = HF·debt / (c·0.86)."""
    return hf * debt / (c * ETH.liquidation_threshold)


@settings(max_examples=150, deadline=None)
@given(collateral_eth, use_of_limit, st.floats(min_value=1.000001, max_value=5.0), repay_share, rules)
def test_healthy_accounts_are_never_liquidated(c, use, hf, share, rule):
    m, oracles = make_market(rule, assets=(ETH, USDC))
    debt = c * 2_000 * 0.825 * use
    a = open_account(m, {"ETH": c}, {"USDC": debt})
    oracles["ETH"].price = price_for_health(c, debt, hf)
    assert m.health()[a] >= 1.0
    before = state(m)
    with pytest.raises(Revert):
        m.liquidate(a, "ETH", "USDC", share * m.debt()[a].sum() + 1e-9, LIQ)
    assert_same_state(before, state(m))


@settings(max_examples=150, deadline=None)
@given(collateral_eth, use_of_limit, st.floats(min_value=0.05, max_value=0.9999), repay_share, rules)
def test_seized_collateral_never_exceeds_the_balance(c, use, hf, share, rule):
    m, oracles = make_market(rule, assets=(ETH, USDC))
    debt = c * 2_000 * 0.825 * use
    a = open_account(m, {"ETH": c}, {"USDC": debt})
    oracles["ETH"].price = price_for_health(c, debt, hf)
    assert m.health()[a] < 1.0
    balance = m.collateral()[a, 0]
    try:
        ev = m.liquidate(a, "ETH", "USDC", share * m.debt()[a].sum() + 1e-6, LIQ)
    except Revert:
        return
    assert ev.collateral_seized + ev.protocol_fee <= balance * (1 + 1e-12)
    assert ev.collateral_seized >= 0 and ev.protocol_fee >= 0
    assert m.collateral()[a, 0] >= 0.0
    m.env.ledger.check_conservation()


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(collateral_eth, use_of_limit), min_size=1, max_size=8),
    price_move,
    st.lists(st.tuples(st.integers(0, 7), repay_share), max_size=20),
    rules,
)
def test_bad_debt_is_shortfalls_plus_deficit_and_tokens_are_conserved(books, move, calls, rule):
    m, oracles = make_market(rule, assets=(ETH, USDC))
    accounts = [open_account(m, {"ETH": c}, {"USDC": c * 2_000 * 0.825 * use}) for c, use in books]
    m.env.ledger.check_conservation()
    debt0 = m.debt().sum(axis=0)
    oracles["ETH"].price = 2_000 * move
    repaid = np.zeros(2)
    for k, share in calls:
        a = accounts[k % len(accounts)]
        try:
            ev = m.liquidate(a, "ETH", "USDC", share * m.debt()[a].sum() + 1e-6, LIQ)
            repaid[m.idx[ev.debt_asset]] += ev.debt_repaid
        except Revert:
            pass
        m.env.ledger.check_conservation()  # after every operation
    p = m.prices()
    coll_usd = m.collateral() @ p
    debt_usd = m.debt() @ p
    shortfall = np.maximum(debt_usd - coll_usd, 0.0).sum()
    assert m.metrics()["bad_debt_usd"] == pytest.approx(shortfall + m.deficit @ p, rel=1e-9, abs=1e-6)
    # debt is conserved too: what was borrowed is repaid, still owed, or written off into the deficit
    np.testing.assert_allclose(m.debt().sum(axis=0) + repaid + m.deficit, debt0, rtol=1e-9, atol=1e-6)
