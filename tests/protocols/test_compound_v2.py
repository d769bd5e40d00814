"""Compound v2 (Comptroller + cTokens): hand-checked seizure, close factor, exchange-rate accrual, the jump
rate model and bad debt, plus the figures of compound-finance/compound-protocol's own tests
(tests/Comptroller/liquidateCalculateAmountSeizeTest.js, tests/Tokens/accrueInterestTest.js,
tests/Tokens/liquidateTest.js) and of the 26 November 2020 DAI liquidation."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import track_env

from defistress.protocols.base import Env, FixedPrice, Revert
from defistress.protocols.compound_v2 import (
    BLOCKS_PER_YEAR,
    CompoundV2,
    ComptrollerParams,
    CTokenMarket,
    JumpRateModel,
)

RATES = JumpRateModel(base_rate_per_year=0.02, multiplier_per_year=0.18, jump_multiplier_per_year=4.0, kink=0.8)
NO_INTEREST = JumpRateModel(0.0, 0.0, 0.0, 0.8)


def make(markets=None, prices=None, params=None):
    prices = prices or {"ETH": 2000.0, "DAI": 1.0, "USDC": 1.0}
    markets = markets or [
        CTokenMarket("ETH", 0.75, 0.2, 0.02, NO_INTEREST),
        CTokenMarket("DAI", 0.75, 0.1, 0.02, RATES),
        CTokenMarket("USDC", 0.75, 0.07, 0.02, NO_INTEREST),
    ]
    env = track_env(Env())
    oracles = {m.symbol: FixedPrice(prices[m.symbol], m.symbol) for m in markets}
    return CompoundV2("compound", markets, oracles, env, params or ComptrollerParams()), oracles


def lend(c: CompoundV2, asset: str, amount: float, holder: str = "lenders") -> None:
    c.env.ledger.mint(asset, holder, amount, "genesis")
    c.supply_liquidity(holder, asset, amount)


def open_account(c: CompoundV2, coll: dict[str, float], debt: dict[str, float]) -> int:
    (a,) = c.add_accounts(1)
    for s, amount in coll.items():
        c.env.ledger.mint(s, "borrowers", amount, "genesis")
        c.supply("borrowers", [a], s, [amount])
    for s, amount in debt.items():
        c.borrow("borrowers", [a], s, [amount])
    return int(a)


# --- the jump rate model and interest accrual ------------------------------------------------------------
def test_jump_rate_model_v2_hand_computed_rates():
    """BaseJumpRateModelV2: multiplierPerBlock = multiplierPerYear / (blocksPerYear x kink), so the annual
    rate at utilisation u <= kink is base + u x multiplier / kink; above it the jump applies."""
    m = RATES
    # cash 500, borrows 500, reserves 0: u = 0.5 -> 0.02 + 0.5 x 0.18 / 0.8 = 0.1325 a year
    assert m.utilization(500, 500, 0) == pytest.approx(0.5)
    assert m.borrow_rate_per_block(500, 500, 0) * BLOCKS_PER_YEAR == pytest.approx(0.1325)
    # cash 100, borrows 900, reserves 0: u = 0.9 -> 0.02 + 0.18 + (0.9 - 0.8) x 4 = 0.6 a year
    assert m.borrow_rate_per_block(100, 900, 0) * BLOCKS_PER_YEAR == pytest.approx(0.6)
    # reserves are not lendable: u = 900 / (150 + 900 - 50) = 0.9
    assert m.utilization(150, 900, 50) == pytest.approx(0.9)
    # supply rate = u x borrow rate x (1 - reserve factor) = 0.5 x 0.1325 x 0.9
    assert m.supply_rate_per_block(500, 500, 0, 0.1) * BLOCKS_PER_YEAR == pytest.approx(0.5 * 0.1325 * 0.9)
    assert m.utilization(1000, 0, 0) == 0.0


def test_accrue_interest_test_succeeds_and_saves_updated_values_in_storage():
    """accrueInterestTest.js 'succeeds and saves updated values in storage on success': borrow rate 1e-6 per
    block, totalBorrows 1e22 wei (1e4), totalReserves 1e20 (100), reserve factor 0.1, one block."""
    flat = JumpRateModel(1e-6 * BLOCKS_PER_YEAR, 0.0, 0.0, 0.8)  # the mock model: 1e-6 per block
    c, _ = make(markets=[CTokenMarket("DAI", 0.75, 0.1, 0.02, flat)], prices={"DAI": 1.0})
    c.total_borrows[0], c.total_reserves[0] = 1e4, 100.0
    c.accrue_blocks(1)
    assert c.borrow_index[0] == pytest.approx(1.0 + 1e-6, rel=1e-15)  # expectedBorrowIndex
    assert c.total_borrows[0] == pytest.approx(1e4 + 1e4 * 1e-6, rel=1e-15)  # expectedTotalBorrows
    assert c.total_reserves[0] == pytest.approx(100.0 + 1e4 * 1e-6 * 0.1, rel=1e-15)  # expectedTotalReserves


def test_ctoken_exchange_rate_accrual_hand_computed():
    """1,000 DAI supplied at the initial 0.02 DAI per cDAI mints 50,000 cDAI; 500 DAI borrowed leaves u = 0.5.
    One year of blocks in one accrual (simple interest, CToken.accrueInterest): factor 0.1325, borrows
    566.25, reserves 66.25 x 0.1 = 6.625, exchange rate (500 + 566.25 - 6.625) / 50,000 = 0.0211925."""
    c, _ = make()
    lend(c, "DAI", 1000.0)
    assert c.total_supply[1] == pytest.approx(50_000.0)
    a = open_account(c, {"ETH": 10.0}, {"DAI": 500.0})
    assert c.exchange_rate()[1] == pytest.approx(0.02)
    c.accrue_blocks(BLOCKS_PER_YEAR)
    assert c.total_borrows[1] == pytest.approx(566.25)
    assert c.total_reserves[1] == pytest.approx(6.625)
    assert c.exchange_rate()[1] == pytest.approx(1059.625 / 50_000)
    assert c.debt()[a, 1] == pytest.approx(566.25)  # the borrower's balance grows with the index
    # a lender redeeming its cDAI gets the interest net of reserves, up to the cash
    assert c.redeem_wallet("lenders", "DAI", 10_000.0) == pytest.approx(10_000 * 1059.625 / 50_000)


def test_accrue_over_seconds_counts_rate_model_blocks():
    c, _ = make()
    lend(c, "DAI", 1000.0)
    open_account(c, {"ETH": 10.0}, {"DAI": 500.0})
    c.accrue(365 * 86400.0)  # one year of 15-second blocks
    assert c.total_borrows[1] == pytest.approx(566.25)


# --- seizure and the close factor ---------------------------------------------------------------------------
def _set_exchange_rate(c: CompoundV2, asset: str, rate: float) -> None:
    """harnessSetExchangeRate: cash = rate x supply with no borrows or reserves."""
    j = c.idx[asset]
    c.total_supply[j] = 1000.0
    c.env.ledger.mint(asset, c.id, rate * 1000.0 - c.env.ledger.balance(c.id, asset), "harness")


@pytest.mark.parametrize(
    "exchange_rate, borrowed_price, collateral_price, incentive, repay",
    [
        (1.0, 1.0, 1.0, 1.0, 1.0),
        (2.0, 1.0, 1.0, 1.0, 1.0),
        (2.0, 2.0, 1.42, 1.3, 2.45),
        (2.789, 5.230480842, 771.32, 1.3, 10002.45),
    ],
)
def test_liquidate_calculate_amount_seize_test_returns_the_correct_value(
    exchange_rate, borrowed_price, collateral_price, incentive, repay
):
    """liquidateCalculateAmountSeizeTest.js 'returns the correct value for ...' (its fixed cases):
    seizeTokens = repay x incentive x priceBorrowed / priceCollateral / exchangeRate."""
    markets = [CTokenMarket("COLL", 0.5, 0.1, 0.02, NO_INTEREST), CTokenMarket("BORR", 0.5, 0.1, 0.02, NO_INTEREST)]
    c, _ = make(markets, {"COLL": collateral_price, "BORR": borrowed_price}, ComptrollerParams(0.5, incentive))
    _set_exchange_rate(c, "COLL", exchange_rate)
    expected = repay * incentive * borrowed_price / collateral_price / exchange_rate
    assert c.seize_tokens("COLL", "BORR", repay) == pytest.approx(expected, rel=1e-12)


def test_liquidate_test_seize_splits_the_protocol_share_into_reserves():
    """liquidateTest.js 'transfers the cash, borrows, tokens...': repay 10, 40 cTokens seized at an exchange
    rate of 0.2, protocolSeizeShareMantissa 2.8%: 1.12 cTokens burned into 0.224 of reserves, 38.88 to the
    liquidator, the borrower loses 40 cTokens. (40 = 10 x 1.0 x 0.8 / (1.0 x 0.2): prices 0.8 and 1.)"""
    markets = [CTokenMarket("BORR", 0.9, 0.0, 0.02, NO_INTEREST), CTokenMarket("COLL", 0.9, 0.0, 0.02, NO_INTEREST)]
    c, _ = make(markets, {"BORR": 0.8, "COLL": 1.0}, ComptrollerParams(0.5, 1.0, 0.028))
    lend(c, "BORR", 100.0)
    _set_exchange_rate(c, "COLL", 0.2)
    (a,) = c.add_accounts(1)
    c.coll_scaled[a, 1] = 40.0  # setBalance(cTokenCollateral, borrower, seizeTokens)
    c.total_supply[1] += 40.0
    c.env.ledger.mint("COLL", c.id, 40.0 * 0.2, "harness")  # the cash behind those cTokens
    c.debt_scaled[a, 0] = 20.0  # pretendBorrow(cToken, borrower, 1, 1, ...): 40 x 0.2 x 0.9 = 7.2 < 20 x 0.8
    c.total_borrows[0] += 20.0
    c.env.ledger.mint("BORR", "liq", 10.0, "genesis")
    before = (c.total_supply[1], c.total_reserves[1], c.cash()[0], c.total_borrows[0])
    ev = c.liquidate(a, "COLL", "BORR", 10.0, "liq", redeem=False)
    assert c.coll_scaled[a, 1] == pytest.approx(0.0, abs=1e-12)  # -seizeTokens
    assert c.wallet_ctokens["liq"][1] == pytest.approx(38.88)  # liquidatorShareTokens
    assert c.total_supply[1] == pytest.approx(before[0] - 1.12)  # total supply decreases
    assert c.total_reserves[1] == pytest.approx(before[1] + 0.224)  # addReservesAmount
    assert c.cash()[0] == pytest.approx(before[2] + 10.0) and c.total_borrows[0] == pytest.approx(before[3] - 10.0)
    assert ev.protocol_fee == pytest.approx(0.224)


def test_close_factor_caps_one_repayment_at_half_the_borrow():
    c, oracles = make()
    lend(c, "DAI", 1e6)
    a = open_account(c, {"ETH": 1.0}, {"DAI": 1400.0})  # limit 2000 x 0.75 = 1500
    c.env.ledger.mint("DAI", "liq", 1e4, "genesis")
    with pytest.raises(Revert, match="INSUFFICIENT_SHORTFALL"):
        c.liquidate(a, "ETH", "DAI", 100.0, "liq")
    oracles["ETH"].price = 1800.0  # 1800 x 0.75 = 1350 < 1400: shortfall
    assert c.health()[a] == pytest.approx(1350 / 1400)
    with pytest.raises(Revert, match="TOO_MUCH_REPAY"):
        c.liquidate(a, "ETH", "DAI", 700.01, "liq")
    pv = c.preview(a, "ETH", "DAI", 1e9)
    assert pv.debt_to_repay == pytest.approx(700.0)
    # hand check: 700 x 1.08 x 1 / 1800 = 0.42 ETH seized
    assert pv.collateral_seized == pytest.approx(0.42)
    ev = c.liquidate(a, "ETH", "DAI", 700.0, "liq")
    assert c.env.ledger.balance("liq", "ETH") == pytest.approx(0.42)
    assert ev.bonus_usd == pytest.approx(0.42 * 1800 - 700.0)  # the 8% incentive: $56
    assert c.debt()[a, 1] == pytest.approx(700.0)
    assert c.collateral()[a, 0] == pytest.approx(0.58)


def test_collateral_running_out_caps_the_repayment_and_leaves_bad_debt():
    """ETH at $1,000 against 1,400 DAI: 50% close factor = 700 DAI would seize 0.756 ETH, more than held; the
    preview caps the repayment at 1 ETH x 1000 / 1.08 = 925.93 DAI... of which the close factor allows 700.
    Two rounds later the ETH is gone and the rest of the debt stays: v2 has no write-off."""
    c, oracles = make()
    lend(c, "DAI", 1e6)
    a = open_account(c, {"ETH": 1.0}, {"DAI": 1400.0})
    oracles["ETH"].price = 1000.0
    c.env.ledger.mint("DAI", "liq", 1e4, "genesis")
    pv = c.preview(a, "ETH", "DAI", 1e9)
    assert pv.debt_to_repay == pytest.approx(700.0) and pv.collateral_seized == pytest.approx(0.756)
    c.liquidate(a, "ETH", "DAI", 700.0, "liq")
    pv = c.preview(a, "ETH", "DAI", 1e9)  # 0.244 ETH left: 0.244 x 1000 / 1.08 = 225.93 DAI
    assert pv.debt_to_repay == pytest.approx(0.244 * 1000 / 1.08)
    with pytest.raises(Revert, match="LIQUIDATE_SEIZE_TOO_MUCH"):
        c.liquidate(a, "ETH", "DAI", 300.0, "liq")
    c.liquidate(a, "ETH", "DAI", pv.debt_to_repay, "liq")
    assert c.collateral()[a, 0] == pytest.approx(0.0, abs=1e-12)
    left = 700.0 - 0.244 * 1000 / 1.08
    assert c.debt()[a, 1] == pytest.approx(left)
    assert c.metrics()["bad_debt_usd"] == pytest.approx(left)
    assert c.preview(a, "ETH", "DAI", 1e9).debt_to_repay == 0.0  # nothing left to seize
    assert c.losses_by_collateral() == pytest.approx({"DAI": left})


def test_the_46m_dai_liquidation_of_26_november_2020_seizes_about_2_4_billion_cdai():
    """Cointelegraph, 26 Nov 2020 ('Compound liquidator makes $4M as oracles post inflated Dai price'): 46M DAI
    repaid, almost 2.4 billion cDAI seized at $0.0209 per cDAI, worth about $50M, 'expected behavior given
    the 8% liquidation incentive'. Hand check: 46e6 x 1.08 / 0.0209 = 2.377e9 cDAI = 49.68M DAI."""
    c, oracles = make()
    j = c.idx["DAI"]
    _set_exchange_rate(c, "DAI", 0.0209)
    c.total_supply[j] = 0.0
    c.env.ledger.burn("DAI", c.id, c.env.ledger.balance(c.id, "DAI"), "harness")
    farmer = open_account(c, {"DAI": 60e6, "USDC": 65e6}, {})
    lend(c, "DAI", 500e6)
    c.borrow("borrowers", [farmer], "DAI", [93e6])  # 0.75 x 125M = 93.75M: healthy at $1
    assert c.exchange_rate()[j] == pytest.approx(0.02)  # the first mint sets 0.02; force the Nov 2020 rate
    c.total_supply[j] *= 0.02 / 0.0209
    c.coll_scaled[farmer, j] *= 0.02 / 0.0209
    c.wallet_ctokens["lenders"][j] *= 0.02 / 0.0209
    assert c.exchange_rate()[j] == pytest.approx(0.0209)
    oracles["DAI"].price = 1.23  # the oracle's DAI ceiling that day (within 20% of the anchor)
    assert c.health()[farmer] < 1.0
    c.env.ledger.mint("DAI", "liquidator", 46e6, "genesis")
    ev = c.liquidate(farmer, "DAI", "DAI", 46e6, "liquidator", redeem=False)
    seized = c.wallet_ctokens["liquidator"][j]
    assert seized == pytest.approx(46e6 * 1.08 / 0.0209, rel=1e-9)
    assert 2.3e9 < seized < 2.4e9
    assert seized * 0.0209 == pytest.approx(49.68e6, rel=1e-3)
    assert ev.bonus_usd == pytest.approx(0.08 * 46e6 * 1.23, rel=1e-9)


def test_borrow_past_the_collateral_factor_reverts():
    c, _ = make()
    lend(c, "DAI", 1e6)
    with pytest.raises(Revert, match="INSUFFICIENT_LIQUIDITY"):
        open_account(c, {"ETH": 1.0}, {"DAI": 1500.01})
    a = open_account(c, {"ETH": 1.0}, {"DAI": 1500.0})
    assert c.health()[a] == pytest.approx(1.0)
    paid = c.repay("borrowers", [a], "DAI", [2000.0])
    assert paid == pytest.approx([1500.0]) and np.isinf(c.health()[a])


def test_a_market_may_set_its_own_incentive_for_seizures_of_its_ctokens():
    """Compound v2 has one Comptroller incentive; a per-market one (forks) applies to the collateral seized:
    700 DAI repaid against ETH seized at 1.10 instead of 1.08 gives 700 x 1.10 / 1800 = 0.42778 ETH."""
    markets = [
        CTokenMarket("ETH", 0.75, 0.2, 0.02, NO_INTEREST, liquidation_incentive=1.10),
        CTokenMarket("DAI", 0.75, 0.1, 0.02, RATES),
        CTokenMarket("USDC", 0.75, 0.07, 0.02, NO_INTEREST),
    ]
    c, oracles = make(markets)
    lend(c, "DAI", 1e6)
    a = open_account(c, {"ETH": 1.0}, {"DAI": 1400.0})
    oracles["ETH"].price = 1800.0
    assert c.preview(a, "ETH", "DAI", 1e9).collateral_seized == pytest.approx(700 * 1.10 / 1800)
    assert c.seize_tokens("USDC", "DAI", 100.0) == pytest.approx(100 * 1.08 / 0.02)  # the Comptroller's
