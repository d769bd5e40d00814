"""The liquidators' exact pair screen (`LendingMarket.liquidation_pairs_and_caps`) and the contract's interest accrual
(precision "aave-v3"), by hand: every expected figure below is arithmetic on the Aave v3 rules quoted in
protocols/lending.py (close factor, bonus, protocol fee on the bonus part, MathUtils compounding), not the module's
output."""

from __future__ import annotations

import numpy as np
import pytest

from defistress.protocols.base import Env, FixedPrice
from defistress.protocols.lending import AssetParams, LendingMarket
from defistress.protocols.lending_accounts import EModeCategory

YEAR = 365.0 * 86400.0  # seconds
ETH = AssetParams("ETH", 0.80, 0.825, 0.05, protocol_fee=0.10)
USDC = AssetParams("USDC", 0.77, 0.80, 0.045, emode_category=1, protocol_fee=0.10)
DAI = AssetParams("DAI", 0.75, 0.80, 0.05, emode_category=1, protocol_fee=0.10)
STABLES = EModeCategory(1, 0.93, 0.95, 0.01, "Stablecoins")
PRICES = {"ETH": 2_000.0, "USDC": 1.0, "DAI": 1.0}


def market(rule: str = "aave-v3.0", precision: str = "float") -> tuple[LendingMarket, dict]:
    env = Env()
    oracles = {s: FixedPrice(p, s) for s, p in PRICES.items()}
    m = LendingMarket("lend", [ETH, USDC, DAI], oracles, env, rule, [STABLES], None, precision)
    for s in ("USDC", "DAI"):
        env.ledger.mint(s, "lenders", 1e6, "genesis")
        m.supply_liquidity("lenders", s, 1e6)
    return m, oracles


def account(m: LendingMarket, coll: dict[str, float], debt: dict[str, float], emode: int = 0) -> int:
    a = m.add_accounts(1)
    for s, amount in coll.items():
        m.env.ledger.mint(s, "user", amount, "genesis")
        m.supply("user", a, s, np.array([amount]))
    if emode:
        m.set_emode(a, emode)
    for s, amount in debt.items():
        m.seed_borrow("user", a, s, np.array([amount]))
    return int(a[0])


def test_no_rows_give_empty_pairs_and_zero_caps():
    m, _ = market()
    ci, dj, best, cap_max = m.liquidation_pairs_and_caps(np.array([], dtype=np.int64))
    assert ci.shape == dj.shape == best.shape == (0,)
    assert cap_max.tolist() == [0.0, 0.0, 0.0]


def test_v30_pairs_profits_and_caps_by_hand():
    m, o = market("aave-v3.0")
    a = account(m, {"ETH": 10.0}, {"USDC": 15_000.0})
    b = account(m, {"ETH": 10.0}, {"USDC": 15_800.0})
    c = account(m, {"ETH": 1.0}, {})  # no debt: no pair
    o["ETH"].price = 1_800.0
    # a: collateral 18,000 USD, HF = 18,000 · 0.825 / 15,000 = 0.99 > 0.95: close factor 50%, cap 7,500 USD;
    #    seized 7,500 · 1.05 = 7,875, fee (7,875 - 7,500) · 0.10 = 37.5, profit 7,875 - 37.5 - 7,500 = 337.5
    # b: HF = 14,850 / 15,800 = 0.9399 <= 0.95: 100%, cap 15,800; seized 16,590 <= 18,000, fee 79, profit 711
    ci, dj, best, cap_max = m.liquidation_pairs_and_caps(np.array([a, b, c]))
    assert ci.tolist() == [0, 0, -1] and dj.tolist() == [1, 1, -1]
    assert best[:2] == pytest.approx([337.5, 711.0], rel=1e-12) and best[2] == -np.inf
    assert cap_max == pytest.approx([0.0, 15_800.0, 0.0], rel=1e-12)  # per debt asset: the largest row's cap
    assert [x.tolist() for x in m.best_liquidation_pairs(np.array([a, b, c]))] == [x.tolist() for x in (ci, dj, best)]
    # a budget of 5,000 USD of USDC binds both: seized 5,250, fee 25, profit 225
    ci, dj, best, cap_max = m.liquidation_pairs_and_caps(np.array([a, b]), np.array([1e9, 5_000.0, 1e9]))
    assert best == pytest.approx([225.0, 225.0], rel=1e-12) and cap_max == pytest.approx([0.0, 15_800.0, 0.0])
    # a zero budget: nothing to repay, no pair
    ci, dj, best, _ = m.liquidation_pairs_and_caps(np.array([a]), np.array([1e9, 0.0, 1e9]))
    assert ci.tolist() == [-1] and dj.tolist() == [-1] and best[0] == -np.inf
    # ETH at 1,500: b's 15,000 USD of collateral bind: repay 15,000 / 1.05 = 14,285.71, fee 10% of the bonus part
    o["ETH"].price = 1_500.0
    _, _, best, _ = m.liquidation_pairs_and_caps(np.array([b]))
    repay = 15_000 / 1.05
    assert best[0] == pytest.approx(15_000 - (15_000 - repay) * 0.10 - repay, rel=1e-12)


def test_v33_halves_only_large_positions_above_095_and_caps_at_half_the_total_debt():
    m, o = market("aave-v3.3")
    a = account(m, {"ETH": 10.0}, {"USDC": 10_000.0, "DAI": 5_000.0})
    small = account(m, {"ETH": 1.0}, {"USDC": 1_500.0})
    o["ETH"].price = 1_800.0
    # a: collateral 18,000 and each debt >= 2,000? USDC 10,000 yes, DAI 5,000 yes; HF = 14,850 / 15,000 = 0.99:
    #    cap = min(debt, 50% of the total 15,000 USD) = 7,500 on USDC, 5,000 on DAI. ETH on USDC pays most:
    #    7,875 - 37.5 - 7,500 = 337.5 (ETH on DAI: 5,250 - 25 - 5,000 = 225)
    # small: collateral 1,800 < 2,000: the whole debt 1,500 (HF 0.99): 1,575 - 7.5 - 1,500 = 67.5
    ci, dj, best, cap_max = m.liquidation_pairs_and_caps(np.array([a, small]))
    assert ci.tolist() == [0, 0] and dj.tolist() == [1, 1]
    assert best == pytest.approx([337.5, 67.5], rel=1e-12)
    # the caps' maximum runs over every collateral, held or not: against a's 0 USD of USDC or DAI collateral
    # (< 2,000) the whole reserve debt is the cap, 10,000 USDC
    assert cap_max == pytest.approx([0.0, 10_000.0, 5_000.0], rel=1e-12)
    # without USDC to repay with, a's best pair is ETH on DAI
    ci, dj, best, _ = m.liquidation_pairs_and_caps(np.array([a]), np.array([1e9, 0.0, 1e9]))
    assert (ci[0], dj[0]) == (0, 2) and best[0] == pytest.approx(225.0, rel=1e-12)
    # ETH at 1,600: HF = 13,200 / 15,000 = 0.88 <= 0.95: the whole reserve debt, 10,000 USDC, for 10,500 of ETH
    o["ETH"].price = 1_600.0
    _, _, best, cap_max = m.liquidation_pairs_and_caps(np.array([a]))
    assert best[0] == pytest.approx(10_500 - 50 - 10_000, rel=1e-12)
    assert cap_max == pytest.approx([0.0, 10_000.0, 5_000.0], rel=1e-12)


def test_rows_in_emode_use_the_category_bonus_and_threshold():
    m, o = market("aave-v3.0")
    o["DAI"].price = 0.85  # so that r may take 9,000 DAI (7,650 USD <= 8,000) outside e-mode
    e = account(m, {"USDC": 10_000.0}, {"DAI": 9_000.0}, emode=1)
    r = account(m, {"USDC": 10_000.0}, {"DAI": 9_000.0})
    o["DAI"].price = 1.0
    # e (category: LT 0.95, bonus 1%): HF = 9,500 / 9,000 > 0.95: cap 4,500; seized 4,545, fee 4.5, profit 40.5
    # r (USDC's own: LT 0.80, bonus 4.5%): HF = 8,000 / 9,000 = 0.889: cap 9,000; seized 9,405, fee 40.5, 364.5
    ci, dj, best, cap_max = m.liquidation_pairs_and_caps(np.array([e, r]))
    assert ci.tolist() == [1, 1] and dj.tolist() == [2, 2]
    assert best == pytest.approx([40.5, 364.5], rel=1e-12)
    assert cap_max == pytest.approx([0.0, 0.0, 9_000.0], rel=1e-12)
    _, _, best, _ = m.liquidation_pairs_and_caps(np.array([e]))
    assert best == pytest.approx([40.5], rel=1e-12)


def test_a_disabled_collateral_is_not_a_pair():
    m, o = market("aave-v3.0")
    a = account(m, {"ETH": 10.0, "DAI": 1_000.0}, {"USDC": 15_000.0})
    m.set_collateral([a], "DAI", False)
    o["ETH"].price = 1_800.0  # HF = 14,850 / 15,000 = 0.99 (the DAI does not count): ETH on USDC, 337.5
    ci, dj, best, _ = m.liquidation_pairs_and_caps(np.array([a]))
    assert (ci[0], dj[0]) == (0, 1) and best[0] == pytest.approx(337.5, rel=1e-12)


def test_contract_accrual_compounds_from_each_reserves_last_update():
    """MathUtils.calculateCompoundedInterest (three terms) for the borrow index, calculateLinearInterest for the
    liquidity index, both from the reserve's last update, at the rates set then."""
    m, _ = market(precision="aave-v3")
    account(m, {"ETH": 300.0}, {"USDC": 450_000.0})  # USDC: 450,000 of 1,000,000 supplied: u = 0.45
    rb = 0.04 * 0.45 / 0.90  # slope1 · u / optimal = 2% a year
    rs = rb * 0.45 * (1 - 0.15)  # supply rate: rb · u · (1 - reserve factor)

    def compound(x: float) -> float:
        b = rb / YEAR
        return 1 + b * x + b * b * x * (x - 1) / 2 + b**3 * x * (x - 1) * (x - 2) / 6

    m.accrue(YEAR)
    assert m.borrow_index[1] == pytest.approx(compound(YEAR), rel=1e-14)
    assert m.liq_index[1] == pytest.approx(1 + rs, rel=1e-14)
    assert m.borrow_index[0] == 1.0 and m.liq_index[0] == 1.0  # nothing borrowed of ETH: rate 0
    assert m.borrow_index[2] == 1.0 and m.liq_index[2] == 1.0
    # no action since: both years compound from the first update (not year on year)
    m.accrue(YEAR)
    assert m.borrow_index[1] == pytest.approx(compound(2 * YEAR), rel=1e-14)
    assert m.liq_index[1] == pytest.approx(1 + 2 * rs, rel=1e-14)
    assert compound(2 * YEAR) != pytest.approx(compound(YEAR) ** 2, rel=1e-9)


def test_v30_halves_a_small_position_above_095_where_v33_takes_it_whole():
    m, o = market("aave-v3.0")
    a = account(m, {"ETH": 1.0}, {"USDC": 1_500.0})
    o["ETH"].price = 1_800.0
    # HF = 1,800 · 0.825 / 1,500 = 0.99: v3.0 caps at 50% of 1,500 = 750 whatever the size (v3.3: all 1,500);
    # seized 750 · 1.05 = 787.5, fee 3.75, profit 787.5 - 3.75 - 750 = 33.75
    _, _, best, cap_max = m.liquidation_pairs_and_caps(np.array([a]))
    assert best[0] == pytest.approx(33.75, rel=1e-12)
    assert cap_max == pytest.approx([0.0, 750.0, 0.0], rel=1e-12)
