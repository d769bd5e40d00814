"""VaR / ES: analytic constants of docs/margin-methods.md section 8, hand-computed HS/EWMA cases, parametric
and Monte Carlo agreement, full revaluation of options."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.integrate import quad
from scipy.optimize import brentq
from scipy.stats import ncx2, norm

from defistress.protocols.margin.catalog import get_model
from defistress.protocols.margin.portfolio import MarketState, Portfolio
from defistress.protocols.margin.var import (
    VaRMargin,
    VaRParams,
    cholesky_scenarios,
    es_over_sigma,
    ewma_vol,
    filtered_returns,
    mark_to_market,
    normal_var_es,
    revalue_pnl,
    var_es_from_pnl,
    z_alpha,
)

ETH = MarketState(spot={"ETH": 2000.0}, vol={"ETH": 0.6})


def one(*positions, cash=0.0):
    return Portfolio.from_records([{"name": "a", "cash": cash, "positions": list(positions)}])


LONG_ETH = {"kind": "spot", "underlying": "ETH", "qty": 1.0}


@pytest.mark.parametrize(
    "alpha, z, es",
    [(0.95, 1.644854, 2.062713), (0.975, 1.959964, 2.337803), (0.99, 2.326348, 2.665214), (0.995, 2.575829, 2.891949)],
)
def test_normal_constants_match_section_8(alpha, z, es):
    assert z_alpha(alpha) == pytest.approx(z, abs=1e-6)
    assert es_over_sigma(alpha) == pytest.approx(es, abs=1e-6)


def test_normal_var_scales_with_square_root_of_horizon():
    var, es = normal_var_es(100.0, 0.99, horizon=4.0)  # sigma sqrt(h) = 200
    assert var == pytest.approx(2.326348 * 200, abs=1e-3) and es == pytest.approx(2.665214 * 200, abs=1e-3)


def test_confidence_outside_range_is_rejected():
    with pytest.raises(ValueError, match="confidence"):
        z_alpha(1.0)
    with pytest.raises(ValueError, match="method='garch'.*allowed"):
        VaRParams(method="garch")


def test_empirical_var_and_es_of_a_known_loss_list():
    # losses 1..100: quantile 0.99 with linear interpolation at position 99 * 0.99 = 98.01 -> 99 + 0.01 = 99.01;
    # ES = mean of losses >= 99.01 = {100} -> 100
    var, es = var_es_from_pnl(-np.arange(1.0, 101.0), 0.99)
    assert var == pytest.approx(99.01) and es == pytest.approx(100.0)


def test_ewma_recursion_by_hand():
    # sigma2_1 = 0.94 * 1e-4 + 0.06 * 0.01^2 = 1e-4; sigma2_2 = 0.94 * 1e-4 + 0.06 * 0.02^2 = 1.18e-4
    sig = ewma_vol(np.array([0.01, 0.02]), 0.94, init_var=1e-4)
    assert sig**2 == pytest.approx([1e-4, 1e-4, 1.18e-4])


def test_filtered_hs_keeps_a_constant_vol_series_and_scales_up_after_a_vol_jump():
    flat = np.tile([0.01, -0.01], 50)
    assert filtered_returns(flat)[:, 0] == pytest.approx(flat)
    rng = np.random.default_rng(3)
    jump = np.concatenate([rng.normal(0, 0.01, 300), rng.normal(0, 0.05, 10)])
    hs = VaRMargin(VaRParams(method="hs", horizon_days=1, returns={"ETH": jump})).risk(one(LONG_ETH), ETH)
    fhs = VaRMargin(VaRParams(method="fhs", horizon_days=1, returns={"ETH": jump})).risk(one(LONG_ETH), ETH)
    assert fhs.var[0] > 1.5 * hs.var[0]


def test_hs_revalues_a_spot_position_exactly():
    rets = np.linspace(-0.1, 0.1, 201)
    r = VaRMargin(VaRParams(method="hs", horizon_days=1, returns={"ETH": rets})).risk(one(LONG_ETH), ETH)
    pnl = 2000.0 * (np.exp(rets) - 1.0)
    assert r.var[0] == pytest.approx(np.quantile(-pnl, 0.99))
    assert r.var[0] == pytest.approx(-2000.0 * (np.exp(-0.098) - 1.0))  # 3rd lowest of 201 returns: -0.098


def test_delta_normal_of_two_correlated_spots_by_hand():
    # 1 ETH (2000 USD, vol 0.6) + 0.05 BTC (3000 USD, vol 0.5), rho 0.5, 1 day:
    # sigma_p^2 = (1200^2 + 1500^2 + 2 * 0.5 * 1200 * 1500) / 365 = 5,490,000 / 365
    pf = one(LONG_ETH, {"kind": "spot", "underlying": "BTC", "qty": 0.05})
    mkt = MarketState(spot={"ETH": 2000.0, "BTC": 60_000.0}, vol={"ETH": 0.6, "BTC": 0.5})
    m = VaRMargin(VaRParams(method="normal", horizon_days=1, correlation={"ETH/BTC": 0.5}))
    sig = np.sqrt(5_490_000 / 365)
    r = m.risk(pf, mkt)
    assert r.var[0] == pytest.approx(2.326348 * sig, rel=1e-6) and r.es[0] == pytest.approx(2.665214 * sig, rel=1e-6)


STRADDLE = (
    {"kind": "call", "underlying": "ETH", "strike": 2000.0, "expiry_days": 7, "qty": -1.0},
    {"kind": "put", "underlying": "ETH", "strike": 2000.0, "expiry_days": 7, "qty": -1.0},
)
S_1D = 0.6 * np.sqrt(1 / 365)  # stdev of the one-day log return


def short_straddle_value(f: float, k: float = 2000.0, sigma: float = 0.6, t: float = 7 / 365) -> float:
    """Value (USD, negative) of the short 7-day ATM straddle, Black-76 at rate 0 (Hull 18.8), written out here."""
    d1 = (np.log(f / k) + sigma**2 * t / 2) / (sigma * np.sqrt(t))
    d2 = d1 - sigma * np.sqrt(t)
    call = f * norm.cdf(d1) - k * norm.cdf(d2)
    put = k * norm.cdf(-d2) - f * norm.cdf(-d1)
    return -(call + put)


def straddle_loss_quantile(alpha: float) -> tuple[float, float]:
    """Exact alpha-quantile of the one-day loss of the short straddle under full revaluation (no decay), and the
    loss density there: P(loss > L) = Phi(z_lo(L)) + 1 - Phi(z_hi(L)), z_lo < z_hi the roots of loss(z) = L."""
    v0 = short_straddle_value(2000.0)
    loss = lambda z: v0 - short_straddle_value(2000.0 * np.exp(S_1D * z))  # noqa: E731
    z_min = brentq(lambda z: loss(z + 1e-6) - loss(z - 1e-6), -3, 3)  # loss is smallest near z = 0

    def tail(level: float) -> float:
        lo = brentq(lambda z: loss(z) - level, -10, z_min)
        hi = brentq(lambda z: loss(z) - level, z_min, 10)
        return norm.cdf(lo) + norm.sf(hi)

    q = brentq(lambda x: tail(x) - (1 - alpha), loss(z_min) + 1e-9, min(loss(-10), loss(10)))
    return q, (tail(q - 1e-3) - tail(q + 1e-3)) / 2e-3


def test_cornish_fisher_equals_normal_without_gamma():
    kw = dict(horizon_days=1.0)
    n = VaRMargin(VaRParams(method="normal", **kw)).risk(one(LONG_ETH), ETH)
    cf = VaRMargin(VaRParams(method="cornish-fisher", **kw)).risk(one(LONG_ETH), ETH)
    # 1 ETH: dollar delta 2000, no gamma: VaR = z·2000·0.6·sqrt(1/365), ES = phi(z)/0.01 · the same sigma
    assert n.var[0] == pytest.approx(2.326348 * 2000 * S_1D, rel=1e-6)
    assert cf.var[0] == pytest.approx(2.326348 * 2000 * S_1D, rel=1e-6)
    assert cf.es[0] == pytest.approx(2.665214 * 2000 * S_1D, rel=1e-6)


def test_cornish_fisher_of_a_short_straddle_matches_an_independent_expansion():
    # Greeks of the short ATM straddle (Black-76, rate 0): d1 = 0.6·sqrt(7/365)/2; dollar delta
    # −(2N(d1) − 1)·F, dollar gamma −2·F·phi(d1)/(sigma·sqrt(T)).
    f, t = 2000.0, 7 / 365
    d1 = 0.6 * np.sqrt(t) / 2
    delta, gamma = -(2 * norm.cdf(d1) - 1) * f, -2 * f * norm.pdf(d1) / (0.6 * np.sqrt(t))
    # PnL = delta·r + gamma·r²/2 with r = S·z is c·X − delta²/(2·gamma), c = gamma·S²/2 and X noncentral
    # chi-square, 1 dof, lambda = (delta/(gamma·S))² (Mina-Ulmer 1999). Its cumulants 2^(n−1)(n−1)!(1 + n·lambda)
    # (Johnson-Kotz) give the PnL's: k_n = c^n·kappa_n, k1 shifted.
    c, lam = gamma * S_1D**2 / 2, (delta / (gamma * S_1D)) ** 2
    k1 = c * (1 + lam) - delta**2 / (2 * gamma)
    k2, k3, k4 = c**2 * 2 * (1 + 2 * lam), c**3 * 8 * (1 + 3 * lam), c**4 * 48 * (1 + 4 * lam)
    sd = np.sqrt(k2)
    skew, kurt = k3 / sd**3, k4 / sd**4
    # Cornish-Fisher quantile of the PnL at 1% (Hull, Risk Management and Financial Institutions, 13.7)
    z = norm.ppf(0.01)
    w = lambda x: x + (x**2 - 1) * skew / 6 + (x**3 - 3 * x) * kurt / 24 - (2 * x**3 - 5 * x) * skew**2 / 36  # noqa: E731
    var = -(k1 + sd * w(z))
    es = -quad(lambda x: (k1 + sd * w(x)) * norm.pdf(x), -np.inf, z)[0] / 0.01  # mean of the CF tail
    cf = VaRMargin(VaRParams(method="cornish-fisher", horizon_days=1.0)).risk(one(*STRADDLE), ETH)
    assert cf.var[0] == pytest.approx(var, rel=1e-9)
    assert cf.es[0] == pytest.approx(es, rel=1e-7)
    # the normal VaR sees only the small delta: z·|delta|·S = 2.326·66.28·0.0314 = 4.84 USD
    n = VaRMargin(VaRParams(method="normal", horizon_days=1.0)).risk(one(*STRADDLE), ETH)
    assert n.var[0] == pytest.approx(norm.ppf(0.99) * abs(delta) * S_1D, rel=1e-9)
    # against the exact quantile of the same quadratic PnL (noncentral chi-square), Cornish-Fisher overstates
    # by about 4.6% here (66.35 vs 63.42 USD): the expansion's own error for so skewed a PnL, not a tolerance
    exact_dg = -(c * ncx2.ppf(0.99, 1, lam) - delta**2 / (2 * gamma))
    assert exact_dg == pytest.approx(63.42, abs=0.01) and var == pytest.approx(66.35, abs=0.01)


def test_monte_carlo_full_revaluation_of_a_short_straddle_matches_the_exact_quantile():
    # exact one-day 99% loss of the short straddle by full revaluation: 59.69 USD; with 200,000 scenarios the
    # empirical quantile has standard error sqrt(0.01·0.99/200,000)/f(q) = 0.34 USD (f the loss density at q)
    exact, density = straddle_loss_quantile(0.99)
    se = np.sqrt(0.01 * 0.99 / 200_000) / density
    assert exact == pytest.approx(59.69, abs=0.01) and se == pytest.approx(0.34, abs=0.01)
    mc = VaRMargin(VaRParams(method="mc", n_sims=200_000, seed=7, decay_options=False, horizon_days=1.0))
    assert abs(mc.risk(one(*STRADDLE), ETH).var[0] - exact) < 4 * se


def test_monte_carlo_is_seeded_and_matches_the_lognormal_quantile():
    m = get_model("var-mc", horizon_days=1.0, n_sims=50_000, seed=7)
    a, b = (
        m.risk(one(LONG_ETH), ETH),
        get_model("var-mc", horizon_days=1.0, n_sims=50_000, seed=7).risk(one(LONG_ETH), ETH),
    )
    assert a.var[0] == b.var[0]
    exact = 2000.0 * (1.0 - np.exp(-2.326348 * 0.6 * np.sqrt(1 / 365)))
    # standard error of the 99% quantile of 50,000 draws: sqrt(0.01·0.99/50,000)/phi(2.326) = 0.0167 in z, i.e.
    # 0.0167·2000·S·e^(−zS) = 0.98 USD = 0.7% of the 141 USD VaR; 2.8% is 4 standard errors
    assert a.var[0] == pytest.approx(exact, rel=0.028)


def test_cholesky_scenarios_carry_the_correlation():
    corr = np.array([[1.0, 0.8], [0.8, 1.0]])
    x = cholesky_scenarios(np.array([0.02, 0.03]), corr, 50_000, np.random.default_rng(0))
    # standard errors with 50,000 draws: (1 − 0.8²)/sqrt(n) = 0.0016 for the correlation, 1/sqrt(2n) = 0.32%
    # for a standard deviation; the tolerances are 4 of them
    assert np.corrcoef(x.T)[0, 1] == pytest.approx(0.8, abs=0.0065)
    assert x.std(axis=0) == pytest.approx([0.02, 0.03], rel=0.013)
    with pytest.raises(ValueError, match="corr"):
        cholesky_scenarios(np.array([0.02, 0.03]), np.array([[1.0, 2.0], [2.0, 1.0]]), 10, np.random.default_rng(0))


def test_full_revaluation_uses_black76_and_zero_shock_gives_zero_pnl():
    pf = one({"kind": "call", "underlying": "ETH", "strike": 2200.0, "expiry_days": 30, "qty": 2.0})
    assert revalue_pnl(pf, ETH, np.zeros((1, 1)))[0, 0] == pytest.approx(0.0)
    up = revalue_pnl(pf, ETH, np.log(np.array([[1.5]])))[0, 0]
    from defistress.protocols.margin.black76 import call_put

    c0, c1 = call_put(2000.0, 2200.0, 30 / 365, 0.6)[0], call_put(3000.0, 2200.0, 30 / 365, 0.6)[0]
    assert up == pytest.approx(2 * (c1 - c0))
    assert mark_to_market(pf, ETH)[0] == pytest.approx(2 * c0)


def test_history_methods_need_returns_for_every_underlying():
    with pytest.raises(ValueError, match="needs a return history"):
        get_model("var-hs").requirements(one(LONG_ETH), ETH)
    with pytest.raises(ValueError, match=r"missing underlyings \['ETH'\]"):
        get_model("var-hs", returns={"BTC": [0.01, 0.02]}).requirements(one(LONG_ETH), ETH)


def test_var_margin_result_mm_is_var_and_im_is_es():
    r = get_model("var-normal", horizon_days=2.0).requirements(one(LONG_ETH, cash=100.0), ETH)
    sig = 1200 * np.sqrt(2 / 365)
    assert r.mm[0] == pytest.approx(2.326348 * sig, rel=1e-6) and r.im[0] == pytest.approx(2.665214 * sig, rel=1e-6)
    assert r.equity[0] == pytest.approx(2100.0)


@settings(max_examples=30, deadline=None)
@given(st.floats(0.1, 50.0), st.sampled_from(["normal", "cornish-fisher", "mc"]))
def test_var_is_positively_homogeneous_in_position_size(k, method):
    m = VaRMargin(VaRParams(method=method, horizon_days=1.0, n_sims=2000))
    base = m.risk(one({"kind": "put", "underlying": "ETH", "strike": 1900.0, "expiry_days": 20, "qty": -1.0}), ETH)
    big = m.risk(one({"kind": "put", "underlying": "ETH", "strike": 1900.0, "expiry_days": 20, "qty": -k}), ETH)
    assert big.var[0] == pytest.approx(k * base.var[0], rel=1e-9)
    assert big.es[0] >= big.var[0] - 1e-9


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6), min_size=20, max_size=200), st.floats(0.9, 0.995))
def test_empirical_es_is_never_below_var(pnl, alpha):
    var, es = var_es_from_pnl(np.array(pnl), alpha)
    assert es >= var - 1e-6 * max(1.0, abs(var))
