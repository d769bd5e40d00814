"""The vectorised lending market against Aave v3.0.2's bytecode, on hypothesis-generated books: several collateral
and debt assets per account, collateral switched off, e-mode on and off (with the category's own price source),
interest accrued, prices shocked. Every account's getUserAccountData and every liquidation (debt repaid, collateral
seized, protocol fee, the v3.0 close factor, reverts) must agree within the bounds stated in
protocols/evm/differential.py: the "aave-v3" precision model to one base unit per asset and on every decision, the
"float" model within the contract's own rounding."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from defistress.protocols.base import Revert
from defistress.protocols.evm.aave import EModeParams, RateParams, ReserveParams, deploy_aave
from defistress.protocols.evm.differential import AccountBook, LendingDifferential
from defistress.protocols.evm.rpc import Checkpoint

STABLE = RateParams(optimal_usage_ratio=0.90, variable_rate_slope2=0.60)
RESERVES = [
    ReserveParams("WETH", 18, 2000, 8000, 8250, 10500, reserve_factor=1500),
    ReserveParams("WBTC", 8, 30000, 7000, 7500, 10650, reserve_factor=2000, protocol_fee=2000),
    ReserveParams("USDC", 6, 1, 7700, 8000, 10450, emode_category=1, rates=STABLE),
    ReserveParams("DAI", 18, 1, 7500, 8000, 10500, emode_category=1, protocol_fee=500, rates=STABLE),
]
EMODES = [EModeParams(1, 9300, 9500, 10100, "Stablecoins", price_usd=1.0)]
PRICES = {"WETH": 2000.0, "WBTC": 30000.0, "USDC": 1.0, "DAI": 1.0}
SIZE = {"WETH": (0.05, 60.0), "WBTC": (0.002, 4.0), "USDC": (50.0, 200_000.0), "DAI": (50.0, 200_000.0)}


@pytest.fixture
def diff(chain):
    aave = deploy_aave(chain, RESERVES, EMODES)
    whale = chain.accounts[8]
    for sym, amount in (("WETH", 5_000), ("WBTC", 500), ("USDC", 50_000_000), ("DAI", 50_000_000)):
        aave.supply(sym, whale, aave.reserves[sym].units(amount))
    d = LendingDifferential(aave, RESERVES, EMODES)
    d.checkpoint = Checkpoint(chain)
    return d


def amount(sym):
    lo, hi = SIZE[sym]
    return st.floats(lo, hi).map(lambda x: round(x, 6))


LT = {r.symbol: r.liquidation_threshold / 1e4 for r in RESERVES}


@st.composite
def account(draw, prices):
    """Collateral in 1-4 assets (some switched off), debts in 0-2 assets sized so that the account's health factor
    at the shocked `prices` is about a drawn target between 0.5 and 1.6 (liquidatable or not)."""
    held = draw(st.lists(st.sampled_from(list(PRICES)), min_size=1, max_size=4, unique=True))
    emode = draw(st.sampled_from([0, 0, 1]))
    collateral = {s: draw(amount(s)) for s in held}
    disabled = tuple(draw(st.lists(st.sampled_from(held), max_size=len(held) - 1, unique=True)))
    owed_from = ["USDC", "DAI"] if emode else list(PRICES)
    owed = draw(st.lists(st.sampled_from(owed_from), min_size=0, max_size=2, unique=True))
    weighted = sum(collateral[s] * prices[s] * LT[s] for s in held if s not in disabled)
    debt_usd = weighted / draw(st.floats(0.5, 1.6))
    split = draw(st.floats(0.1, 0.9))
    shares = [split, 1 - split] if len(owed) == 2 else [1.0]
    debt = {s: round(debt_usd * w / prices[s], 6) for s, w in zip(owed, shares)}
    return AccountBook(collateral, debt, disabled, emode)


@st.composite
def case(draw):
    shock = {
        "WETH": draw(st.floats(0.35, 1.3)),
        "WBTC": draw(st.floats(0.35, 1.3)),
        "USDC": draw(st.floats(0.95, 1.05)),
        "DAI": draw(st.floats(0.9, 1.1)),
    }
    prices = {s: round(PRICES[s] * shock[s], 8) for s in PRICES}
    books = draw(st.lists(account(prices), min_size=1, max_size=3))
    emode_price = round(draw(st.floats(0.97, 1.03)), 8)
    days = draw(st.sampled_from([0, 0, 1, 90, 365]))
    actions = draw(
        st.lists(
            st.tuples(
                st.integers(0, 99),  # account
                st.integers(0, 99),  # collateral, among what it holds
                st.integers(0, 99),  # debt, among what it owes
                st.sampled_from([False, False, False, True]),  # any listed asset instead (mostly reverts)
                st.one_of(st.none(), st.floats(0.01, 1.6)),  # share of the reserve debt asked for; None: max
            ),
            min_size=1,
            max_size=6,
        )
    )
    return books, prices, emode_price, days, actions


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(c=case())
# found by this test: the "float" model at HF 1.0000001 where the contract's is 0.99996 (a decision within rounding:
# the row is not compared for the float model after it), the v3.0 close factor's half of an odd number of units, and
# the float model's seizure against the contract's whole units of an 8-decimal collateral, and an e-mode account's
# last USDC seized for DAI, where a base unit of collateral converts into debt at the category's price, not the oracle's
@example(
    c=(
        [AccountBook({"WETH": 1.0, "WBTC": 1.0, "USDC": 70049.0}, {"USDC": 69355.329032, "DAI": 67187.975}, emode=1)],
        {"WETH": 2000.0, "WBTC": 15000.0, "USDC": 0.96875, "DAI": 1.0},
        1.0,
        0,
        [(0, 20, 0, False, None), (0, 56, 0, False, None)],
    )
)
@example(
    c=(
        [AccountBook({"WBTC": 0.03125}, {"USDC": 803.571429}, emode=1)],
        {"WETH": 2000.0, "WBTC": 30000.0, "USDC": 1.0, "DAI": 1.0},
        0.984375,
        0,
        [(0, 0, 0, False, None)],
    )
)
@example(
    c=(
        [AccountBook({"WETH": 1.0, "WBTC": 0.0625}, {"WETH": 1.703906})],
        {"WETH": 2000.0, "WBTC": 37500.0, "USDC": 1.0, "DAI": 1.0},
        1.0,
        0,
        [(0, 0, 0, False, None)],
    )
)
@example(
    c=(
        [AccountBook({"WETH": 1.0}, {"USDC": 1730.261137})],
        {"WETH": 2000.0, "WBTC": 30000.0, "USDC": 0.984375, "DAI": 1.0},
        1.0,
        0,
        [(0, 0, 0, False, None)],
    )
)
def test_the_model_agrees_with_aave_on_accounts_and_liquidations(diff, chain, c):
    books, prices, emode_price, days, actions = c
    diff.checkpoint.restore()
    diff.reset()
    addrs = diff.open(books, PRICES, emode_price=1.0)
    if days:
        chain.advance_time(days * 86400, mine=True)
    diff.set_prices(prices, emode_price)
    exact, floaty = diff.model(addrs, "aave-v3"), diff.model(addrs, "float")
    diff.compare_accounts(addrs, exact, floaty)
    symbols = list(PRICES)
    for k, ci, dj, stray, fraction in actions:
        row = k % len(addrs)
        held = [s for s in symbols if exact.collateral()[row, exact.idx[s]] > 0] or symbols
        owed = [s for s in symbols if exact.debt()[row, exact.idx[s]] > 0] or symbols
        coll, debt = (symbols[ci % 4], symbols[dj % 4]) if stray else (held[ci % len(held)], owed[dj % len(owed)])
        reserve_debt = exact.debt()[row, exact.idx[debt]]
        cover = None if fraction is None or reserve_debt == 0 else reserve_debt * fraction
        diff.liquidate_both(addrs[row], row, coll, debt, cover, exact, floaty)
    diff.compare_accounts(addrs, exact, floaty)


def test_every_revert_of_the_contract_is_a_revert_of_the_model(diff, chain):
    """HF above 1 ('45'), a collateral switched off ('46'), a debt not owed ('47'), an unlisted asset."""
    books = [
        AccountBook({"WETH": 10.0, "WBTC": 0.1}, {"USDC": 12_000.0}, disabled=("WBTC",)),
        AccountBook({"WETH": 10.0}, {"USDC": 5_000.0}),
    ]
    addrs = diff.open(books, PRICES)
    diff.set_prices({**PRICES, "WETH": 1_400.0})  # the first account: 14,000 · 0.825 / 12,000 = 0.9625
    exact, floaty = diff.model(addrs, "aave-v3"), diff.model(addrs, "float")
    assert diff.liquidate_both(addrs[1], 1, "WETH", "USDC", None, exact, floaty) == "HEALTH_FACTOR_NOT_BELOW_THRESHOLD"
    assert diff.liquidate_both(addrs[0], 0, "WBTC", "USDC", None, exact, floaty) == "COLLATERAL_CANNOT_BE_LIQUIDATED"
    assert (
        diff.liquidate_both(addrs[0], 0, "WETH", "DAI", None, exact, floaty)
        == "SPECIFIED_CURRENCY_NOT_BORROWED_BY_USER"
    )
    # more than the close factor allows is capped, not refused: half of the 12,000 USDC at HF 0.9625 > 0.95
    assert diff.liquidate_both(addrs[0], 0, "WETH", "USDC", 50_000.0, exact, floaty) == "ok"
    assert exact.debt()[0, exact.idx["USDC"]] == pytest.approx(6_000.0, abs=1e-6)
    # an asset the pool does not list: the contract reverts (an inactive reserve) and so does the model
    from defistress.protocols.evm.uniswap_v2 import deploy_mintable_erc20

    stray = deploy_mintable_erc20(chain, "STRAY", 18)
    fn = diff.pool.functions.liquidationCall(stray.address, diff.aave.reserves["USDC"].address, addrs[0], 10**6, False)
    assert chain.revert_reason_of(fn, diff.liquidator) is not None
    with pytest.raises(Revert, match="unknown asset pair"):
        exact.liquidate(0, "STRAY", "USDC", 1.0, "liquidator")
