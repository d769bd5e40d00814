"""The health factor of a large book (`LendingMarket._health_whole`) against the code it replaced: that code negated a
fresh `debt > 0` row to find the debt-free rows; today's keeps a reused `debt > 0` row and counts its complement. Both
must give the same bits and the same list of debt-free rows, call after call, on crafted debts (0, -0.0, negative,
NaN, inf, the smallest subnormal) and random ones."""

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

    def __call__(self, weighted: np.ndarray, debt: np.ndarray, out: np.ndarray) -> np.ndarray:
        n = out.size
        with np.errstate(divide="ignore", invalid="ignore"):
            np.divide(weighted, debt, out=out)
        free = np.greater(debt, 0.0)
        np.logical_not(free, out=free)
        last = self.debt_free
        count = np.count_nonzero(free)
        if last is None or last.size != count or (count and (last[-1] >= n or not free[last].all())):
            last = self.debt_free = np.flatnonzero(free)
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
    assert m._debt_free.tolist() == ref.debt_free.tolist()
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


def test_the_row_of_debts_owed_is_reused(market):
    market._health_whole(np.ones(4), np.array([1.0, 0.0, 2.0, 0.0]), np.empty(4))
    kept = market._owes
    assert kept.dtype == np.bool_ and kept.shape == (4,)
    market._health_whole(np.ones(4), np.array([0.0, 0.0, 2.0, 0.0]), np.empty(4))
    assert market._owes is kept
    market._health_whole(np.ones(5), np.zeros(5), np.empty(5))
    assert market._owes is not kept and market._owes.shape == (5,)


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
