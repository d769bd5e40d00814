"""The options venue's book entries (protocols/options_entries.py) against the code they replaced, bit for bit:
the whole book's non-zero entries against `np.nonzero`, a set of rows' entries taken from the whole book's list
against a gather and a scan of those rows, and the venue's portfolios (whole book, ascending rows, other rows)
against the `_build` they replaced, on edge cases (NaN payloads, -0.0, subnormals, infinities, empty books, one row
or column, strided arrays) and random books; the kept entries follow every state change (issue 14)."""

from __future__ import annotations

import numpy as np
import pytest
from test_options_margin_cache import sample_trades

from defistress.protocols.base import Env, FixedPrice
from defistress.protocols.margin.portfolio import PERP, SPOT, Portfolio
from defistress.protocols.options import OptionsVenue, OptionsVenueParams
from defistress.protocols.options_entries import book_entries, rows_entries
from defistress.protocols.vol import VolSurfaceParams

NAN_A = np.frombuffer(np.uint64(0x7FF8_0000_0000_0ABC).tobytes(), dtype=np.float64)[0]  # NaN payloads
NAN_B = np.frombuffer(np.uint64(0xFFF8_0000_0000_0DEF).tobytes(), dtype=np.float64)[0]
ODD = (1.0, -2.5, NAN_A, NAN_B, -0.0, 0.0, 5e-324, -5e-324, np.inf, -np.inf, 1e308)


def reference_nonzero(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The venue's `_nonzero` before the entries: rows and columns by `//` and `%`."""
    flat = np.flatnonzero(np.ravel(a) != 0)
    cols = a.shape[1]
    if cols == 0:
        return flat, flat
    return flat // cols, flat % cols


def reference_build(v: OptionsVenue, cash: np.ndarray, qty: np.ndarray, spot: np.ndarray) -> Portfolio:
    """`OptionsVenue._build` before the entries: a scan of the given books, values by (row, column)."""
    r, i = reference_nonzero(qty)
    rs, us = reference_nonzero(spot)
    kind = v.inst_kind[i]
    und = v.inst_und[i]
    perp = kind == PERP
    return Portfolio(
        n_accounts=cash.shape[0],
        underlyings=v.underlyings,
        account=np.concatenate([r, rs]),
        kind=np.concatenate([kind, np.full(rs.size, SPOT, dtype=np.int8)]),
        und=np.concatenate([und, us]),
        qty=np.concatenate([qty[r, i], spot[rs, us]]),
        strike=np.concatenate([np.where(perp, 0.0, v.inst_strike[i]), np.zeros(rs.size)]),
        expiry_s=np.concatenate([np.where(perp, 0.0, np.maximum(v.inst_expiry_t[i] - v.now, 0.0)), np.zeros(rs.size)]),
        entry_price=np.concatenate([np.where(perp, v.settle_price[und], 0.0), np.zeros(rs.size)]),
        cash=cash,
    )


def same_array(got: np.ndarray, want: np.ndarray) -> bool:
    if got.dtype != want.dtype or got.shape != want.shape:
        return False
    if got.dtype == np.float64:
        return bool(np.array_equal(got.view(np.uint64), want.view(np.uint64)))
    return bool(np.array_equal(got, want))


def assert_same_portfolio(got: Portfolio, want: Portfolio) -> None:
    assert got.n_accounts == want.n_accounts and got.underlyings == want.underlyings
    for f in ("account", "kind", "und", "qty", "strike", "expiry_s", "entry_price", "cash", "numeraire", "asset"):
        assert same_array(getattr(got, f), getattr(want, f)), f


def odd_book(shape: tuple[int, int], seed: int, density: float = 0.3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = np.zeros(shape)
    m = rng.random(shape) < density
    a[m] = rng.choice(ODD, int(m.sum()))
    return a


def assert_entries_match(qty: np.ndarray, spot: np.ndarray) -> None:
    e = book_entries(qty, spot)
    for (rows, cols, flat), a in (
        ((e.qty_rows, e.qty_cols, e.qty_flat), qty),
        ((e.spot_rows, e.spot_cols, e.spot_flat), spot),
    ):
        want = np.nonzero(a)
        assert same_array(rows, want[0]) and same_array(cols, want[1])
        assert same_array(flat, np.flatnonzero(np.ravel(a) != 0))
        ref = reference_nonzero(a)
        assert same_array(rows, ref[0]) and same_array(cols, ref[1])
    q, s = e.values(qty, spot)
    assert same_array(q, qty[np.nonzero(qty)]) and same_array(s, spot[np.nonzero(spot)])


@pytest.mark.parametrize("shape", [(0, 0), (0, 4), (4, 0), (1, 1), (1, 7), (7, 1), (40, 9)])
def test_the_entries_are_numpys_nonzero_on_odd_values(shape):
    for seed in range(3):
        qty = odd_book(shape, seed)
        spot = odd_book((shape[0], 2), seed + 10)
        assert_entries_match(qty, spot)
        assert_entries_match(qty[::2], spot[::2])  # strided: a gathered copy of every other row
        assert_entries_match(qty[:, ::2], spot[:, ::-1])


def test_signed_zeros_are_no_entries_and_nan_and_subnormals_are():
    qty = np.array([[-0.0, 0.0, 5e-324], [NAN_A, -0.0, -5e-324], [0.0, 0.0, 0.0]])
    e = book_entries(qty, np.zeros((3, 1)))
    assert e.qty_rows.tolist() == [0, 1, 1] and e.qty_cols.tolist() == [2, 0, 2]
    assert e.qty_flat.tolist() == [2, 3, 5] and e.spot_rows.size == 0


def assert_rows_match(qty: np.ndarray, spot: np.ndarray, rows: np.ndarray) -> None:
    n = qty.shape[0]
    got = rows_entries(book_entries(qty, spot), rows, n)
    assert got is not None
    want = book_entries(qty[rows], spot[rows])
    for f in ("qty_rows", "qty_cols", "spot_rows", "spot_cols"):
        assert same_array(getattr(got, f), getattr(want, f)), f
    q_got, s_got = got.values(qty, spot)  # flat indices into the whole book
    q_want, s_want = want.values(qty[rows], spot[rows])
    assert same_array(q_got, q_want) and same_array(s_got, s_want)


@pytest.mark.parametrize("seed", range(6))
def test_ascending_rows_take_the_whole_books_entries_as_a_gather_and_scan_finds_them(seed):
    rng = np.random.default_rng(seed)
    n, k = int(rng.integers(1, 60)), int(rng.integers(1, 12))
    qty, spot = odd_book((n, k), seed, 0.2), odd_book((n, 2), seed + 50, 0.1)
    picks = [
        np.zeros(0, dtype=np.int64),
        np.array([0]),
        np.array([n - 1]),
        np.arange(n),
        np.flatnonzero(rng.random(n) < 0.5),
        np.flatnonzero(qty.any(axis=1) == 0),  # rows without positions only
    ]
    for rows in picks:
        assert_rows_match(qty, spot, rows.astype(np.int64))


def test_rows_out_of_order_repeated_or_out_of_range_are_left_to_the_gather():
    qty, spot = odd_book((6, 3), 1), odd_book((6, 1), 2)
    e = book_entries(qty, spot)
    for rows in ([2, 1], [1, 1], [0, 2, 2], [-1, 2], [0, 6], [5, 0]):
        assert rows_entries(e, np.array(rows, dtype=np.int64), 6) is None, rows
    assert rows_entries(e, np.array([0, 5], dtype=np.int64), 6) is not None


def venue() -> tuple[OptionsVenue, np.ndarray, tuple[int, int, int]]:
    env = Env()
    feeds = {"ETH": FixedPrice(2000.0), "USDC": FixedPrice(1.0)}
    for h in ("mm", "alice"):
        env.ledger.mint("USDC", h, 1e8, "test")
    env.ledger.mint("ETH", "alice", 100.0, "test")
    v = OptionsVenue(OptionsVenueParams(vol=VolSurfaceParams()), feeds, env)
    v.set_market_maker(int(v.open_accounts("mm", [1e7])[0]))
    rows = v.open_accounts("alice", [1100.0, 5000.0, 20_000.0, 50_000.0, 8000.0, 3000.0])
    put, call, perp = sample_trades(v, rows)
    v.deposit_spot("alice", rows[4:5], "ETH", [1.0])
    return v, rows, (put, call, perp)


def assert_venue_portfolios(v: OptionsVenue) -> None:
    n = v.n_accounts
    assert_same_portfolio(v.portfolio(), reference_build(v, v.cash.copy(), v.qty, v.spot))
    for rows in ([], [0], [n - 1], list(range(n)), [1, 3, 4], [4, 1], [2, 2], [-1, 0]):
        r = np.asarray(rows, dtype=np.int64)
        assert_same_portfolio(v.portfolio(r), reference_build(v, v.cash[r], v.qty[r], v.spot[r]))
    assert_same_portfolio(v._build(v.cash, v.qty, v.spot), reference_build(v, v.cash, v.qty, v.spot))


def test_the_venues_portfolios_are_the_old_builds_after_each_state_change():
    v, rows, (put, call, perp) = venue()
    assert_venue_portfolios(v)
    v.trade("alice", rows[5:6], call, [1.0])  # a new position: the kept entries are a past state's
    assert_venue_portfolios(v)
    v.trade("alice", rows[5:6], call, [-1.0])  # closed again: no entry
    assert_venue_portfolios(v)
    extra = v.open_accounts("alice", [2000.0])  # a new book array
    v.trade("alice", extra, perp, [0.5])
    assert_venue_portfolios(v)
    v.env.clock.block += 100  # a new market: time to expiry moves
    assert_venue_portfolios(v)
    v.accrue(12.0)
    assert_venue_portfolios(v)


def test_a_replaced_book_array_is_scanned_again_in_the_same_state():
    v, rows, (put, call, perp) = venue()
    before = v.portfolio()
    qty = v.qty.copy()
    qty[int(rows[5]), put] = -1.0  # the same state version, a new array
    v.qty = qty
    got = v.portfolio()
    assert got.n_positions == before.n_positions + 1
    assert_venue_portfolios(v)


@pytest.mark.parametrize("seed", range(4))
def test_long_units_from_the_kept_entries_are_the_dense_sum(seed):
    v, rows, (put, call, perp) = venue()
    rng = np.random.default_rng(seed)
    for _ in range(5):
        r = rows[int(rng.integers(0, rows.size)) : None][:1]
        v.trade("alice", r, [put, call, perp][int(rng.integers(0, 3))], [float(rng.normal())], check_margin=False)
        got = v.metrics()["open_interest_usd"]
        long_units = np.maximum(v.qty, 0.0).sum(axis=0)
        want = float(long_units @ v.prices()[v.inst_und])
        assert np.float64(got).view(np.uint64) == np.float64(want).view(np.uint64)


def test_entries_are_kept_per_market_key_and_state_and_found_again_on_either_change():
    """The entries are kept with the market key and state version they were found at (not through `_values()`):
    the key a caller holds finds the kept entries without a scan; a write behind the venue's back (no version bump)
    is found at the next market, as it was while the entries were kept with the equity."""
    v, rows, (put, call, perp) = venue()
    mk = v.market_key()
    first = v._entries(mk)
    assert v._entries(mk) is first and v._entries() is first  # held key, or taken again: the same market
    assert v._entries(v.market_key()) is first  # an equal key, a new object
    v.qty[int(rows[5]), put] = -2.0  # behind the venue's back: trusted within this state and market ...
    assert v._entries() is first
    v.env.clock.block += 1  # ... and found at the next market
    assert v._entries() is not first
    assert_venue_portfolios(v)
    kept = v._entries()
    v.trade("alice", rows[4:5], perp, [1.0])  # a state change at the same market
    assert v._entries(v.market_key()) is not kept
    assert_venue_portfolios(v)


def test_a_held_key_of_another_market_finds_the_entries_again():
    """A key held from another market never reuses entries found at this one (the key is compared, not trusted)."""
    v, rows, (put, call, perp) = venue()
    old = v.market_key()
    v.env.clock.block += 1
    now = v._entries()
    v.qty[int(rows[5]), call] = 3.0  # behind the venue's back
    got = v._entries(old)
    assert got is not now
    assert_same_portfolio(v._build(v.cash, v.qty, v.spot, old), reference_build(v, v.cash, v.qty, v.spot))


def test_the_margin_batch_and_an_adaptors_portfolio_read_the_entries_kept_at_their_key():
    """The whole-book margin batch passes its market key to `_build`; the entries it reads are the venue's kept
    ones, and the portfolio built from them is the old build's."""
    v, rows, (put, call, perp) = venue()
    v.env.clock.block += 1  # a new market: the batch finds the entries again, at the key it holds
    v.margin()
    kept = v._entries_kept
    assert kept is not None and kept[0] is v._cache_key[0] and kept[1] == v._version
    assert_same_portfolio(v.portfolio(None, kept[0]), reference_build(v, v.cash.copy(), v.qty, v.spot))
    r = np.array([1, 3, 4], dtype=np.int64)
    assert_same_portfolio(v.portfolio(r, kept[0]), reference_build(v, v.cash[r], v.qty[r], v.spot[r]))
