"""Black-76 prices, caps, greeks, implied vol and the scenario repricer."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import norm

from defistress.protocols.margin import black76 as b76

pos = st.floats(min_value=1.0, max_value=1e5)
vol = st.floats(min_value=0.01, max_value=3.0)
tyr = st.floats(min_value=1 / 365, max_value=3.0)
disc = st.floats(min_value=0.5, max_value=1.0)


def test_atm_call_matches_textbook_value():
    # F = K = 100, T = 1, sigma = 0.2, D = 1: d1 = 0.1, d2 = -0.1
    # C = 100 (N(0.1) - N(-0.1)) = 100 (0.5398278 - 0.4601722) = 7.965567
    c, p = b76.call_put(100.0, 100.0, 1.0, 0.2, 1.0)
    assert c == pytest.approx(7.965567, abs=1e-6)
    assert p == pytest.approx(7.965567, abs=1e-6)  # ATM forward: C = P


def test_discounted_price_matches_independent_formula():
    f, k, t, s, d = 2000.0, 1800.0, 0.25, 0.6, np.exp(-0.05 * 0.25)
    d1 = (np.log(f / k) + 0.5 * s * s * t) / (s * np.sqrt(t))
    d2 = d1 - s * np.sqrt(t)
    call = d * (f * norm.cdf(d1) - k * norm.cdf(d2))
    put = d * (k * norm.cdf(-d2) - f * norm.cdf(-d1))
    c, p = b76.call_put(f, k, t, s, d)
    assert c == pytest.approx(call, rel=1e-12)
    assert p == pytest.approx(put, rel=1e-9)


@settings(max_examples=200, deadline=None)
@given(f=pos, k=pos, t=tyr, s=vol, d=disc)
def test_put_call_parity_holds(f, k, t, s, d):
    c, p = b76.call_put(f, k, t, s, d)
    assert c - p == pytest.approx(d * (f - k), abs=1e-7 * max(f, k))


@settings(max_examples=100, deadline=None)
@given(f=pos, k=pos, t=tyr, s=vol, d=disc)
def test_prices_stay_within_no_arbitrage_bounds(f, k, t, s, d):
    c, p = b76.call_put(f, k, t, s, d)
    assert d * max(f - k, 0) - 1e-9 * f <= c <= f * d + 1e-9
    assert d * max(k - f, 0) - 1e-9 * k <= p <= k * d + 1e-9


def test_limits_give_intrinsic_or_caps():
    d = 0.98
    # T = 0 and sigma = 0: discounted intrinsic, e.g. call 0.98 * (2000 - 1800) = 196
    c, p = b76.call_put([2000, 2000], [1800, 1800], [0.0, 0.5], [0.5, 0.0], d)
    np.testing.assert_allclose(c, [196.0, 196.0])
    np.testing.assert_allclose(p, [0.0, 0.0])
    # K = 0: call = F D = 1960, put = 0;  F = 0: put = K D = 1764, call = 0
    c, p = b76.call_put([2000, 0], [0, 1800], 0.5, 0.5, d)
    np.testing.assert_allclose(c, [1960.0, 0.0])
    np.testing.assert_allclose(p, [0.0, 1764.0])
    # sigma sqrt(T) = 30 >= 24: C = F D = 1960, P = K D = 1764 (Black76.sol MAX_TOTAL_VOL)
    c, p = b76.call_put(2000, 1800, 1.0, 30.0, d)
    assert (c, p) == (pytest.approx(1960.0), pytest.approx(1764.0))


def test_small_vol_converges_to_intrinsic():
    c = b76.price(2000, 1800, 0.5, 1e-6, True)
    assert c == pytest.approx(200.0, abs=1e-6)


def test_annualise_uses_365_day_year():
    assert b76.annualise(365 * 86_400) == 1.0
    assert b76.annualise(86_400) == pytest.approx(1 / 365)


@pytest.mark.parametrize("is_call", [True, False])
def test_greeks_match_finite_differences(is_call):
    f, k, t, s, r = 2000.0, 2100.0, 0.3, 0.7, 0.04
    d = np.exp(-r * t)
    g = b76.greeks(f, k, t, s, is_call, d, rate=r)
    h = 1e-3
    px = lambda ff=f, tt=t, ss=s: float(b76.price(ff, k, tt, ss, is_call, np.exp(-r * tt)))  # noqa: E731
    assert g.delta == pytest.approx((px(f + h) - px(f - h)) / (2 * h), rel=1e-6)
    assert g.gamma == pytest.approx((px(f + 1) - 2 * px() + px(f - 1)) / 1.0, rel=1e-4)
    assert g.vega == pytest.approx((px(ss=s + 1e-5) - px(ss=s - 1e-5)) / 2e-5, rel=1e-6)
    # theta = value change as calendar time passes = -dV/dT
    assert g.theta == pytest.approx(-(px(tt=t + 1e-6) - px(tt=t - 1e-6)) / 2e-6, rel=1e-5)


def test_call_delta_is_undiscounted_nd1_when_d_is_one():
    f, k, t, s = 2000.0, 2000.0, 0.25, 0.8
    d1 = 0.5 * s * np.sqrt(t)  # ln(F/K) = 0
    assert b76.delta(f, k, t, s, True) == pytest.approx(norm.cdf(d1))
    assert b76.delta(f, k, t, s, False) == pytest.approx(norm.cdf(d1) - 1.0)


@settings(max_examples=60, deadline=None)
@given(f=st.floats(100, 5000), m=st.floats(0.5, 1.6), t=tyr, s=st.floats(0.05, 2.0), call=st.booleans())
def test_implied_vol_round_trips(f, m, t, s, call):
    k = f * m
    p = b76.price(f, k, t, s, call, 0.99)
    if p < 1e-8 * f:  # price below float resolution: vol not identifiable
        return
    iv = b76.implied_vol(p, f, k, t, call, 0.99)
    assert float(b76.price(f, k, t, iv, call, 0.99)) == pytest.approx(float(p), rel=1e-7, abs=1e-9 * f)


def test_implied_vol_vectorised_and_out_of_band_is_nan():
    f, k, t = 2000.0, np.array([1500.0, 2000.0, 2600.0, 2000.0]), 0.2
    s = np.array([0.4, 0.9, 1.5, 0.5])
    calls = np.array([True, False, True, True])
    p = b76.price(f, k, t, s, calls)
    p[3] = 5000.0  # above the F*D cap: no vol can produce it
    iv = b76.implied_vol(p, f, k, t, calls)
    np.testing.assert_allclose(iv[:3], s[:3], rtol=1e-8)
    assert np.isnan(iv[3])


def test_implied_vol_brentq_fallback_for_far_otm():
    # far OTM short-dated: Newton from the ATM guess fails, brentq must finish the job
    f, k, t, s = 2000.0, 3400.0, 7 / 365, 1.2
    p = b76.price(f, k, t, s, True)
    iv = b76.implied_vol(p, f, k, t, True, params=b76.IVSolverParams(newton_steps=0))
    assert iv == pytest.approx(s, rel=1e-8)


def test_shock_pricer_matches_direct_pricing_including_edge_cases():
    rng = np.random.default_rng(3)
    n = 300
    f = np.full(n, 2000.0)
    k = rng.uniform(500, 4000, n)
    t = rng.uniform(0, 1, n)
    s = rng.uniform(0, 1.5, n)
    k[:3], t[3:6], s[6:9], s[9] = 0.0, 0.0, 0.0, 80.0
    call = rng.random(n) < 0.5
    q = rng.normal(size=n)
    pr = b76.ForwardShockPricer(f, k, t, call, q, 0.97)
    for m in (0.34, 0.9, 1.0, 1.18, 6.0):
        np.testing.assert_allclose(
            pr.values(m, s * 1.3, "up"), q * b76.price(f * m, k, t, s * 1.3, call, 0.97), rtol=1e-10, atol=1e-8
        )


def test_iv_solver_params_validate():
    with pytest.raises(ValueError, match="vol_min"):
        b76.IVSolverParams(vol_min=2.0, vol_max=1.0)


def test_delta_alone_is_bit_identical_to_the_greeks_delta():
    """`delta` skips the other greeks: same operations, same bits, the degenerate options included (T = 0, sigma = 0,
    K = 0, F = 0, a capped total vol), and the hand values at the money and deep in / out of the money."""
    f = np.array([2000.0, 2000.0, 2000.0, 0.0, 2000.0, 2000.0, 2000.0, 2500.0, 1500.0])
    k = np.array([1800.0, 2200.0, 0.0, 1500.0, 2000.0, 2000.0, 2000.0, 2000.0, 2000.0])
    t = np.array([0.1, 0.1, 0.1, 0.1, 0.0, 0.1, 0.1, 0.0, 0.0])
    s = np.array([0.7, 0.6, 0.6, 0.6, 0.6, 0.0, 100.0, 0.5, 0.5])
    for call in (True, False, np.arange(f.size) % 2 == 0):
        for d in (1.0, 0.97):
            assert np.array_equal(b76.delta(f, k, t, s, call, d), b76.greeks(f, k, t, s, call, d).delta)
    # ATM call with T -> 0 limit: N(0.5 sigma sqrt(T)); expired ITM call: D; expired OTM call: 0; puts: call - D
    atm = b76.delta(2000.0, 2000.0, 0.25, 0.4, True, 1.0)
    assert atm == pytest.approx(0.5 + 0.1 / np.sqrt(2 * np.pi) * 1.0, abs=1e-4)  # N(x) ~ 0.5 + x phi(0) (x = 0.1)
    assert b76.delta(2500.0, 2000.0, 0.0, 0.5, True, 0.97) == 0.97
    assert b76.delta(1500.0, 2000.0, 0.0, 0.5, True, 0.97) == 0.0
    assert b76.delta(1500.0, 2000.0, 0.0, 0.5, False, 0.97) == -0.97
