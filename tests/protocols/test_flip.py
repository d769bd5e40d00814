"""Flipper English auctions (Maker dss src/flip.sol, March 2020 parameters): tend, dent, deal, tick, zero bids.

Common case: Cat v1 with lump 50, beg 1.03, ttl 600 s, tau 3 days. A vault of 10 ETH owing 1000 DAI
opened at 200 is bitten at 140: lot 10 ETH, due 1000, tab = 1000·1.13 = 1130.
"""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from defistress.protocols.base import Env, FixedPrice, Revert
from defistress.protocols.cdp import Cdp, CdpParams
from defistress.protocols.events import AuctionSettled, BadDebt
from defistress.protocols.flip import FlipParams

BIDDERS = ("a", "b", "c", "d", "z")


def bitten(surplus_buffer=0.0, **kw):
    env = Env()
    env.ledger.mint("ETH", "population", 1000.0, "genesis")
    for who in BIDDERS:
        env.ledger.mint("DAI", who, 2000.0, "genesis")
    oracle = FixedPrice(200.0)
    params = dict(
        dust=20.0,
        mechanism="flip",
        lump=50.0,
        surplus_buffer=surplus_buffer,
        flip=FlipParams(beg=1.03, ttl=600.0, tau=3 * 86400.0),
    )
    params.update(kw)
    cdp = Cdp(CdpParams(**params), oracle, env, "maker")
    cdp.open_vaults([10.0], [1000.0])
    oracle.price = 140.0
    cdp.bite(0, "biter")
    return cdp, cdp.flipper, env


def at(env, seconds):
    env.clock.block = int(round(seconds / env.clock.block_seconds))


def test_tend_needs_the_beg_increment_and_refunds_the_previous_bidder():
    cdp, flip, env = bitten()
    led = env.ledger
    flip.tend(0, 10.0, 500.0, "a")
    assert led.balance("maker:flip", "DAI") == 500.0 and led.balance("a", "DAI") == 1500.0
    with pytest.raises(Revert, match="^Flipper/insufficient-increase$"):
        flip.tend(0, 10.0, 514.0, "b")  # needs ≥ 500·1.03 = 515
    flip.tend(0, 10.0, 515.0, "b")
    assert led.balance("a", "DAI") == 2000.0  # refunded in full
    assert led.balance("maker:flip", "DAI") == 515.0 and led.balance("b", "DAI") == 1485.0
    flip.tend(0, 10.0, 1130.0, "c")  # a bid equal to the tab is always allowed
    assert led.balance("b", "DAI") == 2000.0 and led.balance("maker:flip", "DAI") == 1130.0
    assert flip.in_dent(0)
    led.check_conservation()


def test_dent_lowers_the_lot_at_full_tab_and_returns_collateral_to_the_owner():
    cdp, flip, env = bitten()
    led = env.ledger
    flip.tend(0, 10.0, 1130.0, "c")
    with pytest.raises(Revert, match="^Flipper/insufficient-decrease$"):
        flip.dent(0, 9.8, 1130.0, "d")  # 1.03·9.8 = 10.094 > 10
    flip.dent(0, 9.7, 1130.0, "d")  # 1.03·9.7 = 9.991 ≤ 10
    assert led.balance("c", "DAI") == 2000.0  # d paid c the 1130
    assert led.balance("d", "DAI") == 870.0
    assert led.balance("population", "ETH") == pytest.approx(990.0 + 0.3)
    assert led.balance("maker:flip", "ETH") == pytest.approx(9.7)
    led.check_conservation()


def test_deal_after_ttl_burns_the_winning_bid_and_gives_the_lot():
    cdp, flip, env = bitten()
    led = env.ledger
    at(env, 120)
    flip.tend(0, 10.0, 1130.0, "c")
    flip.dent(0, 9.7, 1130.0, "d")  # tic = 120 + 600 = 720
    at(env, 720)
    with pytest.raises(Revert, match="^Flipper/not-finished$"):
        flip.deal(0)  # tic < now is strict
    at(env, 732)
    flip.deal(0)
    assert led.balance("d", "ETH") == pytest.approx(9.7)
    assert led.balance("maker:flip", "DAI") == 0.0
    assert led.burn_reasons[("DAI", "maker:deal")] == 1130.0
    m = cdp.metrics()
    # due 1000 repaid, penalty 130 is surplus
    assert m["surplus_usd"] == pytest.approx(130.0) and m["bad_debt_usd"] == 0.0
    assert m["zero_bid_auctions"] == 0 and m["auctions_active"] == 0
    led.check_conservation()
    assert cdp.accounting_gap() == pytest.approx(0.0, abs=1e-9)


def test_bids_must_match_the_lot_stay_within_the_tab_and_respect_the_phase():
    _, flip, _ = bitten()
    with pytest.raises(Revert, match="^Flipper/lot-not-matching$"):
        flip.tend(0, 9.0, 500.0, "a")
    with pytest.raises(Revert, match="^Flipper/higher-than-tab$"):
        flip.tend(0, 10.0, 1200.0, "a")
    flip.tend(0, 10.0, 500.0, "a")
    with pytest.raises(Revert, match="^Flipper/tend-not-finished$"):
        flip.dent(0, 9.0, 500.0, "b")
    with pytest.raises(Revert, match="^Flipper/bid-not-higher$"):
        flip.tend(0, 10.0, 500.0, "b")


def test_no_bid_is_accepted_once_the_last_bid_expired():
    _, flip, env = bitten()
    flip.tend(0, 10.0, 500.0, "a")  # tic = 600
    at(env, 612)
    with pytest.raises(Revert, match="^Flipper/already-finished-tic$"):
        flip.tend(0, 10.0, 600.0, "b")


def test_a_zero_bid_wins_the_lot_and_leaves_due_minus_buffer_as_system_debt():
    cdp, flip, env = bitten(surplus_buffer=200.0)
    flip.tend(0, 10.0, 1e-6, "z")  # nobody else bids (gas too dear)
    at(env, 612)
    flip.deal(0)
    assert env.ledger.balance("z", "ETH") == 10.0
    m = cdp.metrics()
    # system debt = due − raised − buffer = 1000 − 0.000001 − 200 = 799.999999 (the 130 penalty in the
    # tab was never owed by the system, so it is not a loss; tab − raised = 1129.999999 is the shortfall)
    assert m["bad_debt_usd"] == pytest.approx(799.999999)
    assert m["surplus_usd"] == 0.0 and m["zero_bid_auctions"] == 1
    settled = [e for e in env.events if isinstance(e, AuctionSettled)][-1]
    assert settled.zero_bid and settled.shortfall == pytest.approx(1129.999999)
    assert settled.collateral_value_usd == pytest.approx(1400.0)
    assert [e for e in env.events if isinstance(e, BadDebt)][-1].amount == pytest.approx(799.999999)
    env.ledger.check_conservation()
    assert cdp.accounting_gap() == pytest.approx(0.0, abs=1e-9)


def test_tick_restarts_an_auction_that_expired_without_bids():
    _, flip, env = bitten()
    with pytest.raises(Revert, match="^Flipper/not-finished$"):
        flip.tick(0)  # end = 3 days not passed
    at(env, 3 * 86400 + 12)
    assert list(flip.needs_tick()) == [True]
    with pytest.raises(Revert, match="^Flipper/already-finished-end$"):
        flip.tend(0, 10.0, 100.0, "a")
    with pytest.raises(Revert, match="^Flipper/not-finished$"):
        flip.deal(0)  # nobody bid: nothing to deal
    flip.tick(0)  # end = now + tau
    assert flip.end[0] == pytest.approx(3 * 86400 + 12 + 3 * 86400)
    flip.tend(0, 10.0, 100.0, "a")
    with pytest.raises(Revert, match="Flipper/"):
        flip.tick(0)


def test_deal_claws_back_the_cat_v2_litter():
    cdp, flip, env = bitten(lump=None, dunk=50_000.0, box=10_000.0)
    assert cdp.dirt == pytest.approx(1130.0)  # litter += tab
    flip.tend(0, 10.0, 1130.0, "a")
    at(env, 612)
    flip.deal(0)
    assert cdp.dirt == 0.0


@settings(max_examples=60, deadline=None)
@given(raises=st.lists(st.floats(1.0, 1.5), min_size=1, max_size=12), start=st.floats(1e-6, 800.0))
def test_escrow_always_holds_exactly_the_current_high_bid(raises, start):
    cdp, flip, env = bitten()
    bid = start
    for k, r in enumerate(raises):
        who = BIDDERS[k % len(BIDDERS)]
        try:
            flip.tend(0, 10.0, min(bid, 1130.0), who)
        except Revert as exc:
            assert "insufficient-increase" in str(exc) or "bid-not-higher" in str(exc)
        bid = min(bid * r * 1.03, 1130.0)
    assert env.ledger.balance("maker:flip", "DAI") == pytest.approx(flip.bid[0])
    env.ledger.check_conservation()
