"""Abacus price curves (Maker dss src/abaci.sol): hand-computed points and properties."""

import math

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from defistress.protocols.abaci import Abacus, ExponentialDecrease, LinearDecrease, StairstepExponentialDecrease


def test_stairstep_after_15_minutes_is_cut_to_the_tenth():
    # cut 0.99, step 90 s: 900 s = 10 steps -> 0.99^10 = 0.904382075 of top
    calc = StairstepExponentialDecrease(cut=0.99, step=90)
    assert calc.price(1000.0, 900.0) == pytest.approx(904.382075, rel=1e-9)


def test_stairstep_is_flat_within_a_step():
    calc = StairstepExponentialDecrease(cut=0.99, step=90)
    assert calc.price(100.0, 0.0) == 100.0
    assert calc.price(100.0, 89.9) == 100.0  # floor(89.9/90) = 0 steps
    assert calc.price(100.0, 90.0) == pytest.approx(99.0)  # one step: 100·0.99


def test_stairstep_crosses_cusp_040_after_92_steps_138_minutes():
    # 0.99^91 = 0.40068 > 0.40 and 0.99^92 = 0.39668 < 0.40; 92 steps · 90 s = 8280 s = 138 min
    calc = StairstepExponentialDecrease(cut=0.99, step=90)
    assert calc.price(1.0, 8279.0) == pytest.approx(0.400685, rel=1e-5)
    assert calc.price(1.0, 8279.0) >= 0.40
    assert calc.price(1.0, 8280.0) == pytest.approx(0.396678, rel=1e-5)
    assert calc.price(1.0, 8280.0) < 0.40
    assert 8280.0 / 60 == 138.0


def test_linear_decrease_hand_points():
    # tau 3600 s: after 900 s price = top·(3600 − 900)/3600 = 0.75·top; zero at and after tau
    calc = LinearDecrease(tau=3600)
    assert calc.price(100.0, 900.0) == pytest.approx(75.0)
    assert calc.price(100.0, 3600.0) == 0.0
    assert calc.price(100.0, 7200.0) == 0.0


def test_exponential_decrease_hand_point():
    # cut 0.999 per second: 100·0.999^10 = 99.00448802
    calc = ExponentialDecrease(cut=0.999)
    assert calc.price(100.0, 10.0) == pytest.approx(99.00448802, rel=1e-9)


def test_curves_vectorise_over_many_auctions():
    calc = StairstepExponentialDecrease(cut=0.99, step=90)
    top = np.array([100.0, 200.0, 50.0])
    dur = np.array([0.0, 90.0, 900.0])
    out = calc.price(top, dur)
    assert isinstance(out, np.ndarray)
    np.testing.assert_allclose(out, [calc.price(t, d) for t, d in zip(top, dur)])
    np.testing.assert_allclose(out, [100.0, 198.0, 50.0 * 0.99**10])


def test_stairstep_and_exponential_broadcast_an_array_of_tops_or_of_durations():
    # an array of tops with one duration, or one top with an array of durations, gives an array (dss abaci
    # prices one auction at a time; here one call prices many)
    stair = StairstepExponentialDecrease(cut=0.5, step=10.0)
    # floor(10/10) = 1 step: [100, 200]·0.5 = [50, 100]
    np.testing.assert_allclose(stair.price(np.array([100.0, 200.0]), 10.0), [50.0, 100.0])
    # floor([0, 10, 25]/10) = [0, 1, 2] steps: 100·0.5^[0, 1, 2] = [100, 50, 25]
    np.testing.assert_allclose(stair.price(100.0, np.array([0.0, 10.0, 25.0])), [100.0, 50.0, 25.0])
    expo = ExponentialDecrease(cut=0.5)
    # 2 s at cut 0.5 per second: [100, 200]·0.25 = [25, 50]
    np.testing.assert_allclose(expo.price(np.array([100.0, 200.0]), 2.0), [25.0, 50.0])
    # 100·0.5^[0, 1, 3] = [100, 50, 12.5]
    np.testing.assert_allclose(expo.price(100.0, np.array([0.0, 1.0, 3.0])), [100.0, 50.0, 12.5])
    assert isinstance(expo.price(100.0, 1.0), float) and expo.price(100.0, 1.0) == 50.0


def test_negative_duration_counts_as_start():
    assert LinearDecrease(tau=10).price(7.0, -5.0) == 7.0


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"cut": 1.2}, "cut"),
        ({"cut": 0.0}, "cut"),
        ({"step": 0.0}, "step"),
    ],
)
def test_stairstep_rejects_out_of_range_parameters_naming_the_field(kwargs, field):
    with pytest.raises(ValidationError) as err:
        StairstepExponentialDecrease(**kwargs)
    assert field in str(err.value)


def test_linear_rejects_non_positive_tau():
    with pytest.raises(ValidationError, match="tau"):
        LinearDecrease(tau=0)


def test_curve_is_chosen_by_kind_from_a_mapping():
    calc = TypeAdapter(Abacus).validate_python({"kind": "linear", "tau": 600})
    assert isinstance(calc, LinearDecrease) and calc.tau == 600


CURVES = st.one_of(
    st.builds(LinearDecrease, tau=st.floats(1, 1e6)),
    st.builds(StairstepExponentialDecrease, cut=st.floats(0.01, 1.0), step=st.floats(1, 3600)),
    st.builds(ExponentialDecrease, cut=st.floats(0.9, 1.0)),
)


@given(calc=CURVES, top=st.floats(1e-6, 1e9), d1=st.floats(0, 1e6), d2=st.floats(0, 1e6))
def test_price_never_rises_with_time_and_stays_within_zero_and_top(calc, top, d1, d2):
    lo, hi = sorted((d1, d2))
    p_lo, p_hi = calc.price(top, lo), calc.price(top, hi)
    assert 0.0 <= p_hi <= p_lo * (1 + 1e-12) <= top * (1 + 1e-12)


@given(cut=st.floats(0.5, 1.0), step=st.floats(1, 600), n=st.integers(0, 200), top=st.floats(1, 1e6))
def test_stairstep_equals_exponential_at_whole_steps(cut, step, n, top):
    stair = StairstepExponentialDecrease(cut=cut, step=step)
    expo = ExponentialDecrease(cut=cut ** (1.0 / step))
    dur = n * step
    assume(math.floor(dur / step) == n)  # the test point is an exact step boundary in float64
    assert stair.price(top, dur) == pytest.approx(expo.price(top, dur), rel=1e-9)
