"""The row-sparse refresh of a large lending book (protocols/lending_rows.py) and the health factor's debt-free rows
set from the last refresh's list: the same bits as the plain matrix-vector products and division, on crafted cases
and random histories (the gate is lowered so that small books take the fast paths)."""

from __future__ import annotations

import numpy as np
import pytest

from defistress.protocols import lending as lending_module
from defistress.protocols.base import Env, FixedPrice
from defistress.protocols.lending import AssetParams, LendingMarket
from defistress.protocols.lending_rows import RowSparsity

ASSETS = [
    AssetParams("ETH", 0.80, 0.825, 0.05),
    AssetParams("BTC", 0.70, 0.75, 0.065),
    AssetParams("USDC", 0.75, 0.78, 0.045),
]
PRICES = {"ETH": 2_000.0, "BTC": 60_000.0, "USDC": 1.0}


def bits(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a, dtype=float).tobytes()


# --- RowSparsity on its own ----------------------------------------------------------------------------------------
def test_products_of_one_asset_rows_by_hand():
    arr = np.array([[2.0, 0.0, 0.0], [0.0, 0.0, 3.0], [0.0, 0.0, 0.0], [0.0, 0.5, 0.0]])
    rs = RowSparsity()
    out = rs.products(arr, np.array([1.5, 4.0, 10.0]))
    assert out is not None
    assert out.tolist() == [3.0, 30.0, 0.0, 2.0]  # 2 x 1.5, 3 x 10, nothing, 0.5 x 4
    assert not np.signbit(out[2])  # a row without balances is +0.0, as a sum of +0.0 products is


def test_products_write_into_the_array_given():
    arr = np.array([[1.0, 0.0], [0.0, 2.0]])
    out = np.full(2, -1.0)
    res = RowSparsity().products(arr, np.array([3.0, 5.0]), out)
    assert res is out and out.tolist() == [3.0, 10.0]


def test_an_empty_side_gives_zeros():
    out = RowSparsity().products(np.zeros((3, 2)), np.array([2.0, 3.0]), np.full(3, 7.0))
    assert out is not None and out.tolist() == [0.0, 0.0, 0.0] and not np.signbit(out).any()


@pytest.mark.parametrize(
    "row",
    [
        [1.0, 1.0, 0.0],  # two assets: the kernel's order of the two products would matter
        [-0.0, 0.0, 0.0],  # -0.0: the sign of a zero sum depends on the order
        [0.0, -1e-300, 0.0],  # negative: an underflowing product's zero sign depends on fused multiply-adds
        [np.nan, 0.0, 0.0],
        [np.inf, 0.0, 0.0],
    ],
)
def test_rows_the_shortcut_cannot_promise_are_left_to_the_kernel(row):
    arr = np.array([[0.0, 0.0, 2.0], row])
    assert RowSparsity().products(arr, np.array([1.0, 2.0, 3.0])) is None


@pytest.mark.parametrize("vec", [[0.0, 1.0], [-1.0, 1.0], [np.inf, 1.0], [np.nan, 1.0], [1.0, -0.0]])
def test_prices_that_are_not_finite_and_positive_are_left_to_the_kernel(vec):
    # 0 x inf is NaN and 0 x -1 is -0.0: an unheld asset's price changes the kernel's sums
    assert RowSparsity().products(np.array([[1.0, 0.0], [0.0, 0.0]]), np.array(vec)) is None


def test_a_vector_of_another_length_is_left_to_the_kernel():
    assert RowSparsity().products(np.array([[1.0, 0.0]]), np.array([1.0, 2.0, 3.0])) is None


def test_changed_rows_are_checked_and_copied_and_an_unknown_change_checks_the_whole_array():
    arr = np.array([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 0.0]])
    vec = np.array([2.0, 3.0, 5.0])
    rs = RowSparsity()
    assert rs.products(arr, vec).tolist() == [2.0, 6.0, 0.0]
    arr[2, 2] = 4.0  # a new column becomes active through a known row
    rs.touched(np.array([2]))
    assert rs.products(arr, vec).tolist() == [2.0, 6.0, 20.0]
    arr[0, 0] = 0.0
    arr[0, 1] = 7.0  # the row moves to another asset
    rs.touched(np.array([0]))
    assert rs.products(arr, vec).tolist() == [21.0, 6.0, 20.0]
    arr[1, 0] = 1.0  # two assets on a known row: no longer row-sparse
    rs.touched(np.array([1]))
    assert rs.products(arr, vec) is None
    arr[1, 0] = 0.0
    rs.touched(np.array([1]))  # a known row cannot make an unclean array clean again ...
    assert rs.products(arr, vec) is None
    rs.touched(None)  # ... a check of the whole array can
    assert rs.products(arr, vec).tolist() == [21.0, 6.0, 20.0]


def test_a_change_to_a_row_not_reported_is_seen_once_the_array_grows():
    arr = np.array([[1.0, 0.0]])
    rs = RowSparsity()
    assert rs.products(arr, np.array([2.0, 3.0])).tolist() == [2.0]
    grown = np.array([[1.0, 0.0], [0.0, 4.0]])  # more rows, under the same object
    assert rs.products(grown, np.array([2.0, 3.0])).tolist() == [2.0, 12.0]


def test_too_many_pending_changes_fall_back_to_a_whole_check():
    arr = np.array([[1.0, 0.0], [0.0, 1.0]])
    rs = RowSparsity()
    rs.products(arr, np.array([1.0, 1.0]))
    for _ in range(200):
        rs.touched(np.array([0]))
    assert len(rs.pending) <= 64
    arr[1] = [2.0, 0.0]  # a row never reported: the whole check after the overflow sees it
    rs.touched(np.array([0]))
    assert rs.products(arr, np.array([3.0, 5.0])).tolist() == [3.0, 6.0]


def test_a_change_reported_before_the_first_products_is_harmless():
    rs = RowSparsity()
    rs.touched(np.array([1]))  # nothing known yet: the first products checks the whole array anyway
    assert rs.pending == [] and rs.clean is None
    assert rs.products(np.array([[2.0, 0.0], [0.0, 3.0]]), np.array([5.0, 7.0])).tolist() == [10.0, 21.0]


def test_at_most_max_pending_row_lists_are_kept_for_a_lazy_check():
    from defistress.protocols.lending_rows import _MAX_PENDING

    arr = np.array([[1.0, 0.0], [0.0, 1.0]])
    rs = RowSparsity()
    rs.products(arr, np.array([1.0, 1.0]))
    for _ in range(_MAX_PENDING):
        rs.touched(np.array([0]))
    assert len(rs.pending) == _MAX_PENDING and rs.clean  # as many as the limit: still a lazy check of those rows
    rs.touched(np.array([1]))  # one more: the lists are dropped and the whole array is checked next
    assert rs.pending == [] and rs.clean is None and rs.cols == {}


@pytest.mark.parametrize("n_assets", [1, 2, 3, 5])
def test_random_row_sparse_arrays_give_the_kernels_bits(n_assets):
    rng = np.random.default_rng(n_assets)
    n = 4_000
    rs = RowSparsity()
    arr = np.zeros((n, n_assets))
    for step in range(30):
        if step % 10 == 0:
            col = rng.integers(0, n_assets, n)
            arr = np.zeros((n, n_assets))
            arr[np.arange(n), col] = rng.lognormal(0, 4, n) * (rng.random(n) < 0.9)
            arr[:5, 0] = [5e-324, 1e-310, 1e300, 0.0, 1.0]  # subnormal, huge and empty balances
            arr[:5, 1:] = 0.0
            rs.touched(None)
        else:
            rows = rng.choice(n, 7, replace=False)
            arr[rows] = 0.0
            arr[rows, rng.integers(0, n_assets, 7)] = rng.lognormal(0, 4, 7) * (rng.random(7) < 0.8)
            rs.touched(rows)
        vec = rng.lognormal(0, 3, n_assets)
        vec[0] = [1e-300, 1.0, 1e3][step % 3]
        out = rs.products(arr, vec)
        assert out is not None
        assert bits(out) == bits(arr @ vec), step


# --- the market: fast paths against the plain formulas ---------------------------------------------------------------
@pytest.fixture
def fast(monkeypatch):
    monkeypatch.setattr(lending_module, "_ROWS_MIN_ACCOUNTS", 0)
    monkeypatch.setattr(lending_module, "_KEEP_MIN_ACCOUNTS", 0)


def plain_values(m: LendingMarket) -> dict[str, np.ndarray]:
    """The values by the matrix-vector products and the masked division (the plain path's formulas)."""
    p = m.prices()
    cp, dp = m.liq_index * p, m.borrow_index * p
    coll, debt, w = m.coll_scaled @ cp, m.debt_scaled @ dp, m.coll_scaled @ (cp * m.lt)
    with np.errstate(divide="ignore", invalid="ignore"):
        hf = np.where(debt > 0, w / debt, np.inf)
    return {"coll_usd": coll, "debt_usd": debt, "weighted": w, "hf": hf}


def check(m: LendingMarket) -> None:
    want = plain_values(m)
    got = m._account_values()
    for k, v in want.items():
        assert bits(got[k]) == bits(v), k
    got_m = m.metrics()
    assert got_m["accounts_unhealthy"] == int(np.count_nonzero(want["hf"] < 1.0))
    assert got_m["collateral_usd"] == float(want["coll_usd"].sum())  # the kept sum: that of today's values
    assert got_m["debt_usd"] == float(want["debt_usd"].sum())
    short = np.maximum(want["debt_usd"] - want["coll_usd"], 0.0).sum()
    assert got_m["bad_debt_usd"] == float(m.deficit @ m.prices()) + float(short)


def book(n: int, seed: int) -> tuple[LendingMarket, dict, np.random.Generator]:
    rng = np.random.default_rng(seed)
    env = Env()
    oracles = {s: FixedPrice(v, s) for s, v in PRICES.items()}
    m = LendingMarket("lend", ASSETS, oracles, env, "aave-v3.3")
    for s, amount in (("USDC", 1e12), ("ETH", 1e9), ("BTC", 1e8)):
        env.ledger.mint(s, "lenders", amount, "genesis")
        m.supply_liquidity("lenders", s, amount)
    rows = m.add_accounts(n)
    coll_asset = rng.integers(0, 2, n)  # ETH or BTC, one each
    for j, s in enumerate(("ETH", "BTC")):
        r = rows[coll_asset == j]
        tokens = rng.uniform(1, 50, r.size) / (1 if s == "ETH" else 30)
        env.ledger.mint(s, "users", float(tokens.sum()), "genesis")
        m.supply("users", r, s, tokens)
    debt = m.account_usd()[0] * rng.uniform(0.3, 0.69, n)
    debt[rng.random(n) < 0.2] = 0.0  # a fifth of the book borrows nothing
    has = np.flatnonzero(debt > 0)
    m.borrow("users", rows[has], "USDC", debt[has])
    env.ledger.mint("USDC", "liq", 1e12, "genesis")
    env.ledger.mint("USDC", "users", 1e12, "genesis")
    return m, oracles, rng


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_histories_give_the_plain_values_every_block(fast, seed):
    m, oracles, rng = book(300, seed)
    check(m)
    for _ in range(60):
        oracles["ETH"].price *= float(rng.choice([1.0, rng.uniform(0.9, 1.02)]))
        if rng.random() < 0.2:
            oracles["BTC"].price *= float(rng.uniform(0.9, 1.05))
        m.accrue(12.0 * float(rng.integers(1, 300)))
        check(m)
        hf = m.health()
        for a in np.flatnonzero(hf < 1.0)[:3]:  # liquidations (a write-off where collateral runs out)
            coll = "ETH" if m.coll_scaled[a, 0] > 0 else "BTC"
            if m.debt_scaled[a, 2] > 0:
                m.liquidate(int(a), coll, "USDC", 1e18, "liq")
        check(m)
        owing = np.flatnonzero(m.debt_scaled[:, 2] > 0)
        if owing.size:  # repayments, some of the whole debt (rows turn debt-free)
            acc = rng.choice(owing, min(5, owing.size), replace=False)
            whole = m.debt()[acc, 2] * rng.choice([0.5, 1.0, 2.0], acc.size)
            m.repay("users", acc, "USDC", whole)
        check(m)
        if rng.random() < 0.3:  # a borrow on a debt-free row (the debt-free rows change, maybe as many)
            free = np.flatnonzero((m.debt_scaled[:, 2] == 0) & (m.account_usd()[0] > 10.0))
            if free.size:
                a = rng.choice(free, 1)
                m.borrow("users", a, "USDC", np.array([1.0]))
        check(m)


def test_the_debt_free_rows_as_many_as_before_but_other_ones(fast):
    m, _, _ = book(40, 7)
    check(m)
    free = np.flatnonzero(m.debt_scaled[:, 2] == 0)
    owing = np.flatnonzero(m.debt_scaled[:, 2] > 0)
    assert free.size and owing.size
    m.borrow("users", free[:1], "USDC", np.array([10.0]))  # one debt-free row borrows ...
    m.repay("users", owing[:1], "USDC", np.array([1e12]))  # ... and one borrower repays whole: as many, not the same
    assert np.count_nonzero(m.debt_scaled[:, 2] == 0) == free.size
    m.accrue(12.0)
    check(m)
    assert m.health()[owing[0]] == np.inf and np.isfinite(m.health()[free[0]])


def test_a_second_asset_on_a_row_sends_the_refresh_back_to_the_kernel(fast):
    m, oracles, _ = book(50, 11)
    check(m)
    a = np.flatnonzero(m.coll_scaled[:, 0] > 0)[:1]
    m.env.ledger.mint("BTC", "users", 1.0, "genesis")
    m.supply("users", a, "BTC", np.array([0.5]))  # ETH and BTC on one row
    assert m._rows("coll").products(m.coll_scaled, m.liq_index * m.prices()) is None
    oracles["ETH"].price *= 0.9
    m.accrue(12.0)
    check(m)


def test_a_large_book_takes_the_fast_paths_at_the_default_gate():
    m, oracles, _ = book(lending_module._ROWS_MIN_ACCOUNTS, 5)
    check(m)
    oracles["ETH"].price *= 0.8
    m.accrue(12.0)
    check(m)
    assert m._rows("coll").clean and m._rows("debt").clean  # both sides were refreshed by column multiplies
    assert sorted(m._rows("coll").cols) == [0, 1] and sorted(m._rows("debt").cols) == [2]


def test_the_collateral_sum_is_kept_while_no_collateral_value_moves_and_follows_every_move(fast):
    m, oracles, _ = book(30, 13)
    first = m.metrics()["collateral_usd"]
    owing = np.flatnonzero(m.debt_scaled[:, 2] > 0)
    m.repay("users", owing[:2], "USDC", np.array([1.0, 2.0]))  # debt rows only
    m.accrue(12.0)
    assert m.metrics()["collateral_usd"] == first
    oracles["BTC"].price = 30_000.0  # half the BTC collateral's value
    btc = float((m.collateral()[:, 1] * 30_000.0).sum())
    eth = float((m.collateral()[:, 0] * 2_000.0).sum())
    assert m.metrics()["collateral_usd"] == pytest.approx(eth + btc, rel=1e-12)
    check(m)
    a = int(np.flatnonzero(m.coll_scaled[:, 0] > 0)[0])
    m.env.ledger.mint("ETH", "users", 1.0, "genesis")
    m.supply("users", np.array([a]), "ETH", np.array([1.0]))  # one more ETH on one row: +2,000 USD
    assert m.metrics()["collateral_usd"] == pytest.approx(eth + btc + 2_000.0, rel=1e-12)
    check(m)


def test_a_one_account_one_asset_book_is_checked_like_any_other():
    assert RowSparsity().products(np.array([[3.0]]), np.array([2.0])).tolist() == [6.0]
    assert RowSparsity().products(np.array([[-3.0]]), np.array([2.0])) is None  # negative: left to the kernel


def test_a_book_without_accounts_gives_an_empty_array():
    out = RowSparsity().products(np.zeros((0, 3)), np.array([1.0, 2.0, 3.0]))
    assert out is not None and out.shape == (0,)


@pytest.mark.parametrize("few", [0, 16])
def test_a_clean_array_is_checked_whole_once_and_then_only_at_the_rows_reported(monkeypatch, few):
    """By blocks (`_rows_clean`) or, for a few rows, row by row (`row_nonzero`): the same rows looked at."""
    from defistress.protocols import lending_rows

    monkeypatch.setattr(lending_rows, "_FEW_ROWS", few)
    seen: list[int] = []
    real, real_row = lending_rows._rows_clean, lending_rows.row_nonzero

    def spy(block):
        seen.append(block.shape[0])
        return real(block)

    def spy_row(row):
        seen.append(1)
        return real_row(row)

    monkeypatch.setattr(lending_rows, "_rows_clean", spy)
    monkeypatch.setattr(lending_rows, "row_nonzero", spy_row)
    arr = np.zeros((50, 3))
    arr[:, 2] = np.arange(1.0, 51.0)
    rs = RowSparsity()
    vec = np.array([1.0, 2.0, 0.5])
    rs.products(arr, vec)
    rs.products(arr, vec)  # nothing changed: no check at all
    arr[[3, 7], 2] = 0.25
    rs.touched(np.array([3, 7]))
    out = rs.products(arr, vec)
    assert seen == ([50, 2] if few == 0 else [50, 1, 1])  # the whole array once, then the two rows reported
    assert out[[3, 7]].tolist() == [0.125, 0.125] and out[0] == 0.5


def test_an_empty_account_reads_as_infinitely_healthy_without_warnings(fast):
    import warnings

    m, oracles, _ = book(20, 17)
    empty = int(m.add_accounts(1)[0])  # no collateral, no debt: 0 / 0 in the division, fixed up to inf
    oracles["ETH"].price *= 0.95
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hf = m.health()
    assert hf[empty] == np.inf
    check(m)


def test_a_new_empty_account_is_infinitely_healthy_after_a_refresh_without_debt_free_rows(fast):
    m, oracles, _ = book(20, 17)
    free = np.flatnonzero(m.debt_scaled[:, 2] == 0)
    assert free.size
    m.borrow("users", free, "USDC", np.full(free.size, 1.0))  # every account owes 1 USDC or more
    oracles["ETH"].price *= 0.99
    check(m)  # a whole refresh: the list of debt-free rows is empty
    empty = int(m.add_accounts(1)[0])  # no collateral, no debt: 0 / 0 in the division, a debt-free row
    oracles["ETH"].price *= 0.99
    hf = m.health()
    assert hf[empty] == np.inf  # no debt: infinitely healthy
    assert np.isfinite(hf[:empty]).all()
    check(m)


def test_the_collateral_sum_follows_prices_and_supplies_under_aave_precision():
    env = Env()
    oracles = {s: FixedPrice(v, s) for s, v in PRICES.items()}
    m = LendingMarket("lend", ASSETS, oracles, env, "aave-v3.3", precision="aave-v3")
    a = m.add_accounts(1)
    env.ledger.mint("ETH", "users", 3.0, "genesis")
    m.supply("users", a, "ETH", np.array([2.0]))
    assert m.metrics()["collateral_usd"] == pytest.approx(4_000.0, rel=1e-12)  # 2 ETH x 2,000 USD
    oracles["ETH"].price = 1_500.0
    assert m.metrics()["collateral_usd"] == pytest.approx(3_000.0, rel=1e-12)  # 2 ETH x 1,500 USD
    m.supply("users", a, "ETH", np.array([1.0]))
    assert m.metrics()["collateral_usd"] == pytest.approx(4_500.0, rel=1e-12)  # 3 ETH x 1,500 USD


@pytest.mark.parametrize("gate", ["fast", "default"])
def test_the_shortfall_after_an_insolvent_block_is_the_plain_sum_whether_or_not_it_is_zero(request, gate):
    """After a block with a shortfall the next sum is taken without the `debt > coll` test: the same bits as the
    plain formula when accounts are insolvent, when they are no longer (0.0), and when a value is not finite."""
    if gate == "fast":
        request.getfixturevalue("fast")
    m, oracles, _ = book(60, 19)
    check(m)
    assert not m._short_last  # nobody owes more than they hold
    for price in (300.0, 250.0, 2_000.0, 2_000.0, 100.0, 2_000.0):  # ETH crashes, recovers, crashes, recovers
        oracles["ETH"].price = price
        check(m)
        coll, debt = m.account_usd()
        assert m._short_last == bool((debt > coll).any())
    oracles["ETH"].price = 300.0
    check(m)
    assert m._short_last
    oracles["ETH"].price = float("nan")  # NaN values: the plain sum is NaN, and stays so
    with np.errstate(invalid="ignore"):
        got = m.metrics()["bad_debt_usd"]
    assert got != got and m._short_last
    oracles["ETH"].price = 2_000.0
    check(m)
    assert not m._short_last


def test_the_debt_over_collateral_pass_is_skipped_only_after_a_block_with_a_shortfall(monkeypatch):
    """Which blocks run the `debt > coll` pass (the values are the same either way: the test above)."""
    calls: list[int] = []

    class Numpy:  # the lending module's numpy, counting `greater` over the book's values
        def __getattr__(self, name):
            return getattr(np, name)

        @staticmethod
        def greater(a, b, out=None):
            calls.append(np.size(a))
            return np.greater(a, b, out=out)

    m, oracles, _ = book(40, 23)
    monkeypatch.setattr(lending_module, "np", Numpy())
    ran = []
    for price in (2_000.0, 2_000.0, 300.0, 300.0, 2_000.0, 2_000.0):
        del calls[:]
        oracles["ETH"].price = price
        m._account_values()  # the refresh's own `debt > 0` (of `_health`) is not the pass counted
        del calls[:]
        m.metrics()
        ran.append(m.n_accounts in calls)
    # the first call and solvent blocks: the pass runs (and passes); insolvent: it runs and fails; insolvent again:
    # skipped; solvent after an insolvent block: skipped (the sum is 0.0); solvent again: it runs
    assert ran == [True, True, True, False, False, True]


# --- a few pending rows checked in Python floats, against the block check it stands in for -------------------------
def twin_states(rs: RowSparsity) -> tuple:
    return (rs.clean, {j: bits(c) for j, c in rs.cols.items()}, dict(rs.held))


@pytest.mark.parametrize("seed", range(6))
def test_a_few_pending_rows_checked_row_by_row_leave_the_block_checks_state(monkeypatch, seed):
    """Two RowSparsity keepers of one array through the same random row changes (negative and repeated indices,
    second assets, -0.0, negatives, NaN and infinities, whole-array changes), one checking pending rows in Python
    (`_check_few`), one by blocks: the same verdict, column copies, holders and products after every look."""
    from defistress.protocols import lending_rows

    rng = np.random.default_rng(seed)
    n, a = int(rng.integers(1, 30)), int(rng.integers(1, 5))
    arr = np.zeros((n, a))
    col = rng.integers(0, a, n)
    arr[np.arange(n), col] = rng.uniform(0, 5, n) * (rng.random(n) < 0.7)
    few, block = RowSparsity(), RowSparsity()
    vec = rng.uniform(0.5, 3.0, a)
    specials = [0.0, -0.0, -1.0, np.nan, np.inf, 5e-324, 2.0]
    for _ in range(40):
        k = int(rng.integers(1, 5))
        rows = rng.integers(-n, n, k)
        for r in rows.tolist():
            arr[r] = 0.0
            if rng.random() < 0.8:
                value = float(rng.uniform(0, 5)) if rng.random() < 0.8 else rng.choice(specials)
                arr[r, int(rng.integers(0, a))] = value
            if rng.random() < 0.05:
                arr[r, int(rng.integers(0, a))] = 1.5  # maybe a second asset
        whole = rng.random() < 0.05
        if rng.random() < 0.15:  # back to a clean array, every row reported
            arr[~np.isfinite(arr) | np.signbit(arr)] = 0.0
            arr[np.count_nonzero(arr, axis=1) > 1, :] = 0.0
            whole = True
        few.touched(None if whole else rows)
        block.touched(None if whole else rows)
        if rng.random() < 0.4:  # changes pile up before the next look
            continue
        looks = []
        for rs, limit in ((few, 10**9), (block, 0)):
            monkeypatch.setattr(lending_rows, "_FEW_ROWS", limit)
            out = rs.products(arr, vec)
            looks.append((None if out is None else bits(out), [rs.holds(j) for j in range(a)] if rs.clean else None))
        assert twin_states(few) == twin_states(block)
        assert looks[0] == looks[1]
