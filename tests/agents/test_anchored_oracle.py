"""Compound's UniswapAnchoredView as an oracle agent: the anchor band and the guarded posts of
compound-finance/open-oracle tests/UniswapAnchoredViewTest.js, the TWAP window of pokeWindowValues, and a
scheduled reporter spike held at the band's edge."""

from __future__ import annotations

import mesa
import pytest

from defistress.agents.oracles_anchored import AnchoredOracle


class Feed:
    def __init__(self, price: float):
        self.price = price

    def __call__(self) -> float:
        return self.price


def view(reporter: Feed, anchor: Feed, tolerance=0.1, period=60.0, schedule=()):
    return AnchoredOracle(
        mesa.Model(rng=0), "uav", "ETH", reporter, anchor, reporter, tolerance, period, 0.0, 3600.0, schedule
    )


@pytest.mark.parametrize(
    "case, reporter, anchor, stored",
    [
        ("should update view if ETH price is within anchor bounds", 91.0, 91.0, True),
        ("should update view if ERC20 price is within anchor bounds", 17.0, 17.0, True),
        ("should not update view if ETH price is below anchor bounds", 100.0, 89.9, False),
        ("should not update view if ERC20 price is below anchor bounds", 17.0, 15.0, False),
        ("should not update view if ETH price is above anchor bounds", 100.0, 110.1, False),
        ("should not update view if ERC20 price is above anchor bounds", 17.0, 19.0, False),
    ],
)
def test_uniswap_anchored_view_test_post_prices(case, reporter, anchor, stored):
    """UniswapAnchoredViewTest.js 'postPrices' cases: anchorMantissa 1e17 (10% tolerance); the mocked view's
    anchor price is set directly (here: a constant anchor, so its TWAP is that price)."""
    rep, anc = Feed(1.0), Feed(anchor)
    o = view(rep, anc)
    o.price = 1.0  # an old stored price that a guarded post must leave in place
    rep.price = reporter
    ev = o.update(1, 12.0)
    if stored:
        assert o.price == reporter and ev.kind == "oracle_update"
    else:
        assert o.price == 1.0 and ev.name == "price_guarded"
        assert ev.detail["reporter_price"] == reporter and ev.detail["anchor_price"] == pytest.approx(anchor)


def test_anchor_ratio_bounds_are_one_plus_and_minus_the_tolerance():
    """isWithinAnchor: anchor / reporter in [1 - tol, 1 + tol] (constructor: 100e16 +/- anchorToleranceMantissa).
    With Compound's 20%, a reporter at 1.25 x anchor is stored, 1.30 x is guarded."""
    o = view(Feed(1.0), Feed(1.0), tolerance=0.2)
    assert (o.upper, o.lower) == (pytest.approx(1.2), pytest.approx(0.8))
    assert o.is_within_anchor(1.25, 1.0)  # ratio 0.8: on the edge, stored
    assert not o.is_within_anchor(1.30, 1.0)  # ratio 0.769
    assert o.is_within_anchor(1.0 / 1.2, 1.0) and not o.is_within_anchor(0.8, 1.0)
    assert not o.is_within_anchor(0.0, 1.0)


def test_twap_window_rotates_only_after_an_anchor_period():
    """pokeWindowValues with anchorPeriod 60 s, anchor 100 until 72 s then 200 (the cumulative price accrues
    the price before each block). Post at 72 s: 72 >= 60 after the deploy's observation, so new becomes old
    (t=0) and new = (72, 7,200): TWAP 7,200 / 72 = 100. Post at 96 s: no rotation (24 < 60): TWAP
    (7,200 + 200 x 24) / 96 = 125. Post at 144 s: rotation (72 >= 60), old = (72, 7,200): TWAP
    (21,600 - 7,200) / 72 = 200."""
    rep, anc = Feed(100.0), Feed(100.0)
    o = view(rep, anc, tolerance=0.9, period=60.0)
    for t in range(12, 61, 12):  # no post: the reporter does not move
        assert o.update(t // 12, float(t)) is None
    anc.price = 200.0
    for block, reporter, twap in ((6, 150.0, 100.0), (8, 151.0, 125.0), (12, 152.0, 200.0)):
        rep.price = reporter
        o.update(block, block * 12.0)
        assert o.last_anchor_twap == pytest.approx(twap)
        assert o.price == reporter  # within the 90% band: stored


def test_a_scheduled_reporter_spike_is_held_at_the_edge_of_the_band():
    """DAI on 26 Nov 2020: the reporter climbs to 1.30 while the anchor stays at 1.00; posts up to 1.25 are
    stored, higher ones guarded, so the stored price peaks at the last post inside the band."""
    rep, anc = Feed(1.0), Feed(1.0)
    schedule = [(0.0, 1.0), (1200.0, 1.30), (1800.0, 1.30), (3000.0, 1.0)]
    o = AnchoredOracle(mesa.Model(rng=0), "dai", "DAI", rep, anc, rep, 0.2, 1800.0, 0.01, 3600.0, schedule)
    stored, guarded = [], 0
    for b in range(1, 300):
        ev = o.update(b, b * 12.0)
        stored.append(o.price)
        guarded += ev is not None and getattr(ev, "name", "") == "price_guarded"
    assert max(stored) <= 1.25 + 1e-12 and max(stored) > 1.24
    assert guarded > 0
    assert stored[-1] == pytest.approx(1.0, abs=0.011)  # back inside the band after the spike
    assert o.multiplier(1500.0) == pytest.approx(1.30) and o.multiplier(600.0) == pytest.approx(1.15)
    assert o.multiplier(5000.0) == 1.0
