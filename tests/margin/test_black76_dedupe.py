"""ForwardShockPricer prices each distinct option series once when a book repeats them (many accounts holding the
same series): the values must equal, bit for bit, pricing every position on its own (dedupe=False, the
reference path), for every scenario move and vol, the degenerate options (T = 0, sigma = 0, K = 0) included."""

from __future__ import annotations

import numpy as np

from defistress.protocols.margin import black76 as b76


def book(rng: np.random.Generator, n: int = 400):
    """n positions over 12 series (2 of them degenerate), each position with its own qty."""
    f = np.array([2000.0, 2000.0, 2000.0, 1990.0, 2000.0, 2000.0, 60_000.0, 60_000.0, 2000.0, 2000.0, 2000.0, 2000.0])
    k = np.array([1800.0, 2200.0, 2000.0, 1800.0, 1500.0, 2500.0, 55_000.0, 65_000.0, 0.0, 1900.0, 2100.0, 1700.0])
    t = np.array([7, 30, 7, 7, 90, 90, 30, 30, 30, 0, 7, 30], dtype=np.float64) / 365.0
    call = np.array([0, 1, 1, 0, 0, 1, 0, 1, 1, 0, 1, 0], dtype=bool)
    fixed = np.array([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 150.0, 0])
    s = rng.integers(0, f.size, n)
    qty = rng.normal(0, 3, n)
    sig_series = np.array([0.7, 0.6, 0.65, 0.7, 0.8, 0.55, 0.5, 0.45, 0.6, 0.6, 0.0, 0.9])
    return f[s], k[s], t[s], call[s], qty, fixed[s], sig_series[s], s


def test_deduplicated_values_equal_every_position_priced_on_its_own():
    rng = np.random.default_rng(7)
    f, k, t, call, qty, fixed, sig, series = book(rng)
    fast = b76.ForwardShockPricer(f, k, t, call, qty, 0.99, fixed=fixed)
    ref = b76.ForwardShockPricer(f, k, t, call, qty, 0.99, fixed=fixed, dedupe=False)
    assert fast._unit is not None and ref._unit is None
    for m in (0.5, 0.8, 1.0, 1.25, 3.0):
        for j, s in enumerate((sig, sig * 1.5, np.maximum(0.3, sig * 0.7))):
            a, b = fast.values(m, s, key=j), ref.values(m, s, key=j)
            assert np.array_equal(a, b), (m, j)


def test_a_vol_that_differs_within_a_series_falls_back_to_every_position():
    rng = np.random.default_rng(8)
    f, k, t, call, qty, fixed, sig, series = book(rng)
    sig2 = sig + rng.uniform(0, 0.01, sig.size)  # each position its own vol: no series shares one
    fast = b76.ForwardShockPricer(f, k, t, call, qty, 1.0, fixed=fixed)
    ref = b76.ForwardShockPricer(f, k, t, call, qty, 1.0, fixed=fixed, dedupe=False)
    assert np.array_equal(fast.values(0.9, sig2), ref.values(0.9, sig2))
    # and the prices themselves are right: each position = qty x the Black-76 price of its series (fixed = 0)
    plain = fixed == 0
    want = qty[plain] * np.where(call[plain], *b76.call_put(f[plain] * 0.9, k[plain], t[plain], sig2[plain], 1.0))
    np.testing.assert_allclose(fast.values(0.9, sig2)[plain], want, rtol=1e-12, atol=1e-9)


def test_a_map_kept_from_an_earlier_book_is_used_only_where_it_holds():
    """The series map of the last book of a size is tried first (a margin model revalues the same book every block
    at new forwards): a book whose rows it groups wrongly gets its own map, and the values stay bit-identical."""
    rng = np.random.default_rng(9)
    f, k, t, call, qty, fixed, sig, series = book(rng)
    b76.ForwardShockPricer(f, k, t, call, qty, 0.99, fixed=fixed)  # leaves its map for books of this size
    first, inv = b76.series_map(
        np.ascontiguousarray(np.stack([f, k, t, np.full(f.size, 0.99), fixed, call.astype(float)], axis=1))
    )
    assert np.array_equal(series[first][inv], series)  # every position maps to a row of its own series
    # same size, other series: two positions that shared a series no longer do (strike moved for one of them)
    k2 = k.copy()
    j = np.flatnonzero(series == series[0])[1]
    k2[j] = k2[j] + 1.0
    for ff, kk in ((f * 1.01, k), (f, k2)):  # new forwards, same pattern; and a broken pattern
        fast = b76.ForwardShockPricer(ff, kk, t, call, qty, 0.99, fixed=fixed)
        ref = b76.ForwardShockPricer(ff, kk, t, call, qty, 0.99, fixed=fixed, dedupe=False)
        assert fast._unit is not None
        cols = np.stack([ff, kk, t, np.full(ff.size, 0.99), fixed, call.astype(float)], axis=1)
        assert np.array_equal(cols[fast._first][fast._inv], cols)
        for m in (0.7, 1.0, 1.3):
            assert np.array_equal(fast.values(m, sig, key=0), ref.values(m, sig, key=0))
    assert fast._first.size == np.unique(series).size + 1  # the moved strike is a series of its own


def test_a_finer_map_of_an_earlier_book_is_not_kept():
    """A map that splits equal rows (the identity map of a book whose rows were all distinct) would be valid for any
    book of its size and switch the de-duplication off for good: it is replaced by the book's own map."""
    rng = np.random.default_rng(10)
    n = 256
    distinct = b76.ForwardShockPricer(rng.uniform(1000, 3000, n), rng.uniform(1000, 3000, n), 0.1, True, 1.0)
    assert distinct._unit is None  # every row its own series: no de-duplication
    f, k, t, call, qty, fixed, sig, series = book(rng, n)
    fast = b76.ForwardShockPricer(f, k, t, call, qty, 0.99, fixed=fixed)
    assert fast._unit is not None and fast._first.size == np.unique(series).size


def test_same_shape_columns_are_used_as_given_and_others_broadcast_as_numpy_does():
    """`_same_shape` replaces np.broadcast_arrays in ForwardShockPricer: equal-shape columns pass through (the same
    objects), a scalar or a shorter shape is broadcast exactly as np.broadcast_arrays does."""
    a, b = np.array([1.0, -0.0, np.nan]), np.array([2.0, 3.0, np.inf])
    same = b76._same_shape(a, b)
    assert same[0] is a and same[1] is b
    for args in ((a, np.asarray(0.99)), (np.asarray(1.0), a, b), (a.reshape(3, 1), b)):
        got, want = b76._same_shape(*args), np.broadcast_arrays(*args)
        assert len(got) == len(want)
        for g, w in zip(got, want):
            assert g.shape == w.shape and np.array_equal(g.view(np.uint64), w.view(np.uint64))


def test_a_deduplicated_book_computes_the_per_position_terms_only_when_it_falls_back():
    """The per-position terms (ln F/K, sqrt T, F D, K D) are prepared only for the general path: a deduplicated book
    priced at one vol per series never needs them; a vol that differs within a series prepares them, and both
    give the values of the reference pricer bit for bit."""
    rng = np.random.default_rng(11)
    f, k, t, call, qty, fixed, sig, series = book(rng)
    fast = b76.ForwardShockPricer(f, k, t, call, qty, 0.98, fixed=fixed)
    ref = b76.ForwardShockPricer(f, k, t, call, qty, 0.98, fixed=fixed, dedupe=False)
    assert not fast._prepared and ref._prepared
    assert np.array_equal(fast.values(1.1, sig, key=0), ref.values(1.1, sig, key=0))
    assert not fast._prepared
    sig2 = sig * (1.0 + 1e-9 * np.arange(sig.size))  # one position's vol differs from its series' others
    assert np.array_equal(fast.values(0.9, sig2, key=1), ref.values(0.9, sig2, key=1))
    assert fast._prepared


def test_a_deduplicated_grid_equals_the_reference_grid_and_sums_like_bincount():
    """The deduplicated grid is returned as the transpose of a (positions x scenarios) array: every value equals the
    reference pricer's bit for bit, and its group sums (GroupSums, as the margin model takes them) equal one
    bincount per scenario row."""
    from defistress.protocols.margin.group_sum import GroupSums

    rng = np.random.default_rng(12)
    f, k, t, call, qty, fixed, sig, series = book(rng, n=600)
    fast = b76.ForwardShockPricer(f, k, t, call, qty, 0.97, fixed=fixed)
    ref = b76.ForwardShockPricer(f, k, t, call, qty, 0.97, fixed=fixed, dedupe=False)
    mult = np.array([1.0, 0.5, 0.8, 1.25, 3.0, 1.0])
    vols = {0: sig, 1: sig * 1.4, 2: np.maximum(0.2, sig * 0.6)}
    keys = (0, 1, 2, 0, 1, 2)
    a, b = fast.values_grid(mult, vols, keys), ref.values_grid(mult, vols, keys)
    assert a.shape == b.shape == (mult.size, f.size)
    assert np.array_equal(a.view(np.uint64), b.view(np.uint64))
    grp = rng.integers(0, 40, f.size)
    got = GroupSums(sparse_min=0)(grp, a, 40)
    want = np.stack([np.bincount(grp, weights=b[r], minlength=40) for r in range(mult.size)])
    assert np.array_equal(got.view(np.uint64), want.view(np.uint64))
