"""The one-account auction maths on Python floats (protocols/options_auction.py `*_one`) against the array functions
they stand in for, bit for bit: signed zeros, NaN, infinities, each phase boundary and one ulp either side, and
random inputs. `auction_state` reads every ongoing auction through them each block (issue 14)."""

import itertools
import math

import numpy as np
import pytest

from defistress.protocols import options_auction as da

S = da.AuctionSchedule()  # Derive mainnet: 0.95 start, 0.70 cutoff, 900 s fast, 43,200 s slow, 3,600 s insolvent
ODD = da.AuctionSchedule(
    starting_mtm_percentage=0.9, fast_auction_cutoff=0.0, fast_auction_s=600.0, slow_auction_s=6000.0
)  # a zero cutoff: the slow phase is 0 x (...), NaN at an infinite time
# schedules whose boundaries round: at t = fast the fast formula is not the cutoff bit for bit, and at t = fast + slow
# the slow formula is 1.4e-17 rather than 0 (so `<` against `<=` and `>` against `>=` give other bits there)
ROUNDING = [
    da.AuctionSchedule(starting_mtm_percentage=0.55, fast_auction_cutoff=0.03, fast_auction_s=75_351.6),
    da.AuctionSchedule(
        starting_mtm_percentage=0.4, fast_auction_cutoff=0.13, fast_auction_s=20_346.3, slow_auction_s=26_232.1
    ),
]


def bits(x) -> int:
    """The float64 bit pattern (so -0.0 != 0.0 and NaN == the same NaN)."""
    return int(np.asarray(x, dtype=np.float64).view(np.uint64))


def around(x: float) -> list[float]:
    """x and one ulp either side."""
    return [math.nextafter(x, -math.inf), x, math.nextafter(x, math.inf)]


SPECIAL = [0.0, -0.0, 1.0, -1.0, 1e-300, -1e-300, 5e-324, 1e308, -1e308, math.inf, -math.inf, math.nan]


def times(s: da.AuctionSchedule) -> list[float]:
    """Elapsed seconds at and around each phase boundary, and odd values."""
    out = SPECIAL + [-5.0, 300.0, 3_600.0, 7_000.0, 50_000.0]
    for b in (0.0, s.fast_auction_s, s.fast_auction_s + s.slow_auction_s, s.insolvent_auction_s):
        out += around(b)
    return out


def test_the_rounding_schedules_round_at_their_boundaries():
    a, b = ROUNDING
    start, cut, fast = a.starting_mtm_percentage, a.fast_auction_cutoff, a.fast_auction_s
    assert start - (start - cut) * fast / fast != cut  # the fast formula at its end
    assert float(da.discount(fast, a)) == cut  # what discount gives there: the slow formula, exactly the cutoff
    t = b.fast_auction_s + b.slow_auction_s
    assert float(da.discount(t, b)) > 0.0  # the slow formula, not the 0 after it


@pytest.mark.parametrize("s", [S, ODD, *ROUNDING])
def test_discount_one_is_the_array_discount_bit_for_bit(s):
    ts = times(s)
    with np.errstate(invalid="ignore"):
        ref = da.discount(np.array(ts), s)
    for t, r in zip(ts, ref):
        assert bits(da.discount_one(t, s)) == bits(r), t
        with np.errstate(invalid="ignore"):
            one = da.discount(t, s)  # the 0-d path auction_state took
        assert bits(da.discount_one(t, s)) == bits(one), t


@pytest.mark.parametrize("x", SPECIAL + around(0.0) + around(1.0) + [0.5, 2.0, -2.0])
def test_the_branches_follow_numpy_maximum_and_clip(x):
    assert bits(da._max0(x)) == bits(np.maximum(np.asarray(x), 0.0))
    assert bits(da._clip01(x)) == bits(np.clip(np.asarray(x), 0.0, 1.0))


VALS = [0.0, -0.0, 1000.0, -1000.0, 300.0, -300.0, 1e-9, -1e-9, math.inf, -math.inf, math.nan, 1e300, -1e300]
DS = [0.0, -0.0, 0.2, 0.5, 0.7, 0.95, 1.0, 1.5, math.inf, -math.inf, math.nan]


def test_max_fraction_one_is_the_array_max_fraction_bit_for_bit():
    cases = list(itertools.product(VALS, VALS, DS))
    # den exactly 0 and one ulp either side: bm = equity x d (= 500 x 0.5 = 250)
    cases += [(500.0, -b, 0.5) for b in around(250.0)] + [(-500.0, b, 0.5) for b in around(-250.0)]
    # bm at 0 and one ulp either side; f at 1 exactly (equity 0) and around it
    cases += [(1000.0, b, 0.2) for b in around(0.0)] + [(e, -900.0, 0.5) for e in around(0.0)]
    eq, bm, d = (np.array(c) for c in zip(*cases))
    with np.errstate(invalid="ignore", over="ignore"):
        ref = da.max_fraction(eq, bm, d)
        for (e, b, dd), r in zip(cases, ref):
            assert bits(da.max_fraction_one(e, b, dd)) == bits(r), (e, b, dd)
            assert bits(da.max_fraction_one(e, b, dd)) == bits(da.max_fraction(e, b, dd)), (e, b, dd)


def test_insolvent_payout_one_and_buffer_margin_one_are_the_array_functions_bit_for_bit():
    ts = times(S)
    with np.errstate(invalid="ignore", over="ignore"):
        for lower, t in itertools.product(VALS, ts):
            assert bits(da.insolvent_payout_one(lower, t, S)) == bits(da.insolvent_payout(lower, t, S)), (lower, t)
        for e, m, p in itertools.product(VALS, VALS, [0.0, 0.15, 0.3]):
            assert bits(da.buffer_margin_one(e, m, p)) == bits(da.buffer_margin(e, m, p)), (e, m, p)


def test_random_inputs_agree_bit_for_bit():
    rng = np.random.default_rng(14)
    n = 20_000
    eq = rng.normal(0.0, 1e4, n)
    mm = np.abs(rng.normal(0.0, 1e4, n))
    t = rng.uniform(-100.0, 50_000.0, n)
    bm = da.buffer_margin(eq, mm, S.buffer_margin_percentage)
    d = da.discount(t, S)
    f = da.max_fraction(eq, bm, d)
    pay = da.insolvent_payout(bm, t, S)
    for i in range(n):
        e, m, ti = float(eq[i]), float(mm[i]), float(t[i])
        b = da.buffer_margin_one(e, m, S.buffer_margin_percentage)
        assert bits(b) == bits(bm[i])
        assert bits(da.discount_one(ti, S)) == bits(d[i])
        assert bits(da.max_fraction_one(e, b, float(d[i]))) == bits(f[i])
        assert bits(da.insolvent_payout_one(b, ti, S)) == bits(pay[i])
