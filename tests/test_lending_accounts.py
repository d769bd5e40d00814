"""Aave v3's fuller account model in the vectorised lending market: used-as-collateral flags, e-mode categories,
isolation mode, caps, the most profitable liquidation pair and the contract's rounding. Expected values are hand
computations from the Aave v3.0.2 rules quoted in the docstrings, or a per-row loop written here."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from defistress.protocols.base import Env, FixedPrice, Revert
from defistress.protocols.lending import AssetParams, LendingMarket
from defistress.protocols.lending_accounts import EModeCategory

ETH = AssetParams("ETH", 0.80, 0.825, 0.05, protocol_fee=0.10)
BTC = AssetParams("BTC", 0.70, 0.75, 0.08, protocol_fee=0.10)
USDC = AssetParams("USDC", 0.77, 0.80, 0.045, emode_category=1, borrowable_in_isolation=True, decimals=6)
DAI = AssetParams("DAI", 0.75, 0.80, 0.05, emode_category=1, borrowable_in_isolation=True)
ISO = AssetParams("ISO", 0.50, 0.60, 0.10, debt_ceiling=1_000_000.0)
STABLES = EModeCategory(1, 0.93, 0.95, 0.01, "Stablecoins")
PRICES = {"ETH": 2_000.0, "BTC": 60_000.0, "USDC": 1.0, "DAI": 1.0, "ISO": 10.0}
LIQ = "liq"


def market(assets=(ETH, BTC, USDC, DAI, ISO), rule="aave-v3.0", emode_price=None, precision="float", **changes):
    env = Env()
    oracles = {a.symbol: FixedPrice(PRICES[a.symbol], a.symbol) for a in assets}
    extra = {1: FixedPrice(emode_price, "stables-usd")} if emode_price is not None else None
    assets = [AssetParams(**{**a.__dict__, **changes.get(a.symbol, {})}) for a in assets]
    m = LendingMarket("lend", assets, oracles, env, rule, [STABLES], extra, precision)
    for s in ("USDC", "DAI"):
        env.ledger.mint(s, "lenders", 1e8, "genesis")
        m.supply_liquidity("lenders", s, 1e8)
        env.ledger.mint(s, LIQ, 1e8, "genesis")
    for s in ("ETH", "BTC"):
        env.ledger.mint(s, "lenders", 1e4, "genesis")
        m.supply_liquidity("lenders", s, 1e4)
    return m, oracles


def open_account(m, coll, debt=None, seed=False):
    a = m.add_accounts(1)
    for s, amount in coll.items():
        m.env.ledger.mint(s, "user", amount, "genesis")
        m.supply("user", a, s, np.array([amount]))
    for s, amount in (debt or {}).items():
        (m.seed_borrow if seed else m.borrow)("user", a, s, np.array([amount]))
    return int(a[0])


# --- used-as-collateral flags ----------------------------------------------------------------------------------
def test_a_disabled_asset_no_longer_counts_and_cannot_be_seized():
    m, o = market()
    a = open_account(m, {"ETH": 10.0, "BTC": 0.5}, {"USDC": 10_000.0})
    # weighted = 10·2000·0.825 + 0.5·60000·0.75 = 16,500 + 22,500 = 39,000 USD -> HF 3.9
    assert m.health()[a] == pytest.approx(3.9, rel=1e-12)
    m.set_collateral([a], "BTC", False)
    assert m.health()[a] == pytest.approx(1.65, rel=1e-12)  # 16,500 / 10,000
    assert m.account_usd()[0][a] == pytest.approx(20_000.0)
    assert m.collateral_enabled[a].tolist() == [True, False, True, True, True]
    o["ETH"].price = 1_200.0  # HF 12,000 · 0.825 / 10,000 = 0.99: liquidatable, but only through its ETH
    with pytest.raises(Revert, match="COLLATERAL_CANNOT_BE_LIQUIDATED"):
        m.liquidate(a, "BTC", "USDC", 1e9, LIQ)
    ev = m.liquidate(a, "ETH", "USDC", 1e9, LIQ)
    assert ev.collateral_asset == "ETH" and ev.debt_repaid == pytest.approx(5_000.0)  # v3.0: HF > 0.95 -> half
    m.env.ledger.check_conservation()


def test_disabling_collateral_that_holds_the_account_up_reverts_and_changes_nothing():
    m, _ = market()
    a = open_account(m, {"ETH": 10.0, "BTC": 0.5}, {"USDC": 30_000.0})
    with pytest.raises(Revert, match="HEALTH_FACTOR_LOWER"):
        m.set_collateral([a], "BTC", False)  # would leave 16,500 / 30,000 = 0.55
    assert m.collateral_enabled[a, 1] and m.health()[a] == pytest.approx(39_000 / 30_000)
    with pytest.raises(Revert, match="UNDERLYING_BALANCE_ZERO"):
        m.set_collateral([a], "DAI", True)


def test_first_supplies_follow_aave_v302_auto_enable_rules():
    m, _ = market(DAI={"ltv": 0.0})
    a = open_account(m, {"ETH": 1.0, "DAI": 100.0})
    assert m.collateral_enabled[a].tolist() == [True, True, True, False, True]  # LTV 0: not enabled
    b = open_account(m, {"ISO": 100.0})
    assert not m.collateral_enabled[b, 4]  # an isolated asset is never enabled by a supply
    m.set_collateral([b], "ISO", True)
    assert m.isolation_state([b])[0].tolist() == [True]
    m.env.ledger.mint("ETH", "user", 1.0, "genesis")
    m.supply("user", np.array([b]), "ETH", np.array([1.0]))
    assert not m.collateral_enabled[b, 0]  # in isolation mode: other supplies stay off
    with pytest.raises(Revert, match="ISOLATION_MODE_OR_LTV_ZERO"):
        m.set_collateral([b], "ETH", True)


# --- e-mode ------------------------------------------------------------------------------------------------
def test_emode_lends_at_the_category_ltv_and_binds_borrows_to_the_category():
    m, _ = market()
    a = open_account(m, {"USDC": 10_000.0})
    with pytest.raises(Revert, match="exceed LTV"):
        m.borrow("user", np.array([a]), "DAI", np.array([9_000.0]))  # 9,000 > 7,700 outside e-mode
    m.set_emode([a], 1)
    m.borrow("user", np.array([a]), "DAI", np.array([9_000.0]))  # 9,000 <= 9,300
    assert m.health()[a] == pytest.approx(9_500 / 9_000, rel=1e-12)
    with pytest.raises(Revert, match="INCONSISTENT_EMODE_CATEGORY"):
        m.borrow("user", np.array([a]), "ETH", np.array([0.1]))
    with pytest.raises(Revert, match="cannot leave"):
        m.set_emode([a], 0)  # 10,000 · 0.80 / 9,000 = 0.89
    assert m.user_emode[a] == 1
    b = open_account(m, {"ETH": 1.0}, {"USDC": 100.0, "DAI": 100.0})
    m.set_emode([b], 1)  # both debts are stablecoins of category 1: allowed
    c = open_account(m, {"DAI": 1_000.0}, {"ETH": 0.1})
    with pytest.raises(Revert, match="borrows outside"):
        m.set_emode([c], 1)


def test_an_emode_liquidation_pays_the_category_bonus():
    m, o = market()
    a = open_account(m, {"USDC": 10_000.0})
    m.set_emode([a], 1)
    m.borrow("user", np.array([a]), "DAI", np.array([9_000.0]))
    o["DAI"].price = 1.06  # debt 9,540 USD: HF = 9,500 / 9,540 = 0.99581
    assert m.health()[a] == pytest.approx(9_500 / 9_540, rel=1e-12)
    ev = m.liquidate(a, "USDC", "DAI", 1e9, LIQ)
    # v3.0 close factor 50% of 9,000 DAI = 4,500 DAI; seized = 4,500 · 1.06 / 1.00 · 1.01 = 4,817.7 USDC
    seized = 4_500 * 1.06 * 1.01
    fee = (seized - seized / 1.01) * 0.10  # USDC's own protocol fee on the category bonus
    assert ev.debt_repaid == pytest.approx(4_500.0, rel=1e-12)
    assert ev.collateral_seized == pytest.approx(seized - fee, rel=1e-12)
    assert ev.protocol_fee == pytest.approx(fee, rel=1e-12)


def test_the_category_price_source_prices_its_assets_for_accounts_in_the_category():
    m, o = market(emode_price=1.0)
    o["DAI"].price = 0.98
    a = open_account(m, {"USDC": 10_000.0})
    b = open_account(m, {"DAI": 10_000.0})
    m.set_emode([a, b], 1)
    c = open_account(m, {"DAI": 10_000.0})  # not in e-mode: its own oracle
    coll = m.account_usd()[0]
    assert coll[a] == pytest.approx(10_000.0) and coll[b] == pytest.approx(10_000.0)
    assert coll[c] == pytest.approx(9_800.0)
    m.emode_oracles[1].price = 0.99
    assert m.account_usd()[0][b] == pytest.approx(9_900.0)  # the cache follows the category's price


# --- isolation mode ------------------------------------------------------------------------------------------
def test_isolation_mode_limits_what_and_how_much_can_be_borrowed():
    m, _ = market(ISO={"debt_ceiling": 20_000.0})
    a = open_account(m, {"ISO": 10_000.0})  # 100,000 USD of an isolated asset, LTV 0.5
    m.set_collateral([a], "ISO", True)
    with pytest.raises(Revert, match="NOT_BORROWABLE_IN_ISOLATION"):
        m.borrow("user", np.array([a]), "ETH", np.array([1.0]))
    m.borrow("user", np.array([a]), "USDC", np.array([12_345.0]))
    assert m.iso_debt[4] == pytest.approx(12_345.0)
    with pytest.raises(Revert, match="DEBT_CEILING_EXCEEDED"):
        m.borrow("user", np.array([a]), "DAI", np.array([8_000.0]))  # 20,345 > 20,000
    m.env.ledger.mint("USDC", "user", 345.0, "genesis")
    m.repay("user", np.array([a]), "USDC", np.array([345.0]))
    assert m.iso_debt[4] == pytest.approx(12_000.0)
    m.borrow("user", np.array([a]), "DAI", np.array([8_000.0]))  # exactly the ceiling
    assert m.iso_debt[4] == pytest.approx(20_000.0)


# --- caps ------------------------------------------------------------------------------------------------------
def test_supply_and_borrow_caps_hold():
    m, _ = market(ETH={"supply_cap": 10_050.0}, USDC={"borrow_cap": 5_000.0})  # lenders already supply 10,000 ETH
    a = open_account(m, {"ETH": 50.0})
    with pytest.raises(Revert, match="SUPPLY_CAP_EXCEEDED"):
        open_account(m, {"ETH": 0.5})
    m.borrow("user", np.array([a]), "USDC", np.array([5_000.0]))
    with pytest.raises(Revert, match="BORROW_CAP_EXCEEDED"):
        m.borrow("user", np.array([a]), "USDC", np.array([1.0]))


# --- the liquidator's pair --------------------------------------------------------------------------------------
def test_the_most_profitable_pair_is_the_higher_bonus_that_the_balances_allow():
    m, o = market()
    a = open_account(m, {"ETH": 5.0, "BTC": 0.2}, {"USDC": 8_000.0, "DAI": 4_000.0})
    o["ETH"].price, o["BTC"].price = 1_000.0, 40_000.0  # coll 5,000 + 8,000; weighted 4,125 + 6,000 < 12,000
    assert m.health()[a] < 0.95
    ci, dj, profit = m.best_liquidation_pairs(np.array([a]))
    # HF <= 0.95: 100% of a reserve's debt. BTC (bonus 8%) on USDC: repay 8,000 would need 8,640 of BTC > 8,000 held,
    # so all 8,000 USD of BTC go for 8,000/1.08 repaid: gain 8,000 - fee - 7,407.41 with fee = 10% of the bonus part
    btc_gain = 8_000 - (8_000 - 8_000 / 1.08) * 0.10 - 8_000 / 1.08
    # ETH (5%) on USDC: 5,000 USD of ETH for 4,761.90: gain 5,000 - (5,000 - 5,000/1.05)·0.1 - 4,761.90
    eth_gain = 5_000 - (5_000 - 5_000 / 1.05) * 0.10 - 5_000 / 1.05
    assert (m.assets[ci[0]], m.assets[dj[0]]) == ("BTC", "USDC") and profit[0] == pytest.approx(btc_gain)
    assert btc_gain > eth_gain
    # without USDC to repay with, the best pair pays in DAI: BTC on DAI, 4,000 repaid for 4,320 of BTC
    ci, dj, profit = m.best_liquidation_pairs(np.array([a]), np.array([1e9, 1e9, 0.0, 1e9, 1e9]))
    assert (m.assets[ci[0]], m.assets[dj[0]]) == ("BTC", "DAI")
    assert profit[0] == pytest.approx(4_320 - (4_320 - 4_000) * 0.10 - 4_000)


def test_rows_with_nothing_to_seize_have_no_pair():
    m, o = market()
    a = open_account(m, {"ETH": 1.0}, {"USDC": 1_000.0})
    m.set_collateral([open_account(m, {"DAI": 1.0})], "DAI", False)
    o["ETH"].price = 1.0
    m.liquidate(a, "ETH", "USDC", 1e9, LIQ)  # all ETH goes; debt stays (v3.0)
    ci, dj, profit = m.best_liquidation_pairs(np.array([a, a + 1]))
    assert ci.tolist() == [-1, -1] and np.isneginf(profit).all()


# --- vectorised == per row --------------------------------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 40))
def test_vectorised_values_equal_a_per_row_loop(seed, n):
    rng = np.random.default_rng(seed)
    m, o = market(emode_price=1.001)
    rows = m.add_accounts(n)
    coll = rng.exponential(1.0, (n, 5)) * (rng.random((n, 5)) < 0.6) * np.array([5, 0.2, 5e3, 5e3, 500])
    debt = np.zeros((n, 5))
    debt[:, 2:4] = rng.exponential(1.0, (n, 2)) * 3e3 * (rng.random((n, 2)) < 0.7)
    for s in m.assets:
        m.env.ledger.mint(s, "book", float(coll[:, m.idx[s]].sum()) + 1, "genesis")
    enabled = rng.random((n, 5)) < 0.8
    emode = np.where(rng.random(n) < 0.4, 1, 0)
    m.genesis_positions("book", rows, coll, debt, enabled, emode)
    o["DAI"].price = float(rng.uniform(0.95, 1.05))
    c_usd, d_usd = m.account_usd()
    hf = m.health()
    p = m.prices()
    for r in range(n):  # the rule, row by row
        in_cat = (emode[r] == 1) & (m.asset_category == 1)
        price = np.where(in_cat, 1.001, p)
        lt = np.where(in_cat, 0.95, m.lt)
        cv = coll[r] * enabled[r] * price
        dv = debt[r] * price
        assert c_usd[r] == pytest.approx(cv.sum(), rel=1e-12, abs=1e-9)
        assert d_usd[r] == pytest.approx(dv.sum(), rel=1e-12, abs=1e-9)
        want = (cv * lt).sum() / dv.sum() if dv.sum() > 0 else np.inf
        assert hf[r] == pytest.approx(want, rel=1e-12)
    m.env.ledger.check_conservation()


# --- the contract's rounding -------------------------------------------------------------------------------------
def test_aave_precision_rounds_prices_values_and_the_average_threshold():
    m, o = market(precision="aave-v3")
    o["ETH"].price = 1_234.567891234  # AaveOracle: 8 decimals -> 1,234.56789123
    a = open_account(m, {"ETH": 1.0, "BTC": 0.01}, {"USDC": 1_000.0}, seed=True)
    assert m.prices()[0] == 1_234.56789123
    # values in 1e-8 USD: ETH 123,456,789,123; BTC 60,000,000,000; avg LT = floor((123456789123·8250 +
    # 60000000000·7500) / 183456789123) = 8004 (8004.7 exactly); HF = percentMul(183456789123, 8004) / 1e11
    coll = 123_456_789_123 + 60_000_000_000
    avg_lt = (123_456_789_123 * 8250 + 60_000_000_000 * 7500) // coll
    assert avg_lt == 8004
    weighted = (coll * avg_lt + 5_000) // 10_000
    assert m.health()[a] == pytest.approx(weighted / (1_000 * 10**8), rel=1e-15)
    assert m.account_usd()[0][a] == coll / 1e8
