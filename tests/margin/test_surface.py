"""Vol surfaces: flat, SVI raw with the Lyra guards, sticky-strike grid, shifted surfaces."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from defistress.protocols.margin.surface import FlatVol, GridSurface, ShiftedSurface, SVIRules, SVISlice, SVISurface

YEAR = 365 * 86_400.0
Q = 0.25 * YEAR  # a quarter, in seconds


def test_flat_vol_is_constant_and_broadcasts():
    v = FlatVol(0.55).vol(np.array([1000.0, 2000.0, 3000.0]), 86_400.0, 2000.0)
    np.testing.assert_array_equal(v, [0.55, 0.55, 0.55])
    with pytest.raises(ValueError, match="sigma"):
        FlatVol(-0.1)


def test_svi_atm_vol_hand_computed():
    # a=0.04, b=0.2, rho=-0.4, m=0, sigma=0.1, tau=0.25: at k=0, w = 0.04 + 0.2*(0 + sqrt(0.01)) = 0.06
    # vol = sqrt(0.06 / 0.25) = sqrt(0.24) = 0.4898979
    s = SVISurface((SVISlice(Q, 0.04, 0.2, -0.4, 0.0, 0.1),))
    assert s.vol(2000.0, Q, 2000.0) == pytest.approx(0.4898979, abs=1e-7)


def test_svi_skew_puts_above_calls_with_negative_rho():
    s = SVISurface((SVISlice(Q, 0.04, 0.2, -0.4, 0.0, 0.1),))
    lo, hi = s.vol(np.array([1600.0, 2400.0]), Q, 2000.0)
    assert lo > hi


def test_svi_k_is_clamped():
    # clamp = 4 sqrt(a + b sigma) = 4 sqrt(0.06) = 0.9797959; k = 2 and k = 3 both evaluate at k = 0.9797959
    s = SVISurface((SVISlice(Q, 0.04, 0.2, -0.4, 0.0, 0.1),))
    f = 2000.0
    v2, v3, vc = s.vol(np.array([f * np.e**2, f * np.e**3, f * np.exp(0.9797959)]), Q, f)
    assert v2 == pytest.approx(v3) and v2 == pytest.approx(vc, rel=1e-7)


def test_svi_total_variance_is_capped_at_144():
    # a = 200 => w = 200 + ... > 144 -> 144; vol = sqrt(144 / 0.25) = 24
    s = SVISurface((SVISlice(Q, 200.0, 0.1, 0.0, 0.0, 0.1),))
    assert s.vol(2000.0, Q, 2000.0) == pytest.approx(24.0)
    assert SVISurface((SVISlice(Q, 200.0, 0.1, 0.0, 0.0, 0.1),), SVIRules(w_cap=25.0)).vol(
        2000.0, Q, 2000.0
    ) == pytest.approx(10.0)  # older SVI.sol MAX_TOTAL_VAR = 25: sqrt(25/0.25)


def test_svi_negative_variance_is_rejected():
    s = SVISurface((SVISlice(Q, -0.5, 0.1, 0.0, 0.0, 0.1),))
    with pytest.raises(ValueError, match="w < 0"):
        s.vol(2000.0, Q, 2000.0)


def test_svi_interpolates_total_variance_linearly_in_time_and_extrapolates_flat():
    # slice 1: w = 0.01 + 0.1*0.1 = 0.02 at T1 = 0.25; slice 2: w = 0.06 + 0.1*0.1 = 0.07 at T2 = 0.5 (ATM)
    s = SVISurface((SVISlice(Q, 0.01, 0.1, 0.0, 0.0, 0.1), SVISlice(2 * Q, 0.06, 0.1, 0.0, 0.0, 0.1)))
    # at T = 0.375: w = 0.045, vol = sqrt(0.045/0.375) = sqrt(0.12) = 0.3464102
    assert s.vol(2000.0, 1.5 * Q, 2000.0) == pytest.approx(0.3464102, abs=1e-7)
    # before the first slice: its vol sqrt(0.02/0.25) = 0.2828427; after the last: sqrt(0.07/0.5) = 0.3741657
    assert s.vol(2000.0, 0.1 * Q, 2000.0) == pytest.approx(0.2828427, abs=1e-7)
    assert s.vol(2000.0, 9 * Q, 2000.0) == pytest.approx(0.3741657, abs=1e-7)


def test_svi_validation_names_fields():
    with pytest.raises(ValueError, match="rho"):
        SVISlice(Q, 0.04, 0.2, -1.5, 0.0, 0.1)
    with pytest.raises(ValueError, match="increasing"):
        SVISurface((SVISlice(2 * Q, 0.04, 0.2, 0, 0, 0.1), SVISlice(Q, 0.04, 0.2, 0, 0, 0.1)))


GRID = GridSurface(
    x_nodes=(1000.0, 2000.0, 3000.0),
    expiry_nodes_s=(7 * 86_400.0, 30 * 86_400.0),
    vols=((0.8, 0.6, 0.7), (0.7, 0.5, 0.6)),
)


def test_grid_bilinear_hand_computed():
    # strike 1500 (halfway 1000-2000), expiry 18.5 days (halfway 7-30):
    # top row 0.5*0.8 + 0.5*0.6 = 0.7; bottom row 0.5*0.7 + 0.5*0.5 = 0.6; middle 0.65
    assert GRID.vol(1500.0, 18.5 * 86_400.0, 2000.0) == pytest.approx(0.65)


def test_grid_extrapolates_flat_and_is_sticky_strike():
    v = GRID.vol(np.array([100.0, 9000.0]), np.array([0.0, 1e9]), 2000.0)
    np.testing.assert_allclose(v, [0.8, 0.6])
    # sticky strike: the forward does not move the vol of a given strike
    assert GRID.vol(1500.0, 86_400.0 * 30, 1000.0) == GRID.vol(1500.0, 86_400.0 * 30, 5000.0)


def test_grid_log_moneyness_axis_moves_with_forward():
    g = GridSurface((-0.5, 0.0, 0.5), (Q,), ((0.9, 0.5, 0.7),), axis="log_moneyness")
    assert g.vol(2000.0, Q, 2000.0) == pytest.approx(0.5)
    assert g.vol(2000.0, Q, 2000.0 * np.exp(0.25)) == pytest.approx(0.7)  # k = -0.25: halfway 0.9 and 0.5


def test_grid_validation():
    with pytest.raises(ValueError, match="vols.shape"):
        GridSurface((1.0, 2.0), (1.0,), ((0.5,),))


def test_shift_lifts_level_and_steepens_downside():
    base = FlatVol(0.5)
    s = base.shifted(level_mult=1.2, skew_steepen=0.5)
    # K = F e^-0.2 (k = -0.2): 0.5 * 1.2 * (1 + 0.1) = 0.66; ATM: 0.6; k = +0.2: 0.5 * 1.2 * 0.9 = 0.54
    v = s.vol(2000.0 * np.exp(np.array([-0.2, 0.0, 0.2])), Q, 2000.0)
    np.testing.assert_allclose(v, [0.66, 0.6, 0.54])
    assert isinstance(s.shifted(1.1), ShiftedSurface)  # composable


@settings(max_examples=50, deadline=None)
@given(level=st.floats(1.0, 3.0), steep=st.floats(0.0, 2.0), k=st.floats(500.0, 1999.0))
def test_crash_shift_never_lowers_downside_vols(level, steep, k):
    s = SVISurface((SVISlice(Q, 0.04, 0.2, -0.4, 0.0, 0.1),))
    assert s.shifted(level, steep).vol(k, Q, 2000.0) >= s.vol(k, Q, 2000.0) - 1e-12


def test_shift_validation():
    with pytest.raises(ValueError, match="level_mult"):
        FlatVol(0.5).shifted(level_mult=-1.0)
