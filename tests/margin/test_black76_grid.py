"""ForwardShockPricer.values_grid prices every scenario of a grid in one (scenarios x options) array: each row must be
the Black-76 value of its scenario (checked against the general path `call_put`, which computes ln(K/F) and the caps
its own way), bit-identical to that row priced alone, with or without the series de-duplication and the two-thread
split, the degenerate options (T = 0, sigma = 0, K = 0, F = 0, sigma sqrt(T) >= 24) and forwards with a fixed part
included."""

from __future__ import annotations

import numpy as np
import pytest

from defistress.protocols.margin import black76 as b76

# 10 series: plain calls/puts, T = 0, sigma = 0 (via its vol), K = 0, F = 0, a capped total vol, a fixed part
F = np.array([2000.0, 2000.0, 1990.0, 2000.0, 2000.0, 2000.0, 0.0, 2000.0, 2000.0, 2000.0])
K = np.array([1800.0, 2200.0, 2000.0, 1900.0, 2100.0, 0.0, 1500.0, 2500.0, 1700.0, 2300.0])
T = np.array([7, 30, 7, 0, 30, 30, 30, 30, 7, 90], dtype=np.float64) / 365.0
CALL = np.array([0, 1, 1, 0, 1, 1, 0, 1, 0, 1], dtype=bool)
FIXED = np.array([0, 0, 0, 0, 0, 0, 0, 0, 150.0, 0])
SIG = np.array([0.7, 0.6, 0.65, 0.6, 0.0, 0.6, 0.5, 100.0, 0.8, 0.55])  # 100 x sqrt(30/365) > 24: capped
MULT = np.array([1.0, 0.5, 0.84, 1.16, 2.0, 1e-9, 1.0])
KEYS = ("none", "up", "none", "down", "up", "up", "down")


def vols(s: np.ndarray) -> dict[str, np.ndarray]:
    return {"none": s, "up": s * 1.4, "down": s * 0.6}


def book(n: int, seed: int):
    rng = np.random.default_rng(seed)
    s = rng.integers(0, F.size, n)
    return F[s], K[s], T[s], CALL[s], rng.normal(0, 3, n), FIXED[s], SIG[s]


def expected(f, k, t, call, qty, fixed, sig, disc):
    """(S, P) from the general path: qty x call_put at F' = (F - fixed) m + fixed, the scenario's vol."""
    v = vols(sig)
    rows = []
    for m, key in zip(MULT, KEYS):
        c, p = b76.call_put((f - fixed) * m + fixed, k, t, v[key], disc)
        rows.append(qty * np.where(call, c, p))
    return np.array(rows)


@pytest.mark.parametrize("dedupe", [True, False])
def test_every_row_is_the_black76_value_of_its_scenario(dedupe: bool):
    f, k, t, call, qty, fixed, sig = book(300, 1)
    pr = b76.ForwardShockPricer(f, k, t, call, qty, 0.98, fixed=fixed, dedupe=dedupe)
    assert (pr._unit is not None) == dedupe
    got = pr.values_grid(MULT, vols(sig), KEYS)
    assert got.shape == (MULT.size, f.size)
    np.testing.assert_allclose(got, expected(f, k, t, call, qty, fixed, sig, 0.98), rtol=1e-12, atol=1e-9)
    # a put on a zero forward is worth K D whatever the scenario; a strike-0 call F' D
    put0, call0 = (f == 0.0) & ~call, (k == 0.0) & call
    assert np.array_equal(got[:, put0], np.broadcast_to(qty[put0] * (k[put0] * 0.98), got[:, put0].shape))
    np.testing.assert_allclose(got[:, call0], (MULT[:, None] * f[call0]) * 0.98 * qty[call0], rtol=1e-15)


def test_a_row_is_bit_identical_to_that_scenario_priced_alone():
    f, k, t, call, qty, fixed, sig = book(300, 2)
    v = vols(sig)
    for dedupe in (True, False):
        grid = b76.ForwardShockPricer(f, k, t, call, qty, 0.99, fixed=fixed, dedupe=dedupe).values_grid(MULT, v, KEYS)
        for s, (m, key) in enumerate(zip(MULT, KEYS)):
            alone = b76.ForwardShockPricer(f, k, t, call, qty, 0.99, fixed=fixed, dedupe=dedupe).values(m, v[key], key)
            assert np.array_equal(grid[s], alone), (dedupe, s)
    # de-duplicated and per-position pricing agree bit for bit on the whole grid
    a = b76.ForwardShockPricer(f, k, t, call, qty, 0.99, fixed=fixed).values_grid(MULT, v, KEYS)
    b = b76.ForwardShockPricer(f, k, t, call, qty, 0.99, fixed=fixed, dedupe=False).values_grid(MULT, v, KEYS)
    assert np.array_equal(a, b)


def test_the_two_thread_split_gives_the_same_array(monkeypatch: pytest.MonkeyPatch):
    # 7 scenarios x 8,000 distinct options >= _PARALLEL_MIN: two threads on two halves of the options
    rng = np.random.default_rng(3)
    n = 8_000
    f, k = rng.uniform(1500, 2500, n), rng.uniform(1000, 3000, n)
    t, call, qty, sig = rng.uniform(0, 0.5, n), rng.random(n) < 0.5, rng.normal(0, 2, n), rng.uniform(0.2, 1.0, n)
    assert MULT.size * n >= b76._PARALLEL_MIN
    threaded = b76.ForwardShockPricer(f, k, t, call, qty, 0.97).values_grid(MULT, vols(sig), KEYS)
    monkeypatch.setattr(b76, "_PARALLEL_MIN", 10**12)
    single = b76.ForwardShockPricer(f, k, t, call, qty, 0.97).values_grid(MULT, vols(sig), KEYS)
    assert np.array_equal(threaded, single)
    np.testing.assert_allclose(single, expected(f, k, t, call, qty, 0.0, sig, 0.97), rtol=1e-11, atol=1e-9)
