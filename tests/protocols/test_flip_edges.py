"""Flipper rules at their exact boundaries and the records they leave (Maker dss src/flip.sol).

Common case (as tests/protocols/test_flip.py): a vault of 10 ETH owing 1000 DAI opened at 200 is bitten
at 140 under Cat v1: lot 10 ETH, tab = 1000·1.13 = 1130 DAI, beg 1.03, ttl 600 s, tau 3 days = 259,200 s;
blocks are 12 s. The source of every event is the CDP id "maker"; the escrow is "maker:flip".
"""

import numpy as np
import pytest

from defistress.protocols.base import Env, FixedPrice, Revert
from defistress.protocols.cdp import Cdp, CdpParams
from defistress.protocols.events import AuctionBid, AuctionKicked, AuctionSettled, BadDebt, Generic
from defistress.protocols.flip import FlipParams

TAU = 3 * 86400.0


def bitten(ink_debt=(10.0, 1000.0), price_after=140.0, **kw):
    env = Env()
    env.ledger.mint("ETH", "population", 1000.0, "genesis")
    for who in ("a", "c", "d"):
        env.ledger.mint("DAI", who, 2000.0, "genesis")
    oracle = FixedPrice(200.0)
    params = dict(dust=20.0, mechanism="flip", lump=50.0, flip=FlipParams(beg=1.03, ttl=600.0, tau=TAU))
    params.update(kw)
    cdp = Cdp(CdpParams(**params), oracle, env, "maker")
    cdp.open_vaults([ink_debt[0]], [ink_debt[1]])
    oracle.price = price_after
    cdp.bite(0, "biter")
    return cdp, cdp.flipper, env


def at(env, seconds):
    env.clock.block = int(round(seconds / env.clock.block_seconds))


def test_tick_only_after_end_has_strictly_passed_and_never_once_bid():
    _, flip, env = bitten()
    at(env, TAU)  # now == end: dss tick requires end < now
    assert list(flip.needs_tick()) == [False]
    with pytest.raises(Revert, match="^Flipper/not-finished$"):
        flip.tick(0)
    at(env, TAU + 12)
    assert list(flip.needs_tick()) == [True]
    ev = flip.tick(0)
    # new end = now + tau = 259,212 + 259,200
    assert ev == Generic(env.clock.block, "maker", "auction_tick", {"auction": 0, "end": TAU + 12 + TAU})
    assert flip.end[0] == TAU + 12 + TAU


def test_tick_refuses_an_auction_that_has_a_bid():
    _, flip, env = bitten()
    flip.tend(0, 10.0, 100.0, "a")  # tic = 600, end stays 259,200
    at(env, TAU + 12)  # end has passed, but a bid is there: deal it, do not restart it
    with pytest.raises(Revert, match="^Flipper/bid-already-placed$"):
        flip.tick(0)


def test_finished_and_deal_need_now_strictly_past_tic_or_end():
    _, flip, env = bitten()
    at(env, TAU - 300)
    flip.tend(0, 10.0, 1130.0, "c")  # tic = 258,900 + 600 = 259,500 > end = 259,200
    at(env, TAU)  # now == end < tic: not finished yet
    assert list(flip.finished()) == [False]
    with pytest.raises(Revert, match="^Flipper/not-finished$"):
        flip.deal(0)
    at(env, TAU + 12)  # end < now
    assert list(flip.finished()) == [True]
    flip.deal(0)


def test_finished_at_tic_exactly_is_false():
    _, flip, env = bitten()
    flip.tend(0, 10.0, 500.0, "a")  # tic = 600
    at(env, 600)
    assert list(flip.finished()) == [False]
    at(env, 612)
    assert list(flip.finished()) == [True]


def test_deal_of_a_covered_tab_reports_the_winner_lot_bid_and_no_shortfall():
    cdp, flip, env = bitten()
    flip.tend(0, 10.0, 1130.0, "c")
    flip.dent(0, 9.7, 1130.0, "d")  # tic = 600
    at(env, 612)
    ev = flip.deal(0)
    assert ev == Generic(
        env.clock.block, "maker", "auction_deal", {"auction": 0, "winner": "d", "lot": 9.7, "bid": 1130.0}
    )
    assert ev in env.events
    settled = [e for e in env.events if isinstance(e, AuctionSettled)][-1]
    # raised 1130 = tab: nothing left of the tab; 9.7 ETH at 140 = 1358 USD
    assert settled == AuctionSettled(env.clock.block, "maker", 0, "d", 9.7, 1130.0, 1130.0, 0.0, 9.7 * 140.0, False)
    assert not flip.active[0] and flip.count() == 0
    with pytest.raises(Revert, match="^Flipper/guy-not-set$"):
        flip.deal(0)


def test_deal_of_a_short_bid_reports_tab_minus_bid_as_shortfall():
    _, flip, env = bitten()
    flip.tend(0, 10.0, 500.0, "a")
    at(env, 612)
    flip.deal(0)
    settled = [e for e in env.events if isinstance(e, AuctionSettled)][-1]
    assert settled.winner == "a" and settled.shortfall == pytest.approx(1130.0 - 500.0)


def test_dent_rules_each_revert_with_their_own_reason():
    _, flip, env = bitten()
    flip.tend(0, 10.0, 1130.0, "c")
    with pytest.raises(Revert, match="^Flipper/not-matching-bid$"):
        flip.dent(0, 9.0, 1000.0, "d")
    with pytest.raises(Revert, match="^Flipper/lot-not-lower$"):
        flip.dent(0, 10.0, 1130.0, "d")  # the same lot is not lower
    with pytest.raises(Revert, match="^Flipper/lot-not-positive$"):
        flip.dent(0, 0.0, 1130.0, "d")
    env.ledger.mint("DAI", "poor", 100.0, "genesis")
    with pytest.raises(Revert, match="^Flipper/insufficient-stablecoin: poor has 100$"):
        flip.dent(0, 9.0, 1130.0, "poor")
    assert env.ledger.balance("maker:flip", "ETH") == 10.0 and flip.lot[0] == 10.0


def test_tend_not_finished_reason_is_exact():
    _, flip, _ = bitten()
    flip.tend(0, 10.0, 500.0, "a")
    with pytest.raises(Revert, match="^Flipper/tend-not-finished$"):
        flip.dent(0, 9.0, 500.0, "c")


def test_dent_accepts_a_lot_below_one_token_and_a_bidder_holding_exactly_the_bid():
    _, flip, env = bitten()
    led = env.ledger
    flip.tend(0, 10.0, 1130.0, "c")
    led.mint("DAI", "e", 1130.0, "genesis")  # exactly the bid: enough
    ev = flip.dent(0, 0.5, 1130.0, "e")  # 1.03·0.5 ≤ 10
    assert ev == AuctionBid(env.clock.block, "maker", 0, "e", 0.5, 1130.0, "dent")
    assert led.balance("e", "DAI") == 0.0 and led.balance("c", "DAI") == 2000.0
    # 9.5 ETH back to the vault owner: 990 + 9.5
    assert led.balance("population", "ETH") == pytest.approx(999.5)
    assert flip.lot[0] == 0.5 and flip.guy[0] == "e"
    led.check_conservation()


def test_count_is_the_number_of_running_auctions():
    env = Env()
    env.ledger.mint("ETH", "population", 1000.0, "genesis")
    env.ledger.mint("DAI", "a", 5000.0, "genesis")
    oracle = FixedPrice(200.0)
    cdp = Cdp(CdpParams(dust=20.0, mechanism="flip", lump=50.0), oracle, env, "maker")
    cdp.open_vaults([10.0, 10.0, 10.0], [1000.0, 1000.0, 1000.0])
    oracle.price = 140.0
    for v in range(3):
        cdp.bite(v, "biter")
    flip = cdp.flipper
    assert flip.count() == 3
    flip.tend(1, 10.0, 1130.0, "a")
    at(env, 612)
    flip.deal(1)
    assert flip.count() == 2
    np.testing.assert_array_equal(flip.active_ids(), [0, 2])


def test_bids_stop_at_tic_and_at_end_exactly():
    _, flip, env = bitten()
    flip.tend(0, 10.0, 500.0, "a")  # tic = 600
    at(env, 600)  # dss tend: require(tic > now): now == tic is too late
    with pytest.raises(Revert, match="^Flipper/already-finished-tic$"):
        flip.tend(0, 10.0, 600.0, "c")
    _, flip, env = bitten()
    at(env, TAU)  # no bid yet; dss tend: require(end > now)
    with pytest.raises(Revert, match="^Flipper/already-finished-end$"):
        flip.tend(0, 10.0, 100.0, "a")


def test_tend_rules_each_revert_with_their_own_reason():
    _, flip, _ = bitten()
    with pytest.raises(Revert, match="^Flipper/lot-not-matching$"):
        flip.tend(0, 9.0, 500.0, "a")
    with pytest.raises(Revert, match="^Flipper/higher-than-tab$"):
        flip.tend(0, 10.0, 1200.0, "a")
    flip.tend(0, 10.0, 500.0, "a")
    with pytest.raises(Revert, match="^Flipper/bid-not-higher$"):
        flip.tend(0, 10.0, 500.0, "c")


def test_kick_refuses_a_null_auction_and_numbers_auctions_in_order():
    cdp, flip, env = bitten()
    kicked = [e for e in env.events if isinstance(e, AuctionKicked)]
    # the bite: auction 0 of vault 0, lot 10 ETH, tab 1130, no start price and no incentive in a Flipper
    assert kicked == [AuctionKicked(env.clock.block, "maker", 0, 0, 10.0, pytest.approx(1130.0), 0.0, "biter", 0.0)]
    assert flip.guy[0] == ""  # no bidder yet
    for tab, lot in ((0.0, 1.0), (1.0, 0.0), (-1.0, 1.0)):
        with pytest.raises(Revert, match="^Flipper/null-auction$"):
            flip.kick(tab, lot, 0, "k")
    ev = flip.kick(0.5, 0.5, 3, "k")  # small but not null
    assert ev == AuctionKicked(env.clock.block, "maker", 1, 3, 0.5, 0.5, 0.0, "k", 0.0)
    assert flip.kicks == 2 and flip.end[1] == TAU


def test_a_bidder_raising_its_own_bid_pays_only_the_increase():
    _, flip, env = bitten()
    led = env.ledger
    ev = flip.tend(0, 10.0, 500.0, "a")
    assert ev == AuctionBid(env.clock.block, "maker", 0, "a", 10.0, 500.0, "tend")
    flip.tend(0, 10.0, 1000.0, "a")  # dss tend: vat.move(msg.sender, guy, bids.bid) nets to bid − old
    assert led.balance("a", "DAI") == 1000.0 and led.balance("maker:flip", "DAI") == 1000.0
    led.check_conservation()


def test_tend_reasons_for_a_small_increase_and_a_bidder_short_of_stablecoin_are_exact():
    _, flip, env = bitten()
    flip.tend(0, 10.0, 500.0, "a")
    with pytest.raises(Revert, match="^Flipper/insufficient-increase$"):
        flip.tend(0, 10.0, 514.0, "c")
    env.ledger.mint("DAI", "poor", 515.0, "genesis")
    with pytest.raises(Revert, match="^Flipper/insufficient-stablecoin: poor has 515$"):
        flip.tend(0, 10.0, 600.0, "poor")
    flip.tend(0, 10.0, 515.0, "poor")  # holding exactly the bid is enough
    assert env.ledger.balance("poor", "DAI") == 0.0 and env.ledger.balance("a", "DAI") == 2000.0


def test_an_auction_id_at_the_arrays_capacity_is_not_running():
    _, flip, _ = bitten()
    while flip.kicks < len(flip.active):  # fill the arrays' capacity exactly
        flip.kick(1.0, 1.0, 0, "k")
    for bad in (flip.kicks, -1):
        with pytest.raises(Revert, match="^Flipper/guy-not-set$"):
            flip.tend(bad, 1.0, 0.5, "a")


def test_bids_equal_to_the_tab_within_a_relative_1e_12():
    from defistress.protocols.flip import _equal

    assert _equal(1130.0, 1130.0 + 1e-9)  # 1e-9 ≤ 1e-12·1130
    assert not _equal(1130.0, 1130.0 + 2e-9)
    assert _equal(0.0, 5e-13) and not _equal(0.0, 1.5e-12)  # below 1 stablecoin the tolerance is 1e-12 absolute


def test_each_settled_auction_moves_its_uncovered_debt_to_system_debt_and_counts_a_bid_of_1_dai_as_zero():
    cdp, flip, env = bitten()  # vault 0: due 1000, tab 1130, sin 1000
    cdp.open_vaults([10.0], [900.0])  # at 140: 10·140/1.5 = 933 ≥ 900, safe
    cdp.oracle.price = 130.0  # 10·130/1.5 = 866.7 < 900: unsafe
    cdp.bite(1, "biter")  # due 900, tab 900·1.13 = 1017
    flip.tend(0, 10.0, 1.0, "a")  # a bid of exactly 1 DAI: a zero bid (ZERO_BID_MAX = 1 DAI)
    flip.tend(1, 10.0, 700.0, "c")
    at(env, 612)
    flip.deal(0)  # raised 1 covers 1 of sin 1000: 999 uncovered becomes system debt (woe)
    flip.deal(1)  # raised 700 of sin 900: 200 more
    bad = [e for e in env.events if isinstance(e, BadDebt)]
    assert bad == [
        BadDebt(env.clock.block, "maker", 0, "DAI", 999.0, 999.0),
        BadDebt(env.clock.block, "maker", 1, "DAI", 200.0, 200.0),
    ]
    assert [s.zero_bid for s in env.events if isinstance(s, AuctionSettled)] == [True, False]
    m = cdp.metrics()
    assert (m["auctions_settled"], m["zero_bid_auctions"], m["bad_debt_usd"]) == (2, 1, 1199.0)
    assert list(cdp.sin[:2]) == [0.0, 0.0]  # settled auctions leave the debt queue (dss vow.flog)
    assert cdp.accounting_gap() == pytest.approx(0.0, abs=1e-9)


def test_a_lot_differing_by_exactly_the_equality_tolerance_still_matches():
    # _equal: |a − b| ≤ 1e-12·max(|a|, |b|, 1), so below 1 the tolerance is 1e-12 absolute. A vault of 1e-12 ETH
    # owing 1e-11 DAI (dust 0) bitten at 1: lot 1e-12 ETH; a bid naming 2e-12 ETH differs by exactly 1e-12
    # (2e-12 − 1e-12 == 1e-12 bit for bit: doubling is exact), the tolerance itself: it matches (inclusive).
    cdp, flip, env = bitten(dust=0.0, ink_debt=(1e-12, 1e-11), price_after=1.0)
    assert flip.lot[0] == 1e-12
    assert abs(2e-12 - 1e-12) == 1e-12 * max(2e-12, 1e-12, 1.0)
    ev = flip.tend(0, 2e-12, 1e-12, "a")
    assert ev == AuctionBid(env.clock.block, "maker", 0, "a", 1e-12, 1e-12, "tend")
