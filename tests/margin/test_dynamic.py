"""Dynamic (EWMA) margin with anti-procyclicality, hybrid margin, and Greeks margin."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from defistress.protocols.margin.catalog import get_model
from defistress.protocols.margin.dynamic import (
    DynamicMargin,
    DynamicParams,
    HybridParams,
    buffered,
    margin_rate_path,
    procyclicality,
)
from defistress.protocols.margin.greeks_margin import GreeksMargin, GreeksParams
from defistress.protocols.margin.portfolio import MarketState, Portfolio

ETH = MarketState(spot={"ETH": 2000.0}, vol={"ETH": 0.6})
Z99 = 2.326348


def one(*positions, cash=0.0):
    return Portfolio.from_records([{"name": "a", "cash": cash, "positions": list(positions)}])


LONG_ETH = {"kind": "spot", "underlying": "ETH", "qty": 1.0}


def calm_then_stress(seed=5):
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.normal(0, 0.01, 300), rng.normal(0, 0.05, 40), rng.normal(0, 0.01, 200)])


# ---------------------------------------------------------------- dynamic margin
def test_buffer_path_by_hand():
    # b = 0.25, m = [1, 1, 1.2, 1.5, 1.0]:
    # B0 = 1.25; B1 = max(1, min(1.25, 1.25)) = 1.25; B2 = max(1.2, min(1.5, 1.25)) = 1.25 (buffer absorbs);
    # B3 = max(1.5, min(1.875, 1.25)) = 1.5 (buffer used up); B4 = max(1.0, min(1.25, 1.5)) = 1.25 (rebuilt)
    assert buffered([1.0, 1.0, 1.2, 1.5, 1.0], 0.25) == pytest.approx([1.25, 1.25, 1.25, 1.5, 1.25])


def test_constant_vol_path_gives_the_parametric_rate():
    # alternating +-1% keeps the EWMA variance at 1e-4: rate = z * 0.01 * sqrt(2 days / 1 day)
    rates = margin_rate_path(np.tile([0.01, -0.01], 100), DynamicParams(apc="none"))
    assert rates == pytest.approx(np.full(200, Z99 * 0.01 * np.sqrt(2.0)), rel=1e-6)


def test_apc_tools_never_lower_margin_and_dampen_the_rise_in_stress():
    r = calm_then_stress()
    raw = margin_rate_path(r, DynamicParams(apc="none"))
    for apc in ("buffer", "stressed_weight", "floor"):
        assert (margin_rate_path(r, DynamicParams(apc=apc)) >= raw - 1e-12).all(), apc
    buf = margin_rate_path(r, DynamicParams(apc="buffer"))
    stressed = margin_rate_path(r, DynamicParams(apc="stressed_weight"))
    floor = margin_rate_path(r, DynamicParams(apc="floor"))
    lag = 20
    assert procyclicality(buf, lag)["max_rise"] < procyclicality(raw, lag)["max_rise"]
    assert procyclicality(stressed, lag)["peak_to_trough"] < procyclicality(raw, lag)["peak_to_trough"]
    assert procyclicality(floor, lag)["peak_to_trough"] < procyclicality(raw, lag)["peak_to_trough"]


def test_dynamic_margin_of_spot_without_history_by_hand():
    # shock = z * 0.6 * sqrt(2/365) = 2.326348 * 0.6 * 0.0740233 = 0.103323; loss = 2000 (1 - e^-0.103323)
    r = get_model("dynamic", apc="none").requirements(one(LONG_ETH), ETH)
    shock = Z99 * 0.6 * np.sqrt(2 / 365)
    assert r.mm[0] == pytest.approx(2000 * (1 - np.exp(-shock)), rel=1e-6)
    buf = get_model("dynamic").requirements(one(LONG_ETH), ETH)  # default APC: 25% buffer on IM
    assert buf.im[0] == pytest.approx(1.25 * buf.mm[0]) and buf.mm[0] == pytest.approx(r.mm[0])


def test_stressed_weight_without_history_blends_variances():
    # sigma = sqrt(0.75 * 0.6^2 + 0.25 * 1.2^2) = sqrt(0.27 + 0.36) = 0.793725
    m = DynamicMargin(DynamicParams(apc="stressed_weight", stressed_vol={"ETH": 1.2}))
    assert m.horizon_vols(one(LONG_ETH), ETH)[0] == pytest.approx(np.sqrt(0.63) * np.sqrt(2 / 365))
    with pytest.raises(ValueError, match="floor_vol"):
        DynamicMargin(DynamicParams(apc="floor")).requirements(one(LONG_ETH), ETH)
    with pytest.raises(ValueError, match="apc='cap'.*allowed"):
        DynamicParams(apc="cap")


def test_dynamic_margin_with_history_uses_the_ewma_vol():
    r = np.tile([0.02, -0.02], 100)  # EWMA vol 2% per day
    m = get_model("dynamic", apc="none", returns={"ETH": r}, horizon_days=1.0)
    assert m.requirements(one(LONG_ETH), ETH).mm[0] == pytest.approx(2000 * (1 - np.exp(-Z99 * 0.02)), rel=1e-6)


def test_dynamic_margin_scans_each_underlying_without_offsets():
    pf = one(LONG_ETH, {"kind": "spot", "underlying": "BTC", "qty": -1 / 30})
    mkt = MarketState(spot={"ETH": 2000.0, "BTC": 60_000.0}, vol={"ETH": 0.6, "BTC": 0.6})
    r = get_model("dynamic", apc="none").requirements(pf, mkt)
    s = Z99 * 0.6 * np.sqrt(2 / 365)
    assert r.mm[0] == pytest.approx(2000 * (1 - np.exp(-s)) + 2000 * (np.exp(s) - 1), rel=1e-6)


# ---------------------------------------------------------------- hybrid
def test_hybrid_takes_the_binding_model():
    pf = Portfolio.from_records(
        [
            {"name": "perp", "cash": 1000.0, "positions": [{"kind": "perp", "underlying": "ETH", "qty": 1.0}]},
            {"name": "spot", "cash": 0.0, "positions": [LONG_ETH]},
        ]
    )
    h = get_model("hybrid", rule_model="hyperliquid", risk_model="dynamic")
    r = h.requirements(pf, ETH)
    # perp: both legs see equity 1000 (cash, no uPnL). Hyperliquid MM = 2000 / (2 · 25x) = 40; dynamic MM = the
    # loss of 1 ETH under a −z·0.6·sqrt(2/365) = −0.103323 log move = 2000·(1 − e^−0.103323) = 196.33 -> 196.33
    dynamic_mm = 2000 * (1 - np.exp(-Z99 * 0.6 * np.sqrt(2 / 365)))
    assert dynamic_mm == pytest.approx(196.33, abs=0.01)
    assert r.drivers["rule_mm_usd"][0] == pytest.approx(40.0) and r.drivers["risk_mm_usd"][0] == pytest.approx(
        dynamic_mm
    )
    assert r.mm[0] == pytest.approx(dynamic_mm, rel=1e-6)  # z to 7 digits
    # spot: Hyperliquid ignores spot (equity 0, MM 0) while dynamic counts 2000 of equity:
    # excess = min(0 − 0, 2000 − 196.33) = 0 -> mm = equity − excess = 2000
    assert r.mm[1] == pytest.approx(2000.0, rel=1e-12)
    assert r.equity.tolist() == pytest.approx([1000.0, 2000.0])
    assert r.drivers["rule_binding"].tolist() == [0, 1]
    with pytest.raises(ValueError, match="hybrid"):
        HybridParams(rule_model="hybrid")


# ---------------------------------------------------------------- greeks margin
def test_greeks_margin_of_spot_is_the_delta_charge():
    r = get_model("greeks").requirements(one(LONG_ETH), ETH)
    assert r.drivers["delta_usd"][0] == pytest.approx(2000 * 0.15)  # |delta| * spot shock = 300
    assert r.drivers["gamma_usd"][0] == 0 and r.drivers["vega_usd"][0] == 0
    assert r.im[0] == pytest.approx(1.3 * 300)


def black76_atm(f: float, days: float, sigma: float) -> tuple[float, float]:
    """Undiscounted (rate 0) Black-76 dollar gamma d2V/dF2·F^2 and vega dV/dsigma (USD per 1.00 vol) of one ATM
    option (Hull, Options, Futures and Other Derivatives, 19.4-19.8): d1 = sigma·sqrt(T)/2, gamma$ =
    F·phi(d1)/(sigma·sqrt(T)), vega = F·phi(d1)·sqrt(T)."""
    t = days / 365
    d1 = sigma * np.sqrt(t) / 2
    pdf = np.exp(-0.5 * d1**2) / np.sqrt(2 * np.pi)
    return f * pdf / (sigma * np.sqrt(t)), f * pdf * np.sqrt(t)


def test_black76_atm_helper_matches_finite_differences_of_the_black_price():
    def call(f: float, sigma: float, k: float = 2000.0, t: float = 30 / 365) -> float:  # Black-76, rate 0
        d1 = (np.log(f / k) + sigma**2 * t / 2) / (sigma * np.sqrt(t))
        return f * norm_cdf(d1) - k * norm_cdf(d1 - sigma * np.sqrt(t))

    gamma_usd, vega = black76_atm(2000.0, 30, 0.6)
    h = 1.0  # USD
    assert gamma_usd == pytest.approx(
        2000.0**2 * (call(2001.0, 0.6) - 2 * call(2000.0, 0.6) + call(1999.0, 0.6)) / h**2, rel=1e-5
    )
    assert vega == pytest.approx((call(2000.0, 0.6 + 1e-5) - call(2000.0, 0.6 - 1e-5)) / 2e-5, rel=1e-6)


def test_greeks_margin_charges_short_gamma_and_vega_but_not_long_gamma():
    short = one({"kind": "put", "underlying": "ETH", "strike": 2000.0, "expiry_days": 30, "qty": -1.0})
    long_ = one({"kind": "put", "underlying": "ETH", "strike": 2000.0, "expiry_days": 30, "qty": 1.0})
    m = GreeksMargin()
    s, lg = m.charges(short, ETH), m.charges(long_, ETH)
    gamma_usd, vega = black76_atm(2000.0, 30, 0.6)  # of one long put (= one long call)
    # short gamma: 0.5 · gamma$ · 0.15^2; vega at 30 DTE (weight (30/30)^0.3 = 1): the short loses on vol up,
    # vega · sigma · range_up = vega · 0.6 · 0.6; the long loses on vol down, vega · 0.6 · 0.3
    assert s["gamma_usd"][0] == pytest.approx(0.5 * gamma_usd * 0.15**2, rel=1e-9)
    assert s["vega_usd"][0] == pytest.approx(vega * 0.6 * 0.6, rel=1e-9)
    assert lg["gamma_usd"][0] == 0.0
    assert lg["vega_usd"][0] == pytest.approx(vega * 0.6 * 0.3, rel=1e-9)
    # delta of an ATM put, either sign: |N(d1) − 1|·F·0.15 with d1 = 0.6·sqrt(30/365)/2
    d1 = 0.6 * np.sqrt(30 / 365) / 2
    assert s["delta_usd"][0] == pytest.approx(lg["delta_usd"][0])
    assert s["delta_usd"][0] == pytest.approx((1 - norm_cdf(d1)) * 2000 * 0.15, rel=1e-9)


def norm_cdf(x: float) -> float:
    from math import erf, sqrt

    return 0.5 * (1 + erf(x / sqrt(2)))


def test_vega_of_a_calendar_spread_charges_a_quarter_of_the_offset():
    cal = one(
        {"kind": "call", "underlying": "ETH", "strike": 2000.0, "expiry_days": 30, "qty": -1.0},
        {"kind": "call", "underlying": "ETH", "strike": 2000.0, "expiry_days": 90, "qty": 1.0},
    )
    m = GreeksMargin(GreeksParams(vega_decorrelation=0.25))
    v30, v90 = black76_atm(2000.0, 30, 0.6)[1], black76_atm(2000.0, 90, 0.6)[1]
    # vol-shock weights (Lyra PMRM): 30 DTE (30/30)^0.3 = 1; 90 DTE (30/90)^0.13 (long-term power)
    w30, w90 = -1.0 * 1.0 * 0.6 * v30, (30 / 90) ** 0.13 * 0.6 * v90  # qty · weight · sigma · vega
    up, down = [-w30 * 0.6, -w90 * 0.6], [w30 * 0.3, w90 * 0.3]  # losses on vol up 60% / down 30%
    parallel = max(sum(up), sum(down), 0.0)
    per_expiry = max(up[0], down[0], 0.0) + max(up[1], down[1], 0.0)
    assert per_expiry > parallel  # the offset across expiries is worth something
    assert m.charges(cal, ETH)["vega_usd"][0] == pytest.approx(parallel + 0.25 * (per_expiry - parallel), rel=1e-9)
    with pytest.raises(ValueError, match="vega_decorrelation"):
        GreeksParams(vega_decorrelation=1.5)


@settings(max_examples=30, deadline=None)
@given(st.floats(-5, 5), st.floats(0.7, 1.3), st.integers(1, 120))
def test_greeks_and_dynamic_requirements_are_non_negative(q, k_mult, days):
    pf = one({"kind": "call", "underlying": "ETH", "strike": 2000 * k_mult, "expiry_days": days, "qty": q})
    for name in ("greeks", "dynamic"):
        r = get_model(name).requirements(pf, ETH)
        assert r.mm[0] >= 0 and r.im[0] >= r.mm[0] - 1e-9
