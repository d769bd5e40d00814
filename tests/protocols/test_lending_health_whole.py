"""The health factor of a large book (`LendingMarket._health_whole`) against the code it replaced: that code kept a
sorted list of the debt-free rows, listed again from a `debt > 0` row whenever it no longer held; today's amends an
unsorted list by the rows whose `debt > 0` flipped since the last call (`_flipped_rows`). Both must give the same bits
and the same set of debt-free rows (each once), call after call, on crafted debts (0, -0.0, negative, NaN, inf, the
smallest subnormal) and random ones, with rows flipping either way and books of every length modulo 8."""

from __future__ import annotations

import numpy as np
import pytest

from defistress.protocols import lending as lending_module
from defistress.protocols.base import Env, FixedPrice
from defistress.protocols.lending import AssetParams, LendingMarket


class ReferenceHealth:
    """The previous `_health_whole` (large-book branch), its list of debt-free rows kept on the instance."""

    def __init__(self) -> None:
        self.debt_free: np.ndarray | None = None
        self.owes: np.ndarray | None = None

    def __call__(self, weighted: np.ndarray, debt: np.ndarray, out: np.ndarray) -> np.ndarray:
        n = out.size
        with np.errstate(divide="ignore", invalid="ignore"):
            np.divide(weighted, debt, out=out)
        owes = self.owes
        if owes is None or owes.shape != (n,):
            owes = self.owes = np.empty(n, dtype=bool)
        np.greater(debt, 0.0, out=owes)
        last = self.debt_free
        count = n - np.count_nonzero(owes)
        if last is None or last.size != count or (count and (last[-1] >= n or owes[last].any())):
            last = self.debt_free = np.flatnonzero(np.logical_not(owes, out=owes))
        out[last] = np.inf
        return out


def bits(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a, dtype=float).tobytes()


@pytest.fixture
def market(monkeypatch) -> LendingMarket:
    monkeypatch.setattr(lending_module, "_ROWS_MIN_ACCOUNTS", 0)
    oracles = {"ETH": FixedPrice(2_000.0, "ETH")}
    return LendingMarket("lend", [AssetParams("ETH", 0.8, 0.825, 0.05)], oracles, Env(), "aave-v3.3")


def same(m: LendingMarket, ref: ReferenceHealth, weighted: np.ndarray, debt: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):  # 1 / 5e-324 overflows to inf, in both
        got = m._health_whole(weighted, debt, np.full(debt.size, -7.0))
        want = ref(weighted, debt, np.full(debt.size, -7.0))
    assert bits(got) == bits(want)
    n, owes, _, _, free = m._debt_free
    assert sorted(free.tolist()) == ref.debt_free.tolist()  # the same rows, each once
    assert n == debt.size and owes[:n].tolist() == (debt > 0).tolist() and not owes[n:].any()
    return got


CRAFTED = [0.0, -0.0, -1.0, np.nan, np.inf, 5e-324, 1.0, 2.0]


def test_crafted_debts_call_after_call(market):
    ref = ReferenceHealth()
    weighted = np.array([1.0, 0.0, 3.0, 4.0, 4.0, 1e-300, np.nan, np.inf])
    debt = np.array(CRAFTED)
    hf = same(market, ref, weighted, debt)
    assert hf[[0, 1, 2, 3]].tolist() == [np.inf] * 4 and hf[4] == 0.0 and np.isnan(hf[6])  # 4 / inf = 0 (not free)
    for perm in ([1, 0, 2, 3, 4, 5, 6, 7], [7, 6, 5, 4, 3, 2, 1, 0], [6, 6, 6, 6, 6, 6, 6, 6], [0] * 8):
        same(market, ref, weighted, debt[perm])  # as many debt-free rows but other ones, then all, then none
    same(market, ref, weighted, np.zeros(8))
    same(market, ref, weighted, np.ones(8))
    same(market, ref, weighted, np.ones(8))  # no debt-free row, twice: the empty list is kept
    same(market, ref, weighted[:4], np.array([1.0, 0.0, 1.0, 0.0]))
    same(market, ref, weighted[:3], np.array([0.0, 1.0, 0.0]))  # as many, the last one past the end (row 3 of 3)
    same(market, ref, weighted[:3], np.zeros(3))  # fewer rows: a list reaching past the end is rebuilt
    same(market, ref, weighted[:1], np.array([np.nan]))
    same(market, ref, weighted[:0], np.zeros(0))


def test_the_rows_of_debts_owed_are_reused_in_turn(market):
    market._health_whole(np.ones(4), np.array([1.0, 0.0, 2.0, 0.0]), np.empty(4))
    n, owes, other, scratch, free = market._debt_free
    assert n == 4 and owes.dtype == np.bool_ and owes.shape == other.shape == (8,)
    assert scratch.dtype == np.bool_ and scratch.shape == (1,)  # one byte a word
    assert owes.tolist() == [True, False, True] + [False] * 5  # padded with False to a whole 8-byte word
    assert sorted(free.tolist()) == [1, 3]
    market._health_whole(np.ones(4), np.array([0.0, 0.0, 2.0, 0.0]), np.empty(4))
    assert market._debt_free[1] is other and market._debt_free[2] is owes and market._debt_free[3] is scratch
    assert other.tolist() == [False, False, True] + [False] * 5
    market._health_whole(np.ones(5), np.zeros(5), np.empty(5))  # as many padded bytes, one row more: new rows
    assert market._debt_free[0] == 5 and all(a is not b for a, b in zip(market._debt_free[1:4], (other, owes, scratch)))
    assert sorted(market._debt_free[4].tolist()) == [0, 1, 2, 3, 4]


def reference_flipped(old: np.ndarray, new: np.ndarray) -> np.ndarray:
    return np.flatnonzero(old != new)


@pytest.mark.parametrize("size", [0, 8, 16, 64, 1024])
def test_flipped_rows_are_the_differing_bytes_ascending(size):
    rng = np.random.default_rng(size)
    scratch = np.empty(size // 8, dtype=bool)
    for density in (0.0, 0.001, 0.1, 0.5, 1.0):
        old = rng.random(size) < 0.3
        new = old ^ (rng.random(size) < density)
        got = lending_module._flipped_rows(old, new, scratch)
        assert got.tolist() == reference_flipped(old, new).tolist()
        # and the scratch row is left with which 8-byte words differ (only those were looked into byte by byte)
        assert scratch.tolist() == (old != new).reshape(-1, 8).any(axis=1).tolist()
    if size:  # the first and the last byte of a word, alone
        for row in (0, 7, size - 8, size - 1):
            new = np.zeros(size, dtype=bool)
            new[row] = True
            assert lending_module._flipped_rows(np.zeros(size, dtype=bool), new, scratch).tolist() == [row]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_debts_give_the_reference_bits(market, seed):
    rng = np.random.default_rng(seed)
    ref = ReferenceHealth()
    n = 50
    debt = rng.lognormal(0, 2, n) * (rng.random(n) < 0.7)
    weighted = rng.lognormal(0, 2, n)
    for _ in range(100):
        rows = rng.choice(n, int(rng.integers(0, 4)), replace=False)
        debt[rows] = rng.choice(CRAFTED + [rng.lognormal(0, 2)], rows.size)
        weighted[rng.choice(n, 3)] = rng.choice([0.0, 1.0, np.nan, np.inf, rng.lognormal(0, 2)], 3)
        size = n if rng.random() < 0.9 else int(rng.integers(0, n))
        same(market, ref, weighted[:size], debt[:size])


@pytest.mark.parametrize("n", [1000, 1001, 1007])
def test_random_flips_both_ways_and_calls_without_flips_give_the_reference_bits(market, n):
    rng = np.random.default_rng(n)
    ref = ReferenceHealth()
    debt = rng.lognormal(0, 2, n) * (rng.random(n) < 0.8)
    weighted = rng.lognormal(0, 2, n)
    for step in range(60):
        if step % 3:  # every third call the debts stay: nothing flips
            k = int(rng.integers(1, 40))
            rows = rng.choice(n, k, replace=False)
            debt[rows] = np.where(debt[rows] > 0, rng.choice([0.0, -0.0, np.nan, -1.0], k), rng.lognormal(0, 2, k))
            debt[rng.choice(n, 5)] *= 1.5  # values move without flipping
        same(market, ref, weighted, debt)


def test_books_below_the_list_gate_take_the_plain_fix_up_and_from_it_the_list(monkeypatch):
    """The list of debt-free rows is kept from `_ROWS_MIN_ACCOUNTS` rows (at the gate: kept), not below."""
    oracles = {"ETH": FixedPrice(2_000.0, "ETH")}
    m = LendingMarket("lend", [AssetParams("ETH", 0.8, 0.825, 0.05)], oracles, Env(), "aave-v3.3")
    monkeypatch.setattr(lending_module, "_ROWS_MIN_ACCOUNTS", 4)
    debt = np.array([1.0, 0.0, 2.0])
    hf = m._health_whole(np.ones(3), debt, np.empty(3))
    assert hf.tolist() == [1.0, np.inf, 0.5] and "_debt_free" not in m.__dict__
    hf = m._health_whole(np.ones(4), np.append(debt, 0.0), np.empty(4))
    assert hf.tolist() == [1.0, np.inf, 0.5, np.inf] and m._debt_free[4].tolist() == [1, 3]
