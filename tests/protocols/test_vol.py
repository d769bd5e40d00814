"""CoupledVolSurface: calm markets leave it unchanged, a crash lifts ATM and steepens the skew."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from defistress.protocols.vol import CoupledVolSurface, VolSurfaceParams

DAY = 86_400.0


def test_calm_path_leaves_surface_unchanged():
    s = CoupledVolSurface(VolSurfaceParams(), 2000.0)
    k = np.array([1500.0, 2000.0, 2500.0])
    before = s.vol(k, 7 * DAY, 2000.0)
    for _ in range(500):
        s.update(2000.0, 12.0)
    assert s.atm_vol == pytest.approx(0.65)
    assert s.skew_now == pytest.approx(0.15)
    np.testing.assert_allclose(s.vol(k, 7 * DAY, 2000.0), before)


def test_one_crash_block_matches_hand_computed_ewma():
    # r = ln 0.99 = -0.0100503; sample = r^2/12 s x 31,536,000 s/yr = 265.452 (annualised variance)
    # alpha = 1 - 0.5^(12/3600) = 0.00230782; var = 0.4225 (1 - alpha) + alpha 265.452 = 1.034142; rv = 1.016928
    # ATM = 0.65 + 0.8 (1.016928 - 0.65) = 0.943542; skew = 0.15 (1 + 0.366928/0.65) = 0.234676
    s = CoupledVolSurface(VolSurfaceParams(), 2000.0)
    s.update(1980.0, 12.0)
    assert s.realised_vol == pytest.approx(1.016928, abs=1e-6)
    assert s.atm_vol == pytest.approx(0.943542, abs=1e-6)
    assert s.skew_now == pytest.approx(0.234676, abs=1e-6)


def test_crash_lifts_atm_and_steepens_put_skew():
    s = CoupledVolSurface(VolSurfaceParams(), 2000.0)
    base = CoupledVolSurface(VolSurfaceParams(), 2000.0)
    p = 2000.0
    for _ in range(30):
        p *= 0.99
        s.update(p, 12.0)
    k = np.array([0.8 * p, p, 1.2 * p])
    new, old = s.vol(k, 7 * DAY, p), base.vol(k, 7 * DAY, p)
    assert new[1] > old[1]  # ATM lifted
    assert (new[0] - new[2]) > (old[0] - old[2])  # put wing richer relative to the call wing
    assert s.atm(1 * DAY) > s.atm(90 * DAY)  # short end reacts most


def test_smile_shape_by_hand():
    # x = ln(K/F)/sqrt(T) with T = 1 year: K = F e^{-0.2} gives x = -0.2
    # vol = 0.65 - 0.15 (-0.2) + 0.1 (0.04) = 0.684 (ATM lift term decays but excess is 0 in calm)
    s = CoupledVolSurface(VolSurfaceParams(), 2000.0)
    v = s.vol(2000.0 * math.exp(-0.2), 365 * DAY, 2000.0)
    assert float(v) == pytest.approx(0.684)


def test_bad_params_name_the_field():
    with pytest.raises(ValidationError, match="atm_vol"):
        VolSurfaceParams(atm_vol=-1)
    with pytest.raises(ValidationError, match="min_vol"):
        VolSurfaceParams(min_vol=1.0, max_vol=0.5)
    with pytest.raises(ValidationError, match="extra|forbid"):
        VolSurfaceParams(nope=1)
    with pytest.raises(ValueError, match="spot0_usd"):
        CoupledVolSurface(VolSurfaceParams(), 0.0)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-0.05, 0.05), min_size=1, max_size=40))
def test_vols_stay_within_bounds_and_atm_never_below_base(returns):
    prm = VolSurfaceParams()
    s = CoupledVolSurface(prm, 2000.0)
    p = 2000.0
    for r in returns:
        p *= math.exp(r)
        s.update(p, 12.0)
    v = s.vol(np.array([100.0, p, 1e6]), np.array([0.0, 7 * DAY, 400 * DAY]), p)
    assert ((v >= prm.min_vol) & (v <= prm.max_vol)).all()
    assert s.atm_vol >= prm.atm_vol - 1e-12
    assert s.skew_now >= prm.skew - 1e-12
