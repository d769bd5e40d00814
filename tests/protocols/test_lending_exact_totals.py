"""The lending market's scaled totals by asset (`coll_scaled_total`, `debt_scaled_total`) are exactly rounded sums
kept from the rows each change names (`_touch`): after random sequences of the market's own operations (supply,
borrow, repay, liquidation and its write-off, settlement out, interest, new accounts) and of direct row changes
(named rows, negative and repeated indices, a change naming no rows, a replaced array), every read equals
`math.fsum` of each column of the current array, bit for bit, and a fresh full sum of it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from defistress.protocols import lending as lending_module
from defistress.protocols.base import Env, FixedPrice, Revert
from defistress.protocols.exact_sums import ExactColumnSums, finite_sums, nonfinite_counts
from defistress.protocols.lending import AssetParams, LendingMarket

ASSETS = [
    AssetParams("ETH", 0.80, 0.825, 0.05),
    AssetParams("BTC", 0.70, 0.75, 0.065),
    AssetParams("USDC", 0.75, 0.78, 0.045, decimals=6),
]
PRICES = {"ETH": 2_000.0, "BTC": 60_000.0, "USDC": 1.0}
LIQ = "liq"


def fsum_columns(arr: np.ndarray) -> np.ndarray:
    return np.array([math.fsum(arr[:, j].tolist()) for j in range(arr.shape[1])], dtype=np.float64)


def fresh(arr: np.ndarray) -> np.ndarray:
    """A full exact sum of `arr` by column (not through `build`, which a test counts)."""
    s = ExactColumnSums(arr.shape[1])
    s.units, s.counts = finite_sums(arr)[0], nonfinite_counts(arr)
    return s.totals()


def check(m: LendingMarket) -> None:
    """Both totals: math.fsum per column and a fresh exact sum of the arrays as they are now, bit for bit."""
    for total, arr in ((m.coll_scaled_total, m.coll_scaled), (m.debt_scaled_total, m.debt_scaled)):
        assert total.tobytes() == fsum_columns(arr).tobytes(), (total, fsum_columns(arr))
        assert total.tobytes() == fresh(arr).tobytes()


def book(n: int, seed: int, precision: str = "float") -> tuple[LendingMarket, dict, np.random.Generator]:
    rng = np.random.default_rng(seed)
    env = Env()
    oracles = {s: FixedPrice(v, s) for s, v in PRICES.items()}
    m = LendingMarket("lend", ASSETS, oracles, env, "aave-v3.3", precision=precision)
    for s, amount in (("USDC", 1e12), ("ETH", 1e6), ("BTC", 1e5)):
        env.ledger.mint(s, "lenders", amount, "genesis")
        m.supply_liquidity("lenders", s, amount)
        env.ledger.mint(s, LIQ, amount, "genesis")
        env.ledger.mint(s, "users", amount, "genesis")
    add(m, rng, n)
    return m, oracles, rng


def add(m: LendingMarket, rng: np.random.Generator, n: int) -> None:
    """n new accounts: ETH or BTC collateral (some both), USDC debt at 30-75% of the borrowing power on most."""
    rows = m.add_accounts(n)
    eth = rows[rng.random(n) < 0.7]
    btc = rows[rng.random(n) < 0.4]
    if eth.size:
        m.supply("users", eth, "ETH", rng.uniform(0.1, 20.0, eth.size))
    if btc.size:
        m.supply("users", btc, "BTC", rng.uniform(0.01, 1.0, btc.size))
    cap = m._account_values()["borrow_cap"][rows]
    owing = rows[(rng.random(n) < 0.8) & (cap > 0)]
    if owing.size:
        m.borrow("users", owing, "USDC", m._account_values()["borrow_cap"][owing] * rng.uniform(0.3, 0.75, owing.size))


def step(m: LendingMarket, oracles: dict, rng: np.random.Generator, op: str) -> None:
    n = m.n_accounts
    if op == "repay":
        acc = np.unique(rng.integers(0, n, int(rng.integers(1, 6))))
        m.repay("users", acc, "USDC", rng.uniform(0.0, 30_000.0, acc.size))
    elif op == "liquidate":
        oracles["ETH"].price *= 0.93
        oracles["BTC"].price *= 0.95
        for a in np.flatnonzero(m.health() < 1.0)[:3].tolist():
            coll = "ETH" if m.coll_scaled[a, 0] > 0 else "BTC"
            try:
                m.liquidate(a, coll, "USDC", float(rng.uniform(100.0, 1e6)), LIQ)
            except Revert:
                pass
    elif op == "recover":
        oracles["ETH"].price = 2_000.0
        oracles["BTC"].price = 60_000.0
    elif op == "supply":
        acc = np.unique(rng.integers(0, n, int(rng.integers(1, 6))))
        m.supply("users", acc, "ETH", rng.uniform(0.0, 3.0, acc.size))
    elif op == "borrow":
        acc = np.unique(rng.integers(0, n, 2))
        try:
            m.borrow("users", acc, "USDC", rng.uniform(1.0, 500.0, acc.size))
        except Revert:
            pass
    elif op == "accrue":
        m.accrue(float(rng.uniform(12.0, 86_400.0)))
    elif op == "add":
        add(m, rng, int(rng.integers(1, 8)))
    elif op == "write_off":
        m.write_off(int(rng.integers(0, n)))
    elif op == "settle_out":
        m.settle_out(int(rng.integers(0, n)), float(rng.uniform(0.0, 1e4)), "out", "USDC")
    elif op == "named-rows":  # direct changes that name their rows: repeated, negative, one as an int
        rows = np.array([int(rng.integers(0, n)), -1, n - 1, int(rng.integers(0, n))])
        m.debt_scaled[rows, 2] = rng.uniform(0.0, 1e4, rows.size)
        m.coll_scaled[rows[0], 1] = 0.0
        m._touch_rows = rows
        m._touch()
        one = int(rng.integers(0, n))
        m.coll_scaled[one, 0] = float(rng.uniform(0.0, 5.0))
        m._touch_rows, m._touch_kept = one, "debt"
        m._touch()
        mask = rng.random(n) < 0.2  # a boolean mask of rows
        m.debt_scaled[mask, 2] *= 0.5
        m._touch_rows, m._touch_kept = mask, "coll"
        m._touch()
    elif op == "unnamed-rows":  # a direct change naming no rows: any row may have changed
        rows = rng.integers(0, n, 3)
        m.coll_scaled[rows, 0] = rng.uniform(0.0, 5.0, 3)
        m._touch_kept = "debt"
        m._touch()
    elif op == "replaced":  # the array replaced by a copy that differs on every row, every row named
        m.debt_scaled = m.debt_scaled * 1.5
        m._touch_rows, m._touch_kept = np.arange(n), "coll"
        m._touch()
    else:
        raise AssertionError(op)


OPS = [
    "repay",
    "repay",
    "liquidate",
    "liquidate",
    "recover",
    "supply",
    "borrow",
    "accrue",
    "add",
    "write_off",
    "settle_out",
    "named-rows",
    "unnamed-rows",
    "replaced",
]


@pytest.fixture(params=[0, 16, 10**9])
def few(request, monkeypatch):
    """How many changed row entries a read sums in Python lists (`update_lists`) rather than numpy arrays: none,
    the market's own bound, every change."""
    monkeypatch.setattr(lending_module, "_FEW_DIRTY", request.param)
    return request.param


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("precision", ["float", "aave-v3"])
def test_the_kept_totals_equal_fsum_after_a_random_sequence_of_changes(few, seed, precision):
    m, oracles, rng = book(30, seed, precision)
    check(m)
    for _ in range(60):
        step(m, oracles, rng, str(rng.choice(OPS)))
        if rng.random() < 0.6:  # read now, or let changes pile up for a later read
            check(m)
    check(m)


@pytest.mark.parametrize("seed", range(3))
def test_changes_beyond_the_list_bound_sum_the_book_whole_and_agree(monkeypatch, seed):
    monkeypatch.setattr(lending_module, "_DIRTY_MAX", 2)
    m, oracles, rng = book(20, seed)
    for _ in range(20):
        for _ in range(int(rng.integers(1, 5))):
            step(m, oracles, rng, str(rng.choice(["repay", "liquidate", "named-rows", "recover"])))
        check(m)


def test_an_empty_book_has_zero_totals_and_its_first_accounts_are_summed():
    m, _, rng = book(0, 1)
    assert m.coll_scaled_total.tobytes() == np.zeros(3).tobytes()
    assert m.debt_scaled_total.tobytes() == np.zeros(3).tobytes()
    add(m, rng, 1)
    check(m)
    add(m, rng, 3)
    check(m)


def test_only_a_change_naming_no_rows_or_a_new_array_sums_the_book_whole(monkeypatch):
    """Repayments, liquidations, write-offs, interest and changes naming their rows update the totals from those rows;
    a change naming no rows, new accounts or a replaced array make the next read sum the array whole."""
    m, oracles, rng = book(40, 3)
    check(m)
    builds = []
    real = ExactColumnSums.build

    def counted(self, arr):
        builds.append(arr.shape)
        real(self, arr)

    monkeypatch.setattr(ExactColumnSums, "build", counted)
    for op in ("repay", "liquidate", "accrue", "named-rows", "write_off", "repay", "liquidate"):
        step(m, oracles, rng, op)
        check(m)
    assert builds == []
    step(m, oracles, rng, "unnamed-rows")
    check(m)
    assert builds == [(40, 3)]  # the collateral side (the change kept debt)
    step(m, oracles, rng, "replaced")
    check(m)
    assert builds == [(40, 3)] * 2  # the debt side, on its new array (every row named)
    m.add_accounts(2)
    check(m)
    assert builds == [(40, 3)] * 2 + [(42, 3)] * 2  # both sides, on the grown arrays
    step(m, oracles, rng, "supply")  # a supply names no rows: collateral summed whole
    check(m)
    assert builds[-1] == (42, 3) and len(builds) == 5


def test_a_replaced_array_is_summed_whole_whatever_rows_the_change_names():
    """Totals only (the values' cache trusts the named rows): a new array object is not the one the kept sums and
    their shadow copy describe, so its rows are all summed, not just the one named."""
    m, _, _ = book(12, 5)
    check(m)
    m.coll_scaled = m.coll_scaled * 3.0
    m._touch_rows, m._touch_kept = np.array([0]), "debt"
    m._touch()
    check(m)


@pytest.mark.parametrize("named", [[3, 3], [-1, 9], [-10, 0], [2, -8, 2]])
def test_a_row_named_twice_or_from_the_end_is_summed_once(few, named):
    """Two changes naming the same row (9 is -1 and 0 is -10 in a book of 10): its old values are taken off once."""
    m, _, _ = book(10, 6)
    check(m)
    for r in named:
        m.debt_scaled[r, 2] += 1_000.0
        m._touch_rows, m._touch_kept = r, "coll"
        m._touch()
    check(m)
    m.debt_scaled[named[0], 2] = 0.5
    m._touch_rows, m._touch_kept = np.array(named), "coll"
    m._touch()
    check(m)


def test_rows_named_by_anything_but_integers_or_a_mask_count_as_any_row():
    """`_touch` takes integer rows or a boolean mask; anything else (here floats) means any row may have changed."""
    m, _, _ = book(8, 7)
    check(m)
    m.debt_scaled[[2, 5], 2] += 7.0
    m._touch_rows, m._touch_kept = np.array([2.0]), "coll"
    m._touch()
    check(m)  # row 5 too: the whole array summed


def test_a_kept_total_is_the_same_object_until_its_side_changes():
    m, oracles, rng = book(10, 4)
    coll, debt = m.coll_scaled_total, m.debt_scaled_total
    step(m, oracles, rng, "repay")
    assert m.coll_scaled_total is coll and m.debt_scaled_total is not debt
    step(m, oracles, rng, "accrue")
    debt = m.debt_scaled_total
    assert m.coll_scaled_total is coll and m.debt_scaled_total is debt
    check(m)
