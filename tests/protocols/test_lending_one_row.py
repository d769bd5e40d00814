"""A liquidation's refresh of the cached account values (`LendingMarket._one_row_refresh`, the row's products in Python
floats by `_row_values` / `row_nonzero`) against the code it replaced: the general refresh path with the row's (1, A)
matrix products (both shortcuts switched off), bit for bit, on twin markets driven through the same random histories
(liquidations and their write-offs, repayments, interest, price moves, rows with two assets or -0.0 balances,
collateral flags and e-mode rows, arrays a caller holds), and `row_nonzero` on crafted rows against `_rows_clean` and
the kernel."""

from __future__ import annotations

import math

import numpy as np
import pytest

from defistress.protocols import lending as lending_module
from defistress.protocols.base import Env, FixedPrice, Revert
from defistress.protocols.lending import AssetParams, LendingMarket
from defistress.protocols.lending_accounts import EModeCategory
from defistress.protocols.lending_rows import _rows_clean, row_nonzero

ASSETS = [
    AssetParams("ETH", 0.80, 0.825, 0.05, emode_category=1),
    AssetParams("STETH", 0.75, 0.80, 0.06, emode_category=1),
    AssetParams("USDC", 0.75, 0.78, 0.045),
]
PRICES = {"ETH": 2_000.0, "STETH": 1_990.0, "USDC": 1.0}
TINY = 5e-324
MAX = 1.7976931348623157e308


def bits(a) -> bytes:
    return np.ascontiguousarray(a, dtype=float).tobytes()


# --- row_nonzero against _rows_clean and the kernel ----------------------------------------------------------------
ROWS = {
    "zeros": [0.0, 0.0, 0.0],
    "one": [0.0, 2.5, 0.0],
    "first": [3.0, 0.0, 0.0],
    "last": [0.0, 0.0, 7.0],
    "two": [1.0, 0.0, 1.0],
    "neg-zero": [0.0, -0.0, 0.0],
    "neg-zero-and-one": [-0.0, 1.0, 0.0],
    "negative": [0.0, -1e-300, 0.0],
    "nan": [math.nan, 0.0, 0.0],
    "inf": [0.0, math.inf, 0.0],
    "neg-inf": [0.0, 0.0, -math.inf],
    "subnormal": [0.0, TINY, 0.0],
    "max": [MAX, 0.0, 0.0],  # its product overflows to inf, in the kernel as well
    "tiny-product": [0.0, 0.0, 1e-320],  # its product underflows to +0.0 with a price below one
    "one-ulp-above-zero": [0.0, 0.0, math.nextafter(0.0, 1.0)],
}
VECS = [[2_000.0, 1_990.0, 1.0], [0.3, 0.7, 1e-5], [1e308, 3.0, 0.5]]


@pytest.mark.parametrize("name", sorted(ROWS))
def test_the_nonzero_entry_of_a_clean_row_and_none_for_a_row_the_kernel_must_sum(name):
    row = ROWS[name]
    at = row_nonzero(row)
    clean, _ = _rows_clean(np.array([row]))
    assert (at is not None) == clean
    if at is None:
        return
    nz = [j for j, x in enumerate(row) if x != 0.0]
    assert (at == -1 and nz == []) or nz == [at]
    for vec in VECS:  # the one product (or +0.0) is the kernel's sum, bits and sign
        with np.errstate(over="ignore"):
            want = (np.array([row]) @ np.array(vec))[0]
            one = np.array(row) @ np.array(vec)
        got = row[at] * vec[at] if at >= 0 else 0.0
        assert bits([got]) == bits([want]) == bits([one]), (name, vec)


# --- twin markets ----------------------------------------------------------------------------------------------------
def book(n: int, seed: int, mixed: bool) -> tuple[LendingMarket, dict]:
    """Accounts with ETH or STETH collateral and USDC debt; `mixed`: some also hold a second collateral asset, one
    -0.0 balance, some collateral flags off and some accounts in e-mode."""
    rng = np.random.default_rng(seed)
    env = Env()
    oracles = {s: FixedPrice(v, s) for s, v in PRICES.items()}
    m = LendingMarket("lend", ASSETS, oracles, env, "aave-v3.3", emodes=[EModeCategory(1, 0.90, 0.93, 0.01)])
    for s, amount in (("USDC", 1e12), ("ETH", 1e9), ("STETH", 1e9)):
        env.ledger.mint(s, "lenders", amount, "genesis")
        m.supply_liquidity("lenders", s, amount)
        env.ledger.mint(s, "users", amount, "genesis")
        env.ledger.mint(s, "liq", amount, "genesis")
    rows = m.add_accounts(n)
    side = rng.integers(0, 2, n)
    for j, s in enumerate(("ETH", "STETH")):
        r = rows[side == j]
        m.supply("users", r, s, rng.uniform(1, 50, r.size))
    if mixed:
        two = rows[rng.random(n) < 0.2]
        m.supply("users", two, "STETH", rng.uniform(0.1, 5, two.size))
    debt = m.account_usd()[0] * rng.uniform(0.5, 0.76, n)
    debt[rng.random(n) < 0.15] = 0.0
    has = np.flatnonzero(debt > 0)
    m.seed_borrow("users", rows[has], "USDC", debt[has])  # HF above 1, not the LTV: some close to liquidation
    if mixed:
        m.coll_scaled[3, 2] = -0.0  # a -0.0 balance: its row is left to the kernel
        m._touch_rows = 3
        m._touch()
        # flags and categories written as a book's import would (no health check: the rows are what they are)
        both = np.flatnonzero((m.coll_scaled[:, 0] > 0) & (m.coll_scaled[:, 1] > 0))
        m._flags()[both[:2], 1] = False
        m._emode = np.where(rng.random(n) < 0.1, 1, 0).astype(np.int64)
        m._touch()
    return m, oracles


def reference(monkeypatch) -> None:
    """The code before the shortcuts: the general refresh path, the row's (1, A) matrix products."""
    monkeypatch.setattr(LendingMarket, "_one_row_refresh", lambda self, key: None)
    monkeypatch.setattr(LendingMarket, "_row_values", lambda self, r, cp, wp, dp: None)


def same_values(fast: LendingMarket, ref: LendingMarket, monkeypatch) -> None:
    with monkeypatch.context() as mp:
        reference(mp)
        want = {k: ref._account_values()[k].copy() for k in ("coll_usd", "debt_usd", "weighted", "hf")}
        want_gen = ref._coll_gen
    got = fast._account_values()
    for k, v in want.items():
        assert bits(got[k]) == bits(v), k
    assert fast._coll_gen == want_gen
    assert fast._pending_rows is None and ref._pending_rows is None


def both(fast: LendingMarket, ref: LendingMarket, monkeypatch, fn) -> None:
    """The same operation on both markets (the reference under the old code)."""
    fn(fast)
    with monkeypatch.context() as mp:
        reference(mp)
        fn(ref)


@pytest.mark.parametrize("gate", [0, 10**9])
@pytest.mark.parametrize("mixed", [False, True])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_liquidation_histories_refresh_to_the_replaced_codes_bits(monkeypatch, gate, mixed, seed):
    monkeypatch.setattr(lending_module, "_ROWS_MIN_ACCOUNTS", gate)
    monkeypatch.setattr(lending_module, "_KEEP_MIN_ACCOUNTS", gate)
    fast, oracles_f = book(120, seed, mixed)
    ref, oracles_r = book(120, seed, mixed)
    rng = np.random.default_rng(seed + 50)
    same_values(fast, ref, monkeypatch)
    fast_calls = []
    real = LendingMarket._one_row_refresh

    def counted(self, key):
        out = real(self, key)
        fast_calls.append(out is not None)
        return out

    monkeypatch.setattr(LendingMarket, "_one_row_refresh", counted)
    for _ in range(25):
        move, steth = float(rng.uniform(0.9, 1.0)), rng.random() < 0.3
        for o in (oracles_f, oracles_r):
            o["ETH"].price *= move
            if steth:
                o["STETH"].price *= 0.97
        if rng.random() < 0.5:
            both(fast, ref, monkeypatch, lambda m: m.accrue(12.0))
        held = fast.health()  # a caller holds the array: the refresh must not write into it
        held_bits = bits(held)
        same_values(fast, ref, monkeypatch)
        for a in np.flatnonzero(held < 1.0)[:6].tolist():
            for _ in range(2):  # the same account twice: its row is pending once more (the write-off too)
                coll = "ETH" if fast.coll_scaled[a, 0] > 0 else "STETH"
                amount = 1e18 if rng.random() < 0.3 else 50.0
                outcomes = []
                for m, old in ((fast, False), (ref, True)):
                    with monkeypatch.context() as mp:
                        if old:
                            reference(mp)
                        try:
                            outcomes.append(m.liquidate(a, coll, "USDC", amount, "liq"))
                        except Revert as exc:  # a revert on one market is the same revert on the other
                            outcomes.append(str(exc))
                assert outcomes[0] == outcomes[1]
                same_values(fast, ref, monkeypatch)
        assert bits(held) == held_bits
        owing = np.flatnonzero(fast.debt_scaled[:, 2] > 0)
        if owing.size and rng.random() < 0.5:  # one repayment (one row), or several (the general path)
            acc = rng.choice(owing, int(rng.integers(1, 4)), replace=False)
            both(fast, ref, monkeypatch, lambda m: m.repay("users", acc, "USDC", np.full(acc.size, 10.0)))
            same_values(fast, ref, monkeypatch)
    assert any(fast_calls) and not all(fast_calls)


def test_a_row_touched_then_another_goes_the_general_way_and_agrees(monkeypatch):
    fast, _ = book(30, 4, False)
    ref, _ = book(30, 4, False)
    same_values(fast, ref, monkeypatch)
    for m in (fast, ref):
        m.debt_scaled[[5, 6], 2] *= 1.5
    for r in (5, 6):
        both(fast, ref, monkeypatch, lambda m: (setattr(m, "_touch_rows", r), m._touch()))
    assert fast._one_row_refresh((fast._price_bytes, fast._version)) is None  # two rows pending
    same_values(fast, ref, monkeypatch)


def test_a_row_named_from_the_end_and_from_the_start_is_two_names(monkeypatch):
    """-1 and n - 1 name the same row, but the general path's check compares the names: so does the shortcut."""
    fast, _ = book(30, 5, False)
    ref, _ = book(30, 5, False)
    for m in (fast, ref):
        m.health()
        m.debt_scaled[29, 2] *= 1.1
        for r in (29, -1):
            m._touch_rows = r
            m._touch()
    assert fast._one_row_refresh((fast._price_bytes, fast._version)) is None
    same_values(fast, ref, monkeypatch)


@pytest.mark.parametrize("change", ["liq_index", "borrow_index", "lt", "price", "none"])
def test_inputs_changed_without_a_new_version_send_the_refresh_the_general_way(monkeypatch, change):
    """An index or threshold written directly (no `_touch`) changes the per-unit prices: only the general path, which
    compares the vectors, sees it; the shortcut compares their inputs' bytes and steps aside."""
    fast, orc = book(30, 6, False)
    ref, orc_r = book(30, 6, False)
    for m, o in ((fast, orc), (ref, orc_r)):
        m.health()
        if change == "price":
            o["ETH"].price *= 0.5
        elif change != "none":
            getattr(m, change)[0] *= 1.01
        m.coll_scaled[2, :2] *= 0.9
        m._touch_rows = 2
        m._touch()
    key = (fast._price_bytes, fast._version)
    fast.prices()
    stepped_aside = fast._one_row_refresh((fast._price_bytes, fast._version)) is None
    assert stepped_aside == (change != "none"), key
    same_values(fast, ref, monkeypatch)


def left_to_the_kernel(fast: LendingMarket, ref: LendingMarket, monkeypatch, row: int) -> None:
    """`_row_values` steps aside for the touched `row`; the refresh gives the reference's bits (its matrix products)."""
    p = fast.prices()
    cp, dp = fast.liq_index * p, fast.borrow_index * p
    assert fast._row_values(row, cp, cp * fast.lt, dp) is None
    same_values(fast, ref, monkeypatch)


@pytest.mark.parametrize("price", [0.0, math.inf])
def test_a_vector_with_a_zero_or_infinite_price_leaves_the_row_to_the_kernel(monkeypatch, price):
    """A zero per-unit price, or an infinite one on an asset the row does not hold (the kernel's 0 x inf is NaN)."""
    fast, orc = book(20, 8, False)
    ref, orc_r = book(20, 8, False)
    for m, o in ((fast, orc), (ref, orc_r)):
        o["STETH"].price = price
        m.health()
        m.debt_scaled[4, 2] *= 1.2
        m._touch_rows = 4
        m._touch()
    left_to_the_kernel(fast, ref, monkeypatch, 4)


def test_the_borrow_cap_column_is_refreshed_for_the_row_too(monkeypatch):
    fast, _ = book(20, 9, False)
    ref, _ = book(20, 9, False)
    for m in (fast, ref):
        m.health()
        m._account_values()["borrow_cap"]  # filled on first read, then kept by the refreshes
        m.coll_scaled[7, :2] *= 0.5
        m._touch_rows = 7
        m._touch()
    same_values(fast, ref, monkeypatch)
    with monkeypatch.context() as mp:
        reference(mp)
        want = ref._account_values()["borrow_cap"]
    assert bits(fast._account_values()["borrow_cap"]) == bits(want)


def test_a_row_with_two_debts_leaves_the_refresh_to_the_kernel(monkeypatch):
    """One collateral but two debt assets: `_row_values` steps aside and the row's matrix products give its values."""
    fast, _ = book(20, 10, False)
    ref, _ = book(20, 10, False)
    for m in (fast, ref):
        m.health()
        m.debt_scaled[5, 0] = 1e-3  # an ETH debt beside the USDC one
        m._touch_rows = 5
        m._touch()
    left_to_the_kernel(fast, ref, monkeypatch, 5)


def test_a_callers_values_do_not_change_under_it(monkeypatch):
    """A caller holding the cached values (the dict) keeps them: the shortcut copies arrays another holder may read."""
    fast, _ = book(20, 11, False)
    held = fast._account_values()
    before = {k: bits(held[k]) for k in ("coll_usd", "debt_usd", "weighted", "hf")}
    fast.debt_scaled[6, 2] *= 1.3
    fast._touch_rows = 6
    fast._touch()
    calls = []
    real = LendingMarket._one_row_refresh
    monkeypatch.setattr(LendingMarket, "_one_row_refresh", lambda self, key: calls.append(1) or real(self, key))
    after = fast._account_values()
    assert calls and after is not held
    assert {k: bits(held[k]) for k in before} == before
    assert bits(after["debt_usd"][6:7]) != before["debt_usd"][48:56]  # the row moved in the new values
