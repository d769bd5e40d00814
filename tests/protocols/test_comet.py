"""Compound III (Comet) against the figures of Compound's own contract tests (compound-finance/comet, test/).

Each test names the test file and case it reproduces. Their set-up uses CometHarness (setBasePrincipal,
setTotalsBasic, setCollateralBalance, bumpTotalsCollateral = set the total and allocate the tokens to
Comet); here the same state is written with the model's setters and ledger mints. Amounts in the
contract tests are integer wei; here they are token units (USDC 6 decimals: 100 wei = 1e-4 USDC), compared
to float precision. Default test market (test/helpers.ts makeProtocol / defaultAssets): base USDC at $1,
COMP $175, WETH $3,000, WBTC $41,000; borrowCF 1 - 1 wei (0.9999 once packed to 4 decimals by
getPackedAssetInternal), liquidateCF 1, liquidationFactor 1, storeFrontPriceFactor 1, targetReserves 0,
baseBorrowMin 1 USDC; rates supply kink 0.8 (0, 0.05, 2), borrow kink 0.8 (0.005, 0.1, 3).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import track_env

from defistress.protocols.base import Env, FixedPrice, Revert
from defistress.protocols.comet import SECONDS_PER_YEAR, Comet, CometAsset, CometParams, CometRates

USDC_WEI = 1e-6  # one USDC wei in token units
DEFAULT_PRICES = {"USDC": 1.0, "COMP": 175.0, "WETH": 3000.0, "WBTC": 41000.0}
TEST_RATES = CometRates(0.8, 0.0, 0.05, 2.0, 0.8, 0.005, 0.1, 3.0)  # helpers.ts makeProtocol defaults
ZERO_RATES = CometRates(0.8, 0.0, 0.0, 0.0, 0.8, 0.0, 0.0, 0.0)


def make_comet(
    assets=None,
    prices=None,
    rates=TEST_RATES,
    store_front=1.0,
    target_reserves=0.0,
    n_accounts=4,
):
    """makeProtocol: base USDC and the given collateral (default COMP, WETH, WBTC with the test defaults)."""
    prices = dict(DEFAULT_PRICES if prices is None else prices)
    if assets is None:
        assets = [CometAsset(s, 0.9999, 1.0, 1.0) for s in ("COMP", "WETH", "WBTC")]
    env = track_env(Env())
    oracles = {s: FixedPrice(prices[s], s) for s in ["USDC", *[a.symbol for a in assets]]}
    c = Comet("comet", CometParams("USDC", tuple(assets), rates, store_front, target_reserves, 1.0), oracles, env)
    c.add_accounts(n_accounts)
    return c, oracles


def bump_totals_collateral(c: Comet, asset: str, delta: float) -> None:
    """helpers.ts bumpTotalsCollateral: the users' total grows and the tokens are allocated to Comet."""
    c.set_totals_collateral(asset, c.totals_collateral[c.idx[asset]] + delta)
    c.env.ledger.mint(asset, c.id, delta, "allocateTo")


# --- test/absorb-test.ts --------------------------------------------------------------------------------
def test_absorb_test_absorbs_1_account_and_pays_out_the_absorber():
    c, _ = make_comet(rates=ZERO_RATES)
    absorber, underwater = "absorber", 1
    c.set_totals_basic(total_borrow_base=100 * USDC_WEI)
    c.set_base_principal(underwater, -100 * USDC_WEI)
    assert c.reserves() == pytest.approx(100 * USDC_WEI)  # r0
    (ev,) = c.absorb(absorber, [underwater], base_fee_gwei=20.0, gas_used=150_000)
    assert c.total_supply_base == 0 and c.total_borrow_base == pytest.approx(0.0, abs=1e-18)
    assert c.reserves() == pytest.approx(0.0, abs=1e-18)  # r1
    assert c.balance()[underwater] == 0.0  # pU1.internal USDC 0
    pts = c.points[absorber]
    assert (pts.num_absorbs, pts.num_absorbed) == (1, 1)
    assert pts.approx_spend_eth == pytest.approx(150_000 * 20e-9)  # gasUsed x basefee
    assert ev.debt_repaid == pytest.approx(100 * USDC_WEI)  # AbsorbDebt.basePaidOut 100


def test_absorb_test_absorbs_2_accounts_and_pays_out_the_absorber():
    c, _ = make_comet(rates=ZERO_RATES)
    c.set_totals_basic(total_borrow_base=2000 * USDC_WEI)
    assert c.reserves() == pytest.approx(2000 * USDC_WEI)
    c.set_base_principal(1, -100 * USDC_WEI)
    c.set_base_principal(2, -700 * USDC_WEI)
    events = c.absorb("absorber", [1, 2])
    assert c.total_supply_base == 0.0
    assert c.total_borrow_base == pytest.approx(1200 * USDC_WEI)
    assert c.reserves() == pytest.approx(1200 * USDC_WEI)
    assert (c.points["absorber"].num_absorbs, c.points["absorber"].num_absorbed) == (1, 2)
    assert [e.debt_repaid for e in events] == pytest.approx([100 * USDC_WEI, 700 * USDC_WEI])


def test_absorb_test_absorbs_3_accounts_with_collateral_and_pays_out_the_absorber():
    c, _ = make_comet(rates=ZERO_RATES)
    c.set_totals_basic(total_borrow_base=3e15, total_supply_base=4e15)  # exp(3e15, 6), exp(4e15, 6) wei
    bump_totals_collateral(c, "COMP", 1e-6 + 10 + 10000)
    bump_totals_collateral(c, "WETH", 1 + 50)
    bump_totals_collateral(c, "WBTC", 50)
    c.set_base_principal(1, -1.0)
    c.set_collateral_balance(1, "COMP", 1e-6)
    c.set_base_principal(2, -1e6)
    c.set_collateral_balance(2, "COMP", 10)
    c.set_collateral_balance(2, "WETH", 1)
    c.set_base_principal(3, -1e12)
    c.set_collateral_balance(3, "COMP", 10000)
    c.set_collateral_balance(3, "WETH", 50)
    c.set_collateral_balance(3, "WBTC", 50)
    assert c.reserves() == pytest.approx(-1e15)  # cTR0.reserves USDC -exp(1e15, 6)
    c.absorb("absorber", [1, 2, 3])
    assert c.total_supply_base == 4e15
    assert c.total_borrow_base == pytest.approx(3e15 - 1e12 - 1e6 - 1.0, abs=1e-3)
    # cTR1: users' collateral totals are 0 and everything absorbed is the protocol's collateral reserve
    assert c.totals_collateral[1:] == pytest.approx([0.0, 0.0, 0.0], abs=1e-9)
    assert c.collateral_reserves("COMP") == pytest.approx(1e-6 + 10 + 10000)
    assert c.collateral_reserves("WETH") == pytest.approx(51)
    assert c.collateral_reserves("WBTC") == pytest.approx(50)
    assert c.reserves() == pytest.approx(-1e15 - 1.0 - 1e6 - 1e12, abs=1e-3)
    assert np.all(c.balance()[1:] == 0.0) and np.all(c.coll[1:] == 0.0)
    assert c.points["absorber"].num_absorbed == 3


def test_absorb_test_absorbs_an_account_with_more_than_enough_collateral_to_still_cover_debt():
    assets = [CometAsset(s, 0.5, 2 / 3, 1.0) for s in ("COMP", "WETH", "WBTC")]
    c, _ = make_comet(assets=assets, rates=ZERO_RATES)
    final_debt = 1 * USDC_WEI
    starting_debt = final_debt - (41000 + 3000 + 175)  # signed: a borrow of 44,174.999999 USDC
    c.set_totals_basic(total_borrow_base=-starting_debt)
    for s in ("COMP", "WETH"):
        bump_totals_collateral(c, s, 1)
    bump_totals_collateral(c, "WBTC", 1)
    assert c.reserves() == pytest.approx(-starting_debt)  # r0
    c.set_base_principal(1, starting_debt)
    for s in ("COMP", "WETH", "WBTC"):
        c.set_collateral_balance(1, s, 1)
    c.absorb("absorber", [1])
    assert c.total_supply_base == pytest.approx(final_debt, abs=1e-9)  # t1.totalSupplyBase = finalDebt
    assert c.total_borrow_base == pytest.approx(0.0, abs=1e-9)
    assert c.reserves() == pytest.approx(-final_debt, abs=1e-9)  # r1 = -finalDebt
    assert c.balance()[1] == pytest.approx(final_debt, abs=1e-9)  # pU1.internal USDC 1 wei


def test_absorb_test_reverts_if_an_account_is_not_underwater():
    c, _ = make_comet()
    with pytest.raises(Revert, match="NotLiquidatable"):
        c.absorb("alice", [1])


def test_absorb_test_updates_assets_in_for_liquidated_account():
    c, _ = make_comet()
    bump_totals_collateral(c, "COMP", 1)
    bump_totals_collateral(c, "WETH", 1)
    c.set_collateral_balance(1, "COMP", 1)
    c.set_collateral_balance(1, "WETH", 1)
    c.set_base_principal(1, -4000.0)  # a $4k borrow against $3k + $175 of collateral
    c.set_totals_basic(total_borrow_base=4000.0)
    assert c.is_liquidatable([1])[0]
    c.absorb("absorber", [1])
    assert not np.any(c.coll[1] > 0)  # getAssetList is empty


# --- test/buy-collateral-test.ts and test/quote-collateral-test.ts ----------------------------------------
def _comp_market(price=1.0, lf=0.8, store_front=0.5, target=100 * USDC_WEI):
    return make_comet(
        assets=[CometAsset("COMP", 0.9999, 1.0, lf)],
        prices={"USDC": 1.0, "COMP": price},
        store_front=store_front,
        target_reserves=target,
    )


def test_buy_collateral_test_allows_buying_collateral_when_reserves_below_target_reserves():
    c, _ = _comp_market()
    led = c.env.ledger
    led.mint("USDC", "alice", 100.0, "allocateTo")
    led.mint("COMP", c.id, 60.0, "allocateTo")
    assert c.reserves() == 0.0 and c.reserves() < c.p.target_reserves
    got = c.buy_collateral("alice", "COMP", 50.0, 50.0)
    assert got == pytest.approx(55555555555555555555e-18, rel=1e-15)
    assert led.balance("alice", "COMP") == pytest.approx(55555555555555555555e-18, rel=1e-15)
    assert led.balance("alice", "USDC") == pytest.approx(50.0)
    assert c.reserves() == pytest.approx(50.0)  # r1 = exp(50, 6)


def test_buy_collateral_test_allows_buying_collateral_when_reserves_below_0_and_target_reserves_is_0():
    c, _ = _comp_market(target=0.0)
    c.set_totals_basic(total_supply_base=100.0, total_borrow_base=0.0)
    led = c.env.ledger
    led.mint("USDC", "alice", 100.0, "allocateTo")
    led.mint("COMP", c.id, 60.0, "allocateTo")
    assert c.reserves() == pytest.approx(-100.0)
    assert c.buy_collateral("alice", "COMP", 50.0, 50.0) == pytest.approx(55555555555555555555e-18, rel=1e-15)
    assert c.reserves() == pytest.approx(-50.0)


def test_buy_collateral_test_can_buy_any_excess_collateral_which_does_not_belong_to_users():
    c, _ = _comp_market(lf=1.0, target=100e6)
    led = c.env.ledger
    led.mint("USDC", "alice", 100.0, "allocateTo")
    led.mint("COMP", c.id, 60.0, "allocateTo")
    c.set_totals_collateral("COMP", 10.0)  # 10 COMP belong to users, 50 are reserves
    assert c.buy_collateral("alice", "COMP", 50.0, 50.0) == pytest.approx(50.0)
    assert c.reserves() == pytest.approx(50.0)


def test_buy_collateral_test_reverts_if_trying_to_buy_collateral_which_belongs_to_users():
    c, _ = _comp_market(lf=1.0, target=100e6)
    led = c.env.ledger
    led.mint("USDC", "alice", 100.0, "allocateTo")
    led.mint("COMP", c.id, 60.0, "allocateTo")
    c.set_totals_collateral("COMP", 20.0)
    with pytest.raises(Revert, match="InsufficientReserves"):
        c.buy_collateral("alice", "COMP", 50.0, 50.0)
    assert led.balance("alice", "USDC") == 100.0  # nothing moved


def test_buy_collateral_test_reverts_if_reserves_are_above_target_reserves():
    c, _ = _comp_market(target=0.0)
    led = c.env.ledger
    led.mint("USDC", c.id, 100.0, "allocateTo")
    led.mint("USDC", "alice", 100.0, "allocateTo")
    assert c.reserves() == pytest.approx(100.0)
    with pytest.raises(Revert, match="NotForSale"):
        c.buy_collateral("alice", "COMP", 50.0, 50.0)


def test_buy_collateral_test_reverts_if_slippage_is_too_high():
    c, _ = _comp_market(lf=1.0, store_front=1.0)
    led = c.env.ledger
    led.mint("USDC", "alice", 100.0, "allocateTo")
    led.mint("COMP", c.id, 50.0, "allocateTo")
    with pytest.raises(Revert, match="TooMuchSlippage"):
        c.buy_collateral("alice", "COMP", 100.0, 50.0)


def test_buy_collateral_test_reverts_if_not_enough_collateral_to_buy():
    c, _ = _comp_market(lf=1.0, store_front=1.0)
    led = c.env.ledger
    led.mint("USDC", "alice", 200.0, "allocateTo")
    led.mint("COMP", c.id, 50.0, "allocateTo")
    with pytest.raises(Revert, match="InsufficientReserves"):
        c.buy_collateral("alice", "COMP", 200.0, 200.0)


@pytest.mark.parametrize(
    "case, price, lf, store_front, base_amount, expected",
    [
        # "quotes the collateral correctly for a positive base amount": discount 0.5 x (1 - 0.6) = 20%
        ("positive base amount", 200.0, 0.6, 0.5, 200.0, 1.25),
        ("zero base amount", 200.0, 1.0, 1.0, 0.0, 0.0),
        ("at market price when storeFrontPriceFactor is 0%", 200.0, 0.6, 0.0, 200.0, 1.0),
        ("without truncating integer during intermediate calculations", 9.0, 0.8, 0.5, 810.0, 100.0),
        ("does not overflow for large amounts", 200.0, 0.75, 0.8, 1e15, 6.25e12),
    ],
)
def test_quote_collateral_test(case, price, lf, store_front, base_amount, expected):
    c, _ = _comp_market(price=price, lf=lf, store_front=store_front)
    assert c.quote_collateral("COMP", base_amount) == pytest.approx(expected, rel=1e-15, abs=0.0)


# --- test/is-liquidatable-test.ts -------------------------------------------------------------------------
def _one_comp(borrow_cf=0.9999, liquidate_cf=1.0):
    return make_comet(assets=[CometAsset("COMP", borrow_cf, liquidate_cf, 1.0)], prices={"USDC": 1.0, "COMP": 1.0})


def test_is_liquidatable_test_defaults_to_false_and_is_false_when_user_is_owed_principal():
    c, _ = make_comet()
    assert not c.is_liquidatable([0])[0]
    c.set_base_principal(0, 1.0)  # 1_000_000 wei supplied
    assert not c.is_liquidatable([0])[0]


def test_is_liquidatable_test_is_true_when_user_owes_principal():
    c, _ = make_comet()
    c.set_base_principal(0, -1.0)
    assert c.is_liquidatable([0])[0]


def test_is_liquidatable_test_is_false_when_collateral_can_cover_the_borrowed_principal():
    c, _ = _one_comp()
    c.set_base_principal(0, -100_000.0)
    c.set_collateral_balance(0, "COMP", 100_000.0)  # liquidity exactly 0: not liquidatable
    assert not c.is_liquidatable([0])[0]


def test_is_liquidatable_test_is_true_when_the_collateral_cannot_cover_the_borrowed_principal():
    c, _ = _one_comp()
    c.set_base_principal(0, -100_000.0)
    c.set_collateral_balance(0, "COMP", 95_000.0)
    assert c.is_liquidatable([0])[0]


def test_is_liquidatable_test_takes_liquidate_collateral_factor_into_account():
    c, _ = _one_comp(borrow_cf=0.75, liquidate_cf=0.8)
    c.set_base_principal(0, -100_000.0)
    c.set_collateral_balance(0, "COMP", 100_000.0)
    assert c.is_liquidatable([0])[0]


def test_is_liquidatable_test_changes_when_the_underlying_asset_price_changes():
    c, oracles = _one_comp()
    c.set_base_principal(0, -100_000.0)
    c.set_collateral_balance(0, "COMP", 100_000.0)
    assert not c.is_liquidatable([0])[0]
    oracles["COMP"].price = 0.5
    assert c.is_liquidatable([0])[0]


# --- test/interest-rate-test.ts, test/reserves-test.ts, test/accrue-test.ts -------------------------------
INTEREST_RATE_TEST = CometRates(0.8, 0.0, 0.04, 0.4, 0.8, 0.01, 0.05, 0.3)


@pytest.mark.parametrize(
    "case, supply_index, borrow_index, supply_base, borrow_base, utilization, supply_rate, borrow_rate",
    [
        ("when below kink utilization", 2.0, 4.0, 500, 25, 0.1, 0.004, 0.015),
        ("when above kink utilization", 2.0, 3.0, 50, 30, 0.9, 0.072, 0.08),
        ("when 0 utilization", 2.0, 3.0, 50, 0, 0.0, 0.0, 0.01),
    ],
)
def test_interest_rate_test(
    case, supply_index, borrow_index, supply_base, borrow_base, utilization, supply_rate, borrow_rate
):
    c, _ = make_comet(rates=INTEREST_RATE_TEST)
    c.set_totals_basic(supply_base * USDC_WEI, borrow_base * USDC_WEI, supply_index, borrow_index)
    assert c.utilization() == pytest.approx(utilization, abs=1e-15)
    # the test allows 1e8 wei (1e-10) of difference in the annual rate from per-second truncation
    assert c.supply_rate() == pytest.approx(supply_rate, abs=1e-10)
    assert c.borrow_rate() == pytest.approx(borrow_rate, abs=1e-10)


@pytest.mark.parametrize(
    "case, balance_wei, supply_index, borrow_index, supply_base, borrow_base, reserves_wei",
    [
        ("calculates 0 reserves", 100, 4.0, 3.0, 25, 0, 0),
        ("calculates positive reserves", 100, 2.0, 5.0, 50, 10, 50),
        ("calculates negative reserves", 0, 2.0, 3.0, 50, 0, -100),
    ],
)
def test_reserves_test(case, balance_wei, supply_index, borrow_index, supply_base, borrow_base, reserves_wei):
    c, _ = make_comet()
    if balance_wei:
        c.env.ledger.mint("USDC", c.id, balance_wei * USDC_WEI, "allocateTo")
    c.set_totals_basic(supply_base * USDC_WEI, borrow_base * USDC_WEI, supply_index, borrow_index)
    assert c.reserves() == pytest.approx(reserves_wei * USDC_WEI, abs=1e-15)


def test_accrue_test_accrues_correctly_with_time_elapsed():
    """accrue-test.ts 'accrues correctly with time elapsed and less than min rewards': at 100% utilization
    (11000 / 11000 wei) for 1000 s, each index grows by index x per-second rate x 1000 (projectBaseIndex)."""
    c, _ = make_comet()
    c.set_totals_basic(11000 * USDC_WEI, 11000 * USDC_WEI)
    u = c.utilization()
    assert u == pytest.approx(1.0)
    supply_year = 0.05 * 0.8 + 2.0 * 0.2  # base 0 + slopeLow x kink + slopeHigh x (1 - kink)
    borrow_year = 0.005 + 0.1 * 0.8 + 3.0 * 0.2
    c.accrue(1000.0)
    assert c.base_supply_index == pytest.approx(1.0 + supply_year / SECONDS_PER_YEAR * 1000, rel=1e-12)
    assert c.base_borrow_index == pytest.approx(1.0 + borrow_year / SECONDS_PER_YEAR * 1000, rel=1e-12)


def test_accrue_with_no_time_elapsed_changes_nothing():
    """accrue-test.ts 'accrues correctly with no time elapsed'."""
    c, _ = make_comet()
    c.set_totals_basic(1000 * USDC_WEI, 1000 * USDC_WEI, 2.0, 3.0)
    c.accrue(0.0)
    assert (c.base_supply_index, c.base_borrow_index) == (2.0, 3.0)


# --- the model's own invariants: supply, borrow, repay, caps, conservation -------------------------------
def test_borrow_respects_borrow_collateral_factor_and_borrow_min():
    assets = [CometAsset("WETH", 0.825, 0.895, 0.95)]
    c, _ = make_comet(assets=assets, prices={"USDC": 1.0, "WETH": 2000.0})
    c.p = CometParams("USDC", tuple(assets), TEST_RATES, 0.5, 0.0, 100.0)
    led = c.env.ledger
    led.mint("USDC", "lenders", 1e6, "genesis")
    c.supply_liquidity("lenders", "USDC", 1e6)
    led.mint("WETH", "bob", 1.0, "genesis")
    c.supply("bob", [0], "WETH", [1.0])
    with pytest.raises(Revert, match="NotCollateralized"):
        c.borrow("bob", [0], "USDC", [1651.0])  # 1 ETH x 2000 x 0.825 = 1650
    with pytest.raises(Revert, match="BorrowTooSmall"):
        c.borrow("bob", [0], "USDC", [99.0])
    c.borrow("bob", [0], "USDC", [1650.0])
    assert c.total_borrow() == pytest.approx(1650.0)
    assert led.balance("bob", "USDC") == pytest.approx(1650.0)
    paid = c.repay("bob", [0], "USDC", [5000.0])
    assert paid == pytest.approx([1650.0]) and c.balance()[0] == pytest.approx(0.0)
    assert c.total_borrow_base == pytest.approx(0.0, abs=1e-9)


def test_supply_cap_reverts_supply_cap_exceeded():
    c, _ = make_comet(assets=[CometAsset("WETH", 0.8, 0.9, 0.95, supply_cap=10.0)], prices={"USDC": 1, "WETH": 1})
    c.env.ledger.mint("WETH", "bob", 20.0, "genesis")
    c.supply("bob", [0, 1], "WETH", [5.0, 5.0])
    with pytest.raises(Revert, match="SupplyCapExceeded"):
        c.supply("bob", [2], "WETH", [0.5])
    assert c.env.ledger.balance("bob", "WETH") == 10.0


def test_absorb_then_buy_collateral_conserves_tokens_and_books_the_shortfall():
    """A WETH borrower absorbed below water: reserves pay the debt, the buyer pays the discounted price.
    Hand check: 1 WETH at $1,000 (LF 0.95) against 1,200 USDC of debt: absorb clears the debt, so base
    reserves (balance - supply + borrows) fall by basePaidOut = 1,200 USDC and the WETH becomes a collateral
    reserve; the shortfall at market value is 1,200 - 1,000 = $200; the buyer gets 1 WETH for
    1,000 x (1 - 0.5 x 0.05) = 975 USDC, which returns to reserves."""
    assets = [CometAsset("WETH", 0.825, 0.895, 0.95)]
    c, oracles = make_comet(assets=assets, prices={"USDC": 1.0, "WETH": 2000.0}, store_front=0.5, target_reserves=1e9)
    led = c.env.ledger
    led.mint("USDC", "lenders", 10_000.0, "genesis")
    c.supply_liquidity("lenders", "USDC", 10_000.0)
    led.mint("WETH", "bob", 1.0, "genesis")
    c.supply("bob", [0], "WETH", [1.0])
    c.borrow("bob", [0], "USDC", [1200.0])
    oracles["WETH"].price = 1000.0
    r0 = c.reserves()
    (ev,) = c.absorb("absorber", [0])
    assert c.reserves() - r0 == pytest.approx(-1200.0)
    assert c.metrics()["bad_debt_usd"] == pytest.approx(200.0)
    assert ev.debt_repaid_usd == pytest.approx(1200.0) and ev.bonus_usd == 0.0
    assert c.collateral_reserves("WETH") == pytest.approx(1.0)
    led.mint("USDC", "buyer", 975.0, "genesis")
    got = c.buy_collateral("buyer", "WETH", 0.99, 975.0)
    assert got == pytest.approx(1.0)
    assert c.reserves() - r0 == pytest.approx(-1200.0 + 975.0)
    mt = c.metrics()
    assert mt["collateral_sold_base"] == pytest.approx(975.0) and mt["collateral_discount_usd"] == pytest.approx(25.0)
    assert not math.isnan(c.health()[0])
