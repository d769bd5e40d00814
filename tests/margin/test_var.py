"""VaR / ES: analytic constants of docs/margin-methods.md section 8, hand-computed HS/EWMA cases, parametric
and Monte Carlo agreement, full revaluation of options."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


def test_cornish_fisher_equals_normal_without_gamma_and_adds_risk_for_short_gamma():
    kw = dict(horizon_days=1.0)
    n = VaRMargin(VaRParams(method="normal", **kw)).risk(one(LONG_ETH), ETH)
    cf = VaRMargin(VaRParams(method="cornish-fisher", **kw)).risk(one(LONG_ETH), ETH)
    assert cf.var[0] == pytest.approx(n.var[0]) and cf.es[0] == pytest.approx(n.es[0], rel=1e-6)
    straddle = one(
        {"kind": "call", "underlying": "ETH", "strike": 2000.0, "expiry_days": 7, "qty": -1.0},
        {"kind": "put", "underlying": "ETH", "strike": 2000.0, "expiry_days": 7, "qty": -1.0},
    )
    n = VaRMargin(VaRParams(method="normal", **kw)).risk(straddle, ETH)
    cf = VaRMargin(VaRParams(method="cornish-fisher", **kw)).risk(straddle, ETH)
    mc = VaRMargin(VaRParams(method="mc", n_sims=40_000, decay_options=False, **kw)).risk(straddle, ETH)
    assert cf.var[0] > 5 * n.var[0]  # delta ~ 0: the normal VaR misses the gamma
    assert cf.var[0] == pytest.approx(mc.var[0], rel=0.25)  # CF tracks the full revaluation


def test_monte_carlo_is_seeded_and_matches_the_lognormal_quantile():
    m = get_model("var-mc", horizon_days=1.0, n_sims=50_000, seed=7)
    a, b = (
        m.risk(one(LONG_ETH), ETH),
        get_model("var-mc", horizon_days=1.0, n_sims=50_000, seed=7).risk(one(LONG_ETH), ETH),
    )
    assert a.var[0] == b.var[0]
    exact = 2000.0 * (1.0 - np.exp(-2.326348 * 0.6 * np.sqrt(1 / 365)))
    assert a.var[0] == pytest.approx(exact, rel=0.03)


def test_cholesky_scenarios_carry_the_correlation():
    corr = np.array([[1.0, 0.8], [0.8, 1.0]])
    x = cholesky_scenarios(np.array([0.02, 0.03]), corr, 50_000, np.random.default_rng(0))
    assert np.corrcoef(x.T)[0, 1] == pytest.approx(0.8, abs=0.01)
    assert x.std(axis=0) == pytest.approx([0.02, 0.03], rel=0.02)
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
