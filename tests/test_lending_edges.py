"""Edges of the lending market's account model and bookkeeping, by hand: genesis books, the contract's whole base units
in liquidations and repayments, paused reserves, the HF-1 boundaries of the collateral and e-mode switches, and the
split of losses by collateral. Every expected figure is arithmetic on the Aave v3 rules quoted in
protocols/lending.py (shown in the comments), not the module's output."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest

from defistress.protocols import lending as lending_module
from defistress.protocols.base import Env, FixedPrice, Revert
from defistress.protocols.events import BadDebt
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


@pytest.fixture(autouse=True)
def _keep_path_on_small_books(monkeypatch):
    """The side-keeping refresh runs on books of `_KEEP_MIN_ACCOUNTS` accounts or more (below, both sides are
    recomputed whole: the same values): these tests' books are small, so the gate is lowered to take that path."""
    monkeypatch.setattr(lending_module, "_KEEP_MIN_ACCOUNTS", 0)
    # and the column-multiply refresh and the debt-free rows' list (`_ROWS_MIN_ACCOUNTS`), which give the same values
    monkeypatch.setattr(lending_module, "_ROWS_MIN_ACCOUNTS", 0)


YEAR = 365.0 * 86400.0  # seconds


def market(rule: str = "aave-v3.0", precision: str = "float", **changes) -> tuple[LendingMarket, dict]:
    """Lenders supply 1e8 USDC and DAI and 1e4 ETH and BTC; the liquidator holds 1e8 USDC and DAI and 100 ETH."""
    env = Env()
    oracles = {a.symbol: FixedPrice(PRICES[a.symbol], a.symbol) for a in (ETH, BTC, USDC, DAI, ISO)}
    assets = [AssetParams(**{**a.__dict__, **changes.get(a.symbol, {})}) for a in (ETH, BTC, USDC, DAI, ISO)]
    m = LendingMarket("lend", assets, oracles, env, rule, [STABLES], None, precision)
    for s, n in (("USDC", 1e8), ("DAI", 1e8), ("ETH", 1e4), ("BTC", 1e4)):
        env.ledger.mint(s, "lenders", n, "genesis")
        m.supply_liquidity("lenders", s, n)
    for s, n in (("USDC", 1e8), ("DAI", 1e8), ("ETH", 100.0)):
        env.ledger.mint(s, LIQ, n, "genesis")
    return m, oracles


def open_account(m: LendingMarket, coll: dict[str, float], debt: dict[str, float] | None = None) -> int:
    a = m.add_accounts(1)
    for s, amount in coll.items():
        m.env.ledger.mint(s, "user", amount, "genesis")
        m.supply("user", a, s, np.array([amount]))
    for s, amount in (debt or {}).items():
        m.borrow("user", a, s, np.array([amount]))
    return int(a[0])


def place(m: LendingMarket, coll: dict[str, float], debt: dict[str, float]) -> int:
    """An account placed as a genesis book (no LTV check) with these token amounts."""
    row = m.add_accounts(1)
    c, d = np.zeros((1, len(m.assets))), np.zeros((1, len(m.assets)))
    for s, v in coll.items():
        m.env.ledger.mint(s, "book", v, "genesis")
        c[0, m.idx[s]] = v
    for s, v in debt.items():
        d[0, m.idx[s]] = v
    m.genesis_positions("book", row, c, d)
    return int(row[0])


# --- genesis books -----------------------------------------------------------------------------------------------
def test_a_genesis_book_is_placed_as_it_is_and_its_tokens_move():
    m, _ = market()
    rows = m.add_accounts(2)
    # a book read as text (CSV fields) is taken as numbers; amounts below one token still move
    coll = [["0.5", "0", "0", "0", "0"], ["0", "0", "0", "500", "0"]]  # 0.5 ETH; 500 DAI
    debt = [["0", "0", "0.75", "0", "0"], ["0", "0", "0", "0", "0"]]  # 0.75 USDC
    m.env.ledger.mint("ETH", "book", 0.5, "genesis")
    m.env.ledger.mint("DAI", "book", 500.0, "genesis")
    enabled = [[True] * 5, [True, True, True, False, True]]
    m.genesis_positions("book", rows, coll, debt, enabled, np.array([0, 1]))
    led = m.env.ledger
    assert led.balance("book", "ETH") == 0.0 and led.balance("book", "DAI") == 0.0
    assert led.balance("book", "USDC") == 0.75  # the book's debt went to the holder
    assert led.balance("lend", "ETH") == 1e4 + 0.5 and led.balance("lend", "USDC") == 1e8 - 0.75
    assert m.collateral()[rows[0], 0] == 0.5 and m.debt()[rows[0], 2] == 0.75
    assert m.collateral()[rows[1], 3] == 500.0
    assert m.user_emode.tolist() == [0, 1] and m.user_emode.dtype.kind == "i"
    assert m.collateral_enabled[rows[1]].tolist() == [True, True, True, False, True]
    coll_usd, debt_usd = m.account_usd()
    # row 0: 0.5 · 2,000 = 1,000 USD against 0.75 USD; row 1: its DAI does not count
    assert coll_usd.tolist() == [1_000.0, 0.0] and debt_usd.tolist() == [0.75, 0.0]
    # a second book on the same rows adds to them
    led.mint("ETH", "book", 0.25, "genesis")
    m.genesis_positions("book", rows[:1], [[0.25, 0, 0, 0, 0]], [[0, 0, 0.25, 0, 0]])
    assert m.collateral()[rows[0], 0] == 0.75 and m.debt()[rows[0], 2] == 1.0
    assert m.account_usd()[0][rows[0]] == 1_500.0  # 0.75 · 2,000: its flags were left as they were
    led.check_conservation()


def test_a_later_book_with_every_flag_on_and_no_category_replaces_the_rows_earlier_switches():
    m, _ = market()
    rows = m.add_accounts(2)
    m.env.ledger.mint("DAI", "book", 1_000.0, "genesis")
    one_dai = [[0, 0, 0, 500, 0], [0, 0, 0, 500, 0]]  # 500 DAI each
    none = np.zeros((2, 5))
    m.genesis_positions("book", rows, one_dai, none, [[True] * 5, [True, True, True, False, True]], np.array([0, 1]))
    assert m.account_usd()[0].tolist() == [500.0, 0.0]  # row 1's DAI switched off
    # a second book on the same rows says: every flag on, no e-mode -> the rows take it (500 DAI · 1 USD each)
    m.genesis_positions("book", rows, none, none, np.ones((2, 5), bool), np.array([0, 0]))
    assert m.collateral_enabled[rows].all()
    assert m.user_emode[rows].tolist() == [0, 0]
    assert m.account_usd()[0].tolist() == [500.0, 500.0]
    # leaving the flags and categories out keeps them
    m.genesis_positions("book", rows, none, none, [[True] * 5, [False, True, True, False, True]], np.array([0, 1]))
    m.genesis_positions("book", rows, none, none)
    assert m.collateral_enabled[rows[1]].tolist() == [False, True, True, False, True]
    assert m.user_emode[rows].tolist() == [0, 1]
    m.env.ledger.check_conservation()


def test_an_empty_genesis_book_changes_nothing():
    m, _ = market()
    before = m.env.ledger.snapshot()
    m.genesis_positions("book", np.array([], dtype=np.int64), np.zeros((0, 5)), np.zeros((0, 5)))
    assert m.n_accounts == 0 and m.env.ledger.snapshot() == before


def test_a_genesis_book_that_does_not_fit_is_refused_with_the_reason():
    m, _ = market()
    rows = m.add_accounts(2)
    ok = np.zeros((2, 5))
    with pytest.raises(ValueError, match=r"^lend: collateral and debt must have shape \(2, 5\)$"):
        m.genesis_positions("book", rows, np.zeros((2, 4)), ok)
    with pytest.raises(ValueError, match=r"^lend: collateral and debt must have shape \(2, 5\)$"):
        m.genesis_positions("book", rows, ok, np.zeros((1, 5)))
    bad_coll, bad_debt = ok.copy(), ok.copy()
    bad_coll[0, 0] = np.nan
    bad_debt[1, 2] = np.inf
    for c, d in ((bad_coll, ok), (ok, bad_debt), (-ok - 1, ok), (ok, -ok - 1)):
        with pytest.raises(ValueError, match=r"^lend: positions must be finite and non-negative$"):
            m.genesis_positions("book", rows, c, d)
    # the pool lends 1e8 USDC: exactly that can be placed as the book's debt, one more token cannot
    debt = ok.copy()
    debt[0, 2] = 1e8 + 1
    with pytest.raises(Revert, match=r"^lend: not enough USDC liquidity to place the book's debt 1e\+08$"):
        m.genesis_positions("book", rows, ok, debt)
    debt[0, 2] = 1e8
    m.genesis_positions("book", rows, ok, debt)
    assert m.env.ledger.balance("lend", "USDC") == 0.0 and m.debt()[rows[0], 2] == 1e8


# --- the contract's whole base units ------------------------------------------------------------------------------
def test_an_aave_precision_liquidation_leaves_whole_base_units():
    m, o = market(precision="aave-v3")
    a = open_account(m, {"USDC": 10_000.0}, {"ETH": 3.3})  # 6,600 USD <= LTV 0.77 · 10,000
    o["ETH"].price = 2_488.1234  # debt 8,210.80722 USD: HF = 8,000 / 8,210.80722 = 0.97433 > 0.95: v3.0 half
    assert m.health()[a] == pytest.approx(8_000 / (3.3 * 2_488.1234), rel=1e-9)
    ev = m.liquidate(a, "USDC", "ETH", 1e9, LIQ)
    # repaid 1.65 ETH; seized 1.65 · 2,488.1234 · 1.045 = 4,290.14677245 USDC (fee included)
    seized = 1.65 * 2_488.1234 * 1.045
    assert ev.debt_repaid == 1.65 and ev.collateral_seized + ev.protocol_fee == pytest.approx(seized, rel=1e-12)
    # left 10,000 - 4,290.14677245 = 5,709.85322755 USDC, kept as whole 1e-6 units: 5,709.853228
    assert m.coll_scaled[a, 2] == pytest.approx(5_709.853228, abs=1e-9)
    assert m.collateral()[a, 2] == 5_709.853228  # the balance read back: the same whole units
    assert m.debt_scaled[a, 0] == pytest.approx(1.65, abs=1e-15)


def test_an_aave_precision_liquidation_that_takes_the_whole_debt_clears_it():
    m, o = market(precision="aave-v3")
    a = open_account(m, {"USDC": 10_000.0}, {"ETH": 3.3})
    o["ETH"].price = 2_700.0  # HF = 8,000 / 8,910 = 0.8979 <= 0.95: the whole 3.3 ETH may be repaid
    ev = m.liquidate(a, "USDC", "ETH", 1e9, LIQ)
    # seized 3.3 · 2,700 · 1.045 = 9,310.95 USDC; left 689.05 USDC; no ETH debt left
    assert ev.debt_repaid == 3.3 and m.debt_scaled[a, 0] == 0.0
    assert m.coll_scaled[a, 2] == pytest.approx(689.05, abs=1e-9)
    b = open_account(m, {"ETH": 1.0}, {"USDC": 1_500.0})
    o["ETH"].price = 1_000.0  # 1 ETH = 1,000 USD for 1,500 USDC: all of it is seized for 1,000 / 1.05 USDC
    ev = m.liquidate(b, "ETH", "USDC", 1e9, LIQ)
    assert ev.collateral_seized + ev.protocol_fee == pytest.approx(1.0, rel=1e-15)
    assert m.coll_scaled[b, 0] == 0.0
    assert m.debt()[b, 2] == pytest.approx(1_500 - 1_000 / 1.05, abs=1e-6)  # 547.619048 USDC stays (v3.0)


def test_an_aave_precision_repayment_of_the_whole_debt_leaves_none_and_a_partial_one_leaves_the_rest():
    m, _ = market(precision="aave-v3")
    a = open_account(m, {"ETH": 10.0}, {"USDC": 5_000.0})
    b = open_account(m, {"ETH": 10.0}, {"USDC": 5_000.0})
    m.accrue(YEAR)  # the borrow index grows: owed amounts are no longer whole scaled units
    owed = m.debt()[[a, b], 2]
    assert owed[0] > 5_000.0 and owed[0] == owed[1]
    m.env.ledger.mint("USDC", "user", 10_000.0, "genesis")
    paid = m.repay("user", np.array([a]), "USDC", np.array([owed[0]]))
    assert paid[0] == owed[0] and m.debt_scaled[a, 2] == 0.0 and m.debt()[a, 2] == 0.0
    m.repay("user", np.array([b]), "USDC", np.array([1_000.0]))
    assert m.debt()[b, 2] == pytest.approx(owed[1] - 1_000.0, abs=1e-6)


# --- paused reserves ----------------------------------------------------------------------------------------------
def test_a_paused_collateral_or_debt_reserve_blocks_liquidation_and_repayment():
    m, o = market()
    a = open_account(m, {"ETH": 1.0}, {"USDC": 1_500.0})
    o["ETH"].price = 1_700.0  # HF = 1,402.5 / 1,500 = 0.935
    for paused in ("ETH", "USDC"):
        m.gates.set("paused", True, paused)
        with pytest.raises(Revert, match=rf"^lend: RESERVE_PAUSED \({paused} paused by governance\)$"):
            m.liquidate(a, "ETH", "USDC", 100.0, LIQ)
        if paused == "USDC":
            with pytest.raises(Revert, match=r"^lend: RESERVE_PAUSED \(USDC paused by governance\)$"):
                m.repay(LIQ, np.array([a]), "USDC", np.array([100.0]))
        m.gates.set("paused", False, paused)
    assert m.liquidate(a, "ETH", "USDC", 100.0, LIQ).debt_repaid == 100.0


# --- the collateral switch -----------------------------------------------------------------------------------------
def test_disabling_collateral_down_to_hf_exactly_one_is_allowed():
    m, _ = market()
    # ETH 1 (weighted 2,000 · 0.825 = 1,650) and BTC 0.01 (600 · 0.75 = 450); 1,650 USDC borrowed
    a = open_account(m, {"ETH": 1.0, "BTC": 0.01}, {"USDC": 1_650.0})
    b = open_account(m, {"ETH": 1.0, "BTC": 0.1}, {"USDC": 1_650.0})  # without BTC: 1,650 / 1,650 too
    c = open_account(m, {"ETH": 1.0, "BTC": 0.1}, {"USDC": 2_000.0})  # without BTC: 1,650 / 2,000 = 0.825
    m.set_collateral([a], "BTC", False)  # HF 1,650 / 1,650 = 1.0: allowed (only HF < 1 reverts)
    assert m.health()[a] == 1.0 and not m.collateral_enabled[a, 1]
    with pytest.raises(
        Revert, match=rf"^HEALTH_FACTOR_LOWER_THAN_LIQUIDATION_THRESHOLD: disabling BTC for account #{c}$"
    ):
        m.set_collateral([b, c], "BTC", False)
    assert m.collateral_enabled[[b, c], 1].tolist() == [True, True]  # the whole batch is undone


def test_the_collateral_switch_names_the_account_it_refuses():
    m, _ = market(DAI={"ltv": 0.0})
    a = open_account(m, {"ETH": 0.5})
    b = m.add_accounts(1)[0]
    with pytest.raises(Revert, match=rf"^UNDERLYING_BALANCE_ZERO: ETH, e.g. account #{b}$"):
        m.set_collateral([a, b], "ETH", True)
    c = open_account(m, {"DAI": 100.0})  # LTV 0: a supply does not enable it, nor may the account
    with pytest.raises(Revert, match=rf"^USER_IN_ISOLATION_MODE_OR_LTV_ZERO: DAI, account #{c}$"):
        m.set_collateral([c], "DAI", True)
    # an isolated asset may not join other collateral, even half a token of ETH
    d = open_account(m, {"ISO": 100.0})
    e = open_account(m, {"ETH": 0.5, "ISO": 100.0})
    with pytest.raises(Revert, match=rf"^USER_IN_ISOLATION_MODE_OR_LTV_ZERO: ISO, account #{e}$"):
        m.set_collateral([d, e], "ISO", True)
    m.set_collateral([d], "ISO", True)  # alone, it may
    # an ordinary asset joins other collateral
    f = open_account(m, {"ETH": 1.0, "BTC": 0.1})
    m.set_collateral([f], "BTC", False)
    m.set_collateral([f], "BTC", True)
    assert m.collateral_enabled[f].tolist() == [True, True, True, True, True]


def test_a_tiny_debt_ceiling_still_isolates_its_asset():
    m, _ = market(ISO={"debt_ceiling": 0.5})
    e = open_account(m, {"ETH": 1.0, "ISO": 100.0})
    with pytest.raises(Revert, match="USER_IN_ISOLATION_MODE_OR_LTV_ZERO"):
        m.set_collateral([e], "ISO", True)
    f = open_account(m, {"ISO": 100.0})
    m.set_collateral([f], "ISO", True)
    m.borrow("user", np.array([f]), "USDC", np.array([0.4]))
    assert m.iso_debt[4] == 0.4
    m.repay("user", np.array([f]), "USDC", np.array([0.4]))
    assert m.iso_debt[4] == 0.0  # repaid debt leaves the isolated total, however small the ceiling


def test_repaying_against_one_isolated_asset_leaves_the_other_isolated_totals():
    m, _ = market(BTC={"debt_ceiling": 1e7})  # BTC isolated too
    x = open_account(m, {"BTC": 1.0})
    y = open_account(m, {"ISO": 1_000.0})
    m.set_collateral([x], "BTC", True)
    m.set_collateral([y], "ISO", True)
    m.borrow("user", np.array([x]), "USDC", np.array([1_000.0]))
    m.borrow("user", np.array([y]), "USDC", np.array([500.0]))
    assert m.iso_debt.tolist() == [0.0, 1_000.0, 0.0, 0.0, 500.0]
    m.repay("user", np.array([y]), "USDC", np.array([500.0]))
    assert m.iso_debt.tolist() == [0.0, 1_000.0, 0.0, 0.0, 0.0]


# --- e-mode --------------------------------------------------------------------------------------------------------
def test_leaving_emode_down_to_hf_exactly_one_is_allowed_and_a_refusal_names_the_account():
    m, _ = market()
    a = open_account(m, {"USDC": 10_000.0})
    b = open_account(m, {"USDC": 10_000.0})
    m.set_emode([a, b], 1)
    m.borrow("user", np.array([a]), "DAI", np.array([8_000.0]))  # outside e-mode: 10,000 · 0.80 / 8,000 = 1.0
    m.borrow("user", np.array([b]), "DAI", np.array([9_000.0]))  # outside: 8,000 / 9,000 = 0.89
    with pytest.raises(
        Revert,
        match=rf"^HEALTH_FACTOR_LOWER_THAN_LIQUIDATION_THRESHOLD: account #{b} cannot leave its e-mode category$",
    ):
        m.set_emode([a, b], 0)
    assert m.user_emode[[a, b]].tolist() == [1, 1]
    m.set_emode([a], 0)
    assert m.health()[a] == 1.0 and m.user_emode[a] == 0 and m.user_emode.dtype.kind == "i"


def test_emode_refusals_name_the_category_and_the_account():
    m, _ = market()
    with pytest.raises(Revert, match=r"^INCONSISTENT_EMODE_CATEGORY: no e-mode category 7; defined: \[1\]$"):
        m.set_emode([0], 7)
    a = open_account(m, {"ETH": 1.0}, {"USDC": 100.0})
    c = open_account(m, {"DAI": 1_000.0}, {"ETH": 0.1})
    with pytest.raises(Revert, match=rf"^INCONSISTENT_EMODE_CATEGORY: account #{c} borrows outside category 1$"):
        m.set_emode([a, c], 1)


# --- losses by collateral -----------------------------------------------------------------------------------------
def test_losses_split_by_collateral_value_and_evenly_without_collateral():
    m, o = market()
    open_account(m, {"ETH": 0.001}, {"USDC": 1.5})  # 2 USD of ETH for 1.5 USDC
    o["ETH"].price = 500.0  # collateral 0.5 USD, debt 1.5: shortfall 1.0 USD, all against ETH
    assert m.losses_by_collateral() == {"ETH": pytest.approx(1.0, rel=1e-12)}
    b = open_account(m, {"BTC": 0.1}, {"USDC": 4_000.0})  # 6,000 USD of BTC
    o["BTC"].price = 10_000.0  # 1,000 USD for 4,000: HF 0.1875; all BTC goes for 1,000 / 1.08 USDC (v3.0)
    m.liquidate(b, "BTC", "USDC", 1e9, LIQ)
    short_b = 4_000 - 1_000 / 1.08  # 3,074.07 USD with no collateral left: split evenly over the 5 assets
    got = m.losses_by_collateral()
    assert got["ETH"] == pytest.approx(1.0 + short_b / 5, rel=1e-12)
    for s in ("BTC", "USDC", "DAI", "ISO"):
        assert got[s] == pytest.approx(short_b / 5, rel=1e-12)


# --- the contract's precision: category prices, values by category, the LTV edge ---------------------------------
def compound(rate: float, seconds: float) -> float:
    """aave-v3 MathUtils.calculateCompoundedInterest: 1 + bx + b²x(x-1)/2 + b³x(x-1)(x-2)/6, b per second."""
    b = rate / YEAR
    return (
        1
        + b * seconds
        + b * b * seconds * max(seconds - 1, 0) / 2
        + b**3 * seconds * max(seconds - 1, 0) * max(seconds - 2, 0) / 6
    )


def kinked(u: float) -> float:
    """DefaultReserveInterestRateStrategy with base 0, slope1 4%, slope2 60%, kink 90% (the assets' defaults)."""
    return 0.04 * u / 0.9 if u <= 0.9 else 0.04 + 0.60 * (u - 0.9) / 0.1


def test_aave_precision_reads_the_category_price_to_8_decimals():
    env = Env()
    oracles = {a.symbol: FixedPrice(PRICES[a.symbol], a.symbol) for a in (ETH, USDC, DAI)}
    src = FixedPrice(1.000000004, "stables")
    m = LendingMarket("lend", [ETH, USDC, DAI], oracles, env, "aave-v3.0", [STABLES], {1: src}, "aave-v3")
    assert m.emode_prices() == {1: 1.0}  # AaveOracle: 1.00000000
    src.price = 1.000000006
    assert m.emode_prices() == {1: 1.00000001}
    f = LendingMarket("lend", [ETH, USDC, DAI], oracles, env, "aave-v3.0", [STABLES], {1: src}, "float")
    assert f.emode_prices() == {1: 1.000000006}


def test_aave_precision_values_each_category_on_its_terms_with_grown_indices():
    m, _ = market(precision="aave-v3")
    open_account(m, {"ETH": 40_000.0}, {"USDC": 5e7})  # a whale: USDC utilisation near one half
    x = open_account(m, {"ETH": 1.0}, {"USDC": 1_000.0})
    y = open_account(m, {"USDC": 10_000.0})
    m.set_emode([y], 1)
    m.borrow("user", np.array([y]), "DAI", np.array([5_000.0]))
    z = open_account(m, {"USDC": 10_000.0}, {"DAI": 5_000.0})  # the same book outside e-mode
    m.accrue(YEAR)
    # USDC: supplied 1e8 + 20,000, borrowed 5e7 + 1,000; DAI: supplied 1e8, borrowed 10,000; reserve factor 15%
    u = (5e7 + 1_000) / (1e8 + 20_000)
    idx_usdc, liq_usdc = compound(kinked(u), YEAR), 1 + kinked(u) * u * 0.85
    idx_dai = compound(kinked(10_000 / 1e8), YEAR)
    assert m.health()[z] == pytest.approx(10_000 * liq_usdc * 0.80 / (5_000 * idx_dai), rel=1e-8)  # USDC's own 80%
    hf_x = 2_000 * 0.825 / (1_000 * idx_usdc)  # ETH's own terms
    hf_y = 10_000 * liq_usdc * 0.95 / (5_000 * idx_dai)  # the category's threshold, 95%
    assert m.health()[x] == pytest.approx(hf_x, rel=1e-8)
    assert m.health()[y] == pytest.approx(hf_y, rel=1e-8)
    assert m.account_usd()[0][y] == pytest.approx(10_000 * liq_usdc, rel=1e-9)


def test_aave_precision_leaves_out_collateral_with_a_zero_threshold():
    m, _ = market(precision="aave-v3", DAI={"ltv": 0.0, "liquidation_threshold": 0.0})
    a = m.add_accounts(1)
    m.env.ledger.mint("ETH", "book", 1.0, "genesis")
    m.env.ledger.mint("DAI", "book", 100.0, "genesis")
    m.genesis_positions("book", a, [[1.0, 0, 0, 100.0, 0]], [[0, 0, 100.0, 0, 0]], np.ones((1, 5), bool))
    # GenericLogic counts a reserve only if its threshold is not 0: 2,000 USD of ETH, HF = 1,650 / 100
    assert m.account_usd()[0][a[0]] == 2_000.0 and m.health()[a[0]] == 16.5


def test_aave_precision_lends_up_to_the_ltv_and_not_a_cent_more():
    m, _ = market(precision="aave-v3")
    a = open_account(m, {"ETH": 1.0})  # LTV 80%: 1,600 USD
    with pytest.raises(Revert, match="exceed LTV"):
        m.borrow("user", np.array([a]), "USDC", np.array([1_600.01]))
    m.borrow("user", np.array([a]), "USDC", np.array([1_600.0]))


def test_contract_accrual_restarts_a_reserve_whose_supply_alone_moved():
    m, _ = market(precision="aave-v3")
    m.env.ledger.mint("ETH", "user", 60_000.0, "genesis")
    w = m.add_accounts(1)
    m.supply("user", w, "ETH", np.array([60_000.0]))
    m.borrow("user", w, "USDC", np.array([9.5e7]))  # USDC utilisation 95%: above the kink
    m.accrue(YEAR)
    rb0 = kinked(0.95)  # 4% + 60% · 0.05 / 0.10 = 34%
    idx1, liq1 = compound(rb0, YEAR), 1 + rb0 * 0.95 * 0.85
    assert m.borrow_index[2] == pytest.approx(idx1, rel=1e-14) and m.liq_index[2] == pytest.approx(liq1, rel=1e-14)
    m.env.ledger.mint("USDC", "lenders", 1e8, "genesis")
    m.supply_liquidity("lenders", "USDC", 1e8)  # only USDC's supply moves: its rates restart now, at the new use
    m.accrue(YEAR)
    u1 = 9.5e7 * idx1 / (1e8 * liq1 + 1e8)
    assert m.borrow_index[2] == pytest.approx(idx1 * compound(kinked(u1), YEAR), rel=1e-14)
    assert m.liq_index[2] == pytest.approx(liq1 * (1 + kinked(u1) * u1 * 0.85), rel=1e-14)
    assert m.borrow_index[0] == 1.0 and m.borrow_index[3] == 1.0  # nothing borrowed: no interest


def test_contract_accrual_invalidates_the_cached_values_each_time():
    m, _ = market(precision="aave-v3")
    a = open_account(m, {"ETH": 40_000.0}, {"USDC": 5e7})
    h = [m.health()[a]]
    for _ in range(2):
        m.accrue(YEAR)
        h.append(m.health()[a])
    assert h[0] > h[1] > h[2]  # the debt grows every year
    m.accrue(YEAR)
    open_account(m, {"DAI": 1.0})  # another action after the accrual
    assert m.health()[a] < h[2]


# --- the liquidators' pair screen: edges ---------------------------------------------------------------------------
def test_pair_screen_edges_of_the_close_factor():
    # v3.0 at HF exactly 0.95: the whole reserve debt (only HF > 0.95 halves it)
    m, _ = market(rule="aave-v3.0")
    a = m.add_accounts(1)
    m.env.ledger.mint("USDC", "book", 1_187.5, "genesis")
    m.genesis_positions("book", a, [[0, 0, 1_187.5, 0, 0]], [[0, 0, 0, 1_000.0, 0]])  # 950 / 1,000 = 0.95
    assert m.health()[a[0]] == 0.95
    assert m.liquidation_pairs_and_caps(a)[3][3] == 1_000.0
    # v3.3: a collateral reserve worth exactly 2,000 USD counts as large (ETH's bonus raised to 10% to be the best)
    m, _ = market(rule="aave-v3.3", ETH={"liquidation_bonus": 0.10})
    b = open_account(m, {"ETH": 1.0, "BTC": 0.1}, {"USDC": 2_500.0})  # HF 6,150 / 2,500 > 0.95
    ci, _, profit = m.best_liquidation_pairs(np.array([b]))
    # ETH on USDC: cap half of 2,500 = 1,250; seized 1,375; profit 1,375 - 125 · 0.10 - 1,250 = 112.5
    # (BTC on USDC: 1,350 - 100 · 0.10 - 1,250 = 90)
    assert ci[0] == 0 and profit[0] == pytest.approx(112.5, rel=1e-12)
    # a debt of exactly 2,000 USD counts as large: BTC on USDC capped at 1,000, seized 1,080, profit 72
    c = open_account(m, {"BTC": 0.1}, {"USDC": 2_000.0})  # HF 4,500 / 2,000
    assert m.best_liquidation_pairs(np.array([c]))[2][0] == pytest.approx(72.0, rel=1e-12)
    # v3.3 at HF exactly 0.95 with large positions: the whole 10,000 DAI; seized 10,450 USDC, profit 405
    d = m.add_accounts(1)
    m.env.ledger.mint("USDC", "book", 11_875.0, "genesis")
    m.genesis_positions("book", d, [[0, 0, 11_875.0, 0, 0]], [[0, 0, 0, 10_000.0, 0]])  # 9,500 / 10,000
    assert m.best_liquidation_pairs(d)[2][0] == pytest.approx(405.0, rel=1e-12)


def test_pair_screen_takes_small_positions_and_leaves_out_zero_thresholds():
    m, o = market(DAI={"ltv": 0.0, "liquidation_threshold": 0.0})
    a = open_account(m, {"ETH": 0.0004}, {"USDC": 0.5})  # 0.8 USD of ETH for 0.5 USDC
    o["ETH"].price = 1_000.0  # 0.4 USD for 0.5: repay 0.4 / 1.05 USDC for all of it
    ci, dj, profit = m.best_liquidation_pairs(np.array([a]), ["1e9", "1e9", "1e9", "1e9", "1e9"])
    assert (ci[0], dj[0]) == (0, 2)
    assert profit[0] == pytest.approx(0.4 - (0.4 - 0.4 / 1.05) * 0.10 - 0.4 / 1.05, rel=1e-12)
    b = m.add_accounts(1)
    m.env.ledger.mint("DAI", "book", 1e6, "genesis")
    m.genesis_positions("book", b, [[0, 0, 0, 1e6, 0]], [[0, 0, 100.0, 0, 0]], np.ones((1, 5), bool))
    ci, dj, profit = m.best_liquidation_pairs(b)  # DAI has a zero threshold: it cannot be seized
    assert ci[0] == -1 and np.isneginf(profit[0])


# --- controller entry points: edges ---------------------------------------------------------------------------------
def test_controller_close_caps_the_repayment_when_the_penalty_exceeds_the_collateral():
    m, _ = market()
    a = open_account(m, {"USDC": 1_000.0}, {"DAI": 700.0})
    m.debt_scaled[a, 3] = 960.0  # 960 DAI owed against 1,000 USDC (prices moved)
    m._touch()
    ev = m.controller_close(a, 1.0, LIQ, penalty=0.05)
    # 960 · 1.05 = 1,008 > 1,000: repay 960 · 1,000 / 1,008 = 952.38 DAI and take all 1,000 USDC
    assert ev.debt_repaid == pytest.approx(960 * 1_000 / 1_008, rel=1e-12)
    assert ev.collateral_seized == pytest.approx(1_000.0, rel=1e-12)
    assert m.coll_scaled[a, 2] == 0.0 and m.debt_scaled[a, 3] == pytest.approx(960 - 960 * 1_000 / 1_008, rel=1e-12)
    assert m.env.ledger.balance("lend", "DAI") == pytest.approx(1e8 - 700 + 960 * 1_000 / 1_008, rel=1e-15)


def test_controller_close_of_several_assets_reports_usd_and_joined_names():
    m, _ = market()
    a = open_account(m, {"ETH": 1.0, "BTC": 0.1}, {"USDC": 1_000.0, "DAI": 500.0})
    ev = m.controller_close(a, 0.5, LIQ, penalty=0.1)
    # repay half of each: 500 USDC + 250 DAI = 750 USD; seize 825 USD pro rata over 2,000 + 6,000 USD
    assert (ev.debt_asset, ev.collateral_asset) == ("USDC+DAI", "ETH+BTC")
    assert ev.debt_repaid == pytest.approx(750.0) and ev.collateral_seized == pytest.approx(825.0)
    b = open_account(m, {"ETH": 0.0002}, {"USDC": 0.3})  # 0.4 USD of collateral: still closed
    assert m.controller_close(b, 1.0, LIQ).debt_repaid == pytest.approx(0.3)


def test_write_off_books_the_usd_of_the_debt_asset_and_small_debts():
    m, _ = market(rule="aave-v3.0")
    a = m.add_accounts(2)
    m.genesis_positions("book", a, np.zeros((2, 5)), [[0.5, 0, 0, 0, 0], [0, 0, 0.5, 0, 0]])
    assert m.write_off(int(a[0])) == 1_000.0  # 0.5 ETH · 2,000, no liquidation before
    assert m.deficit_usd_by_collateral.tolist() == [1_000.0, 0, 0, 0, 0]
    ev = m.env.events[-1]
    assert isinstance(ev, BadDebt) and (ev.asset, ev.amount, ev.amount_usd) == ("ETH", 0.5, 1_000.0)
    assert m.write_off(int(a[1])) == 0.5 and m.deficit[2] == 0.5
    c = m.add_accounts(1)
    m.env.ledger.mint("ETH", "book", 1e-12, "genesis")
    m.genesis_positions("book", c, [[1e-12, 0, 0, 0, 0]], [[0, 0, 1.0, 0, 0]])
    assert m.write_off(int(c[0])) == 1.0  # 1e-12 ETH is no collateral


def test_settlements_stay_within_equity_and_take_the_next_stable_when_one_is_lent_out():
    m, _ = market()
    a = open_account(m, {"USDC": 1_000.0}, {"DAI": 600.0})
    assert m.settle_out(a, 2_000.0, "out") == pytest.approx(400.0)  # equity 1,000 - 600
    b = open_account(m, {"USDC": 1_000.0}, {"DAI": 700.0})
    m.debt_scaled[b, 3] = 1_200.0  # underwater: no equity
    m._touch()
    assert m.settle_out(b, 100.0, "out") == 0.0
    assert m.settle_in(b, 0.5, LIQ) == pytest.approx(0.5)  # half a dollar of DAI repaid
    e = open_account(m, {"USDC": 10_000.0}, {"ETH": 1.0})
    assert m.settle_in(e, 100.0, LIQ, asset="ETH") == 0.0  # ETH is owed but is not a stable: nothing is repaid
    assert m.debt()[e, 0] == 1.0
    c = open_account(m, {"USDC": 1_000.0, "DAI": 500.0})
    m.env.ledger.mint("ETH", "user", 70_000.0, "genesis")
    w = m.add_accounts(1)
    m.supply("user", w, "ETH", np.array([70_000.0]))
    m.borrow("user", w, "USDC", np.array([m.env.ledger.balance("lend", "USDC")]))  # the pool's USDC is all lent
    assert m.settle_out(c, 300.0, "out") == pytest.approx(300.0)  # from DAI
    assert m.env.ledger.balance("out", "DAI") == pytest.approx(300.0)


# --- liquidation edges ------------------------------------------------------------------------------------------------
def test_v33_liquidates_sub_token_positions_and_burns_the_debt_left_without_collateral():
    m, o = market(rule="aave-v3.3")
    a = open_account(m, {"ETH": 0.0004}, {"USDC": 0.5})  # 0.8 USD of ETH for 0.5 USDC
    o["ETH"].price = 1_000.0  # 0.4 USD for 0.5: all of it goes for 0.4 / 1.05 = 0.380952 USDC
    ev = m.liquidate(a, "ETH", "USDC", 1e9, LIQ)
    assert ev.debt_repaid == pytest.approx(0.4 / 1.05, rel=1e-12)
    assert m.coll_scaled[a, 0] == 0.0 and m.debt_scaled[a, 2] == 0.0
    assert m.deficit[2] == pytest.approx(0.5 - 0.4 / 1.05, rel=1e-12)  # 0.119048 USDC burned (v3.3)
    assert m.deficit_usd_by_collateral[0] == pytest.approx(0.5 - 0.4 / 1.05, rel=1e-12)


def test_v33_dust_rule_at_its_edges():
    # USDC's bonus 6.25% (1.0625 is exact in binary): repaying 2,000 DAI seizes 2,125 USDC, fee 12.5 of them;
    # its threshold 50% puts every account below HF 0.95 (the whole debt may be repaid)
    def account(coll: float, debt: float) -> tuple[LendingMarket, int]:
        changes = {"liquidation_bonus": 0.0625, "liquidation_threshold": 0.5, "ltv": 0.4}
        m, _ = market(rule="aave-v3.3", USDC=changes)
        a = m.add_accounts(1)
        m.env.ledger.mint("USDC", "book", coll, "genesis")
        m.genesis_positions("book", a, [[0, 0, coll, 0, 0]], [[0, 0, 0, debt, 0]])
        return m, int(a[0])

    m, a = account(3_125.0, 3_500.0)  # HF 1,562.5 / 3,500
    m.liquidate(a, "USDC", "DAI", 2_000.0, LIQ)  # leaves exactly 1,000 USD of USDC and 1,500 of DAI: allowed
    assert m.collateral()[a, 2] == 1_000.0 and m.debt()[a, 3] == 1_500.0
    m, a = account(3_125.0, 2_000.5)  # would leave 0.5 USD of debt beside 1,000 of collateral
    with pytest.raises(Revert, match="^MustNotLeaveDust$"):
        m.liquidate(a, "USDC", "DAI", 2_000.0, LIQ)
    m, a = account(2_125.5, 3_500.0)  # would leave 0.5 USD of collateral beside 1,500 of debt
    with pytest.raises(Revert, match="^MustNotLeaveDust$"):
        m.liquidate(a, "USDC", "DAI", 2_000.0, LIQ)


def test_liquidating_an_isolated_account_lowers_the_isolated_debt():
    m, o = market()
    open_account(m, {"ETH": 1.0}, {"USDC": 100.0})  # row 0: not isolated
    a = open_account(m, {"ISO": 1_000.0})  # 10,000 USD of the isolated asset
    m.set_collateral([a], "ISO", True)
    m.borrow("user", np.array([a]), "USDC", np.array([4_000.0]))
    assert m.iso_debt[4] == 4_000.0
    o["ISO"].price = 6.0  # HF = 6,000 · 0.60 / 4,000 = 0.9: the whole debt may be repaid
    ev = m.liquidate(a, "ISO", "USDC", 1_000.0, LIQ)
    assert ev.debt_repaid == 1_000.0 and m.iso_debt[4] == 3_000.0


def test_a_liquidation_after_interest_moves_scaled_balances_by_the_indices():
    m, o = market(rule="aave-v3.3")
    w = open_account(m, {"ETH": 60_000.0}, {"USDC": 5e7})  # USDC borrowed
    v = open_account(m, {"BTC": 100.0}, {"ETH": 2_000.0})  # ETH borrowed
    a = open_account(m, {"ETH": 1.0}, {"USDC": 1_500.0})
    m.accrue(YEAR)  # linear over the year: index x (1 + rate), liquidity index x (1 + rate · use · 85%)
    u_usdc, u_eth = (5e7 + 1_500) / 1e8, 2_000 / (1e4 + 60_000 + 1)
    idx_usdc = 1 + kinked(u_usdc)
    liq_eth = 1 + kinked(u_eth) * u_eth * 0.85
    assert m.borrow_index[2] == pytest.approx(idx_usdc, rel=1e-13) and m.liq_index[0] == pytest.approx(liq_eth)
    o["ETH"].price = 1_700.0  # HF = 1,700 · liq · 0.825 / (1,500 · idx) < 0.95; 1,700 USD < 2,000: no halving
    ev = m.liquidate(a, "ETH", "USDC", 1e9, LIQ)
    debt = 1_500 * idx_usdc  # tokens owed, all repaid
    seized = debt / 1_700 * 1.05  # ETH (fee included)
    assert ev.debt_repaid == pytest.approx(debt, rel=1e-12)
    assert m.coll_scaled[a, 0] == pytest.approx(1 - seized / liq_eth, rel=1e-12)
    assert m.debt_scaled[a, 2] == pytest.approx(0.0, abs=1e-9)
    del w, v


# --- the value cache --------------------------------------------------------------------------------------------------
def test_cached_values_follow_row_updates_and_price_moves_and_never_change_a_callers_array():
    m, o = market()
    a = open_account(m, {"ETH": 1.0}, {"USDC": 1_000.0})
    b = open_account(m, {"ETH": 2.0}, {"USDC": 1_000.0})
    c = open_account(m, {"ETH": 1.0}, {"USDC": 500.0})
    held = m.health()
    before = held.copy()
    v = m._account_values()  # a caller holding the whole cache
    v_hf = v["hf"].copy()
    m.env.ledger.mint("USDC", "user", 10_000.0, "genesis")
    m.repay("user", np.array([a]), "USDC", np.array([1_000.0]))  # only row a changes: its debt is gone
    hf = m.health()
    assert np.isinf(hf[a]) and hf[b] == pytest.approx(3_300 / 1_000) and hf[c] == pytest.approx(1_650 / 500)
    assert m.weighted_collateral_usd()[a] == pytest.approx(1_650.0)
    assert np.array_equal(held, before) and np.array_equal(v["hf"], v_hf)  # nobody's array changed under them
    o["ETH"].price = 1_000.0  # a price move, then a change of row b alone
    m.repay("user", np.array([b]), "USDC", np.array([500.0]))
    hf = m.health()
    # b: 2 · 1,000 · 0.825 / 500 = 3.3; c, untouched since: 825 / 500 = 1.65
    assert hf[b] == pytest.approx(3.3) and hf[c] == pytest.approx(1.65) and np.isinf(hf[a])


def test_an_array_held_alone_is_not_written_by_the_next_refresh():
    """A caller keeps one cached array (not the dict): the next refresh, a whole one after a price move or a row's
    after a repayment, writes new arrays for it and reuses in place only what nobody else holds."""
    m, o = market()
    a = open_account(m, {"ETH": 1.0}, {"USDC": 1_000.0})
    b = open_account(m, {"ETH": 2.0}, {"USDC": 1_000.0})
    hf = m.health()  # 1.65 and 3.3: 1,650 / 1,000 and 3,300 / 1,000
    coll = m.account_usd()[0]  # 2,000 and 4,000 USD
    o["ETH"].price = 1_000.0  # a whole refresh
    assert m.health()[a] == pytest.approx(0.825) and m.account_usd()[0][b] == 2_000.0
    assert hf[a] == pytest.approx(1.65) and hf[b] == pytest.approx(3.3)  # as they were read
    assert coll[a] == 2_000.0 and coll[b] == 4_000.0
    hf = m.health()
    m.env.ledger.mint("USDC", "user", 1_000.0, "genesis")
    m.repay("user", np.array([a]), "USDC", np.array([1_000.0]))  # row a alone
    assert np.isinf(m.health()[a]) and hf[a] == pytest.approx(0.825) and hf[b] == pytest.approx(1.65)


def test_a_refresh_nobody_holds_arrays_of_writes_them_in_place():
    """With no caller holding the cache or one of its arrays, a refresh (a whole one after a price move, a row's after a
    repayment) writes the new values into the cached arrays (no new one-per-account arrays per block), whether the cache
    holds the four values alone or the borrow caps too (which a row's refresh keeps and a whole one drops); an array a
    caller holds is the one copied, the others still written in place."""
    m, o = market()
    a = open_account(m, {"ETH": 1.0}, {"USDC": 1_000.0})
    open_account(m, {"ETH": 2.0}, {"USDC": 1_000.0})
    m.env.ledger.mint("USDC", "user", 2_000.0, "genesis")
    four = ("coll_usd", "debt_usd", "weighted", "hf")

    def ids() -> dict[str, int]:
        return {k: id(v) for k, v in m._cache.items()}

    m.health()
    was = ids()
    assert set(was) == set(four)
    o["ETH"].price = 1_000.0  # a whole refresh of the four values alone
    assert m.health()[a] == pytest.approx(0.825) and ids() == was
    m.repay("user", np.array([a]), "USDC", np.array([500.0]))  # row a alone: 825 / 500
    assert m.health()[a] == pytest.approx(1.65) and ids() == was
    m._account_values()["borrow_cap"]  # read, as a borrow does: kept by a row's refresh
    was = ids()
    assert set(was) == {*four, "borrow_cap"}
    m.repay("user", np.array([a]), "USDC", np.array([250.0]))  # 825 / 250
    assert m.health()[a] == pytest.approx(3.3) and ids() == was
    o["ETH"].price = 2_000.0  # a whole refresh: the four values in place, the borrow caps dropped until read again
    assert m.health()[a] == pytest.approx(6.6) and ids() == {k: was[k] for k in four}
    was["borrow_cap"] = id(m._account_values()["borrow_cap"])
    held = m._cache["hf"]  # a caller holds one array: that one is copied, the others are written in place again
    m.repay("user", np.array([a]), "USDC", np.array([125.0]))  # 1,650 / 125
    assert m.health()[a] == pytest.approx(13.2) and held[a] == pytest.approx(6.6)
    assert {k: v == was[k] for k, v in ids().items()} == {**dict.fromkeys(was, True), "hf": False}


def test_float_accrual_invalidates_the_cached_values_each_time():
    m, _ = market()
    a = open_account(m, {"ETH": 40_000.0}, {"USDC": 5e7})
    h = [m.health()[a]]
    for _ in range(2):
        m.accrue(YEAR)
        h.append(m.health()[a])
    assert h[0] > h[1] > h[2]


# --- borrowing edges --------------------------------------------------------------------------------------------------
def test_borrowing_is_refused_with_the_rule_and_the_reason():
    m, _ = market()
    a = open_account(m, {"ETH": 1.0})  # LTV 80%: 1,600 USD
    m.borrow("user", np.array([a]), "USDC", np.array([1_600 * (1 + 1e-12)]))  # within the 1e-12 tolerance
    b = open_account(m, {"ETH": 1.0})
    with pytest.raises(Revert, match=rf"^lend: borrow would exceed LTV for 1 account\(s\), e.g. #{b}$"):
        m.borrow("user", np.array([b]), "USDC", np.array([1_600.01]))
    with pytest.raises(Revert, match=rf"^lend: borrow would exceed health factor 1 for 1 account\(s\), e.g. #{b}$"):
        m.seed_borrow("user", np.array([b]), "USDC", np.array([1_650.01]))  # 1 ETH · 2,000 · 0.825 = 1,650
    c = open_account(m, {"ETH": 1e6})
    with pytest.raises(Revert, match=r"^lend: not enough USDC liquidity to lend 2e\+08$"):
        m.borrow("user", np.array([c]), "USDC", np.array([2e8]))
    m.gates.set("frozen", True, "USDC")
    with pytest.raises(Revert, match=r"^lend: RESERVE_FROZEN \(USDC frozen by governance\)$"):
        m.borrow("user", np.array([c]), "USDC", np.array([1.0]))


def test_an_isolated_bystander_does_not_bind_other_borrowers_and_isolated_debt_repaid_whole_is_zero():
    m, _ = market()
    i = open_account(m, {"ISO": 1_000.0})
    m.set_collateral([i], "ISO", True)
    m.borrow("user", np.array([i]), "USDC", np.array([1_000.0]))
    a = open_account(m, {"BTC": 1.0})
    m.borrow("user", np.array([a]), "ETH", np.array([1.0]))  # ETH is not borrowable in isolation: a is not isolated
    assert m.iso_debt[4] == 1_000.0
    m.env.ledger.mint("USDC", "user", 1_000.0, "genesis")
    m.repay("user", np.array([i]), "USDC", np.array([1_000.0]))
    assert m.iso_debt[4] == 0.0


def test_a_borrow_after_interest_adds_exactly_the_tokens_borrowed():
    m, _ = market()
    open_account(m, {"ETH": 40_000.0}, {"USDC": 5e7})
    a = open_account(m, {"ETH": 10.0}, {"USDC": 1_000.0})
    m.accrue(YEAR)
    owed = m.debt()[a, 2]
    assert owed > 1_000.0
    m.borrow("user", np.array([a]), "USDC", np.array([1_000.0]))
    assert m.debt()[a, 2] == pytest.approx(owed + 1_000.0, rel=1e-14)


def test_borrows_in_emode_value_the_debt_at_the_category_price():
    env = Env()
    oracles = {a.symbol: FixedPrice(PRICES[a.symbol], a.symbol) for a in (ETH, USDC, DAI)}
    oracles["DAI"].price = 1.2
    m = LendingMarket("lend", [ETH, USDC, DAI], oracles, env, "aave-v3.0", [STABLES], {1: FixedPrice(1.0, "s")})
    env.ledger.mint("DAI", "lenders", 1e6, "genesis")
    m.supply_liquidity("lenders", "DAI", 1e6)
    a = open_account(m, {"USDC": 10_000.0})
    b = open_account(m, {"USDC": 10_000.0})
    m.set_emode([a, b], 1)
    # in the category both are priced 1.0: LTV 93% of 10,000 = 9,300 DAI (at the oracle's 1.2 only 7,750 would fit)
    m.borrow("user", np.array([a, b]), "DAI", np.array([9_300.0, 100.0]))
    with pytest.raises(Revert, match="exceed LTV"):
        m.borrow("user", np.array([b]), "DAI", np.array([9_200.01]))
    assert m.account_usd()[1].tolist() == [9_300.0, 100.0]


@pytest.mark.parametrize("rule", ["aave-v3.0", "aave-v3.3"])
def test_an_emode_liquidation_of_a_second_account_uses_its_category_terms(rule):
    # v3.3: both positions are large and HF > 0.95, so at most half the total debt: 0.5 · 9,540 / 1.06 = 4,500 DAI
    m, o = market(rule=rule)
    open_account(m, {"ETH": 1.0})  # row 0, not in e-mode
    a = open_account(m, {"USDC": 10_000.0})
    m.set_emode([a], 1)
    m.borrow("user", np.array([a]), "DAI", np.array([9_000.0]))
    o["DAI"].price = 1.06  # HF = 9,500 / 9,540
    pv = m.preview(a, "USDC", "DAI", 1e9)
    # v3.0: 50% of 9,000 DAI; seized 4,500 · 1.06 · 1.01 (the category's bonus), fee 10% of the bonus part
    seized = 4_500 * 1.06 * 1.01
    assert pv.debt_to_repay == 4_500.0 and pv.protocol_fee == pytest.approx((seized - seized / 1.01) * 0.10)
    ev = m.liquidate(a, "USDC", "DAI", 1e9, LIQ)
    assert ev.collateral_seized_usd == pytest.approx(seized - (seized - seized / 1.01) * 0.10)  # USDC at 1.00


def test_a_market_without_accounts_reports_empty_values_and_zero_metrics():
    m, _ = market()
    assert m.health().size == 0 and m.account_usd()[0].size == 0
    got = m.metrics()
    assert got["collateral_usd"] == 0.0 and got["debt_usd"] == 0.0 and got["accounts_unhealthy"] == 0


def test_after_interest_settlements_and_caps_read_balances_through_the_indices():
    m, _ = market(rule="aave-v3.3")
    open_account(m, {"ETH": 40_000.0}, {"USDC": 5e7})  # USDC near half used: its indices grow by ~2% and ~1%
    s = open_account(m, {"USDC": 1_000.0, "DAI": 1_005.0})
    t = open_account(m, {"ETH": 10.0}, {"USDC": 1_000.0, "DAI": 1_010.0})
    q = open_account(m, {"USDC": 1_990.0, "ETH": 10.0}, {"DAI": 5_000.0})
    m.accrue(YEAR)
    u = (5e7 + 1_000) / (1e8 + 1_000 + 1_990)
    idx_usdc, liq_usdc = 1 + kinked(u), 1 + kinked(u) * u * 0.85
    u_dai = 6_010 / (1e8 + 1_005)
    idx_dai, liq_dai = 1 + kinked(u_dai), 1 + kinked(u_dai) * u_dai * 0.85
    # the largest stable collateral in USD goes first: USDC 1,000 · 1.0094 = 1,009.4 > DAI 1,005 · 1.0000...
    assert 1_000 * liq_usdc > 1_005 * liq_dai
    assert m.settle_out(s, 500.0, "out") == pytest.approx(500.0)
    assert m.env.ledger.balance("out", "USDC") == pytest.approx(500.0) and m.env.ledger.balance("out", "DAI") == 0.0
    # the largest stable debt in USD is repaid first: USDC 1,000 · 1.022 > DAI 1,010 · 1.0000027
    assert 1_000 * idx_usdc > 1_010 * idx_dai
    assert m.settle_in(t, 500.0, LIQ) == pytest.approx(500.0)
    assert m.debt()[t, 2] == pytest.approx(1_000 * idx_usdc - 500, rel=1e-12)
    assert m.debt()[t, 3] == pytest.approx(1_010 * idx_dai, rel=1e-12)
    # v3.3 cap: USDC collateral 1,990 · 1.0094 = 2,008.7 >= 2,000 and HF > 0.95: half of the 5,000 DAI debt
    assert 1_990 * liq_usdc >= 2_000
    assert m.max_debt_to_cover(q, "DAI", "USDC") == pytest.approx(2_500 * idx_dai, rel=1e-12)
    # q's best pair: ETH (5%) on DAI, capped at half the debt: seized 2,625 · idx, profit (2,625 - 2,500) · idx · 0.9
    ci, dj, profit = m.best_liquidation_pairs(np.array([q]))
    assert (ci[0], dj[0]) == (0, 3) and profit[0] == pytest.approx(112.5 * idx_dai, rel=1e-9)
    # a controller close of half the debt takes collateral pro rata by USD value (no penalty)
    before = m.env.ledger.balance(LIQ, "USDC")
    m.controller_close(q, 0.5, LIQ)
    share = 2_500 * idx_dai / (1_990 * liq_usdc + 10 * 2_000)
    assert m.env.ledger.balance(LIQ, "USDC") - before == pytest.approx(1_990 * liq_usdc * share, rel=1e-9)


def test_exposures_include_sub_token_debts():
    m, _ = market()
    a = open_account(m, {"ETH": 0.001}, {"USDC": 0.5})
    assert a == 0
    got = {(e.kind, e.asset): e.amount for e in m.exposures()}
    assert got[("receivable", "USDC")] == 0.5 and got[("holds", "ETH")] == 0.001  # accounts' collateral only


def test_genesis_books_of_isolated_accounts_count_against_the_ceiling_and_undefined_categories_are_refused():
    m, _ = market()
    open_account(m, {"ETH": 1.0}, {"USDC": 100.0})  # a bystander, not isolated
    rows = m.add_accounts(2)
    m.env.ledger.mint("ISO", "book", 300.0, "genesis")
    on = np.array([[False, False, False, False, True]] * 2)  # only the isolated asset counts
    m.genesis_positions("book", rows, [[0, 0, 0, 0, 100.0], [0, 0, 0, 0, 200.0]], [[0, 0, 300.0, 0, 0]] * 2, on)
    assert m.isolation_state(rows)[0].tolist() == [True, True]
    assert m.iso_debt[4] == 600.0  # 300 USDC each, borrowable in isolation
    with pytest.raises(ValueError, match=r"^lend: accounts in undefined e-mode categories \[7\]$"):
        m.genesis_positions("book", rows[:1], np.zeros((1, 5)), np.zeros((1, 5)), None, np.array([7]))


def test_a_genesis_debt_within_the_tolerance_of_the_pool_is_placed():
    m, _ = market()
    a = m.add_accounts(1)
    debt = np.zeros((1, 5))
    debt[0, 2] = 100_000_000.0001  # 1e8 / (1 - 1e-12): the pool's 1e8 USDC are enough within the tolerance
    m.genesis_positions("book", a, np.zeros((1, 5)), debt)
    assert m.env.ledger.balance("lend", "USDC") == 0.0 and m.env.ledger.balance("book", "USDC") == 1e8


def test_a_genesis_book_after_interest_holds_exactly_the_tokens_placed():
    m, _ = market()
    open_account(m, {"ETH": 40_000.0}, {"USDC": 5e7})
    m.accrue(YEAR)
    a = m.add_accounts(1)
    m.env.ledger.mint("USDC", "book", 1_000.0, "genesis")
    m.genesis_positions("book", a, [[0, 0, 1_000.0, 0, 0]], [[0, 0, 400.0, 0, 0]])
    assert m.collateral()[a[0], 2] == pytest.approx(1_000.0, rel=1e-14)
    assert m.debt()[a[0], 2] == pytest.approx(400.0, rel=1e-14)


def test_no_rows_give_float_profits():
    m, _ = market()
    ci, dj, profit, caps = m.liquidation_pairs_and_caps(np.array([], dtype=np.int64))
    assert ci.size == dj.size == profit.size == 0 and profit.dtype.kind == "f" and caps.tolist() == [0.0] * 5


def test_contract_accrual_over_one_second_has_no_second_order_term():
    m, _ = market(precision="aave-v3")
    m.env.ledger.mint("ETH", "user", 70_000.0, "genesis")
    w = m.add_accounts(1)
    m.supply("user", w, "ETH", np.array([70_000.0]))
    m.borrow("user", w, "USDC", np.array([1e8]))  # all of it: the rate is 4% + 60% = 64%
    m.accrue(1.0)
    b = 0.64 / YEAR  # per second; over x = 1 s MathUtils gives 1 + b (x - 1 = 0 kills the other terms)
    assert m.borrow_index[2] == 1 + b


def test_contract_accrual_restarts_a_reserve_when_its_supply_and_lenders_grow_alike():
    m, _ = market(precision="aave-v3")
    m.env.ledger.mint("ETH", "user", 60_000.0, "genesis")
    w = m.add_accounts(1)
    m.supply("user", w, "ETH", np.array([60_000.0]))
    m.borrow("user", w, "USDC", np.array([9.5e7]))
    m.accrue(YEAR)
    rb0 = kinked(0.95)
    idx1, liq1 = compound(rb0, YEAR), 1 + rb0 * 0.95 * 0.85
    a = m.add_accounts(1)
    m.env.ledger.mint("USDC", "user", 1e7, "genesis")
    m.supply("user", a, "USDC", np.array([1e7]))  # an account and the lenders add the same 1e7 USDC
    m.env.ledger.mint("USDC", "lenders", 1e7, "genesis")
    m.supply_liquidity("lenders", "USDC", 1e7)
    m.accrue(YEAR)
    u1 = 9.5e7 * idx1 / (1e8 * liq1 + 2e7)
    assert m.borrow_index[2] == pytest.approx(idx1 * compound(kinked(u1), YEAR), rel=1e-14)


def test_an_aave_precision_repayment_within_the_tolerance_of_the_whole_debt_clears_it():
    m, _ = market(precision="aave-v3")
    a = open_account(m, {"ETH": 1_000.0}, {"USDC": 1e6})
    # 999,999.999999 USDC (one base unit short) is 1e6 · (1 - 1e-12): within the tolerance, the debt is gone
    m.env.ledger.mint("USDC", "user", 1.0, "genesis")
    m.repay("user", np.array([a]), "USDC", np.array([999_999.999999]))
    assert m.debt_scaled[a, 2] == 0.0


def test_v33_dust_rule_needs_more_than_1e9_usd_left_on_both_sides():
    def account(coll: float, debt: float) -> tuple[LendingMarket, int]:
        m, _ = market(rule="aave-v3.3", USDC={"liquidation_bonus": 0.0})  # no bonus: seized = repaid
        a = m.add_accounts(1)
        m.env.ledger.mint("USDC", "book", coll, "genesis")
        m.genesis_positions("book", a, [[0, 0, coll, 0, 0]], [[0, 0, 0, debt, 0]])
        return m, int(a[0])

    m, a = account(2.4e-9, 2e-9)  # HF 0.96; repaying 1e-9 DAI leaves exactly 1e-9 USD of debt: not dust
    m.liquidate(a, "USDC", "DAI", 1e-9, LIQ)
    assert m.debt()[a, 3] == 1e-9
    m, a = account(2e-9, 3e-9)  # repaying 1e-9 leaves exactly 1e-9 USD of collateral: not dust
    m.liquidate(a, "USDC", "DAI", 1e-9, LIQ)
    assert m.collateral()[a, 2] == 1e-9


def test_v33_dust_rule_reads_balances_through_the_indices():
    m, _ = market(rule="aave-v3.3")
    open_account(m, {"ETH": 40_000.0}, {"USDC": 5e7})
    rows = m.add_accounts(2)
    m.env.ledger.mint("USDC", "book", 3_000.0, "genesis")
    m.env.ledger.mint("ETH", "book", 2.0, "genesis")
    # c: 3,000 USDC against 3,000 DAI; d: 2 ETH against 3,500 USDC
    m.genesis_positions(
        "book", rows, [[0, 0, 3_000.0, 0, 0], [2.0, 0, 0, 0, 0]], [[0, 0, 0, 3_000.0, 0], [0, 0, 3_500.0, 0, 0]]
    )
    c, d = (int(r) for r in rows)
    m.accrue(YEAR)
    u = (5e7 + 3_500) / (1e8 + 3_000)
    idx_usdc, liq_usdc = 1 + kinked(u), 1 + kinked(u) * u * 0.85
    u_dai = 3_000 / 1e8
    idx_dai = 1 + kinked(u_dai)
    # c: HF = 3,000 · 1.0094 · 0.80 / 3,000 < 0.95; repaying 1,920 DAI seizes 2,006.4 USDC: 3,028.2 - 2,006.4 = 1,021.8
    # USDC and 3,000 - 1,920 = 1,080 DAI are left: both at least 1,000, allowed
    m.liquidate(c, "USDC", "DAI", 1_920.0, LIQ)
    assert m.collateral()[c, 2] == pytest.approx(3_000 * liq_usdc - 1_920 * 1.045, rel=1e-12)
    assert m.debt()[c, 3] == pytest.approx(3_000 * idx_dai - 1_920, rel=1e-12)
    # d: owes 3,500 · 1.022 = 3,577 USDC; repaying 2,500 leaves 1,077 USDC and 4,000 - 2,625 = 1,375 USD of ETH
    m.liquidate(d, "ETH", "USDC", 2_500.0, LIQ)
    assert m.debt()[d, 2] == pytest.approx(3_500 * idx_usdc - 2_500, rel=1e-12)


def test_an_aave_precision_liquidation_after_interest_takes_the_whole_collateral_and_leaves_no_dust():
    m, o = market(precision="aave-v3")
    open_account(m, {"ETH": 40_000.0}, {"USDC": 5e7})  # USDC borrowed
    open_account(m, {"BTC": 100.0}, {"ETH": 2_000.0})  # ETH borrowed: ETH's liquidity index grows
    a = open_account(m, {"ETH": 1.0}, {"USDC": 1_500.0})
    b = open_account(m, {"ETH": 1.0}, {"USDC": 1_200.0})
    m.accrue(YEAR)
    assert m.liq_index[0] > 1.0 and m.borrow_index[2] > 1.0
    o["ETH"].price = 1_000.0  # a: about 1,000 USD of ETH for 1,533 USDC: all of it goes
    ev = m.liquidate(a, "ETH", "USDC", 1e9, LIQ)
    assert ev.collateral_seized + ev.protocol_fee == pytest.approx(m.liq_index[0], rel=1e-15)
    assert m.coll_scaled[a, 0] == 0.0 and m.collateral()[a, 0] == 0.0
    # b: the whole debt (1,200 · idx USDC) is repaid with ETH to spare: no debt is left, not even dust
    o["ETH"].price = 1_400.0  # HF = 1,400 · liq · 0.825 / (1,200 · idx) = 0.94: the whole debt may go
    ev = m.liquidate(b, "ETH", "USDC", 1e9, LIQ)
    assert ev.debt_repaid == pytest.approx(1_200 * m.borrow_index[2], rel=1e-9)
    assert m.debt_scaled[b, 2] == 0.0 and m.debt()[b, 2] == 0.0


def test_the_rate_curve_at_a_given_utilisation():
    m, _ = market()  # nothing borrowed: the market's own utilisation is 0
    got = m.borrow_rate(np.array([0.45, 0.9, 0.95, 1.0, 0.0]))
    # below the kink 4% · u / 90%; above it 4% + 60% · (u - 90%) / 10%
    assert got.tolist() == pytest.approx([0.02, 0.04, 0.34, 0.64, 0.0], rel=1e-12)


def test_borrow_caps_of_ordinary_and_special_rows():
    m, _ = market(USDC={"borrowing_enabled": False})
    a = open_account(m, {"USDC": 10_000.0})
    m.set_emode([a], 1)  # a special row: the category's 93%
    z = open_account(m, {"USDC": 10_000.0})  # the same collateral outside e-mode: USDC's own 77%
    with pytest.raises(Revert, match="exceed LTV"):
        m.borrow("user", np.array([z]), "DAI", np.array([8_000.0]))  # 8,000 > 7,700
    before = m.env.ledger.balance("user", "DAI")
    m.borrow("user", np.array([a]), "DAI", np.array([9_000.0]))  # 9,000 <= 9,300
    assert m.env.ledger.balance("user", "DAI") == before + 9_000.0  # the borrower's wallet receives the tokens
    f = open_account(m, {"ETH": 1.0, "BTC": 0.1})
    m.set_collateral([f], "BTC", False)  # a special row by its flags: 1 ETH · 2,000 · 80% = 1,600 USD
    m.borrow("user", np.array([f]), "DAI", np.array([1_600.0]))
    with pytest.raises(Revert, match=r"^BORROWING_NOT_ENABLED: USDC$"):
        m.borrow("user", np.array([f]), "USDC", np.array([1.0]))
    with pytest.raises(KeyError, match="nope"):
        m._account_values()["nope"]


# --- caps, ceilings and isolation: boundaries and the figures the reverts quote ------------------------------------
def test_a_cap_of_one_token_binds_and_the_revert_quotes_the_total():
    m, _ = market(ISO={"supply_cap": 1.0}, BTC={"borrow_cap": 1.0})
    open_account(m, {"ISO": 1.0})  # exactly the cap: 1 <= 1
    with pytest.raises(Revert, match=r"^SUPPLY_CAP_EXCEEDED: ISO supply 2 > cap 1 tokens$"):  # 1 supplied + 1 new
        open_account(m, {"ISO": 1.0})
    a = open_account(m, {"ETH": 100.0})  # 200,000 USD · 80% LTV: room for 1.5 BTC (90,000 USD)
    m.borrow("user", np.array([a]), "BTC", np.array([0.5]))
    with pytest.raises(Revert, match=r"^BORROW_CAP_EXCEEDED: BTC debt 1\.5 > cap 1$"):  # 0.5 owed + 1 new
        m.borrow("user", np.array([a]), "BTC", np.array([1.0]))


def test_caps_count_what_is_owed_and_supplied_with_the_grown_indices():
    m, _ = market(ETH={"supply_cap": 10_001.0}, BTC={"borrow_cap": 1.0})  # lenders supply 10,000 ETH
    a = open_account(m, {"BTC": 10.0}, {"ETH": 200.0})  # 600,000 USD of BTC at 70%: room for 210 ETH
    b = open_account(m, {"USDC": 100_000.0}, {"BTC": 0.5})  # 77,000 USD of room for 30,000 USD of BTC
    m.accrue(YEAR)
    assert m.liq_index[0] > 1.0 and m.borrow_index[1] > 1.0  # both reserves earn/owe interest
    # BTC owed 0.5 · idx > 0.5: 0.5 more is over the cap of 1 (at an index of 1 it would be exactly the cap)
    with pytest.raises(Revert, match=r"^BORROW_CAP_EXCEEDED: BTC debt 1 > cap 1$"):
        m.borrow("user", np.array([b]), "BTC", np.array([0.5]))
    # ETH supplied: the lenders' 10,000 · liq, liq = 1 + rate(u) · u · 85% with u = 200 / 10,000 (linear index);
    # 1 ETH more is over the cap of 10,001 (at an index of 1 it would be exactly the cap)
    supplied = 10_000 * (1 + kinked(200 / 10_000) * (200 / 10_000) * 0.85) + 1.0
    assert supplied > 10_001.1
    with pytest.raises(Revert, match=rf"^SUPPLY_CAP_EXCEEDED: ETH supply {supplied:.6g} > cap 10001 tokens$"):
        m.env.ledger.mint("ETH", "user", 1.0, "genesis")
        m.supply("user", np.array([a]), "ETH", np.array([1.0]))


def test_the_debt_ceiling_binds_at_half_a_dollar_and_the_revert_quotes_the_total():
    m, _ = market(ISO={"debt_ceiling": 20_000.0})
    a = open_account(m, {"ISO": 10_000.0})  # 100,000 USD of the isolated asset at 50% LTV
    m.set_collateral([a], "ISO", True)  # an isolated asset is not collateral until turned on
    m.borrow("user", np.array([a]), "USDC", np.array([12_345.0]))
    msg = r"^DEBT_CEILING_EXCEEDED: isolated debt against ISO would be 20000\.5 > ceiling 20000 USD$"
    with pytest.raises(Revert, match=msg):  # 12,345 + 7,655.5 = 20,000.5 USD
        m.borrow("user", np.array([a]), "DAI", np.array([7_655.5]))
    m.borrow("user", np.array([a]), "DAI", np.array([7_655.0]))  # 20,000: exactly the ceiling
    assert m.iso_debt[4] == 20_000.0


def test_isolation_state_of_every_account_and_of_none():
    plain, _ = market(ISO={"debt_ceiling": 0.0})  # no asset has a debt ceiling: nobody is isolated
    open_account(plain, {"ISO": 10.0})
    open_account(plain, {"ETH": 1.0})
    iso, k = plain.isolation_state()
    assert iso.tolist() == [False, False] and k.tolist() == [-1, -1]
    m, _ = market(ISO={"debt_ceiling": 1_000.0})
    a = open_account(m, {"ISO": 10.0})  # ISO alone: isolated against asset #4
    m.set_collateral([a], "ISO", True)  # an isolated asset is not collateral until turned on
    open_account(m, {"ETH": 1.0})
    open_account(m, {"ISO": 10.0, "ETH": 1.0})  # ISO held but not turned on: ETH alone, no ceiling
    iso, k = m.isolation_state()
    assert iso.tolist() == [True, False, False] and k.tolist() == [4, -1, -1]
    iso, k = m.isolation_state(a)
    assert iso.tolist() == [True] and k.tolist() == [4]


def test_supply_keeps_a_switched_off_top_up_off_and_a_first_isolated_supply_out_of_collateral():
    m, _ = market(ISO={"debt_ceiling": 1_000.0})
    a = open_account(m, {"ISO": 10.0})  # the market's first supply, no switch turned yet: an isolated asset stays off
    assert not m.collateral_enabled[a, 4]
    iso, k = m.isolation_state(a)
    assert iso.tolist() == [False] and k.tolist() == [-1]
    b = open_account(m, {"ETH": 0.5, "BTC": 1.0})
    m.set_collateral([b], "ETH", False)  # 1 BTC carries the (empty) book
    m.env.ledger.mint("ETH", "user", 0.75, "genesis")
    m.supply("user", np.array([b]), "ETH", np.array([0.5]))  # a top-up of 0.5 ETH held: not a first supply
    assert not m.collateral_enabled[b, 0]
    m.supply("user", [b], "ETH", ["0.25"])  # amounts read as text (CSV fields) are taken as numbers
    assert m.collateral()[b, 0] == 1.25  # 0.5 + 0.5 + 0.25 ETH at a liquidity index of 1
    m.env.ledger.mint("DAI", "lenders", 100.5, "genesis")
    m.supply_liquidity("lenders", "DAI", "100.5")
    assert m.lender_scaled[3] == 1e8 + 100.5
    m.gates.set("frozen", True, "ETH")
    with pytest.raises(Revert, match=r"^lend: RESERVE_FROZEN \(ETH frozen by governance\)$"):
        m.supply("user", np.array([b]), "ETH", np.array([0.25]))


def test_a_repayment_refreshes_an_e_mode_row_on_the_categorys_terms():
    m, _ = market()
    a = open_account(m, {"USDC": 10_000.0})
    m.set_emode([a], 1)  # the category's LTV 93%, LT 95%: room for 9,300 DAI
    m.borrow("user", np.array([a]), "DAI", np.array([9_000.0]))
    with pytest.raises(Revert, match="exceed LTV"):  # 9,301 > 9,300; the cache now holds the borrow caps too
        m.borrow("user", np.array([a]), "DAI", np.array([301.0]))
    m.repay("user", np.array([a]), "DAI", np.array([4_000.0]))  # only row a changed: the cache refreshes it alone
    assert m.health()[a] == pytest.approx(10_000 * 0.95 / 5_000, rel=1e-12)  # 1.9
    assert m.weighted_collateral_usd()[a] == pytest.approx(9_500.0, rel=1e-12)
    with pytest.raises(Revert, match="exceed LTV"):  # 5,000 + 4,301 = 9,301 > 9,300
        m.borrow("user", np.array([a]), "DAI", np.array([4_301.0]))
    m.borrow("user", np.array([a]), "DAI", np.array([4_299.0]))  # 9,299 <= 9,300 (USDC's own 77% would be 7,700)


def test_special_rows_with_little_or_no_debt_read_without_warnings():
    m, o = market()
    b = open_account(m, {"USDC": 1_000.0})
    m.set_emode([b], 1)
    m.borrow("user", np.array([b]), "DAI", np.array([0.5]))  # half a dollar of debt
    c = open_account(m, {"USDC": 1_000.0})
    m.set_emode([c], 1)  # no debt: 950 USD / 0
    f = open_account(m, {"ETH": 1.0})
    m.set_collateral([f], "ETH", False)  # nothing counted, no debt: 0 / 0
    o["BTC"].price = 59_000.0  # a new price: the next read recomputes every row (none of these holds BTC)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hf = m.health()
    assert hf[b] == pytest.approx(1_000 * 0.95 / 0.5, rel=1e-12)  # 1,900
    assert hf[c] == np.inf and hf[f] == np.inf


def test_repayments_and_a_liquidation_refresh_an_ordinary_row_and_its_borrow_cap():
    m, o = market()
    a = open_account(m, {"ETH": 1.0}, {"USDC": 1_000.0})  # 2,000 USD of ETH: LTV 80% leaves room for 1,600 USDC
    with pytest.raises(Revert, match="exceed LTV"):  # 1,601 > 1,600; the cache now holds the borrow caps too
        m.borrow("user", np.array([a]), "USDC", np.array([601.0]))
    m.repay("user", np.array([a]), "USDC", np.array([999.5]))  # half a dollar left: only row a is refreshed
    assert m.health()[a] == pytest.approx(2_000 * 0.825 / 0.5, rel=1e-12)  # 3,300
    with pytest.raises(Revert, match="exceed LTV"):  # 0.5 + 1,600 > 1,600
        m.borrow("user", np.array([a]), "USDC", np.array([1_600.0]))
    m.borrow("user", np.array([a]), "USDC", np.array([1_599.5]))  # 1,600 USDC owed: exactly the cap
    o["ETH"].price = 1_900.0  # HF = 1,900 · 0.825 / 1,600 = 0.98
    with pytest.raises(Revert, match="exceed LTV"):  # the cap at the new price: 1,900 · 80% = 1,520 < 1,601
        m.borrow("user", np.array([a]), "USDC", np.array([1.0]))
    ev = m.liquidate(a, "ETH", "USDC", 800.0, LIQ)  # close factor 50%: 800 repaid for 800 · 1.05 / 1,900 ETH
    assert ev.debt_repaid == pytest.approx(800.0)
    left = 1.0 - 800 * 1.05 / 1_900  # 0.55789 ETH: 1,060 USD, a cap of 848 USD against 800 owed
    with pytest.raises(Revert, match="exceed LTV"):  # 800 + 100 > 848 (the cap before the liquidation: 1,520)
        m.borrow("user", np.array([a]), "USDC", np.array([100.0]))
    m.borrow("user", np.array([a]), "USDC", np.array([left * 1_900 * 0.8 - 800 - 0.01]))  # just under the cap


def test_a_row_emptied_by_a_liquidation_reads_no_debt():
    m, o = market("aave-v3.3")  # v3.3 writes off the debt of an account left with no collateral
    a = open_account(m, {"ETH": 1.0}, {"USDC": 1_600.0})
    o["ETH"].price = 1_000.0  # 1,000 USD of ETH for 1,600 USDC: HF 0.52, the whole debt may go
    m.liquidate(a, "ETH", "USDC", 1e9, LIQ)  # all the ETH is seized; the rest of the debt is written off
    assert m.collateral()[a, 0] == 0.0 and m.debt()[a, 2] == 0.0
    assert m.health()[a] == np.inf  # 0 / 0: no debt


def test_a_first_supply_turns_on_a_switch_left_off_on_an_empty_balance():
    m, _ = market()
    rows = m.add_accounts(1)
    m.env.ledger.mint("ETH", "book", 1.0, "genesis")
    # a genesis row holding 1 ETH whose (empty) DAI switch is off
    m.genesis_positions("book", rows, [[1, 0, 0, 0, 0]], [[0, 0, 0, 0, 0]], [[True, True, True, False, True]])
    assert not m.collateral_enabled[rows[0], 3]
    m.env.ledger.mint("DAI", "user", 100.0, "genesis")
    m.supply("user", rows, "DAI", np.array([100.0]))  # a first supply: Aave turns it on as collateral
    assert m.collateral_enabled[rows[0], 3]
    assert m.account_usd()[0][rows[0]] == 2_100.0  # 1 ETH · 2,000 + 100 DAI · 1


def test_a_repayment_before_any_value_is_read_leaves_nothing_pending():
    m, _ = market()
    rows = m.add_accounts(1)
    m.env.ledger.mint("ETH", "book", 1.0, "genesis")
    m.genesis_positions("book", rows, [[1, 0, 0, 0, 0]], [[0, 0, 1_000, 0, 0]])  # no account value read yet
    m.env.ledger.mint("USDC", "user", 400.0, "genesis")
    m.repay("user", rows, "USDC", np.array([400.0]))
    assert m.health()[rows[0]] == pytest.approx(2_000 * 0.825 / 600, rel=1e-12)  # 2.75


def test_values_a_caller_holds_do_not_change_under_it():
    m, o = market()
    a = open_account(m, {"ETH": 1.0}, {"USDC": 1_000.0})
    held = m._account_values()  # a caller keeps the whole set of values
    o["ETH"].price = 1_000.0
    assert m.health()[a] == pytest.approx(1_000 * 0.825 / 1_000, rel=1e-12)  # 0.825 at the new price
    assert held["hf"][a] == pytest.approx(2_000 * 0.825 / 1_000, rel=1e-12)  # 1.65 as it was read
    assert held["coll_usd"][a] == 2_000.0


def test_liquidity_read_as_text_is_taken_in_whole_units():
    m, _ = market(precision="aave-v3")
    m.env.ledger.mint("USDC", "lenders", 100.5, "genesis")
    m.supply_liquidity(
        "lenders", "USDC", "100.5"
    )  # a CSV field: 100.5 USDC is 100,500,000 whole base units (6 decimals)
    assert m.lender_scaled[2] == pytest.approx(1e8 + 100.5, rel=1e-15)


# --- the constructor: errors that name the field, parameters as the market keeps them ------------------------------
def build(
    assets=(ETH, BTC, USDC, DAI, ISO), rule="aave-v3.0", emodes=(STABLES,), emode_oracles=None, precision="float"
):
    oracles = {a.symbol: FixedPrice(PRICES.get(a.symbol, 1.0), a.symbol) for a in assets}
    return LendingMarket("lend", list(assets), oracles, Env(), rule, list(emodes), emode_oracles, precision)


def test_constructor_errors_name_the_field_and_the_allowed_values():
    msg = "close_factor_rule must be 'aave-v3.0' or 'aave-v3.3', got 'aave-v2'"
    with pytest.raises(ValueError, match=f"^{re.escape(msg)}$"):
        build(rule="aave-v2")
    with pytest.raises(ValueError, match=r"got None$"):  # repr of the value: None, not 'None'
        build(rule=None)
    with pytest.raises(ValueError, match=r"^precision must be 'float' or 'aave-v3', got 'double'$"):
        build(precision="double")
    with pytest.raises(ValueError, match=r"^lend: price sources for unknown e-mode categories \[2, 3\]$"):
        build(emode_oracles={3: FixedPrice(1.0, "X"), 1: FixedPrice(1.0, "Y"), 2: FixedPrice(1.0, "Z")})
    gold = AssetParams("GOLD", 0.5, 0.6, 0.1, emode_category=2)
    msg = r"^lend: asset GOLD is in e-mode category 2, which is not defined \(defined: \[1\]\)$"
    with pytest.raises(ValueError, match=msg):
        build(assets=(ETH, gold))
    with pytest.raises(ValueError, match=r"\(defined: \[\]\)$"):
        build(assets=(ETH, gold), emodes=())


def test_the_market_keeps_its_reserves_parameters_and_their_basis_points():
    m = build()
    assert [a.symbol for a in m.params] == ["ETH", "BTC", "USDC", "DAI", "ISO"] and m.params[2] is USDC
    # Aave stores LTV and threshold in basis points: 0.80 -> 8000, 0.825 -> 8250, ...
    assert m.ltv_bps.tolist() == [8_000, 7_000, 7_700, 7_500, 5_000]
    assert m.lt_bps.tolist() == [8_250, 7_500, 8_000, 8_000, 6_000]
    assert m.treasury == "lend:treasury"


def test_the_protocol_fee_of_a_liquidation_goes_to_the_treasury():
    m, o = market()
    a = open_account(m, {"ETH": 1.0}, {"USDC": 1_500.0})
    o["ETH"].price = 1_500.0  # HF = 1,500 · 0.825 / 1,500 = 0.825 <= 0.95: close factor 100%
    m.liquidate(a, "ETH", "USDC", 150.0, LIQ)
    # seized with the bonus: 150 / 1,500 · 1.05 = 0.105 ETH; fee = (0.105 - 0.105 / 1.05) · 10% = 0.0005 ETH
    assert m.env.ledger.balance("lend:treasury", "ETH") == pytest.approx(0.0005, rel=1e-12)
    assert m.env.ledger.balance(LIQ, "ETH") == pytest.approx(100.0 + 0.1045, rel=1e-12)


def test_flags_given_as_zero_or_one_are_boolean_masks():
    # a reserves table read with 0/1 columns: the market keeps its flags as booleans
    m, _ = market(USDC={"borrowable_in_isolation": 1}, DAI={"borrowable_in_isolation": 1, "borrowing_enabled": 0})
    assert np.array(m.assets)[~m.borrowing_enabled].tolist() == ["DAI"]
    with pytest.raises(Revert, match=r"^BORROWING_NOT_ENABLED: DAI$"):
        open_account(m, {"ETH": 1.0}, {"DAI": 1.0})
    # an isolated genesis account's debt in a borrowable-in-isolation asset counts towards the ceiling
    rows = m.add_accounts(1)
    m.env.ledger.mint("ISO", "book", 1_000.0, "genesis")
    m.genesis_positions("book", rows, [[0, 0, 0, 0, 1_000]], [[0.5, 0, 1_000, 0, 0]])  # 10,000 USD of ISO
    assert m.iso_debt.tolist() == [0.0, 0.0, 0.0, 0.0, 1_000.0]  # the 1,000 USDC; the 0.5 ETH is not borrowable


def test_e_mode_categories_given_as_whole_floats_are_integers():
    # a category id read from JSON as 1.0 is category 1; the ids index per-category tables
    m, _ = market(USDC={"emode_category": 1.0}, DAI={"emode_category": 1.0})
    assert m.asset_category.dtype.kind == "i"
    assert np.array(["none", "Stablecoins"])[m.asset_category].tolist() == ["none", "none"] + ["Stablecoins"] * 2 + [
        "none"
    ]


def test_caps_ceilings_and_decimals_read_as_text_are_taken_as_numbers():
    m, _ = market(ISO={"supply_cap": "1000", "debt_ceiling": "2000"}, BTC={"borrow_cap": "1"})
    a = open_account(m, {"ISO": 1_000.0})  # exactly the cap of 1,000 tokens
    with pytest.raises(Revert, match=r"^SUPPLY_CAP_EXCEEDED: ISO supply 1001 > cap 1000 tokens$"):
        open_account(m, {"ISO": 1.0})
    m.set_collateral([a], "ISO", True)  # 10,000 USD of the isolated asset at 50% LTV: room for 5,000 USD
    with pytest.raises(Revert, match=r"^DEBT_CEILING_EXCEEDED: .* would be 2000\.5 > ceiling 2000 USD$"):
        m.borrow("user", np.array([a]), "USDC", np.array([2_000.5]))
    b = open_account(m, {"ETH": 100.0})
    with pytest.raises(Revert, match=r"^BORROW_CAP_EXCEEDED: BTC debt 1\.5 > cap 1$"):
        m.borrow("user", np.array([b]), "BTC", np.array([1.5]))
    m, _ = market(precision="aave-v3", USDC={"decimals": "6"})
    c = open_account(m, {"USDC": 1.0000009})  # 6 decimals: 1,000,000.9 base units floor to 1,000,000
    assert m.collateral()[c, 2] == 1.0


def test_a_repayment_named_by_a_boolean_mask_refreshes_its_rows():
    m, _ = market()
    a = open_account(m, {"ETH": 1.0}, {"USDC": 1_000.0})
    b = open_account(m, {"ETH": 1.0}, {"USDC": 1_000.0})
    assert m.account_usd()[1].tolist() == [1_000.0, 1_000.0]  # the values are read (and cached)
    m.env.ledger.mint("USDC", "user", 400.0, "genesis")
    mask = np.array([False, True])
    m.repay("user", mask, "USDC", np.array([400.0]))
    assert m.account_usd()[1][[a, b]].tolist() == [1_000.0, 600.0]
    assert m.health()[b] == pytest.approx(2_000 * 0.825 / 600, rel=1e-12)  # 2.75


# --- small public promises: read-only prices, the borrower's tokens, rates at a given utilisation ------------------
def test_prices_are_read_only_and_borrowed_tokens_reach_the_holder():
    m, _ = market()
    with pytest.raises(ValueError, match="read-only"):
        m.prices()[0] = 1.0
    a = open_account(m, {"ETH": 1.0})
    m.borrow("wallet", np.array([a]), "USDC", np.array([1_000.0]))
    assert m.env.ledger.balance("wallet", "USDC") == 1_000.0 and m.debt()[a, 2] == 1_000.0


def test_the_borrow_rate_at_a_given_utilisation():
    m, _ = market()
    u = np.array([0.45, 0.9, 0.95, 1.0, 0.0])
    # kink at 90%: 4% · u / 0.9 below it; 4% + 60% · (u - 0.9) / 0.1 above it
    expected = [0.04 * 0.45 / 0.9, 0.04, 0.04 + 0.60 * 0.05 / 0.1, 0.64, 0.0]
    assert m.borrow_rate(u) == pytest.approx(expected, rel=1e-12)


def test_the_ltv_room_of_an_ordinary_row_and_of_an_e_mode_row_side_by_side():
    m, _ = market()
    a = open_account(m, {"USDC": 1_000.0})  # ordinary: 1,000 USD · 77% = 770 USD of room
    b = open_account(m, {"ETH": 1.0})
    m.set_emode([b], 1)  # ETH is outside the category: its own 80% of 2,000 USD = 1,600 USD of room
    m.borrow("user", np.array([b]), "USDC", np.array([1_600.0]))
    with pytest.raises(Revert, match=r"^lend: borrow would exceed LTV for 1 account\(s\), e\.g\. #0$"):
        m.borrow("user", np.array([a]), "USDC", np.array([800.0]))  # the category's 93% would allow 930
    m.borrow("user", np.array([a]), "USDC", np.array([770.0]))
    assert m.debt()[[a, b], 2].tolist() == [770.0, 1_600.0]


def test_an_ordinary_row_borrows_a_category_asset_at_the_oracle_price():
    env = Env()
    oracles = {a.symbol: FixedPrice(PRICES[a.symbol], a.symbol) for a in (ETH, BTC, USDC, DAI, ISO)}
    src = FixedPrice(2.0, "stables")  # the category's own price source: 2 USD per stablecoin
    m = LendingMarket("lend", [ETH, BTC, USDC, DAI, ISO], oracles, env, "aave-v3.0", [STABLES], {1: src})
    env.ledger.mint("USDC", "lenders", 1e6, "genesis")
    m.supply_liquidity("lenders", "USDC", 1e6)
    a = open_account(m, {"ETH": 1.0})
    b = open_account(m, {"DAI": 1_000.0})
    m.set_emode([b], 1)  # 1,000 DAI at 2 USD, 93%: 1,860 USD of room = 930 USDC at 2 USD
    # a is not in e-mode: 1,600 USDC at the oracle's 1 USD fill its 80% of 2,000 USD exactly
    m.borrow("user", np.array([a, b]), "USDC", np.array([1_600.0, 930.0]))
    assert m.account_usd()[1].tolist() == [1_600.0, 1_860.0]


def test_the_v33_close_factor_of_an_e_mode_row_among_others():
    m, _ = market(rule="aave-v3.3")
    open_account(m, {"ETH": 1.0})
    b = open_account(m, {"DAI": 10_000.0})
    m.set_emode([b], 1)
    m.borrow("user", np.array([b]), "USDC", np.array([9_000.0]))  # 93% of 10,000 = 9,300 of room
    # HF = 10,000 · 0.95 / 9,000 = 1.056 > 0.95, both sides >= 2,000 USD: at most 50% of 9,000 USD of debt
    assert m.max_debt_to_cover(b, "USDC") == 4_500.0
    assert m.max_debt_to_cover(b, "USDC", "DAI") == 4_500.0


def test_new_accounts_keep_the_flags_and_categories_of_the_old():
    m, _ = market()
    a = open_account(m, {"ETH": 1.0, "USDC": 100.0})
    m.set_collateral([a], "USDC", False)
    b = open_account(m, {"DAI": 100.0})
    m.set_emode([b], 1)
    m.add_accounts(2)
    assert m.collateral_enabled[a].tolist() == [True, True, False, True, True]
    assert m.collateral_enabled[b:].all()
    assert m.user_emode.tolist() == [0, 1, 0, 0] and m.user_emode.dtype.kind == "i"
    assert np.array(["none", "Stablecoins"])[m.user_emode].tolist() == ["none", "Stablecoins", "none", "none"]


# --- caps and the ceiling at their tolerance, bit for bit ----------------------------------------------------------
def test_caps_and_the_ceiling_admit_exactly_their_tolerance():
    # each limit admits up to limit · (1 + 1e-12) (the ceiling: + 1e-9 USD more); a total equal to that bound passes
    m, _ = market(ISO={"supply_cap": 1.0, "debt_ceiling": 1_000.0}, BTC={"borrow_cap": 1.0})
    cap = 1.0 * (1 + 1e-12)
    assert 0.0 + cap == cap  # nothing supplied or owed yet: the totals are the new amounts themselves
    a = open_account(m, {"ISO": cap})
    assert m.collateral()[a, 4] == cap
    b = open_account(m, {"ETH": 100.0}, {"BTC": cap})
    assert m.debt()[b, 1] == cap
    c = place(m, {"ISO": 1_000.0}, {})  # a genesis book (the supply cap is full): 10,000 USD of ISO at 50% LTV
    m.set_collateral([c], "ISO", True)
    ceiling = 1_000.0 * (1 + 1e-12) + 1e-9
    m.borrow("user", np.array([c]), "USDC", np.array([ceiling]))
    assert m.iso_debt[4] == ceiling


def test_repaid_isolated_debt_leaves_the_ceilings_total():
    m, _ = market(ISO={"debt_ceiling": 1.0})  # a ceiling of one dollar
    a = open_account(m, {"ISO": 1.0})  # 10 USD at 50%
    m.set_collateral([a], "ISO", True)
    m.borrow("user", np.array([a]), "USDC", np.array([0.5]))
    m.repay("user", np.array([a]), "USDC", np.array([0.5]))
    assert m.iso_debt[4] == 0.0
    m.borrow("user", np.array([a]), "USDC", np.array([0.75]))  # 0.75 <= 1: the repaid 0.5 no longer counts
    m, _ = market()
    rows = [open_account(m, {"ISO": 100.0}), open_account(m, {"ISO": 100.0})]  # 1,000 USD each at 50%
    m.set_collateral(rows, "ISO", True)
    m.borrow("user", np.array(rows), "USDC", np.array([100.0, 200.0]))
    m.repay("user", np.array(rows), "USDC", np.array([40.0, 60.0]))
    assert m.iso_debt.tolist() == [0.0, 0.0, 0.0, 0.0, 200.0]  # 300 - 40 - 60


def test_a_whole_controller_close_clears_the_debt_and_takes_a_balance_short_by_rounding():
    m, _ = market()
    # 1,023.999999 USDC: with the grown index the debt crosses 1,024 = 2^10 (the next binade of floats), and
    # scaled debt x index / index is then not the scaled debt again
    a = open_account(m, {"ETH": 1.0}, {"USDC": 1_023.999999})
    m.accrue(YEAR)
    ds, bi = m.debt_scaled[a, 2], m.borrow_index[2]
    assert ds - (ds * bi) / bi > 0  # a whole repayment computed as scaled debt - repaid / index would leave dust
    owed = ds * bi
    m.env.ledger.mint("USDC", "ctl", owed * (1 - 1e-12), "genesis")  # short by the tolerance exactly
    m.controller_close(a, 1.0, "ctl")
    assert m.debt()[a].tolist() == [0.0] * 5
    assert m.env.ledger.balance("ctl", "USDC") == 0.0
    # seized: the repaid USD over 2,000 USD of ETH, no penalty
    assert m.env.ledger.balance("ctl", "ETH") == pytest.approx(owed / 2_000.0, rel=1e-12)


# --- liquidations against grown indices, and the dust rules at their bounds -------------------------------------
def accrued(rule: str, precision: str = "float") -> LendingMarket:
    """Lenders supply 40,000 USDC and DAI; a whale borrows half of each against 40 ETH; then a year passes: USDC's
    borrow index and DAI's liquidity index grow, ETH's and BTC's stay 1 (nobody borrows them)."""
    m = build(rule=rule, precision=precision)
    led = m.env.ledger
    for s in ("USDC", "DAI"):
        led.mint(s, "lenders", 40_000.0, "genesis")
        m.supply_liquidity("lenders", s, 40_000.0)
        led.mint(s, LIQ, 100_000.0, "genesis")
    open_account(m, {"ETH": 40.0}, {"USDC": 20_000.0, "DAI": 20_000.0})  # u = 0.5 in both
    m.accrue(YEAR)
    return m


def test_v33_leftovers_and_write_offs_count_tokens_with_the_grown_indices():
    m = accrued("aave-v3.3")
    rb = 0.04 * 0.5 / 0.9  # kinked rate at u = 0.5; linear index over a year
    assert m.borrow_index[2] == pytest.approx(1 + rb, rel=1e-12)  # 1.0222: tokens = scaled x 1.0222
    assert m.liq_index[3] == pytest.approx(1 + rb * 0.5 * 0.85, rel=1e-12)  # 1.0094 (15% reserve factor)
    # 10,500 DAI against 10,000 USDC: HF = 10,500 · 0.8 / 10,000 = 0.84 <= 0.95, the close factor is 100%
    z = place(m, {"DAI": 10_500.0}, {"USDC": 10_000.0})
    # repaying 8,900 USDC seizes 8,900 · 1.05 = 9,345 DAI: 1,100 USD of debt and 1,155 USD of DAI are left, both
    # >= 1,000 (a scaled balance read as tokens without the index would leave under 1,000: MustNotLeaveDust)
    m.liquidate(z, "DAI", "USDC", 8_900.0, LIQ)
    assert m.debt()[z, 2] == pytest.approx(1_100.0, rel=1e-12)
    assert m.collateral()[z, 3] == pytest.approx(1_155.0, rel=1e-12)
    # 1 ETH against 1,950 USDC: all the ETH goes for 2,000 / 1.05 = 1,904.76 USDC; 45.24 USDC are left
    left = 1_950.0 - 2_000.0 / 1.05
    x = place(m, {"ETH": 1.0, "BTC": 1e-12}, {"USDC": 1_950.0})  # 1e-12 BTC (index 1): no collateral
    m.liquidate(x, "ETH", "USDC", 1_950.0, LIQ)
    assert m.debt()[x].tolist() == [0.0] * 5 and m.deficit[2] == pytest.approx(left, rel=1e-12)  # written off
    y = place(m, {"ETH": 1.0, "DAI": 1.01e-12}, {"USDC": 1_950.0})  # 1.01e-12 DAI > 1e-12: collateral left
    m.liquidate(y, "ETH", "USDC", 1_950.0, LIQ)
    assert m.debt()[y, 2] == pytest.approx(left, rel=1e-12) and m.deficit[2] == pytest.approx(left, rel=1e-12)
    assert m.write_off(y) == 0.0 and m.debt()[y, 2] == pytest.approx(left, rel=1e-12)


def test_v33_dust_rule_ignores_a_side_left_with_1e_9_usd_exactly():
    # DAI without a bonus (so no protocol fee either) against USDC, both 1 USD: seizure = repayment, in floats exactly
    m, _ = market(rule="aave-v3.3", DAI={"liquidation_bonus": 0.0})
    assert 2e-9 - 1e-9 == 1e-9 and 2.25e-9 - 1e-9 > 1e-9
    a = place(m, {"DAI": 2.25e-9}, {"USDC": 2e-9})  # HF = 2.25 · 0.8 / 2 = 0.9
    m.liquidate(a, "DAI", "USDC", 1e-9, LIQ)  # 1e-9 USD of debt left: not a partial liquidation of both sides
    assert m.debt()[a, 2] == 1e-9 and m.collateral()[a, 3] == pytest.approx(1.25e-9, rel=1e-12)
    b = place(m, {"DAI": 2e-9}, {"USDC": 3e-9})  # HF = 2 · 0.8 / 3 = 0.53
    m.liquidate(b, "DAI", "USDC", 1e-9, LIQ)  # 1e-9 USD of DAI left
    assert m.collateral()[b, 3] == 1e-9 and m.debt()[b, 2] == pytest.approx(2e-9, rel=1e-12)


def test_aave_precision_liquidation_rounds_what_is_left_with_the_grown_indices():
    m = accrued("aave-v3.0", "aave-v3")
    assert m.liq_index[3] > 1.009 and m.borrow_index[2] > 1.02  # the contract's indices after a year at u = 0.5
    a = place(m, {"DAI": 1_000.0}, {"USDC": 960.0})  # HF = 800 / 960 = 0.83: close factor 100%
    m.liquidate(a, "DAI", "USDC", 990.0 / 1.05, LIQ)  # seizes 990 DAI (bonus 5%, fee inside)
    assert m.collateral()[a, 3] == pytest.approx(10.0, abs=1e-12)  # 1,000 - 990, whole wei
    assert m.debt()[a, 2] == pytest.approx(17.142857, abs=1e-12)  # 960 - 942.857142857, to 6 decimals


def test_aave_precision_liquidation_empties_a_balance_within_its_tolerance():
    # two 18-decimal stablecoins at 1 USD, no bonus and no fee: the seizure is the repayment, bit for bit
    da = AssetParams("DAI", 0.75, 0.80, 0.0, protocol_fee=0.0)
    gho = AssetParams("GHO", 0.75, 0.80, 0.0, protocol_fee=0.0)
    m = build(assets=(da, gho), emodes=(), precision="aave-v3")
    m.env.ledger.mint("GHO", "lenders", 10.0, "genesis")
    m.supply_liquidity("lenders", "GHO", 10.0)
    m.env.ledger.mint("GHO", LIQ, 10.0, "genesis")
    a = place(m, {"DAI": 1.0}, {"GHO": 1.0})  # HF 0.8: close factor 100%
    r = 1.0 * (1 - 1e-12)  # repayment and seizure are 1 - 1e-12 of the balances: the tolerance's bound exactly
    m.liquidate(a, "DAI", "GHO", r, LIQ)
    assert m.collateral()[a].tolist() == [0.0, 0.0] and m.debt()[a].tolist() == [0.0, 0.0]  # not 1e6 wei left
    # with the bonus and fee: 1,000 DAI against 1,000 USDC; the seizure (fee inside) is 1,000 · (1 - 5e-13) DAI
    m, _ = market(precision="aave-v3")
    b = place(m, {"DAI": 1_000.0}, {"USDC": 1_000.0})
    m.liquidate(b, "DAI", "USDC", 1_000.0 * (1 - 5e-13) / 1.05, LIQ)
    assert m.collateral()[b, 3] == 0.0  # the 5e-10 DAI (5e8 wei) within tolerance go too
    assert m.debt()[b, 2] == pytest.approx(1_000.0 - 1_000.0 / 1.05, abs=1e-6)  # 47.619048 USDC


def test_an_empty_repayment_batch_changes_nothing():
    m, _ = market(ISO={"debt_ceiling": 0.0})  # no isolated asset
    a = open_account(m, {"ETH": 1.0}, {"USDC": 1_000.0})
    assert m.health()[a] == pytest.approx(1.65, rel=1e-12)  # 2,000 · 0.825 / 1,000, read (and cached)
    assert m.repay("user", [], "USDC", []).tolist() == []  # a batch of no accounts (a plain empty list)
    assert m.health()[a] == pytest.approx(1.65, rel=1e-12)
    m.env.ledger.mint("USDC", "user", 100.0, "genesis")
    m.repay("user", [a], "USDC", [100.0])
    m.repay("user", [], "USDC", [])
    assert m.health()[a] == pytest.approx(2_000 * 0.825 / 900, rel=1e-12)  # 1.833


def test_the_best_pair_and_cap_count_tokens_with_the_grown_indices_at_usd_prices():
    m = build()
    led = m.env.ledger
    for s, n in (("DAI", 40_000.0), ("ETH", 20.0)):
        led.mint(s, "lenders", n, "genesis")
        m.supply_liquidity("lenders", s, n)
    open_account(m, {"BTC": 2.0}, {"DAI": 20_000.0, "ETH": 10.0})  # u = 0.5 in DAI and ETH
    m.accrue(YEAR)
    rb = 0.04 * 0.5 / 0.9
    assert m.liq_index[3] == pytest.approx(1 + rb * 0.5 * 0.85, rel=1e-12)  # DAI supplied grows: 1.0094
    assert m.borrow_index[0] == pytest.approx(1 + rb, rel=1e-12)  # ETH owed grows: 1.0222
    z = place(m, {"DAI": 2_000.0}, {"ETH": 1.0})  # 2,000 USD each side: HF = 0.8, close factor 100%
    ci, dj, best, cap = m.liquidation_pairs_and_caps(np.array([z]))
    assert (ci.tolist(), dj.tolist()) == ([3], [0])  # seize DAI, repay ETH
    # the cap is the whole debt, 1 ETH = 2,000 USD; 2,000 · 1.05 > 2,000 USD of DAI: the collateral binds.
    # profit = collateral - fee - repayment = C · (1 - 1/1.05) · (1 - 10% fee) with C = 2,000 USD
    assert best[0] == pytest.approx(2_000.0 * (1 - 1 / 1.05) * 0.9, rel=1e-12)  # 85.71 USD
    assert cap == pytest.approx([2_000.0, 0.0, 0.0, 0.0, 0.0], rel=1e-12)


# --- the value cache's refresh paths and the per-reserve float accrual --------------------------------------------
def test_health_of_a_tiny_debt_an_empty_row_and_a_debt_free_row_in_the_full_and_the_one_row_refresh():
    m, _ = market()
    a = open_account(m, {"ETH": 1.0}, {"USDC": 0.5})  # 0.5 USD of debt: HF = 2,000 · 0.825 / 0.5 = 3,300
    e = int(m.add_accounts(1)[0])  # nothing supplied, nothing borrowed
    f = open_account(m, {"ETH": 1.0})  # collateral, no debt
    hf = m.health()  # the whole book refreshed (accounts were added)
    assert hf[a] == pytest.approx(3_300.0, rel=1e-12)
    assert hf[e] == np.inf and hf[f] == np.inf  # no debt: inf (Aave's type(uint256).max), not 0/0
    m.repay("user", np.array([a]), "USDC", np.array([0.25]))  # one row changes: 0.25 USD left
    assert m.health()[a] == pytest.approx(6_600.0, rel=1e-12)  # 1,650 / 0.25
    m.repay("user", np.array([e]), "USDC", np.array([0.0]))  # the empty row alone
    assert m.health()[e] == np.inf
    m.repay("user", np.array([a]), "USDC", np.array([0.25]))  # the debt repaid whole, the collateral stays
    assert m.health()[a] == np.inf and m.account_usd()[0][a] == pytest.approx(2_000.0)


def test_rows_changed_one_by_one_or_together_are_all_refreshed():
    m, _ = market()
    a = open_account(m, {"ETH": 1.0}, {"USDC": 1_000.0})  # 2,000 · 0.825 = 1,650 USD weighted
    b = open_account(m, {"ETH": 2.0}, {"USDC": 1_000.0})  # 3,300
    c = open_account(m, {"ETH": 1.0}, {"USDC": 1_000.0})  # 1,650
    assert m.health()[b] == pytest.approx(3.3)
    m.repay("user", np.array([c]), "USDC", np.array([750.0]))  # two changes of one row each, then one read
    m.repay("user", np.array([a]), "USDC", np.array([500.0]))
    hf = m.health()
    assert hf[a] == pytest.approx(3.3) and hf[b] == pytest.approx(3.3) and hf[c] == pytest.approx(6.6)
    m.repay("user", np.array([c, a]), "USDC", np.array([125.0, 250.0]))  # two rows apart, in one change
    hf = m.health()
    assert hf[a] == pytest.approx(6.6) and hf[b] == pytest.approx(3.3) and hf[c] == pytest.approx(13.2)
    m.repay("user", np.array([b, c]), "USDC", np.array([500.0, 25.0]))  # two neighbours
    hf = m.health()
    assert hf[a] == pytest.approx(6.6) and hf[b] == pytest.approx(6.6) and hf[c] == pytest.approx(16.5)


def _kink(u: float, base: float, s1: float, s2: float, opt: float) -> float:
    """DefaultReserveInterestRateStrategy: base + slope1 · u / optimal below the kink, + slope2 · excess above."""
    return base + s1 * u / opt if u <= opt else base + s1 + s2 * (u - opt) / (1 - opt)


def test_float_accrual_per_reserve_above_and_below_the_kink_unsupplied_and_over_utilised():
    m, _ = market(DAI={"base_rate": 0.01})
    usdc, dai, btc, iso = (m.idx[s] for s in ("USDC", "DAI", "BTC", "ISO"))
    # USDC: 1e8 from lenders + 2.5e7 of collateral; 1.1875e8 borrowed: utilisation 0.95, above the kink
    open_account(m, {"ETH": 70_000.0, "USDC": 2.5e7}, {"USDC": 1.1875e8})
    open_account(m, {"BTC": 2_000.0}, {"DAI": 4.5e7})  # DAI: 4.5e7 of 1e8, below the kink
    open_account(m, {"ETH": 250_000.0}, {"BTC": 6_000.0})  # BTC: 6,000 of 1e4 + 2,000
    m.lender_scaled[btc] = 0.0  # the lenders' claim gone: 6,000 owed on 2,000 supplied, utilisation clipped to 1
    m.accrue(YEAR)
    # one year, by hand: USDC 0.04 + 0.60 · (0.95 - 0.9) / 0.1 = 0.34 a year, suppliers 0.34 · 0.95 · 0.85;
    # DAI 0.01 + 0.04 · 0.45 / 0.9 = 0.03, suppliers 0.03 · 0.45 · 0.85; BTC at the clip 0.04 + 0.60 = 0.64, 0.64 · 0.85
    assert m.borrow_index[[usdc, dai, btc]] == pytest.approx([1.34, 1.03, 1.64], rel=1e-12)
    assert m.liq_index[[usdc, dai, btc]] == pytest.approx([1.27455, 1.011475, 1.544], rel=1e-12)
    assert m.borrow_index[iso] == 1.0 and m.liq_index[iso] == 1.0  # nothing supplied: utilisation 0, base rate 0
    assert m.borrow_index[m.idx["ETH"]] == 1.0 and m.liq_index[m.idx["ETH"]] == 1.0  # supplied, nothing borrowed
    # half a year more, from the indices that moved: utilisation = debt · borrow index / (supply · liquidity index)
    m.accrue(YEAR / 2)
    for k, supply, debt, bi, li in ((usdc, 1.25e8, 1.1875e8, 1.34, 1.27455), (dai, 1e8, 4.5e7, 1.03, 1.011475)):
        u = debt * bi / (supply * li)
        p = m.params[k]
        rb = _kink(u, p.base_rate, p.slope1, p.slope2, p.optimal_utilisation)
        assert m.borrow_index[k] == pytest.approx(bi * (1 + rb / 2), rel=1e-12)  # linear per step (MathUtils)
        assert m.liq_index[k] == pytest.approx(li * (1 + rb * u * (1 - p.reserve_factor) / 2), rel=1e-12)
    assert m.borrow_index[btc] == pytest.approx(1.64 * 1.32, rel=1e-12)  # still clipped: 0.64 / 2


def test_float_accrual_of_a_reserve_with_less_than_one_token_supplied():
    m, _ = market()
    iso = m.idx["ISO"]
    m.env.ledger.mint("ISO", "lenders", 0.5, "genesis")
    m.supply_liquidity("lenders", "ISO", 0.5)  # half a token supplied, a quarter borrowed: utilisation 0.5
    open_account(m, {"ETH": 1.0}, {"ISO": 0.25})
    m.accrue(YEAR)
    rb = 0.04 * 0.5 / 0.9  # below the kink: slope1 · u / optimal
    assert m.borrow_index[iso] == pytest.approx(1 + rb, rel=1e-12)
    assert m.liq_index[iso] == pytest.approx(1 + rb * 0.5 * (1 - 0.15), rel=1e-12)  # reserve factor 15%


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.1, 1.5, float("nan")])
def test_asset_params_refuses_a_kink_outside_zero_one(bad):
    """The rate curve divides by the optimal utilisation and by 1 minus it: 0, 1 and anything outside (0, 1) (NaN
    too) is refused with the field, the asset and the allowed range named."""
    with pytest.raises(ValueError) as exc:
        AssetParams("ETH", 0.8, 0.85, 0.05, optimal_utilisation=bad)
    msg = str(exc.value)
    assert msg.startswith("ETH: optimal_utilisation must be in (0, 1)") and msg.endswith(f"got {bad!r}")


@pytest.mark.parametrize("ok", [1e-9, 0.5, 1 - 1e-9])
def test_asset_params_takes_a_kink_inside_zero_one(ok):
    assert AssetParams("ETH", 0.8, 0.85, 0.05, optimal_utilisation=ok).optimal_utilisation == ok


@pytest.mark.parametrize(("precision", "cap"), [("aave-v3", 865.130569), ("float", 1_730.261137 / 2)])
def test_the_v30_close_factor_cap_is_rounded_half_up_to_a_base_unit_as_percentmul_does(precision, cap):
    """Aave v3.0.2 `_calculateDebt`: userVariableDebt.percentMul(5000) = (865,130,568.5 + 0.5) floored: 865,130,569
    units of 1e-6 USDC for a debt of 1,730,261,137 units; the float model keeps the exact half. The Aave bytecode
    seized 444,967,742,266,523,437 wei for it (tests/chain/test_differential_lending.py's example)."""
    m, o = market(precision=precision)
    a = place(m, {"ETH": 1.0}, {"USDC": 1_730.261137})
    o["USDC"].price = 0.984375  # HF = 2,000 · 0.825 / (1,730.261137 · 0.984375) = 0.96875 > 0.95: half
    assert 0.95 < m.health()[a] < 1.0
    assert m.max_debt_to_cover(a, "USDC") == cap
    assert m.preview(a, "ETH", "USDC", 1e9).debt_to_repay == cap
    m_full, o_full = market(precision=precision)  # HF <= 0.95: the whole debt, already whole units
    b = place(m_full, {"ETH": 1.0}, {"USDC": 1_730.261137})
    o_full["USDC"].price = 1.1
    assert m_full.health()[b] <= 0.95 and m_full.max_debt_to_cover(b, "USDC") == 1_730.261137


# --- kept totals and the shortfall's shortcut (issue 14: whole-book work only when its inputs changed) -------------
def test_a_repayment_or_a_borrow_recomputes_the_debt_total_and_keeps_the_collateral_total():
    m, _ = market()
    a = open_account(m, {"ETH": 1.0}, {"USDC": 1_000.0})  # indices 1: scaled units are tokens
    coll = m.coll_scaled_total
    assert coll.tolist() == [1.0, 0, 0, 0, 0] and m.debt_scaled_total.tolist() == [0, 0, 1_000.0, 0, 0]
    m.repay("user", np.array([a]), "USDC", np.array([400.0]))
    assert m.coll_scaled_total is coll  # the repayment left collateral alone: its total is not recomputed
    assert m.debt_scaled_total.tolist() == [0, 0, 600.0, 0, 0]
    m.borrow("user", np.array([a]), "DAI", np.array([50.0]))
    assert m.coll_scaled_total is coll
    assert m.debt_scaled_total.tolist() == [0, 0, 600.0, 50.0, 0]


def test_a_supply_or_a_settlement_out_recomputes_the_collateral_total_and_keeps_the_debt_total():
    m, _ = market()
    a = open_account(m, {"ETH": 1.0, "USDC": 500.0}, {"DAI": 100.0})
    debt = m.debt_scaled_total
    assert m.coll_scaled_total.tolist() == [1.0, 0, 500.0, 0, 0]
    m.env.ledger.mint("BTC", "user", 0.5, "genesis")
    m.supply("user", np.array([a]), "BTC", np.array([0.5]))
    assert m.debt_scaled_total is debt  # the supply left debt alone
    assert m.coll_scaled_total.tolist() == [1.0, 0.5, 500.0, 0, 0]
    assert m.settle_out(a, 200.0, "out", "USDC") == 200.0  # 200 USDC of collateral out, within the equity
    assert m.debt_scaled_total is debt
    assert m.coll_scaled_total.tolist() == [1.0, 0.5, 300.0, 0, 0]


def test_a_write_off_recomputes_the_debt_total_and_keeps_the_collateral_total():
    m, _ = market()
    a = place(m, {"ETH": 1.0}, {"USDC": 500.0})
    b = place(m, {}, {"DAI": 70.0})  # debt with no collateral: written off whole
    coll = m.coll_scaled_total
    assert m.debt_scaled_total.tolist() == [0, 0, 500.0, 70.0, 0]
    assert m.write_off(b) == 70.0  # 70 DAI at 1 USD
    assert m.coll_scaled_total is coll
    assert m.debt_scaled_total.tolist() == [0, 0, 500.0, 0, 0]
    assert m.collateral()[a, 0] == 1.0


def test_interest_keeps_both_scaled_totals():
    """Interest changes the indices, not the scaled balances: both totals stay as they were (not recomputed)."""
    m, _ = market()
    open_account(m, {"ETH": 1.0}, {"USDC": 1_000.0})
    coll, debt = m.coll_scaled_total, m.debt_scaled_total
    m.accrue(3_600.0)
    assert m.borrow_index[2] > 1.0
    assert m.coll_scaled_total is coll and m.debt_scaled_total is debt


def test_a_kept_total_lasts_one_change_only():
    """A repayment keeps the collateral total; the liquidation after it changes both, so both are recomputed."""
    m, o = market()  # v3.0 rule
    a = open_account(m, {"ETH": 1.0}, {"USDC": 1_000.0})
    m.repay("user", np.array([a]), "USDC", np.array([100.0]))
    assert m.debt_scaled_total[2] == 900.0 and m.coll_scaled_total[0] == 1.0
    o["ETH"].price = 1_000.0  # HF = 1,000 · 0.825 / 900 = 0.917 <= 0.95: the whole debt may be repaid
    m.liquidate(a, "ETH", "USDC", 900.0, LIQ)  # 900 USDC buys 900 / 1,000 · 1.05 = 0.945 ETH (fee included)
    assert m.coll_scaled_total[0] == pytest.approx(1.0 - 0.945, rel=1e-12)
    assert m.debt_scaled_total[2] == pytest.approx(0.0, abs=1e-9)


def test_bad_debt_is_zero_when_no_account_owes_more_than_it_holds_and_the_shortfall_when_every_one_does():
    m, o = market()
    a = open_account(m, {"ETH": 1.0}, {"USDC": 1_000.0})  # 2,000 USD against 1,000
    m.add_accounts(1)  # an empty account: 0 against 0
    assert m.metrics()["bad_debt_usd"] == 0.0
    o["ETH"].price = 600.0  # 600 USD of collateral against 1,000: short 400
    assert m.metrics()["bad_debt_usd"] == 400.0
    m.add_accounts(2)  # more rows: the shortfall is summed over all of them
    assert m.metrics()["bad_debt_usd"] == 400.0
    m2, o2 = market()
    open_account(m2, {"ETH": 1.0}, {"USDC": 1_000.0})
    o2["ETH"].price = 900.0  # the only account is short 100
    assert m2.metrics()["bad_debt_usd"] == 100.0
    assert a == 0


@pytest.mark.parametrize("asset", ["ETH", "USDC"])
def test_a_nan_price_shows_as_a_nan_bad_debt_not_as_zero(asset):
    """A NaN collateral price (NaN collateral USD) or debt price (NaN debt USD): the shortfall is NaN, as the sum of
    max(debt - collateral, 0) over the accounts is; no account compares as short, which must not read as 0."""
    m, o = market()
    open_account(m, {"ETH": 1.0}, {"USDC": 1_000.0})
    o[asset].price = float("nan")
    assert np.isnan(m.metrics()["bad_debt_usd"])


# --- values after interest and price moves on assets no account holds (issue 14: only the side that moved) --------
def expected_values(m: LendingMarket) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(collateral USD, debt USD, HF) per account by hand: Σ scaled · index · price, Σ · LT for the HF's numerator."""
    p = np.array([m.oracles[k].price for k in range(len(m.assets))])
    coll = [sum(c * li * q for c, li, q in zip(row, m.liq_index, p)) for row in m.coll_scaled.tolist()]
    weighted = [sum(c * li * q * t for c, li, q, t in zip(row, m.liq_index, p, m.lt)) for row in m.coll_scaled.tolist()]
    debt = [sum(d * bi * q for d, bi, q in zip(row, m.borrow_index, p)) for row in m.debt_scaled.tolist()]
    hf = [w / d if d > 0 else np.inf for w, d in zip(weighted, debt)]
    return np.array(coll), np.array(debt), np.array(hf)


def assert_values(m: LendingMarket) -> None:
    coll, debt, hf = expected_values(m)
    got_coll, got_debt = m.account_usd()
    np.testing.assert_allclose(got_coll, coll, rtol=1e-14)
    np.testing.assert_allclose(got_debt, debt, rtol=1e-14)
    np.testing.assert_allclose(m.health(), hf, rtol=1e-14)


def test_interest_moves_the_debt_and_the_health_factors_of_every_account_while_collateral_stays():
    m, _ = market()
    a = open_account(m, {"ETH": 1.0}, {"USDC": 1_000.0})
    b = open_account(m, {"BTC": 0.1}, {"USDC": 2_000.0})
    assert_values(m)
    m.accrue(3_600.0)  # USDC's borrow and liquidity indices grow; nobody holds USDC as collateral
    assert m.borrow_index[2] > 1.0 and m.liq_index[2] > 1.0
    assert_values(m)
    assert m.health()[a] == pytest.approx(2_000 * 0.825 / (1_000 * m.borrow_index[2]), rel=1e-15)
    m.repay("user", np.array([b]), "USDC", np.array([500.0]))  # a pending row, then interest again
    m.accrue(3_600.0)
    assert_values(m)
    assert m.account_usd()[1][b] == m.debt_scaled[b, 2] * m.borrow_index[2]  # USDC at 1 USD


def test_a_reserve_held_as_collateral_after_interest_began_counts_its_interest():
    m, _ = market()
    open_account(m, {"ETH": 1.0}, {"USDC": 1_000.0})
    m.accrue(3_600.0)
    assert_values(m)  # the values are read: USDC collateral is nobody's yet
    c = open_account(m, {"USDC": 500.0})  # now it is someone's
    assert_values(m)
    m.accrue(3_600.0)  # its liquidity index grows: c's collateral with it
    assert_values(m)
    assert m.account_usd()[0][c] == m.coll_scaled[c, 2] * m.liq_index[2]  # USDC at 1 USD
    assert m.account_usd()[0][c] > 500.0


def test_a_price_move_on_an_asset_nobody_holds_or_owes_moves_no_value_and_one_they_hold_moves_theirs():
    m, o = market()
    open_account(m, {"ETH": 1.0}, {"USDC": 1_000.0})
    open_account(m, {"BTC": 0.1, "DAI": 300.0}, {"USDC": 500.0})
    assert_values(m)
    o["ISO"].price = 12.0  # nobody holds or owes ISO
    assert_values(m)
    o["DAI"].price = 0.9  # the second account's DAI collateral
    assert_values(m)
    o["USDC"].price = 1.01  # everyone's debt
    assert_values(m)


@pytest.mark.filterwarnings("ignore:invalid value encountered in matmul:RuntimeWarning")
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 0.0, -1.0])
def test_a_price_of_an_asset_nobody_holds_that_is_not_finite_and_positive_is_recomputed(bad):
    """0 · NaN and 0 · inf are NaN, and a negative price flips a zero's sign: the products are not the same."""
    m, o = market()
    open_account(m, {"ETH": 1.0}, {"USDC": 1_000.0})
    assert_values(m)
    o["ISO"].price = bad
    coll, debt = m.account_usd()
    expected = np.nan if bad != bad or bad == np.inf else 2_000.0  # 0 ISO · price added to 2,000 USD of ETH
    np.testing.assert_equal(coll[0], expected)
    np.testing.assert_equal(debt[0], np.nan if bad != bad or bad == np.inf else 1_000.0)
    o["ISO"].price = 10.0
    assert_values(m)


def test_same_products_needs_every_moved_asset_empty_and_both_prices_finite_and_positive():
    m, _ = market()
    a = open_account(m, {"ETH": 1.0}, {"USDC": 1_000.0})
    v = np.array([2_000.0, 60_000.0, 1.0, 1.0, 10.0])
    assert m._same_products("coll", (v, v.copy()))  # nothing moved
    moved = v.copy()
    moved[4] = 11.0  # ISO: nobody holds it
    assert m._same_products("coll", (moved, v)) and m._same_products("coll", (v, v), (moved, v))
    assert m._same_products("debt", (moved, v))
    moved[2] = 1.1  # USDC: owed, not held
    assert m._same_products("coll", (moved, v)) and not m._same_products("debt", (moved, v))
    cheap = v.copy()
    cheap[4] = 0.5  # ISO below 1 USD: still finite and positive
    assert m._same_products("coll", (cheap, v)) and m._same_products("coll", (v, cheap))
    eth = v.copy()
    eth[0] = 2_100.0  # ETH: held, not owed
    assert not m._same_products("coll", (eth, v)) and not m._same_products("coll", (v, v), (eth, v))
    assert m._same_products("debt", (eth, v))  # the debt side reads the debt total (0 for ETH), not collateral's
    for bad in (np.nan, np.inf, 0.0, -11.0):
        x = v.copy()
        x[4] = bad
        assert not m._same_products("coll", (x, v)) and not m._same_products("coll", (v, x))
    plus, minus = v.copy(), v.copy()
    plus[4], minus[4] = 0.0, -0.0  # equal as numbers, not as bits: a moved entry, and not positive
    assert not m._same_products("coll", (minus, plus))
    # balances that cancel (written directly): their total is 0, yet the asset is held
    m.coll_scaled[a, 4] = 1.0
    b = int(m.add_accounts(1)[0])
    m.coll_scaled[b, 4] = -1.0
    m._touch()
    assert m.coll_scaled_total[4] == 0.0 and not m._same_products("coll", (moved, v))


def test_an_emptied_asset_is_checked_again_after_each_change():
    m, _ = market()
    a = open_account(m, {"ETH": 1.0}, {"USDC": 1_000.0})
    v = np.array([2_000.0, 60_000.0, 1.0, 1.0, 10.0])
    moved = v.copy()
    moved[4] = 11.0
    assert m._same_products("coll", (moved, v))  # ISO is nobody's: remembered until collateral changes
    m.coll_scaled[a, 4] = 1.0  # a direct write with cancelling balances, then the change is announced
    b = int(m.add_accounts(1)[0])
    m.coll_scaled[b, 4] = -1.0
    m._touch()
    assert not m._same_products("coll", (moved, v))
    m.coll_scaled[a, 4] = m.coll_scaled[b, 4] = 0.0
    m._touch_kept = "debt"  # the collateral changed: what was remembered of it is dropped
    m._touch()
    assert m._same_products("coll", (moved, v))
    m.debt_scaled[a, 4] = 1.0
    m.debt_scaled[b, 4] = -1.0
    m._touch_kept = "coll"  # the debt changed: collateral's emptiness is still known, debt's is checked again
    m._touch()
    assert m._same_products("coll", (moved, v)) and not m._same_products("debt", (moved, v))


def test_interest_at_zero_utilisation_leaves_every_value_as_it_was():
    """Nobody borrows: every rate is 0, the indices stay 1, and the values read after the interest step are the ones
    before it (the cache takes the interest as a change of no row and no price)."""
    m, _ = market()
    a = open_account(m, {"ETH": 1.0, "USDC": 100.0})
    assert m.account_usd()[0][a] == 2_100.0 and m.health()[a] == np.inf
    m.accrue(3_600.0)
    assert m.liq_index.tolist() == [1.0] * 5 and m.borrow_index.tolist() == [1.0] * 5
    assert m.account_usd()[0][a] == 2_100.0 and m.account_usd()[1][a] == 0.0 and m.health()[a] == np.inf


def test_an_emode_row_touched_before_interest_keeps_its_category_terms():
    """A row in the stablecoin category (LT 0.95 on DAI, not the reserve's 0.80) repays, then interest moves USDC's
    indices only: its health factor is 1,000 · 0.95 / debt, read with the category's terms."""
    m, _ = market()
    a = open_account(m, {"DAI": 1_000.0})
    m.set_emode(np.array([a]), 1)
    m.borrow("user", np.array([a]), "USDC", np.array([900.0]))
    m.health()
    m.repay("user", np.array([a]), "USDC", np.array([100.0]))  # a pending row, then the interest step
    m.accrue(3_600.0)
    debt_usd = m.debt_scaled[a, 2] * m.borrow_index[2]  # USDC at 1 USD
    assert m.health()[a] == pytest.approx(1_000 * 0.95 / debt_usd, rel=1e-14)


def test_a_price_move_on_held_collateral_with_a_zero_threshold_moves_its_value():
    """DAI counts for nothing in the health factor (threshold 0) but is held: its weighted price stays 0 when its
    price moves, its plain price does not, so its holders' collateral value must move (2,000 USD of ETH + 500 DAI
    at 1.0, then at 0.9: 2,500 then 2,450 USD; the health factor reads only ETH: 2,000 x 0.825 / 1,000 = 1.65)."""
    m, o = market(DAI={"ltv": 0.0, "liquidation_threshold": 0.0})
    place(m, {"ETH": 1.0, "DAI": 500.0}, {"USDC": 1_000.0})  # a genesis book: no collateral flags, the plain path
    assert m._coll_on is None
    coll, _ = m.account_usd()
    assert coll[0] == pytest.approx(2_500.0, rel=1e-12)
    o["DAI"].price = 0.9
    coll, debt = m.account_usd()
    assert coll[0] == pytest.approx(2_450.0, rel=1e-12) and debt[0] == pytest.approx(1_000.0, rel=1e-12)
    assert m.health()[0] == pytest.approx(1.65, rel=1e-12)
    assert_values(m)


def test_a_book_with_collateral_flags_is_refreshed_whole_when_an_unheld_price_moves():
    """Collateral flags (DAI, threshold 0, is supplied but not enabled) leave the side-keeping refresh: a flagged
    row touched in the same refresh as a move of ISO (held by nobody) still leaves its DAI out (2,000 USD of ETH,
    then 900 USDC owed after repaying 100)."""
    m, o = market(DAI={"ltv": 0.0, "liquidation_threshold": 0.0})
    a = open_account(m, {"ETH": 1.0, "DAI": 500.0}, {"USDC": 1_000.0})
    assert m._coll_on is not None and not m._coll_on[a, m.idx["DAI"]]
    assert m.account_usd()[0][a] == pytest.approx(2_000.0, rel=1e-12)
    m.repay("user", np.array([a]), "USDC", np.array([100.0]))  # the flagged row is pending
    assert m._pending_rows is not None
    o["ISO"].price = 12.0  # nobody holds or owes ISO
    coll, debt = m.account_usd()
    assert coll[a] == pytest.approx(2_000.0, rel=1e-12) and debt[a] == pytest.approx(900.0, rel=1e-12)
    assert m.health()[a] == pytest.approx(2_000.0 * 0.825 / 900.0, rel=1e-12)
