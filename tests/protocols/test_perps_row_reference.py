"""`one_row_values` (one account of a one-market perp DEX in floats) against the numpy formulas it replaces in
`PerpDex._row_values`, bit for bit: crafted finite edge values (signed zeros, subnormals, the largest floats and
their overflow) and random books, then the DEX's own rows (the float path for one finite row of one market, the
array path otherwise: inf and NaN in the book)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from conftest import track_env

from defistress.protocols.base import Env, FixedPrice
from defistress.protocols.perps import PerpDex, PerpDexParams, PerpMarketParams
from defistress.protocols.perps_row import one_row_values

#: finite edge values (1e308 overflows inside; the DEX hands non-finite inputs to the array code)
EDGES = (0.0, -0.0, 1.0, -1.0, 5e-324, -5e-324, 1e308, -1e308, 2000.0, -3.5)


def ref_row_values(collateral, size, entry, snapshot, index, prices, mmf, rows):
    """`PerpDex._row_values` before the float path (the reference): gathers, a matrix product, row sums."""
    pos = size[rows]
    equity = collateral[rows] + pos @ prices - entry[rows].sum(axis=1) + ((snapshot[rows] - index) * pos).sum(axis=1)
    return equity, np.abs(pos) @ (prices * mmf)


def ref_one(c, s, e, fs, fi, p, mmf):
    eq, mmr = ref_row_values(
        np.array([c]),
        np.array([[s]]),
        np.array([[e]]),
        np.array([[fs]]),
        np.array([fi]),
        np.array([p]),
        np.array([mmf]),
        np.array([0]),
    )
    return float(eq[0]), float(mmr[0])


def bits(*xs: float) -> bytes:
    return np.array(xs, dtype=float).tobytes()


def test_one_row_values_matches_the_numpy_formulas_on_edge_values():
    scalars = ((0.0, 2000.0, 0.03), (-0.0, 1e-300, 0.5), (1e308, 2000.0, 0.03), (1.0, 1e308, 0.0), (-2.0, 0.0, 1.0))
    checked = 0
    with np.errstate(all="ignore"):
        for c, s, e, fs in itertools.product(EDGES, repeat=4):
            for fi, p, mmf in scalars:
                assert bits(*one_row_values(c, s, e, fs, fi, p, mmf)) == bits(*ref_one(c, s, e, fs, fi, p, mmf)), (
                    c,
                    s,
                    e,
                    fs,
                    fi,
                    p,
                    mmf,
                )
                checked += 1
    assert checked == len(EDGES) ** 4 * len(scalars)


def test_one_row_values_turns_a_negative_zero_sum_into_positive_zero_as_numpy_does():
    eq, mmr = one_row_values(-0.0, -0.0, 0.0, 0.0, 0.0, 2000.0, 0.03)
    assert bits(eq, mmr) == bits(0.0, 0.0)
    assert bits(*ref_one(-0.0, -0.0, 0.0, 0.0, 0.0, 2000.0, 0.03)) == bits(0.0, 0.0)


@pytest.mark.parametrize("seed", range(5))
def test_one_row_values_matches_the_numpy_formulas_on_random_accounts(seed):
    rng = np.random.default_rng(seed)
    n = 2_000
    scale = 10.0 ** rng.integers(-8, 9, size=(n, 7))
    x = rng.standard_normal((n, 7)) * scale
    x[:, 5] = np.abs(x[:, 5])  # prices
    x[:, 6] = np.abs(x[:, 6]) % 1.0  # margin fractions
    for row in x:
        args = tuple(float(v) for v in row)
        assert bits(*one_row_values(*args)) == bits(*ref_one(*args))


def make_dex(markets):
    env = Env()
    track_env(env)
    oracles = {mk.asset: FixedPrice(p) for mk, p in zip(markets, (2000.0, 50_000.0))}
    dex = PerpDex(PerpDexParams(markets=list(markets), insurance_fund_usd=1_000.0), oracles, env)
    env.ledger.mint("USDC", "pop", 1e9, "test")
    return dex, oracles


ETH = PerpMarketParams(asset="ETH", initial_margin_fraction=0.10, maintenance_fraction=0.5)
BTC = PerpMarketParams(asset="BTC", initial_margin_fraction=0.05, maintenance_fraction=0.6)


def dex_ref(dex, rows):
    return ref_row_values(
        dex.collateral,
        dex.size,
        dex.entry_notional,
        dex.funding_snapshot,
        dex.funding_index,
        dex.prices(),
        dex.mmf,
        rows,
    )


def assert_rows_match(dex, rows):
    got, want = dex._row_values(rows), dex_ref(dex, rows)
    assert got[0].shape == want[0].shape and got[1].shape == want[1].shape
    assert got[0].tobytes() == want[0].tobytes() and got[1].tobytes() == want[1].tobytes()


@pytest.mark.parametrize("markets", [(ETH,), (ETH, BTC)])
def test_the_dex_rows_match_the_numpy_formulas_one_row_or_many(markets):
    dex, oracles = make_dex(markets)
    rng = np.random.default_rng(7)
    n, m = 40, len(markets)
    half = rng.uniform(-5.0, 5.0, size=(n // 2, m))
    sizes = np.vstack([half, -half])  # a matched book
    px = np.array([2000.0, 50_000.0][:m])
    entry = sizes * px * rng.uniform(0.8, 1.2, size=(n, m))
    entry[n // 2 :] = -entry[: n // 2]
    dex.open_accounts("pop", rng.uniform(1e3, 1e5, size=n), sizes, entry_notional=entry)
    dex.funding_snapshot[:] = rng.standard_normal((n, m))
    dex.funding_index = rng.standard_normal(m)
    dex.size[3] = -0.0  # a flat account with negative zeros
    dex.entry_notional[3] = -0.0
    dex.collateral[4] = -0.0
    dex.collateral[5] = np.nan  # non-finite rows: the array code
    dex.entry_notional[6] = -np.inf
    dex.funding_snapshot[7] = np.inf
    for price in (2000.0, 1234.5678, 1e-300, 0.0, np.inf, np.nan):
        oracles["ETH"].price = price
        with np.errstate(invalid="ignore", over="ignore"):  # the inf and NaN rows
            for k in range(n):
                assert_rows_match(dex, np.array([k]))
            assert_rows_match(dex, np.array([n - 1], dtype=np.uint32))
            assert_rows_match(dex, np.array([-1]))
            assert_rows_match(dex, np.array([0, 5, 3]))
            assert_rows_match(dex, np.arange(n))
            assert_rows_match(dex, np.zeros(0, dtype=np.int64))


def test_a_one_row_out_of_range_index_raises_as_the_arrays_do():
    dex, _ = make_dex((ETH,))
    dex.open_accounts("pop", [1e4, 1e4], [[1.0], [-1.0]], [[2000.0], [2000.0]])
    with pytest.raises(IndexError):
        dex._row_values(np.array([2]))


def test_a_boolean_row_mask_is_left_to_numpy():
    dex, _ = make_dex((ETH,))
    dex.open_accounts("pop", [1e4, 1e4], [[1.0], [-1.0]], [[2000.0], [2000.0]])
    with pytest.raises(IndexError):  # a mask of 1 over 2 accounts
        dex._row_values(np.array([True]))
