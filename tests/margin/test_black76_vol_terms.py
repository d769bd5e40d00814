"""ForwardShockPricer computes the vol terms of all the vol keys of a fresh valuation in one (keys x options) pass;
each key's terms (and so the values) must equal, bit for bit, the one-key-at-a-time `_vol_terms` it replaced,
which still serves keys already cached and the anonymous key None, on the degenerate options too (T = 0, K = 0,
F = 0, sigma = 0, -0.0, sigma sqrt(T) exactly at and one ulp either side of MAX_TOTAL_VOL)."""

from __future__ import annotations

import numpy as np

from defistress.protocols.margin import black76 as b76


def _book() -> tuple[np.ndarray, ...]:
    """Options (F USD, K USD, T years, call) with the edge cases of Black76.sol, and three vols per option."""
    rng = np.random.default_rng(11)
    n = 40
    f = rng.uniform(1500.0, 2500.0, n)
    k = rng.uniform(1500.0, 2500.0, n)
    t = rng.uniform(0.001, 1.0, n)
    f[0], k[1], t[2] = 0.0, 0.0, 0.0
    t[3:6] = 0.25  # sqrt(T) = 0.5: sigma = 48 puts sigma sqrt(T) exactly at the cap
    call = rng.random(n) < 0.5
    sig = rng.uniform(0.2, 1.5, n)
    sig[3], sig[4], sig[5] = 48.0, np.nextafter(48.0, 0.0), np.nextafter(48.0, 99.0)
    sig[6], sig[7] = 0.0, -0.0
    return f, k, t, call, rng.normal(0.0, 3.0, n), sig


def _reference_terms(p: b76.ForwardShockPricer, sigma: np.ndarray) -> tuple[np.ndarray, ...]:
    """`_vol_terms` of one key as it was computed for every key (the per-key path)."""
    tv = np.broadcast_to(np.asarray(sigma, dtype=np.float64), p.f.shape) * p.sqrt_t
    regular = p._ok & (tv > 0.0) & (tv < b76.MAX_TOTAL_VOL)
    inv = np.where(regular, 1.0 / np.where(regular, tv, 1.0), 0.0)
    odd = np.flatnonzero(~regular)
    return tv, inv, 0.5 * tv, odd, np.broadcast_to(np.asarray(sigma, dtype=np.float64), p.f.shape)[odd]


def test_all_keys_in_one_pass_give_each_keys_terms_and_values_bit_for_bit() -> None:
    f, k, t, call, qty, sig = _book()
    vols = {0: sig, 1: sig * 1.3, 2: np.maximum(0.0, sig * 0.6), 3: 0.7}  # a scalar vol too
    keys = (0, 1, 1, 2, 3, 0)
    mult = np.array([1.0, 0.8, 1.2, 1.0, 0.5, 2.0])
    fresh = b76.ForwardShockPricer(f, k, t, call, qty, 0.98, dedupe=False)
    one_by_one = b76.ForwardShockPricer(f, k, t, call, qty, 0.98, dedupe=False)
    one_by_one._prepare()
    for key in (0, 1, 2, 3):
        one_by_one._vol_terms(vols[key], key)  # cached one key at a time: values_grid takes the per-key path
    a, b = fresh.values_grid(mult, vols, keys), one_by_one.values_grid(mult, vols, keys)
    assert a.tobytes() == b.tobytes()
    for key in (0, 1, 2, 3):
        got, want = fresh._cache[key], _reference_terms(fresh, vols[key])
        assert len(got) == 5
        for x, y in zip(got, want):
            assert x.shape == y.shape and x.tobytes() == y.tobytes(), key
    assert fresh._cache[0][3].tolist() == [0, 1, 2, 3, 5, 6, 7]  # F = 0, K = 0, T = 0, at/over the cap, sigma 0


def test_a_cached_key_or_the_anonymous_key_keeps_the_per_key_path() -> None:
    f, k, t, call, qty, sig = _book()
    p = b76.ForwardShockPricer(f, k, t, call, qty, 1.0, dedupe=False)
    first = p.values_grid(np.array([1.0, 1.1]), {0: sig}, (0, 0))
    kept = p._cache[0]
    again = p.values_grid(np.array([1.0, 1.1]), {0: sig * 2.0, 1: sig}, (0, 1))  # key 0 cached: not recomputed
    assert p._cache[0] is kept and again[0].tobytes() == first[0].tobytes()
    anon = b76.ForwardShockPricer(f, k, t, call, qty, 1.0, dedupe=False)
    row = anon.values(1.1, sig)  # key None: never cached
    assert anon._cache == {} and row.tobytes() == first[1].tobytes()
