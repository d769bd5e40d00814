"""Backtests: Kupiec and Christoffersen LR values worked by hand, Basel zones, and model backtests on paths."""

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from defistress.protocols.margin.backtest import (
    backtest,
    backtest_model,
    christoffersen,
    kupiec_pof,
    traffic_light,
    transition_counts,
)

HITS = np.array([0, 0, 1, 1, 1, 0, 0, 0, 0, 0], dtype=bool)  # 3 clustered exceedances in 10


def test_kupiec_by_hand_two_of_ten_at_90pct():
    # LR = -2[8 ln 0.9 + 2 ln 0.1] + 2[8 ln 0.8 + 2 ln 0.2]
    #    = -2[-0.842884 - 4.605170] + 2[-1.785148 - 3.218876] = 10.896108 - 10.008048 = 0.888060
    lr, p = kupiec_pof(2, 10, 0.9)
    assert lr == pytest.approx(0.888060, abs=1e-6)
    assert p == pytest.approx(0.346004, abs=1e-6)  # chi2(1) survival at 0.888060


def test_kupiec_zero_exceedances_and_exact_rate():
    # x = 0: LR = -2 * 250 ln 0.99 = 5.025168; x/n = p: LR = 0
    assert kupiec_pof(0, 250, 0.99)[0] == pytest.approx(-2 * 250 * np.log(0.99))
    assert kupiec_pof(1, 100, 0.99)[0] == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="exceedances"):
        kupiec_pof(11, 10, 0.99)


def test_christoffersen_by_hand_for_clustered_hits():
    # pairs: n00 = 5, n01 = 1, n10 = 1, n11 = 2; pi = 3/9, pi0 = 1/6, pi1 = 2/3
    # ln L(pi)  = 6 ln(2/3) + 3 ln(1/3)                                  = -5.728628
    # ln L(pi0, pi1) = 5 ln(5/6) + ln(1/6) + ln(1/3) + 2 ln(2/3)          = -4.612910
    # LR_ind = -2 (-5.728628 + 4.612910) = 2.231436
    assert transition_counts(HITS) == (5, 1, 1, 2)
    lr, p, _ = christoffersen(HITS)
    assert lr == pytest.approx(2.231436, abs=1e-6)
    assert p == pytest.approx(0.135228, abs=1e-6)


def test_conditional_coverage_adds_pof_and_independence():
    # Kupiec 3 of 10 at 90%: -2[7 ln 0.9 + 3 ln 0.1] + 2[7 ln 0.7 + 3 ln 0.3] = 15.290558 - 12.217286 = 3.073272
    res = backtest(HITS.astype(float), np.full(10, 0.5), confidence=0.9)
    assert res.exceedances == 3 and res.n == 10
    assert res.kupiec_lr == pytest.approx(3.073272, abs=1e-6)
    assert res.conditional_coverage_lr == pytest.approx(3.073272 + 2.231436, abs=1e-6)
    assert res.conditional_coverage_p == pytest.approx(np.exp(-5.304707 / 2), abs=1e-6)  # chi2(2) sf = e^{-x/2}


def test_independent_hits_give_zero_independence_lr():
    # n00 = 4, n01 = 2, n10 = 2, n11 = 1: pi0 = pi1 = pi = 1/3 -> LR_ind = 0
    lr, p, counts = christoffersen(np.array([0, 1, 1, 0, 0, 0, 1, 0, 0, 0], dtype=bool))
    assert counts == (4, 2, 2, 1) and lr == pytest.approx(0.0, abs=1e-12) and p == pytest.approx(1.0)


@pytest.mark.parametrize(
    "x, zone, plus",
    [
        (0, "green", 0.0),
        (4, "green", 0.0),
        (5, "yellow", 0.40),
        (6, "yellow", 0.50),
        (7, "yellow", 0.65),
        (8, "yellow", 0.75),
        (9, "yellow", 0.85),
        (10, "red", 1.0),
        (15, "red", 1.0),
    ],
)
def test_basel_traffic_light_at_250_observations_99pct(x, zone, plus):
    tl = traffic_light(x, 250, 0.99)
    assert (tl.zone, tl.plus_factor) == (zone, plus)
    assert (tl.green_max, tl.yellow_max) == (4, 9)
    assert tl.multiplier == pytest.approx(3.0 + plus)


def test_exceedance_is_a_loss_strictly_above_the_forecast():
    res = backtest([1.0, 2.0, 3.0], [1.0, 1.0, 3.5], 0.99)
    assert res.frame["exceedance"].tolist() == [False, True, False]
    with pytest.raises(ValueError, match="losses/forecasts"):
        backtest([1.0], [1.0, 2.0])


def test_summary_is_json_ready():
    d = backtest(HITS.astype(float), np.full(10, 0.5), confidence=0.9).to_dict()
    text = json.dumps(d)
    assert '"zone"' in text and d["transitions"] == {"n00": 5, "n01": 1, "n10": 1, "n11": 2}


def _gbm(n, vol_daily=0.03, seed=11):
    rng = np.random.default_rng(seed)
    px = 2000.0 * np.exp(np.cumsum(rng.normal(0.0, vol_daily, n)))
    return pd.Series(px, index=pd.date_range("2024-01-01", periods=n, freq="D", tz="UTC"))


def test_var_normal_backtest_on_a_gaussian_path_is_not_red():
    res = backtest_model(_gbm(600), "var-normal", confidence=0.99, window=250)
    assert res.n == 600 - 250 - 1
    assert res.traffic_light.zone != "red"
    assert res.kupiec_p > 0.01


def test_a_thin_rule_margin_fails_the_backtest_on_a_volatile_path():
    # Hyperliquid ETH keeps 2% of notional against one step; with 3% daily moves the 1% tail is breached often
    res = backtest_model(_gbm(400), "hyperliquid", confidence=0.99, window=100)
    assert res.exceedances > 10 and res.traffic_light.zone == "red"


def test_backtest_model_checks_the_window_and_model_name():
    with pytest.raises(ValueError, match="window=250"):
        backtest_model(_gbm(100), "var-normal", window=250)
    with pytest.raises(ValueError, match="allowed"):
        backtest_model(_gbm(300), "no-such-model", window=250)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 400), st.floats(0.9, 0.999), st.data())
def test_lr_statistics_are_non_negative_and_p_values_in_unit_interval(n, alpha, data):
    x = data.draw(st.integers(0, n))
    lr, p = kupiec_pof(x, n, alpha)
    assert lr >= 0 and 0 <= p <= 1
    hits = np.array(data.draw(st.lists(st.booleans(), min_size=2, max_size=60)))
    lr, p, counts = christoffersen(hits)
    assert lr >= 0 and 0 <= p <= 1 and sum(counts) == hits.size - 1
