"""Derive Dutch-auction maths (protocols/options_auction.py) at its boundaries, by hand with the mainnet schedule
(docs/margin-methods.md 1.7: start 0.95, fast cutoff 0.70 over 900 s, slow 43,200 s, insolvent 3,600 s, liquidator
fee 10%, buffer margin 15%)."""

import numpy as np
import pytest

from defistress.protocols import options_auction as da

S = da.AuctionSchedule()


def test_phase_boundaries_belong_to_the_earlier_phase_and_an_insolvent_flag_wins():
    # DutchAuction: fast while t < fastAuctionLength; insolvent after fast + slow (44,100 s)
    assert [da.phase(t, False, S) for t in (0.0, 899.999, 900.0, 44_100.0, 44_100.001)] == [
        "fast",
        "fast",
        "slow",
        "slow",
        "insolvent",
    ]
    assert da.phase(0.0, True, S) == "insolvent"


def test_buffer_margin_by_hand_vectorised():
    # BM = equity − mm (1 + 15%): 1000 − 800·1.15 = 80; −100 − 200·1.15 = −330
    np.testing.assert_allclose(da.buffer_margin([1000.0, -100.0], [800.0, 200.0], 0.15), [80.0, -330.0])


def test_max_fraction_edges():
    # BM >= 0: nothing to sell (the auction would already be over)
    assert float(da.max_fraction(1000.0, 0.0, 0.9)) == 0.0
    assert float(da.max_fraction(1000.0, 50.0, 0.9)) == 0.0
    assert float(da.max_fraction(-100.0, 0.0, 0.5)) == 0.0  # BM exactly 0, even where den = 0 + 50 > 0
    # MtM·d below −BM (den = BM − MtM·d >= 0): the whole account, 1
    assert float(da.max_fraction(-200.0, -100.0, 0.5)) == 1.0  # den = −100 + 100 = 0
    assert float(da.max_fraction(-1.0, -0.5, 0.5)) == 1.0  # den = −0.5 + 0.5 = 0 with |BM| < 1
    assert float(da.max_fraction(-500.0, -100.0, 0.5)) == 1.0  # den = −100 + 250 > 0
    # f = BM / (BM − MtM d): −300 / (−300 − 1000·0.2) = 0.6; with reserved cash 500: −300 / (−300 − 200 − 400)
    assert float(da.max_fraction(1000.0, -300.0, 0.2)) == pytest.approx(0.6)
    assert float(da.max_fraction(1000.0, -300.0, 0.2, 500.0)) == pytest.approx(1 / 3)
    # MtM = 0: f = −900 / (−900 − 0) = 1 exactly; MtM < 0: −300 / (−300 + 50) = 1.2, capped at 1
    assert float(da.max_fraction(-100.0, -300.0, 0.5)) == 1.0
    assert float(da.max_fraction(0.0, -900.0, 0.5)) == 1.0
    np.testing.assert_allclose(da.max_fraction([1000.0, 1000.0], [-300.0, 10.0], [0.2, 0.2]), [0.6, 0.0])


def test_start_fee_by_hand_and_for_negative_equity():
    # f_max(d = 1) x |MtM| x 10%: E = 1000, BM = −200: f = −200 / (−200 − 1000) = 1/6 -> 16.667
    assert float(da.start_fee(1000.0, -200.0, S)) == pytest.approx(1000.0 / 6 * 0.10)
    # E = −500, BM = −700: den = −700 + 500 < 0, f = 3.5 clipped to 1 -> 1 x 500 x 10% = 50
    assert float(da.start_fee(-500.0, -700.0, S)) == pytest.approx(50.0)
    assert float(da.start_fee(1000.0, 5.0, S)) == 0.0  # BM >= 0: no fee
    other = da.AuctionSchedule(liquidator_fee_rate=0.05)
    assert float(da.start_fee(1000.0, -200.0, other)) == pytest.approx(1000.0 / 6 * 0.05)


def test_insolvent_payout_rises_linearly_and_is_capped():
    # |lower| x clip(t / 3600, 0, 1)
    np.testing.assert_allclose(da.insolvent_payout(-800.0, [0.0, 900.0, 3600.0, 9000.0], S), [0.0, 200.0, 800.0, 800.0])
    short = da.AuctionSchedule(insolvent_auction_s=1800.0)
    assert float(da.insolvent_payout(800.0, 900.0, short)) == pytest.approx(400.0)


def test_discount_uses_the_schedule_it_is_given():
    s = da.AuctionSchedule(
        starting_mtm_percentage=0.9, fast_auction_cutoff=0.6, fast_auction_s=600.0, slow_auction_s=6000.0
    )
    # fast: 0.9 − 0.3·300/600 = 0.75; slow: 0.6·(1 − 3000/6000) = 0.3; after 6,600 s: 0; negative time: the start
    np.testing.assert_allclose(da.discount([300.0, 3600.0, 7000.0, -5.0], s), [0.75, 0.3, 0.0, 0.9])
