"""`PerpDex._fill` of one or two accounts (in floats, `fill_one`) against the array code it skips (kept here as
the reference: `_settle_funding` then the numpy fill), bit for bit on every array it writes: crafted edge values
(signed zeros, subnormals, overflow, a position closed exactly, flipped, grown), random fills, and the calls the
float path hands back (three rows, a repeated row, a per-row price, inf and NaN in the book)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from conftest import track_env

from defistress.protocols.base import Env, FixedPrice
from defistress.protocols.perps import PerpDex, PerpDexParams, PerpMarketParams
from defistress.protocols.perps_fill import fill_one

#: finite edge values (1e308 overflows to inf inside; the DEX hands non-finite inputs to the array code)
EDGES = (0.0, -0.0, 1.0, -1.0, 2.5, -2.5, 5e-324, -5e-324, 1e308, -1e308, 1.7e308)


def ref_fill(collateral, size, entry, snapshot, index, rows, m, delta, price) -> None:
    """`PerpDex._settle_funding` then `PerpDex._fill` before the float path, on the given arrays (in place)."""
    owed = size[rows, m] * (snapshot[rows, m] - index[m])
    collateral[rows] += owed
    snapshot[rows, m] = index[m]
    s = size[rows, m]
    e = entry[rows, m]
    same = (s == 0) | (np.sign(delta) == np.sign(s))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        frac = np.where(same, 0.0, np.minimum(np.abs(delta) / np.abs(s), 1.0))
    s_new = s + delta
    flipped = ~same & (np.abs(delta) > np.abs(s))
    collateral[rows] += frac * (s * price - e)
    entry[rows, m] = np.where(same, e + delta * price, np.where(flipped, s_new * price, e * (1.0 - frac)))
    size[rows, m] = s_new


def ref_one(c, s, e, fs, fi, d, p):
    col, size, entry, snap = np.array([c]), np.array([[s]]), np.array([[e]]), np.array([[fs]])
    with np.errstate(all="ignore"):
        ref_fill(col, size, entry, snap, np.array([fi]), np.array([0]), 0, np.array([d]), p)
    return float(col[0]), float(size[0, 0]), float(entry[0, 0])


def bits(*xs: float) -> bytes:
    return np.array(xs, dtype=float).tobytes()


def test_fill_one_matches_the_array_code_on_edge_values():
    checked = 0
    scalars = ((0.0, 2000.0), (-0.0, 1e-300), (3.0, 1e308), (-1e308, 2000.0), (1.0, 0.0))
    with np.errstate(all="ignore"):
        for c, s, e, d in itertools.product(EDGES, repeat=4):
            for fi, p in scalars:
                fs = 0.5
                got, want = bits(*fill_one(c, s, e, fs, fi, d, p)), bits(*ref_one(c, s, e, fs, fi, d, p))
                assert got == want, (c, s, e, d, fi, p, got.hex(), want.hex())
                checked += 1
        for s, fs, fi in itertools.product(EDGES, repeat=3):  # the funding settled first
            assert bits(*fill_one(1.0, s, 2.0, fs, fi, 1.0, 3.0)) == bits(*ref_one(1.0, s, 2.0, fs, fi, 1.0, 3.0))
            checked += 1
    assert checked == len(EDGES) ** 4 * len(scalars) + len(EDGES) ** 3


@pytest.mark.parametrize("seed", range(4))
def test_fill_one_matches_the_array_code_on_random_fills(seed):
    rng = np.random.default_rng(seed)
    for _ in range(3_000):
        s = float(rng.choice([0.0, 1.0, -1.0]) * rng.uniform(0, 10))
        d = float(rng.choice([s, -s, -2 * s, 0.5 * s, rng.normal() * 10, -s * (1 + 1e-16)]))
        args = (rng.normal() * 1e4, s, s * rng.uniform(1000, 3000), rng.normal(), rng.normal(), d, rng.uniform(1, 4e3))
        assert bits(*fill_one(*args)) == bits(*ref_one(*args)), args


ETH = PerpMarketParams(asset="ETH", initial_margin_fraction=0.10, maintenance_fraction=0.5)
BTC = PerpMarketParams(asset="BTC", initial_margin_fraction=0.05, maintenance_fraction=0.6)


def book(markets=(ETH, BTC), n=8, seed=3):
    env = Env()
    track_env(env)
    oracles = {mk.asset: FixedPrice(p) for mk, p in zip(markets, (2000.0, 50_000.0))}
    dex = PerpDex(PerpDexParams(markets=list(markets), insurance_fund_usd=1_000.0), oracles, env)
    env.ledger.mint("USDC", "pop", 1e9, "test")
    rng = np.random.default_rng(seed)
    m = len(markets)
    half = rng.uniform(-5.0, 5.0, size=(n // 2, m))
    sizes = np.vstack([half, -half])
    entry = sizes * np.array([2000.0, 50_000.0][:m])
    dex.open_accounts("pop", rng.uniform(1e3, 1e5, size=n), sizes, entry_notional=entry)
    dex.funding_snapshot[:] = rng.standard_normal((n, m))
    dex.funding_index = rng.standard_normal(m)
    dex.size[2, 0] = 0.0
    dex.size[3, 0] = -0.0
    dex.collateral[5] = np.nan  # a non-finite row: the array code
    return dex


def arrays(dex):
    return [dex.collateral, dex.size, dex.entry_notional, dex.funding_snapshot]


def check_fill(dex, rows, m, delta, price) -> None:
    want = [a.copy() for a in arrays(dex)]
    ref_rows = np.asarray(rows)
    ref_fill(*want, dex.funding_index, ref_rows, m, np.asarray(delta), price)
    version = dex._version
    dex._fill(rows, m, delta, price)
    assert dex._version == version + 1
    for got, exp in zip(arrays(dex), want):
        assert got.tobytes() == exp.tobytes()


@pytest.mark.parametrize(
    "rows, delta",
    [
        ([0], [1.5]),
        ([0, 1], [-2.0, 2.0]),  # a partial close against an open
        ([4, 0], [10.0, -10.0]),  # flips
        ([2, 3], [1.0, -1.0]),  # from zero and negative zero
        ([1, 5], [0.0, -0.0]),
        ([6, 7], [np.nan, np.inf]),
        ([5, 0], [1.0, -1.0]),  # NaN collateral
        ([-1, 0], [1.0, -1.0]),  # a negative index
        ([0, 1, 2], [1.0, -0.5, -0.5]),  # three rows: the array code
        ([], []),
    ],
)
@pytest.mark.parametrize("m", [0, 1])
def test_the_dex_fill_matches_the_array_code(rows, delta, m):
    dex = book()
    with np.errstate(all="ignore"):
        check_fill(dex, np.array(rows, dtype=np.int64), m, np.array(delta, dtype=float), 2_345.5)
        unsigned = np.array(rows, dtype=np.int64) % 8  # the same rows as unsigned indices
        check_fill(dex, unsigned.astype(np.uint32), m, np.array(delta, dtype=float), np.float64(1e-3))


def test_a_repeated_or_out_of_range_row_or_a_price_per_row_takes_the_array_code():
    dex = book()
    # the same row twice (index 7 and -1): numpy's buffered `+=` keeps one write; the array code decides
    check_fill(dex, np.array([7, -1]), 0, np.array([1.0, 2.0]), 2_000.0)
    check_fill(dex, np.array([0, 1]), 0, np.array([1.0, -1.0]), np.array([1_000.0, 3_000.0]))
    check_fill(dex, np.array([0, 1]), 0, np.array([1.0, -1.0]), np.array(1_500.0))
    with pytest.raises(IndexError):
        dex._fill(np.array([0, 8]), 0, np.array([1.0, -1.0]), 2_000.0)
    with pytest.raises(ValueError):
        dex._fill(np.array([0, 1]), 0, np.array([1.0, -1.0, 0.0]), 2_000.0)


def test_an_out_of_range_row_leaves_every_array_as_it_was():
    dex = book()
    before = [a.copy() for a in arrays(dex)]
    with pytest.raises(IndexError):
        dex._fill(np.array([0, 8]), 0, np.array([1.0, -1.0]), 2_000.0)
    for got, exp in zip(arrays(dex), before):
        assert got.tobytes() == exp.tobytes()


def test_an_empty_book_hands_any_row_to_the_array_code():
    env = Env()
    dex = PerpDex(PerpDexParams(markets=[ETH], insurance_fund_usd=0.0), {"ETH": FixedPrice(2000.0)}, env)
    with pytest.raises(IndexError):
        dex._fill(np.array([0]), 0, np.array([1.0]), 2_000.0)


def test_a_nan_in_the_book_meeting_the_nan_of_the_fill_keeps_the_array_codes_nan():
    """A NaN collateral plus the NaN of 0·inf (1e308 units at 2,000 USD overflow; an added position realises
    nothing): which of two NaNs survives is numpy's choice, so the float path must leave this row to it."""
    dex = book(markets=(ETH,))
    dex.collateral[0] = np.nan
    dex.size[0, 0] = 1e308
    dex.entry_notional[0, 0] = 0.0
    dex.funding_snapshot[0, 0] = dex.funding_index[0]
    with np.errstate(all="ignore"):
        check_fill(dex, np.array([0, 1]), 0, np.array([1.0, -1.0]), 2_000.0)


@pytest.mark.parametrize("rows", [[0, 1], [0, 1, 2]])
def test_an_exact_close_of_a_short_leaves_a_negative_zero_entry(rows):
    """Closing a short exactly is not a flip: the entry notional becomes e·(1 − 1) = −0.0, not 0·price."""
    dex = book(markets=(ETH,))
    dex.size[0, 0], dex.entry_notional[0, 0] = -2.0, -4_000.0
    delta = np.array([2.0, -1.0, -1.0][: len(rows)])
    delta[1:] = -2.0 / (len(rows) - 1)
    check_fill(dex, np.array(rows), 0, delta, 2_000.0)
    assert np.signbit(dex.entry_notional[0, 0]) and dex.entry_notional[0, 0] == 0.0


def test_a_boolean_row_mask_is_left_to_numpy():
    dex = book()
    with pytest.raises(IndexError):  # a mask of 2 over 8 accounts
        dex._fill(np.array([True, False]), 0, np.array([1.0, -1.0]), 2_000.0)
